"""Export a model directory as one TensorFlow Lite model (backbone + head).

``OUT_DIR/model.tflite`` maps uint8 RGB pixels ``[1, H, W, 3]`` (the photo
already resized as ``preprocessing.json`` says) to ``probabilities``
``[1, n_classes]`` in the order of ``labels.txt``, plus ``known`` ``[1]``
(1.0 or 0.0) when the model's open-set rule is included. The graph is the
SavedModel export's (:func:`~embedclf.workflow._export._savedmodel.make_head`)
after the decoder: scaling to [0, 1], each backbone, the head, the mirrored
view for ``--test-views flip`` and the open-set rule.

Quantization (``quantize``), with TensorFlow's converter:

``"none"``
    float32 weights and activations.
``"dynamic"``
    int8 weights, float activations (``Optimize.DEFAULT`` without data).
``"int8"``
    full-integer post-training quantization: weights and activations int8,
    calibrated on a deterministic sample of the model's own training photos
    (:func:`calibration_paths`). Input stays uint8 pixels, output float32
    probabilities (the converter adds the (de)quantize steps). Keeping the
    head (dense + softmax) in float changes nothing on grocery: the answers
    that move come from the backbone (benchmarks/probes/tflite_int8_probe.py).
``"mixed"``
    int8 except the ops most sensitive to quantization, kept in float
    (:func:`~embedclf.workflow._export._mixed.mixed_quantize`: TensorFlow's
    QuantizationDebugger on the calibration photos); ``preprocessing.json``
    lists them under ``float_ops``. Needs a CPU (or GPU) runtime that runs
    float ops: not for integer-only accelerators.

With the open-set rule, ``"mixed"`` computes it in float and ``"int8"`` in
int8 with ranges that reach unknown photos' scores
(:mod:`~embedclf.workflow._export._open_set_lite`).

No TFLite Metadata is written: the metadata writers live in
``tflite-support``, whose last release (0.4.4, 2023) requires protobuf < 4
(TensorFlow 2.21 needs a recent one) and whose ``metadata_writers`` fail to
import beside TensorFlow 2.21 even unpacked without its dependencies (old
generated protobuf code; with the pure-Python protobuf, a pybind11 type
clash); LiteRT (ai-edge-litert 2.x) has no writer. ``preprocessing.json``
and ``labels.txt`` carry the same information beside the model
(docs/export.md).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from embedclf.exceptions import ModelDirError
from embedclf.workflow._export._calibration import (
    calibration_data,
    calibration_paths,
)
from embedclf.workflow._export._graph import make_head, prepare_export
from embedclf.workflow._export._mixed import (
    DEFAULT_FLOAT_FRACTION,
    check_float_fraction,
    mixed_quantize,
)
from embedclf.workflow._export._open_set_lite import quantize_int8_open_set
from embedclf.workflow._export._quiet_lite import quiet_lite

__all__ = [
    "PREPROCESSING_FILE",
    "QUANTIZE_MODES",
    "TFLiteExport",
    "calibration_paths",
    "export_tflite",
]

logger = logging.getLogger("embedclf")

PREPROCESSING_FILE = "preprocessing.json"
MODEL_FILE = "model.tflite"
LABELS_FILE = "labels.txt"
FORMAT = "embedclf-tflite"
QUANTIZE_MODES = ("none", "dynamic", "int8", "mixed")


@dataclass
class TFLiteExport:
    """What :func:`export_tflite` wrote.

    Attributes
    ----------
    path : pathlib.Path
        The output folder.
    model_bytes : int
        Size of ``model.tflite``.
    quantize : str
    n_calibration : int
        Photos the int8 ranges were calibrated on (0 otherwise).
    float_ops : list of dict
        ``"mixed"``: the ops kept in float (``op``, ``tensor``,
        ``rmse_per_scale``), most sensitive first; empty otherwise.
    n_ops_checked : int
        ``"mixed"``: how many ops the debugger ranked (0 otherwise).
    """

    path: Path
    model_bytes: int
    quantize: str
    n_calibration: int
    float_ops: list = field(default_factory=list)
    n_ops_checked: int = 0


def _inputs(sizes) -> list[tuple[str, tuple[int, int]]]:
    """(input name, (height, width)): one input per distinct backbone size."""
    unique = list(dict.fromkeys((int(h), int(w)) for h, w in sizes))
    if len(unique) == 1:
        return [("image", unique[0])]
    return [(f"image_{h}x{w}", (h, w)) for h, w in unique]


def _serving_function(backbones, sizes, params, prep, *, bounded=False):
    import tensorflow as tf

    inputs = _inputs(sizes)
    head = make_head(backbones, params, prep, bounded=bounded)
    specs = [tf.TensorSpec([1, h, w, 3], tf.uint8, name=n) for n, (h, w) in inputs]
    where = [[s for _, s in inputs].index((int(h), int(w))) for h, w in sizes]
    open_set = params["unknown_label"] is not None

    @tf.function(input_signature=specs)
    def serve(*images):
        # as Backbone.__call__: uint8 -> float32 / 255, the same values
        floats = [tf.cast(x, tf.float32) / 255.0 for x in images]
        out = head([floats[i] for i in where])
        result = {"probabilities": out["probabilities"]}
        if open_set:
            result["known"] = tf.cast(out["known"], tf.float32)
        return result

    return serve.get_concrete_function(), inputs


def _convert(concrete, owner, quantize, calibration, float_fraction, open_set):
    """(flat model, float ops, number of ops checked).

    ``open_set``: the model's inputs ((name, (h, w)) pairs) when the graph has
    the open-set rule, else None (``_open_set_lite``)."""
    import tensorflow as tf

    def converter_for(dataset):  # a converter converts once: one per call
        holder = tf.Module()
        holder.backbones = owner  # keeps the backbones' variables reachable
        made = tf.lite.TFLiteConverter.from_concrete_functions([concrete], holder)
        if quantize != "none":
            made.optimizations = [tf.lite.Optimize.DEFAULT]
        made.representative_dataset = dataset
        if quantize == "int8":
            made.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        return made

    converter = converter_for(calibration if quantize in ("int8", "mixed") else None)
    try:
        with quiet_lite():
            if quantize == "mixed":
                return mixed_quantize(
                    converter, calibration, float_fraction, open_set is not None
                )
            if quantize == "int8" and open_set is not None:
                flat = quantize_int8_open_set(converter_for, calibration, open_set)
                return flat, [], 0
            return converter.convert(), [], 0
    except Exception as exc:  # tf.lite's ConverterError, a bare Exception
        if type(exc).__name__ != "ConverterError":
            raise
        ops = re.search(r"TF Select ops: ([^\n]*)", str(exc))
        raise ModelDirError(
            "TensorFlow Lite cannot run this model with its builtin ops "
            f"(missing: {ops.group(1) if ops else 'see the log above'}), so it "
            "cannot be exported with --tflite; the SavedModel export "
            "(--savedmodel) can run it."
        ) from None


_PRECISION = {  # what is float in each variant (weights, activations)
    "none": ("float32", "float32"),
    "dynamic": ("int8, dequantized to float32 by each op", "float32"),
    "int8": (
        "int8 (biases int32)",
        "int8 from the uint8 input to the float32 outputs (only the input's "
        "cast and the outputs' dequantize or cast are float)",
    ),
    "mixed": (
        "int8 (biases int32), float32 in float_ops",
        "int8, except the outputs of float_ops (float32, with quantize and "
        "dequantize ops around them)",
    ),
}


_RULE_PRECISION = {  # the open-set rule's ops in each variant (_open_set_lite)
    "none": "float32",
    "dynamic": "float32 (large constants such as the knn detector's training "
    "vectors int8)",
    "int8": "int8, its ranges calibrated on the training photos and on "
    "synthetic images of none of the classes",
    "mixed": "float32, but the knn detector's product with the training "
    "vectors (int8) if the rule has one",
}


def _preprocessing(params, inputs, prep, done, model_dir, float_fraction):
    weights, activations = _PRECISION[done.quantize]
    return {
        "format": FORMAT,
        "format_version": 1,
        "model_file": MODEL_FILE,
        "labels_file": LABELS_FILE,
        "quantization": done.quantize,
        "n_calibration_images": done.n_calibration,
        "weights": weights,
        "activations": activations,
        **(
            {
                "float_fraction": float_fraction,
                "n_ops_checked": done.n_ops_checked,
                "float_ops": done.float_ops,
            }
            if done.quantize == "mixed"
            else {}
        ),
        "inputs": [
            {
                "name": name,
                "shape": [1, h, w, 3],
                "dtype": "uint8",
                "color": "RGB",
                "values": "0-255 pixels; the model divides by 255 itself",
            }
            for name, (h, w) in inputs
        ],
        "resize": {
            "filter": prep["resample"],
            "crop_fraction": prep["crop_fraction"],
            "crop": "centre: keep crop_fraction of the width and of the height, "
            "then resize that box to the input size (aspect ratio not kept)",
            "exif_orientation": "applied before cropping",
        },
        "outputs": {
            "probabilities": "float32 [1, n_classes], columns in labels.txt order",
            **(
                {"known": "float32 [1]: 1.0 known, 0.0 unknown_label"}
                if params["unknown_label"] is not None
                else {}
            ),
        },
        "unknown_rule_included": params["unknown_label"] is not None,
        **(
            {"unknown_rule_precision": _RULE_PRECISION[done.quantize]}
            if params["unknown_label"] is not None
            else {}
        ),
        "unknown_label": params["unknown_label"],
        "test_time_flip_included": bool(prep["mirror"]),
        "model_dir": str(Path(model_dir.path).resolve()),
        "model_created": model_dir.manifest.get("created"),
    }


def _checked(quantize, float_fraction):
    """``float_fraction`` to use (None unless mixed), or a ValueError."""
    if quantize not in QUANTIZE_MODES:
        raise ValueError(
            f"quantize must be one of {', '.join(QUANTIZE_MODES)}; got {quantize!r}."
        )
    if float_fraction is not None and quantize != "mixed":
        raise ValueError(
            "float_fraction (--float-fraction) applies to quantize='mixed' "
            f"only; got it with quantize={quantize!r}."
        )
    if quantize != "mixed":
        return None
    return check_float_fraction(
        DEFAULT_FLOAT_FRACTION if float_fraction is None else float_fraction
    )


def export_tflite(
    model_dir,
    out_dir,
    *,
    quantize: str = "none",
    model=None,
    calibration_images=None,
    n_calibration: int = 300,
    float_fraction: float | None = None,
) -> TFLiteExport:
    """Write ``model.tflite``, ``labels.txt`` and ``preprocessing.json``.

    Parameters
    ----------
    model_dir : ModelDir
        A loaded model directory (``workflow._model_dir.load_model_dir``).
    out_dir : str or os.PathLike
        The folder to write; replaced atomically if it exists.
    quantize : {"none", "dynamic", "int8", "mixed"}, default="none"
        See the module docstring.
    model : str, list of str or None
        Backbone handle(s) to load instead of the manifest's.
    calibration_images : list of str or None
        Photos to calibrate int8 on. Default: :func:`calibration_paths`.
    n_calibration : int, default=300
        How many training photos to calibrate on by default.
    float_fraction : float in (0, 1] or None
        With ``quantize="mixed"``: the share of the quantizable ops kept in
        float, the most sensitive first (None: ``DEFAULT_FLOAT_FRACTION``,
        0.3). Refused with the other modes.

    Returns
    -------
    TFLiteExport

    Raises
    ------
    ModelDirError
        Something of the model cannot be exported (the error names it).
    ValueError
        ``quantize`` is not one of ``QUANTIZE_MODES``, or ``float_fraction``
        is out of range or given without ``quantize="mixed"``.
    """
    float_fraction = _checked(quantize, float_fraction)
    params, backbones, sizes, prep = prepare_export(
        model_dir, model, target="a TensorFlow Lite model"
    )
    concrete, inputs = _serving_function(
        backbones, sizes, params, prep, bounded=quantize == "int8"
    )
    if quantize == "int8" and params["unknown_label"] is not None:
        # What _open_set_lite does not fix: 8-bit steps near the threshold.
        logger.warning(
            "quantize='int8' computes the backbone and the open-set rule in "
            "8-bit steps: a photo whose unknown score is near the threshold can "
            "get another answer (%r or a class) than `predict` gives. "
            "quantize='mixed' keeps the rule in float (docs/export.md has the "
            "grocery figures).",
            params["unknown_label"],
        )
    calibration, n_used = None, 0
    if quantize in ("int8", "mixed"):
        if calibration_images is None:
            calibration_images = calibration_paths(model_dir, n_calibration)
        calibration, n_used = calibration_data(calibration_images, inputs, prep)
    owners = [b._owner for b in backbones]
    open_set = inputs if params["unknown_label"] is not None else None
    flat, float_ops, n_checked = _convert(
        concrete, owners, quantize, calibration, float_fraction, open_set
    )
    done = TFLiteExport(
        Path(out_dir), len(flat), quantize, n_used, float_ops, n_checked
    )
    out_dir = Path(out_dir)
    parent = out_dir.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out_dir.name + ".tmp-", dir=parent))
    try:
        (tmp / MODEL_FILE).write_bytes(flat)
        (tmp / LABELS_FILE).write_text("".join(c + "\n" for c in params["classes"]))
        info = _preprocessing(params, inputs, prep, done, model_dir, float_fraction)
        (tmp / PREPROCESSING_FILE).write_text(json.dumps(info, indent=2) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("exported %s to %s (%s)", model_dir.path, out_dir, quantize)
    return done
