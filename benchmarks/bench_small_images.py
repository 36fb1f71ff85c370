"""Item 17: small grayscale images (Fashion-MNIST-like 28x28) and upsampling.

No Fashion-MNIST download is possible here, so the images are made from the
grocery photos the way Fashion-MNIST was made from product photos: converted
to grayscale, centre-cropped square and shrunk to 28x28 (Lanczos), saved as
PNG. A grey PNG is read as RGB with three equal channels, and then resized
to the backbone's input size. Two ways are compared, on the same images, with
the same head (``SoftmaxClassifier()``):

* ``image_size`` left at its default (224 for EfficientNet-Lite0): Pillow
  upsamples 28 -> 224 with bilinear filtering before the backbone;
* ``image_size=28``: the 28x28 pixels go to the backbone as they are, and the
  SavedModel resizes them to its own 224x224 inside (TensorFlow bilinear).

Beside them: the same photos in colour at full resolution (what the 28x28
images lost), and plain scikit-learn ``LogisticRegression`` on the 784 raw
pixels (what the backbone adds). Embedding time per image is measured cold,
each configuration in a fresh cache.
"""

from __future__ import annotations

import numpy as np
from _common import Context, Timer

SIDE = 28
N_CLASSES = 20
PER_CLASS = 20


def _subset(ctx: Context, split: str):
    paths, names = ctx.split(split)
    classes = ctx.quick_classes() if ctx.quick else sorted(set(names))[:N_CLASSES]
    per = 4 if ctx.quick else PER_CLASS
    idx = [i for c in classes for i in np.flatnonzero(names == c)[:per]]
    return paths[idx], names[idx]


def _make_small(paths, root):
    from pathlib import Path

    from PIL import Image, ImageOps

    out = []
    for p in paths:
        p = Path(p)
        target = Path(root) / p.parent.name / (p.stem + ".png")
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            with Image.open(p) as img:
                small = ImageOps.fit(img.convert("L"), (SIDE, SIDE), Image.LANCZOS)
                small.save(target)
        out.append(str(target))
    return np.asarray(out)


def _pixels(paths):
    from PIL import Image

    return np.stack(
        [np.asarray(Image.open(p), dtype=np.float64).ravel() / 255 for p in paths]
    )


def run(ctx: Context) -> dict:
    from sklearn.linear_model import LogisticRegression

    from embedclf import SoftmaxClassifier

    root = ctx.workdir / "small_gray"
    parts = {}
    for split in ("train", "test"):
        paths, y = _subset(ctx, split)
        parts[split] = (paths, _make_small(paths, root / split), y)
    y_tr, y_te = parts["train"][2], parts["test"][2]
    configs = {
        "gray28_upsampled_by_pillow": (1, None),
        "gray28_as_is": (1, SIDE),
        "colour_full_resolution": (0, None),
    }
    results = {}
    for name, (which, size) in configs.items():
        cache = ctx.fresh_dir(f"small_{name}") / "cache.h5"
        emb = ctx.embedder(cache=cache, image_size=size)
        with Timer() as t:
            X_tr = emb.transform(parts["train"][which])
            X_te = emb.transform(parts["test"][which])
        n = len(X_tr) + len(X_te)
        head = SoftmaxClassifier().fit(X_tr, y_tr)
        results[name] = {
            "test_accuracy": float(np.mean(head.predict(X_te) == y_te)),
            "embed_ms_per_image": 1000 * t.seconds / n,
        }
    lr = LogisticRegression(max_iter=2000).fit(_pixels(parts["train"][1]), y_tr)
    results["sklearn_lr_on_784_pixels"] = {
        "test_accuracy": float(np.mean(lr.predict(_pixels(parts["test"][1])) == y_te))
    }
    up, raw = results["gray28_upsampled_by_pillow"], results["gray28_as_is"]
    return {
        "title": "Small grayscale images (28x28): upsampling before the backbone",
        "ratios": [
            {
                "name": "test accuracy, Pillow upsampling - as is (points)",
                "value": 100 * (up["test_accuracy"] - raw["test_accuracy"]),
                "target": "report",
                "met": None,
            },
            {
                "name": "embed time per image, Pillow upsampling / as is",
                "value": up["embed_ms_per_image"] / raw["embed_ms_per_image"],
                "target": "report",
                "met": None,
            },
            {
                "name": "test accuracy, gray 28x28 upsampled - LR on pixels (points)",
                "value": 100
                * (
                    up["test_accuracy"]
                    - results["sklearn_lr_on_784_pixels"]["test_accuracy"]
                ),
                "target": "report",
                "met": None,
            },
        ],
        "metrics": {
            "n_train": len(y_tr),
            "n_test": len(y_te),
            "n_classes": len(set(y_tr)),
            **results,
        },
    }
