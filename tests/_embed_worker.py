"""A child process that embeds images, for the kill and concurrency tests.

Run as ``python _embed_worker.py CONFIG.json``: the config holds ``model``,
``cache``, ``paths``, ``batch_size``, ``image_size`` and ``out`` (an .npy
path). The child loads the backbone, prints ``READY``, waits for one line on
stdin (so several children start embedding at the same moment, or the parent
can time a kill), embeds, saves the vectors to ``out`` and prints one JSON
line: ``n_computed``, ``n_cached`` and ``calls`` (images through the backbone
during ``transform``, from ``backbone_image_count``).

The parent side (``start_worker``, ``wait_ready``, ``go``, ``finish_worker``)
is imported by the tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def start_worker(tmp_path, tag, model, cache, paths, *, batch_size=2, size=32):
    """Start a child; its stderr (TensorFlow's chatter) goes to a file."""
    tmp_path = Path(tmp_path)
    cfg = {
        "model": str(model),
        "cache": str(cache),
        "paths": [str(p) for p in paths],
        "batch_size": batch_size,
        "image_size": size,
        "out": str(tmp_path / f"{tag}.npy"),
    }
    cfg_path = tmp_path / f"{tag}.json"
    cfg_path.write_text(json.dumps(cfg))
    stderr = open(tmp_path / f"{tag}.stderr", "w")  # noqa: SIM115 - closed later
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.Popen(
        [sys.executable, __file__, str(cfg_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env=env,
    )
    proc.stderr_file = stderr
    proc.stderr_path = tmp_path / f"{tag}.stderr"
    proc.out_path = cfg["out"]
    proc.tag = tag
    return proc


def _fail(proc, what):
    import pytest

    proc.stderr_file.flush()
    err = proc.stderr_path.read_text()[-3000:]
    pytest.fail(f"worker {proc.tag} {what}:\n{err}")


def wait_ready(proc):
    while True:
        line = proc.stdout.readline()
        if line.strip() == "READY":
            return
        if not line:
            proc.wait()
            _fail(proc, "died before READY")


def go(proc):
    proc.stdin.write("go\n")
    proc.stdin.flush()


def finish_worker(proc, timeout=300):
    """Wait for a child to exit 0; returns its report and its vectors."""
    import numpy as np

    out, _ = proc.communicate(timeout=timeout)
    proc.stderr_file.close()
    if proc.returncode != 0:
        _fail(proc, f"exited with {proc.returncode}")
    return json.loads(out.strip().splitlines()[-1]), np.load(proc.out_path)


def reap(proc):
    """Wait for a killed child and close its pipes."""
    proc.wait(timeout=60)
    for stream in (proc.stdout, proc.stdin, proc.stderr_file):
        stream.close()


def main(config_path):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np

    from embedclf import ImageEmbedder
    from embedclf.embedding._backbones import (
        backbone_image_count,
        load_backbone,
        resolve_backbone,
    )

    with open(config_path) as fh:
        cfg = json.load(fh)
    size = cfg["image_size"]
    backbone = load_backbone(resolve_backbone(cfg["model"]), size)
    backbone(np.zeros((1, size, size, 3), dtype=np.float32))  # trace once
    est = ImageEmbedder(
        model=cfg["model"],
        cache=cfg["cache"],
        batch_size=cfg["batch_size"],
        image_size=size,
        progress=False,
    )
    print("READY", flush=True)
    sys.stdin.readline()
    before = backbone_image_count()
    X = est.transform(cfg["paths"])
    calls = backbone_image_count() - before
    np.save(cfg["out"], X)
    report = {"n_computed": est.n_computed_, "n_cached": est.n_cached_}
    print(json.dumps(dict(report, calls=calls)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
