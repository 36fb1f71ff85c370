"""Training curves: the report PNG and the per-epoch TensorBoard scalars."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from embedclf import MLPHeadClassifier, OpenSetClassifier, SoftmaxClassifier
from embedclf.workflow._report._curves import epoch_curves, plot_training_curves


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(c, 1.0, (30, 5)) for c in (0, 2, 4)])
    y = np.repeat(np.array(["a", "b", "c"]), 30)
    return X, y


def test_epoch_curves_of_an_mlp_also_inside_open_set(data):
    X, y = data
    mlp = MLPHeadClassifier(hidden_layer_sizes=8, random_state=0).fit(X, y)
    curves = epoch_curves(mlp)
    np.testing.assert_array_equal(curves["loss"], mlp.loss_curve_)
    np.testing.assert_array_equal(curves["validation_accuracy"], mlp.validation_scores_)
    wrapped = OpenSetClassifier(mlp, unknown_label="unknown", cv=3).fit(X, y)
    assert len(epoch_curves(wrapped)["loss"]) == wrapped.estimator_.n_iter_
    assert epoch_curves(SoftmaxClassifier().fit(X, y)) is None


def test_png_for_mlp_and_for_a_c_grid_none_otherwise(data, tmp_path):
    X, y = data
    mlp = MLPHeadClassifier(hidden_layer_sizes=8, random_state=0).fit(X, y)
    out = plot_training_curves(tmp_path / "mlp.png", mlp)
    with Image.open(out) as img:
        assert img.size == (1100, 400)
    grid = [
        {"C": c, "train_accuracy": 0.9 + c / 100, "validation_accuracy": 0.8}
        for c in (0.1, 1, 10)
    ]
    linear = SoftmaxClassifier().fit(X, y)
    with Image.open(plot_training_curves(tmp_path / "c.png", linear, grid)) as img:
        assert img.size == (650, 400)
    assert plot_training_curves(tmp_path / "none.png", linear, grid[:1]) is None
    assert not (tmp_path / "none.png").exists()


@pytest.mark.tf
def test_epoch_scalars_in_tensorboard(data, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import (
        EventAccumulator,
    )

    from embedclf.workflow._summaries import write_epoch_scalars

    X, y = data
    mlp = MLPHeadClassifier(hidden_layer_sizes=8, random_state=0).fit(X, y)
    write_epoch_scalars(tmp_path, epoch_curves(mlp))
    for run, tag, expected in [
        ("train", "loss", mlp.loss_curve_),
        ("validation", "accuracy", mlp.validation_scores_),
    ]:
        acc = EventAccumulator(str(tmp_path / run), size_guidance={"tensors": 0})
        acc.Reload()
        events = acc.Tensors(tag)
        assert [e.step for e in events] == list(range(1, mlp.n_iter_ + 1))
        values = [float(np.asarray(_value(e))) for e in events]
        np.testing.assert_allclose(values, expected, rtol=1e-6)


def _value(event):
    import tensorflow as tf

    return tf.make_ndarray(event.tensor_proto)
