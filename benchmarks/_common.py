"""Helpers shared by the benchmark modules (never imported by the package).

A :class:`Context` carries the run's settings (quick or full, the backbone,
the dataset, the work directory) and memoises what several benchmarks share:
the grocery image lists and their embeddings, which live in one HDF5 cache
under the work directory so that repeated runs reuse them.
"""

from __future__ import annotations

import gc
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EMBEDCLF_SHARED") or ROOT.parent / "shared")
DEFAULT_MODEL = SHARED / "models" / "efficientnet_lite0_feature_vector"
DEFAULT_DATA = SHARED / "data" / "grocery_store"


@dataclass
class Context:
    """Settings and shared state of one benchmark run."""

    quick: bool
    model: str
    data: Path
    workdir: Path
    batch_size: int = 64
    cache: Path | None = None
    _memo: dict = field(default_factory=dict)

    @property
    def shared_cache(self) -> Path:
        """The cache of grocery embeddings shared by repeated runs.

        ``--cache`` of run.py, else ``<workdir>/grocery_embeddings.h5``.
        """
        return self.cache or self.workdir / "grocery_embeddings.h5"

    def fresh_dir(self, name: str) -> Path:
        """An empty directory under the work directory (for cold caches)."""
        path = self.workdir / "fresh" / name
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        return path

    def split(self, name: str):
        """The paths and labels of one official split (a subset when quick).

        Quick mode keeps 5 classes and at most 8 images per class, enough for
        stratified CV and calibrated SVMs.
        """
        key = ("split", name)
        if key not in self._memo:
            from embedclf import load_image_folder

            bunch = load_image_folder(self.data / name)
            names = bunch.target_names[bunch.target]
            paths = bunch.paths
            if self.quick:
                keep = self.quick_classes()
                idx = [i for c in keep for i in np.flatnonzero(names == c)[:8]]
                paths, names = paths[idx], names[idx]
            self._memo[key] = (np.asarray(paths), np.asarray(names))
        return self._memo[key]

    def quick_classes(self) -> list[str]:
        """Five classes present in every split (quick mode)."""
        common = sorted(
            set(os.listdir(self.data / "train"))
            & set(os.listdir(self.data / "val"))
            & set(os.listdir(self.data / "test"))
        )
        return common[:5]

    def features(self, name: str):
        """Embeddings of one split through the shared cache: (X, y, n_computed)."""
        key = ("features", name)
        if key not in self._memo:
            paths, y = self.split(name)
            emb = self.embedder(cache=self.shared_cache)
            X = emb.transform(paths)
            self._memo[key] = (X, y, emb.n_computed_)
        return self._memo[key]

    def embedder(self, **params):
        from embedclf import ImageEmbedder

        params.setdefault("batch_size", self.batch_size)
        params.setdefault("progress", False)
        # The items before 19 measure the TensorFlow runtime (their recorded
        # figures and the shared cache are TensorFlow's); item 19 compares.
        params.setdefault("runtime", "tensorflow")
        return ImageEmbedder(self.model, **params)


class Timer:
    """``with Timer() as t: ...`` then ``t.seconds`` (perf_counter).

    Collects garbage before starting the clock: with TensorFlow loaded a full
    collection takes ~0.2 s, and one triggered by garbage of earlier work must
    not land inside a 40 ms block (``timeit`` disables the collector for the
    same reason). Garbage made inside the block is still collected, and paid
    for, as usual.
    """

    def __enter__(self):
        gc.collect()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self._start
        return False


class CpuTimer:
    """Process CPU time (user + system, all threads) spent inside the block."""

    @staticmethod
    def _now():
        import resource

        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    def __enter__(self):
        self._start = self._now()
        return self

    def __exit__(self, *exc):
        self.seconds = self._now() - self._start
        return False


def source_revision() -> dict:
    """The git commit of the code being measured, and whether it had local edits.

    Edits to ``benchmarks/results`` (written by the runs themselves) do not
    count. ``{"commit": None, "dirty": None}`` outside a git checkout.
    """

    def git(*args):
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30
        )

    try:
        head = git("rev-parse", "HEAD")
    except (OSError, subprocess.SubprocessError):  # no git, or it hangs
        return {"commit": None, "dirty": None}
    if head.returncode != 0:
        return {"commit": None, "dirty": None}
    status = git(
        "status",
        "--porcelain",
        "--untracked-files=no",
        "--",
        ".",
        ":(exclude)benchmarks/results",
    )
    return {
        "commit": head.stdout.strip(),
        "dirty": bool(status.stdout.strip()) if status.returncode == 0 else None,
    }


def machine_info() -> dict:
    """CPU, memory and library versions of the machine the run is on."""
    model_name = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model_name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gb = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal"):
                    mem_gb = round(int(line.split()[1]) / 1024**2, 1)
                    break
    except OSError:
        pass
    versions = {}
    for mod in ("numpy", "sklearn", "tensorflow", "h5py", "PIL", "embedclf"):
        try:
            module = __import__(mod)
            versions[mod] = getattr(module, "__version__", "?")
        except ImportError:
            versions[mod] = None
    return {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else None,
        "cpu_model": model_name,
        "mem_total_gb": mem_gb,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "versions": versions,
    }


def dir_size(path: Path) -> tuple[int, int]:
    """(sum of file sizes, bytes allocated on disk) of every file under path."""
    apparent = allocated = 0
    for root, _, files in os.walk(path):
        for name in files:
            st = os.stat(os.path.join(root, name))
            apparent += st.st_size
            allocated += st.st_blocks * 512
    return apparent, allocated


def file_size(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_size, st.st_blocks * 512


def temp_dir(ctx: Context, prefix: str) -> Path:
    (ctx.workdir / "tmp").mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=ctx.workdir / "tmp"))
