"""Lazy re-exports for package ``__init__`` modules (PEP 562).

A package lists its public names and the private module holding each; a name
is imported on first access. So ``import embedclf.embedding`` (or the CLI's
``--help``) does not import scikit-learn, TensorFlow or h5py until a public
name is used.
"""

from __future__ import annotations

import importlib


def lazy_exports(package: str, exports: dict[str, str]):
    """``(__getattr__, __dir__)`` for a package re-exporting ``exports``.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    exports : dict
        Public name -> absolute name of the module that defines it.
    """
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name):
        if name in exports:
            value = getattr(importlib.import_module(exports[name]), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return sorted(namespace.get("__all__", exports))

    return __getattr__, __dir__
