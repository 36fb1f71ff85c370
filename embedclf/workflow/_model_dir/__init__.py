"""The model directory (MODEL_DIR): saving, loading, locating, trusting.

``_manifest``: the manifest's format constants, reading and checking it, and
what it records besides the files; ``_locations``: where the backbone and
cache are from any folder, and the ``--output`` check; ``_trust``: the types
``head.skops`` may hold; ``_io``: the atomic save; ``_load``: the checked
load.
"""

from embedclf.workflow._model_dir._io import KILL_POINTS, save_model_dir
from embedclf.workflow._model_dir._load import (
    ModelDir,
    embedder_settings,
    load_model_dir,
)
from embedclf.workflow._model_dir._locations import (
    check_backbone,
    check_output_dir,
    remembered_cache,
)
from embedclf.workflow._model_dir._manifest import (
    HEAD_FILE,
    LABELS_FILE,
    MANIFEST_FILE,
    MANIFEST_FORMAT,
    MANIFEST_VERSION,
    library_versions,
    manifest_c_grid,
    read_manifest,
)
from embedclf.workflow._model_dir._trust import load_head, trusted_types

__all__ = [
    "HEAD_FILE",
    "KILL_POINTS",
    "LABELS_FILE",
    "MANIFEST_FILE",
    "MANIFEST_FORMAT",
    "MANIFEST_VERSION",
    "ModelDir",
    "check_backbone",
    "check_output_dir",
    "embedder_settings",
    "library_versions",
    "load_head",
    "load_model_dir",
    "manifest_c_grid",
    "read_manifest",
    "remembered_cache",
    "save_model_dir",
    "trusted_types",
]
