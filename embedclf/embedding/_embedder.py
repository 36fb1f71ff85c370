"""ImageEmbedder: image file paths -> bottleneck vectors of a pretrained CNN."""

from __future__ import annotations

import logging
import numbers
import os
from functools import partial

from sklearn.base import BaseEstimator, TransformerMixin

from embedclf._compat import HasMethods, Interval, StrOptions, _fit_context
from embedclf.cache._store import CacheNamespace
from embedclf.embedding import _dask
from embedclf.embedding._backbones import DEFAULT_MODEL
from embedclf.embedding._batches import IMAGE_ERRORS
from embedclf.embedding._hashed import transform_hashed
from embedclf.embedding._identity_memo import hash_paths
from embedclf.embedding._images import (
    DEFAULT_CROP_FRACTION,
    DEFAULT_MAX_IMAGE_PIXELS,
    RESAMPLE_FILTERS,
    preprocessing_tag,
)
from embedclf.embedding._inputs import check_paths, normalize_size
from embedclf.embedding._runtime import (
    PRECISIONS,
    RUNTIMES,
    calibration_loader,
    openvino_dir,
    prepare,
)

__all__ = ["ImageEmbedder"]

logger = logging.getLogger("embedclf")


class ImageEmbedder(TransformerMixin, BaseEstimator):
    """Turn image files into bottleneck vectors of a pretrained CNN, cached.

    The backbone (TF Hub handle, local SavedModel or Keras application) loads
    lazily at the first ``transform`` and is shared by all clones in the
    process; the estimator itself only stores the handle, so ``clone``,
    ``get_params``, ``repr`` and pickling never load a model. Vectors are cached
    in a content-addressed HDF5 file keyed by (backbone, image size,
    preprocessing) and the SHA-256 of each file's bytes: renamed or moved files
    hit the cache, edited files miss it.

    Parameters
    ----------
    model : str, os.PathLike or list of them, default=DEFAULT_MODEL
        TF Hub handle or URL (default: Inception V3 feature vector, 2048-d), a
        local SavedModel directory with the TF Hub image feature-vector
        interface (float32 images in [0, 1], ``[batch, H, W, 3]`` ->
        ``[batch, d]``), or ``"keras:<ApplicationName>"`` (e.g.
        ``"keras:InceptionV3"``, average pooling, ``?weights=none`` for random
        weights). A list or tuple of several handles embeds with each
        backbone (each at its own default size unless ``image_size`` is set,
        each cached in its own namespace) and concatenates the vectors in
        list order; see *Notes*.
    cache : str, os.PathLike or None, default=None
        HDF5 file to cache vectors in; None caches nothing and touches no file.
    batch_size : int, default=32
        Images per backbone call (the first calls ramp up, 4, 8, 16, ...
        images, so that inference starts without waiting for a whole batch to
        be decoded). Memory is bounded by the batch, not by the number of
        images.
    image_size : int, tuple of (height, width) or None, default=None
        Size images are resized to. None uses the model's default (from its
        input signature, known handles, or 224).
    on_error : {"raise", "zero", "nan"}, default="raise"
        What to do with files that cannot be read or decoded: raise an error
        naming the file, or return a row of zeros / NaN for it. Failed paths
        are recorded in ``failed_paths_`` either way.
    progress : bool or "auto", default="auto"
        Show a tqdm progress bar (images/s, ETA) while computing vectors.
        "auto" shows it when at least 256 images need the backbone.
    cache_dtype : {"float32", "float16"}, default="float32"
        Storage dtype in the cache; ``transform`` always returns float32.
    n_decode_threads : int, default=2
        Threads that read and decode images while the backbone runs.
    max_image_pixels : int or None, default=89478485
        Refuse images larger than this (decompression-bomb guard; JPEGs are
        first decoded at reduced size). None disables the check.
    rehash_files : bool, default=False
        With a cache, files whose (device, inode, size, mtime, ctime) are
        unchanged since they were last hashed are not read again (a memo
        beside the cache, ``<cache>.identities``; see
        ``embedclf/embedding/_identity_memo.py`` for when that can be
        fooled). True re-reads and re-hashes every file.
    resample : {"bilinear", "bicubic", "lanczos", "hamming", "box"}, \
            default="bilinear"
        Pillow's resize filter (antialiased when downscaling). Part of the
        cache fingerprint; ``embedclf export`` reproduces each bit for bit.
    crop_fraction : float in (0, 1], default=0.875
        Keep the centred ``crop_fraction`` of each side before resizing
        (0.875 is Inception's and EfficientNet's evaluation crop, chosen by
        measurement: +5.8 points on the grocery validation split with
        EfficientNet-Lite0); 1.0 keeps the whole image, as embedclf 0.1 did.
        Part of the cache fingerprint and of the export.
    normalize_each : bool, default=False
        Scale each backbone's part of the vector (the whole vector for one
        backbone) to unit L2 norm, so that with several backbones one with
        larger activations does not dominate the others. Rows of failed files
        stay zero / NaN.
    scheduler : str, distributed.Client, "joblib" or None, default=None
        Where the backbone runs. None: in this process. A Dask scheduler
        address (``"tcp://host:8786"``), a ``distributed.Client``, or
        ``"joblib"`` for the client of an active
        ``joblib.parallel_config(backend="dask")``: the cache misses are
        embedded on the cluster's workers (each loads the backbone once) and
        committed to ``cache`` here; the vectors are bit for bit those of a
        local run. Needs ``pip install "embedclf[dask]"``; see *Notes*.
    runtime : {"auto", "openvino", "tensorflow"}, default="auto"
        What runs the backbone. "openvino" converts the loaded TensorFlow
        function once per machine with OpenVINO (kept on disk beside
        ``cache``, in ``<cache>.openvino/``, and in the machine's store of
        converted backbones, ``~/.cache/embedclf/openvino`` or
        ``$EMBEDCLF_OPENVINO_DIR``, where a new cache finds it; set that
        variable empty to turn the store off) and runs the compiled model;
        "tensorflow" runs TensorFlow itself. "auto" is "openvino" when it
        is installed, falling back to "tensorflow" (with a logged warning)
        for a backbone OpenVINO cannot convert.
        "openvino" raises ``BackboneLoadError`` for such a backbone.
    precision : {"auto", "fp32", "bf16", "int8"}, default="auto"
        Arithmetic of the OpenVINO runtime. "auto" is bf16 on a CPU with
        bf16 instructions (AVX512-BF16 or AMX), fp32 elsewhere; bf16 asked
        of a CPU without them runs fp32 (logged). "int8" quantizes the
        backbone with NNCF on ``calibration_images`` (opt-in). TensorFlow
        computes in fp32 only.
    calibration_images : array-like of str or None, default=None
        Image paths for int8 calibration (``precision="int8"`` only): the
        300 with the smallest content keys are used, so the choice does not
        depend on their order. ``embedclf train`` passes the training photos.

    Attributes
    ----------
    failed_paths_ : ndarray of str
        Paths that failed in the most recent ``transform`` (with
        ``on_error="zero"`` or ``"nan"``).
    failure_reasons_ : ndarray of str
        Why each of ``failed_paths_`` failed (same order): the message of the
        error met when the file was read or decoded.
    n_computed_ : int
        Images passed through the backbone by the most recent ``transform``.
    n_cached_ : int
        Images of the most recent ``transform`` served from the cache.
    embedding_slices_ : list of slice
        The columns of each backbone in the output, in ``model`` order (one
        slice covering all columns for a single backbone).
    runtime_, precision_ : str
        The runtime ("tensorflow" or "openvino") and precision the most
        recent ``transform`` used (``auto`` resolved; with several backbones
        resolved differently, the parameters as given).

    See Also
    --------
    EmbeddingCache : The HDF5 store behind ``cache``.

    Notes
    -----
    Decoding honours EXIF orientation; grayscale, palette, CMYK and 16-bit
    images are converted to RGB and transparent pixels are composited on
    white; the format is detected from the content, not the extension.
    Identical files (same bytes) are embedded once per call.

    Several backbones are one estimator with a list-valued ``model`` rather
    than a ``FeatureUnion`` of embedders: each file is then read and hashed
    once for all of them, ``embedclf train --model A --model B``, the model
    directory and the export see one object with one parameter set, and
    ``clone``/``GridSearchCV`` treat it like any other embedder (each image
    still meets each backbone once). ``embedding_slices_`` tells which
    columns come from which backbone.

    With ``scheduler``, this process hashes the files, reads and writes the
    cache; workers need the image files and the backbone at the same paths
    (``embedding/_dask.py`` describes the protocol). With a ``Client``
    object, clones (``cross_val_score``, ``GridSearchCV``) share it; pickling
    (``n_jobs > 1`` with processes, ``joblib.dump``) is refused with a
    ``TypeError``: pass the scheduler's address there instead.

    Runtime and precision are part of the cache namespace where the vectors
    differ: ``runtime="tensorflow"`` keeps the namespace of earlier
    releases (their caches stay valid), each OpenVINO precision has its own
    (OpenVINO fp32 matches TensorFlow to a cosine of 0.9999 or more, but not
    bit for bit), and int8 one per calibration set. ``embedclf/embedding/
    _runtime.py`` says more; ``docs/runtimes.md`` has the measurements.

    The "fitted" attributes above are set by ``transform`` because the
    embedder is stateless (``fit`` learns nothing).

    Examples
    --------
    >>> from embedclf import ImageEmbedder
    >>> embedder = ImageEmbedder(model="path/to/saved_model", cache="emb.h5")
    >>> embedder  # no model is loaded until transform
    ImageEmbedder(cache='emb.h5', model='path/to/saved_model')
    """

    _parameter_constraints: dict = {
        "model": [str, os.PathLike, list, tuple],
        "cache": [str, os.PathLike, None],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "image_size": [
            Interval(numbers.Integral, 1, None, closed="left"),
            tuple,
            list,
            None,
        ],
        "on_error": [StrOptions({"raise", "zero", "nan"})],
        "progress": ["boolean", StrOptions({"auto"})],
        "cache_dtype": [StrOptions({"float32", "float16"})],
        "n_decode_threads": [Interval(numbers.Integral, 1, None, closed="left")],
        "max_image_pixels": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "rehash_files": ["boolean"],
        "resample": [StrOptions(set(RESAMPLE_FILTERS))],
        "crop_fraction": [Interval(numbers.Real, 0, 1, closed="right")],
        "normalize_each": ["boolean"],
        "scheduler": [str, HasMethods(["submit", "scheduler_info"]), None],
        "runtime": [StrOptions(set(RUNTIMES))],
        "precision": [StrOptions(set(PRECISIONS))],
        "calibration_images": ["array-like", None],
    }

    def __init__(
        self,
        model=DEFAULT_MODEL,
        *,
        cache=None,
        batch_size=32,
        image_size=None,
        on_error="raise",
        progress="auto",
        cache_dtype="float32",
        n_decode_threads=2,
        max_image_pixels=DEFAULT_MAX_IMAGE_PIXELS,
        rehash_files=False,
        resample="bilinear",
        crop_fraction=DEFAULT_CROP_FRACTION,
        normalize_each=False,
        scheduler=None,
        runtime="auto",
        precision="auto",
        calibration_images=None,
    ):
        self.model = model
        self.cache = cache
        self.batch_size = batch_size
        self.image_size = image_size
        self.on_error = on_error
        self.progress = progress
        self.cache_dtype = cache_dtype
        self.n_decode_threads = n_decode_threads
        self.max_image_pixels = max_image_pixels
        self.rehash_files = rehash_files
        self.resample = resample
        self.crop_fraction = crop_fraction
        self.normalize_each = normalize_each
        self.scheduler = scheduler
        self.runtime = runtime
        self.precision = precision
        self.calibration_images = calibration_images

    def __sklearn_is_fitted__(self):
        return True

    def __sklearn_clone__(self):
        if _dask.holds_client(self):  # clones share the connection
            return _dask.clone_sharing_client(self)
        return super().__sklearn_clone__()

    def __getstate__(self):
        if _dask.holds_client(self):
            _dask.refuse_to_pickle_client(self)
        return super().__getstate__()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.two_d_array = False
        tags.requires_fit = False
        tags.transformer_tags.preserves_dtype = []
        return tags

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X=None, y=None):
        """Validate parameters; nothing is learned.

        Parameters
        ----------
        X : Ignored
        y : Ignored

        Returns
        -------
        self : object
        """
        return self

    def _namespace(self, spec, rt=None):
        """The cache namespace of ``spec`` (``rt``: its effective runtime)."""
        rt = self._runtime(spec) if rt is None else rt
        size = normalize_size(self.image_size)
        return CacheNamespace(
            handle=spec.handle,
            identity=spec.identity,
            image_size="default" if size is None else f"{size[0]}x{size[1]}",
            preprocessing=preprocessing_tag(self.resample, self.crop_fraction) + rt.tag,
            dtype=self.cache_dtype,
        )

    def _runtime(self, spec):
        """The effective runtime of ``spec`` (converted/calibrated once)."""
        calibration = None
        if self.calibration_images is not None:
            calibration = partial(calibration_loader, self)
        return prepare(
            spec,
            normalize_size(self.image_size),
            runtime=self.runtime,
            precision=self.precision,
            root=openvino_dir(self.cache),
            calibration=calibration,
        )

    def transform(self, X):
        """Embed image files.

        Parameters
        ----------
        X : array-like of shape (n_samples,)
            Image file paths (str or os.PathLike).

        Returns
        -------
        X_new : ndarray of shape (n_samples, embedding_dim), float32
            One row per input path, in input order.

        Raises
        ------
        FileNotFoundError, IsADirectoryError, PermissionError, ImageDecodeError
            With ``on_error="raise"``, for the first bad file (the message
            names it and counts the others).
        """
        self._validate_params()
        paths = check_paths(X)
        if not isinstance(self.model, (str, os.PathLike)):
            from embedclf.embedding._multi import transform_several

            return transform_several(self, paths)
        keys, errors = self._hash_all(paths)
        return self._transform_hashed(paths, keys, errors)

    def _transform_hashed(self, paths, keys, errors):
        """``transform`` once the files are hashed (``errors`` is updated)."""
        return transform_hashed(self, paths, keys, errors)

    def _hash_all(self, paths):
        """Content keys (stat-only for files the identity memo knows)."""
        return hash_paths(
            paths,
            self.cache,
            n_threads=self.n_decode_threads,
            rehash=self.rehash_files,
            errors=IMAGE_ERRORS,
        )

    def _raise_first(self, errors, paths):
        if self.on_error != "raise":
            return
        bad = [e for e in errors if e is not None]
        if bad:
            if len(bad) > 1:
                others = [str(p) for p, e in zip(paths, errors) if e is not None][1:6]
                bad[0].add_note(
                    f"{len(bad) - 1} more file(s) failed, e.g. {others}. Pass "
                    "on_error='zero' or 'nan' to embed the rest and list failures "
                    "in failed_paths_."
                )
            raise bad[0]

    def _resolved_size(self, backbone):
        size = normalize_size(self.image_size)
        if size is not None:
            return size
        if backbone is None:
            return (None, None)
        return (backbone.default_image_size, backbone.default_image_size)
