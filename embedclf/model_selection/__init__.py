"""Splitters: how rows are divided into training, validation and test.

Owns: ``HashSplit`` and ``retrain_split`` (retrain.py's stable hash of file
names), and ``near_duplicate_groups`` (group ids from embeddings, so that
near-identical shots stay on one side of a split) and ``NearDuplicateKFold``
(a stratified group k-fold over those groups, for ``GridSearchCV(cv=...)``).

May import: scikit-learn, NumPy and the top-level ``exceptions``; no other
embedclf package (it is the bottom layer).
"""

from embedclf._lazy import lazy_exports

_EXPORTS = {
    "HashSplit": "embedclf.model_selection._split",
    "retrain_split": "embedclf.model_selection._split",
    "near_duplicate_groups": "embedclf.model_selection._groups",
    "NearDuplicateKFold": "embedclf.model_selection._group_split",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
