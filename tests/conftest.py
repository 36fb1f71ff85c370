"""Shared fixtures: a tiny but real TF Hub-style SavedModel and real image files.

Nothing here mocks TensorFlow, h5py or the filesystem: the models are real
SavedModels exported with ``tf.saved_model.save`` and the images are real
files written with Pillow.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# runtime="auto" means TensorFlow in the tests (bit-exact comparisons with
# TensorFlow, no conversion per tiny model); tests/embedding/test_runtime.py
# passes runtime="openvino" or clears this.
os.environ.setdefault("EMBEDCLF_RUNTIME", "tensorflow")

#: ``../shared`` beside the checkout; EMBEDCLF_SHARED names another place
#: (a git worktree, say), for the tests and the benchmarks alike.
SHARED = Path(
    os.environ.get("EMBEDCLF_SHARED")
    or Path(__file__).resolve().parents[1].parent / "shared"
)
SHARED_MODEL = SHARED / "models" / "efficientnet_lite0_feature_vector"
SHARED_MODEL_LITE2 = SHARED / "models" / "efficientnet_lite2_feature_vector"
SHARED_DATA = SHARED / "data" / "grocery_store"


def build_tiny_savedmodel(export_dir, *, dim=16, seed=0, image_size=32):
    """Export a small conv net with the TF Hub image feature-vector interface.

    float32 images in [0, 1] of shape [batch, H, W, 3] -> [batch, dim]. The
    module resizes its input to ``image_size`` inside, as TF Hub modules of
    this interface may, and declares no static input size.
    """
    import tensorflow as tf

    rng = np.random.default_rng(seed)

    class TinyFeatureVector(tf.Module):
        def __init__(self):
            super().__init__()
            self.w1 = tf.Variable(rng.normal(0, 0.5, (3, 3, 3, 8)).astype("float32"))
            self.b1 = tf.Variable(rng.normal(0, 0.1, (8,)).astype("float32"))
            self.w2 = tf.Variable(rng.normal(0, 0.3, (3, 3, 8, 16)).astype("float32"))
            self.w3 = tf.Variable(rng.normal(0, 0.3, (16 + 3, dim)).astype("float32"))

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
        def __call__(self, images):
            x = tf.image.resize(images, (image_size, image_size))
            h = tf.nn.relu(tf.nn.conv2d(x, self.w1, 1, "SAME") + self.b1)
            h = tf.nn.max_pool2d(h, 2, 2, "VALID")
            h = tf.nn.relu(tf.nn.conv2d(h, self.w2, 1, "SAME"))
            pooled = tf.reduce_mean(h, axis=[1, 2])
            colour = tf.reduce_mean(x, axis=[1, 2])
            return tf.matmul(tf.concat([pooled, colour], axis=1), self.w3)

    module = TinyFeatureVector()
    tf.saved_model.save(module, str(export_dir))
    return Path(export_dir)


_store_numbers = itertools.count()


@pytest.fixture(scope="session", autouse=True)
def _session_openvino_store(tmp_path_factory):
    """The store of module- and session-scoped fixtures (set before the
    per-test one below, which replaces it within each test)."""
    old = os.environ.get("EMBEDCLF_OPENVINO_DIR")
    os.environ["EMBEDCLF_OPENVINO_DIR"] = str(
        tmp_path_factory.getbasetemp() / "openvino-store-session"
    )
    yield
    if old is None:
        os.environ.pop("EMBEDCLF_OPENVINO_DIR", None)
    else:
        os.environ["EMBEDCLF_OPENVINO_DIR"] = old


@pytest.fixture(autouse=True)
def openvino_store(tmp_path_factory, monkeypatch):
    """Each test its own store of converted backbones (never ~/.cache), so
    that no test sees another's conversions: the folder is named here and
    created only by a test that converts (subprocesses inherit it)."""
    store = tmp_path_factory.getbasetemp() / f"openvino-store-{next(_store_numbers)}"
    monkeypatch.setenv("EMBEDCLF_OPENVINO_DIR", str(store))
    return store


def unconvertible_savedmodel(path):
    """A real SavedModel using Lgamma, which OpenVINO 2026.4 cannot convert."""
    import tensorflow as tf

    class Odd(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3])])
        def __call__(self, images):
            return tf.reduce_mean(tf.math.lgamma(images + 1.0), axis=[1, 2])

    tf.saved_model.save(Odd(), str(path))
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """Path to a real 16-d feature-vector SavedModel (built once per session)."""
    pytest.importorskip("tensorflow")
    return build_tiny_savedmodel(tmp_path_factory.mktemp("models") / "tiny16")


@pytest.fixture(scope="session")
def tiny_model_dir_b(tmp_path_factory):
    """A second, different real SavedModel (8-d, other weights)."""
    pytest.importorskip("tensorflow")
    return build_tiny_savedmodel(
        tmp_path_factory.mktemp("models_b") / "tiny8", dim=8, seed=1
    )


def write_image(path, *, seed=0, size=(40, 30), mode="RGB", fmt=None, colour=None):
    """Write a real image file with random-ish content; returns the path.

    ``colour`` (an RGB triple) biases the image towards a class colour so that
    classifiers have something to learn.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    w, h = size
    arr = rng.integers(0, 256, (h, w, 3)).astype(np.float64)
    if colour is not None:
        arr = 0.35 * arr + 0.65 * np.asarray(colour, dtype=np.float64)
    img = Image.fromarray(arr.clip(0, 255).astype(np.uint8), "RGB")
    if mode != "RGB":
        img = img.convert(mode)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format=fmt)
    return path


CLASS_COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 200, 40),
    "blue": (30, 40, 220),
    "yellow": (230, 220, 20),
}


def make_image_folder(root, classes=("red", "green"), n_per_class=10, seed=0):
    """A folder of class subfolders with colour-biased real JPEG/PNG images."""
    root = Path(root)
    for ci, name in enumerate(classes):
        for i in range(n_per_class):
            ext = ".jpg" if i % 2 == 0 else ".png"
            write_image(
                root / name / f"{name}_{i:03d}{ext}",
                seed=seed * 100_000 + ci * 1000 + i,
                colour=CLASS_COLOURS.get(name, (128, 128, 128)),
            )
    return root


@pytest.fixture
def image_folder(tmp_path):
    """A two-class folder (red, green) of 10 images each."""
    return make_image_folder(tmp_path / "images")


def heavy_modules_loaded(code: str, modules=("tensorflow", "h5py")):
    """Run ``code`` in a new interpreter.

    Returns the names in ``modules`` that it imported, and what it printed.
    """
    check = (
        f"\nimport json, sys\nheavy = [m for m in {list(modules)!r}"
        " if m in sys.modules]\n"
        "print('HEAVY', json.dumps(heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code + check], capture_output=True, text=True, check=True
    ).stdout
    printed, _, heavy = out.rpartition("HEAVY ")
    return json.loads(heavy), printed


@contextlib.contextmanager
def mounted_tmpfs(folder, size: str, why_skipped: str = ""):
    """Mount a tmpfs of ``size`` (e.g. "1m") on new ``folder``: a real, full
    filesystem for disk-full tests. Skips the test where it cannot (root only)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root" + why_skipped)
    folder = Path(folder)
    folder.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip()})")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)
