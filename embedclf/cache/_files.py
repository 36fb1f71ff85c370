"""File-system helpers of the embedding cache: fsync, space reservation,
stale temp files, stat tokens. No h5py here."""

from __future__ import annotations

import contextlib
import errno
import os
import re

__all__ = [
    "TAIL_BYTES",
    "fsync_path",
    "read_tail",
    "remove_stale_temps",
    "reserve_space",
    "stat_token",
]


def fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


TAIL_BYTES = 16


def reserve_space(path: str, nbytes: int) -> None:
    """Raise ``OSError`` (ENOSPC, EFBIG, EDQUOT) now if ``nbytes`` cannot be
    written at ``path``, instead of letting HDF5 run into a full disk.

    HDF5 handles failed writes badly: the file stays open in the library and
    closing it can crash the process (seen with h5py 3.14 / HDF5 1.14). So
    the space is claimed first with ``posix_fallocate`` (which also trips
    RLIMIT_FSIZE and quotas) on a scratch file, then released for the
    rewrite. A disk filled by another program in between is not covered.
    """
    fallocate = getattr(os, "posix_fallocate", None)
    if fallocate is None:  # pragma: no cover - not on macOS / Windows
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        fallocate(fd, 0, max(1, nbytes))
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
    finally:
        os.close(fd)
        os.remove(path)


def remove_stale_temps(path: str) -> None:
    """Delete ``<path>.tmp-*`` files left by a process killed mid-rewrite.

    Rewrites happen only under the cache lock, which the caller holds: so any
    temp file present now belongs to a dead rewrite (and may be as large as
    the cache).
    """
    directory, base = os.path.split(os.path.abspath(path))
    pattern = re.compile(re.escape(base) + r"\.tmp-\d+-[0-9a-f]{8}")
    with contextlib.suppress(OSError):
        for name in os.listdir(directory):
            if pattern.fullmatch(name):
                with contextlib.suppress(OSError):
                    os.remove(os.path.join(directory, name))


def read_tail(path: str, end: int) -> bytes | None:
    """The ``TAIL_BYTES`` bytes before offset ``end`` of ``path`` (None if gone)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, end - TAIL_BYTES))
            return fh.read(min(end, TAIL_BYTES))
    except FileNotFoundError:
        return None


def stat_token(path: str):
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)
