"""The settings of one ``train`` run, checked before any slow step.

:class:`TrainOptions` holds the keywords of :func:`embedclf.train` (the
``embedclf train`` flags, one for one); :func:`check_options` normalises them
(the C grid, the unknown rule, the distortions) and refuses combinations that
cannot work, so a bad setting fails in a second, not after the embedding.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from embedclf.embedding._backbones import DEFAULT_MODEL

__all__ = ["TrainOptions", "augmentation_entry", "check_options", "normalise_C"]


@dataclass
class TrainOptions:
    """Keywords of :func:`embedclf.train`, named as its flags (see there)."""

    image_dir: object
    output: object
    model: object = DEFAULT_MODEL
    cache: object = None
    force: bool = False
    val_dir: object = None
    test_dir: object = None
    validation_percentage: float = 10
    testing_percentage: float = 10
    exclude: object = None
    classifier: str = "softmax"
    C: object = "auto"
    scaling: str = "auto"
    balance: str = "none"
    class_weight: object = None
    unknown: object = "off"
    unknown_dir: object = None
    random_crop: float = 0.0
    random_scale: float = 0.0
    random_brightness: float = 0.0
    flip_left_right: bool = False
    augment_copies: int | None = None
    test_views: str | None = "none"
    image_size: int | None = None
    resample: str = "bilinear"
    crop_fraction: float = 0.875
    normalize_each: bool = False
    runtime: str | None = "auto"
    precision: str | None = "auto"
    batch_size: int = 32
    progress: object = "auto"
    summaries_dir: object = None
    n_jobs: int | None = None
    budget: float | None = None


def normalise_C(C) -> list[float] | str:
    """``"auto"``, or the sorted distinct positive values of ``C``.

    ``C`` may be "auto", a number, a sequence of numbers, or a string of
    comma-separated numbers (as ``--C`` takes).
    """
    if isinstance(C, str):
        if C.strip() == "auto":
            return "auto"
        parts = [v for v in C.split(",") if v.strip()]
    elif isinstance(C, (int, float)):
        parts = [C]
    else:
        parts = list(C)
    try:
        values = [float(v) for v in parts]
    except (TypeError, ValueError):
        values = []
    if not values or any(not v > 0 for v in values):
        raise ValueError(
            "C must be 'auto', a positive number or positive numbers (a list, or "
            f"a string separated by commas); got {C!r}."
        )
    return sorted(set(values))


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        shown = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {shown}; got {value!r}.")


def _distortions(opts: TrainOptions):
    from embedclf.embedding._augment import Distortions

    settings = Distortions(
        opts.random_crop,
        opts.random_scale,
        opts.random_brightness,
        opts.flip_left_right,
    )
    copies = opts.augment_copies
    if copies is None:
        copies = 4 if settings.active else 0
    if copies < 0:
        raise ValueError(f"--augment-copies must be 0 or more; got {copies}.")
    if copies and not settings.active:
        raise ValueError(
            f"--augment-copies {copies} needs at least one distortion "
            "(--random-crop, --random-scale, --random-brightness or "
            "--flip-left-right); undistorted copies would only repeat the images."
        )
    return settings, copies


def augmentation_entry(settings, copies: int) -> dict:
    """The manifest's ``augmentation``: the distortions and views per image."""
    return {
        "copies": copies,
        "random_crop": settings.random_crop,
        "random_scale": settings.random_scale,
        "random_brightness": settings.random_brightness,
        "flip_left_right": settings.flip_left_right,
    }


def check_options(opts: TrainOptions) -> TrainOptions:
    """Normalise and check ``opts`` in place; returns it.

    Sets ``opts.C`` to "auto" or a sorted list, ``opts.unknown`` to "auto",
    "off" or a number as a string, ``opts.class_weight`` to "balanced" or
    "none", ``opts.test_views`` to a string, and adds ``opts.distortions`` and
    ``opts.copies``.

    Raises
    ------
    ValueError
        A value out of range or a combination that cannot work.
    """
    from embedclf.workflow._train._collect import parse_unknown
    from embedclf.workflow._train._views import view_plan

    _check_choice("classifier", opts.classifier, ("softmax", "svm", "mlp"))
    _check_choice("scaling", opts.scaling, ("auto", "standardize", "none"))
    _check_choice("balance", opts.balance, ("none", "views"))
    opts.class_weight = "none" if opts.class_weight is None else opts.class_weight
    _check_choice("class_weight", opts.class_weight, ("balanced", "none"))
    opts.test_views = opts.test_views or "none"
    _check_choice("test_views", opts.test_views, ("none", "flip", "train"))
    for name in ("validation_percentage", "testing_percentage"):
        value = getattr(opts, name)
        if not 0 <= value < 100:
            raise ValueError(f"{name} must be in [0, 100); got {value!r}.")
    if opts.budget is not None and not opts.budget > 0:
        raise ValueError(
            f"--budget must be a positive number of minutes; got {opts.budget!r}."
        )
    opts.runtime = opts.runtime or "auto"
    opts.precision = opts.precision or "auto"
    _check_choice("runtime", opts.runtime, ("auto", "openvino", "tensorflow"))
    _check_choice("precision", opts.precision, ("auto", "fp32", "bf16", "int8"))
    opts.C = normalise_C(opts.C)
    if opts.classifier == "mlp" and opts.C != "auto":
        raise ValueError(
            "--C does not apply to --classifier mlp: its L2 penalty is fixed and "
            "early stopping picks how long it trains. Drop --C, or use "
            "--classifier softmax or svm."
        )
    opts.unknown = parse_unknown(str(opts.unknown))
    opts.distortions, opts.copies = _distortions(opts)
    # refuses 'train' views without distortions
    view_plan(opts.test_views, augmentation_entry(opts.distortions, opts.copies))
    if opts.test_views != "none" and opts.unknown != "off":
        raise ValueError(
            "--test-views averages probabilities, which the --unknown rule does "
            "not use; pass one of them, not both."
        )
    if opts.cache is not None:
        opts.cache = os.fspath(opts.cache)
    return opts
