"""Loading a model directory never runs code: hand-built malicious head.skops.

Each file below is a real head with one attribute replaced by a node that
skops "constructs" by calling a callable from the file with arguments from the
file. The test first shows the file is live (loading it the way 0.1.0 did,
trusting whatever ``get_untrusted_types`` lists under its trusted prefixes,
runs it), then that ``load_model_dir`` refuses it and nothing runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _skops_attacks import OLD_TRUSTED_PREFIXES, attacks, call, head_file, plant, rehash

from embedclf import SoftmaxClassifier
from embedclf.exceptions import ModelDirError
from embedclf.workflow._model_dir import load_model_dir, save_model_dir


@pytest.fixture
def model_dir(tmp_path):
    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(0, 1, (10, 3)), rng.normal(3, 1, (10, 3))]
    head = SoftmaxClassifier().fit(X, np.array(["a"] * 10 + ["b"] * 10))
    backbone = {"handle": "m", "identity": "savedmodel:x", "kind": "savedmodel"}
    return save_model_dir(tmp_path / "md", head, {"backbone": backbone})


@pytest.mark.parametrize("attack", list(attacks(Path("x"))))
def test_malicious_head_is_refused_and_runs_nothing(tmp_path, model_dir, attack):
    import skops.io as sio

    marker = tmp_path / "ran.txt"
    plant(head_file(model_dir), attacks(marker)[attack])
    rehash(model_dir)

    # The file is live: 0.1.0's filter (trusted prefixes) lets it run.
    untrusted = sio.get_untrusted_types(file=head_file(model_dir))
    assert all(t.startswith(OLD_TRUSTED_PREFIXES) for t in untrusted)
    sio.load(head_file(model_dir), trusted=untrusted)
    assert marker.exists(), "the hand-built file should run code when trusted"
    marker.unlink()

    with pytest.raises(ModelDirError, match="does not trust") as exc:
        load_model_dir(model_dir)
    assert not marker.exists()
    assert "could run code" in str(exc.value)


@pytest.mark.parametrize("name", ["getattr", "__import__", "compile", "open"])
def test_callables_are_never_trusted(tmp_path, model_dir, name):
    plant(head_file(model_dir), call("builtins", name, "os"))
    rehash(model_dir)
    with pytest.raises(ModelDirError, match=f"builtins.{name}"):
        load_model_dir(model_dir)


def test_trusted_types_are_classes_not_functions():
    import importlib

    from embedclf.workflow._model_dir._trust import trusted_types

    names = trusted_types()
    assert "embedclf.heads._linear.SoftmaxClassifier" in names
    assert "embedclf._linear.SoftmaxClassifier" in names  # 0.1.0's path
    assert not any(n.startswith("builtins.") for n in names)
    for name in names:
        module, _, attr = name.rpartition(".")
        assert isinstance(getattr(importlib.import_module(module), attr), type), name
