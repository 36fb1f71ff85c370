"""A re-train killed with SIGKILL never destroys the model it was replacing.

A subprocess re-saves an existing model directory and is killed (a real
``kill -9`` of itself, through the ``EMBEDCLF_TEST_KILL_AT`` hook of
``save_model_dir``) at each step; afterwards the directory loads either the
old model or the new one, whole, and predicts exactly as that model does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from embedclf import SoftmaxClassifier
from embedclf.workflow._model_dir import KILL_POINTS, load_model_dir, save_model_dir

_BACKBONE = {"handle": "m", "identity": "savedmodel:x", "kind": "savedmodel"}


def _data():
    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(0, 1, (15, 3)), rng.normal(3, 1, (15, 3))]
    return X


_RETRAIN = textwrap.dedent(
    """
    import sys
    import numpy as np
    from embedclf import SoftmaxClassifier
    from embedclf.workflow._model_dir import save_model_dir
    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(0, 1, (15, 3)), rng.normal(3, 1, (15, 3))]
    new = SoftmaxClassifier().fit(X, np.array(["new0"] * 15 + ["new1"] * 15))
    backbone = {"handle": "m", "identity": "savedmodel:x", "kind": "savedmodel"}
    save_model_dir(sys.argv[1], new, {"backbone": backbone, "metrics": {}})
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("step", KILL_POINTS)
def test_killed_resave_leaves_old_or_new_model_whole(tmp_path, step):
    X = _data()
    old = SoftmaxClassifier().fit(X, np.array(["old0"] * 15 + ["old1"] * 15))
    md = save_model_dir(tmp_path / "md", old, {"backbone": _BACKBONE, "metrics": {}})
    env = dict(os.environ, EMBEDCLF_TEST_KILL_AT=step)
    proc = subprocess.run(
        [sys.executable, "-c", _RETRAIN, str(md)], env=env, capture_output=True
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    loaded = load_model_dir(md)
    switched = KILL_POINTS.index(step) >= KILL_POINTS.index("switched")
    if switched:
        assert loaded.labels == ["new0", "new1"]
    else:
        assert loaded.labels == ["old0", "old1"]
        np.testing.assert_array_equal(loaded.head.predict(X), old.predict(X))
        np.testing.assert_allclose(loaded.head.predict_proba(X), old.predict_proba(X))
    # The next save cleans up whatever the killed one left behind.
    save_model_dir(md, old, {"backbone": _BACKBONE, "metrics": {}})
    folders = [p.name for p in md.iterdir() if p.is_dir()]
    assert len(folders) == 1 and load_model_dir(md).labels == ["old0", "old1"]


_KILL_WHEN_WRITING_LABELS = textwrap.dedent(
    """
    import os, pathlib, signal
    _write_text = pathlib.Path.write_text
    def write_text(self, *args, **kwargs):
        if self.name == "labels.txt":  # SIGKILL instead of writing labels.txt
            os.kill(os.getpid(), signal.SIGKILL)
        return _write_text(self, *args, **kwargs)
    pathlib.Path.write_text = write_text
    """
)


def test_kill_while_writing_labels_keeps_the_old_model(tmp_path):
    """No hook: the re-train dies the moment it writes labels.txt.

    With 0.1.0's in-place writes that was after head.skops had been replaced,
    so the old model was gone (a "edited by hand" error, or worse).
    """
    X = _data()
    old = SoftmaxClassifier().fit(X, np.array(["old0"] * 15 + ["old1"] * 15))
    md = save_model_dir(tmp_path / "md", old, {"backbone": _BACKBONE, "metrics": {}})
    code = _KILL_WHEN_WRITING_LABELS + _RETRAIN
    proc = subprocess.run([sys.executable, "-c", code, str(md)], capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    loaded = load_model_dir(md)
    assert loaded.labels == ["old0", "old1"]
    np.testing.assert_allclose(loaded.head.predict_proba(X), old.predict_proba(X))


def test_kill_points_are_documented():
    from embedclf.workflow._model_dir import _io as _model_dir

    assert "EMBEDCLF_TEST_KILL_AT" in _model_dir.__doc__
