"""Public exception classes.

Each subclasses a builtin so callers can catch either (as scikit-learn's
``NotFittedError(ValueError, AttributeError)`` does).
"""

from __future__ import annotations

__all__ = [
    "BackboneLoadError",
    "CacheFormatError",
    "CacheMismatchError",
    "ImageDecodeError",
    "ModelDirError",
]


class ImageDecodeError(ValueError):
    """An image file could not be read or decoded.

    The message names the file and the reason. ``path`` holds the file path.
    """

    def __init__(self, path, reason):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"Could not read image {self.path!r}: {reason}")

    def __reduce__(self):
        # Pickled with its arguments (the default would call __init__ with the
        # message only), so it crosses processes, e.g. from a Dask worker.
        return (type(self), (self.path, self.reason), self.__dict__)


class CacheFormatError(OSError):
    """The embedding cache file is not a readable embedclf cache.

    Raised for a file of an unknown format or format version, or a damaged
    file; the message says how to recover.
    """


class CacheMismatchError(ValueError):
    """The cache holds vectors that do not fit the backbone in use.

    For example, the stored embedding dimension differs from the one the model
    produces; the message says how to fix it.
    """


class BackboneLoadError(OSError):
    """A backbone (TF Hub handle, SavedModel or Keras application) failed to load."""


class ModelDirError(ValueError):
    """A model directory is missing, malformed, newer, or for another backbone.

    The message names the directory and says how to fix it.
    """
