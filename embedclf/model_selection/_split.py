"""retrain.py's deterministic training/validation/testing split, as a CV splitter."""

from __future__ import annotations

import hashlib
import os
import re
from numbers import Real

import numpy as np
from sklearn.model_selection import BaseCrossValidator

__all__ = ["HashSplit", "retrain_split"]

# Same constant as retrain.py: the hash space is cut into 2**27 buckets.
MAX_NUM_IMAGES_PER_CLASS = 2**27 - 1

_HASH_ON = ("basename", "path")


def _check_percentages(validation_percentage, testing_percentage) -> None:
    for name, value in [
        ("validation_percentage", validation_percentage),
        ("testing_percentage", testing_percentage),
    ]:
        if (
            not isinstance(value, Real)
            or isinstance(value, bool)
            or not (0 <= value <= 100)
        ):
            raise ValueError(
                f"{name} must be a number between 0 and 100; got {value!r}. It is "
                "the percentage of files put in that set, as in retrain.py's "
                f"--{name} flag."
            )
    if validation_percentage + testing_percentage > 100:
        raise ValueError(
            f"validation_percentage + testing_percentage must be at most 100; got "
            f"{validation_percentage} + {testing_percentage}. Lower one of them."
        )


def _percentage_hash(path, hash_on: str = "basename") -> float:
    """retrain.py's position of a file in [0, 100]."""
    file_name = os.fsdecode(os.fspath(path))
    name = os.path.basename(file_name) if hash_on == "basename" else file_name
    # Everything after "_nohash_" is ignored, so that variants of one picture
    # (e.g. "cat_nohash_1.jpg", "cat_nohash_2.jpg") land in the same set.
    hash_name = re.sub(r"_nohash_.*$", "", name)
    # The name's bytes as the filesystem spells them: UTF-8 for UTF-8 names
    # (as retrain.py's tf.compat.as_bytes), and legal non-UTF-8 names, which
    # Python holds as surrogate escapes, as their original bytes.
    hash_name_hashed = hashlib.sha1(os.fsencode(hash_name)).hexdigest()
    return (int(hash_name_hashed, 16) % (MAX_NUM_IMAGES_PER_CLASS + 1)) * (
        100.0 / MAX_NUM_IMAGES_PER_CLASS
    )


def retrain_split(
    paths, validation_percentage=10, testing_percentage=10, *, hash_on="basename"
):
    """Label each image path "training", "validation" or "testing" as retrain.py does.

    The set depends only on the SHA1 of the file name, with anything from
    ``"_nohash_"`` on ignored, so it is stable across runs and does not move
    when files are added or removed.

    Parameters
    ----------
    paths : iterable of str or path-like
        Image file paths. Only the base name is hashed, so the folder (class)
        does not matter. The name's bytes are hashed (``os.fsencode``): UTF-8
        for UTF-8 names, the original bytes for names that are not UTF-8.

    validation_percentage : float, default=10
        Percentage of files in the validation set.

    testing_percentage : float, default=10
        Percentage of files in the testing set.

    hash_on : {"basename", "path"}, default="basename"
        What is hashed. "basename": the file's base name, so the split does
        not depend on where the folder lives (as in TensorFlow's
        speech_commands ``which_set``). "path": the path string exactly as
        given, which is what TF Hub's ``retrain.py`` hashes; to reproduce a
        retrain.py run, pass ``os.path.join(image_dir, class_dir, file)`` with
        ``image_dir`` spelled as on its command line.

    Returns
    -------
    subsets : ndarray of str of shape (n_paths,)
        "training", "validation" or "testing" for each path.

    Raises
    ------
    ValueError
        If a percentage is outside [0, 100], their sum exceeds 100, or
        ``hash_on`` is not "basename" or "path".

    See Also
    --------
    HashSplit : The same split as a scikit-learn cross-validation splitter.

    Notes
    -----
    For each file, as in TensorFlow's ``retrain.py`` ``create_image_lists``
    (``name`` is ``os.path.basename(path)`` or ``path``, per ``hash_on``)::

        hash_name = re.sub(r"_nohash_.*$", "", name)
        h = int(hashlib.sha1(os.fsencode(hash_name)).hexdigest(), 16)
        percentage_hash = (h % (2**27)) * (100.0 / (2**27 - 1))
        if percentage_hash < validation_percentage: "validation"
        elif percentage_hash < testing_percentage + validation_percentage: "testing"
        else: "training"

    Examples
    --------
    >>> from embedclf import retrain_split
    >>> retrain_split(["cats/a.jpg", "dogs/a.jpg", "cats/b_nohash_1.jpg",
    ...                "cats/b_nohash_2.jpg", "cats/e.jpg"])
    array(['training', 'training', 'testing', 'testing', 'validation'],
          dtype='<U10')
    """
    _check_percentages(validation_percentage, testing_percentage)
    if hash_on not in _HASH_ON:
        raise ValueError(f"hash_on must be 'basename' or 'path'; got {hash_on!r}.")
    out = []
    for path in paths:
        percentage_hash = _percentage_hash(path, hash_on)
        if percentage_hash < validation_percentage:
            out.append("validation")
        elif percentage_hash < (testing_percentage + validation_percentage):
            out.append("testing")
        else:
            out.append("training")
    return np.array(out, dtype="<U10")


class HashSplit(BaseCrossValidator):
    """One train/validation (or train/test) split, exactly as retrain.py makes it.

    Each file goes to "training", "validation" or "testing" by the SHA1 of its
    name (see :func:`retrain_split`). ``split`` yields a single pair:
    the indices of the "training" files and those of the ``subset`` files.
    Files of the other held-out set are in neither, so tuning on "validation"
    never touches the "testing" images, as in the tutorial.

    Parameters
    ----------
    validation_percentage : float, default=10
        Percentage of files in the validation set.

    testing_percentage : float, default=10
        Percentage of files in the testing set.

    subset : {"validation", "testing"}, default="validation"
        Which held-out set ``split`` yields as the test indices. Use
        "validation" inside GridSearchCV and "testing" for the final score.

    hash_on : {"basename", "path"}, default="basename"
        Hash the base name, or the whole path string as TF Hub's retrain.py
        does; see :func:`retrain_split`.

    See Also
    --------
    retrain_split : Label each path with its set.

    Notes
    -----
    The paths are read from ``X`` (a list of image paths, as given to a
    Pipeline starting with ImageEmbedder) or, when ``X`` already holds
    embeddings, from ``groups`` (pass ``groups=paths`` to ``split``,
    ``cross_val_score`` or ``GridSearchCV.fit``). ``get_n_splits`` is 1.

    Examples
    --------
    >>> from embedclf import HashSplit
    >>> paths = ["cats/a.jpg", "dogs/a.jpg", "cats/b_nohash_1.jpg",
    ...          "cats/b_nohash_2.jpg", "cats/e.jpg"]
    >>> cv = HashSplit()
    >>> cv.get_n_splits()
    1
    >>> [(train.tolist(), test.tolist()) for train, test in cv.split(paths)]
    [([0, 1], [4])]
    >>> cv = HashSplit(subset="testing")
    >>> [(train.tolist(), test.tolist()) for train, test in cv.split(paths)]
    [([0, 1], [2, 3])]
    """

    def __init__(
        self,
        validation_percentage=10,
        testing_percentage=10,
        *,
        subset="validation",
        hash_on="basename",
    ):
        self.validation_percentage = validation_percentage
        self.testing_percentage = testing_percentage
        self.subset = subset
        self.hash_on = hash_on

    def split(self, X, y=None, groups=None):
        """Yield the one (train, test) pair of index arrays.

        Parameters
        ----------
        X : list of str or path-like, or array-like of shape (n_samples, n_features)
            Image paths, or embeddings when ``groups`` gives the paths.

        y : array-like of shape (n_samples,), default=None
            Ignored.

        groups : array-like of shape (n_samples,), default=None
            Image paths, used instead of ``X`` when given.

        Yields
        ------
        train : ndarray
            Indices of the "training" files.

        test : ndarray
            Indices of the ``subset`` files.

        Raises
        ------
        TypeError
            If neither ``groups`` nor ``X`` is a list of paths.
        ValueError
            If ``subset`` or a percentage is invalid, or if the training or
            ``subset`` set is empty.
        """
        if self.subset not in ("validation", "testing"):
            raise ValueError(
                f"subset must be 'validation' or 'testing'; got {self.subset!r}."
            )
        paths = self._paths(X, groups)
        labels = retrain_split(
            paths,
            self.validation_percentage,
            self.testing_percentage,
            hash_on=self.hash_on,
        )
        train = np.flatnonzero(labels == "training")
        test = np.flatnonzero(labels == self.subset)
        for name, idx in [("training", train), (self.subset, test)]:
            if idx.size == 0:
                raise ValueError(
                    f"HashSplit put none of the {len(paths)} files in the {name} "
                    f"set (validation_percentage={self.validation_percentage}, "
                    f"testing_percentage={self.testing_percentage}). Use more "
                    "images or change the percentages."
                )
        yield train, test

    @staticmethod
    def _paths(X, groups):
        source = X if groups is None else groups
        values = list(source) if np.ndim(source) == 1 else []
        if not values or not all(isinstance(v, (str, os.PathLike)) for v in values):
            raise TypeError(
                "HashSplit needs the image file paths: pass them as X (a list of "
                "paths, as for a Pipeline starting with ImageEmbedder) or as "
                "groups=paths when X holds embeddings."
            )
        return values

    def get_n_splits(self, X=None, y=None, groups=None):
        """Number of splits: always 1.

        Parameters
        ----------
        X, y, groups : object
            Ignored.

        Returns
        -------
        n_splits : int
            1.
        """
        return 1
