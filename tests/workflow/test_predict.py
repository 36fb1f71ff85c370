"""``embedclf.predict`` and ``embedclf.evaluate`` on a trained model directory."""

from __future__ import annotations

import contextlib
import io
import json

import pytest
from _cli_helpers import trained

import embedclf
from embedclf.cli import main


@pytest.fixture(scope="module")
def session(tmp_path_factory, tiny_model_dir):
    return trained(tmp_path_factory, tiny_model_dir)


def test_predict_is_what_the_command_prints(session, tmp_path):
    folder = session["data"] / "test"
    missing = tmp_path / "photos"
    results = embedclf.predict(session["output"], [folder, missing], top_k=2)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        main(["predict", str(session["output"]), str(folder), "--json", "--top-k", "2"])
    assert results[:-1] == json.loads(buf.getvalue())
    assert len(results) == 13 and all(len(r["top_k"]) == 2 for r in results[:-1])
    assert results[-1]["path"] == str(missing)
    assert results[-1]["error"].startswith(f"No file or folder {str(missing)!r}")
    with pytest.raises(ValueError, match=r"top_k \(--top-k\) must be at least 1"):
        embedclf.predict(session["output"], folder, top_k=0)


def test_evaluate_returns_the_report(session, tmp_path):
    result = embedclf.evaluate(
        session["output"], session["data"] / "test", report_dir=tmp_path / "r"
    )
    written = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert result.accuracy == written["accuracy"] == result.metrics["accuracy"]
    assert result.report_dir == tmp_path / "r" and result.unreadable == []
    assert written["n_samples"] == 12


def test_run_options_are_the_backbone_keywords_of_predict_and_evaluate():
    import inspect

    from embedclf.workflow._loaded_model import run_options

    names = list(inspect.signature(run_options).parameters)
    options = run_options(*names)  # each value its own name: no mix-up
    assert options == {name: name for name in names}
    for function in (embedclf.predict, embedclf.evaluate):
        assert set(options) <= set(inspect.signature(function).parameters)


def _unreadable_files(folder):
    """A truncated JPEG and a text file named .jpg."""
    from conftest import write_image

    truncated = write_image(folder / "truncated.jpg", size=(200, 150))
    truncated.write_bytes(truncated.read_bytes()[:1500])
    text = folder / "notes.jpg"
    text.write_text("not a photo\n")
    return [str(truncated), str(text)]


def test_predict_reports_why_a_file_failed_reading_it_once(
    session, tmp_path, monkeypatch
):
    from embedclf.embedding import _identity_memo, _images

    bad = _unreadable_files(tmp_path)
    expected = {}
    for path in bad:  # the message of decoding the file alone
        with pytest.raises(ValueError) as caught:
            _images.load_image(path, (8, 8))
        expected[path] = str(caught.value)
    reads, decodes = [], []

    def counted(function, calls, key):
        def wrapper(*args, **kwargs):
            calls.append(str(key(*args, **kwargs)))
            return function(*args, **kwargs)

        return wrapper

    for module in (_images, _identity_memo):
        monkeypatch.setattr(
            module,
            "read_image_bytes",
            counted(module.read_image_bytes, reads, lambda path: path),
        )
    monkeypatch.setattr(
        _images,
        "decode_image",
        counted(_images.decode_image, decodes, lambda *a, path, **k: path),
    )
    good = str(next((session["data"] / "test").rglob("*.jpg")))
    results = embedclf.predict(session["output"], [bad[0], good, bad[1]])
    assert [r.get("error") for r in results] == [
        expected[bad[0]],
        None,
        expected[bad[1]],
    ]
    assert "truncated or corrupt" in expected[bad[0]]
    for path in bad:  # hashed, then read and decoded by the embedder: once
        assert reads.count(path) == 2 and decodes.count(path) == 1
