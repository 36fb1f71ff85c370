"""Item 7: time and peak memory of embedding 1k, 2k and 4k images, cold.

Each size runs in its own subprocess (``_scaling_child.py``) with a fresh
cache file, so its memory belongs to that size alone: the process's peak RSS
(``ru_maxrss``, set by loading TensorFlow and tracing the first batch) and
the highest RSS polled from ``/proc/self/status`` during the timed
``transform``. Images come from the train and test folders in a fixed random
order (each size is a prefix of the next). Linear time shows as a constant
time per image, flat memory as a transform peak that does not grow with N
(the embedder holds one batch of decoded images plus the output rows:
N x 1280 float32, 20 MB at 4k). Wall time on a shared machine follows the
load of other processes, so CPU seconds per image (all threads of the child)
are reported too; each child records the load average.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from _common import Context

CHILD = Path(__file__).resolve().parent / "_scaling_child.py"


def run(ctx: Context) -> dict:
    sizes = [32, 64, 96] if ctx.quick else [1000, 2000, 4000]
    train, _ = ctx.split("train")
    test, _ = ctx.split("test")
    pool = np.concatenate([train, test])
    rng = np.random.default_rng(0)
    order = rng.permutation(len(pool))
    runs = []
    for n in sizes:
        work = ctx.fresh_dir(f"scaling_{n}")
        listing = work / "paths.txt"
        listing.write_text("\n".join(pool[order[:n]]) + "\n")
        proc = subprocess.run(
            [
                sys.executable,
                str(CHILD),
                str(ctx.model),
                str(listing),
                str(work / "cache.h5"),
                str(ctx.batch_size),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"scaling child for n={n} failed:\n{proc.stderr[-2000:]}"
            )
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        res["ms_per_image"] = 1000 * res["seconds"] / n
        res["cpu_ms_per_image"] = 1000 * res["cpu_seconds"] / n
        res["transform_growth_mb"] = (
            res["transform_peak_rss_mb"] - res["baseline_rss_mb"]
        )
        runs.append(res)
    first, last = runs[0], runs[-1]
    time_ratio = last["ms_per_image"] / first["ms_per_image"]
    cpu_ratio = last["cpu_ms_per_image"] / first["cpu_ms_per_image"]
    mem_ratio = last["transform_peak_rss_mb"] / first["transform_peak_rss_mb"]
    # Least-squares fit seconds = a + b * n, and its R^2.
    ns = np.array([r["n"] for r in runs], float)
    ts = np.array([r["seconds"] for r in runs])
    b, a = np.polyfit(ns, ts, 1)
    r2 = 1 - np.sum((ts - (a + b * ns)) ** 2) / np.sum((ts - ts.mean()) ** 2)
    lines = [
        "| images | seconds | ms / image | CPU ms / image | peak RSS during "
        "transform (MB) | process peak RSS (MB) | load average |",
        "|---|---|---|---|---|---|---|",
    ] + [
        f"| {r['n']} | {r['seconds']:.1f} | {r['ms_per_image']:.1f} | "
        f"{r['cpu_ms_per_image']:.1f} | {r['transform_peak_rss_mb']:.0f} | "
        f"{r['peak_rss_mb']:.0f} | {r['loadavg_before']:.1f} |"
        for r in runs
    ]
    return {
        "title": f"Scaling {sizes[0]}-{sizes[-1]} images (cold, own process each)",
        "ratios": [
            {
                "name": f"ms/image at {sizes[-1]} / at {sizes[0]}",
                "value": time_ratio,
                "target": "~1 (0.8-1.25)",
                "met": 0.8 <= time_ratio <= 1.25,
            },
            {
                "name": f"CPU ms/image at {sizes[-1]} / at {sizes[0]}",
                "value": cpu_ratio,
                "target": "~1 (0.8-1.25)",
                "met": 0.8 <= cpu_ratio <= 1.25,
            },
            {
                "name": f"transform peak RSS at {sizes[-1]} / at {sizes[0]}",
                "value": mem_ratio,
                "target": "~1 (< 1.1)",
                "met": mem_ratio < 1.1,
            },
        ],
        "metrics": {
            "runs": runs,
            "linear_fit_seconds_per_image": float(b),
            "linear_fit_intercept_s": float(a),
            "linear_fit_r2": float(r2),
        },
        "markdown": "Scaling (item 7):\n\n" + "\n".join(lines),
    }
