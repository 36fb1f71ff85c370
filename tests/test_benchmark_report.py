"""The Markdown report of ``benchmarks/run.py`` keeps its table's columns."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load_run():
    spec = importlib.util.spec_from_file_location(
        "bench_run", ROOT / "benchmarks" / "run.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_pipe_in_a_ratio_name_does_not_split_its_cell():
    run = _load_run()
    report = {
        "quick": True,
        "started": "2026-12-03T00:00:00+00:00",
        "total_seconds": 1.0,
        "machine": {
            "cpu_model": "cpu",
            "cpu_count": 2,
            "mem_total_gb": 1.0,
            "python": "3",
            "versions": {},
        },
        "loadavg_at_start": [0.0, 0.0, 0.0],
        "command": "python benchmarks/run.py",
        "results": {
            "6": {
                "title": "Accuracy",
                "ratios": [
                    {
                        "name": "|printed estimate - final test accuracy| (default)",
                        "value": 0.01,
                        "target": "<= 0.05",
                        "met": True,
                    }
                ],
            }
        },
    }
    text = run.markdown(report)
    row = next(line for line in text.splitlines() if line.startswith("| 6 |"))
    header = next(line for line in text.splitlines() if line.startswith("| # |"))
    # Cells are separated by unescaped pipes only.
    unescaped = lambda line: line.replace("\\|", "").count("|")  # noqa: E731
    assert unescaped(row) == unescaped(header) == 7
    assert "\\|printed estimate - final test accuracy\\|" in row
