"""Append-only, checksummed write-ahead journal for the embedding cache.

HDF5 has no journaling: a process killed while h5py updates a file in place
can leave it unreadable. So new vectors are never written into the HDF5 file
directly. Each committed batch is appended here as one record (header, keys,
vectors, CRC32) and flushed; the cache later folds the journal into a new HDF5
file that atomically replaces the old one. A record cut short by a crash fails
its length or CRC check and is ignored (and trimmed by the next writer), so
every complete record survives any kill.

Record layout (little-endian)::

    b"EMBR" | u32 meta_len | u32 n | u32 dim | u8 itemsize
    | meta (JSON, utf-8) | keys (n * 64 ASCII hex) | vectors (n * dim * itemsize)
    | u32 crc32 of everything after the magic
"""

from __future__ import annotations

import json
import os
import struct
import warnings
import zlib
from dataclasses import dataclass

import numpy as np

__all__ = ["JournalRecord", "append_record", "read_records", "KEY_BYTES"]

MAGIC = b"EMBR"
KEY_BYTES = 64
_HEADER = struct.Struct("<IIIB")
_CRC = struct.Struct("<I")
_DTYPES = {2: np.dtype("<f2"), 4: np.dtype("<f4")}


@dataclass
class JournalRecord:
    """One committed batch: namespace metadata, keys and vectors."""

    meta: dict
    keys: list[str]
    vectors: np.ndarray


def encode_record(meta: dict, keys: list[str], vectors: np.ndarray) -> bytes:
    vectors = np.ascontiguousarray(vectors)
    itemsize = vectors.dtype.itemsize
    if itemsize not in _DTYPES or vectors.dtype.kind != "f":
        raise TypeError(
            f"journal vectors must be float16 or float32, got {vectors.dtype}"
        )
    meta_bytes = json.dumps(meta, sort_keys=True).encode("utf-8")
    key_bytes = "".join(keys).encode("ascii")
    if len(key_bytes) != KEY_BYTES * len(keys):
        raise ValueError("every cache key must be 64 hex characters")
    body = (
        _HEADER.pack(len(meta_bytes), len(keys), vectors.shape[1], itemsize)
        + meta_bytes
        + key_bytes
        + vectors.astype(_DTYPES[itemsize], copy=False).tobytes()
    )
    return MAGIC + body + _CRC.pack(zlib.crc32(body))


def append_record(path: str, record: bytes, *, valid_length: int) -> int:
    """Append one encoded record after ``valid_length`` bytes, flush and fsync.

    Anything past ``valid_length`` (a torn record left by a crash) is cut off
    first. The caller holds the cache's lock. Returns the new valid length.
    If the write fails (e.g. disk full), the file is trimmed back so that no
    partial record stays behind, and the error propagates.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if os.fstat(fd).st_size != valid_length:
            os.ftruncate(fd, valid_length)
        os.lseek(fd, valid_length, os.SEEK_SET)
        try:
            view = memoryview(record)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        except OSError:
            try:
                os.ftruncate(fd, valid_length)
            except OSError:
                pass  # the torn tail is still rejected by its CRC on read
            raise
    finally:
        os.close(fd)
    if valid_length == 0:  # a new journal: make its directory entry durable too
        _fsync_directory(os.path.dirname(os.path.abspath(path)))
    return valid_length + len(record)


def _fsync_directory(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse it
        pass
    finally:
        os.close(fd)


def _parse_at(data: bytes, pos: int) -> tuple[JournalRecord, int] | None:
    """The complete, CRC-valid record starting at ``pos`` and its end, or None."""
    if pos + 4 + _HEADER.size > len(data) or data[pos : pos + 4] != MAGIC:
        return None
    body_start = pos + 4
    meta_len, n, dim, itemsize = _HEADER.unpack_from(data, body_start)
    if itemsize not in _DTYPES:
        return None
    body_len = _HEADER.size + meta_len + n * KEY_BYTES + n * dim * itemsize
    end = body_start + body_len + _CRC.size
    if end > len(data):
        return None
    body = data[body_start : body_start + body_len]
    (crc,) = _CRC.unpack_from(data, body_start + body_len)
    if zlib.crc32(body) != crc:
        return None
    p = _HEADER.size
    meta = json.loads(body[p : p + meta_len].decode("utf-8"))
    p += meta_len
    keys_blob = body[p : p + n * KEY_BYTES].decode("ascii")
    keys = [keys_blob[i * KEY_BYTES : (i + 1) * KEY_BYTES] for i in range(n)]
    p += n * KEY_BYTES
    vectors = np.frombuffer(body, dtype=_DTYPES[itemsize], count=n * dim, offset=p)
    return JournalRecord(meta, keys, vectors.reshape(n, dim)), end


def read_records(path: str, offset: int = 0) -> tuple[list[JournalRecord], int]:
    """Parse complete records from ``offset``; returns them and the valid end.

    The valid end is the end of the last complete, CRC-valid record: what
    follows it is a record torn by a crash, cut off by the next append. A
    damaged record *followed by* valid ones (bit rot, not a crash) is skipped
    with a ``RuntimeWarning``, and the records after it are kept: their rows
    were committed and must not be lost to a later append.
    """
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except FileNotFoundError:
        return [], 0
    records = []
    pos = 0
    while pos < len(data):
        parsed = _parse_at(data, pos)
        if parsed is None:
            # Resynchronise on the next record that parses and passes its CRC.
            nxt = data.find(MAGIC, pos + 1)
            while nxt != -1 and _parse_at(data, nxt) is None:
                nxt = data.find(MAGIC, nxt + 1)
            if nxt == -1:
                break  # a torn tail (or nothing valid after the damage)
            warnings.warn(
                f"The cache journal {path!r} has {nxt - pos} damaged byte(s) at "
                f"offset {offset + pos}; the record there is skipped (its rows "
                "will be recomputed) and the records after it are kept.",
                RuntimeWarning,
                stacklevel=2,
            )
            pos = nxt
            continue
        record, pos = parsed
        records.append(record)
    return records, offset + pos
