"""Item 3: the full ``embedclf train`` command on a warm cache vs a cold one.

Runs ``python -m embedclf train DATA --model M --cache F --output OUT
--batch-size B`` twice in fresh subprocesses (so imports, backbone loading and
everything the command does are timed, as a user sees it), with default
settings otherwise (C searched over the default grid by cross-validation).
The first run starts from a fresh, empty cache file; the second reuses it.
Wall times are of the whole subprocess; the phases come from the command's
own output. Target: warm <= 10 % of cold.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

from _common import Context


def _quick_data(ctx: Context):
    """A small official-layout copy (symlinks) of the quick subset."""
    root = ctx.fresh_dir("warm_rerun_data")
    for part in ("train", "test"):
        paths, labels = ctx.split(part)
        for path, label in zip(paths, labels):
            target = root / part / label
            target.mkdir(parents=True, exist_ok=True)
            os.symlink(path, target / os.path.basename(path))
    return root


def _train(ctx: Context, data, cache, output):
    cmd = [
        sys.executable,
        "-m",
        "embedclf",
        "train",
        str(data),
        "--model",
        str(ctx.model),
        "--cache",
        str(cache),
        "--output",
        str(output),
        "--batch-size",
        str(ctx.batch_size),
        "--no-progress",
    ]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    seconds = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(
            f"embedclf train failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    out = proc.stdout
    info = {"seconds": seconds, "command": " ".join(cmd[1:])}
    m = re.search(
        r"Embedded (\d+) images in ([\d.]+) s \((\d+) by the backbone, (\d+) from",
        out,
    )
    if m:
        info.update(
            n_images=int(m.group(1)),
            embed_s=float(m.group(2)),
            backbone_images=int(m.group(3)),
            cached_images=int(m.group(4)),
        )
    m = re.search(r"Final test accuracy = ([\d.]+)", out)
    if m:
        info["test_accuracy"] = float(m.group(1))
    m = re.search(r"Model written to .* in ([\d.]+) s", out)
    if m:
        info["command_reported_s"] = float(m.group(1))
    info["stdout_tail"] = out.strip().splitlines()[-4:]
    return info


def run(ctx: Context) -> dict:
    data = _quick_data(ctx) if ctx.quick else ctx.data
    work = ctx.fresh_dir("warm_rerun")
    cache = work / "cache.h5"
    cold = _train(ctx, data, cache, work / "model_cold")
    warm = _train(ctx, data, cache, work / "model_warm")
    ratio = warm["seconds"] / cold["seconds"]
    return {
        "title": "embedclf train: warm cache vs cold",
        "ratios": [
            {
                "name": "warm / cold wall time",
                "value": ratio,
                "target": "<= 0.10",
                "met": ratio <= 0.10,
            }
        ],
        "metrics": {"data": str(data), "cold": cold, "warm": warm},
    }
