"""Which runtime runs a backbone: TensorFlow, or OpenVINO at fp32, bf16 or int8.

``ImageEmbedder(runtime=..., precision=...)`` comes here first:
:func:`prepare` turns the requested pair into the effective one (``auto``
resolved for this CPU, an OpenVINO model converted once and kept on disk
beside the cache, or copied from the machine's store of converted backbones,
``_ov_store.py``; int8 calibrated once), and :func:`load_runtime` returns the
callable backbone for it. Neither imports ``openvino`` itself:
``_openvino.py`` owns it.

``auto`` (the default) means OpenVINO when it is installed (and the
environment variable ``EMBEDCLF_RUNTIME`` is not ``tensorflow``: a way to
keep TensorFlow everywhere without passing it to each embedder, which the
test suite uses), at the CPU's native precision: bf16 when OpenVINO reports
the ``BF16`` capability (AVX512-BF16 or AMX), fp32 otherwise; and
TensorFlow, with a logged line, for a backbone OpenVINO cannot convert.
``docs/runtimes.md`` has the measurements behind this choice.

Which combinations share cached vectors: TensorFlow (any CPU) keeps the
namespace of earlier releases, so existing caches stay valid. Each OpenVINO
precision has its own namespace (the vectors differ from TensorFlow's, a
little at fp32, more at bf16 and int8), and int8 one per calibration set.
The OpenVINO version and the CPU are not part of it (bf16 on AMX and on
AVX512-BF16 round alike; a new OpenVINO may differ in the last bits).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
from dataclasses import dataclass

from embedclf.embedding import _ov_store
from embedclf.exceptions import BackboneLoadError

__all__ = [
    "CALIBRATION_SIZE",
    "PRECISIONS",
    "RUNTIMES",
    "Runtime",
    "calibration_loader",
    "calibration_subset",
    "load_runtime",
    "openvino_dir",
    "prepare",
    "export_caveat",
    "recorded_dim",
    "resolve",
    "runtime_manifest",
]

logger = logging.getLogger("embedclf")

RUNTIMES = ("tensorflow", "openvino", "auto")
PRECISIONS = ("fp32", "bf16", "int8", "auto")
#: Calibration images NNCF sees for int8 (its own default subset is 300).
CALIBRATION_SIZE = 300
OPENVINO_HINT = 'pip install "openvino>=2025.0" "nncf>=2.16"'


@dataclass(frozen=True)
class Runtime:
    """The effective runtime of one backbone (picklable, for Dask workers)."""

    name: str  # "tensorflow" or "openvino"
    precision: str  # "fp32", "bf16" or "int8"
    folder: str | None = None  # the OpenVINO IR's folder
    xml: str | None = None  # the IR (int8: the quantized one) to compile
    calibration_id: str | None = None

    @property
    def tag(self) -> str:
        """What the cache namespace's preprocessing gets appended ('' for TF)."""
        if self.name == "tensorflow":
            return ""
        precision = self.precision
        if precision == "int8":
            precision += ":" + self.calibration_id
        return f"|runtime=openvino-{precision}"


TENSORFLOW = Runtime("tensorflow", "fp32")


def openvino_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


def openvino_dir(cache) -> str:
    """Where converted and compiled models live: beside the cache, or per user.

    ``<cache>.openvino/`` with a cache file (fed from and published to the
    store of converted backbones, ``_ov_store``); without one the store
    itself (``$EMBEDCLF_OPENVINO_DIR``, else ``~/.cache/embedclf/openvino``),
    or a temporary folder per process when the store is turned off.
    """
    if cache is not None:
        return os.fspath(cache) + ".openvino"
    return _ov_store.store_root() or _ov_store.process_dir()


def resolve(runtime: str, precision: str) -> tuple[str, str]:
    """The requested (runtime, precision) for this machine, before converting.

    Raises
    ------
    ValueError
        bf16 or int8 asked of TensorFlow.
    ImportError
        ``runtime="openvino"`` (or an explicit bf16/int8) without OpenVINO.
    """
    if runtime == "tensorflow":
        if precision in ("bf16", "int8"):
            raise ValueError(
                f"precision={precision!r} needs the OpenVINO runtime; the "
                "TensorFlow runtime computes in fp32. Pass runtime='openvino' "
                "(--runtime openvino) or precision='fp32'."
            )
        return "tensorflow", "fp32"
    auto_tf = os.environ.get("EMBEDCLF_RUNTIME", "").lower() == "tensorflow"
    if runtime == "auto" and precision in ("auto", "fp32"):
        if auto_tf or not openvino_installed():
            return "tensorflow", "fp32"
    if not openvino_installed():
        raise ImportError(
            f"runtime={runtime!r} with precision={precision!r} needs OpenVINO, "
            f"which is not installed. Install it with: {OPENVINO_HINT}, or pass "
            "runtime='tensorflow' (--runtime tensorflow)."
        )
    from embedclf.embedding._openvino import capabilities

    has_bf16 = "BF16" in capabilities()
    if precision == "auto":
        return "openvino", "bf16" if has_bf16 else "fp32"
    if precision == "bf16" and not has_bf16:
        logger.warning(
            "This CPU has no bf16 instructions (OpenVINO reports %s); "
            "embedding in fp32 instead.",
            ", ".join(capabilities()),
        )
        return "openvino", "fp32"
    return "openvino", precision


def _calibration_id(folder: str, keys: list) -> str:
    from importlib.metadata import version

    payload = json.dumps([os.path.basename(folder), keys, version("nncf")])
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def calibration_subset(paths, keys) -> list:
    """The (key, path) pairs calibrated on: the smallest content keys.

    Deterministic whatever the order of ``paths``, and the same for a
    superset that adds no smaller key.
    """
    pairs = sorted({k: p for p, k in zip(paths, keys) if k is not None}.items())
    return pairs[:CALIBRATION_SIZE]


def calibration_loader(embedder, size):
    """(keys, loader) of ``embedder``'s int8 calibration subset at ``size``."""
    import numpy as np

    from embedclf.embedding._images import load_image
    from embedclf.embedding._inputs import check_paths

    paths = check_paths(embedder.calibration_images)
    keys, _ = embedder._hash_all(paths)
    subset = calibration_subset(paths, keys)

    def loader():
        return np.stack(
            [
                load_image(
                    path,
                    size,
                    max_image_pixels=embedder.max_image_pixels,
                    as_uint8=True,
                    resample=embedder.resample,
                    crop_fraction=embedder.crop_fraction,
                )[1]
                for _, path in subset
            ]
        )

    return [k for k, _ in subset], loader


def prepare(spec, requested_size, *, runtime, precision, root, calibration=None):
    """Resolve, convert (once) and for int8 calibrate (once); a :class:`Runtime`.

    Parameters
    ----------
    spec : BackboneSpec
    requested_size : tuple of (height, width) or None
    runtime, precision : str
        As ImageEmbedder's parameters.
    root : str
        :func:`openvino_dir`.
    calibration : callable or None
        For int8: returns ``(keys, images_loader)`` for the calibration set
        (see :func:`calibration_subset`).
    """
    name, precision = resolve(runtime, precision)
    if name == "tensorflow":
        return TENSORFLOW
    from embedclf.embedding import _openvino
    from embedclf.embedding._backbones import load_backbone

    size_key = list(requested_size) if requested_size else "default"
    folder = _openvino.ir_folder(root, spec.identity, size_key)
    stored = _ov_store.stored_twin(folder)
    marker = folder + ".unconvertible"
    if runtime == "auto" and _ov_store.fetch_marker(marker, stored):
        return TENSORFLOW
    _ov_store.fetch(folder, stored)

    def tf_loader():
        return load_backbone(spec, requested_size[0] if requested_size else None)

    def size_of(tf_backbone):
        return tuple(requested_size or (tf_backbone.default_image_size,) * 2)

    try:
        meta = _openvino.ensure_ir(folder, tf_loader, size_of)
    except _openvino.ConversionError as exc:  # not a backbone that fails to load
        if runtime != "auto":
            raise
        logger.warning("%s Falling back to TensorFlow for it.", exc)
        os.makedirs(root, exist_ok=True)
        with open(marker, "w") as fh:
            fh.write(str(exc) + "\n")
        _ov_store.publish_marker(marker, stored)
        return TENSORFLOW
    _ov_store.publish(folder, stored)
    xml = os.path.join(folder, "model.xml")
    if precision != "int8":
        return Runtime("openvino", precision, folder, xml)
    if calibration is None:
        raise ValueError(
            "precision='int8' needs calibration images: pass "
            "calibration_images=[paths of some training photos] (embedclf "
            "train uses the training photos)."
        )
    keys, images_loader = calibration(tuple(meta["size"]))
    calibration_id = _calibration_id(folder, keys)
    xml = _openvino.quantize_ir(folder, calibration_id, images_loader)
    return Runtime("openvino", "int8", folder, xml, calibration_id)


def load_runtime(spec, requested_size, rt: Runtime, *, threads=None, publish=True):
    """The callable backbone of ``rt`` (loaded or compiled once per process).

    ``publish``: add the compiled model to the store of converted backbones
    (fp32 and bf16; False on Dask workers, which only read the folder
    beside the cache).
    """
    from embedclf.embedding._backbones import load_backbone

    if rt.name == "tensorflow":
        return load_backbone(spec, requested_size[0] if requested_size else None)
    from embedclf.embedding import _openvino

    if not os.path.exists(rt.xml):
        raise BackboneLoadError(
            f"The OpenVINO model {rt.xml!r} of {spec.handle!r} is missing on "
            "this machine. Give every machine the same folder (beside the "
            "cache), or embed with runtime='tensorflow'."
        )
    meta = _ir_meta(rt)
    backbone = _openvino.compile_backbone(spec, rt.xml, meta, rt.precision, threads)
    if publish and rt.precision != "int8":  # int8: see _ov_store
        _ov_store.publish_compiled(rt.folder, _ov_store.stored_twin(rt.folder))
    return backbone


def _ir_meta(rt: Runtime) -> dict:
    """``meta.json`` beside the OpenVINO IR (handle, input size, vector width)."""
    with open(os.path.join(rt.folder, "meta.json")) as fh:
        return json.load(fh)


def recorded_dim(rt: Runtime) -> int | None:
    """The vector width ``meta.json`` records beside an OpenVINO IR (else None)."""
    if rt.name != "openvino" or rt.folder is None:
        return None
    try:
        return int(_ir_meta(rt)["dim"])
    except (OSError, ValueError, KeyError, TypeError):  # load_runtime says why
        return None


def runtime_manifest(embedder) -> dict:
    """What a model directory records of the runtime ``embedder`` last used.

    The effective runtime and precision (``auto`` resolved; with several
    backbones that resolved differently, the requested ones), and for int8
    the calibration photos, so ``predict`` embeds as training did.
    """
    runtime = getattr(embedder, "runtime_", embedder.runtime)
    precision = getattr(embedder, "precision_", embedder.precision)
    out = {"runtime": runtime, "precision": precision}
    if precision == "int8" and embedder.calibration_images is not None:
        paths = [os.path.abspath(p) for p in embedder.calibration_images]
        keys, _ = embedder._hash_all(paths)
        out["calibration_images"] = [p for _, p in calibration_subset(paths, keys)]
    return out


def export_caveat(
    runtime: str, precision: str, target: str = "a SavedModel"
) -> str | None:
    """What an export (``target``: "a SavedModel", "a TensorFlow Lite model")
    of such a model does not reproduce.

    None for TensorFlow fp32 (the export's top-1 equals ``predict``'s).
    """
    if runtime == "tensorflow":
        return None
    if precision == "fp32":
        closeness = "differ in the last bits (cosine >= 0.9999)"
    else:
        closeness = (
            f"differ as {precision} rounding makes them (docs/runtimes.md gives "
            "the cosine and how often the top-1 answers agree)"
        )
    return (
        f"This model was trained on vectors of the OpenVINO runtime at "
        f"{precision} ({runtime} recorded in its manifest); the export to "
        f"{target} computes the backbone as TensorFlow does, whose fp32 vectors "
        f"{closeness}, so its answers can differ from `embedclf predict`'s on "
        "some images. Train with --runtime tensorflow for an export whose "
        "top-1 equals predict's."
    )
