"""Does the open-set ('unknown') rule survive the int8 and mixed TFLite exports?

One-off probe (not part of run.py), behind docs/export.md's paragraph on the
open-set rule. Trains (once) a grocery model directory with ``--unknown
auto`` on TensorFlow fp32 Lite0 vectors, leaving 8 classes out of training
(every 10th class in name order, from the 6th: ``--exclude`` of their train
and val photos), exports it with ``--quantize int8``, ``mixed`` and
``dynamic`` with the embedclf on ``PYTHONPATH`` (TAG names that code, e.g.
``before`` / ``after``) and runs each export with LiteRT on

- ``known``: the grocery test photos of the 73 trained classes,
- ``held_out``: the test photos of the 8 left-out classes (photos of none of
  the model's classes, from the same shops and camera),
- ``synthetic``: 48 deterministic images of none of the classes (uniform
  noise, flat colours, colour gradients, 16 of each),

against ``embedclf predict`` on the model directory. Per export and set: the
share of photos with the model directory's top-1 class (``top1_agreement``,
the rule aside), the share the export / predict answer 'unknown'
(``unknown_rate`` / ``predict_unknown_rate``) and the share on which the
export's known/unknown decision equals predict's (``known_agreement``).

With ``--ablate`` (for the code with the int8 fixes), also: mixed with one
backbone op in float (``mixed_rule_only``: the rule in float, the backbone
nearly int8); int8 with one fix patched out: the fused columns' caps, the
synthetic images' ranges, or ReAct's clip as ``tf.minimum`` (which clipped
the head's features too); and int8 with the strict comparison ``score -
threshold < 0`` instead of ``predict``'s ``<= 0``.

Run: ``PYTHONPATH=. EMBEDCLF_SHARED=/work/shared python
benchmarks/probes/tflite_open_set_probe.py TAG [--ablate]``; merges
``runs.TAG`` into ``benchmarks/results/tflite_open_set.json`` (under
results/ so that docs/export.md can quote it; the figures test reads only
that folder).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

SHARED = Path(os.environ.get("EMBEDCLF_SHARED", "/work/shared"))
DATA = SHARED / "data" / "grocery_store"
MODEL = SHARED / "models" / "efficientnet_lite0_feature_vector"
CACHE = "/work/cache/grocery.h5"
WORK = Path(os.environ.get("PROBE_WORK", "/tmp/lite/probe"))
OUT = (
    Path(__file__).resolve().parents[1] / "results" / "tflite_open_set.json"
)  # benchmarks/results/
VARIANTS = ("int8", "mixed", "dynamic")
#: ``--ablate``: mixed with 1 op of the backbone in float (the rest int8) and
#: the rule in float: how much of int8's disagreement is the rule's.
EXTRA = {"mixed_rule_only": {"quantize": "mixed", "float_fraction": 0.01}}
#: ``after --ablate``: int8 with one fix undone, or the strict comparison.
ABLATIONS = {
    "int8_no_caps": ("_unknown", "fusion_caps", lambda fusion, threshold: None),
    "int8_no_widening": ("_open_set_lite", "_widened", lambda a, b: a),
    "int8_strict": (
        "_graph",
        "known_from_margin",
        lambda margin: margin < 0.0,
    ),
    "int8_react_minimum": (
        "_unknown",
        "react_clipped",
        lambda tf, features, clip: tf.minimum(features, clip),
    ),
}


def held_out_classes() -> list[str]:
    return sorted(p.name for p in (DATA / "train").iterdir())[5::10]


def _photos(split, classes):
    return [str(p) for c in classes for p in sorted((DATA / split / c).glob("*.jpg"))]


def _train(cli_main) -> Path:
    out = WORK / "model"
    if (out / "manifest.json").exists():
        return out
    WORK.mkdir(parents=True, exist_ok=True)
    exclude = WORK / "exclude.txt"
    held = held_out_classes()
    exclude.write_text("".join(p + "\n" for s in ("train", "val")
                               for p in _photos(s, held)))  # fmt: skip
    argv = ["train", str(DATA), "-o", str(out), "--model", str(MODEL), "--cache",
            CACHE, "--runtime", "tensorflow", "--unknown", "auto", "--exclude",
            str(exclude), "--no-progress"]  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli_main(argv) == 0
    return out


def synthetic_images(folder: Path) -> list[str]:
    """16 noise, 16 flat-colour and 16 gradient 224x224 PNGs (seeded)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    ramp = np.linspace(0.0, 1.0, 224)
    arrays = []
    for _ in range(16):
        arrays.append(rng.integers(0, 256, (224, 224, 3)))
    for _ in range(16):
        arrays.append(np.broadcast_to(rng.integers(0, 256, 3), (224, 224, 3)))
    for _ in range(16):
        a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        t = ramp[:, None, None] if rng.random() < 0.5 else ramp[None, :, None]
        arrays.append(np.broadcast_to(a + (b - a) * t, (224, 224, 3)))
    paths = []
    for i, arr in enumerate(arrays):
        path = folder / f"synthetic_{i:02d}.png"
        Image.fromarray(np.asarray(arr).astype(np.uint8)).save(path)
        paths.append(str(path))
    return paths


def _reference(cli_main, model_dir, sets):
    """{set: (top-1 class, known)} of ``embedclf predict`` (cached in WORK)."""
    cached = WORK / "reference.json"
    if not cached.exists():
        out = {}
        for name, paths in sets.items():
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                argv = ["predict", str(model_dir), *paths, "--json", "--top-k", "1",
                        "--cache", CACHE, "--no-progress"]  # fmt: skip
                assert cli_main(argv) == 0
            rows = json.loads(buf.getvalue())
            assert [r["path"] for r in rows] == paths
            out[name] = {
                "top1": [r["top_k"][0]["label"] for r in rows],
                "known": [r["label"] != "unknown" for r in rows],
            }
        cached.write_text(json.dumps(out))
    return json.loads(cached.read_text())


def _compare(got_proba, got_labels, classes, ref) -> dict:
    top1 = classes[np.asarray(got_proba).argmax(axis=1)]
    known = np.asarray(got_labels) != "unknown"
    ref_known = np.asarray(ref["known"])
    return {
        "n": len(known),
        "top1_agreement": round(float(np.mean(top1 == np.asarray(ref["top1"]))), 4),
        "unknown_rate": round(float(np.mean(~known)), 4),
        "predict_unknown_rate": round(float(np.mean(~ref_known)), 4),
        "known_agreement": round(float(np.mean(known == ref_known)), 4),
    }


@contextlib.contextmanager
def _ablated(variant):
    """Patch out one of the int8 fixes (ABLATIONS) while exporting."""
    import importlib

    if variant not in ABLATIONS:
        yield
        return
    module, name, replacement = ABLATIONS[variant]
    module = importlib.import_module(f"embedclf.workflow._export.{module}")
    original = getattr(module, name)
    setattr(module, name, replacement)
    try:
        yield
    finally:
        setattr(module, name, original)


def main(tag: str) -> None:
    from embedclf.cli import main as cli_main
    from embedclf.workflow._export._litert import LiteRTClassifier
    from embedclf.workflow._export._tflite import export_tflite
    from embedclf.workflow._model_dir import load_model_dir

    model_dir = _train(cli_main)
    trained = sorted(set(p.name for p in (DATA / "train").iterdir()))
    held = held_out_classes()
    sets = {
        "known": _photos("test", [c for c in trained if c not in held]),
        "held_out": _photos("test", held),
        "synthetic": synthetic_images(WORK / "synthetic"),
    }
    reference = _reference(cli_main, model_dir, sets)
    run = {"load_before": list(os.getloadavg()), "exports": {}}
    variants = list(VARIANTS)
    if "--ablate" in sys.argv:
        variants += list(EXTRA) + list(ABLATIONS)
    for q in variants:
        folder = WORK / tag / q
        start = time.perf_counter()
        with _ablated(q):
            options = EXTRA.get(q, {"quantize": q.split("_")[0]})
            done = export_tflite(load_model_dir(model_dir), folder, **options)
        seconds = time.perf_counter() - start
        lite = LiteRTClassifier(folder, num_threads=2)
        row = {"export_seconds": round(seconds, 1),
               "model_mb": round(done.model_bytes / 1e6, 2),
               "n_float_ops": len(done.float_ops)}  # fmt: skip
        for name, paths in sets.items():
            proba, labels, ok, _ = lite.predict_files(paths)
            assert ok.all()
            row[name] = _compare(proba, labels, lite.classes_, reference[name])
        run["exports"][q] = row
        print(tag, q, json.dumps(row), flush=True)
    run["load_after"] = list(os.getloadavg())
    data = json.loads(OUT.read_text()) if OUT.exists() else {}
    data.setdefault("held_out_classes", held)
    data.setdefault("runs", {})[tag] = run
    OUT.write_text(json.dumps(data, indent=1) + "\n")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    main(args[0] if args else "current")
