"""Where the int8 TFLite export loses top-1 agreement on grocery (issue 25).

One-off probe (not part of run.py). Trains (once) a grocery model directory
on TensorFlow fp32 Lite0 vectors (``--runtime tensorflow``: the export's
backbone is TensorFlow fp32), calibrates the export's graph once through
``tf.lite.experimental.QuantizationDebugger`` and then quantizes that
calibrated model several ways (``mlir_quantize`` with different
``denylisted_ops`` / ``denylisted_nodes``), each run with LiteRT on every
grocery test photo:

- full int8 (as ``export_tflite(quantize="int8")``),
- the head in float (FULLY_CONNECTED + SOFTMAX), only SOFTMAX in float,
- the k ops with the largest RMSE / scale (the debugger's per-layer
  statistics on calibration photos) in float, with and without the head,
- full int8 and head-float calibrated on 1000 photos instead of 300.

Per variant: size, test accuracy, agreement with the model directory's
answers, photos whose top-2 probabilities are exactly equal (ties), and the
agreement with the fp32 export on 300 held-out training photos.

Run: ``PYTHONPATH=. EMBEDCLF_SHARED=/work/shared python
benchmarks/probes/tflite_int8_probe.py [stage ...]``; writes
``benchmarks/probes/tflite_int8_probe.json``.
"""

from __future__ import annotations

import contextlib
import csv
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
WORK = Path("/tmp/tfl/probe")
OUT = Path(__file__).with_suffix(".json")
HEAD = ["FULLY_CONNECTED", "SOFTMAX"]


def _train():
    from embedclf.cli import main

    out = WORK / "model"
    if not (out / "manifest.json").exists() and not out.exists():
        argv = ["train", str(DATA), "-o", str(out), "--model", str(MODEL),
                "--cache", CACHE, "--runtime", "tensorflow",
                "--no-progress"]  # fmt: skip
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(argv) == 0
    return out


def _reference(model_dir, paths):
    from embedclf import ImageEmbedder
    from embedclf.workflow._model_dir import embedder_settings

    emb = ImageEmbedder(
        model_dir.backbone_handle,
        cache=CACHE,
        progress=False,
        **embedder_settings(model_dir.manifest),
    )
    X = emb.transform(paths)
    assert emb.n_computed_ == 0, emb.n_computed_
    return model_dir.head.predict_proba(X)


def _decode(paths, prep, size, name):
    from embedclf.embedding._images import decode_image, read_image_bytes

    f = WORK / f"{name}.npy"
    if f.exists():
        return np.load(f)
    arr = np.stack(
        [
            decode_image(
                read_image_bytes(p),
                size,
                as_uint8=True,
                resample=prep["resample"],
                crop_fraction=prep["crop_fraction"],
            )
            for p in paths
        ]
    )
    np.save(f, arr)
    return arr


def _run(flat, pixels):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=flat, num_threads=2)
    runner = it.get_signature_runner()
    t = time.perf_counter()
    out = np.stack([runner(image=x[None])["probabilities"][0] for x in pixels])
    return out, len(pixels) / (time.perf_counter() - t)


def _ops(flat):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=flat)
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    kinds = {}
    for op in it._get_ops_details():
        if not op["outputs"]:
            continue
        dt = np.dtype(tensors[op["outputs"][0]]["dtype"]).name
        kinds[f"{op['op_name']}:{dt}"] = kinds.get(f"{op['op_name']}:{dt}", 0) + 1
    return kinds


def main(stages):
    import tensorflow as tf
    from tensorflow.lite.python import convert

    from embedclf import load_image_folder
    from embedclf.workflow._export._graph import prepare_export
    from embedclf.workflow._export._tflite import _serving_function, calibration_paths
    from embedclf.workflow._model_dir import load_model_dir

    WORK.mkdir(parents=True, exist_ok=True)
    results = json.loads(OUT.read_text()) if OUT.exists() else {}
    md = load_model_dir(_train())
    bunch = load_image_folder(DATA / "test")
    paths = [str(p) for p in bunch.paths]
    y = bunch.target_names[bunch.target].astype(str)
    ref_p = _reference(md, paths)
    classes = md.head.classes_.astype(str)
    ref = classes[ref_p.argmax(1)]
    s = np.sort(ref_p, 1)
    margin = s[:, -1] - s[:, -2]
    results["model_dir"] = {
        "n_test": len(paths),
        "test_accuracy": float(np.mean(ref == y)),
        "photos_with_top2_margin_below_0.02": int(np.sum(margin < 0.02)),
        "photos_with_top2_margin_below_0.05": int(np.sum(margin < 0.05)),
        "loadavg": list(os.getloadavg()),
    }
    params, backbones, sizes, prep = prepare_export(md, None, target="x")
    concrete, inputs = _serving_function(backbones, sizes, params, prep)
    size = inputs[0][1]
    test_px = _decode(paths, prep, size, "test")
    cal_all = calibration_paths(md, 1300)
    held = _decode(cal_all[1000:1300], prep, size, "held")
    cal = {n: _decode(cal_all[:n], prep, size, f"cal{n}") for n in (300, 1000)}
    stat_px = cal[300][::3]  # 100 of the calibration photos for the statistics
    owner = tf.Module()
    owner.backbones = [b._owner for b in backbones]

    def converter_for(n):
        c = tf.lite.TFLiteConverter.from_concrete_functions([concrete], owner)
        c.optimizations = [tf.lite.Optimize.DEFAULT]
        c.representative_dataset = lambda: ([x[None]] for x in cal[n])
        c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        return c

    fp32 = tf.lite.TFLiteConverter.from_concrete_functions([concrete], owner).convert()
    held_fp32, _ = _run(fp32, held)

    def evaluate(name, flat, extra=None):
        p, speed = _run(flat, test_px)
        lab = classes[p.argmax(1)]
        s2 = np.sort(p, 1)
        ties = s2[:, -1] == s2[:, -2]
        hp, _ = _run(flat, held)
        dis = lab != ref
        results.setdefault("variants", {})[name] = {
            "model_mb": len(flat) / 1e6,
            "test_accuracy": float(np.mean(lab == y)),
            "agreement": float(np.mean(~dis)),
            "n_disagree": int(dis.sum()),
            "ties_top2": int(ties.sum()),
            "disagree_with_tie": int((dis & ties).sum()),
            "disagree_median_ref_margin": (
                float(np.median(margin[dis])) if dis.any() else None
            ),
            "held_out_train_agreement_with_fp32": float(
                np.mean(hp.argmax(1) == held_fp32.argmax(1))
            ),
            "photos_per_s_1by1": speed,
            "ops": _ops(flat),
            **(extra or {}),
        }
        shown = {k: v for k, v in results["variants"][name].items() if k != "ops"}
        print(name, json.dumps(shown), flush=True)
        OUT.write_text(json.dumps(results, indent=1) + "\n")

    if "fp32" in stages:
        evaluate("fp32", fp32)
    debugger = None
    topk = [a for a in stages if a.startswith("topk")]
    if {"int8", "head"} & set(stages) or topk:
        t = time.perf_counter()
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter_for(300),
            debug_dataset=lambda: ([x[None]] for x in stat_px),
        )
        results["calibrate_s_300"] = time.perf_counter() - t
        calibrated = debugger.calibrated_model

    def quantize(calibrated, ops=None, nodes=None):
        return convert.mlir_quantize(
            calibrated,
            disable_per_channel=False,
            fully_quantize=False,
            enable_numeric_verify=False,
            denylisted_ops=ops,
            denylisted_nodes=nodes,
        )

    if "int8" in stages:
        from embedclf.workflow._export._tflite import export_tflite

        done = export_tflite(md, WORK / "int8_export", quantize="int8")
        evaluate("int8_export", (done.path / "model.tflite").read_bytes())
        evaluate("int8_debugger_full", quantize(calibrated))
    if "head" in stages:
        evaluate("softmax_float", quantize(calibrated, ops=["SOFTMAX"]))
        evaluate("head_float", quantize(calibrated, ops=["FULLY_CONNECTED", "SOFTMAX"]))
    if topk:
        t = time.perf_counter()
        debugger.run()
        buf = io.StringIO()
        debugger.layer_statistics_dump(buf)
        buf.seek(0)
        rows = list(csv.DictReader(buf))
        for r in rows:
            rmse = float(np.sqrt(float(r["mean_squared_error"])))
            r["rmse_per_scale"] = rmse / float(r["scale"])
        rows.sort(key=lambda r: -r["rmse_per_scale"])
        results["debugger_run_s"] = time.perf_counter() - t
        results["layers"] = [
            {k: r[k] for k in ("op_name", "tensor_name", "rmse_per_scale", "scale")}
            for r in rows
        ]
        OUT.write_text(json.dumps(results, indent=1) + "\n")
        names = [r["tensor_name"] for r in rows]
        for k in [int(a[4:]) for a in topk if a[4:]] or (5, 10, 20, 40):
            evaluate(f"top{k}_float", quantize(calibrated, nodes=names[:k]))
            evaluate(
                f"top{k}_float_head_float",
                quantize(calibrated, ops=HEAD, nodes=names[:k]),
            )
    if "int16" in stages:
        c = tf.lite.TFLiteConverter.from_concrete_functions([concrete], owner)
        c.optimizations = [tf.lite.Optimize.DEFAULT]
        c.representative_dataset = lambda: ([x[None]] for x in cal[300])
        c.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8,
            tf.lite.OpsSet.TFLITE_BUILTINS,  # the uint8 input's CAST has no 16x8 kernel
        ]
        evaluate("int16x8", c.convert())
    if "cal1000" in stages:
        t = time.perf_counter()
        d2 = tf.lite.experimental.QuantizationDebugger(
            converter=converter_for(1000),
            debug_dataset=lambda: ([x[None]] for x in stat_px[:2]),
        )
        results["calibrate_s_1000"] = time.perf_counter() - t
        evaluate("cal1000_full", quantize(d2.calibrated_model))
        evaluate("cal1000_head_float", quantize(d2.calibrated_model, ops=HEAD))


if __name__ == "__main__":
    main(sys.argv[1:] or ["fp32", "int8", "head", "topk", "cal1000"])
