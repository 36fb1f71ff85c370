"""Loading a model directory never runs code: hand-built malicious head.skops.

Each file below is a real head with one attribute replaced by a node that
skops "constructs" by calling a callable from the file with arguments from the
file. The test first shows the file is live (loading it the way 0.1.0 did,
trusting whatever ``get_untrusted_types`` lists under its trusted prefixes,
runs it), then that ``load_model_dir`` refuses it and nothing runs.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from embedclf import SoftmaxClassifier
from embedclf.exceptions import ModelDirError
from embedclf.workflow._model_dir import load_model_dir, save_model_dir

_OLD_TRUSTED_PREFIXES = ("embedclf.", "sklearn.", "numpy.", "scipy.", "builtins.")


def _json(value, ident):
    return {
        "__class__": "str",
        "__module__": "builtins",
        "__loader__": "JsonNode",
        "content": json.dumps(value),
        "is_json": True,
        "__id__": ident,
    }


def _call(module, name, *args, ident=900_000):
    """A node that skops loads as ``module.name(*args)``."""
    return {
        "__class__": name,
        "__module__": module,
        "__loader__": "ConstructorFromReduceNode",
        "content": {
            "__class__": "tuple",
            "__module__": "builtins",
            "__loader__": "TupleNode",
            "content": [_json(a, ident + 1 + i) for i, a in enumerate(args)],
            "__id__": ident,
        },
        "__id__": ident + 100,
    }


def _attacks(marker: Path) -> dict:
    m = str(marker)
    write = f"__import__('pathlib').Path({m!r}).write_text('ran')"
    return {
        "eval": _call("builtins", "eval", write),
        "exec": _call("builtins", "exec", write),
        "open": _call("builtins", "open", m, "w"),
        "numpy.savetxt": _call("numpy", "savetxt", m, [1.0]),
        "eval-in-__import__": _call(
            "builtins", "eval", f"__import__('os').system('touch {m}')"
        ),
    }


def _plant(head_path: Path, node: dict) -> None:
    """Add ``node`` as attribute ``payload_`` of the head in ``head_path``."""
    with zipfile.ZipFile(head_path) as z:
        files = {name: z.read(name) for name in z.namelist()}
    schema = json.loads(files["schema.json"])
    attrs = schema["content"]  # the estimator's __dict__ (a DictNode)
    attrs["content"]["payload_"] = node
    attrs["key_types"]["content"].append(
        {"__class__": "str", "__module__": "builtins", "__loader__": "TypeNode",
         "__id__": 990_001}  # fmt: skip
    )
    files["schema.json"] = json.dumps(schema).encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    head_path.write_bytes(buf.getvalue())


def _head_file(md: Path) -> Path:
    manifest = json.loads((md / "manifest.json").read_text())
    if "files" in manifest:
        return md / manifest["files"]["head"]["path"]
    return md / manifest.get("head_file", "head.skops")


def _rehash(md: Path) -> None:
    """Write the planted head's digest into the manifest, as an attacker would."""
    import hashlib

    manifest = json.loads((md / "manifest.json").read_text())
    if "files" in manifest:
        digest = hashlib.sha256(_head_file(md).read_bytes()).hexdigest()
        manifest["files"]["head"]["sha256"] = digest
        (md / "manifest.json").write_text(json.dumps(manifest))


@pytest.fixture
def model_dir(tmp_path):
    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(0, 1, (10, 3)), rng.normal(3, 1, (10, 3))]
    head = SoftmaxClassifier().fit(X, np.array(["a"] * 10 + ["b"] * 10))
    backbone = {"handle": "m", "identity": "savedmodel:x", "kind": "savedmodel"}
    return save_model_dir(tmp_path / "md", head, {"backbone": backbone})


@pytest.mark.parametrize("attack", list(_attacks(Path("x"))))
def test_malicious_head_is_refused_and_runs_nothing(tmp_path, model_dir, attack):
    import skops.io as sio

    marker = tmp_path / "ran.txt"
    _plant(_head_file(model_dir), _attacks(marker)[attack])
    _rehash(model_dir)

    # The file is live: 0.1.0's filter (trusted prefixes) lets it run.
    untrusted = sio.get_untrusted_types(file=_head_file(model_dir))
    assert all(t.startswith(_OLD_TRUSTED_PREFIXES) for t in untrusted)
    sio.load(_head_file(model_dir), trusted=untrusted)
    assert marker.exists(), "the hand-built file should run code when trusted"
    marker.unlink()

    with pytest.raises(ModelDirError, match="does not trust") as exc:
        load_model_dir(model_dir)
    assert not marker.exists()
    assert "could run code" in str(exc.value)


@pytest.mark.parametrize("name", ["getattr", "__import__", "compile", "open"])
def test_callables_are_never_trusted(tmp_path, model_dir, name):
    _plant(_head_file(model_dir), _call("builtins", name, "os"))
    _rehash(model_dir)
    with pytest.raises(ModelDirError, match=f"builtins.{name}"):
        load_model_dir(model_dir)


def test_trusted_types_are_classes_not_functions():
    import importlib

    from embedclf.workflow._model_dir_trust import trusted_types

    names = trusted_types()
    assert "embedclf.heads._linear.SoftmaxClassifier" in names
    assert "embedclf._linear.SoftmaxClassifier" in names  # 0.1.0's path
    assert not any(n.startswith("builtins.") for n in names)
    for name in names:
        module, _, attr = name.rpartition(".")
        assert isinstance(getattr(importlib.import_module(module), attr), type), name
