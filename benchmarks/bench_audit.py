"""Item 21: the audit's image checks and two-signal near-duplicates (issue 27).

Two planted sets made from the real Grocery Store photos:

* ``grocery_348``: the real training and testing photos (348 pixels) plus,
  in the training part, 30 copies of testing photos resized to 60-90 % and
  re-saved at JPEG quality 60-90, and 10 training photos each blurred
  (Gaussian radius 3), darkened (brightness x0.15), overexposed (brightness
  x3) and blank (one grey); 5 % of the real training labels flipped;
* ``small_240``: the same on five classes (the five with most training
  photos) shrunk to 240 pixels on their long side, the size of the photo set
  issue 27 was measured on.

Measured per set: the planted copies paired (and by which signal), each
planted problem reported (by the image checks; anywhere in the audit), the
share of the real photos named as having an image issue, and the recall of
the flipped labels with and without the image checks. Then the audit of the
real grocery splits (train, val, test): counts per section, the pairs each
signal adds, and the time of a warm run (vectors and image properties in
the cache). ``--cache /work/cache/grocery.h5`` reads the grocery vectors.
"""

from __future__ import annotations

import os

import numpy as np
from _common import Context, Timer

N_COPIES = 30
N_EACH = 10
FLIP = 0.05
PROBLEMS = ("blurred", "darkened", "overexposed", "blank")


def _keys(paths):
    from embedclf.embedding._images import content_key, read_image_bytes

    return [content_key(read_image_bytes(p)) for p in paths]


def _embed_and_measure(ctx, paths, cache):
    from embedclf.workflow._audit._images import image_properties

    X = ctx.embedder(cache=cache).transform(paths)
    keys = _keys(paths)
    return X, keys, image_properties(paths, keys, cache=cache)


def _plant(kind, src, dst, rng, side=None):
    from PIL import Image, ImageEnhance, ImageFilter

    with Image.open(src) as img:
        img = _shrink(img.convert("RGB"), side)
    if kind == "copy":
        s = rng.uniform(0.6, 0.9)
        img = img.resize((round(img.width * s), round(img.height * s)), Image.BILINEAR)
        img.save(dst, quality=int(rng.integers(60, 91)))
        return
    if kind == "blurred":
        img = img.filter(ImageFilter.GaussianBlur(3))
    elif kind == "darkened":
        img = ImageEnhance.Brightness(img).enhance(0.15)
    elif kind == "overexposed":
        img = ImageEnhance.Brightness(img).enhance(3.0)
    elif kind == "blank":
        img = Image.new("RGB", img.size, (200, 200, 200))
    img.save(dst, quality=90)


def _shrink(img, side):
    from PIL import Image

    if side is None:
        return img
    s = side / max(img.size)
    return img.resize((round(img.width * s), round(img.height * s)), Image.LANCZOS)


def _base(ctx, side, root):
    """(paths, labels, split) of the real photos of the set (shrunk if side)."""
    parts = {s: ctx.split(s) for s in ("train", "test")}
    if side is None:
        paths = np.concatenate([parts["train"][0], parts["test"][0]])
        labels = np.concatenate([parts["train"][1], parts["test"][1]])
        split = np.repeat(["training", "testing"], [len(parts[s][0]) for s in parts])
        return paths, labels, split
    names, counts = np.unique(parts["train"][1], return_counts=True)
    classes = names[np.argsort(-counts, kind="stable")][:5]
    out = ([], [], [])
    for s, name in (("train", "training"), ("test", "testing")):
        for p, y in zip(*parts[s]):
            if y in classes:
                dst = root / "real" / s / y / os.path.basename(p)
                if not dst.exists():
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    from PIL import Image

                    with Image.open(p) as img:
                        _shrink(img.convert("RGB"), side).save(dst, quality=90)
                out[0].append(str(dst))
                out[1].append(y)
                out[2].append(name)
    return tuple(np.asarray(a) for a in out)


def _planted(ctx, name, side):
    from embedclf.workflow._audit._run import audit_vectors

    root = ctx.workdir / "audit_planted" / name
    (root / "plants").mkdir(parents=True, exist_ok=True)
    paths, labels, split = _base(ctx, side, root)
    rng = np.random.default_rng(0)
    test, train = (
        np.flatnonzero(split == "testing"),
        np.flatnonzero(split == "training"),
    )
    n_copies, n_each = (4, 2) if ctx.quick else (N_COPIES, N_EACH)
    picks = {"copy": rng.choice(test, n_copies, replace=False)}
    chosen = rng.choice(train, n_each * len(PROBLEMS), replace=False)
    for k, kind in enumerate(PROBLEMS):
        picks[kind] = chosen[k * n_each : (k + 1) * n_each]
    new, src, kinds = [], [], []
    for kind, rows in picks.items():
        for i in rows:
            dst = root / "plants" / f"{kind}_{os.path.basename(paths[i])}"
            _plant(kind, paths[i], dst, rng, side=None)
            new.append(str(dst))
            src.append(int(i))
            kinds.append(kind)
    real_cache = ctx.shared_cache if side is None else root / "real.h5"
    Xr, kr, Pr = _embed_and_measure(ctx, paths, real_cache)
    Xn, kn, Pn = _embed_and_measure(ctx, np.asarray(new), root / "plants.h5")
    n = len(paths)
    X, keys, props = np.vstack([Xr, Xn]), kr + kn, np.vstack([Pr, Pn])
    all_paths = np.concatenate([paths, new])
    y = np.concatenate([labels, labels[src]])
    sp = np.concatenate([split, ["training"] * len(new)])
    flipped = rng.choice(train, int(round(FLIP * len(train))), replace=False)
    classes = np.unique(labels)
    for i in flipped:
        y[i] = rng.choice(classes[classes != labels[i]])
    with Timer() as t:
        res = audit_vectors(X, y, sp, paths=all_paths, keys=keys, props=props)
    before = audit_vectors(X, y, sp, paths=all_paths, keys=keys, props=None)
    return _score(res, before, n, src, kinds, flipped) | {
        "cleanvision_defaults": _cleanvision_defaults(props, n, kinds),
        "n_real": n,
        "n_classes": len(classes),
        "side": side or 348,
        "audit_seconds": t.seconds,
    }


def _cleanvision_defaults(props, n, kinds):
    """What CleanVision's own flags (no deviation) find on the same photos."""
    from embedclf.workflow._audit._images import find_image_issues

    issues = find_image_issues(props, deviations=False)
    flagged = np.zeros(len(props), dtype=bool)
    for _, f in issues.values():
        flagged |= f
    out = {"clean_with_image_issue": int(flagged[:n].sum())}
    out["clean_by_issue"] = {k: int(f[:n].sum()) for k, (_, f) in issues.items()}
    want = {
        "blurred": "blurry",
        "darkened": "dark",
        "overexposed": "light",
        "blank": "low_information",
    }
    for kind, issue in want.items():
        rows = n + np.flatnonzero(np.asarray(kinds) == kind)
        out[f"{kind}_flagged_{issue}"] = int(issues[issue][1][rows].sum())
    return out


def _score(res, before, n, src, kinds, flipped):
    kinds = np.asarray(kinds)
    pairs = {(p["i"], p["j"]): p for p in res.duplicates}
    copies = [(src[k], n + k) for k in np.flatnonzero(kinds == "copy")]
    found = [pairs.get((min(a, b), max(a, b))) for a, b in copies]
    by_signal = {}
    for p in found:
        if p is not None:
            by_signal[p["signal"]] = by_signal.get(p["signal"], 0) + 1
    image = {}
    for r in res.image_issues:
        image.setdefault(r["index"], []).append(r["issue"])
    anywhere = set(image) | {r["index"] for r in res.outliers}
    anywhere |= {r["index"] for r in res.label_issues}
    problems = {}
    for kind in PROBLEMS:
        rows = [n + k for k in np.flatnonzero(kinds == kind)]
        problems[kind] = {
            "n": len(rows),
            "by_image_checks": sum(i in image for i in rows),
            "anywhere": sum(i in anywhere for i in rows),
            "issues": sorted({x for i in rows for x in image.get(i, [])}),
        }
    clean_flagged = sum(i < n for i in image)
    clean_by_issue = {}
    for i, found_issues in image.items():
        if i < n:
            for x in found_issues:
                clean_by_issue[x] = clean_by_issue.get(x, 0) + 1

    def recall(r):
        flagged = {x["index"] for x in r.label_issues}
        return float(np.mean([i in flagged for i in flipped]))

    sims = [p["similarity"] for p in found if p and p["similarity"] is not None]
    return {
        "copies": {
            "n": len(copies),
            "paired": sum(p is not None for p in found),
            "by_signal": by_signal,
            "cosine_min": float(min(sims)) if sims else None,
            # CleanVision's own near-duplicate rule: equal hashes.
            "equal_hash": sum(bool(p) and p.get("phash_distance") == 0 for p in found),
        },
        "problems": problems,
        "clean_with_image_issue": clean_flagged,
        "clean_with_image_issue_share": clean_flagged / n,
        "clean_by_issue": clean_by_issue,
        "label_recall_with_image_checks": recall(res),
        "label_recall_without_image_checks": recall(before),
        "n_flipped": len(flipped),
    }


def _real(ctx):
    """The audit of the real grocery splits: counts per section, warm time."""
    from embedclf.workflow._audit._run import audit_images

    parts = [(s, *ctx.split(s)) for s in ("train", "val", "test")]
    paths = np.concatenate([p for _, p, _ in parts])
    labels = np.concatenate([y for _, _, y in parts])
    names = {"train": "training", "val": "validation", "test": "testing"}
    split = np.concatenate([[names[s]] * len(p) for s, p, _ in parts])

    memo = ctx.fresh_dir("audit_memo")

    def audit(memory):
        return audit_images(
            paths,
            labels,
            split,
            model=ctx.model,
            cache=ctx.shared_cache,
            memory=memory,
        )

    # The first run fills the cache (vectors and image properties) if needed
    # and the memo (out-of-fold probabilities, neighbour searches) as the
    # CLI's <output>/.memo does; then warm with and without the memo.
    audit(memo)
    with Timer() as t:
        res = audit(memo)
    with Timer() as t_no_memo:
        audit(None)
    s = res.summary
    # What the image checks add to a warm run: reading the properties back
    # and pairing the hashes (the rest is the label and outlier search).
    from embedclf.workflow._audit._hash_pairs import phash_pairs
    from embedclf.workflow._audit._images import image_properties, phash_bits

    keys = _keys(paths)
    with Timer() as t_props:
        props = image_properties(paths, keys, cache=ctx.shared_cache)
        phash_pairs(phash_bits(props), split)
    return {
        "warm_seconds": t.seconds,
        "warm_seconds_without_memo": t_no_memo.seconds,
        "warm_image_checks_seconds": t_props.seconds,
        "n_images": s["n_images"],
        "n_label_issues": s["n_label_issues"],
        "n_exact_duplicate_pairs": s["n_exact_duplicate_pairs"],
        "n_near_duplicate_pairs": s["n_near_duplicate_pairs"],
        "n_cross_split_pairs": s["n_cross_split_pairs"],
        "pairs_by_signal": s["pairs_by_signal"],
        "cross_split_pairs_by_signal": s["cross_split_pairs_by_signal"],
        "n_image_issues": s["n_image_issues"],
        "n_images_with_image_issue": s["n_images_with_image_issue"],
        "image_issue_share": s["n_images_with_image_issue"] / s["n_images"],
        "n_outliers": s["n_outliers"],
        "twins": s["twins"],
    }


def run(ctx: Context) -> dict:
    sets = {"grocery_348": _planted(ctx, "grocery_348", None)}
    sets["small_240"] = _planted(ctx, "small_240", 240)
    real = _real(ctx)
    ratios = []
    for name, m in sets.items():
        missed = [k for k, v in m["problems"].items() if v["anywhere"] < v["n"]]
        ratios += [
            {
                "name": f"{name}: planted resized+re-encoded copies paired",
                "value": m["copies"]["paired"] / m["copies"]["n"],
                "target": "1.0",
                "met": m["copies"]["paired"] == m["copies"]["n"],
            },
            {
                "name": f"{name}: planted problem photos reported (share)",
                "value": sum(v["anywhere"] for v in m["problems"].values())
                / sum(v["n"] for v in m["problems"].values()),
                "target": "1.0" + (f" (missed: {', '.join(missed)})" if missed else ""),
                "met": not missed,
            },
            {
                "name": f"{name}: real photos with an image issue",
                "value": m["clean_with_image_issue_share"],
                "target": "< 0.05",
                "met": m["clean_with_image_issue_share"] < 0.05,
            },
            {
                "name": f"{name}: flipped-label recall, with - without image checks",
                "value": m["label_recall_with_image_checks"]
                - m["label_recall_without_image_checks"],
                "target": ">= 0",
                "met": m["label_recall_with_image_checks"]
                >= m["label_recall_without_image_checks"],
            },
        ]
    ratios += [
        {
            "name": "real grocery splits: warm audit (s)",
            "value": real["warm_seconds"],
            "target": "report",
            "met": None,
        },
        {
            "name": "real grocery splits: warm audit without the memo (s)",
            "value": real["warm_seconds_without_memo"],
            "target": "report",
            "met": None,
        },
        {
            "name": "real grocery splits: warm image checks + hash pairs (s)",
            "value": real["warm_image_checks_seconds"],
            "target": "report",
            "met": None,
        },
    ]
    return {
        "title": "Audit: CleanVision image checks and two-signal near-duplicates",
        "ratios": ratios,
        "metrics": {"planted": sets, "real_grocery": real},
    }
