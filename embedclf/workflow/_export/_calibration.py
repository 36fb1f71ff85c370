"""The photos an int8 (or mixed) TensorFlow Lite export is calibrated on.

By default a deterministic sample of the model's own training photos
(:func:`calibration_paths`: the classes in turn), decoded as ``predict``
decodes them, as uint8 pixels for the model's input(s).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from embedclf.exceptions import ModelDirError

__all__ = ["calibration_data", "calibration_paths", "input_pixels"]

logger = logging.getLogger("embedclf")


def calibration_paths(model_dir, n: int = 300) -> list[str]:
    """A deterministic sample of ``n`` of the model's training photos.

    The training folder is the one the manifest records (``data.sources``);
    with retrain.py's hash split, its training part. Classes are taken in
    turn (the first file of each class in name order, then the second, ...),
    so every class is represented.

    Raises
    ------
    ModelDirError
        The recorded training folder is gone.
    """
    from embedclf.workflow._train import collect_images

    data = model_dir.manifest.get("data", {})
    sources = data.get("sources", {})
    root = sources.get("training") or sources.get("all")
    if root is None or not Path(root).is_dir():
        relative = root is not None and not Path(root).is_absolute()
        raise ModelDirError(
            f"The training photos of {str(model_dir.path)!r} are not at "
            f"{root!r} any more"
            # embedclf 0.2.0 recorded the folder as given on the command line
            + (" (relative to the folder `train` ran in)" if relative else "")
            + ", and int8 quantization is calibrated on them. Pass "
            "calibration_images= (--calibration-images DIR: a folder of "
            "typical photos) or use quantize='dynamic'."
        )
    if "training" in sources:
        from embedclf.workflow._train._collect import _folder

        paths, labels = _folder(root)
    else:
        images = collect_images(root)
        keep = images.split == "training"
        paths, labels = images.paths[keep], images.labels[keep]
    return _round_robin(paths, labels, n)


def _round_robin(paths, labels, n: int) -> list[str]:
    order = np.lexsort((np.asarray(paths, dtype=str), np.asarray(labels, dtype=str)))
    paths, labels = np.asarray(paths)[order], np.asarray(labels)[order]
    rank = np.zeros(len(paths), dtype=int)
    for label in np.unique(labels):
        idx = np.flatnonzero(labels == label)
        rank[idx] = np.arange(len(idx))
    take = np.lexsort((labels, rank))[:n]
    return [str(p) for p in paths[take]]


def input_pixels(data: bytes, inputs, *, resample, crop_fraction, path="<bytes>"):
    """``{input name: [1, h, w, 3] uint8}``: one encoded photo as an exported
    model takes it (``inputs``: (name, (h, w)) pairs), decoded as ``predict``
    decodes it. Calibration and ``LiteRTClassifier`` both feed these."""
    from embedclf.embedding._images import decode_image

    return {
        name: decode_image(
            data,
            size,
            path=path,
            as_uint8=True,
            resample=resample,
            crop_fraction=crop_fraction,
        )[None]
        for name, size in inputs
    }


def _pixels(paths, inputs, prep):
    """Yield, per readable photo, one ``[1, h, w, 3]`` uint8 array per input."""
    from embedclf.embedding._images import read_image_bytes

    for path in paths:
        try:
            arrays = input_pixels(
                read_image_bytes(path),
                inputs,
                resample=prep["resample"],
                crop_fraction=prep["crop_fraction"],
                path=path,
            )
        except (OSError, ValueError) as exc:
            logger.warning("calibration skips %s: %s", path, exc)
            continue
        yield list(arrays.values())


def calibration_data(paths, inputs, prep):
    """(a function yielding the calibration inputs, how many photos)."""
    arrays = list(_pixels(paths, inputs, prep))
    if not arrays:
        raise ModelDirError(
            "None of the calibration photos could be read; pass readable "
            "photos as calibration_images."
        )

    def calibration():
        yield from arrays

    return calibration, len(arrays)
