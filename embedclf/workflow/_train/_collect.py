"""The retrain.py workflow as library functions, used by ``embedclf train``.

Find the images and their train/validation/test split, embed them (through the
cache), tune ``C`` by cross-validation on the training part, fit the head and
score it on the validation and test parts. Nothing here prints; the CLI does.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from embedclf.heads._validation import _label_repr
from embedclf.workflow._datasets import load_image_folder

__all__ = [
    "SPLITS",
    "LabelledImages",
    "collect_images",
    "cross_entropy_score",
    "cv_splits",
    "make_head",
    "parse_unknown",
    "tune_head",
    "wrap_open_set",
]

logger = logging.getLogger("embedclf")

SPLITS = ("training", "validation", "testing")
_OFFICIAL = {
    "train": "training",
    "val": "validation",
    "validation": "validation",
    "valid": "validation",
    "test": "testing",
}


@dataclass
class LabelledImages:
    """Image paths with string labels and the split each belongs to."""

    paths: np.ndarray
    labels: np.ndarray
    split: np.ndarray
    layout: str
    sources: dict = field(default_factory=dict)

    def part(self, name: str) -> np.ndarray:
        """Indices of the images of split ``name``."""
        return np.flatnonzero(self.split == name)


def _folder(root) -> tuple[np.ndarray, np.ndarray]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_image_folder(root)
    for w in caught:
        logger.warning("%s", w.message)
    return data.paths, data.target_names[data.target]


def _official_subfolders(root: Path) -> dict | None:
    """{split: folder} when ``root`` holds train/ plus val/ or test/ only."""
    subdirs = {d.name: d for d in root.iterdir() if d.is_dir() and d.name[0] != "."}
    names = set(subdirs)
    if "train" in names and names <= set(_OFFICIAL) and len(names) > 1:
        return {_OFFICIAL[name]: subdirs[name] for name in names}
    return None


def collect_images(
    image_dir,
    *,
    val_dir=None,
    test_dir=None,
    validation_percentage: float = 10,
    testing_percentage: float = 10,
) -> LabelledImages:
    """List the labelled images and assign each to a split.

    Three layouts are understood, in this order:

    1. ``val_dir`` and/or ``test_dir`` given: ``image_dir`` is all training
       data, the other folders are the validation and testing parts.
    2. ``image_dir`` holds ``train/`` and ``val/`` and/or ``test/`` (only
       those): the official splits of a dataset such as the Grocery Store
       dataset.
    3. Otherwise retrain.py's stable hash split of file names
       (``retrain_split``) with the given percentages.

    Raises
    ------
    FileNotFoundError, NotADirectoryError
        A folder does not exist or is a file.
    ValueError
        No images, or fewer than two classes in the training part.
    """
    root = Path(image_dir)
    if not root.exists():
        raise FileNotFoundError(
            f"Image folder {str(root)!r} does not exist. Pass a folder holding "
            "one subfolder per class."
        )
    folders = None
    if val_dir is None and test_dir is None and root.is_dir():
        folders = _official_subfolders(root)
    if val_dir is not None or test_dir is not None or folders is not None:
        if folders is None:
            folders = {"training": root}
            if val_dir is not None:
                folders["validation"] = Path(val_dir)
            if test_dir is not None:
                folders["testing"] = Path(test_dir)
            layout = "folders"
        else:
            layout = "official-subfolders"
        paths, labels, split = [], [], []
        for name in SPLITS:
            if name in folders:
                p, y = _folder(folders[name])
                paths.append(p)
                labels.append(y)
                split.append(np.full(len(p), name, dtype=object))
        data = LabelledImages(
            np.concatenate(paths),
            np.concatenate(labels),
            np.concatenate(split).astype(str),
            layout,
            {k: str(v) for k, v in folders.items()},
        )
    else:
        from embedclf.model_selection._split import retrain_split

        paths, labels = _folder(root)
        split = np.asarray(
            retrain_split(paths, validation_percentage, testing_percentage)
        ).astype(str)
        data = LabelledImages(paths, labels, split, "hash-split", {"all": str(root)})
    _check_training_classes(data, image_dir)
    _check_no_class_vanishes(data)
    return data


def _check_no_class_vanishes(data: LabelledImages) -> None:
    """A class with images but none in the training part: refuse or warn.

    The hash split put all of them in the held-out parts, so the model would
    silently lack that class: an error. A class only in a ``--val-dir`` /
    ``--test-dir`` folder is the user's choice (e.g. to see how unknown
    images are scored): a warning that it is always scored wrong.
    """
    trained = set(data.labels[data.split == "training"].tolist())
    missing = sorted(set(data.labels.tolist()) - trained)
    if not missing:
        return
    counts = {c: int((data.labels == c).sum()) for c in missing}
    shown = ", ".join(
        f"{c!r} ({n} image{'s' if n != 1 else ''})" for c, n in list(counts.items())[:5]
    )
    if len(missing) > 5:
        shown += f" and {len(missing) - 5} more"
    if data.layout == "hash-split":
        raise ValueError(
            f"The hash split puts every image of class {shown} in the validation "
            "or testing part, so the model would be trained without it. Add "
            "images of that class, lower --validation-percentage and "
            "--testing-percentage, or give the parts as folders with --val-dir "
            "and --test-dir."
        )
    logger.warning(
        "Class %s has validation or testing images but no training images: the "
        "model cannot predict it, so each of its images counts as an error.",
        shown,
    )


def _check_training_classes(data: LabelledImages, image_dir) -> None:
    train_labels = data.labels[data.split == "training"]
    classes = np.unique(train_labels)
    if len(classes) < 2:
        found = f"only class {_label_repr(classes[0])}" if len(classes) else "no images"
        raise ValueError(
            f"The training images in {str(image_dir)!r} have {found}; a "
            "classifier needs at least 2 classes. Add one subfolder per class "
            "(at least two), each with images."
        )


def cross_entropy_score(estimator, X, y) -> float:
    """Mean cross-entropy of ``estimator`` on (X, y), as a scorer.

    Classes the estimator never saw get probability 1e-15 instead of an error,
    so the scorer works on cross-validation folds missing a rare class. As a
    loss, larger is worse: GridSearchCV must not rank by it.
    """
    proba = estimator.predict_proba(X)
    index = {c: j for j, c in enumerate(estimator.classes_)}
    p = np.array([proba[i, index[c]] if c in index else 0.0 for i, c in enumerate(y)])
    return float(-np.mean(np.log(np.clip(p, 1e-15, 1.0))))


def make_head(classifier: str, *, C=1.0, class_weight=None):
    """A fresh classifier of the kind named on the command line."""
    if classifier == "softmax":
        from embedclf.heads._linear import SoftmaxClassifier

        return SoftmaxClassifier(C=C, class_weight=class_weight)
    if classifier == "svm":
        from embedclf.heads._svm import SVMClassifier

        return SVMClassifier(C=C, class_weight=class_weight, cv=3)
    if classifier == "mlp":  # no C: early stopping and alpha regularise it
        from embedclf.heads._mlp import MLPHeadClassifier

        return MLPHeadClassifier(class_weight=class_weight, random_state=0)
    raise ValueError(
        f"classifier must be 'softmax', 'svm' or 'mlp'; got {classifier!r}."
    )  # pragma: no cover - argparse restricts the choices


def cv_splits(y, groups=None, *, max_splits: int = 3, random_state: int = 0):
    """Stratified (grouped, when ``groups`` is given) folds for tuning.

    The number of folds is the smallest class size, capped at ``max_splits``
    and at least 2; views of one image (one group) stay in one fold.
    """
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    _, counts = np.unique(y, return_counts=True)
    if groups is not None:
        _, first = np.unique(groups, return_index=True)
        _, counts = np.unique(np.asarray(y)[first], return_counts=True)
    n_splits = int(max(2, min(max_splits, counts.min())))
    if counts.min() < 2:
        raise ValueError(
            f"Class {_label_repr(np.unique(y)[counts.argmin()])} has only "
            f"{counts.min()} training image; tuning C by cross-validation needs "
            "at least 2 per class. Add images, or pass --C with a fixed value."
        )
    if groups is None:
        splitter = StratifiedKFold(n_splits, shuffle=True, random_state=random_state)
        return list(splitter.split(np.zeros((len(y), 1)), y))
    splitter = StratifiedGroupKFold(n_splits, shuffle=True, random_state=random_state)
    return list(splitter.split(np.zeros((len(y), 1)), y, groups))


def _search_estimator(base):
    """``base`` with a looser tolerance: enough to rank C, several times faster.

    The final head is refitted with the default tolerance.
    """
    if "tol" in base.get_params() and base.get_params()["tol"] < 1e-3:
        return base.set_params(tol=1e-3)
    return base


def tune_head(X, y, *, classifier, C_grid, class_weight=None, groups=None, n_jobs=None):
    """Pick ``C`` from ``C_grid`` by cross-validated accuracy; refit on all.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,)
    classifier : {"softmax", "svm", "mlp"}
    C_grid : sequence of float
        A single value skips the search (and the cross-validation). Not used
        by "mlp", which is fitted once (``best_C`` is None).
    class_weight : "balanced" or None
    groups : ndarray of shape (n_samples,) or None
        Source image of each row (augmented views share one).
    n_jobs : int or None

    Returns
    -------
    head : fitted classifier
    result : dict
        ``best_C``, ``cv_accuracy`` (None without search), ``splits`` and
        ``grid``: one dict per C with mean train/validation accuracy and
        cross-entropy.
    """
    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV

    if classifier == "mlp":  # fitted once: early stopping picks its epochs
        head = make_head(classifier, class_weight=class_weight).fit(X, y)
        return head, {"best_C": None, "cv_accuracy": None, "grid": [], "splits": None}
    base = make_head(classifier, class_weight=class_weight)
    C_grid = [float(c) for c in C_grid]
    if len(C_grid) == 1:
        head = clone(base).set_params(C=C_grid[0]).fit(X, y)
        return head, {
            "best_C": C_grid[0],
            "cv_accuracy": None,
            "grid": [],
            "splits": None,
        }
    splits = cv_splits(y, groups)
    search = GridSearchCV(
        _search_estimator(clone(base)),
        {"C": C_grid},
        scoring={"accuracy": "accuracy", "cross_entropy": cross_entropy_score},
        refit=False,
        cv=splits,
        return_train_score=True,
        n_jobs=n_jobs,
        error_score="raise",
    ).fit(X, y)
    res = search.cv_results_
    grid = [
        {
            "C": C_grid[i],
            "train_accuracy": float(res["mean_train_accuracy"][i]),
            "validation_accuracy": float(res["mean_test_accuracy"][i]),
            "train_cross_entropy": float(res["mean_train_cross_entropy"][i]),
            "validation_cross_entropy": float(res["mean_test_cross_entropy"][i]),
        }
        for i in range(len(C_grid))
    ]
    best = int(np.argmax(res["mean_test_accuracy"]))
    best_C = C_grid[best]
    cv_accuracy = float(res["mean_test_accuracy"][best])
    logger.info("best C=%g (cv accuracy %.4f)", best_C, cv_accuracy)
    head = clone(base).set_params(C=best_C).fit(X, y)
    return head, {
        "best_C": best_C,
        "cv_accuracy": cv_accuracy,
        "grid": grid,
        "splits": splits,
    }


#: Known validation images needed to set the unknown threshold on them.
MIN_VALIDATION = 50


def wrap_open_set(
    head, X, y, *, unknown: str, splits=None, groups=None, X_val=None, y_val=None,
    refit_on_val=False,
):  # fmt: skip
    """Wrap a fitted head in OpenSetClassifier per ``--unknown``.

    ``unknown`` is "auto" (the default fusion score, its threshold set on the
    validation part when it has at least :data:`MIN_VALIDATION` known images,
    else on group-aware out-of-fold scores), or a number: the lowest max
    probability accepted as a known class (the 0.1.0 rule, no distance).
    Rows labelled "unknown" in ``y`` or ``y_val`` are background images.
    ``refit_on_val``: the threshold is set on ``X_val`` with models fitted on
    ``X``, then they are refitted on both (``OpenSetClassifier.refit_on_val``).
    For the 0.1.0 rule, ``splits`` index the rows not labelled "unknown"
    (only those are cross-validated); None builds them here, keeping each
    ``groups`` value (the views of one image) in one fold.
    """
    from sklearn.base import clone

    from embedclf.heads._open_set import OpenSetClassifier

    if unknown == "auto":
        model = OpenSetClassifier(
            clone(head), unknown_label="unknown", cv=3, refit_on_val=refit_on_val
        )
        n_val = 0 if y_val is None else int(np.sum(np.asarray(y_val) != "unknown"))
        if n_val >= MIN_VALIDATION:
            return model.fit(X, y, X_val=X_val, y_val=y_val)
        return model.fit(X, y)
    if splits is None:
        known = np.asarray(y) != "unknown"
        splits = cv_splits(
            np.asarray(y)[known], None if groups is None else groups[known]
        )
    model = OpenSetClassifier(
        clone(head),
        unknown_label="unknown",
        detector=None,
        probability_threshold=float(unknown),
        distance_threshold=None,
        cv=splits,
    )
    return model.fit(X, y)


def parse_unknown(value: str) -> str:
    """Validate ``--unknown``: "auto", "off" or a probability in [0, 1]."""
    if value in ("auto", "off"):
        return value
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not 0 <= number <= 1:
        raise ValueError(
            f"--unknown must be 'auto', 'off' or a probability threshold between "
            f"0 and 1; got {value!r}."
        )
    return str(number)
