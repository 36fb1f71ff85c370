"""TensorFlow's start-up log lines stay off the CLI's stderr; ``-vv`` shows them.

Each test runs the real ``embedclf`` in a subprocess with
``TF_CPP_MIN_LOG_LEVEL`` removed from its environment (``.ci/run`` and
``conftest.py`` set it), so what is asserted is what a user's terminal shows.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from _subprocess_cli import run_cli, user_env
from conftest import make_image_folder

from embedclf.embedding._quiet import _drop_tf_log_lines

pytestmark = pytest.mark.tf

# What TensorFlow 2.21 prints on import on a CPU-only machine.
NOISE = [
    "absl::InitializeLog",
    "oneDNN",
    "Could not find cuda drivers",
    "cuInit",
    "cpu_feature_guard",
]
TF_LOG_LINE = re.compile(r"^[IWEF]\d{4} [\d:.]+ +\d+ [\w.\-]+:\d+\] ", re.M)


def assert_quiet(stderr):
    assert not [word for word in NOISE if word in stderr], stderr
    assert not TF_LOG_LINE.search(stderr), stderr


@pytest.mark.slow
def test_embed_prints_no_tensorflow_noise_and_vv_shows_it(tmp_path, tiny_model_dir):
    data = make_image_folder(tmp_path / "images", n_per_class=3)
    quiet = run_cli(
        "embed", data, "--cache", tmp_path / "a.h5", "--model", tiny_model_dir
    )
    assert quiet.returncode == 0, quiet.stderr
    assert "Embedded 6 images" in quiet.stdout
    assert_quiet(quiet.stderr)
    # -vv: TensorFlow's lines are back (a fresh cache, so the backbone runs).
    loud = run_cli(
        "-vv", "embed", data, "--cache", tmp_path / "b.h5", "--model", tiny_model_dir
    )
    assert loud.returncode == 0, loud.stderr
    assert TF_LOG_LINE.search(loud.stderr), loud.stderr


def test_verbose_log_lines_carry_one_prefix(tmp_path, tiny_model_dir):
    # The CLI's log format adds the logger's name; messages must not repeat it.
    data = make_image_folder(tmp_path / "images", n_per_class=3)
    res = run_cli(
        "-v", "embed", data, "--cache", tmp_path / "a.h5", "--model", tiny_model_dir
    )
    assert res.returncode == 0, res.stderr
    assert "embedclf: 6 images: 6 computed by the backbone" in res.stderr, res.stderr
    assert "embedclf: embedclf:" not in res.stderr


@pytest.mark.slow
def test_train_predict_evaluate_export_print_no_tensorflow_noise(
    tmp_path, tiny_model_dir
):
    data = make_image_folder(tmp_path / "images", n_per_class=8)
    out = tmp_path / "model"
    train = run_cli(
        "train", data, "--output", out, "--model", tiny_model_dir, "--C", "1",
        "--validation-percentage", "0", "--testing-percentage", "0",
    )  # fmt: skip
    assert train.returncode == 0, train.stderr
    assert_quiet(train.stderr)
    predict = run_cli("predict", out, data / "red")
    assert predict.returncode == 0, predict.stderr
    assert "red" in predict.stdout
    assert_quiet(predict.stderr)
    evaluate = run_cli("evaluate", out, data)
    assert evaluate.returncode == 0, evaluate.stderr
    assert "Accuracy on" in evaluate.stdout
    assert_quiet(evaluate.stderr)
    export = run_cli("export", out, "--savedmodel", tmp_path / "exported")
    assert export.returncode == 0, export.stderr
    assert (tmp_path / "exported" / "saved_model.pb").exists()
    assert_quiet(export.stderr)


@pytest.mark.slow
def test_library_one_liner_keeps_other_stderr_lines(tmp_path):
    code = (
        "import sys, embedclf\n"
        "assert embedclf.quiet_tensorflow()\n"
        "import tensorflow as tf\n"
        "print('after import', file=sys.stderr)\n"
        "assert not embedclf.quiet_tensorflow()  # already imported\n"
        "print(tf.constant(2.0).numpy())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=user_env()
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "2.0"
    assert done.stderr.strip() == "after import"


@pytest.mark.parametrize(
    "line",
    [
        b"WARNING: All log messages before absl::InitializeLog() is called are "
        b"written to STDERR\n",
        b"I0000 00:00:1796173577.600439   14310 port.cc:153] oneDNN custom ...\n",
        b"E0000 00:00:1796173589.187882   14310 cuda_platform.cc:52] failed call "
        b"to cuInit: INTERNAL\n",
        b"W1202 01:02:03.456789 123 some_file.cc:7] a warning\n",
    ],
)
def test_tensorflow_lines_are_dropped_others_kept(line):
    kept = b"Traceback (most recent call last):\nI0000 is not a log line\n"
    assert _drop_tf_log_lines(line + kept + line) == kept
