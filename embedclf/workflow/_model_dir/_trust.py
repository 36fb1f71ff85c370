"""Which types a model directory's ``head.skops`` may hold, and loading it.

skops never unpickles: it rebuilds objects from a JSON schema, and any type
outside its own audited defaults (NumPy arrays, scikit-learn estimators,
primitives) must be trusted by the caller. A schema may name *any* importable
callable as a "type" and skops calls it with arguments from the file
(``ConstructorFromReduceNode``), so trusting whole modules runs code:
``builtins.eval`` with a string, ``builtins.open`` in write mode,
``numpy.savetxt`` onto a path. Hence an explicit allow-list of classes, never
a function.
"""

from __future__ import annotations

from pathlib import Path

from embedclf.exceptions import ModelDirError

__all__ = ["load_head", "trusted_types"]

#: Types from outside embedclf that our heads hold, beyond skops's defaults:
#: the SVM head's calibration, the k-NN open-set distance (its tree and
#: metric objects).
_OTHER_TRUSTED = (
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.neighbors._ball_tree.BallTree",
    "sklearn.metrics._dist_metrics.EuclideanDistance64",
    "sklearn.metrics._dist_metrics.ManhattanDistance64",
    "sklearn.metrics._dist_metrics.MinkowskiDistance64",
    "sklearn.metrics._dist_metrics.ChebyshevDistance64",
)

#: Never trusted, whatever a list above says: callables that run code, import
#: modules, reach attributes, or open files when skops "constructs" them.
_NEVER = frozenset(
    "builtins." + name
    for name in (
        "eval",
        "exec",
        "compile",
        "getattr",
        "setattr",
        "delattr",
        "__import__",
        "open",
        "breakpoint",
        "input",
        "globals",
        "locals",
        "vars",
        "type",
        "object",
    )
)


def trusted_types() -> frozenset:
    """Fully qualified type names ``load_head`` accepts beyond skops's defaults.

    The public classifiers of :mod:`embedclf.heads` under their current
    module and under their embedclf 0.1.0 module (``embedclf._linear`` ...),
    plus :data:`_OTHER_TRUSTED`. A head class added to ``embedclf.heads``
    (and its ``__all__``) is trusted without editing this list.
    """
    import embedclf.heads as heads
    from embedclf._legacy_paths import LEGACY_MODULES

    names = set(_OTHER_TRUSTED)
    old_modules = {}
    for old, new in LEGACY_MODULES.items():
        old_modules.setdefault(new, []).append(old)
    for public in heads.__all__:
        cls = getattr(heads, public)
        if not isinstance(cls, type):  # pragma: no cover - heads exports classes
            continue
        names.add(f"{cls.__module__}.{cls.__qualname__}")
        for old in old_modules.get(cls.__module__, ()):
            names.add(f"{old}.{cls.__qualname__}")
    return frozenset(names - _NEVER)


def load_head(head_path):
    """Load a head written with skops.io, trusting only :func:`trusted_types`.

    Raises
    ------
    ModelDirError
        If the file cannot be read or names any other type (for example a
        function such as ``builtins.eval``).
    """
    import skops.io as sio

    head_path = Path(head_path)
    try:
        untrusted = sio.get_untrusted_types(file=head_path)
    except Exception as exc:  # skops raises several types for a damaged zip
        raise ModelDirError(
            f"Could not read {str(head_path)!r} ({exc}). Train the model again."
        ) from None
    allowed = trusted_types()
    refused = sorted(t for t in untrusted if t not in allowed)
    if refused:
        raise ModelDirError(
            f"{str(head_path)!r} names types embedclf does not trust: {refused}. "
            "Loading it could run code, so it is refused; only embedclf's "
            "classifiers and the scikit-learn and NumPy types they hold are "
            "loaded. Train the model again, or inspect the file with "
            "`skops.io.get_untrusted_types`."
        )
    try:
        # skops audits the tree once more against the same explicit list.
        return sio.load(head_path, trusted=sorted(allowed))
    except Exception as exc:  # a schema skops cannot rebuild
        raise ModelDirError(
            f"Could not load {str(head_path)!r} ({type(exc).__name__}: {exc}). "
            "Train the model again."
        ) from None
