"""The OpenVINO runtime: namespaces, conversion once, fallback, int8, Dask.

Real models only: the tiny SavedModel of conftest, a Keras application with
random weights at 32 px, a SavedModel with an operation OpenVINO has no
conversion for (``Lgamma``), and the shared EfficientNet-Lite0 on grocery
photos. Compilations are counted by the blobs OpenVINO writes to its model
cache; a warm process must neither convert nor compile, nor import
TensorFlow.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys

import numpy as np
import pytest
from conftest import (
    SHARED_DATA,
    SHARED_MODEL,
    make_image_folder,
    unconvertible_savedmodel,
)

pytest.importorskip("openvino")
tf = pytest.importorskip("tensorflow")

from embedclf import ImageEmbedder  # noqa: E402
from embedclf.embedding import _openvino  # noqa: E402
from embedclf.embedding._backbones import resolve_backbone  # noqa: E402
from embedclf.embedding._images import preprocessing_tag  # noqa: E402
from embedclf.embedding._runtime import TENSORFLOW, Runtime, resolve  # noqa: E402
from embedclf.exceptions import BackboneLoadError  # noqa: E402

pytestmark = pytest.mark.tf

SIZE = 32


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = make_image_folder(tmp_path_factory.mktemp("rt") / "imgs", n_per_class=6)
    return sorted(str(p) for p in root.rglob("*.*"))


def _cos(a, b):
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def _embed(model, paths, **kw):
    kw.setdefault("image_size", SIZE)
    return ImageEmbedder(str(model), batch_size=4, progress=False, **kw).transform(
        paths
    )


def test_runtime_and_precision_change_the_namespace(tiny_model_dir):
    spec = resolve_backbone(str(tiny_model_dir))
    emb = ImageEmbedder(str(tiny_model_dir))
    runtimes = [
        TENSORFLOW,
        Runtime("openvino", "fp32"),
        Runtime("openvino", "bf16"),
        Runtime("openvino", "int8", calibration_id="a" * 16),
        Runtime("openvino", "int8", calibration_id="b" * 16),
    ]
    fps = [emb._namespace(spec, rt).fingerprint for rt in runtimes]
    assert len(set(fps)) == len(fps)
    # TensorFlow keeps the namespace of earlier releases: old caches still hit.
    from embedclf.cache._namespace import CacheNamespace

    old = CacheNamespace(
        spec.handle, spec.identity, "default", preprocessing_tag("bilinear", 0.875)
    )
    assert fps[0] == old.fingerprint


def test_precision_needs_openvino_and_bf16_falls_back_cleanly(monkeypatch, caplog):
    msg = "precision='bf16' needs the OpenVINO runtime"
    with pytest.raises(ValueError, match=re.escape(msg)):
        resolve("tensorflow", "bf16")
    monkeypatch.setattr(_openvino, "capabilities", lambda: ("FP32", "INT8"))
    monkeypatch.delenv("EMBEDCLF_RUNTIME")
    assert resolve("auto", "auto") == ("openvino", "fp32")  # no bf16 here
    with caplog.at_level(logging.WARNING, logger="embedclf"):
        assert resolve("openvino", "bf16") == ("openvino", "fp32")
    assert "no bf16 instructions" in caplog.text


def test_openvino_fp32_matches_tensorflow_for_savedmodel_and_keras(
    tiny_model_dir, photos, tmp_path
):
    handles = [str(tiny_model_dir), "keras:MobileNetV2?weights=none&alpha=0.35"]
    for handle in handles:
        ref = _embed(handle, photos, runtime="tensorflow")
        got = _embed(handle, photos, runtime="openvino", precision="fp32")
        assert got.shape == ref.shape
        assert _cos(got, ref).min() >= 0.9999, handle
        assert not np.array_equal(got, ref) or handle  # not asserted bit-exact


_WARM = """
import json, sys
from embedclf import ImageEmbedder
from embedclf.embedding import _openvino
e = ImageEmbedder(sys.argv[1], cache=sys.argv[2], image_size=32,
                  runtime="openvino", precision="fp32", progress=False)
X = e.transform(sys.argv[3:])
print(json.dumps({"counts": _openvino.counts(), "n": e.n_computed_,
                  "tf": "tensorflow" in sys.modules, "sum": float(X.sum())}))
"""


def test_all_failed_takes_the_width_from_the_openvino_model(tiny_model_dir, tmp_path):
    before = _openvino.counts()
    est = ImageEmbedder(
        str(tiny_model_dir), image_size=SIZE, runtime="openvino", on_error="nan"
    )
    X = est.set_params(precision="fp32").transform([str(tmp_path / "gone.jpg")])
    assert X.shape == (1, 16) and np.isnan(X).all()
    after = _openvino.counts()  # converted (written to know the width) ...
    assert after["conversions"] == before["conversions"] + 1
    assert after["compilations"] == before["compilations"]  # ... never compiled


def test_a_warm_run_neither_converts_nor_compiles(tiny_model_dir, photos, tmp_path):
    cache = tmp_path / "c.h5"
    before = _openvino.counts()
    first = ImageEmbedder(
        str(tiny_model_dir), cache=cache, image_size=SIZE, runtime="openvino"
    )
    first.set_params(precision="fp32").transform(photos[:4])
    after = _openvino.counts()
    assert after["conversions"] == before["conversions"] + 1
    assert after["compilations"] == before["compilations"] + 1
    # another instance in this process: the compiled model is shared
    ImageEmbedder(
        str(tiny_model_dir), cache=cache, image_size=SIZE, runtime="openvino"
    ).set_params(precision="fp32").transform(photos[4:8])
    assert _openvino.counts() == after
    # another process: imports the compiled blob, never TensorFlow
    out = subprocess.run(
        [sys.executable, "-c", _WARM, str(tiny_model_dir), str(cache), *photos[8:]],
        capture_output=True,
        text=True,
        check=True,
    )
    warm = json.loads(out.stdout.strip().splitlines()[-1])
    assert warm["n"] == len(photos) - 8
    assert warm["counts"] == {"conversions": 0, "quantizations": 0, "compilations": 0}
    assert warm["tf"] is False


def test_unconvertible_backbone_clear_error_and_auto_fallback(
    photos, tmp_path, monkeypatch, caplog
):
    model = unconvertible_savedmodel(tmp_path / "odd")
    msg = f"OpenVINO cannot convert the model {str(model)!r}"
    with pytest.raises(BackboneLoadError, match=re.escape(msg)) as info:
        _embed(model, photos[:2], runtime="openvino", precision="fp32")
    assert "--runtime tensorflow" in str(info.value)
    monkeypatch.delenv("EMBEDCLF_RUNTIME")
    with caplog.at_level(logging.WARNING, logger="embedclf"):
        emb = ImageEmbedder(str(model), image_size=SIZE, progress=False)
        X = emb.transform(photos[:2])
    assert "Falling back to TensorFlow" in caplog.text
    assert emb.runtime_ == "tensorflow"
    np.testing.assert_array_equal(X, _embed(model, photos[:2], runtime="tensorflow"))


def test_int8_calibration_is_deterministic(
    tiny_model_dir, photos, tmp_path, openvino_store
):
    out = []
    for i, order in enumerate([photos, photos[::-1]]):
        emb = ImageEmbedder(
            str(tiny_model_dir),
            cache=tmp_path / f"c{i}.h5",  # its own folder: quantized twice
            image_size=SIZE,
            runtime="openvino",
            precision="int8",
            calibration_images=order,
            progress=False,
        )
        spec = resolve_backbone(str(tiny_model_dir))
        out.append((emb._namespace(spec).fingerprint, emb.transform(photos)))
    assert out[0][0] == out[1][0]
    np.testing.assert_array_equal(out[0][1], out[1][1])
    # the fp32 IR went to the store of converted backbones, the int8 one not
    assert list(openvino_store.glob("*/model.xml"))
    assert not list(openvino_store.rglob("int8-*"))
    assert list(tmp_path.glob("c0.h5.openvino/*/int8-*.xml"))
    assert list(tmp_path.glob("c0.h5.openvino/*/compiled-int8/*.blob"))
    ref = _embed(tiny_model_dir, photos, runtime="tensorflow")
    assert np.median(_cos(out[0][1], ref)) > 0.9  # quantized, still the model
    msg = "precision='int8' needs calibration images"
    with pytest.raises(ValueError, match=re.escape(msg)):
        _embed(tiny_model_dir, photos, runtime="openvino", precision="int8")


@pytest.mark.shared
def test_openvino_matches_tensorflow_on_real_photos():
    if not SHARED_MODEL.is_dir():
        pytest.skip("../shared is absent")
    paths = sorted(str(p) for p in (SHARED_DATA / "test").rglob("*.jpg"))[::250]
    kw = dict(image_size=None)
    ref = _embed(SHARED_MODEL, paths, runtime="tensorflow", **kw)
    fp32 = _embed(SHARED_MODEL, paths, runtime="openvino", precision="fp32", **kw)
    assert _cos(fp32, ref).min() >= 0.9999
    if "BF16" in _openvino.capabilities():
        bf16 = _embed(SHARED_MODEL, paths, runtime="openvino", precision="bf16", **kw)
        assert np.median(_cos(bf16, ref)) >= 0.999


def test_model_dir_trained_on_openvino_predicts_with_it(
    tiny_model_dir, tmp_path, caplog
):
    from _cli_helpers import grocery_like

    from embedclf.cache._store import EmbeddingCache
    from embedclf.cli import main
    from embedclf.workflow._model_dir import embedder_settings

    data = grocery_like(tmp_path / "data")
    cache, out = tmp_path / "c.h5", tmp_path / "model"
    argv = ["train", data / "train", "--model", tiny_model_dir, "--cache", cache]
    argv += ["--output", out, "--image-size", "32", "--C", "1"]
    assert main([*map(str, argv), "--runtime", "openvino", "--precision", "fp32"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["runtime"], manifest["precision"]) == ("openvino", "fp32")

    def namespaces():
        return sorted(ns["preprocessing"] for ns in EmbeddingCache(cache).info())

    trained = namespaces()
    assert len(trained) == 1 and trained[0].endswith("|runtime=openvino-fp32")
    assert main(["predict", str(out), str(data / "train"), "--json"]) == 0
    assert namespaces() == trained  # predicted from the same vectors: all hits
    with caplog.at_level(logging.WARNING, logger="embedclf"):
        assert main(["predict", str(out), str(data / "test"), "--runtime",
                     "tensorflow"]) == 0  # fmt: skip
    assert "trained with runtime=openvino" in caplog.text
    assert len(namespaces()) == 2
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="embedclf"):
        assert main(["export", str(out), "--savedmodel", str(tmp_path / "sm")]) == 0
    assert "the export to a SavedModel computes the backbone as TensorFlow" in (
        caplog.text
    )
    # a model directory written before runtimes existed: TensorFlow fp32
    old = embedder_settings({"image_size": None})
    assert (old["runtime"], old["precision"]) == ("tensorflow", "fp32")


#: Evaluated on the worker with the builtin ``eval``: a function of this module
#: would be pickled by reference, and importing this module imports TensorFlow.
_WORKER_STATE = (
    "{'tf': 'tensorflow' in __import__('sys').modules, "
    "'compiled': len(__import__('embedclf.embedding._openvino', "
    "fromlist=['_']).__dict__['_compiled']), "
    "'images': __import__('embedclf.embedding._backbones', "
    "fromlist=['_']).backbone_image_count()}"
)


@pytest.mark.slow
def test_dask_workers_use_the_runtime(tiny_model_dir, photos, tmp_path):
    distributed = pytest.importorskip("distributed")
    kw = dict(image_size=SIZE, runtime="openvino", precision="fp32")
    local = _embed(tiny_model_dir, photos, cache=tmp_path / "local.h5", **kw)
    with (
        distributed.LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            silence_logs=logging.ERROR,
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as client,
    ):
        cache = tmp_path / "dask.h5"
        for part in (photos[:8], photos[8:]):  # two runs, one compilation
            X = _embed(
                tiny_model_dir, part, cache=cache, scheduler=cluster.scheduler_address,
                **kw,
            )  # fmt: skip
        state = next(iter(client.run(eval, _WORKER_STATE).values()))
    np.testing.assert_allclose(X, local[8:], rtol=1e-5, atol=1e-6)
    assert state == {"tf": False, "compiled": 1, "images": len(photos)}


def test_a_backbone_that_fails_to_load_is_not_marked_unconvertible(
    tmp_path, photos, monkeypatch
):
    """Under auto, only a conversion failure falls back (and is remembered);
    a backbone that does not load (offline TF Hub, a broken folder) raises."""
    model = tmp_path / "broken"
    model.mkdir()
    (model / "saved_model.pb").write_bytes(b"not a protobuf")
    monkeypatch.delenv("EMBEDCLF_RUNTIME")
    cache = tmp_path / "c.h5"
    with pytest.raises(BackboneLoadError, match="Could not load the SavedModel"):
        _embed(model, photos[:1], cache=cache)
    assert not list(tmp_path.rglob("*.unconvertible"))


def test_export_caveat_names_the_export_and_is_none_for_tensorflow():
    from embedclf.embedding._runtime import export_caveat

    assert export_caveat("tensorflow", "fp32", "a TensorFlow Lite model") is None
    text = export_caveat("openvino", "bf16", "a TensorFlow Lite model")
    assert "the export to a TensorFlow Lite model computes" in text
    assert "bf16 rounding" in text and "--runtime tensorflow" in text
