"""The labelled images of ``embedclf train`` and the split each belongs to.

Official ``train/ val/ test/`` subfolders, ``val_dir``/``test_dir`` folders,
or retrain.py's stable hash split of file names. Nothing here prints.
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

__all__ = ["SPLITS", "LabelledImages", "collect_images", "parse_unknown"]

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
    """Image paths with string labels and the split each belongs to.

    ``excluded`` is None, or what ``exclude`` left out (``drop_excluded``):
    ``{"file": ..., "n_listed": ..., "left_out": [paths]}``.
    """

    paths: np.ndarray
    labels: np.ndarray
    split: np.ndarray
    layout: str
    sources: dict = field(default_factory=dict)
    excluded: dict | None = None

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
    exclude=None,
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

    ``exclude`` names a text file of image paths to leave out (one a line,
    ``#`` comments), such as the ``exclude.txt`` of ``embedclf audit``; they
    are dropped after the split, so the other images keep their part.

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
    if exclude is not None:
        from embedclf.workflow._exclude import drop_excluded

        data = drop_excluded(data, exclude)
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
