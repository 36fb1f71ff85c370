"""Two ``train`` runs into one ``--output`` at once: one run's model survives
whole, its report included.

The interleaving is forced with events, not timing: run A stops right after
its model directory is saved, run B then trains from start to end, then A
goes on. Before 0.2.0 the report was written after ``save_model_dir``
released its lock, so A's report landed beside B's model.
"""

from __future__ import annotations

import json
import threading

from conftest import make_image_folder

import embedclf.workflow._model_dir as model_dir_pkg
from embedclf.cli import main
from embedclf.workflow._model_dir import load_model_dir


def _args(data, out, model, cache):
    return [
        "train", str(data), "--output", str(out), "--model", str(model),
        "--cache", str(cache), "--C", "1", "--no-progress",
    ]  # fmt: skip


def test_concurrent_trains_leave_one_runs_model_and_report(
    tmp_path, tiny_model_dir, monkeypatch
):
    data = {}
    for name, classes in (("A", ("red", "green")), ("B", ("blue", "yellow"))):
        data[name] = tmp_path / name
        make_image_folder(data[name] / "train", classes, n_per_class=6, seed=0)
        make_image_folder(data[name] / "test", classes, n_per_class=2, seed=1)
    cache, out = tmp_path / "cache.h5", tmp_path / "model"
    for name in "AB":  # embeds each folder once, so the threads only read
        warm = _args(data[name], tmp_path / f"warm{name}", tiny_model_dir, cache)
        assert main(warm) == 0

    a_saved, b_done = threading.Event(), threading.Event()
    original = model_dir_pkg.save_model_dir

    def save_then_wait(*args, **kwargs):
        path = original(*args, **kwargs)
        if threading.current_thread().name == "A":
            a_saved.set()
            assert b_done.wait(120), "run B did not finish"
        return path

    monkeypatch.setattr(model_dir_pkg, "save_model_dir", save_then_wait)
    status = {}

    def run(name):
        if name == "B":
            assert a_saved.wait(120), "run A never saved its model"
        try:
            status[name] = main(_args(data[name], out, tiny_model_dir, cache))
        finally:
            if name == "B":
                b_done.set()

    threads = [threading.Thread(target=run, args=(n,), name=n) for n in "AB"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert status == {"A": 0, "B": 0}

    loaded = load_model_dir(out)  # head, labels and manifest: digests checked
    assert loaded.labels == ["blue", "yellow"]  # B switched last
    report = json.loads((out / "report" / "metrics.json").read_text())
    assert report["labels"] == loaded.labels
    tsv = (out / "report" / "per_class.tsv").read_text().splitlines()[1:]
    assert sorted(line.split("\t")[0] for line in tsv) == loaded.labels
    named = loaded.manifest["files"]["report"]["path"]
    assert (out / named).resolve() == (out / "report").resolve()
