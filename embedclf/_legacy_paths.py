"""Module paths of embedclf 0.1.0, which had one flat folder of modules.

Model directories (``head.skops``) and pickles written by 0.1.0 name classes
by the module they lived in then, e.g. ``embedclf._linear.SoftmaxClassifier``.
This finder makes each old path import the module that holds that code now,
so those files keep loading without being rewritten. It is installed by
``embedclf/__init__.py`` and costs nothing until an old name is imported.

Python's import system has no alias mechanism of its own; a meta-path finder
that hands back the already-imported module is the documented extension point
(``importlib.abc.MetaPathFinder``, duck-typed here).
"""

from __future__ import annotations

import importlib
import importlib.machinery
import sys

#: 0.1.0 module path -> the module that holds its code now; only modules
#: whose classes a saved file can name: the heads in a model directory's
#: ``head.skops`` (tests/fixtures/model_dir_0_1_0) and the fitted-state-free
#: ``HashSplit`` in a pickled search. Each is tested in
#: tests/workflow/model_dir/test_model_dir_compat.py. Kept until 0.3.0
#: (docs/compatibility.md). Functions and the CLI's modules are never saved;
#: ``ImageEmbedder`` has no fitted state (rebuild it from its parameters).
LEGACY_MODULES = {
    "embedclf._linear": "embedclf.heads._linear",
    "embedclf._open_set": "embedclf.heads._open_set",
    "embedclf._split": "embedclf.model_selection._split",
    "embedclf._svm": "embedclf.heads._svm",
}


class _AliasLoader:
    # Duck-typed importlib.abc.Loader: importing importlib.abc costs ~10 ms.

    def __init__(self, target: str):
        self._target = target

    def create_module(self, spec):
        return importlib.import_module(self._target)

    def exec_module(self, module):
        pass  # the target module is already executed


class LegacyModuleFinder:
    """Resolve a 0.1.0 module path to the module that replaced it."""

    def find_spec(self, fullname, path=None, target=None):
        new = LEGACY_MODULES.get(fullname)
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(new))


def install() -> None:
    """Add the finder to ``sys.meta_path`` once."""
    if not any(isinstance(f, LegacyModuleFinder) for f in sys.meta_path):
        sys.meta_path.append(LegacyModuleFinder())
