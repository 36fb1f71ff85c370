"""Smoke test of ``python benchmarks/run.py --quick`` (issue 5).

Runs the whole benchmark suite in quick mode in a subprocess (well under a
minute on the real shared backbone and photos) and checks that the JSON it
writes has every item, the machine description, and sane values. The
figures themselves are not asserted: timings belong to the benchmark, not to
the test suite.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SHARED_DATA, SHARED_MODEL

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "benchmarks" / "run.py"
MODEL, DATA = SHARED_MODEL, SHARED_DATA

pytestmark = [
    pytest.mark.shared,
    pytest.mark.tf,
    pytest.mark.skipif(
        not (MODEL.is_dir() and DATA.is_dir()),
        reason="needs ../shared (EfficientNet-Lite0 and grocery_store)",
    ),
]


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    pytest.importorskip("tensorflow")
    work = tmp_path_factory.mktemp("bench")
    output = work / "quick.json"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(
        [
            sys.executable,
            str(RUN),
            "--quick",
            "--workdir",
            str(work / "workdir"),
            "--output",
            str(output),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=1200,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(output.read_text()), output, proc.stdout


def _finite(value):
    return isinstance(value, (int, float)) and math.isfinite(value)


def test_quick_report_has_every_item_and_machine_info(quick_report):
    report, output, stdout = quick_report
    assert report["quick"] is True
    expected = {str(i) for i in range(1, 11)} | {"16", "17", "18"}
    expected |= {"19", "20", "21", "22", "23"}
    assert set(report["results"]) == expected
    machine = report["machine"]
    assert machine["cpu_count"] >= 1
    assert machine["cpu_model"]
    assert machine["python"].count(".") == 2
    assert machine["versions"]["tensorflow"]
    assert machine["versions"]["sklearn"]
    # The code measured is named: the checkout's commit when there is one.
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True
    )
    if head.returncode == 0:
        assert report["source"]["commit"] == head.stdout.strip()
        assert report["source"]["dirty"] in (True, False)
        md = output.with_suffix(".md").read_text()
        assert f"commit {head.stdout.strip()[:10]}" in md
    else:
        assert report["source"] == {"commit": None, "dirty": None}
    # How long quick mode takes is not asserted (a timed test fails on a busy
    # or slower machine); it is recorded, and the subprocess timeout above
    # only guards against a hang.
    assert report["total_seconds"] > 0
    assert output.with_suffix(".md").read_text().startswith("# embedclf benchmarks")
    assert "| # | benchmark |" in output.with_suffix(".md").read_text()
    assert "ratio" in stdout and "target" in stdout  # the printed table


def test_quick_report_every_ratio_is_measured(quick_report):
    report, _, _ = quick_report
    for item, res in report["results"].items():
        assert "error" not in res, (item, res.get("error"))
        assert res["ratios"], item
        for ratio in res["ratios"]:
            assert {"name", "value", "target", "met"} <= set(ratio)
            assert _finite(ratio["value"]), (item, ratio)
            assert ratio["met"] in (True, False, None)
        assert res["seconds"] > 0


def test_quick_report_sane_values(quick_report):
    results = quick_report[0]["results"]
    m1 = results["1"]["metrics"]
    assert m1["pipeline_img_per_s"] > 0 and m1["backbone_img_per_s"] > 0
    assert m1["warm_first_backbone_images"] == m1["warm_n_paths"]
    assert m1["warm_second_backbone_images"] == 0
    assert m1["warm_vectors_identical"] is True

    m2 = results["2"]["metrics"]
    assert m2["text_roundtrip_max_abs_error"] == 0.0
    assert m2["hdf5_load_s"] > 0 and m2["text_load_s"] > 0
    assert m2["text_files"] == m2["n_vectors"]

    m3 = results["3"]["metrics"]
    assert m3["cold"]["backbone_images"] == m3["cold"]["n_images"] > 0
    assert m3["warm"]["backbone_images"] == 0

    m4 = results["4"]["metrics"]
    assert m4["cached"]["backbone_images"] == m4["n_images"]
    assert m4["recomputing"]["backbone_images"] > m4["n_images"]

    m5 = results["5"]["metrics"]
    for key in ("retrain_test_accuracy", "softmax_test_accuracy"):
        assert 0.0 <= m5[key] <= 1.0

    m6 = results["6"]["metrics"]
    # bench_accuracy: the plain probe, the default and each lever, one row each.
    assert len(m6["rows"]) >= 3
    assert m6["rows"][0]["group"] == "baseline"
    assert any(row["group"] == "default" for row in m6["rows"])
    for row in m6["rows"]:
        assert 0.0 <= row["test_accuracy"] <= 1.0
    # 6 classes of distinct products: far better than chance (1/6).
    assert max(row["test_accuracy"] for row in m6["rows"]) > 0.5

    runs = results["7"]["metrics"]["runs"]
    assert [r["n"] for r in runs] == sorted(r["n"] for r in runs)
    for r in runs:
        assert r["computed"] == r["n"]
        assert r["peak_rss_mb"] >= r["baseline_peak_rss_mb"] > 0

    m8 = results["8"]["metrics"]
    assert len(m8["small_add_s"]) == len(m8["large_add_s"]) == m8["rounds"]
    assert m8["large_file_bytes"] > m8["small_file_bytes"] > 0

    m9 = results["9"]["metrics"]
    assert m9["vectors_identical"] is True and m9["memo_entries"] == m9["n_paths"]

    m22 = results["22"]
    curves = m22["mean_test_accuracy"]
    assert len(curves["random"]) == m22["settings"]["rounds"] + 1
    assert len({c[0] for c in curves.values()}) == 1  # one starting set
    assert 0 < m22["training_index"]["index_bytes"]
    m20 = results["20"]["metrics"]
    for q in ("none", "dynamic", "int8"):
        assert m20["exports"][q]["model_mb"] > 0
        assert 0.0 <= m20["exports"][q]["agreement"] <= 1.0
    assert m20["exports"]["int8"]["model_mb"] < m20["exports"]["none"]["model_mb"]

    m18 = results["18"]["metrics"]
    assert m18["vectors_identical"] is True and m18["each_image_once"] is True
    assert all(r["workers_2_img_per_s"] > 0 for r in m18["rounds"])
