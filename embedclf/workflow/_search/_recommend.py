"""Backbones to try when online: handles known to transfer well, as data.

Linear probes on a frozen backbone transfer about as well as the backbone
classifies ImageNet, and backbones pre-trained on ImageNet-21k transfer
better still (Kornblith et al. 2019, "Do Better ImageNet Models Transfer
Better?"; Kolesnikov et al. 2020, "Big Transfer"). ``gflops`` is the
published multiply-add count of one image at ``input_size`` (a relative cost,
not a measurement on this machine); ``tier`` orders the expected transfer
quality (higher is better). The search only *suggests* one of these: it
embeds with the backbones it is given, so it works offline.
"""

from __future__ import annotations

import os

__all__ = ["RECOMMENDED_BACKBONES", "find_recommended", "stronger_backbone_hint"]

RECOMMENDED_BACKBONES = (
    {
        "name": "MobileNet V3 Large",
        "handle": "https://tfhub.dev/google/imagenet/"
        "mobilenet_v3_large_100_224/feature_vector/5",
        "match": ("mobilenet_v3_large",),
        "input_size": 224,
        "gflops": 0.22,
        "tier": 1,
    },
    {
        "name": "EfficientNet-Lite0",
        "handle": "https://tfhub.dev/tensorflow/efficientnet/lite0/feature-vector/2",
        "match": ("efficientnet_lite0", "efficientnet/lite0"),
        "input_size": 224,
        "gflops": 0.41,
        "tier": 1,
    },
    {
        "name": "EfficientNet-Lite2",
        "handle": "https://tfhub.dev/tensorflow/efficientnet/lite2/feature-vector/2",
        "match": ("efficientnet_lite2", "efficientnet/lite2"),
        "input_size": 260,
        "gflops": 0.90,
        "tier": 2,
    },
    {
        "name": "EfficientNet-Lite4",
        "handle": "https://tfhub.dev/tensorflow/efficientnet/lite4/feature-vector/2",
        "match": ("efficientnet_lite4", "efficientnet/lite4"),
        "input_size": 300,
        "gflops": 2.6,
        "tier": 3,
    },
    {
        "name": "Inception V3 (retrain.py's default)",
        "handle": "https://tfhub.dev/google/imagenet/inception_v3/feature_vector/5",
        "match": ("inception_v3", "keras:InceptionV3"),
        "input_size": 299,
        "gflops": 5.7,
        "tier": 2,
    },
    {
        "name": "BiT-M R50x1 (ImageNet-21k)",
        "handle": "https://tfhub.dev/google/bit/m-r50x1/1",
        "match": ("bit/m-r50x1", "bit_m-r50x1"),
        "input_size": 224,
        "gflops": 4.1,
        "tier": 4,
    },
    {
        "name": "EfficientNetV2-S (ImageNet-21k)",
        "handle": "https://tfhub.dev/google/imagenet/"
        "efficientnet_v2_imagenet21k_s/feature_vector/2",
        "match": ("efficientnet_v2_imagenet21k_s",),
        "input_size": 384,
        "gflops": 8.8,
        "tier": 5,
    },
)


def find_recommended(handle) -> dict | None:
    """The entry of the list that ``handle`` (a URL, folder or keras name) is."""
    text = os.fspath(handle).lower().replace("-", "_")
    for entry in RECOMMENDED_BACKBONES:
        if any(m.lower().replace("-", "_") in text for m in entry["match"]):
            return entry
    return None


def stronger_backbone_hint(handles, *, max_cost_ratio: float = 12.0) -> str | None:
    """A sentence naming a listed backbone likely to beat all of ``handles``.

    The strongest-tier entry costing at most ``max_cost_ratio`` times the
    dearest known backbone given; None when the given ones are unknown or
    already the strongest affordable.

    Examples
    --------
    >>> print(stronger_backbone_hint(["/m/efficientnet_lite0_feature_vector"]))
    ... # doctest: +ELLIPSIS
    A stronger backbone would likely help: try BiT-M R50x1 (ImageNet-21k) ...
    """
    known = [e for e in map(find_recommended, handles) if e is not None]
    if not known:
        return None
    best_tier = max(e["tier"] for e in known)
    dearest = max(e["gflops"] for e in known)
    options = [
        e
        for e in RECOMMENDED_BACKBONES
        if e["tier"] > best_tier and e["gflops"] <= max_cost_ratio * dearest
    ]
    if not options:
        return None
    pick = max(options, key=lambda e: (e["tier"], -e["gflops"]))
    return (
        f"A stronger backbone would likely help: try {pick['name']} "
        f"(--model {pick['handle']}, {pick['input_size']} px, about "
        f"{pick['gflops'] / dearest:.0f}x the cost per image of the dearest given; "
        "needs internet once)."
    )
