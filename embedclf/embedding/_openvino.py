"""The OpenVINO runtime; the only module that imports ``openvino`` and ``nncf``.

A backbone runs through OpenVINO in three steps, each done once per backbone
and kept on disk in a folder of its own (``_runtime.openvino_dir``):

1. **convert**: the TensorFlow function the library already loads
   (``Backbone.features``, whatever the handle: SavedModel, TF Hub,
   ``keras:``) is traced at the embedder's image size and given to
   OpenVINO's TensorFlow frontend (``openvino.convert_model``; converting
   the SavedModel folder itself found no inputs for TF Hub modules), then
   written as an IR (``model.xml`` + ``model.bin``, float32 weights) under a
   folder named by the backbone identity, the image size and the OpenVINO
   version, with ``meta.json`` (vector size, input size) beside it;
2. **quantize** (``precision="int8"`` only): NNCF post-training quantization
   of that IR on calibration images, written beside it as
   ``int8-<calibration id>.xml``;
3. **compile**: ``Core.compile_model`` of the IR read for the CPU at the
   chosen inference precision, with OpenVINO's model cache (``CACHE_DIR`` in
   the same folder: ``compiled/``, ``compiled-int8/`` for int8), so a later
   process imports the compiled blob instead of compiling again.

``_ov_store`` keeps a copy of each converted folder (not int8) per machine,
so that a new cache file finds it there instead of converting again.

A warm run therefore neither imports TensorFlow nor converts nor compiles;
:func:`counts` tells how often this process did each step (the tests count
them). Compiled models are also kept per process, as TensorFlow backbones
are, so clones of an embedder share one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading

import numpy as np

from embedclf.exceptions import BackboneLoadError

__all__ = [
    "ConversionError",
    "OpenVINOBackbone",
    "capabilities",
    "compile_backbone",
    "counts",
    "ensure_ir",
    "openvino_version",
    "quantize_ir",
]

logger = logging.getLogger("embedclf")

#: embedclf's precision names -> OpenVINO's INFERENCE_PRECISION_HINT.
_HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}
_counts = {"conversions": 0, "quantizations": 0, "compilations": 0}
_compiled: dict[tuple, OpenVINOBackbone] = {}
#: Compile settings besides precision and cache. Two streams of one thread
#: each (THROUGHPUT, each batch split in two) measured no faster on 2 cores
#: in the pipeline than one stream of two threads (see docs/runtimes.md).
COMPILE_CONFIG = {
    "PERFORMANCE_HINT": "LATENCY",
    # Not pinned to cores: on a machine shared with other processes (and
    # with our own decode threads) pinning measured slower.
    "ENABLE_CPU_PINNING": False,
}
_lock = threading.Lock()
_core = []


class ConversionError(BackboneLoadError):
    """OpenVINO's frontend cannot convert a loaded backbone (a load failure
    of the backbone itself stays a plain ``BackboneLoadError``)."""


def counts() -> dict:
    """How often this process converted, quantized and compiled a backbone.

    ``compilations`` counts compiled models OpenVINO had to build (a new
    blob in its model cache), not those it imported from the cache.
    """
    return dict(_counts)


def _get_core():
    import openvino as ov

    if not _core:
        _core.append(ov.Core())
    return _core[0]


def openvino_version() -> str:
    import openvino as ov

    return ov.get_version().split("-")[0]


def capabilities() -> tuple:
    """The CPU's ``OPTIMIZATION_CAPABILITIES`` as OpenVINO sees them."""
    return tuple(_get_core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def ir_folder(root: str, identity: str, size) -> str:
    """The folder of a backbone's IR: identity + input size + OpenVINO version."""
    payload = json.dumps([identity, list(size), openvino_version()])
    return os.path.join(root, hashlib.sha256(payload.encode()).hexdigest()[:24])


def _unconverted_ops(exc: Exception) -> str:
    """The lines of OpenVINO's report that name the operations it lacks."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    named = [ln for ln in lines if "No conversion rule" in ln or ln.startswith("[")]
    return "; ".join(named[:5]) or (lines[-1] if lines else type(exc).__name__)


def _convert(tf_backbone, size: tuple):
    """OpenVINO model of ``tf_backbone`` at ``size`` (traced TF function)."""
    import openvino as ov
    import tensorflow as tf

    fn = tf.function(tf_backbone.features)
    spec = tf.TensorSpec([None, *size, 3], tf.float32)
    try:
        concrete = fn.get_concrete_function(spec)
        model = ov.convert_model(concrete)
    except Exception as exc:  # OpConversionFailure and friends
        raise ConversionError(
            f"OpenVINO cannot convert the model {tf_backbone.spec.handle!r} "
            f"({_unconverted_ops(exc)}). Use runtime='tensorflow' "
            "(--runtime tensorflow) for this backbone."
        ) from exc
    _counts["conversions"] += 1
    return model


def ensure_ir(folder: str, tf_loader, size_of) -> dict:
    """Convert once: the IR in ``folder``, written now if missing.

    ``tf_loader()`` returns the loaded TensorFlow ``Backbone`` and
    ``size_of(backbone)`` its input size; both are called only when the IR
    does not exist yet. Returns ``meta.json``'s content.
    """
    meta_path = os.path.join(folder, "meta.json")
    if os.path.exists(meta_path):
        with open(meta_path) as fh:
            return json.load(fh)
    import openvino as ov

    tf_backbone = tf_loader()
    size = size_of(tf_backbone)
    logger.info("converting %s for OpenVINO", tf_backbone.spec.handle)
    model = _convert(tf_backbone, size)
    dim = int(model.outputs[0].get_partial_shape()[-1].get_length())
    meta = {"handle": tf_backbone.spec.handle, "size": list(size), "dim": dim}
    parent = os.path.dirname(folder)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-", dir=parent)
    try:
        ov.save_model(model, os.path.join(tmp, "model.xml"), compress_to_fp16=False)
        with open(os.path.join(tmp, "meta.json"), "w") as fh:
            json.dump(meta, fh)
        os.rename(tmp, folder)  # atomic; another process may have won
    except OSError:
        if not os.path.exists(meta_path):
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return meta


def quantize_ir(folder: str, calibration_id: str, images_loader) -> str:
    """The int8 IR for ``calibration_id``, quantized now if missing.

    ``images_loader()`` returns the calibration images (uint8, ``(n, H, W,
    3)``); NNCF's post-training quantization sees all of them, in order, one
    at a time. Returns the path of the quantized ``.xml``.
    """
    path = os.path.join(folder, f"int8-{calibration_id}.xml")
    if os.path.exists(path):
        return path
    import nncf
    import openvino as ov

    images = images_loader()
    model = _get_core().read_model(os.path.join(folder, "model.xml"))
    data = nncf.Dataset([img[None].astype(np.float32) / 255.0 for img in images])
    logger.info("calibrating int8 on %d images (NNCF)", len(images))
    quantized = nncf.quantize(model, data, subset_size=len(images))
    _counts["quantizations"] += 1
    tmp = os.path.join(folder, f".tmp-{os.getpid()}-{calibration_id}.xml")
    ov.save_model(quantized, tmp, compress_to_fp16=False)
    os.replace(tmp[:-4] + ".bin", path[:-4] + ".bin")
    os.replace(tmp, path)  # the .xml last: its presence means "done"
    return path


def _blobs(cache_dir: str) -> dict:
    """The compiled blobs in ``cache_dir``: name -> (size, mtime); a new or
    rewritten one (a blob OpenVINO could not import) means it compiled."""
    out = {}
    try:
        with os.scandir(cache_dir) as entries:
            for entry in entries:
                if entry.name.endswith(".blob"):
                    st = entry.stat()
                    out[entry.name] = (st.st_size, st.st_mtime_ns)
    except FileNotFoundError:
        pass
    return out


def compile_backbone(spec, xml_path: str, meta: dict, precision: str, threads=None):
    """The compiled model of ``xml_path`` at ``precision``, once per process."""
    key = (os.path.realpath(xml_path), precision, threads)
    with _lock:
        backbone = _compiled.get(key)
        if backbone is not None:
            return backbone
        # int8 blobs apart: _ov_store publishes "compiled" but not int8.
        compiled_dir = "compiled-int8" if precision == "int8" else "compiled"
        cache_dir = os.path.join(os.path.dirname(xml_path), compiled_dir)
        config = {
            **COMPILE_CONFIG,
            "INFERENCE_PRECISION_HINT": _HINTS[precision],
            "CACHE_DIR": cache_dir,
        }
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        before = _blobs(cache_dir)
        # The model read, not its path: OpenVINO then names the blob by the
        # model's content, where for a path it names (and checks) it by the
        # file's absolute path and time, which would make every copy of the
        # folder beside another cache (_ov_store) compile again.
        core = _get_core()
        compiled = core.compile_model(core.read_model(xml_path), "CPU", config)
        if any(before.get(k) != v for k, v in _blobs(cache_dir).items()):
            _counts["compilations"] += 1
        backbone = OpenVINOBackbone(spec, compiled, meta, precision)
        _compiled[key] = backbone
        return backbone


class OpenVINOBackbone:
    """A compiled backbone with the interface of ``_backbones.Backbone``."""

    def __init__(self, spec, compiled, meta: dict, precision: str):
        self.spec = spec
        self.precision = precision
        self._compiled = compiled
        self.default_image_size = int(meta["size"][0])
        self.dim = int(meta["dim"])
        self._local = threading.local()  # an infer request per thread

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Embed a batch (n, H, W, 3): float32 in [0, 1], or uint8 pixels.

        uint8 is scaled as ``Backbone`` does (``float32(pixels) / 255``).
        """
        from embedclf.embedding._backbones import count_images

        if images.dtype == np.uint8:
            x = images.astype(np.float32) / np.float32(255.0)
        else:
            x = np.ascontiguousarray(images, dtype=np.float32)
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        out = request.infer({0: x})
        vectors = np.array(out[self._compiled.outputs[0]], dtype=np.float32)
        count_images(len(images))
        return vectors
