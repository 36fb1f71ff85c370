"""Item 19: TensorFlow fp32 vs OpenVINO fp32 / bf16 / int8 (issue 23).

Four parts, each arm measured in the same process and rounds, in an order
that rotates between rounds; medians with their range; the load average is
recorded before each part (the machine is shared, so wall-clock rates move
with the load: images per CPU-second are reported beside them, and move
much less).

1. **backbone alone**: one batch of ``batch_size`` pre-decoded grocery photos
   (uint8) through each runtime, twice per round, for EfficientNet-Lite0,
   Lite2 and Keras InceptionV3 with random weights (speed only; no int8,
   whose calibration would mean nothing on random weights);
2. **pipeline, cold cache** (Lite0): ``ImageEmbedder.transform`` of the same
   photos into a fresh cache per arm and round (the converted / quantized
   model is prepared before, as a second run finds it), against its CPU
   limit: the cores divided by the CPU time per photo of decoding + hashing
   (measured single-threaded here) plus the backbone alone (part 1);
3. **vectors and accuracy** (Lite0, all grocery train + test photos):
   cosine of each runtime's vectors to TensorFlow fp32's, test accuracy of
   a default ``SoftmaxClassifier`` fitted on each runtime's own training
   vectors, and top-1 agreement of the TensorFlow-fitted head applied to
   each runtime's test vectors with its answers on TensorFlow's (what an
   export to a TensorFlow SavedModel gives up for a bf16 / int8 model);
4. **the README's main command**, cold (a fresh cache and folder), as
   subprocesses in interleaved rounds: the default runtime on a machine that
   never converted the backbone (an empty store of converted backbones per
   run), ``--runtime tensorflow``, and the default with the backbone
   converted before (a store holding the converted Lite0, prepared once, as
   a second project on the machine finds it): embedding time, the ratios to
   TensorFlow, and each run's test accuracy.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _common import ROOT, SHARED, Context

ARMS = {
    "tf": ("tensorflow", "fp32"),
    "ov_fp32": ("openvino", "fp32"),
    "ov_bf16": ("openvino", "bf16"),
    "ov_int8": ("openvino", "int8"),
}
LITE2 = SHARED / "models" / "efficientnet_lite2_feature_vector"
INCEPTION = "keras:InceptionV3?weights=none"


def _embedder(ctx, model, arm, cache, calibration, **kw):
    from embedclf import ImageEmbedder

    runtime, precision = ARMS[arm]
    return ImageEmbedder(
        str(model),
        cache=cache,
        batch_size=ctx.batch_size,
        progress=False,
        runtime=runtime,
        precision=precision,
        calibration_images=calibration if precision == "int8" else None,
        **kw,
    )


def _linked_cache(work: Path, ov_dir: Path, name: str) -> Path:
    """A fresh cache path whose OpenVINO folder is the prepared one."""
    cache = work / f"{name}.h5"
    ov_dir.mkdir(parents=True, exist_ok=True)
    os.symlink(ov_dir, str(cache) + ".openvino")
    return cache


def _backbone_alone(ctx, model, arms, photos, calibration, rounds, ov_dir):
    from embedclf.embedding._backbones import resolve_backbone
    from embedclf.embedding._images import load_image
    from embedclf.embedding._runtime import load_runtime

    spec = resolve_backbone(str(model))
    work = ctx.fresh_dir(f"runtime_alone_{spec.identity[-12:]}")
    fns, prep_s = {}, {}
    for arm in arms:
        emb = _embedder(ctx, model, arm, _linked_cache(work, ov_dir, arm), calibration)
        t = time.perf_counter()
        fns[arm] = load_runtime(spec, None, emb._runtime(spec))
        prep_s[arm] = time.perf_counter() - t
    size = (fns["tf"].default_image_size,) * 2
    batch = np.stack([load_image(p, size, as_uint8=True)[1] for p in photos])
    rate, cpu = {a: [] for a in arms}, {a: [] for a in arms}
    for rnd in range(rounds):
        order = arms[rnd % len(arms) :] + arms[: rnd % len(arms)]
        for arm in order:
            fns[arm](batch)  # warm
            w, c = time.perf_counter(), time.process_time()
            for _ in range(2):
                fns[arm](batch)
            n = 2 * len(batch)
            rate[arm].append(n / (time.perf_counter() - w))
            cpu[arm].append(n / (time.process_time() - c))
    return _summary(rate, cpu, prep_s)


def _summary(rate, cpu, prep_s=None):
    out = {}
    for arm in rate:
        r = np.array(rate[arm])
        c = np.array(cpu[arm])
        out[arm] = {
            "images_per_s": float(np.median(r)),
            "images_per_s_range": [float(r.min()), float(r.max())],
            "images_per_cpu_s": float(np.median(c)),
            "images_per_cpu_s_range": [float(c.min()), float(c.max())],
        }
        if prep_s is not None:
            out[arm]["prepare_s"] = prep_s[arm]
    base_r, base_c = np.array(rate["tf"]), np.array(cpu["tf"])
    for arm in rate:  # ratios per round, then the median
        rr = np.array(rate[arm]) / base_r
        cr = np.array(cpu[arm]) / base_c
        out[arm]["vs_tf"] = float(np.median(rr))
        out[arm]["vs_tf_range"] = [float(rr.min()), float(rr.max())]
        out[arm]["cpu_vs_tf"] = float(np.median(cr))
        out[arm]["cpu_vs_tf_range"] = [float(cr.min()), float(cr.max())]
    return out


def _decode_cpu_per_image(photos, size):
    from embedclf.embedding._images import content_key, load_image, read_image_bytes

    c = time.process_time()
    for p in photos:
        content_key(read_image_bytes(p))
        load_image(p, size, as_uint8=True)
    return (time.process_time() - c) / len(photos)


def _pipeline(ctx, arms, photos, calibration, rounds, ov_dir, alone):
    rate, cpu = {a: [] for a in arms}, {a: [] for a in arms}
    for rnd in range(rounds):
        work = ctx.fresh_dir(f"runtime_pipeline_{rnd}")
        order = arms[rnd % len(arms) :] + arms[: rnd % len(arms)]
        for arm in order:
            cache = _linked_cache(work, ov_dir, arm)
            emb = _embedder(ctx, ctx.model, arm, cache, calibration)
            w, c = time.perf_counter(), time.process_time()
            emb.transform(photos)
            rate[arm].append(len(photos) / (time.perf_counter() - w))
            cpu[arm].append(len(photos) / (time.process_time() - c))
    out = _summary(rate, cpu)
    decode = _decode_cpu_per_image(photos, (224, 224))
    cores = len(os.sched_getaffinity(0))
    for arm in arms:
        per_image = decode + 1.0 / alone[arm]["images_per_cpu_s"]
        out[arm]["cpu_limit_images_per_s"] = cores / per_image
        out[arm]["of_cpu_limit"] = out[arm]["images_per_s"] / (cores / per_image)
        out[arm]["cpu_per_image_vs_parts"] = (
            1.0 / out[arm]["images_per_cpu_s"]
        ) / per_image
    out["decode_hash_cpu_s_per_image"] = decode
    return out


def _vectors(ctx, arms, calibration, ov_dir):
    from embedclf import SoftmaxClassifier

    (tr, ytr), (te, yte) = ctx.split("train"), ctx.split("test")
    own = ctx.workdir / "runtime_grocery.h5"
    link = Path(str(own) + ".openvino")
    if not link.exists():
        os.symlink(ov_dir, link)
    X = {}
    for arm in arms:
        cache = ctx.shared_cache if arm == "tf" else own
        emb = _embedder(ctx, ctx.model, arm, cache, calibration)
        X[arm] = (emb.transform(tr), emb.transform(te))
    base = SoftmaxClassifier().fit(X["tf"][0], ytr)
    base_pred = base.predict(X["tf"][1])
    out = {}
    for arm in arms:
        both = np.vstack(X[arm])
        ref = np.vstack(X["tf"])
        cos = (both * ref).sum(1) / np.linalg.norm(both, axis=1)
        cos /= np.linalg.norm(ref, axis=1)
        head = SoftmaxClassifier().fit(X[arm][0], ytr)
        out[arm] = {
            "cosine_median": float(np.median(cos)),
            "cosine_min": float(cos.min()),
            "test_accuracy": float(head.score(X[arm][1], yte)),
            "tf_head_top1_agreement": float(
                np.mean(base.predict(X[arm][1]) == base_pred)
            ),
            "n_photos": len(both),
        }
    return out


def _train_cli(ctx, name, extra, store):
    """One README command in a child process, its converted backbones stored
    in ``store`` (the machine's store of converted backbones, ``_ov_store``)."""
    work = ctx.fresh_dir(f"runtime_train_{name}")
    data = ctx.data
    cache = work / "grocery-cache.h5"
    argv = [sys.executable, "-m", "embedclf", "train", str(data / "train")]
    argv += ["--val-dir", str(data / "val"), "--test-dir", str(data / "test")]
    argv += ["--model", str(ctx.model), "--cache", str(cache)]
    argv += ["--output", str(work / "grocery-model"), *extra]
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    env["EMBEDCLF_OPENVINO_DIR"] = str(store)
    env.pop("EMBEDCLF_RUNTIME", None)
    load = os.getloadavg()[0]
    t = time.perf_counter()
    started = time.time()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = time.perf_counter() - t
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    if proc.returncode != 0:
        raise RuntimeError(f"train {name} failed:\n{proc.stderr[-2000:]}")
    embedded = re.search(r"Embedded (\d+) images in ([\d.]+) s", proc.stdout)
    manifest = json.loads((work / "grocery-model" / "manifest.json").read_text())
    irs = list(Path(str(cache) + ".openvino").glob("*/model.bin"))
    return {
        "argv": argv[3:],
        "embed_s": float(embedded.group(2)),
        "n_images": int(embedded.group(1)),
        "total_s": total,
        "total_cpu_s": cpu,
        "test_accuracy": manifest["metrics"]["test_accuracy"],
        "runtime": manifest.get("runtime"),
        "precision": manifest.get("precision"),
        "loadavg_before": load,
        # False when the IR beside the cache came from the store (older file)
        "converted_in_run": any(p.stat().st_mtime >= started for p in irs),
    }


def _converted_store(ctx) -> Path:
    """A store holding Lite0 converted and compiled as the README command's
    default converts it: ``embedclf embed`` of four photos, default runtime."""
    store = ctx.fresh_dir("runtime_store_converted")
    work = ctx.fresh_dir("runtime_store_prepare")
    train, _ = ctx.split("train")
    (work / "photos").mkdir()
    for i, path in enumerate(train[:4]):
        shutil.copy(path, work / "photos" / f"{i}{Path(path).suffix}")
    argv = [sys.executable, "-m", "embedclf", "embed", str(work / "photos")]
    argv += ["--model", str(ctx.model), "--cache", str(work / "c.h5")]
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    env["EMBEDCLF_OPENVINO_DIR"] = str(store)
    env.pop("EMBEDCLF_RUNTIME", None)
    subprocess.run(argv, capture_output=True, text=True, env=env, check=True)
    return store


def _conversion_time(ctx) -> float:
    """Seconds to trace, convert and compile Lite0 (TensorFlow already
    loaded): what a first OpenVINO run pays once, beside TensorFlow's load."""
    from embedclf.embedding._backbones import load_backbone, resolve_backbone
    from embedclf.embedding._runtime import load_runtime, prepare

    spec = resolve_backbone(str(ctx.model))
    load_backbone(spec)
    root = ctx.fresh_dir("runtime_conversion")
    t = time.perf_counter()
    rt = prepare(spec, None, runtime="openvino", precision="bf16", root=str(root))
    load_runtime(spec, None, rt)
    return time.perf_counter() - t


#: The README command's arms: its extra arguments, and whether the machine's
#: store of converted backbones holds the converted Lite0 before the run.
README_ARMS = {
    "default": ([], False),
    "tensorflow": (["--runtime", "tensorflow"], False),
    "converted": ([], True),
}


def _readme_rounds(ctx, rounds):
    """The README command cold (a fresh cache and folder), interleaved
    (ABC, CBA, ...): the default on a machine that never converted the
    backbone (an empty store of its own per run), ``--runtime tensorflow``,
    and the default with the backbone converted before (the store prepared
    once, as a second project on the machine finds it)."""
    converted = _converted_store(ctx)
    runs = {name: [] for name in README_ARMS}
    for rnd in range(rounds):
        order = list(README_ARMS) if rnd % 2 == 0 else list(README_ARMS)[::-1]
        for name in order:
            extra, prepared = README_ARMS[name]
            store = converted if prepared else ctx.fresh_dir(f"store_{name}_{rnd}")
            runs[name].append(_train_cli(ctx, f"{name}_{rnd}", extra, store))
    out = {name: dict(r[0], rounds=r) for name, r in runs.items()}
    for key in ("embed_s", "total_cpu_s", "test_accuracy"):
        for name, r in runs.items():
            out[name][key] = float(np.median([x[key] for x in r]))
    tf = runs["tensorflow"]
    out["embed_ratio_per_round"] = [
        t["embed_s"] / d["embed_s"] for d, t in zip(runs["default"], tf)
    ]
    out["converted_embed_ratio_per_round"] = [
        t["embed_s"] / c["embed_s"] for c, t in zip(runs["converted"], tf)
    ]
    return out


def _release_models():
    """Drop this process's loaded and compiled backbones (their buffers for a
    batch of 32 InceptionV3 images weigh gigabytes)."""
    import gc

    from embedclf.embedding import _backbones, _openvino

    _openvino._compiled.clear()
    _backbones._registry.clear()
    gc.collect()


def run(ctx: Context) -> dict:
    """Item 19, with the machine's store of converted backbones turned off in
    this process: each part converts into folders of its own, and
    ``conversion_s`` must convert (the README command's children get a store
    each, ``_readme_rounds``)."""
    old = os.environ.get("EMBEDCLF_OPENVINO_DIR")
    os.environ["EMBEDCLF_OPENVINO_DIR"] = ""
    try:
        return _run(ctx)
    finally:
        if old is None:
            os.environ.pop("EMBEDCLF_OPENVINO_DIR")
        else:
            os.environ["EMBEDCLF_OPENVINO_DIR"] = old


def _run(ctx: Context) -> dict:
    from embedclf.embedding import _openvino

    rounds = 1 if ctx.quick else 3
    train, _ = ctx.split("train")
    order = np.random.default_rng(0).permutation(len(train))
    n_alone = 8 if ctx.quick else ctx.batch_size
    photos = [str(p) for p in train[order[:n_alone]]]
    calibration = [str(p) for p in train]
    ov_root = ctx.workdir / "runtime_openvino"
    metrics = {"capabilities": list(_openvino.capabilities()), "loadavg": {}}
    # Quick mode (the smoke test): TF and OpenVINO fp32 on a few photos.
    arms = ["tf", "ov_fp32"] if ctx.quick else list(ARMS)
    backbones = [("lite0", ctx.model, arms)]
    if not ctx.quick:
        backbones += [
            ("lite2", LITE2, list(ARMS)),
            ("inception_v3_random", INCEPTION, ["tf", "ov_fp32", "ov_bf16"]),
        ]
    alone = {}
    for name, model, model_arms in backbones:
        metrics["loadavg"][f"alone_{name}"] = os.getloadavg()
        alone[name] = _backbone_alone(
            ctx, model, model_arms, photos, calibration, rounds, ov_root / name
        )
        _release_models()
    metrics["backbone_alone"] = alone
    n_pipe = 16 if ctx.quick else 256
    pipe_photos = [str(p) for p in train[order[:n_pipe]]]
    metrics["loadavg"]["pipeline"] = os.getloadavg()
    metrics["pipeline"] = _pipeline(
        ctx,
        arms,
        pipe_photos,
        calibration,
        rounds if ctx.quick else 3,
        ov_root / "lite0",
        alone["lite0"],
    )
    metrics["loadavg"]["vectors"] = os.getloadavg()
    metrics["vectors"] = _vectors(ctx, arms, calibration, ov_root / "lite0")
    if not ctx.quick:
        metrics["conversion_s"] = _conversion_time(ctx)
        metrics["readme_command"] = _readme_rounds(ctx, rounds=2)
    return _report(metrics)


def _report(m) -> dict:
    ratios = []
    a0 = m["backbone_alone"]["lite0"]
    best = "ov_bf16" if "ov_bf16" in a0 else "ov_fp32"
    ratios.append(
        {
            "name": f"Lite0 backbone alone, OpenVINO {best[3:]} / TF fp32, images/s",
            "value": a0[best]["vs_tf"],
            "target": "report",
            "met": None,
        }
    )
    inc = m["backbone_alone"].get("inception_v3_random")
    if inc:
        ratios.append(
            {
                "name": "InceptionV3 (random) alone, OpenVINO bf16 / TF fp32",
                "value": inc["ov_bf16"]["vs_tf"],
                "target": ">= 4",
                "met": inc["ov_bf16"]["vs_tf"] >= 4,
            }
        )
    readme = m.get("readme_command")
    if readme:
        speed = float(np.median(readme["embed_ratio_per_round"]))
        diff = (
            readme["default"]["test_accuracy"] - readme["tensorflow"]["test_accuracy"]
        )
        cpu = readme["tensorflow"]["total_cpu_s"] / readme["default"]["total_cpu_s"]
        m["readme_speedup"] = speed
        converted = float(np.median(readme["converted_embed_ratio_per_round"]))
        m["readme_speedup_converted"] = converted
        m["readme_cpu_ratio"] = cpu
        m["readme_accuracy_difference"] = diff
        ratios += [
            {
                "name": "README command cold: embed time TF / default",
                "value": speed,
                "target": ">= 3",
                "met": speed >= 3,
            },
            {
                "name": "  embed time TF / default, backbone converted before",
                "value": converted,
                "target": "report",
                "met": None,
            },
            {
                "name": "  whole command's CPU seconds, TF / default",
                "value": cpu,
                "target": "report",
                "met": None,
            },
            {
                "name": "  test accuracy default - TF (points)",
                "value": 100 * diff,
                "target": ">= -0.3",
                "met": 100 * diff >= -0.3,
            },
        ]
    vec = m["vectors"]
    ratios.append(
        {
            "name": "OpenVINO fp32 cosine to TF, min",
            "value": vec["ov_fp32"]["cosine_min"],
            "target": ">= 0.9999",
            "met": vec["ov_fp32"]["cosine_min"] >= 0.9999,
        }
    )
    if "ov_bf16" in vec:
        ratios.append(
            {
                "name": "OpenVINO bf16 cosine to TF, median",
                "value": vec["ov_bf16"]["cosine_median"],
                "target": ">= 0.999",
                "met": vec["ov_bf16"]["cosine_median"] >= 0.999,
            }
        )
    return {
        "title": "runtimes: TF fp32 vs OpenVINO fp32/bf16/int8",
        "ratios": ratios,
        "metrics": m,
        "markdown": _markdown(m),
    }


def _markdown(m) -> str:
    lines = [
        "| backbone | arm | alone img/s (range) | / TF | img per CPU-s | / TF |",
        "|---|---|---|---|---|---|",
    ]
    for name, arms in m["backbone_alone"].items():
        for arm, r in arms.items():
            lo, hi = r["images_per_s_range"]
            lines.append(
                f"| {name} | {arm} | {r['images_per_s']:.1f} ({lo:.1f}-{hi:.1f}) "
                f"| {r['vs_tf']:.2f}x | {r['images_per_cpu_s']:.1f} | "
                f"{r['cpu_vs_tf']:.2f}x |"
            )
    lines += [
        "",
        "| pipeline (Lite0, cold) | img/s | of CPU limit | CPU/img vs parts |",
        "|---|---|---|---|",
    ]
    for arm in m["backbone_alone"]["lite0"]:
        r = m["pipeline"][arm]
        lines.append(
            f"| {arm} | {r['images_per_s']:.1f} | {r['of_cpu_limit']:.2f} | "
            f"{r['cpu_per_image_vs_parts']:.2f} |"
        )
    lines += [
        "",
        "| vectors (Lite0) | cosine median | min | test acc | TF head agreement |",
        "|---|---|---|---|---|",
    ]
    for arm, r in m["vectors"].items():
        lines.append(
            f"| {arm} | {r['cosine_median']:.5f} | {r['cosine_min']:.4f} | "
            f"{100 * r['test_accuracy']:.2f} % | "
            f"{100 * r['tf_head_top1_agreement']:.1f} % |"
        )
    if "readme_command" in m:
        lines += [
            "",
            "| README command | embed s | test acc | runtime |",
            "|---|---|---|---|",
        ]
        for name in README_ARMS:
            r = m["readme_command"][name]
            lines.append(
                f"| {name} | {r['embed_s']:.1f} | {100 * r['test_accuracy']:.2f} % "
                f"| {r['runtime']} {r['precision']} |"
            )
    return "\n".join(lines)
