"""A cache in a folder that cannot be written: a PermissionError saying what to do.

filelock's own error (a bare ``[Errno 13] Permission denied`` or ``[Errno 30]
Read-only file system`` on ``<file>.lock``) is replaced by one that names the
folder and the ways out. The folder is made read-only for real: by
``chmod`` for a normal user, by a read-only bind mount (``unshare -m``) for
root, whom permissions do not stop.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from embedclf.cache._store import CacheNamespace, EmbeddingCache

ROOT = Path(__file__).resolve().parents[2]
NS = CacheNamespace("m", "m", "default", "v1")

CODE = """
import sys
from embedclf.cache._store import CacheNamespace, EmbeddingCache
ns = CacheNamespace("m", "m", "default", "v1")
for name in ("existing.h5", "new.h5"):
    cache = EmbeddingCache(sys.argv[1] + "/" + name, lock_timeout=5)
    for call in (lambda: cache.get(ns, ["a" * 64]),
                 lambda: cache.leases().claim(ns.fingerprint, ["a" * 64])):
        try:
            call()
        except PermissionError as exc:
            print("PermissionError:", exc)
        else:
            print("no error")
"""

EXPECTED_LOCK = (
    "PermissionError: Cannot create the lock file '{folder}/{name}.lock' of cache "
    "'{folder}/{name}': its folder '{folder}' is not writable ({reason}). The "
    "cache needs a writable folder even to read it (lock files). Make the folder "
    "writable, copy the cache into a writable folder and pass that path, or run "
    "without a cache (cache=None; no --cache)."
)
EXPECTED_LEASES = (
    "PermissionError: Cannot create the lease folder '{folder}/{name}.leases' of "
    "cache '{folder}/{name}': its folder '{folder}' is not writable ({reason}). "
    "The cache needs a writable folder even to read it (lock and lease files). "
    "Make the folder writable, copy the cache into a writable folder and pass "
    "that path, or run without a cache (cache=None; no --cache)."
)


def _can_bind_mount_read_only(folder):
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", f"mount --bind -o ro '{folder}' '{folder}'"],
        capture_output=True,
    )
    return probe.returncode == 0


def test_read_only_cache_folder_says_what_to_do(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    cache = EmbeddingCache(folder / "existing.h5")
    cache.put(NS, ["a" * 64], np.ones((1, 3), dtype=np.float32))
    cache.compact()
    for lock in folder.glob("*.lock"):
        lock.unlink()  # the first use in the read-only folder must create it
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            out = subprocess.run(
                [sys.executable, "-c", CODE, str(folder)],
                capture_output=True, text=True, env=env,
            )  # fmt: skip
        finally:
            folder.chmod(0o755)
        reason = "Permission denied"
    elif _can_bind_mount_read_only(folder):
        script = (
            f"mount --bind -o ro '{folder}' '{folder}' && "
            f"exec '{sys.executable}' -c \"$0\" '{folder}'"
        )
        out = subprocess.run(
            ["unshare", "-m", "sh", "-c", script, CODE],
            capture_output=True, text=True, env=env,
        )  # fmt: skip
        reason = "Read-only file system"
    else:  # pragma: no cover - root without mount namespaces
        pytest.skip("root, and no read-only bind mount available")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines == [
        expected.format(folder=folder, name=name, reason=reason)
        for name in ("existing.h5", "new.h5")
        for expected in (EXPECTED_LOCK, EXPECTED_LEASES)
    ]
