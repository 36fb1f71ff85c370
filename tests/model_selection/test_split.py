"""HashSplit and retrain_split against retrain.py's published algorithm."""

import hashlib
import os
import re
from pathlib import Path

import numpy as np
import pytest
from sklearn.model_selection import cross_val_score

from embedclf import HashSplit, SoftmaxClassifier, retrain_split

MAX_NUM_IMAGES_PER_CLASS = 2**27 - 1  # ~134M


def as_bytes(bytes_or_text, encoding="utf-8"):
    """tf.compat.as_bytes, for str and bytes."""
    if isinstance(bytes_or_text, bytes):
        return bytes_or_text
    return bytes_or_text.encode(encoding)


def _which_set(hash_name, validation_percentage, testing_percentage):
    hash_name_hashed = hashlib.sha1(as_bytes(hash_name)).hexdigest()
    percentage_hash = (int(hash_name_hashed, 16) % (MAX_NUM_IMAGES_PER_CLASS + 1)) * (
        100.0 / MAX_NUM_IMAGES_PER_CLASS
    )
    if percentage_hash < validation_percentage:
        return "validation"
    elif percentage_hash < (testing_percentage + validation_percentage):
        return "testing"
    else:
        return "training"


def reference_basename(file_name, validation_percentage, testing_percentage):
    """The published rule on the base name (the issue's spelling of it)."""
    base_name = os.path.basename(file_name)
    hash_name = re.sub(r"_nohash_.*$", "", base_name)
    return _which_set(hash_name, validation_percentage, testing_percentage)


def reference_retrain_py(file_name, validation_percentage, testing_percentage):
    """TF Hub retrain.py create_image_lists: it hashes file_name, the globbed path."""
    hash_name = re.sub(r"_nohash_.*$", "", file_name)
    return _which_set(hash_name, validation_percentage, testing_percentage)


NAMES = [
    "flower_photos/daisy/5547758_eea9edfd54_n.jpg",
    "flower_photos/roses/12240303_80d87f77a3_n.jpg",
    "speech/yes/bfd26d6b_nohash_0.wav",
    "speech/yes/bfd26d6b_nohash_1.wav",
    "speech/no/bfd26d6b_nohash_4.wav",
    "cats/IMG_0001.JPG",
    "cats/IMG_0001_nohash_crop.JPG",
    "dogs/a_nohash_.jpg",
    "dogs/a.jpg",
    "dogs/_nohash_only.png",
    "unicode/caf\u00e9_\u00e9t\u00e9.jpg",
    "nested/deeper/dir/x y z.jpeg",
] + [f"class{i % 3}/img_{i:04d}.jpg" for i in range(300)]


@pytest.mark.parametrize("validation, testing", [(10, 10), (20, 5), (0, 30), (33.3, 0)])
def test_retrain_split_matches_published_algorithm(validation, testing):
    expected = [reference_basename(n, validation, testing) for n in NAMES]
    got = retrain_split(
        NAMES, validation_percentage=validation, testing_percentage=testing
    )
    assert got.tolist() == expected
    # the list exercises every set that has a non-zero percentage
    assert ("validation" in expected) == (validation > 0)
    assert ("testing" in expected) == (testing > 0)


@pytest.mark.parametrize("image_dir", ["flower_photos", "/home/me/flower_photos/"])
def test_hash_on_path_matches_retrain_py(image_dir):
    # retrain.py globs os.path.join(image_dir, dir_name, "*.jpg") and hashes that
    paths = [
        os.path.join(image_dir, os.path.dirname(n), os.path.basename(n)) for n in NAMES
    ]
    expected = [reference_retrain_py(p, 10, 10) for p in paths]
    assert retrain_split(paths, hash_on="path").tolist() == expected
    train, test = next(HashSplit(hash_on="path").split(paths))
    assert train.tolist() == [i for i, e in enumerate(expected) if e == "training"]
    assert test.tolist() == [i for i, e in enumerate(expected) if e == "validation"]
    # the folder changes the assignment in this mode, unlike the default
    assert expected != [
        reference_retrain_py(os.path.basename(p), 10, 10) for p in paths
    ]


def test_nohash_variants_land_together():
    bases = [f"speaker{i:03d}" for i in range(200)]
    variants = [f"{d}/{b}_nohash_{k}.wav" for b in bases for k, d in enumerate("abc")]
    labels = retrain_split(variants).reshape(len(bases), 3)
    assert (labels == labels[:, :1]).all()
    # ... which is not trivially true: the bases themselves are spread out
    assert set(labels[:, 0]) == {"training", "validation", "testing"}
    # and the variant suffix is really ignored (hash of the base alone)
    assert labels[:, 0].tolist() == retrain_split(bases).tolist()


def test_names_that_are_not_utf8_hash_their_bytes():
    # Legal on Linux: Latin-1 names; Python holds them as surrogate escapes.
    raw = [b"caf\xe9_%d.jpg" % i for i in range(60)] + [b"\xff\xfe_nohash_1.png"]
    expected = [_which_set(re.sub(rb"_nohash_.*$", b"", n), 10, 10) for n in raw]
    names = [os.fsdecode(b"cls/" + n) for n in raw]
    assert retrain_split(names).tolist() == expected
    assert retrain_split([b"cls/" + n for n in raw]).tolist() == expected  # bytes
    assert set(expected) == {"training", "validation", "testing"}
    # UTF-8 names keep the split they had (test above): their bytes are UTF-8.
    assert retrain_split(["caf\u00e9.jpg"]).tolist() == [
        _which_set("caf\u00e9.jpg", 10, 10)
    ]


def test_folder_is_ignored_and_pathlike_accepted():
    names = [f"img_{i}.jpg" for i in range(50)]
    a = retrain_split([f"red/{n}" for n in names])
    b = retrain_split([Path("/elsewhere/green") / n for n in names])
    assert a.tolist() == b.tolist()


def test_proportions_close_to_percentages():
    labels = retrain_split([f"img_{i}.jpg" for i in range(5000)], 20, 10)
    fractions = {s: np.mean(labels == s) for s in ("training", "validation", "testing")}
    assert abs(fractions["validation"] - 0.20) < 0.02
    assert abs(fractions["testing"] - 0.10) < 0.02


def test_adding_files_keeps_existing_assignments():
    names = [f"img_{i}.jpg" for i in range(100)]
    before = retrain_split(names)
    after = retrain_split(names + [f"new_{i}.jpg" for i in range(100)])
    assert after[:100].tolist() == before.tolist()


@pytest.mark.parametrize("subset", ["validation", "testing"])
def test_hash_split_yields_training_and_subset(subset):
    labels = retrain_split(NAMES)
    splits = list(HashSplit(subset=subset).split(NAMES))
    assert len(splits) == HashSplit().get_n_splits() == 1
    train, test = splits[0]
    assert train.tolist() == np.flatnonzero(labels == "training").tolist()
    assert test.tolist() == np.flatnonzero(labels == subset).tolist()
    other = "testing" if subset == "validation" else "validation"
    assert not set(np.flatnonzero(labels == other)) & (set(train) | set(test))


def test_hash_split_reads_paths_from_groups_with_embeddings():
    rng = np.random.default_rng(0)
    y = np.array([n.split("/")[0] for n in NAMES])
    X = rng.normal(size=(len(NAMES), 3))
    by_x = list(HashSplit().split(NAMES))
    by_groups = list(HashSplit().split(X, y, groups=NAMES))
    assert [t.tolist() for t in by_x[0]] == [t.tolist() for t in by_groups[0]]

    # usable wherever scikit-learn takes a cv splitter
    keep = np.isin(y, ["class0", "class1"])
    X[keep & (y == "class1")] += 3
    scores = cross_val_score(
        SoftmaxClassifier(), X[keep], y[keep], cv=HashSplit(),
        groups=np.array(NAMES)[keep],
    )  # fmt: skip
    assert scores.shape == (1,) and scores[0] > 0.9


def test_hash_split_errors():
    X = np.zeros((10, 3))
    msg = (
        "HashSplit needs the image file paths: pass them as X (a list of paths, as "
        "for a Pipeline starting with ImageEmbedder) or as groups=paths when X "
        "holds embeddings."
    )
    with pytest.raises(TypeError, match=re.escape(msg)):
        next(HashSplit().split(X))

    msg = "subset must be 'validation' or 'testing'; got 'training'."
    with pytest.raises(ValueError, match=re.escape(msg)):
        next(HashSplit(subset="training").split(NAMES))

    msg = "hash_on must be 'basename' or 'path'; got 'name'."
    with pytest.raises(ValueError, match=re.escape(msg)):
        next(HashSplit(hash_on="name").split(NAMES))

    msg = (
        "HashSplit put none of the 2 files in the validation set "
        "(validation_percentage=10, testing_percentage=10). Use more images or "
        "change the percentages."
    )
    two = [n for n in NAMES if reference_basename(n, 10, 10) == "training"][:2]
    with pytest.raises(ValueError, match=re.escape(msg)):
        next(HashSplit().split(two))


@pytest.mark.parametrize(
    "kwargs, msg",
    [
        (
            {"validation_percentage": 120},
            "validation_percentage must be a number between 0 and 100; got 120. It "
            "is the percentage of files put in that set, as in retrain.py's "
            "--validation_percentage flag.",
        ),
        (
            {"testing_percentage": "10"},
            "testing_percentage must be a number between 0 and 100; got '10'.",
        ),
        (
            {"validation_percentage": 60, "testing_percentage": 50},
            "validation_percentage + testing_percentage must be at most 100; got "
            "60 + 50. Lower one of them.",
        ),
    ],
)
def test_percentage_errors(kwargs, msg):
    with pytest.raises(ValueError, match=re.escape(msg)):
        retrain_split(NAMES, **kwargs)
    with pytest.raises(ValueError, match=re.escape(msg)):
        next(HashSplit(**kwargs).split(NAMES))
