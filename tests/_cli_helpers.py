"""Shared, memoised setup of the CLI tests: a dataset and a trained MODEL_DIR.

Training once per session keeps the CLI, export and augmentation tests fast;
the results are memoised here (not in a fixture) so that every test module
that uses them shares one copy.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

from conftest import make_image_folder

from embedclf.cli import main

CLASSES = ("red", "green", "blue")
_STATE: dict = {}


def grocery_like(root: Path) -> Path:
    """root/{train,val,test}/<class>/ with colour-biased images."""
    root = Path(root)
    if not (root / "train").exists():
        make_image_folder(root / "train", CLASSES, n_per_class=12, seed=0)
        make_image_folder(root / "val", CLASSES, n_per_class=3, seed=1)
        make_image_folder(root / "test", CLASSES, n_per_class=4, seed=2)
    return root


def trained(tmp_path_factory, model_dir: Path) -> dict:
    """Train once per session on the official-subfolder layout.

    Returns a dict with ``data``, ``cache``, ``output``, ``summaries``,
    ``stdout`` and ``status``.
    """
    key = ("trained", str(model_dir))
    if key not in _STATE:
        base = tmp_path_factory.mktemp("cli_session")
        data = grocery_like(base / "data")
        out = base / "model"
        cache = base / "cache.h5"
        summaries = base / "summaries"
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            status = main(
                [
                    "train",
                    str(data),
                    "--output",
                    str(out),
                    "--model",
                    str(model_dir),
                    "--cache",
                    str(cache),
                    "--summaries-dir",
                    str(summaries),
                    "--C",
                    "0.1,1",
                    "--no-progress",
                ]
            )
        stdout = buf.getvalue()
        _STATE[key] = {
            "base": base,
            "data": data,
            "cache": cache,
            "output": out,
            "summaries": summaries,
            "stdout": stdout,
            "status": status,
        }
    return _STATE[key]


def predict_json(model_dir, paths, capsys) -> list:
    """``embedclf predict MODEL_DIR PATHS --json``'s results (exit code 0)."""
    import json

    capsys.readouterr()
    assert main(["predict", str(model_dir), *map(str, paths), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def noise_images(folder: Path, n: int = 4) -> list[str]:
    """``n`` random-pixel PNGs in ``folder``: photos of none of the classes."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = folder / f"noise{i}.png"
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths
