"""Backbone resolution and lazy loading; the only module that imports TensorFlow.

Three kinds of ``model`` handle are understood:

* a local directory holding a TF2 SavedModel with the TF Hub image
  feature-vector interface (float32 images in [0, 1], ``[batch, H, W, 3]`` ->
  ``[batch, d]``), loaded with ``tf.saved_model.load``;
* a TF Hub / Kaggle Models handle or URL, loaded with ``hub.load`` (never
  ``hub.KerasLayer``, which breaks on Keras 3, tensorflow/hub#903);
* ``"keras:<ApplicationName>"`` such as ``"keras:InceptionV3"``, a
  ``keras.applications`` model without its top and with average pooling;
  options (``?layer=mixed7&weights=/path/file.weights.h5``...) are described
  in ``_keras_backbone.py``, which builds them.

Loaded backbones are kept in a process-wide registry, so clones of an
estimator share one model; estimators themselves only hold the handle string.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
from dataclasses import dataclass, field

import numpy as np

from embedclf.exceptions import BackboneLoadError

__all__ = [
    "DEFAULT_MODEL",
    "BackboneSpec",
    "Backbone",
    "resolve_backbone",
    "load_backbone",
    "backbone_image_count",
    "count_images",
]

logger = logging.getLogger("embedclf")

#: The retrain.py tutorial's backbone: Inception V3, 2048-d, 299x299 input.
DEFAULT_MODEL = "https://tfhub.dev/google/imagenet/inception_v3/feature_vector/5"

_FALLBACK_IMAGE_SIZE = 224

# Input sizes of well-known backbones, matched against the handle (TF Hub
# handles and Keras names do not carry the size in a machine-readable form).
_KNOWN_SIZES = [
    (r"inception_resnet_v2|inceptionresnetv2", 299),
    (r"inception_v3|inceptionv3|xception", 299),
    (r"nasnetlarge|nasnet_large", 331),
    (r"efficientnet[_-]?lite0", 224),
    (r"efficientnet[_-]?lite1", 240),
    (r"efficientnet[_-]?lite2", 260),
    (r"efficientnet[_-]?lite3", 280),
    (r"efficientnet[_-]?lite4", 300),
    (r"efficientnet[_/-]?b0", 224),
    (r"efficientnet[_/-]?b1", 240),
    (r"efficientnet[_/-]?b2", 260),
    (r"efficientnet[_/-]?b3", 300),
    (r"efficientnet[_/-]?b4", 380),
    (r"efficientnet[_/-]?b5", 456),
    (r"efficientnet[_/-]?b6", 528),
    (r"efficientnet[_/-]?b7", 600),
    (r"_(\d{3})(?=/|$)", None),  # mobilenet_v2_100_224, ..._192, ...
]

_registry: dict[tuple, Backbone] = {}
_registry_lock = threading.Lock()
_count_lock = threading.Lock()
_image_count = 0


def backbone_image_count() -> int:
    """Number of images passed through any backbone in this process so far.

    Monotonic; use the difference before and after a call to see how many
    images a ``transform``, ``cross_val_score`` or ``GridSearchCV`` really
    embedded (cache hits do not count).
    """
    return _image_count


def count_images(n: int) -> None:
    """Add ``n`` to :func:`backbone_image_count` (every runtime calls this)."""
    global _image_count
    with _count_lock:
        _image_count += n


def _known_image_size(handle: str) -> int | None:
    low = handle.lower()
    for pattern, size in _KNOWN_SIZES:
        match = re.search(pattern, low)
        if match:
            return size if size is not None else int(match.group(1))
    return None


def _hash_files(directory: str) -> str:
    """Fingerprint a SavedModel directory by its graph and variable index.

    ``variables.index`` stores a CRC of every variable, so retrained weights
    change the fingerprint without hashing the (large) data shards.
    """
    digest = hashlib.sha256()
    for name in ("saved_model.pb", "saved_model.pbtxt", "variables/variables.index"):
        full = os.path.join(directory, name)
        if os.path.exists(full):
            digest.update(name.encode())
            with open(full, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class BackboneSpec:
    """What a handle refers to, resolved without importing TensorFlow.

    ``identity`` changes whenever the vectors could change (another model,
    other weights), and is what cache namespaces are keyed on.
    """

    handle: str
    kind: str  # "savedmodel", "hub" or "keras"
    identity: str
    options: dict = field(default_factory=dict, compare=False, hash=False)

    def default_image_size(self) -> int | None:
        if self.kind == "keras":  # the name, not a weights path in the query
            return _known_image_size(self.options["name"])
        return _known_image_size(self.handle)


def resolve_backbone(handle) -> BackboneSpec:
    """Classify ``handle`` and compute its identity (cheap: no TensorFlow)."""
    if not isinstance(handle, (str, os.PathLike)):
        raise TypeError(
            f"The 'model' parameter must be a TF Hub handle, a SavedModel "
            f"directory or 'keras:<Name>'. Got {handle!r} instead."
        )
    handle = os.fspath(handle)
    if handle.startswith("keras:"):
        from embedclf.embedding._keras_backbone import keras_identity, parse_keras

        name, options = parse_keras(handle)
        identity = keras_identity(name, options)
        return BackboneSpec(handle, "keras", identity, {"name": name, **options})
    directory, options = _savedmodel_query(handle)
    if os.path.isdir(directory):
        if not (
            os.path.exists(os.path.join(directory, "saved_model.pb"))
            or os.path.exists(os.path.join(directory, "saved_model.pbtxt"))
        ):
            raise BackboneLoadError(
                f"Model directory {directory!r} holds no saved_model.pb. Point "
                "'model' at a TF2 SavedModel directory (for TF Hub models, the "
                "unpacked download), a TF Hub handle, or 'keras:<Name>'."
            )
        identity = "savedmodel:" + _hash_files(directory)
        if options:  # none: the identity of earlier releases, so caches still hit
            identity += "?" + json.dumps(options, sort_keys=True)
        return BackboneSpec(
            handle, "savedmodel", identity, {"directory": directory, **options}
        )
    if "://" in handle or handle.count("/") >= 2:
        return BackboneSpec(handle, "hub", "hub:" + handle.rstrip("/"))
    raise BackboneLoadError(
        f"Model {handle!r} is neither an existing SavedModel directory, a TF Hub "
        "handle (e.g. https://tfhub.dev/google/imagenet/inception_v3/"
        "feature_vector/5) nor 'keras:<Name>'. Check the path."
    )


_SAVEDMODEL_OPTIONS = ("signature", "output")


def _savedmodel_query(handle: str) -> tuple[str, dict]:
    """``"DIR?signature=S&output=O"`` -> ``("DIR", {...})``.

    ``signature`` picks one of the SavedModel's signatures instead of its
    ``__call__``; ``output`` picks one entry of a model that returns a dict of
    tensors. A handle that is itself a directory is taken as is.
    """
    directory, sep, query = handle.partition("?")
    if not sep or os.path.isdir(handle) or not os.path.isdir(directory):
        return handle, {}
    options = {}
    for part in query.split("&"):
        key, eq, value = part.partition("=")
        if key not in _SAVEDMODEL_OPTIONS or not eq or not value or key in options:
            raise BackboneLoadError(
                f"Option {part!r} of model {handle!r} is not understood. A "
                "SavedModel directory takes '?signature=NAME' and/or "
                "'&output=KEY' (each once), to pick one of several signatures "
                "or outputs."
            )
        options[key] = value
    return directory, options


class Backbone:
    """A loaded feature-vector model: float32 batch in [0, 1] -> vectors."""

    def __init__(self, spec: BackboneSpec, fn, default_image_size: int):
        self.spec = spec
        self._fn = fn
        self.default_image_size = default_image_size
        self.dim = None

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Embed a batch of shape (n, H, W, 3): float32 in [0, 1], or uint8.

        uint8 pixels are scaled to [0, 1] in TensorFlow (the same float32
        values as ``pixels / 255`` in NumPy), which copies 4x fewer bytes.
        """
        import tensorflow as tf

        if images.dtype == np.uint8:
            x = tf.cast(tf.convert_to_tensor(images), tf.float32) / 255.0
        else:
            x = tf.convert_to_tensor(images, dtype=tf.float32)
        vectors = np.asarray(self.features(x), dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(images):
            raise BackboneLoadError(
                f"Model {self.spec.handle!r} returned an output of shape "
                f"{vectors.shape} for {len(images)} images; an image "
                "feature-vector model must return [batch, d]. Use a "
                "feature_vector (not a classification) model."
            )
        self.dim = vectors.shape[1]
        count_images(len(images))
        return vectors

    def features(self, x):
        """The chosen output tensor for a float32 tensor batch in [0, 1].

        Also what ``embedclf export`` traces into its SavedModel.
        """
        out = self._fn(x)
        if not isinstance(out, dict):
            if "output" in self.spec.options:
                raise BackboneLoadError(
                    f"Model {self.spec.handle!r} returns one tensor, not a dict "
                    "of outputs; remove '?output=...' from the handle."
                )
            return out
        key = self.spec.options.get("output")
        if key is None:
            if "default" in out or len(out) == 1:
                return out["default"] if "default" in out else next(iter(out.values()))
            raise BackboneLoadError(
                f"Model {self.spec.handle!r} returns several outputs "
                f"({', '.join(sorted(out))}) and none is named 'default'. Pick "
                "one by adding '?output=NAME' to the model handle."
            )
        if key not in out:
            raise BackboneLoadError(
                f"Model {self.spec.handle!r} has no output {key!r}; its outputs "
                f"are {', '.join(sorted(out))}."
            )
        return out[key]


def _static_size(fn) -> int | None:
    """Read H (== W) from a restored function's input signature, if static."""
    try:
        concrete = fn.concrete_functions[0]
        spec = concrete.structured_input_signature[0][0]
        h, w = spec.shape[1], spec.shape[2]
    except (AttributeError, IndexError, KeyError, TypeError):
        return None
    return int(h) if h is not None and h == w else None


def _call_signature(signature, handle):
    """A signature as a one-argument function (signatures take keywords only)."""
    names = list(signature.structured_input_signature[1])
    if len(names) != 1:
        raise BackboneLoadError(
            f"The signature of model {handle!r} takes {len(names)} inputs "
            f"({', '.join(names)}); an image feature-vector model takes one: "
            "the batch of images."
        )
    return lambda images: signature(**{names[0]: images})


def _restored_callable(obj, handle, signature=None):
    signatures = getattr(obj, "signatures", {})
    if signature is not None:
        if signature not in signatures:
            raise BackboneLoadError(
                f"Model {handle!r} has no signature {signature!r}; its signatures "
                f"are {', '.join(sorted(signatures)) or 'none'}."
            )
        return _call_signature(signatures[signature], handle)
    if callable(obj):
        return obj
    for name in ("default", "serving_default"):
        if name in signatures:
            return _call_signature(signatures[name], handle)
    raise BackboneLoadError(
        f"Model {handle!r} loaded but has no callable and no 'default' or "
        "'serving_default' signature; it does not follow the TF Hub image "
        "feature-vector interface."
    )


def _load_savedmodel(spec: BackboneSpec):
    import tensorflow as tf

    directory = spec.options.get("directory", spec.handle)
    try:
        obj = tf.saved_model.load(directory)
    except Exception as exc:  # TF raises many types for a bad directory
        raise BackboneLoadError(
            f"Could not load the SavedModel in {directory!r}: {exc}"
        ) from exc
    return obj, _restored_callable(obj, spec.handle, spec.options.get("signature"))


def _load_hub(spec: BackboneSpec):
    import tensorflow_hub as hub

    try:
        obj = hub.load(spec.handle)
    except Exception as exc:
        message = (
            f"Could not load the TF Hub model {spec.handle!r} ({exc}). If this "
            "machine is offline, download the model where you have internet, "
            "unpack it and pass its directory as {how}, or set "
            "TFHUB_CACHE_DIR to a cache that already holds it."
        )
        error = BackboneLoadError(message.replace("{how}", "model=DIR"))
        # The command line's wording (it prints ``cli_message`` when set).
        error.cli_message = message.replace("{how}", "--model DIR")
        raise error from exc
    return obj, _restored_callable(obj, spec.handle)


def _load_keras(spec: BackboneSpec, size: int):
    from embedclf.embedding._keras_backbone import load_keras

    options = {k: v for k, v in spec.options.items() if k != "name"}
    return load_keras(spec.options["name"], options, size, spec.handle)


def load_backbone(spec: BackboneSpec, image_size: int | None = None) -> Backbone:
    """Load (once per process) and return the backbone for ``spec``."""
    key = (spec.kind, spec.identity, spec.handle if spec.kind != "savedmodel" else "")
    if spec.kind == "keras":
        key += (image_size or spec.default_image_size() or _FALLBACK_IMAGE_SIZE,)
    with _registry_lock:
        backbone = _registry.get(key)
        if backbone is not None:
            return backbone
        logger.info("loading backbone %s", spec.handle)
        if spec.kind == "keras":
            size = key[-1]
            obj, fn = _load_keras(spec, size)
            default = size
        else:
            loader = _load_savedmodel if spec.kind == "savedmodel" else _load_hub
            obj, fn = loader(spec)
            default = (
                _static_size(fn) or spec.default_image_size() or _FALLBACK_IMAGE_SIZE
            )
        backbone = Backbone(spec, fn, default)
        backbone._owner = obj  # keep the restored object (and its variables) alive
        _registry[key] = backbone
        return backbone
