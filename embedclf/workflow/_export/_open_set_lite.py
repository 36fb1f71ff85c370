"""The open-set rule in an int8 or mixed TensorFlow Lite export.

The int8 ranges are calibrated on the model's training photos, all of known
classes, and on them the rule's score is small: each training photo is its
own nearest neighbour (the ``knn`` detector's distance is 0) and its top
probability is high. An unknown photo's score was then clipped to that
range, and on a small test model the exported ``known`` output accepted
every noise photo ``predict`` rejects. What is done about it:

``"mixed"``
    Every op of the rule (the ``open_set`` name scope of
    :func:`~embedclf.workflow._export._graph.make_head`) stays in float
    (``denylisted_nodes`` of ``mlir_quantize``, beside the ops the debugger
    ranks), but the ``knn`` detector's product with the training vectors
    (:func:`open_set_tensors`).
``"int8"``
    Integer-only (no float op), so the rule stays int8; its tensors (and
    only them: the backbone's ranges stay the training photos') are
    calibrated on the training photos *and* on :data:`N_SYNTHETIC`
    deterministic images of none of the classes (:func:`synthetic_inputs`),
    so that their ranges reach the scores of unknown photos. The graph is
    built with ``bounded=True``: the fused score stays within a few units
    (``_unknown.fusion_caps``); the rule, in every export, is
    ``score - threshold <= 0`` (``_graph.known_from_margin``).

Measured on grocery: benchmarks/probes/tflite_open_set_probe.py (docs/export.md).
"""

from __future__ import annotations

import numpy as np

from embedclf.workflow._export._graph import OPEN_SET_SCOPE
from embedclf.workflow._export._unknown import KNN_SIMILARITY_SCOPE

__all__ = [
    "N_SYNTHETIC",
    "open_set_tensors",
    "quantize_int8_open_set",
    "synthetic_inputs",
]

#: How many synthetic images of none of the classes widen the rule's int8 ranges.
N_SYNTHETIC = 24


def synthetic_inputs(inputs, n: int = N_SYNTHETIC, seed: int = 20251) -> list:
    """``n`` deterministic images of none of the classes, as calibration inputs.

    A third each of uniform noise, flat colours and two-colour gradients, one
    ``[1, h, w, 3]`` uint8 array per model input (``inputs``: (name, (h, w))).
    """
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        colours = rng.integers(0, 256, (2, 3)).astype(np.float64)
        noise = rng.integers(0, 256, (256, 256, 3)).astype(np.float64)
        ramp = np.linspace(0.0, 1.0, 256)[None, :, None]
        image = [
            noise,
            np.broadcast_to(colours[0], noise.shape),
            np.broadcast_to(colours[0] + (colours[1] - colours[0]) * ramp, noise.shape),
        ][i % 3]
        out.append(
            [
                np.ascontiguousarray(_resize(image, h, w), dtype=np.uint8)[None]
                for _, (h, w) in inputs
            ]
        )
    return out


def _resize(image, h, w):
    rows = np.arange(h) * image.shape[0] // h
    cols = np.arange(w) * image.shape[1] // w
    return image[rows][:, cols].round()


def _flatbuffer(model: bytes):
    from tensorflow.lite.tools import flatbuffer_utils

    return flatbuffer_utils.convert_bytearray_to_object(bytearray(model))


def open_set_tensors(calibrated: bytes) -> list[str]:
    """Names of the rule's tensors (the ``open_set`` scope) in a ``.tflite``,
    but for the ``knn`` detector's product with the training vectors.

    That product stays int8 in ``"mixed"``: its weights are every training
    vector (four times as large in float32: 1280 x 4 bytes per training photo
    with EfficientNet-Lite), and its output, all the similarities, has a
    range that the training photos cover (the nearest one's does not: it is
    1 for every training photo).
    """
    prefix = OPEN_SET_SCOPE + "/"
    product = f"{prefix}{KNN_SIMILARITY_SCOPE}/"
    return [
        t.name.decode()
        for g in _flatbuffer(calibrated).subgraphs
        for t in g.tensors
        if t.name.decode().startswith(prefix)
        and not t.name.decode().startswith(product)
    ]


def _widened(calibrated: bytes, extra: bytes) -> bytes:
    """``calibrated`` with each rule tensor's range widened to ``extra``'s
    (the same graph calibrated on other inputs; tensors matched by name)."""
    from tensorflow.lite.tools import flatbuffer_utils

    model, other = _flatbuffer(calibrated), _flatbuffer(extra)
    prefix = (OPEN_SET_SCOPE + "/").encode()
    ranges = {}
    for g in other.subgraphs:
        for t in g.tensors:
            q = t.quantization
            if t.name.startswith(prefix) and q is not None and q.min is not None:
                ranges.setdefault(t.name, q)
    for g in model.subgraphs:
        for t in g.tensors:
            q, wide = t.quantization, ranges.get(t.name)
            if q is None or q.min is None or wide is None:
                continue
            if np.shape(q.min) == np.shape(wide.min):
                q.min = np.minimum(q.min, wide.min)
                q.max = np.maximum(q.max, wide.max)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _calibrated(converter) -> bytes:
    """The float model with the ranges seen on its representative dataset."""
    converter._experimental_calibrate_only = True  # as QuantizationDebugger
    return converter.convert()


def quantize_int8_open_set(converter_for, calibration, inputs) -> bytes:
    """The full-integer model, the rule's ranges also calibrated on
    :func:`synthetic_inputs` (see the module docstring).

    ``converter_for(dataset)`` returns a new converter set up for
    ``quantize="int8"`` with that representative dataset; ``calibration``
    yields the training photos' inputs, ``inputs`` are the model's.
    """
    import tensorflow as tf
    from tensorflow.lite.python.convert import mlir_quantize

    converter = converter_for(calibration)
    on_photos = _calibrated(converter)
    synthetic = synthetic_inputs(inputs)
    on_synthetic = _calibrated(converter_for(lambda: iter(synthetic)))
    # What TFLiteConverter.convert() runs after calibrating (lite.py
    # _quantize: the MLIR quantizer, float32 model input and output types).
    return mlir_quantize(
        _widened(on_photos, on_synthetic),
        converter._experimental_disable_per_channel,
        input_data_type=tf.float32,
        output_data_type=tf.float32,
    )
