"""Child process for the kill and concurrency tests (run as a script, not a test).

Usage: ``python _embed_worker.py CONFIG.json``. The config holds ``model``,
``cache``, ``paths``, ``batch_size``, ``image_size`` and ``out`` (an .npy
path). The worker loads the backbone, prints ``READY``, waits for one line on
stdin (so several workers start embedding at the same moment, or the parent
can time a kill), embeds, saves the vectors to ``out`` and prints one JSON line:
``n_computed``, ``n_cached`` and ``calls`` (images through the backbone during
``transform``, from ``backbone_image_count``).
"""

from __future__ import annotations

import json
import os
import sys


def main(config_path):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np

    from embedclf import ImageEmbedder
    from embedclf._backbones import (
        backbone_image_count,
        load_backbone,
        resolve_backbone,
    )

    with open(config_path) as fh:
        cfg = json.load(fh)
    size = cfg.get("image_size", 32)
    backbone = load_backbone(resolve_backbone(cfg["model"]), size)
    backbone(np.zeros((1, size, size, 3), dtype=np.float32))  # trace once
    est = ImageEmbedder(
        model=cfg["model"],
        cache=cfg["cache"],
        batch_size=cfg.get("batch_size", 4),
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
