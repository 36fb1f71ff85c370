"""``embedclf train --budget``: the search runs, prints its choice, and the
model directory records it (report/search.tsv, manifest)."""

from __future__ import annotations

import csv
import json

import pytest
from _cli_helpers import grocery_like, trained

from embedclf.cli import main
from embedclf.workflow._search._table import COLUMNS

pytestmark = pytest.mark.tf


def test_train_budget_prints_choice_and_writes_table(
    tmp_path, tiny_model_dir, tiny_model_dir_b, capsys
):
    data = grocery_like(tmp_path / "g")
    out = tmp_path / "m"
    status = main(
        [
            "train",
            str(data),
            "--output",
            str(out),
            "--model",
            str(tiny_model_dir),
            "--model",
            str(tiny_model_dir_b),
            "--cache",
            str(tmp_path / "c.h5"),
            "--budget",
            "3",
            "--no-progress",
        ]
    )
    stdout = capsys.readouterr().out
    assert status == 0
    assert "Searching the training settings within 3 minutes" in stdout
    assert "Chosen: " in stdout
    assert "Estimate after the search (cross-fitted) = " in stdout
    with open(out / "report" / "search.tsv") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert list(rows[0]) == list(COLUMNS)
    assert [r["step"] for r in rows][:2] == ["vectors", "vectors"]
    assert sum(r["chosen"] == "yes" for r in rows) == 1
    manifest = json.loads((out / "manifest.json").read_text())
    search = manifest["search"]
    chosen = search["chosen"]
    # the model was trained with exactly the chosen settings
    assert manifest["test_views"] == chosen["test_views"]
    assert manifest["normalize_each"] == chosen["normalize_each"]
    assert manifest["augmentation"]["copies"] == chosen["augment_copies"]
    assert manifest["classifier"]["type"] == chosen["classifier"]
    if chosen["classifier"] == "softmax":
        assert manifest["classifier"]["C"] == pytest.approx(chosen["C_grid"][0])
    n_backbones = 1 if isinstance(chosen["model"], str) else len(chosen["model"])
    backbone = manifest["backbone"]
    assert (1 if isinstance(backbone, dict) else len(backbone)) == n_backbones
    assert manifest["metrics"]["estimate"] == search["estimate"]
    assert manifest["metrics"]["selection_rule"] == "budget-search"
    assert "selection_estimate" in manifest["metrics"]
    assert len(search["table"]) == len(rows)
    # the final line names the test views the search chose, not the flag's
    final = [ln for ln in stdout.splitlines() if ln.startswith("Final test accuracy")]
    views = chosen["test_views"]
    assert final[0].endswith(")" if views == "none" else f", test views: {views})")
    assert ("test views" in final[0]) is (views != "none")


def test_train_without_budget_records_no_search(tmp_path_factory, tiny_model_dir):
    session = trained(tmp_path_factory, tiny_model_dir)
    manifest = json.loads((session["output"] / "manifest.json").read_text())
    assert "search" not in manifest
    assert not (session["output"] / "report" / "search.tsv").exists()


def test_train_budget_must_be_positive(tmp_path, tiny_model_dir, capsys):
    data = grocery_like(tmp_path / "g")
    status = main(
        [
            "train",
            str(data),
            "-o",
            str(tmp_path / "m"),
            "--model",
            str(tiny_model_dir),
            "--budget",
            "0",
        ]
    )
    assert status == 1
    assert "--budget must be a positive number of minutes; got 0.0." in (
        capsys.readouterr().err
    )


def test_final_line_names_the_test_views_used(tmp_path, tiny_model_dir, capsys):
    """The model's test views (here the flag's) are in the result and the line."""
    data = grocery_like(tmp_path / "g")
    argv = ["train", str(data), "--output", str(tmp_path / "m"), "--model",
            str(tiny_model_dir), "--test-views", "flip", "--C", "1",
            "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    final = [
        ln
        for ln in capsys.readouterr().out.splitlines()
        if ln.startswith("Final test accuracy")
    ]
    assert final[0].endswith(", test views: flip)")


def test_searched_metrics_leaves_the_run_metrics_alone():
    from types import SimpleNamespace

    from embedclf.workflow._train._budget import searched_metrics

    metrics = {"selection_rule": "cv", "estimate": 0.7, "test_accuracy": 0.8}
    after = searched_metrics(metrics, SimpleNamespace(estimate=0.75))
    assert metrics == {"selection_rule": "cv", "estimate": 0.7, "test_accuracy": 0.8}
    assert after == {
        "selection_rule": "budget-search",
        "estimate": 0.75,
        "test_accuracy": 0.8,
        "selection_estimate": 0.7,
    }
    assert list(after) == [*metrics, "selection_estimate"]  # manifest key order
