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

#: 0.1.0 module path -> the module that holds its code now.
LEGACY_MODULES = {
    "embedclf._augment": "embedclf.embedding._augment",
    "embedclf._backbones": "embedclf.embedding._backbones",
    "embedclf._cache": "embedclf.cache._store",
    "embedclf._cache_files": "embedclf.cache._files",
    "embedclf._cache_repair": "embedclf.cache._repair",
    "embedclf._cache_rewrite": "embedclf.cache._rewrite",
    "embedclf._cli_common": "embedclf.cli._common",
    "embedclf._cli_predict": "embedclf.cli._predict",
    "embedclf._cli_train": "embedclf.cli._train",
    "embedclf._cli_train_args": "embedclf.cli._train_args",
    "embedclf._compute_once": "embedclf.embedding._compute_once",
    "embedclf._datasets": "embedclf.workflow._datasets",
    "embedclf._embedder": "embedclf.embedding._embedder",
    "embedclf._export": "embedclf.workflow._export",
    "embedclf._fit_memo": "embedclf.workflow._train._fit_memo",
    "embedclf._images": "embedclf.embedding._images",
    "embedclf._journal": "embedclf.cache._journal",
    "embedclf._journal_view": "embedclf.cache._journal_view",
    "embedclf._linear": "embedclf.heads._linear",
    "embedclf._model_dir": "embedclf.workflow._model_dir",
    "embedclf._open_set": "embedclf.heads._open_set",
    "embedclf._open_set_rules": "embedclf.heads._open_set_rules",
    "embedclf._prefetch": "embedclf.embedding._prefetch",
    "embedclf._report": "embedclf.workflow._report",
    "embedclf._split": "embedclf.model_selection._split",
    "embedclf._summaries": "embedclf.workflow._summaries",
    "embedclf._svm": "embedclf.heads._svm",
    "embedclf._tf_images": "embedclf.embedding._tf_images",
    "embedclf._train": "embedclf.workflow._train",
    "embedclf._validation": "embedclf.heads._validation",
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
