"""Backbone resolution and lazy loading; the only module that imports TensorFlow.

Three kinds of ``model`` handle are understood:

* a local directory holding a TF2 SavedModel with the TF Hub image
  feature-vector interface (float32 images in [0, 1], ``[batch, H, W, 3]`` ->
  ``[batch, d]``), loaded with ``tf.saved_model.load``;
* a TF Hub / Kaggle Models handle or URL, loaded with ``hub.load`` (never
  ``hub.KerasLayer``, which breaks on Keras 3, tensorflow/hub#903);
* ``"keras:<ApplicationName>"`` such as ``"keras:InceptionV3"``, a
  ``keras.applications`` model without its top and with average pooling.
  Add ``?weights=none`` for random weights (useful offline).

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
        name, _, query = handle[len("keras:") :].partition("?")
        options = dict(part.split("=", 1) for part in query.split("&") if "=" in part)
        weights = options.get("weights", "imagenet")
        identity = json.dumps({"keras": name, "weights": weights}, sort_keys=True)
        return BackboneSpec(handle, "keras", identity, {"name": name, **options})
    if os.path.isdir(handle):
        if not (
            os.path.exists(os.path.join(handle, "saved_model.pb"))
            or os.path.exists(os.path.join(handle, "saved_model.pbtxt"))
        ):
            raise BackboneLoadError(
                f"Model directory {handle!r} holds no saved_model.pb. Point "
                "'model' at a TF2 SavedModel directory (for TF Hub models, the "
                "unpacked download), a TF Hub handle, or 'keras:<Name>'."
            )
        return BackboneSpec(handle, "savedmodel", "savedmodel:" + _hash_files(handle))
    if "://" in handle or handle.count("/") >= 2:
        return BackboneSpec(handle, "hub", "hub:" + handle.rstrip("/"))
    raise BackboneLoadError(
        f"Model {handle!r} is neither an existing SavedModel directory, a TF Hub "
        "handle (e.g. https://tfhub.dev/google/imagenet/inception_v3/"
        "feature_vector/5) nor 'keras:<Name>'. Check the path."
    )


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
        global _image_count
        import tensorflow as tf

        if images.dtype == np.uint8:
            x = tf.cast(tf.convert_to_tensor(images), tf.float32) / 255.0
        else:
            x = tf.convert_to_tensor(images, dtype=tf.float32)
        out = self._fn(x)
        if isinstance(out, dict):
            out = out["default"] if "default" in out else next(iter(out.values()))
        vectors = np.asarray(out, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(images):
            raise BackboneLoadError(
                f"Model {self.spec.handle!r} returned an output of shape "
                f"{vectors.shape} for {len(images)} images; an image "
                "feature-vector model must return [batch, d]. Use a "
                "feature_vector (not a classification) model."
            )
        self.dim = vectors.shape[1]
        with _count_lock:
            _image_count += len(images)
        return vectors


def _static_size(fn) -> int | None:
    """Read H (== W) from a restored function's input signature, if static."""
    try:
        concrete = fn.concrete_functions[0]
        spec = concrete.structured_input_signature[0][0]
        h, w = spec.shape[1], spec.shape[2]
    except (AttributeError, IndexError, KeyError, TypeError):
        return None
    return int(h) if h is not None and h == w else None


def _restored_callable(obj, handle):
    if callable(obj):
        return obj
    signatures = getattr(obj, "signatures", {})
    for name in ("default", "serving_default"):
        if name in signatures:
            return signatures[name]
    raise BackboneLoadError(
        f"Model {handle!r} loaded but has no callable and no 'default' or "
        "'serving_default' signature; it does not follow the TF Hub image "
        "feature-vector interface."
    )


def _load_savedmodel(spec: BackboneSpec):
    import tensorflow as tf

    try:
        obj = tf.saved_model.load(spec.handle)
    except Exception as exc:  # TF raises many types for a bad directory
        raise BackboneLoadError(
            f"Could not load the SavedModel in {spec.handle!r}: {exc}"
        ) from exc
    return obj, _restored_callable(obj, spec.handle)


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
    import keras

    name = spec.options["name"]
    constructor = getattr(keras.applications, name, None)
    if constructor is None or not callable(constructor):
        raise BackboneLoadError(
            f"keras.applications has no model named {name!r}. Use a name such "
            "as 'keras:InceptionV3', 'keras:MobileNetV2' or 'keras:EfficientNetB0'."
        )
    preprocess = None
    for module_name in dir(keras.applications):
        module = getattr(keras.applications, module_name)
        if getattr(module, name, None) is constructor and hasattr(
            module, "preprocess_input"
        ):
            preprocess = module.preprocess_input
            break
    weights = spec.options.get("weights", "imagenet")
    weights = None if weights.lower() == "none" else weights
    try:
        model = constructor(
            include_top=False,
            weights=weights,
            pooling="avg",
            input_shape=(size, size, 3),
        )
    except Exception as exc:
        raise BackboneLoadError(
            f"Could not build keras.applications.{name} with weights={weights!r} "
            f"({exc}). Offline machines cannot download ImageNet weights: copy "
            "them into ~/.keras/models, or use a local SavedModel directory."
        ) from exc

    def fn(images):
        x = images * 255.0
        if preprocess is not None:
            x = preprocess(x)
        return model(x, training=False)

    return model, fn


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
