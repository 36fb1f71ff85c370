"""``keras:<Application>?...`` handles: keras.applications models as backbones.

The handle names a ``keras.applications`` constructor, and an optional query
string sets what changes the vectors::

    keras:InceptionV3                              ImageNet weights, final pooling
    keras:InceptionV3?layer=mixed7                 cut at mixed7, average-pooled
    keras:MobileNetV3Small?weights=/m/w.weights.h5&alpha=0.75&layer=...

``weights``
    ``imagenet`` (default: Keras downloads the file once into
    ``~/.keras/models``, or ``$KERAS_HOME/models``, and reuses it from there
    offline), ``none`` (random weights, the same in every process: see
    :func:`_seeded_random_weights`), or the path of a weights file saved
    from the same application built with ``include_top=False``
    (``model.save_weights("x.weights.h5")``, or Keras' own ``*_no_top.h5``
    download).
``layer``
    Name of the layer whose output is the vector (default: the application's
    final pooled output). ``model.summary()`` lists the names.
``pooling``
    How a ``[batch, H, W, C]`` layer output becomes a vector: ``avg``
    (default, global average pooling, C values), ``max``, or ``flatten``
    (H*W*C values; refused above :data:`MAX_FLATTENED_FEATURES`, since every
    cached vector would then weigh hundreds of kilobytes).
anything else
    Passed to the constructor (``alpha=0.75``, ``minimalistic=true``);
    values are read as booleans, ``none``, integers or floats when they look
    like one, else as strings.

The identity (what cache namespaces and model directories are keyed on)
holds the application name, every option above, and for a weights *file* the
SHA-256 of its bytes, so a file replaced in place at the same path gives new
vectors, never the old cached ones. ``imagenet`` weights are identified by
name: Keras checks their download against the hash pinned in its source.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading

from embedclf.exceptions import BackboneLoadError

__all__ = ["MAX_FLATTENED_FEATURES", "keras_identity", "load_keras", "parse_keras"]

#: Largest ``pooling=flatten`` vector accepted (float32: 200 KB per image).
MAX_FLATTENED_FEATURES = 50_000

_POOLINGS = ("avg", "max", "flatten")
_RANDOM_SEED = 0
_RANDOM_WEIGHTS = f"seeded-initializers-{_RANDOM_SEED}"
_OWN_OPTIONS = ("weights", "layer", "pooling")

_hash_memo: dict[tuple, str] = {}
_hash_lock = threading.Lock()


def _parse_value(text: str):
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_keras(handle: str) -> tuple[str, dict]:
    """``"keras:Name?a=1&b=x"`` -> ``("Name", {"a": "1", "b": "x"})``.

    Raises
    ------
    BackboneLoadError
        For a malformed query, a repeated option, an unknown ``pooling`` or a
        weights file that does not exist.
    """
    name, _, query = handle[len("keras:") :].partition("?")
    options: dict[str, str] = {}
    for part in filter(None, query.split("&")):
        key, sep, value = part.partition("=")
        if not sep or not key or not value:
            raise BackboneLoadError(
                f"Option {part!r} of model {handle!r} is not of the form "
                "name=value. Write e.g. 'keras:InceptionV3?layer=mixed7&"
                "weights=/path/to/file.weights.h5'."
            )
        if key in options:
            raise BackboneLoadError(
                f"Option {key!r} is given twice in model {handle!r}; give it once."
            )
        options[key] = value
    pooling = options.get("pooling", "avg")
    if pooling not in _POOLINGS:
        raise BackboneLoadError(
            f"pooling={pooling!r} in model {handle!r} is not one of "
            f"{', '.join(_POOLINGS)}. 'avg' averages each channel over the image."
        )
    weights = options.get("weights", "imagenet")
    if weights.lower() not in ("imagenet", "none"):
        path = os.path.expanduser(weights)
        if not os.path.isfile(path):
            raise BackboneLoadError(
                f"The weights file {weights!r} of model {handle!r} does not exist "
                "(or is not a file). Pass the path of a file saved with "
                "model.save_weights(...) from the same application built with "
                "include_top=False, 'imagenet', or 'none'."
            )
    return name, options


def _file_sha256(path: str) -> str:
    """SHA-256 of a file's bytes, memoised per (inode, size, mtime, ctime)."""
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    with _hash_lock:
        if key in _hash_memo:
            return _hash_memo[key]
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    with _hash_lock:
        _hash_memo[key] = digest.hexdigest()
    return _hash_memo[key]


def keras_identity(name: str, options: dict) -> str:
    """The identity string of a Keras handle (cheap: no TensorFlow).

    A plain ``keras:Name`` or ``keras:Name?weights=none`` keeps the identity
    of earlier releases, so their cached vectors still hit.
    """
    weights = options.get("weights", "imagenet")
    if weights.lower() in ("imagenet", "none"):
        weights_id = weights.lower()
    else:
        weights_id = "sha256:" + _file_sha256(os.path.expanduser(weights))
    identity = {"keras": name, "weights": weights_id}
    if weights_id == "none":
        # Random weights were drawn anew in each process before; the seeded
        # ones get a new identity so those vectors are never reused.
        identity["random_weights"] = _RANDOM_WEIGHTS
    if "layer" in options:
        identity["layer"] = options["layer"]
    if options.get("pooling", "avg") != "avg":
        identity["pooling"] = options["pooling"]
    constructor = {
        k: _parse_value(v) for k, v in options.items() if k not in _OWN_OPTIONS
    }
    if constructor:
        identity["constructor"] = constructor
    return json.dumps(identity, sort_keys=True)


def _preprocess_for(keras, constructor):
    for module_name in dir(keras.applications):
        module = getattr(keras.applications, module_name)
        if getattr(module, constructor.__name__, None) is constructor and hasattr(
            module, "preprocess_input"
        ):
            return module.preprocess_input
    return None


def _offline_hint(exc: Exception, name: str) -> str:
    url = re.search(r"https?://\S+?\.h5", str(exc))
    if url is None:
        return ""
    fname = url.group(0).rsplit("/", 1)[-1]
    return (
        f" This machine seems offline. Download {url.group(0)} where you have "
        f"internet, then copy it to ~/.keras/models/{fname} (or "
        f"$KERAS_HOME/models/{fname}), or pass "
        f"'keras:{name}?weights=/path/to/{fname}'."
    )


def _seeded_random_weights(keras, model) -> None:
    """Redraw Keras' random initial weights from fixed seeds.

    Keras draws unseeded initial weights from global state, so two processes
    (``train`` then ``export``) would build two different networks under one
    cache identity. Each variable is redrawn with its layer's own initializer
    (``kernel`` <- ``kernel_initializer``, ``depthwise_kernel`` <-
    ``depthwise_initializer``, ...) given a seed from the variable's position,
    without touching any global seed.
    """
    import numpy as np

    position = 0
    for layer in model.layers:
        for var in layer.weights:
            position += 1
            name = var.path.rsplit("/", 1)[-1]
            attrs = [f"{name}_initializer"]
            if name.endswith("kernel"):  # DepthwiseConv2D: depthwise_initializer
                attrs += ["depthwise_initializer", "pointwise_initializer"]
            found = [getattr(layer, a, None) for a in attrs]
            inits = [i for i in found if isinstance(i, keras.initializers.Initializer)]
            init = inits[0] if inits else None
            if init is None and np.ptp(np.asarray(var.numpy())) == 0:
                continue  # a constant (e.g. Normalization's mean): same everywhere
            if init is None:
                raise BackboneLoadError(
                    f"Cannot draw reproducible random weights for variable "
                    f"{var.path!r} of layer {layer.name!r} (no matching "
                    "initializer). Use a weights file instead of weights=none."
                )
            config = init.get_config()
            if "seed" in config:
                config["seed"] = _RANDOM_SEED * 1_000_003 + position
                init = type(init).from_config(config)
            var.assign(init(var.shape, dtype=var.dtype))


def _build(keras, name: str, options: dict, size: int):
    constructor = getattr(keras.applications, name, None)
    if constructor is None or not callable(constructor):
        raise BackboneLoadError(
            f"keras.applications has no model named {name!r}. Use a name such "
            "as 'keras:InceptionV3', 'keras:MobileNetV2' or 'keras:EfficientNetB0'."
        )
    weights = options.get("weights", "imagenet")
    if weights.lower() in ("imagenet", "none"):
        weights = None if weights.lower() == "none" else "imagenet"
    else:
        weights = os.path.expanduser(weights)
    kwargs = {k: _parse_value(v) for k, v in options.items() if k not in _OWN_OPTIONS}
    try:
        model = constructor(
            include_top=False,
            weights=weights,
            pooling="avg",
            input_shape=(size, size, 3),
            **kwargs,
        )
    except TypeError as exc:
        raise BackboneLoadError(
            f"keras.applications.{name} does not accept the options "
            f"{sorted(kwargs)} ({exc}). Options other than weights, layer and "
            "pooling are passed to the constructor; remove the unknown ones."
        ) from exc
    except Exception as exc:
        raise BackboneLoadError(
            f"Could not build keras.applications.{name} with weights={weights!r} "
            f"({exc}).{_offline_hint(exc, name)} A weights file must come from "
            "the same application built with include_top=False and the same "
            "constructor options."
        ) from exc
    if weights is None:
        _seeded_random_weights(keras, model)
    return constructor, model


def _cut(keras, model, name: str, options: dict):
    """The sub-model ending at ``layer`` (the whole model without it)."""
    layer = options.get("layer")
    if layer is None:
        return model
    try:
        output = model.get_layer(layer).output
    except ValueError:
        names = [lay.name for lay in model.layers]
        raise BackboneLoadError(
            f"keras.applications.{name} has no layer named {layer!r}. Its layers "
            f"include {', '.join(repr(n) for n in names[-8:])} (last 8 of "
            f"{len(names)}; model.summary() lists them all)."
        ) from None
    return keras.Model(model.inputs, output, name=f"{model.name}_to_{layer}")


def load_keras(name: str, options: dict, size: int, handle: str):
    """Build the application, cut and pool it.

    Returns
    -------
    model : keras.Model
        The (cut) model; keeps its variables alive, and is what an export
        tracks.
    fn : callable
        float32 images in [0, 1], ``[batch, size, size, 3]`` -> ``[batch, d]``.
    """
    import keras
    import tensorflow as tf

    constructor, full = _build(keras, name, options, size)
    model = _cut(keras, full, name, options)
    preprocess = _preprocess_for(keras, constructor)
    pooling = options.get("pooling", "avg")
    shape = tuple(model.output.shape[1:])
    if len(shape) == 3 and pooling == "flatten":
        n = int(shape[0] * shape[1] * shape[2])
        if n > MAX_FLATTENED_FEATURES:
            raise BackboneLoadError(
                f"pooling=flatten of layer {options.get('layer')!r} in {handle!r} "
                f"gives {shape[0]}x{shape[1]}x{shape[2]} = {n} features per "
                f"image, over the limit of {MAX_FLATTENED_FEATURES} (each cached "
                "vector would take "
                f"{n * 4 // 1024} KB). Use pooling=avg, a deeper layer, or a "
                "smaller --image-size."
            )

    def fn(images):
        x = images * 255.0
        if preprocess is not None:
            x = preprocess(x)
        out = model(x, training=False)
        if len(out.shape) == 4:
            if pooling == "avg":
                out = tf.reduce_mean(out, axis=[1, 2])
            elif pooling == "max":
                out = tf.reduce_max(out, axis=[1, 2])
            else:
                out = tf.reshape(out, [tf.shape(out)[0], -1])
        return out

    return model, fn


def keras_feature_map(model, name: str, options: dict):
    """``(fn, None)``: images in [0, 1] -> the map the vector averages, or
    ``(None, reason)`` (see ``_feature_map.py``)."""
    import keras

    if options.get("pooling", "avg") != "avg":
        return None, (
            f"pooling={options['pooling']} is not an average of a feature map"
        )
    if len(model.output.shape) == 4:  # cut at ?layer=..., averaged by fn
        fmap_model = model
    else:
        last = model.layers[-1]
        if not isinstance(last, keras.layers.GlobalAveragePooling2D):
            return None, (
                f"keras.applications.{name} does not end in global average pooling"
            )
        fmap_model = keras.Model(model.inputs, last.input, name=f"{model.name}_map")
    preprocess = _preprocess_for(keras, getattr(keras.applications, name))

    def fn(images):
        x = images * 255.0
        if preprocess is not None:
            x = preprocess(x)
        return fmap_model(x, training=False)

    return fn, None
