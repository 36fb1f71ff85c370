"""``CacheNamespace``: what determines a vector besides the image bytes."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

__all__ = ["CacheNamespace"]


@dataclass(frozen=True)
class CacheNamespace:
    """Everything that determines a vector besides the image bytes.

    Parameters
    ----------
    handle : str
        The backbone handle as given by the user (informational).
    identity : str
        What the backbone really is (a content hash of a SavedModel, a TF Hub
        URL, a Keras name and weights).
    image_size : str
        ``"default"`` or ``"HxW"``.
    preprocessing : str
        Version tag of the decoding rules.
    dtype : {"float32", "float16"}
        Storage dtype of the vectors.
    """

    handle: str
    identity: str
    image_size: str
    preprocessing: str
    dtype: str = "float32"

    @property
    def fingerprint(self) -> str:
        payload = json.dumps(
            [self.identity, self.image_size, self.preprocessing], sort_keys=True
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:32]
