"""The report of a test part holding a file name that is not UTF-8."""

from __future__ import annotations

import os

import numpy as np
from conftest import write_image

from embedclf.workflow._report import write_report


def test_misclassified_file_name_that_is_not_utf8(tmp_path):
    folder = os.fsencode(tmp_path)
    path = os.fsdecode(folder + b"/caf\xe9.png")  # legal Latin-1 name
    write_image(path, seed=3)
    metrics = write_report(
        tmp_path / "report",
        np.array([path]),
        np.array(["red"]),
        np.array(["green"]),
        np.array([[0.6, 0.4]]),
        ["green", "red"],
    )
    assert metrics["n_samples"] == 1
    page = (tmp_path / "report" / "misclassified.html").read_text(encoding="utf-8")
    assert "caf\\udce9.png" in page
