"""Item 5: training the head: SoftmaxClassifier vs retrain.py's final layer, and
the MLP head vs the softmax head beside plain scikit-learn LogisticRegression.

The baseline reproduces retrain.py's final-layer training
(tensorflow/hub ``examples/image_retraining/retrain.py``,
``add_final_retrain_ops`` and the training loop in ``main``) with its
documented defaults, in TensorFlow 2:

* one dense softmax layer on the raw bottleneck vectors: weights drawn from a
  truncated normal with stddev 0.001, biases zero;
* loss ``sparse_softmax_cross_entropy``, plain gradient descent
  (``GradientDescentOptimizer``), ``--learning_rate 0.01``;
* ``--how_many_training_steps 4000`` steps of ``--train_batch_size 100``
  cached bottlenecks drawn as ``get_random_cached_bottlenecks`` does: a class
  uniformly at random, then an image of that class uniformly at random, with
  replacement.

retrain.py also evaluates 100 validation images every 10 steps and writes
summaries; that is left out, so the baseline is timed at its fastest. The
loop runs inside one ``tf.function`` (no per-step Python feeding, which would
be slower still). Both heads train on the same features (the official train
folder, embedded with the shared backbone) and are scored on the test folder.

The second comparison (:func:`compare_heads`) fits, on the same cached vectors
of each shared backbone (EfficientNet-Lite0 and, when present, Lite2):

* ``SoftmaxClassifier()`` with its defaults of this commit (standardised, C=1);
* ``MLPHeadClassifier(random_state=0)`` with its defaults (Dense(1024, relu),
  softmax, early stopping on 10 % of the training rows);
* plain ``LogisticRegression(max_iter=1000)`` on the raw vectors, the
  scikit-learn baseline.

Quick mode compares on the run's backbone only.

Fit times are the median of ``ROUNDS`` fits (one for the MLP in quick mode);
accuracy is on the official val and test folders.
"""

from __future__ import annotations

import numpy as np
from _common import Context, Timer

LEARNING_RATE = 0.01
TRAIN_BATCH_SIZE = 100
ROUNDS = 3
LITE0 = "efficientnet_lite0_feature_vector"
LITE2 = "efficientnet_lite2_feature_vector"


def retrain_head(X, y_idx, n_classes, *, steps, seed=0):
    """Train retrain.py's final layer; returns (W, b) as numpy arrays."""
    import tensorflow as tf

    tf.random.set_seed(seed)
    dim = X.shape[1]
    W = tf.Variable(
        tf.random.truncated_normal([dim, n_classes], stddev=0.001), name="final_weights"
    )
    b = tf.Variable(tf.zeros([n_classes]), name="final_biases")
    Xt = tf.constant(X, dtype=tf.float32)
    # Per class: the row indices of its images (ragged), for class-first sampling.
    order = np.argsort(y_idx, kind="stable")
    counts = np.bincount(y_idx, minlength=n_classes)
    starts = tf.constant(np.r_[0, np.cumsum(counts)[:-1]], dtype=tf.int64)
    counts_t = tf.constant(counts, dtype=tf.int64)
    order_t = tf.constant(order, dtype=tf.int64)
    yt = tf.constant(y_idx, dtype=tf.int64)

    @tf.function
    def train(steps):
        for _ in tf.range(steps):
            label = tf.random.uniform([TRAIN_BATCH_SIZE], 0, n_classes, dtype=tf.int64)
            within = tf.random.uniform([TRAIN_BATCH_SIZE], 0, 2**62, dtype=tf.int64)
            rows = tf.gather(
                order_t,
                tf.gather(starts, label) + within % tf.gather(counts_t, label),
            )
            xb = tf.gather(Xt, rows)
            yb = tf.gather(yt, rows)
            with tf.GradientTape() as tape:
                logits = tf.matmul(xb, W) + b
                loss = tf.reduce_mean(
                    tf.nn.sparse_softmax_cross_entropy_with_logits(
                        labels=yb, logits=logits
                    )
                )
            gW, gb = tape.gradient(loss, [W, b])
            W.assign_sub(LEARNING_RATE * gW)
            b.assign_sub(LEARNING_RATE * gb)
        return loss

    final_loss = float(train(tf.constant(steps)))
    return W.numpy(), b.numpy(), final_loss


def _heads():
    from sklearn.linear_model import LogisticRegression

    from embedclf import MLPHeadClassifier, SoftmaxClassifier

    return {
        "softmax": lambda: SoftmaxClassifier(),
        "mlp": lambda: MLPHeadClassifier(random_state=0),
        "sklearn_lr": lambda: LogisticRegression(max_iter=1000),
    }


def _backbone_features(ctx: Context):
    """{backbone name: {split: (X, y)}} through the run's shared cache."""
    from pathlib import Path

    out = {
        Path(ctx.model).name: {s: ctx.features(s)[:2] for s in ("train", "val", "test")}
    }
    lite2 = Path(ctx.model).parent / LITE2
    if lite2.is_dir() and lite2 != Path(ctx.model) and not ctx.quick:
        from embedclf import ImageEmbedder

        emb = ImageEmbedder(
            str(lite2),
            cache=ctx.shared_cache,
            batch_size=ctx.batch_size,
            progress=False,
        )
        out[LITE2] = {}
        for split in ("train", "val", "test"):
            paths, y = ctx.split(split)
            out[LITE2][split] = (emb.transform(paths), y)
    return out


def compare_heads(ctx: Context) -> tuple[list, dict]:
    """MLP vs softmax vs plain LogisticRegression: (ratio rows, metrics)."""
    ratios, metrics = [], {}
    for backbone, parts in _backbone_features(ctx).items():
        X_tr, y_tr = parts["train"]
        row = {}
        for name, make in _heads().items():
            rounds = 1 if (ctx.quick or name == "mlp") else ROUNDS
            times = []
            for _ in range(rounds):
                with Timer() as t:
                    head = make().fit(X_tr, y_tr)
                times.append(t.seconds)
            row[name] = {
                "fit_s": float(np.median(times)),
                "fit_rounds": rounds,
                **{
                    f"{split}_accuracy": float(np.mean(head.predict(X) == y))
                    for split, (X, y) in parts.items()
                    if split != "train"
                },
            }
            if name == "mlp":
                row[name]["epochs"] = int(head.n_iter_)
                row[name]["held_out_accuracy"] = head.best_validation_score_
        metrics[backbone] = row
        short = {LITE0: "Lite0", LITE2: "Lite2"}.get(backbone, backbone)
        for what, key in [("test", "test_accuracy"), ("val", "val_accuracy")]:
            ratios.append(
                {
                    "name": f"{short}: {what} accuracy, MLP - softmax (points)",
                    "value": 100 * (row["mlp"][key] - row["softmax"][key]),
                    "target": "report",
                    "met": None,
                }
            )
        ratios.append(
            {
                "name": f"{short}: test accuracy, softmax - sklearn LR (points)",
                "value": 100
                * (
                    row["softmax"]["test_accuracy"] - row["sklearn_lr"]["test_accuracy"]
                ),
                "target": "report",
                "met": None,
            }
        )
        ratios.append(
            {
                "name": f"{short}: MLP / softmax fit time",
                "value": row["mlp"]["fit_s"] / row["softmax"]["fit_s"],
                "target": "report",
                "met": None,
            }
        )
    return ratios, metrics


def run(ctx: Context) -> dict:
    import tensorflow as tf

    from embedclf import SoftmaxClassifier

    steps = 200 if ctx.quick else 4000
    X_tr, y_tr, _ = ctx.features("train")
    X_te, y_te, _ = ctx.features("test")
    classes = np.unique(y_tr)
    y_idx = np.searchsorted(classes, y_tr)

    # Trace once on a few steps so graph building is not timed (favours retrain).
    retrain_head(X_tr, y_idx, len(classes), steps=2)
    with Timer() as t_retrain:
        W, b, loss = retrain_head(X_tr, y_idx, len(classes), steps=steps)
    pred = classes[np.argmax(X_te @ W + b, axis=1)]
    acc_retrain = float(np.mean(pred == y_te))
    acc_retrain_train = float(np.mean(classes[np.argmax(X_tr @ W + b, 1)] == y_tr))

    with Timer() as t_ours:
        ours = SoftmaxClassifier().fit(X_tr, y_tr)
    acc_ours = float(np.mean(ours.predict(X_te) == y_te))
    speedup = t_retrain.seconds / t_ours.seconds
    head_ratios, head_metrics = compare_heads(ctx)
    return {
        "title": "Head training: softmax vs retrain.py final layer; MLP vs softmax",
        "ratios": [
            {
                "name": f"retrain.py GD ({steps} steps) / lbfgs fit time",
                "value": speedup,
                "target": "report",
                "met": None,
            },
            {
                "name": "test accuracy, ours - retrain.py (points)",
                "value": 100 * (acc_ours - acc_retrain),
                "target": "report",
                "met": None,
            },
            *head_ratios,
        ],
        "metrics": {
            "heads": head_metrics,
            "n_train": len(y_tr),
            "n_test": len(y_te),
            "n_classes": len(classes),
            "retrain_steps": steps,
            "retrain_batch_size": TRAIN_BATCH_SIZE,
            "retrain_learning_rate": LEARNING_RATE,
            "retrain_fit_s": t_retrain.seconds,
            "retrain_final_batch_loss": loss,
            "retrain_train_accuracy": acc_retrain_train,
            "retrain_test_accuracy": acc_retrain,
            "softmax_fit_s": t_ours.seconds,
            "softmax_n_iter": int(np.max(ours.n_iter_)),
            "softmax_test_accuracy": acc_ours,
            "tf_threads": [
                tf.config.threading.get_intra_op_parallelism_threads(),
                tf.config.threading.get_inter_op_parallelism_threads(),
            ],
        },
    }
