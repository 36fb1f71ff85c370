"""The store of converted backbones: a new cache does not convert again.

Real OpenVINO on the tiny SavedModel of conftest. Every test has a store of
its own (conftest's ``openvino_store`` sets ``EMBEDCLF_OPENVINO_DIR``);
conversions and compilations are counted with ``_openvino.counts()`` (a
compilation is a new blob in OpenVINO's model cache).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from conftest import make_image_folder, unconvertible_savedmodel

pytest.importorskip("openvino")
pytest.importorskip("tensorflow")

from embedclf import ImageEmbedder  # noqa: E402
from embedclf.embedding import _openvino  # noqa: E402
from embedclf.embedding._runtime import openvino_dir  # noqa: E402

pytestmark = pytest.mark.tf

UNUSABLE = "The store of converted backbones"


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = make_image_folder(tmp_path_factory.mktemp("st") / "imgs", n_per_class=3)
    return sorted(str(p) for p in root.rglob("*.*"))


def _embedder(model, cache, **kw):
    kw = {"image_size": 32, "runtime": "openvino", "precision": "fp32", **kw}
    return ImageEmbedder(str(model), cache=cache, batch_size=4, progress=False, **kw)


def _converted(root) -> list[Path]:
    """The converted folders in ``root`` (a store, or beside a cache)."""
    return sorted(p.parent for p in Path(root).glob("*/meta.json"))


_SECOND_PROJECT = """
import json, sys
import numpy as np
from embedclf import ImageEmbedder
from embedclf.embedding import _openvino
e = ImageEmbedder(sys.argv[1], cache=sys.argv[2], image_size=32,
                  runtime="openvino", precision="fp32", progress=False)
np.save(sys.argv[3], e.transform(sys.argv[4:]))
print(json.dumps({"counts": _openvino.counts(), "n": e.n_computed_,
                  "tf": "tensorflow" in sys.modules}))
"""


def test_a_second_cache_converts_and_compiles_nothing(
    tiny_model_dir, photos, tmp_path, openvino_store
):
    before = _openvino.counts()
    X1 = _embedder(tiny_model_dir, tmp_path / "one" / "c.h5").transform(photos)
    after = _openvino.counts()
    assert after["conversions"] == before["conversions"] + 1
    assert after["compilations"] == before["compilations"] + 1
    [stored] = _converted(openvino_store)
    names = {"compiled", "meta.json", "model.bin", "model.xml"}
    assert set(os.listdir(stored)) == names
    assert len(list((stored / "compiled").glob("*.blob"))) == 1
    # a second project: another cache and process, nothing converted or
    # compiled, TensorFlow not even imported, the same vectors
    cache = tmp_path / "two" / "c.h5"
    out = subprocess.run(
        [sys.executable, "-c", _SECOND_PROJECT, str(tiny_model_dir), str(cache),
         str(tmp_path / "X2.npy"), *photos],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    second = json.loads(out.stdout.strip().splitlines()[-1])
    assert second["counts"] == {"conversions": 0, "quantizations": 0, "compilations": 0}
    assert second["n"] == len(photos)
    assert second["tf"] is False
    np.testing.assert_array_equal(np.load(tmp_path / "X2.npy"), X1)
    [beside] = _converted(str(cache) + ".openvino")
    assert beside.name == stored.name
    # the IR hard-linked (one filesystem here), the blob copied
    assert (beside / "model.bin").stat().st_ino == (stored / "model.bin").stat().st_ino
    blob = next((stored / "compiled").glob("*.blob"))
    assert (beside / "compiled" / blob.name).read_bytes() == blob.read_bytes()


def test_an_unconvertible_backbone_is_known_to_a_second_cache(
    photos, tmp_path, monkeypatch, caplog, openvino_store
):
    model = unconvertible_savedmodel(tmp_path / "odd")
    monkeypatch.delenv("EMBEDCLF_RUNTIME")
    with caplog.at_level(logging.WARNING, logger="embedclf"):
        auto = dict(runtime="auto", precision="auto")
        _embedder(model, tmp_path / "one.h5", **auto).transform(photos[:2])
    assert "Falling back to TensorFlow" in caplog.text
    assert len(list(openvino_store.glob("*.unconvertible"))) == 1
    caplog.clear()
    emb = _embedder(model, tmp_path / "two.h5", **auto)
    with caplog.at_level(logging.WARNING, logger="embedclf"):
        emb.transform(photos[:2])
    assert "Falling back" not in caplog.text  # not tried again
    assert emb.runtime_ == "tensorflow"
    assert len(list(tmp_path.glob("two.h5.openvino/*.unconvertible"))) == 1


@contextlib.contextmanager
def _read_only(folder: Path):
    """``folder`` made read-only for real: a read-only bind mount of itself
    as root (whom permissions do not stop), else no write permission."""
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [folder, *folder.rglob("*")]}
        for p in modes:
            p.chmod(0o555 if p.is_dir() else 0o444)
        try:
            yield folder
        finally:
            for p, mode in modes.items():
                p.chmod(mode)
        return
    for argv in (["--bind", folder, folder], ["-o", "remount,bind,ro", folder]):
        proc = subprocess.run(["mount", *map(str, argv)], capture_output=True)
        if proc.returncode != 0:
            subprocess.run(["umount", str(folder)], capture_output=True)
            pytest.skip(f"cannot bind-mount read-only here: {proc.stderr!r}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_read_only_or_unusable_store_still_embeds(
    tiny_model_dir, photos, tmp_path, monkeypatch, caplog
):
    stores = tmp_path / "stores"  # made read-only below: one store holding
    full, empty = stores / "full", stores / "empty"  # the model, one empty
    empty.mkdir(parents=True)
    monkeypatch.setenv("EMBEDCLF_OPENVINO_DIR", str(full))
    X = _embedder(tiny_model_dir, tmp_path / "a.h5").transform(photos)
    with _read_only(stores):
        with pytest.raises(OSError):
            (full / "probe").write_text("")
        before = _openvino.counts()
        # read-only and holding the model: fetched from it (copied), no warning
        with caplog.at_level(logging.WARNING, logger="embedclf"):
            Xb = _embedder(tiny_model_dir, tmp_path / "b.h5").transform(photos)
        assert _openvino.counts() == before
        np.testing.assert_array_equal(Xb, X)
        assert UNUSABLE not in caplog.text
        # read-only and empty: converted beside the cache, one logged line
        monkeypatch.setenv("EMBEDCLF_OPENVINO_DIR", str(empty))
        with caplog.at_level(logging.WARNING, logger="embedclf"):
            Xc = _embedder(tiny_model_dir, tmp_path / "c.h5").transform(photos)
        assert _openvino.counts()["conversions"] == before["conversions"] + 1
        assert caplog.text.count(UNUSABLE) == 1
        np.testing.assert_array_equal(Xc, X)
        assert not os.listdir(empty)
    # a store that cannot exist (under a file): converted beside, one line
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("EMBEDCLF_OPENVINO_DIR", str(tmp_path / "file" / "store"))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="embedclf"):
        Xd = _embedder(tiny_model_dir, tmp_path / "d.h5").transform(photos)
    assert caplog.text.count(UNUSABLE) == 1
    np.testing.assert_array_equal(Xd, X)
    assert len(_converted(tmp_path / "d.h5.openvino")) == 1


def test_turning_the_store_off_converts_again(
    tiny_model_dir, photos, tmp_path, monkeypatch
):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("EMBEDCLF_OPENVINO_DIR")
    # the default store: under XDG_CACHE_HOME (else ~/.cache)
    assert openvino_dir(None) == str(tmp_path / "xdg" / "embedclf" / "openvino")
    monkeypatch.setenv("EMBEDCLF_OPENVINO_DIR", "")  # set, empty: off
    before = _openvino.counts()
    for name in ("one", "two"):
        _embedder(tiny_model_dir, tmp_path / name / "c.h5").transform(photos[:2])
    after = _openvino.counts()
    assert after["conversions"] == before["conversions"] + 2
    assert after["compilations"] == before["compilations"] + 2
    assert not (tmp_path / "xdg").exists()
    # without a cache: a temporary folder of this process, never ~/.cache
    assert openvino_dir(None).startswith(tempfile.gettempdir())
    assert openvino_dir(None) == openvino_dir(None)


def test_a_folder_another_process_wrote_first_is_kept(tmp_path):
    """Copies are whole folders renamed into place: when the folder appeared
    meanwhile (another process won), the copy is dropped, not mixed in."""
    from embedclf.embedding import _ov_store

    src, dst = tmp_path / "store" / "abc", tmp_path / "beside" / "abc"
    for folder, text in ((src, "store"), (dst, "winner")):
        (folder / "compiled").mkdir(parents=True)
        for name in _ov_store.IR_FILES:
            (folder / name).write_text(text)
    (src / "compiled" / "1.blob").write_text("store")
    _ov_store._mirror(str(src), str(dst))
    assert {p.read_text() for p in dst.rglob("*") if p.is_file()} == {"winner"}
    assert sorted(os.listdir(dst.parent)) == ["abc"]  # no temporary left
    # a blob the folder lacks is added under its name, atomically
    _ov_store.fetch(str(dst), str(src))
    assert (dst / "compiled" / "1.blob").read_text() == "store"
    assert sorted(os.listdir(dst / "compiled")) == ["1.blob"]
