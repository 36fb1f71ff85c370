"""Image paths -> vectors.

Owns: ``ImageEmbedder``; the backbones (loading a TF Hub handle, a SavedModel
or a Keras application, and its identity for cache keys); decoding and
resizing with Pillow and its bit-exact TensorFlow twin for export; the
decode-ahead prefetch; augmented views; compute-once over a shared cache;
embedding on a Dask cluster (``_dask.py``, the optional ``distributed``);
the runtime choice (``_runtime.py``) and the OpenVINO runtime
(``_openvino.py``, the only importer of ``openvino`` and ``nncf``).
This is the package that owns TensorFlow: it is imported lazily, here and in
``workflow._export``/``workflow._summaries`` only.

May import: :mod:`embedclf.cache` and the top-level ``exceptions`` and
``_compat``. Never :mod:`embedclf.workflow`, :mod:`embedclf.cli` or
:mod:`embedclf.heads`.
"""

from embedclf._lazy import lazy_exports

_EXPORTS = {
    "ImageEmbedder": "embedclf.embedding._embedder",
    "quiet_tensorflow": "embedclf.embedding._quiet",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
