"""Contract and behaviour tests of ImageEmbedder on a real tiny SavedModel."""

from __future__ import annotations

import logging
import pickle
import re
import shutil
import sys

import numpy as np
import pytest
from conftest import make_image_folder, write_image
from sklearn.base import clone
from sklearn.utils._param_validation import InvalidParameterError

from embedclf import EmbeddingCache, ImageEmbedder, load_image_folder
from embedclf.embedding._backbones import (
    _registry,
    backbone_image_count,
    load_backbone,
    resolve_backbone,
)
from embedclf.embedding._images import load_image
from embedclf.exceptions import ImageDecodeError

pytestmark = pytest.mark.tf


@pytest.fixture
def folder(tmp_path):
    return load_image_folder(make_image_folder(tmp_path / "imgs", n_per_class=6))


def test_contract_clone_params_pickle_repr_do_not_load_model(tiny_model_dir, tmp_path):
    handle = str(tmp_path / "never_loaded_model")  # does not even exist
    est = ImageEmbedder(model=handle, cache=str(tmp_path / "c.h5"), batch_size=4)
    n_loaded = len(_registry)
    params = est.get_params()
    assert params["model"] == handle and params["batch_size"] == 4
    cloned = clone(est)
    assert cloned.get_params() == params
    est.set_params(batch_size=8)
    assert est.batch_size == 8
    assert "never_loaded_model" in repr(est)
    restored = pickle.loads(pickle.dumps(est))
    assert restored.get_params() == est.get_params()
    assert est.fit(["x"]) is est
    assert len(_registry) == n_loaded
    assert not (tmp_path / "c.h5").exists()


def test_pickled_embedder_after_transform_carries_no_model(tiny_model_dir, folder):
    est = ImageEmbedder(model=str(tiny_model_dir))
    est.transform(folder.paths[:2])
    blob = pickle.dumps(est)
    assert len(blob) < 2000  # a handle, not a network
    again = pickle.loads(blob)
    np.testing.assert_array_equal(
        again.transform(folder.paths[:2]), est.transform(folder.paths[:2])
    )


def test_transform_shape_dtype_order(tiny_model_dir, folder):
    est = ImageEmbedder(model=str(tiny_model_dir), batch_size=5)
    X = est.transform(folder.paths)
    assert X.shape == (len(folder.paths), 16) and X.dtype == np.float32
    reversed_ = est.transform(folder.paths[::-1])
    np.testing.assert_allclose(reversed_[::-1], X, atol=1e-5)
    assert np.isfinite(X).all()
    # different images give different vectors
    assert np.unique(X.round(4), axis=0).shape[0] == len(folder.paths)


def test_matches_direct_savedmodel_call(tiny_model_dir, folder):
    import tensorflow as tf

    est = ImageEmbedder(model=str(tiny_model_dir), batch_size=4)
    X = est.transform(folder.paths)
    module = tf.saved_model.load(str(tiny_model_dir))
    size = load_backbone(resolve_backbone(str(tiny_model_dir))).default_image_size
    images = np.stack(
        [load_image(p, (size, size), crop_fraction=0.875)[1] for p in folder.paths]
    )
    direct = module(tf.constant(images)).numpy()
    np.testing.assert_allclose(X, direct, atol=1e-4)


def test_second_call_hits_cache_and_runs_backbone_zero_times(
    tiny_model_dir, folder, tmp_path, caplog
):
    cache = tmp_path / "c.h5"
    est = ImageEmbedder(model=str(tiny_model_dir), cache=str(cache))
    before = backbone_image_count()
    first = est.transform(folder.paths)
    assert backbone_image_count() - before == len(folder.paths)
    assert est.n_computed_ == len(folder.paths) and est.n_cached_ == 0
    with caplog.at_level(logging.INFO, logger="embedclf"):
        second = clone(est).transform(folder.paths)
    assert backbone_image_count() - before == len(folder.paths)
    np.testing.assert_array_equal(first, second)
    assert "0 computed by the backbone, 12 from cache" in caplog.text


def test_renamed_files_hit_edited_files_miss(tiny_model_dir, folder, tmp_path):
    cache = str(tmp_path / "c.h5")
    est = ImageEmbedder(model=str(tiny_model_dir), cache=cache)
    ref = est.transform(folder.paths[:4])
    moved = []
    for i, p in enumerate(folder.paths[:4]):
        target = tmp_path / "elsewhere" / f"renamed {i}.bin.jpg"
        target.parent.mkdir(exist_ok=True)
        shutil.copy(p, target)
        moved.append(str(target))
    got = est.transform(moved)
    assert est.n_computed_ == 0 and est.n_cached_ == 4
    np.testing.assert_array_equal(got, ref)
    write_image(moved[0], seed=999, fmt="PNG")  # edit the content
    got = est.transform(moved)
    assert est.n_computed_ == 1 and est.n_cached_ == 3
    assert not np.allclose(got[0], ref[0])
    np.testing.assert_array_equal(got[1:], ref[1:])


def test_two_models_in_one_file(tiny_model_dir, tiny_model_dir_b, folder, tmp_path):
    cache = str(tmp_path / "c.h5")
    a = ImageEmbedder(model=str(tiny_model_dir), cache=cache).transform(folder.paths)
    b = ImageEmbedder(model=str(tiny_model_dir_b), cache=cache).transform(folder.paths)
    assert a.shape[1] == 16 and b.shape[1] == 8
    info = EmbeddingCache(cache).info()
    assert sorted(ns["dim"] for ns in info) == [8, 16]
    assert all(ns["n_rows"] == len(folder.paths) for ns in info)
    # both namespaces are served back unchanged, neither overwrote the other
    ea = ImageEmbedder(model=str(tiny_model_dir), cache=cache)
    np.testing.assert_array_equal(ea.transform(folder.paths), a)
    assert ea.n_computed_ == 0
    eb = ImageEmbedder(model=str(tiny_model_dir_b), cache=cache)
    np.testing.assert_array_equal(eb.transform(folder.paths), b)
    assert eb.n_computed_ == 0


def test_image_size_is_part_of_the_cache_key(tiny_model_dir, folder, tmp_path):
    cache = str(tmp_path / "c.h5")
    ImageEmbedder(model=str(tiny_model_dir), cache=cache).transform(folder.paths)
    est = ImageEmbedder(model=str(tiny_model_dir), cache=cache, image_size=48)
    est.transform(folder.paths)
    assert est.n_computed_ == len(folder.paths)
    assert len(EmbeddingCache(cache).info()) == 2


def test_float16_cache_returns_float32(tiny_model_dir, folder, tmp_path):
    cache = str(tmp_path / "c16.h5")
    est = ImageEmbedder(model=str(tiny_model_dir), cache=cache, cache_dtype="float16")
    cold = est.transform(folder.paths)
    warm = est.transform(folder.paths)
    assert cold.dtype == warm.dtype == np.float32
    np.testing.assert_array_equal(cold, warm)
    exact = ImageEmbedder(model=str(tiny_model_dir)).transform(folder.paths)
    np.testing.assert_allclose(cold, exact, rtol=2e-3, atol=2e-3)
    with pytest.raises(ValueError, match=re.escape("Pass cache_dtype='float16'")):
        ImageEmbedder(model=str(tiny_model_dir), cache=cache).transform(folder.paths)


def test_duplicate_content_is_embedded_once(tiny_model_dir, folder, tmp_path):
    copy = tmp_path / "copy.jpg"
    shutil.copy(folder.paths[0], copy)
    est = ImageEmbedder(model=str(tiny_model_dir))
    X = est.transform([folder.paths[0], str(copy), folder.paths[1]])
    assert est.n_computed_ == 2
    np.testing.assert_array_equal(X[0], X[1])


@pytest.mark.parametrize("on_error, fill", [("zero", 0.0), ("nan", np.nan)])
def test_on_error_fills_rows_and_records_paths(
    tiny_model_dir, folder, tmp_path, on_error, fill
):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"this is not an image at all")
    missing = str(tmp_path / "missing.png")
    paths = [folder.paths[0], str(bad), missing, folder.paths[1]]
    est = ImageEmbedder(model=str(tiny_model_dir), on_error=on_error)
    X = est.transform(paths)
    assert X.shape == (4, 16)
    assert sorted(est.failed_paths_.tolist()) == sorted([str(bad), missing])
    np.testing.assert_array_equal(X[1], np.full(16, fill, dtype=np.float32))
    np.testing.assert_array_equal(X[2], np.full(16, fill, dtype=np.float32))
    assert np.isfinite(X[[0, 3]]).all() and np.abs(X[0]).sum() > 0


def test_decode_failures_in_ramp_and_full_batches_keep_rows_aligned(
    tiny_model_dir, folder, tmp_path
):
    # batch_size 8: backbone calls of 4, 8, 8, ... images. Corrupt files in
    # the first (ramp) call, a full call and the last call must leave every
    # good row equal to the vector of its own image.
    good = list(folder.paths)
    paths = list(good)
    bad_at = [1, 6, 9, len(paths) + 3]  # positions in the final list
    for n, i in enumerate(bad_at):
        bad = tmp_path / f"bad{n}.jpg"
        bad.write_bytes(b"\xff\xd8\xff corrupt " + bytes([n]))
        paths.insert(i, str(bad))
    est = ImageEmbedder(model=str(tiny_model_dir), batch_size=8, on_error="nan")
    X = est.transform(paths)
    expected = ImageEmbedder(model=str(tiny_model_dir), batch_size=1).transform(good)
    is_bad = np.isin(np.arange(len(paths)), bad_at)
    assert np.isnan(X[is_bad]).all()
    np.testing.assert_allclose(X[~is_bad], expected, atol=1e-5)
    assert len(est.failed_paths_) == len(bad_at)


def test_file_edited_between_hashing_and_decoding_is_reported_not_stored(
    tiny_model_dir, folder, tmp_path, monkeypatch
):
    import embedclf.embedding._batches as embedder_module

    victim = tmp_path / "victim.png"
    real_load = embedder_module.load_image

    def edit_then_load(path, *args, **kwargs):
        if path == str(victim):  # replaced after it was hashed
            shutil.copy(folder.paths[3], victim)
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(embedder_module, "load_image", edit_then_load)
    cache = tmp_path / "c.h5"
    shutil.copy(folder.paths[2], victim)
    est = ImageEmbedder(model=str(tiny_model_dir), cache=cache, on_error="nan")
    X = est.transform([folder.paths[0], str(victim)])
    assert est.failed_paths_.tolist() == [str(victim)]
    assert np.isnan(X[1]).all() and np.isfinite(X[0]).all()
    shutil.copy(folder.paths[2], victim)
    with pytest.raises(ImageDecodeError, match="changed while"):
        ImageEmbedder(model=str(tiny_model_dir), cache=cache).transform([str(victim)])
    # Neither the old nor the new content was stored for the edited file.
    assert [ns["n_rows"] for ns in EmbeddingCache(cache).info()] == [1]


def test_on_error_raise_names_the_file(tiny_model_dir, folder, tmp_path):
    bad = tmp_path / "garbage.jpg"
    bad.write_bytes(b"\x00\x01garbage")
    est = ImageEmbedder(model=str(tiny_model_dir))
    with pytest.raises(ImageDecodeError, match=re.escape(str(bad))):
        est.transform([folder.paths[0], str(bad)])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        est.transform([str(tmp_path / "nope.jpg")])


def test_all_failed_still_returns_rows(tiny_model_dir, tmp_path):
    est = ImageEmbedder(model=str(tiny_model_dir), on_error="nan")
    X = est.transform([str(tmp_path / "a.jpg"), str(tmp_path / "b.jpg")])
    assert X.shape == (2, 16) and np.isnan(X).all()


def test_failure_reasons_are_the_errors_met(tiny_model_dir, folder, tmp_path):
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"\x00\x01garbage")
    missing = str(tmp_path / "nope.jpg")
    est = ImageEmbedder(model=str(tiny_model_dir), on_error="nan")
    est.transform([missing, folder.paths[0], str(garbage)])
    assert est.failed_paths_.tolist() == [missing, str(garbage)]
    for path, reason in zip(est.failed_paths_, est.failure_reasons_):
        with pytest.raises((FileNotFoundError, ImageDecodeError)) as caught:
            load_image(str(path), (8, 8))
        assert reason == str(caught.value)
    est.transform(folder.paths[:2])
    assert est.failure_reasons_.tolist() == []


def test_all_failed_takes_the_width_from_the_cache(
    tiny_model_dir, folder, tmp_path, monkeypatch
):
    from embedclf.embedding import _hashed

    cache, missing = str(tmp_path / "c.h5"), [str(tmp_path / "gone.jpg")]
    ImageEmbedder(model=str(tiny_model_dir), cache=cache).transform(folder.paths[:1])
    loads = []
    load_runtime = _hashed.load_runtime
    monkeypatch.setattr(
        _hashed,
        "load_runtime",
        lambda *args, **kw: loads.append(args) or load_runtime(*args, **kw),
    )
    for paths in (missing, []):
        X = ImageEmbedder(model=str(tiny_model_dir), cache=cache, on_error="nan")
        X = X.transform(paths)
        assert X.shape == (len(paths), 16) and np.isnan(X).all()
    assert loads == []  # the cache holds vectors of this backbone: no load
    other = ImageEmbedder(model=str(tiny_model_dir), cache=str(tmp_path / "o.h5"))
    X = other.set_params(on_error="nan").transform(missing)
    assert X.shape == (1, 16) and len(loads) == 1  # an empty cache: loaded


def test_empty_input(tiny_model_dir):
    X = ImageEmbedder(model=str(tiny_model_dir)).transform([])
    assert X.shape == (0, 16)


@pytest.mark.parametrize(
    "X, exc, msg",
    [
        ("one.jpg", TypeError, "Wrap it in a list"),
        ([["a", "b"], ["c", "d"]], ValueError, "1-D array-like of image paths"),
        ([1, 2], TypeError, "element 0 is 1"),
    ],
)
def test_bad_input_shapes(tiny_model_dir, X, exc, msg):
    with pytest.raises(exc, match=re.escape(msg)):
        ImageEmbedder(model=str(tiny_model_dir)).transform(X)


def test_invalid_parameters_are_named(tiny_model_dir):
    with pytest.raises(InvalidParameterError, match="'batch_size' parameter"):
        ImageEmbedder(model=str(tiny_model_dir), batch_size=0).transform([])
    with pytest.raises(InvalidParameterError, match="'on_error' parameter"):
        ImageEmbedder(model=str(tiny_model_dir), on_error="skip").fit()


def test_missing_model_directory_is_a_clear_error(tmp_path, folder):
    empty = tmp_path / "not_a_model"
    empty.mkdir()
    with pytest.raises(OSError, match="holds no saved_model.pb"):
        ImageEmbedder(model=str(empty)).transform(folder.paths[:1])


def test_unknown_handle_is_a_clear_error(folder):
    with pytest.raises(OSError, match="neither an existing SavedModel directory"):
        ImageEmbedder(model="no_such_model").transform(folder.paths[:1])


def test_progress_bar_reports_images(tiny_model_dir, folder, capsys):
    ImageEmbedder(model=str(tiny_model_dir), progress=True).transform(folder.paths)
    err = capsys.readouterr().err
    assert "embedding" in err and "img" in err


def test_progress_bar_is_closed_when_a_file_fails(tiny_model_dir, folder, tmp_path):
    from tqdm import tqdm

    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff truncated")
    paths = [*folder.paths[:6], str(bad)]
    open_before = len(tqdm._instances)
    with pytest.raises(ImageDecodeError, match=re.escape(str(bad))):
        ImageEmbedder(model=str(tiny_model_dir), progress=True).transform(paths)
    assert len(tqdm._instances) == open_before  # no bar left on the terminal


def test_import_is_lazy():
    import subprocess

    code = (
        "import sys, embedclf; embedclf.ImageEmbedder; embedclf.load_image_folder;"
        "print('tensorflow' in sys.modules, 'h5py' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["False", "False"]


def test_keras_application_backbone_offline_weights_none(folder):
    pytest.importorskip("keras")
    est = ImageEmbedder(model="keras:MobileNetV2?weights=none", image_size=32)
    X = est.transform(folder.paths[:3])
    assert X.shape == (3, 1280) and np.isfinite(X).all()


def test_copies_of_a_bad_file_are_all_reported(tiny_model_dir, folder, tmp_path):
    bad = [tmp_path / "bad1.jpg", tmp_path / "bad2.jpg"]
    for p in bad:
        p.write_bytes(b"same garbage")
    est = ImageEmbedder(model=str(tiny_model_dir), on_error="nan")
    X = est.transform([str(bad[0]), folder.paths[0], str(bad[1])])
    assert sorted(est.failed_paths_.tolist()) == sorted(map(str, bad))
    assert np.isnan(X[[0, 2]]).all() and np.isfinite(X[1]).all()


def test_counts_add_up_when_threads_share_a_cache(tiny_model_dir, folder, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    cache = str(tmp_path / "c.h5")
    ests = [
        ImageEmbedder(model=str(tiny_model_dir), cache=cache, batch_size=2)
        for _ in range(2)
    ]
    with ThreadPoolExecutor(2) as pool:
        outs = list(pool.map(lambda e: e.transform(folder.paths), ests))
    np.testing.assert_array_equal(outs[0], outs[1])
    n = len(folder.paths)
    assert sum(e.n_computed_ for e in ests) == n  # each image computed once
    assert all(e.n_computed_ + e.n_cached_ == n for e in ests)
