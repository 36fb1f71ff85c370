"""Run an exported TensorFlow Lite folder on the desktop with LiteRT.

The photos are decoded and resized with Pillow as ``preprocessing.json``
says (the same code as ``embedclf predict``), then fed one at a time to
``model.tflite`` through ``ai_edge_litert`` (the optional ``[lite]`` extra):
what an app that prepares its pixels the same way will answer.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from embedclf.workflow._export._quiet_lite import quiet_lite
from embedclf.workflow._export._tflite import FORMAT, PREPROCESSING_FILE

__all__ = ["LiteRTClassifier", "is_tflite_export"]


def is_tflite_export(path) -> bool:
    """Whether ``path`` is a folder written by ``export_tflite``."""
    info = Path(path) / PREPROCESSING_FILE
    if not info.is_file():
        return False
    try:
        return json.loads(info.read_text()).get("format") == FORMAT
    except (ValueError, AttributeError):
        return False


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as exc:
        raise ImportError(
            "Running a TensorFlow Lite export needs LiteRT (the ai-edge-litert "
            'package): pip install "embedclf[lite]".'
        ) from exc
    return Interpreter


class LiteRTClassifier:
    """An exported ``model.tflite`` with its labels and preprocessing.

    Parameters
    ----------
    path : str or os.PathLike
        The folder ``export_tflite`` wrote.
    num_threads : int or None, default=None
        LiteRT's CPU threads. None: one per CPU (LiteRT's own default is 1).

    Attributes
    ----------
    classes_ : ndarray of str
        ``labels.txt``, the columns of :meth:`predict_proba`.
    preprocessing : dict
        ``preprocessing.json``.
    """

    def __init__(self, path, *, num_threads=None):
        self.path = Path(path)
        self.preprocessing = json.loads((self.path / PREPROCESSING_FILE).read_text())
        labels = (self.path / self.preprocessing["labels_file"]).read_text()
        self.classes_ = np.asarray(labels.splitlines(), dtype=str)
        with quiet_lite():
            interpreter = _interpreter_class()(
                model_path=str(self.path / self.preprocessing["model_file"]),
                num_threads=num_threads or os.cpu_count() or 1,
            )
            self._runner = interpreter.get_signature_runner()
            # The XNNPACK delegate is applied (and announced) on the first run.
            self._runner(
                **{
                    spec["name"]: np.zeros(spec["shape"], np.uint8)
                    for spec in self.preprocessing["inputs"]
                }
            )
        self._inputs = [
            (spec["name"], tuple(spec["shape"][1:3]))
            for spec in self.preprocessing["inputs"]
        ]

    def pixels(self, data: bytes, path: str = "<bytes>") -> dict:
        """The model's input arrays for one encoded photo."""
        from embedclf.workflow._export._calibration import input_pixels

        resize = self.preprocessing["resize"]
        return input_pixels(
            data,
            self._inputs,
            resample=resize["filter"],
            crop_fraction=resize["crop_fraction"],
            path=path,
        )

    def run(self, pixels: dict) -> tuple[np.ndarray, bool]:
        """(probabilities of shape (n_classes,), known) for one photo's inputs."""
        out = self._runner(**pixels)
        known = bool(out["known"][0] > 0.5) if "known" in out else True
        return np.asarray(out["probabilities"][0], dtype=np.float64), known

    def predict_files(self, paths) -> tuple[np.ndarray, np.ndarray, np.ndarray, list]:
        """Probabilities and labels for image files.

        Returns
        -------
        proba : ndarray of shape (n_ok, n_classes)
        labels : ndarray of str, shape (n_ok,)
            The top class, or the unknown label where the exported open-set
            rule rejects the photo.
        ok : ndarray of bool, shape (n_paths,)
            False for files that could not be read or decoded.
        errors : list of str
            One message per failed file.
        """
        from embedclf.embedding._images import read_image_bytes

        rows, labels, ok, errors = [], [], [], []
        unknown = self.preprocessing.get("unknown_label")
        for path in paths:
            try:
                inputs = self.pixels(read_image_bytes(path), str(path))
            except (OSError, ValueError) as exc:
                ok.append(False)
                errors.append(str(exc))
                continue
            proba, known = self.run(inputs)
            rows.append(proba)
            labels.append(str(self.classes_[proba.argmax()]) if known else unknown)
            ok.append(True)
        n = len(self.classes_)
        proba = np.vstack(rows) if rows else np.zeros((0, n))
        return proba, np.asarray(labels, dtype=str), np.asarray(ok, bool), errors
