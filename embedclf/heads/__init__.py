"""Classifiers on top of embeddings.

Owns: ``SoftmaxClassifier``, ``SVMClassifier``, ``MLPHeadClassifier``,
``OpenSetClassifier``, their
shared input validation (``_validation``) and the open-set rules (unknown
thresholds, tuning to a target recall).

May import: :mod:`embedclf.model_selection`, scikit-learn, and the top-level
``exceptions`` and ``_compat``. Never TensorFlow, h5py, or the packages
above it.
"""

from embedclf._lazy import lazy_exports

_EXPORTS = {
    "MLPHeadClassifier": "embedclf.heads._mlp",
    "OpenSetClassifier": "embedclf.heads._open_set",
    "SVMClassifier": "embedclf.heads._svm",
    "SoftmaxClassifier": "embedclf.heads._linear",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
