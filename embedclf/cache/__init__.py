"""The embedding cache: content-addressed, crash-safe HDF5 files.

Owns: ``EmbeddingCache`` (the store: get, put, compact, merge), its journal of
fsynced, CRC'd records and the incremental view of it, immutable segment
files and their size-tiered merges, the atomic writes of HDF5 files, repair,
merge, locks, per-key compute leases and temp files. The only package that imports
h5py (lazily).

May import: the top-level ``exceptions`` (and ``__version__``). Nothing
else of embedclf: the cache knows vectors and keys, not images or models.
"""

from embedclf._lazy import lazy_exports

_EXPORTS = {
    "CacheNamespace": "embedclf.cache._namespace",
    "EmbeddingCache": "embedclf.cache._store",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
