"""File-identity memo: a warm run stats image files instead of re-reading them.

The content key of an image is the SHA-256 of its bytes, so finding out that
nothing changed used to read every file in full. This memo, stored beside the
cache as ``<cache>.identities``, maps a file's identity ``(st_dev, st_ino,
st_size, st_mtime_ns, st_ctime_ns)`` to the content key last computed for
it. A file whose five fields are all unchanged is taken to hold the same
bytes; any change (an edit, a rewrite, a copy over it, ``touch``, a restore
with the old mtime, since that sets a new ctime) re-hashes it. ``rehash=True``
(``ImageEmbedder(rehash_files=True)``, ``embedclf embed --rehash``) ignores
the memo, re-reads every file and records what it found.

When it can be fooled (a stale key, so the old vector)
---------------------------------------------------------
* The bytes change while all five fields stay equal. ``ctime`` cannot be set
  from user space, so this needs: a write that does not update the
  timestamps (a block-level write to the device, ``mmap`` writes not yet
  flushed on some filesystems, network filesystems that cache attributes,
  e.g. NFS with ``noac`` off, or FUSE filesystems that report fixed times),
  or two writes of the same size within one timestamp tick with our stat in
  between. The last case is guarded as git guards its "racy" index: a file
  whose mtime or ctime is less than ``RACY_SECONDS`` before the moment it
  was hashed is not memoised, and a file whose stat changed while it was
  being read is not memoised either.
* The system clock is set back and a file is rewritten so that its new
  mtime and ctime equal the old ones to the nanosecond, with the same size
  and inode.
* Another filesystem is mounted with the same device number (a removable
  disk swapped for another) holding a file with the same inode number,
  size, mtime and ctime.

The compute path keeps its own check: an image that is decoded (a cache
miss) is hashed again from the bytes decoded, and a mismatch is reported,
never stored.

File format: fixed 80-byte records ``<QQQqq32sI4x`` (dev, ino, size,
mtime_ns, ctime_ns, raw SHA-256, a checksum of the first 72 bytes), appended under
``<cache>.identities.lock``; the last record of an identity wins; a torn or
damaged record fails its checksum and is ignored. The file is rewritten (temp
file, ``os.replace``) when stale records outnumber live ones. Losing it
costs one full re-hash, never a wrong vector beyond the cases above.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from embedclf.embedding._images import content_key, read_image_bytes

__all__ = ["IdentityMemo", "hash_paths", "RACY_SECONDS"]

RACY_SECONDS = 2.0
_DTYPE = np.dtype(
    [
        ("dev", "<u8"),
        ("ino", "<u8"),
        ("size", "<u8"),
        ("mtime", "<i8"),
        ("ctime", "<i8"),
        ("key", "u1", (32,)),  # not S32: numpy strips trailing NUL bytes
        ("crc", "<u4"),
        ("pad", "V4"),
    ]
)
_BODY = 72  # bytes covered by the CRC


def _checksums(raw: np.ndarray) -> np.ndarray:
    """A 32-bit checksum of the first 72 bytes of each 80-byte row, computed
    for all rows at once (an FNV-style multiply-xor over nine 64-bit words).

    Not zlib's CRC32 (which the cache's rows use): a Python call per record
    cost more than the stat calls the memo saves. It catches torn writes and
    random damage with probability 1 - 2**-32, which is all it is for.
    """
    words = np.ascontiguousarray(raw[:, :_BODY]).view("<u8")
    h = np.full(len(raw), 0xCBF29CE484222325, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(words.shape[1]):
            h = (h ^ words[:, j]) * np.uint64(0x100000001B3)
            h ^= h >> np.uint64(29)
    return (h ^ (h >> np.uint64(32))).astype(np.uint32)


def _records(items) -> np.ndarray:
    """``(identity, key)`` pairs as checksummed records."""
    recs = np.zeros(len(items), dtype=_DTYPE)
    for rec, (ident, key) in zip(recs, items):
        rec["dev"], rec["ino"], rec["size"], rec["mtime"], rec["ctime"] = ident
        rec["key"] = np.frombuffer(bytes.fromhex(key), np.uint8)
    recs["crc"] = _checksums(recs.view(np.uint8).reshape(len(items), -1))
    return recs


def _identity(st):
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class IdentityMemo:
    """The memo file of the cache at ``cache_path`` (see the module docstring)."""

    def __init__(self, cache_path):
        self.path = os.fspath(cache_path) + ".identities"
        self._entries = None
        self._n_records = 0

    def _lock(self):
        from filelock import FileLock

        return FileLock(self.path + ".lock")

    def load(self) -> dict:
        """Identity tuple -> content key (hex), from every valid record."""
        if self._entries is None:
            try:
                data = np.fromfile(self.path, dtype=np.uint8)
            except (FileNotFoundError, IsADirectoryError, PermissionError):
                data = np.zeros(0, np.uint8)
            n = len(data) // _DTYPE.itemsize
            raw = data[: n * _DTYPE.itemsize].reshape(n, _DTYPE.itemsize)
            recs = raw.view(_DTYPE).ravel()
            ok = recs[_checksums(raw) == recs["crc"]]
            idents = ok[["dev", "ino", "size", "mtime", "ctime"]].tolist()
            blob = np.ascontiguousarray(ok["key"]).tobytes().hex()
            keys = [blob[i : i + 64] for i in range(0, len(blob), 64)]
            self._entries = dict(zip(idents, keys))
            self._n_records = n
        return self._entries

    def add(self, items) -> None:
        """Append ``(identity, key)`` pairs (one write, under the memo's lock)."""
        items = list(items)
        if not items:
            return
        recs = _records(items)
        with self._lock():
            entries = self.load()
            entries.update((ident, key) for ident, key in items)
            if self._n_records + len(items) > 2 * len(entries) + 1024:
                self._rewrite(entries)
                return
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                size = os.fstat(fd).st_size
                whole = size - size % _DTYPE.itemsize  # cut a torn record
                if whole != size:
                    os.ftruncate(fd, whole)
                os.lseek(fd, whole, os.SEEK_SET)
                os.write(fd, recs.tobytes())
            finally:
                os.close(fd)
            self._n_records = whole // _DTYPE.itemsize + len(items)

    def _rewrite(self, entries) -> None:
        """Replace the file by one record per live identity (no fsync needed:
        a lost memo only costs a re-hash)."""
        recs = _records(list(entries.items()))
        tmp = f"{self.path}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            recs.tofile(tmp)
            os.replace(tmp, self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp)
        self._n_records = len(entries)


def _hash_one(path, memo_entries):
    """(key, identity to memoise or None) of one file; stats it first."""
    try:
        before = os.stat(path)
    except OSError:
        before = None  # read_image_bytes raises the error that names the file
    if before is not None and memo_entries is not None:
        key = memo_entries.get(_identity(before))
        if key is not None:
            return key, None
    now = time.time_ns()
    key = content_key(read_image_bytes(path))
    if before is None:
        return key, None
    after = os.stat(path)
    ident = _identity(before)
    racy = now - max(before.st_mtime_ns, before.st_ctime_ns) < RACY_SECONDS * 1e9
    if racy or _identity(after) != ident:
        return key, None
    return key, ident


def hash_paths(paths, cache_path, *, n_threads, rehash, errors):
    """Content keys of ``paths`` (threads), through the memo of ``cache_path``.

    Parameters
    ----------
    paths : sequence of str
    cache_path : str, os.PathLike or None
        None: no memo, every file is read and hashed.
    n_threads : int
    rehash : bool
        Read and hash every file even when the memo knows it.
    errors : tuple of exception types
        Collected per path instead of raised.

    Returns
    -------
    keys : list of str or None
    errs : list of Exception or None
    """
    memo = None
    if cache_path is not None and not os.path.isdir(cache_path):
        memo = IdentityMemo(cache_path)  # (a directory: the cache says why not)
    entries = None if memo is None or rehash else memo.load()

    def chunk(indices):
        # One task per contiguous chunk: one per file costs more in
        # scheduling than stat-ing or hashing a small photo does.
        out = []
        for i in indices:
            try:
                out.append((*_hash_one(paths[i], entries), None))
            except errors as exc:
                out.append((None, None, exc))
        return out

    n_chunks = min(len(paths), 4 * n_threads)
    chunks = np.array_split(np.arange(len(paths)), max(n_chunks, 1))
    with ThreadPoolExecutor(n_threads) as pool:
        results = [r for part in pool.map(chunk, chunks) for r in part]
    if memo is not None:
        try:
            memo.add((ident, key) for key, ident, _ in results if ident is not None)
        except OSError:  # a read-only directory: no memo, still correct
            pass
    return [r[0] for r in results], [r[2] for r in results]
