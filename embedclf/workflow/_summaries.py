"""TensorBoard output of ``embedclf train --summaries-dir DIR``.

Written like retrain.py's ``--summaries_dir``::

    DIR/train/events.out.tfevents...        accuracy, cross_entropy, log10_C
    DIR/validation/events.out.tfevents...   accuracy, cross_entropy, log10_C
    DIR/projector_config.pbtxt              Embedding Projector config, naming
    DIR/projector/                          vectors.tsv, metadata.tsv, sprite.png

The scalars are the cross-validation means for each value of the C grid
(step = position in the grid, from most to least regularised), where
retrain.py logs them per training step. An MLP head logs per epoch instead:
``train/loss`` and ``validation/accuracy`` (the rows held out for early
stopping). Open the directory with
``tensorboard --logdir DIR``.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

__all__ = ["write_epoch_scalars", "write_scalars", "write_projector"]

logger = logging.getLogger("embedclf")

_SPRITE_MAX = 8192  # TensorBoard's limit on the sprite side, in pixels


def write_scalars(summaries_dir, grid: list[dict]) -> list[Path]:
    """Write train/validation accuracy and cross-entropy across the C grid.

    Parameters
    ----------
    summaries_dir : str or os.PathLike
    grid : list of dict
        One dict per C with ``C``, ``train_accuracy``, ``validation_accuracy``,
        ``train_cross_entropy`` and ``validation_cross_entropy``.

    Returns
    -------
    run_dirs : list of pathlib.Path
        The ``train`` and ``validation`` run directories.
    """
    import tensorflow as tf

    root = Path(summaries_dir)
    runs = []
    for run in ("train", "validation"):
        writer = tf.summary.create_file_writer(str(root / run))
        with writer.as_default():
            for step, row in enumerate(grid):
                tf.summary.scalar("accuracy", row[f"{run}_accuracy"], step=step)
                tf.summary.scalar(
                    "cross_entropy", row[f"{run}_cross_entropy"], step=step
                )
                tf.summary.scalar("log10_C", math.log10(row["C"]), step=step)
        writer.flush()
        writer.close()
        runs.append(root / run)
    return runs


def write_epoch_scalars(summaries_dir, curves: dict) -> list[Path]:
    """Write an MLP head's per-epoch curves (step = epoch, from 1).

    ``train/loss`` is the training loss (cross-entropy plus the L2 term) and
    ``validation/accuracy`` the accuracy on the rows held out for early
    stopping, as :func:`embedclf.workflow._report._curves.epoch_curves` returns them.
    """
    import tensorflow as tf

    root = Path(summaries_dir)
    series = {"train": [("loss", curves["loss"])], "validation": []}
    if curves["validation_accuracy"] is not None:
        series["validation"].append(("accuracy", curves["validation_accuracy"]))
    runs = []
    for run, scalars in series.items():
        if not scalars:
            continue
        writer = tf.summary.create_file_writer(str(root / run))
        with writer.as_default():
            for tag, values in scalars:
                for epoch, value in enumerate(values, start=1):
                    tf.summary.scalar(tag, float(value), step=epoch)
        writer.flush()
        writer.close()
        runs.append(root / run)
    return runs


def _thumb(path, side: int) -> np.ndarray:
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as img:
            img.draft("RGB", (side * 2, side * 2))
            img = ImageOps.exif_transpose(img).convert("RGB")
            img = ImageOps.fit(img, (side, side))
            return np.asarray(img, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError):
        return np.full((side, side, 3), 255, dtype=np.uint8)


def _tsv_field(value) -> str:
    return str(value).replace("\t", " ").replace("\n", " ")


def write_projector(
    summaries_dir, vectors, labels, paths, split=None, *, thumbnail: int = 48
) -> Path:
    """Write the Embedding Projector files for ``vectors``.

    Parameters
    ----------
    summaries_dir : str or os.PathLike
    vectors : ndarray of shape (n_samples, dim)
    labels : array-like of shape (n_samples,)
    paths : array-like of shape (n_samples,)
        Image files, for the sprite and the metadata.
    split : array-like of shape (n_samples,), optional
        Split names, added to the metadata.
    thumbnail : int, default=48
        Side of one sprite cell in pixels (reduced so the sprite fits in
        8192 x 8192).

    Returns
    -------
    projector_dir : pathlib.Path
    """
    from PIL import Image

    out = Path(summaries_dir) / "projector"
    out.mkdir(parents=True, exist_ok=True)
    vectors = np.asarray(vectors, dtype=np.float32)
    n = len(vectors)
    with open(out / "vectors.tsv", "w") as fh:
        for row in vectors:
            fh.write("\t".join(f"{v:.6g}" for v in row) + "\n")
    header = ["label", "split", "path"] if split is not None else ["label", "path"]
    with open(out / "metadata.tsv", "w") as fh:
        fh.write("\t".join(header) + "\n")
        for i in range(n):
            cols = [labels[i]] + ([split[i]] if split is not None else []) + [paths[i]]
            fh.write("\t".join(_tsv_field(c) for c in cols) + "\n")
    per_row = max(1, math.ceil(math.sqrt(n)))
    side = max(8, min(thumbnail, _SPRITE_MAX // per_row))
    sprite = np.full((per_row * side, per_row * side, 3), 255, dtype=np.uint8)
    for i, path in enumerate(paths):
        r, c = divmod(i, per_row)
        sprite[r * side : (r + 1) * side, c * side : (c + 1) * side] = _thumb(
            path, side
        )
    Image.fromarray(sprite).save(out / "sprite.png")
    # TensorBoard looks for the config in the log directory itself (and in
    # run directories with event files); paths in it are relative to it.
    (out.parent / "projector_config.pbtxt").write_text(
        "embeddings {\n"
        '  tensor_name: "embeddings"\n'
        '  tensor_path: "projector/vectors.tsv"\n'
        '  metadata_path: "projector/metadata.tsv"\n'
        "  sprite {\n"
        '    image_path: "projector/sprite.png"\n'
        f"    single_image_dim: {side}\n"
        f"    single_image_dim: {side}\n"
        "  }\n"
        "}\n"
    )
    return out
