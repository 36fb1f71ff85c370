"""Why this answer: nearest training photos and exact class activation maps."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

from embedclf.workflow._explain._neighbours import nearest_training

KERAS = "keras:MobileNet?weights=none&alpha=0.25"
SIZE = 64


def _brute_force(q, X_train, rows, k):
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=k, metric="cosine", algorithm="brute")
    dist, idx = nn.fit(X_train[rows]).kneighbors(q[None, :])
    return rows[idx[0]], 1.0 - dist[0]


def test_neighbours_are_the_brute_force_cosine_nearest():
    rng = np.random.default_rng(0)
    X_train = rng.normal(size=(40, 6))
    y_train = np.array(["a", "b", "c", "d"] * 10)
    X_train[5] = np.nan  # a photo gone from the cache and the disk: skipped
    paths = np.array([f"p{i}.jpg" for i in range(40)])
    X = rng.normal(size=(7, 6))
    proba = rng.dirichlet(np.ones(4), size=7)
    got = nearest_training(X, proba, ["a", "b", "c", "d"], X_train, y_train, paths)
    for i, entry in enumerate(got):
        order = np.argsort(-proba[i])
        for key, rank in (("predicted", 0), ("runner_up", 1)):
            label = "abcd"[order[rank]]
            assert entry[key]["label"] == label
            rows = np.flatnonzero((y_train == label) & np.isfinite(X_train[:, 0]))
            idx, sims = _brute_force(X[i], X_train, rows, 3)
            assert [p["path"] for p in entry[key]["photos"]] == list(paths[idx])
            np.testing.assert_allclose(
                [p["similarity"] for p in entry[key]["photos"]], sims, atol=1e-9
            )
    assert all(p["path"] != "p5.jpg" for e in got for p in e["predicted"]["photos"])


@pytest.fixture(scope="module")
def keras_images(tmp_path_factory):
    from conftest import make_image_folder

    root = make_image_folder(
        tmp_path_factory.mktemp("cam"), ("red", "green", "blue"), 3, seed=4
    )
    paths = sorted(str(p) for p in root.rglob("*.*"))
    return paths, np.array([p.split("/")[-2] for p in paths])


@pytest.mark.tf
@pytest.mark.parametrize("query", ["", "&layer=conv_pw_6_relu"])
def test_activation_map_averages_to_the_heads_score(keras_images, query):
    from embedclf import ImageEmbedder, SoftmaxClassifier
    from embedclf.workflow._explain._cam import activation_maps

    paths, y = keras_images
    embedder = ImageEmbedder(KERAS + query, image_size=SIZE)
    X = embedder.transform(paths)
    # Random weights make tiny activations (1e-16 at the last layer):
    # standardising (folded into coef_) gives a head that uses them.
    head = SoftmaxClassifier(C=10.0, standardize=True).fit(X, y)
    scores = head.decision_function(X)
    assert np.ptp(scores) > 0.1
    for c in range(3):
        maps = activation_maps(embedder, head, paths, X, [c] * len(paths))
        for i, m in enumerate(maps):
            assert m["available"], m
            grid = np.asarray(m["grid"])
            h, w = grid.shape
            assert (h, w) == ((2, 2) if not query else (4, 4))
            # Zhou et al. 2016: sum of the map = H * W * (score - bias).
            np.testing.assert_allclose(
                grid.sum(), h * w * (scores[i, c] - m["bias"]), rtol=1e-3, atol=1e-3
            )
            np.testing.assert_allclose(m["logit"], scores[i, c], rtol=1e-3, atol=1e-3)
            assert m["label"] == head.classes_[c]
    assert np.ptp(np.asarray(maps[0]["grid"])) > 0  # a map, not a constant


@pytest.mark.tf
def test_activation_map_is_refused_rather_than_approximated(
    keras_images, tiny_model_dir
):
    from embedclf import ImageEmbedder, SoftmaxClassifier, SVMClassifier
    from embedclf.workflow._explain._cam import activation_maps

    paths, y = keras_images
    soft = SoftmaxClassifier
    cases = [
        (ImageEmbedder(str(tiny_model_dir)), soft(), "exposes no feature map"),
        (ImageEmbedder(KERAS + "&pooling=max", image_size=SIZE), soft(), "max is"),
        (ImageEmbedder(KERAS, image_size=SIZE), SVMClassifier(cv=2), "not linear"),
        (ImageEmbedder(KERAS, image_size=SIZE, normalize_each=True), soft(), "L2-"),
    ]
    for embedder, head, reason in cases:
        X = embedder.transform(paths)
        head.fit(X, y)
        maps = activation_maps(embedder, head, paths[:2], X[:2], [0, 1])
        assert [m["available"] for m in maps] == [False, False]
        assert reason in maps[0]["reason"]


def _feature_map_savedmodel(export_dir):
    """A SavedModel whose __call__ averages the map its feature_map returns."""
    import tensorflow as tf

    rng = np.random.default_rng(0)

    class WithMap(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(rng.normal(0, 0.5, (3, 3, 3, 8)).astype("float32"))

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3])])
        def feature_map(self, images):
            x = tf.image.resize(images, (16, 16))
            return tf.nn.relu(tf.nn.conv2d(x, self.w, 4, "SAME"))

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3])])
        def __call__(self, images):
            return tf.reduce_mean(self.feature_map(images), axis=[1, 2])

    tf.saved_model.save(WithMap(), str(export_dir))
    return str(export_dir)


@pytest.mark.tf
def test_savedmodel_with_a_feature_map_gets_exact_maps(keras_images, tmp_path):
    from embedclf import ImageEmbedder, SoftmaxClassifier
    from embedclf.workflow._explain._cam import activation_maps

    paths, y = keras_images
    embedder = ImageEmbedder(_feature_map_savedmodel(tmp_path / "m"), image_size=32)
    X = embedder.transform(paths)
    head = SoftmaxClassifier().fit(X, y)
    maps = activation_maps(embedder, head, paths, X, [1] * len(paths))
    scores = head.decision_function(X)[:, 1]
    assert all(m["available"] for m in maps)
    assert np.asarray(maps[0]["grid"]).shape == (4, 4)
    np.testing.assert_allclose([m["logit"] for m in maps], scores, rtol=1e-4)


def _run(argv):
    from embedclf.cli import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        status = main(argv)
    return status, buf.getvalue()


@pytest.mark.tf
def test_predict_explain_json_neighbours_are_the_true_nearest_training_photos(
    tmp_path_factory, tiny_model_dir
):
    from _cli_helpers import trained

    from embedclf import ImageEmbedder
    from embedclf.workflow._explain._training_index import read_training_index
    from embedclf.workflow._model_dir import load_model_dir

    state = trained(tmp_path_factory, tiny_model_dir)
    queries = sorted(str(p) for p in (state["data"] / "test").rglob("*.*"))[:4]
    status, out = _run(["predict", str(state["output"]), *queries, "--json",
                        "--explain", "--no-progress"])  # fmt: skip
    assert status == 0
    results = json.loads(out)
    photos = read_training_index(load_model_dir(state["output"]))
    # train + val photos: the head was refitted on both (validation rule)
    assert len(photos) == len(list((state["data"] / "train").rglob("*.*"))) + len(
        list((state["data"] / "val").rglob("*.*"))
    )
    embedder = ImageEmbedder(str(tiny_model_dir))
    X_train = embedder.transform(photos.paths)
    X = embedder.transform(queries)
    for r, q in zip(results, X):
        for key in ("predicted", "runner_up"):
            group = r["neighbours"][key]
            rows = np.flatnonzero(photos.labels == group["label"])
            idx, sims = _brute_force(q, X_train.astype(np.float64), rows, 3)
            assert [p["path"] for p in group["photos"]] == list(photos.paths[idx])
            np.testing.assert_allclose(
                [p["similarity"] for p in group["photos"]], sims, atol=1e-5
            )
        assert r["neighbours"]["predicted"]["label"] == r["label"]
        assert r["neighbours"]["runner_up"]["label"] == r["top_k"][1]["label"]
        assert not r["activation_map"]["available"]
        assert "exposes no feature map" in r["activation_map"]["reason"]


@pytest.mark.tf
def test_evaluate_explain_adds_neighbours_to_misclassified_html(
    tmp_path_factory, tiny_model_dir, tmp_path
):
    import shutil

    from _cli_helpers import trained

    state = trained(tmp_path_factory, tiny_model_dir)
    # A labelled folder with red photos filed under green: misclassified.
    folder = tmp_path / "eval"
    shutil.copytree(state["data"] / "test", folder)
    for src in (folder / "red").iterdir():
        shutil.copy(src, folder / "green" / f"was_red_{src.name}")
    report = tmp_path / "report"
    status, _ = _run(
        ["evaluate", str(state["output"]), str(folder), "--report-dir", str(report),
         "--explain", "--no-progress"]
    )  # fmt: skip
    assert status == 0
    page = (report / "misclassified.html").read_text()
    metrics = json.loads((report / "metrics.json").read_text())
    assert page.count("<div class='explain'>") == metrics["n_errors"] > 0
    assert "nearest of" in page and "runner-up" in page
    assert list((report / "explain").glob("*.jpg"))


@pytest.mark.tf
def test_a_changed_training_index_is_refused(tmp_path_factory, tiny_model_dir):
    import shutil

    from _cli_helpers import trained

    from embedclf.exceptions import ModelDirError
    from embedclf.workflow._explain._training_index import read_training_index
    from embedclf.workflow._model_dir import load_model_dir

    state = trained(tmp_path_factory, tiny_model_dir)
    copy = tmp_path_factory.mktemp("edited") / "model"
    shutil.copytree(state["output"], copy)
    model_dir = load_model_dir(copy)
    entry = model_dir.manifest["files"]["training_photos"]
    (copy / entry["path"]).write_bytes(b"edited")
    with pytest.raises(ModelDirError, match="its SHA-256 differs"):
        read_training_index(model_dir)


@pytest.mark.tf
def test_a_model_dir_without_training_photos_still_works(
    tmp_path_factory, tiny_model_dir, caplog
):
    import shutil

    from _cli_helpers import trained

    from embedclf import suggest

    state = trained(tmp_path_factory, tiny_model_dir)
    old = tmp_path_factory.mktemp("older") / "model"
    shutil.copytree(state["output"], old)
    manifest = json.loads((old / "manifest.json").read_text())
    del manifest["files"]["training_photos"]  # as written before this file
    (old / "manifest.json").write_text(json.dumps(manifest))
    queries = sorted(str(p) for p in (state["data"] / "test").rglob("*.*"))[:2]
    status, out = _run(["predict", str(old), *queries, "--json", "--explain"])
    assert status == 0
    for r in json.loads(out):
        assert r["neighbours"] is None
        assert "records no training photos" in r["neighbours_reason"]
    with caplog.at_level("WARNING", logger="embedclf"):
        result = suggest(old, state["data"] / "test", n=3, duplicate_threshold=1.0)
    assert len(result.rows) == 3 and result.excluded == []
    assert "records no training photos" in caplog.text
