"""Run the embedclf benchmarks (issue 5) and write a table and JSON.

Usage (from the repository root)::

    python benchmarks/run.py                 # full run, about an hour on 2 cores
    python benchmarks/run.py --quick         # smoke mode, under a minute
    python benchmarks/run.py --only 1,2      # selected items

Results go to ``benchmarks/results/latest.json`` and ``latest.md`` (quick
runs: ``quick.json`` / ``quick.md``; ``--only 1,2``: ``only-1-2.json`` /
``.md``, so a partial run never replaces the full-run record) unless
``--output`` says otherwise.
Grocery embeddings are cached in ``<workdir>/grocery_embeddings.h5`` and
shared by repeated runs; every "cold" figure uses a fresh cache.

Items
-----
1 throughput   ImageEmbedder pipeline vs backbone alone; warm-cache rerun
2 cache        HDF5 cache load vs retrain.py's one-text-file-per-image cache
3 warm_rerun   ``embedclf train`` on a warm cache vs cold
4 tuning       GridSearchCV with the cache vs recomputing embeddings per fold
5 head         SoftmaxClassifier (lbfgs) vs retrain.py's gradient-descent head;
               MLPHeadClassifier vs softmax vs plain LogisticRegression
6 accuracy     grocery_store: plain probe vs embedclf train, each accuracy lever
7 scaling      time and peak RSS of embedding 1k, 2k, 4k images
8 cache_scaling  adding 100 rows to caches of 10k and 1M rows
9 identity_memo  warm transform of 50k paths: identity memo vs full re-hash
10 open_set     unknown scores on grocery with 20 classes held out (AUROC, FPR95)
16 leases       two processes embedding into one shared cache vs one alone
17 small_images 28x28 grayscale images: upsampled by Pillow vs as is
18 dask         Dask LocalCluster: 2 single-threaded workers vs 1 (images/s)
19 runtime      TF fp32 vs OpenVINO fp32/bf16/int8: backbone, pipeline, accuracy
20 tflite       TensorFlow Lite exports: size, accuracy, LiteRT photos/s
21 audit        image checks and two-signal near-duplicates on planted grocery photos
22 suggest      photos to label next: suggested vs random vs most uncertain
23 budget       train --budget 10 on grocery; the search vs the probe on small data
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import math
import os
import sys
import time
import traceback
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    DEFAULT_DATA,
    DEFAULT_MODEL,
    Context,
    machine_info,
    source_revision,
)

ITEMS = {
    1: "bench_throughput",
    2: "bench_cache",
    3: "bench_warm_rerun",
    4: "bench_tuning",
    5: "bench_head",
    6: "bench_accuracy",
    7: "bench_scaling",
    8: "bench_cache_scaling",
    9: "bench_identity_memo",
    10: "bench_open_set",
    16: "bench_leases",
    17: "bench_small_images",
    18: "bench_dask",
    19: "bench_runtime",
    20: "bench_tflite",
    21: "bench_audit",
    22: "bench_suggest",
    23: "bench_budget",
}
# Item 6 fills the shared grocery cache that item 5 reads, so it runs first.
ORDER = [6, 5, 1, 2, 4, 3, 7, 8, 9, 10, 16, 17, 18, 19, 20, 21, 22, 23]
RESULTS = Path(__file__).resolve().parent / "results"


def _parse(argv):
    parser = argparse.ArgumentParser(
        prog="benchmarks/run.py", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="Smoke mode: tiny sizes, under a minute. Default: the full run.",
    )
    parser.add_argument(
        "--only",
        default=None,
        help="Comma-separated item numbers to run, e.g. '1,4'. Default: all.",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path("/tmp/embedclf-bench"),
        help="Directory for caches and scratch files; the grocery embedding "
        "cache in it is reused across runs. Default: /tmp/embedclf-bench.",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="Embedding cache of the grocery photos to read and fill (e.g. one "
        "already holding Lite0 and Lite2 vectors). Default: "
        "<workdir>/grocery_embeddings.h5.",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="JSON file to write (a .md table is written beside it). Default: "
        "benchmarks/results/latest.json, or quick.json with --quick.",
    )
    parser.add_argument(
        "--model",
        default=str(DEFAULT_MODEL),
        help=f"Backbone SavedModel directory. Default: {DEFAULT_MODEL}.",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        help=f"Dataset root with train/val/test folders. Default: {DEFAULT_DATA}.",
    )
    return parser.parse_args(argv)


def _fmt(value):
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "NO", None: "-"}[value]
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"
    return str(value)


def table_rows(results):
    rows = []
    for item in sorted(results, key=int):
        res = results[item]
        if "error" in res:
            rows.append((item, res.get("title", ""), "ERROR", "", "", res["error"]))
            continue
        for r in res["ratios"]:
            rows.append(
                (
                    item,
                    res["title"],
                    r["name"],
                    _fmt(r["value"]),
                    r["target"],
                    _fmt(r["met"]),
                )
            )
    return rows


def _cell(value) -> str:
    """One Markdown table cell: a ``|`` inside it (``|estimate - test|``) is
    escaped, or it would split the cell and shift the row's columns."""
    return str(value).replace("|", "\\|")


def _describe_source(source: dict) -> str:
    if not source.get("commit"):
        return "not a git checkout"
    edits = " with uncommitted changes" if source.get("dirty") else ""
    return f"commit {source['commit'][:10]}{edits}"


def markdown(report) -> str:
    m = report["machine"]
    lines = [
        f"# embedclf benchmarks ({'quick' if report['quick'] else 'full'} run)",
        "",
        f"Run {report['started']} in {report['total_seconds']:.0f} s on "
        f"{m['cpu_model']} ({m['cpu_count']} CPUs, {m['mem_total_gb']} GB), "
        f"Python {m['python']}, TensorFlow {m['versions'].get('tensorflow')}, "
        f"scikit-learn {m['versions'].get('sklearn')}; load average at start "
        f"{report['loadavg_at_start'][0]:.1f} (other processes share the "
        f"machine). Command: `{report['command']}`. Code: "
        + _describe_source(report.get("source") or {})
        + ".",
        "",
        "| # | benchmark | ratio | value | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for row in table_rows(report["results"]):
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    for item in sorted(report["results"], key=int):
        extra = report["results"][item].get("markdown")
        if extra:
            lines += ["", extra]
    return "\n".join(lines) + "\n"


def print_table(report):
    rows = [("#", "benchmark", "ratio", "value", "target", "met")]
    rows += [tuple(str(c) for c in r) for r in table_rows(report["results"])]
    widths = [min(max(len(r[i]) for r in rows), 58) for i in range(6)]
    for j, row in enumerate(rows):
        print("  ".join(c[: widths[i]].ljust(widths[i]) for i, c in enumerate(row)))
        if j == 0:
            print("  ".join("-" * w for w in widths))
    for item in sorted(report["results"], key=int):
        extra = report["results"][item].get("markdown")
        if extra:
            print()
            print(extra)


def main(argv=None) -> int:
    args = _parse(argv)
    only = [int(x) for x in args.only.split(",") if x.strip()] if args.only else None
    if args.output:
        output = args.output
    elif args.quick:
        output = RESULTS / "quick.json"
    elif only is not None:  # a partial run never overwrites the full-run record
        output = RESULTS / f"only-{'-'.join(str(i) for i in only)}.json"
    else:
        output = RESULTS / "latest.json"
    args.workdir.mkdir(parents=True, exist_ok=True)
    ctx = Context(
        quick=args.quick,
        model=args.model,
        data=args.data,
        workdir=args.workdir,
        batch_size=32 if args.quick else 64,
        cache=args.cache,
    )
    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = list(os.getloadavg())
    source = source_revision()  # the code as it is when the run starts
    t0 = time.perf_counter()
    results = {}
    for item in ORDER:
        if only is not None and item not in only:
            continue
        name = ITEMS[item]
        print(
            f"[{time.perf_counter() - t0:6.0f} s] item {item}: {name} ...", flush=True
        )
        t_item = time.perf_counter()
        try:
            res = importlib.import_module(name).run(ctx)
        except Exception as exc:  # report and go on with the other items
            traceback.print_exc()
            res = {"title": name, "error": f"{type(exc).__name__}: {exc}"}
        res["seconds"] = time.perf_counter() - t_item
        res["loadavg_after"] = list(os.getloadavg())
        results[str(item)] = res
        print(f"         done in {res['seconds']:.0f} s", flush=True)
    report = {
        "started": started.isoformat(timespec="seconds"),
        "quick": args.quick,
        "command": " ".join(
            ["python benchmarks/run.py", *(sys.argv[1:] if argv is None else argv)]
        ),
        "total_seconds": time.perf_counter() - t0,
        "machine": machine_info(),
        "source": source,
        "loadavg_at_start": load_before,
        "settings": {
            "model": str(args.model),
            "data": str(args.data),
            "workdir": str(args.workdir),
            "batch_size": ctx.batch_size,
        },
        "results": results,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2, default=_json_default) + "\n")
    output.with_suffix(".md").write_text(markdown(report))
    print()
    print_table(report)
    print(f"\nwrote {output} and {output.with_suffix('.md')}")
    return 1 if any("error" in r for r in results.values()) else 0


def _json_default(obj):
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


if __name__ == "__main__":
    sys.exit(main())
