"""embedclf: transfer-learning image classification as scikit-learn estimators.

A pretrained CNN turns each image into a bottleneck vector (cached on disk in a
content-addressed HDF5 file), and light scikit-learn classifiers are trained on
top, as in TensorFlow's retrain.py tutorial.

Importing this package does not import TensorFlow or h5py: they load on first
use.
"""

__version__ = "0.1.0"

# Public names are resolved lazily (PEP 562) so that ``import embedclf`` and
# ``embedclf --help`` stay fast; each module imports its heavy dependency only
# when it is used.
_EXPORTS = {
    "ImageEmbedder": "embedclf._embedder",
    "EmbeddingCache": "embedclf._cache",
    "load_image_folder": "embedclf._datasets",
    "SoftmaxClassifier": "embedclf._linear",
    "SVMClassifier": "embedclf._svm",
    "OpenSetClassifier": "embedclf._open_set",
    "HashSplit": "embedclf._split",
    "retrain_split": "embedclf._split",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'embedclf' has no attribute {name!r}")


def __dir__():
    return __all__
