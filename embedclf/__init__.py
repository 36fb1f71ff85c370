"""embedclf: transfer-learning image classification as scikit-learn estimators.

A pretrained CNN turns each image into a bottleneck vector (cached on disk in a
content-addressed HDF5 file), and light scikit-learn classifiers are trained on
top, as in TensorFlow's retrain.py tutorial.

Importing this package does not import TensorFlow or h5py: they load on first
use.
"""

from embedclf._version import __version__  # noqa: E402

# Public names are resolved lazily (PEP 562) so that ``import embedclf`` and
# ``embedclf --help`` stay fast; each module imports its heavy dependency only
# when it is used.
_EXPORTS = {
    "ImageEmbedder": "embedclf.embedding",
    "EmbeddingCache": "embedclf.cache",
    "load_image_folder": "embedclf.workflow",
    "SoftmaxClassifier": "embedclf.heads",
    "SVMClassifier": "embedclf.heads",
    "MLPHeadClassifier": "embedclf.heads",
    "OpenSetClassifier": "embedclf.heads",
    "HashSplit": "embedclf.model_selection",
    "NearDuplicateKFold": "embedclf.model_selection",
    "retrain_split": "embedclf.model_selection",
    "quiet_tensorflow": "embedclf.embedding",
    "suggest": "embedclf.workflow",
    "train": "embedclf.workflow",
    "evaluate": "embedclf.workflow",
    "predict": "embedclf.workflow",
    "TrainResult": "embedclf.workflow",
    "EvaluationResult": "embedclf.workflow",
}

__all__ = sorted(_EXPORTS) + ["__version__"]

from embedclf._lazy import lazy_exports  # noqa: E402
from embedclf._legacy_paths import install as _install_legacy_paths  # noqa: E402

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

# Files written by 0.1.0 name the flat module paths of that release.
_install_legacy_paths()
