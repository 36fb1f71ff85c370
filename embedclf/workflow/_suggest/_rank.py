"""Which unlabelled rows to label next: uncertainty times diversity, on vectors.

The default strategy, ``"margin-kcentre"``, picks one row at a time, the row
with the largest ``u * d``, where ``u = 1 - (p1 - p2)`` is the head's
uncertainty (one minus the margin between its two most probable classes) and
``d`` is the cosine distance from the row to the nearest labelled row or
earlier pick (greedy k-centre, Sener & Savarese 2018, weighted by
uncertainty). Uncertainty alone keeps picking shots of the same confusing
shelf; distance alone picks outliers the head is already sure about; the
product asks for photos the head is unsure of *and* that are unlike anything
labelled so far. Rows at cosine ``>= duplicate_threshold`` from a labelled
row (or with its content key) are never suggested, nor rows that close to an
earlier pick. ``benchmarks/bench_suggest.py`` measures the strategies on the
Grocery Store photos (``benchmarks/results/suggest.json``).

Everything is deterministic: ties go to the lower row index, and only
``"random"`` draws from ``random_state``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["STRATEGIES", "SuggestedRows", "rank_rows", "uncertainty"]

#: Strategies of :func:`rank_rows` (the first is the default).
STRATEGIES = (
    "margin-kcentre",
    "entropy-kcentre",
    "margin",
    "entropy",
    "kcentre",
    "random",
)

#: Cosine similarity at or above which a row counts as a near-duplicate (the
#: audit's threshold, ``workflow/_audit_duplicates.DUPLICATE_THRESHOLD``).
DUPLICATE_THRESHOLD = 0.94


class SuggestedRows:
    """What :func:`rank_rows` chose, in order, and why.

    Attributes
    ----------
    indices : ndarray of int
        Rows of ``X`` to label, best first.
    reasons : list of str
        One sentence per chosen row.
    uncertainty : ndarray of shape (n_samples,)
        Every row's uncertainty in [0, 1] (1 - margin, or normalised entropy).
    nearest_labelled : ndarray of shape (n_samples,)
        Every row's highest cosine similarity to a labelled row (NaN without
        labelled rows).
    excluded : ndarray of int
        Rows left out as exact or near duplicates of labelled rows.
    """

    def __init__(self, indices, reasons, uncertainty, nearest_labelled, excluded):
        self.indices = indices
        self.reasons = reasons
        self.uncertainty = uncertainty
        self.nearest_labelled = nearest_labelled
        self.excluded = excluded


def uncertainty(proba, kind: str = "margin") -> np.ndarray:
    """Per-row uncertainty in [0, 1] of predicted probabilities.

    ``"margin"``: ``1 - (p1 - p2)`` (p1, p2 the two largest probabilities);
    ``"entropy"``: the entropy divided by ``log(n_classes)``.
    """
    proba = np.asarray(proba, dtype=np.float64)
    if kind == "margin":
        top = np.sort(proba, axis=1)[:, ::-1]
        second = top[:, 1] if proba.shape[1] > 1 else np.zeros(len(proba))
        return 1.0 - (top[:, 0] - second)
    if kind == "entropy":
        p = np.clip(proba, 1e-12, 1.0)
        return -(p * np.log(p)).sum(axis=1) / np.log(max(proba.shape[1], 2))
    raise ValueError(f"Uncertainty {kind!r} is not 'margin' or 'entropy'.")


def _unit(X) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return np.divide(X, norms, out=np.zeros_like(X), where=norms > 0)


def _nearest(A, B, block: int = 2048) -> np.ndarray:
    """Highest cosine of each row of unit ``A`` to the rows of unit ``B``.

    In blocks of rows of both, so memory stays at ``block**2`` floats.
    """
    out = np.full(len(A), -np.inf, dtype=np.float32)
    for i in range(0, len(A), block):
        part = out[i : i + block]
        for j in range(0, len(B), block):
            sims = A[i : i + block] @ B[j : j + block].T
            np.maximum(part, sims.max(axis=1), out=part)
    return out


def _check(X, proba, n, strategy, X_labelled):
    if strategy not in STRATEGIES:
        raise ValueError(
            f"The 'strategy' parameter must be one of {', '.join(STRATEGIES)}. "
            f"Got {strategy!r} instead."
        )
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"The number of suggestions n must be 1 or more; got {n!r}.")
    if len(X) != len(proba):
        raise ValueError(
            f"X has {len(X)} rows but proba has {len(proba)}; pass one row of "
            "probabilities per vector."
        )
    if (
        X_labelled is not None
        and len(X_labelled)
        and (np.shape(X_labelled)[1] != np.shape(X)[1])
    ):
        raise ValueError(
            f"The labelled vectors have {np.shape(X_labelled)[1]} features but "
            f"the unlabelled ones {np.shape(X)[1]}: they come from different "
            "backbones. Embed both with the model directory's backbone."
        )


def rank_rows(
    X,
    proba,
    *,
    n,
    X_labelled=None,
    keys=None,
    labelled_keys=None,
    strategy="margin-kcentre",
    duplicate_threshold=DUPLICATE_THRESHOLD,
    random_state=0,
    classes=None,
) -> SuggestedRows:
    """Choose ``n`` rows of ``X`` to label next (see the module docstring).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Vectors of the unlabelled images.
    proba : array-like of shape (n_samples, n_classes)
        The head's probabilities for them.
    n : int
        How many to choose (fewer when fewer rows are eligible).
    X_labelled : array-like of shape (n_labelled, n_features), default=None
        Vectors of the images already labelled.
    keys, labelled_keys : sequence of str, default=None
        Content keys: a row with a labelled row's key is an exact duplicate.
    strategy : str, default="margin-kcentre"
        One of :data:`STRATEGIES`.
    duplicate_threshold : float, default=0.94
        Cosine similarity at or above which a row is a near-duplicate.
    random_state : int, default=0
        Seed of ``"random"``.
    classes : sequence of str, default=None
        Column names of ``proba``, used in the reasons.

    Returns
    -------
    SuggestedRows
    """
    _check(X, proba, n, strategy, X_labelled)
    proba = np.asarray(proba, dtype=np.float64)
    Xn = _unit(X)
    kind = "entropy" if strategy.startswith("entropy") else "margin"
    u = uncertainty(proba, kind) if len(X) else np.zeros(0)
    has_labelled = X_labelled is not None and len(X_labelled) > 0
    near = _nearest(Xn, _unit(X_labelled)) if has_labelled else np.full(len(X), np.nan)
    excluded = near >= duplicate_threshold if has_labelled else np.zeros(len(X), bool)
    if keys is not None and labelled_keys is not None:
        excluded |= np.isin(np.asarray(keys, dtype=object), list(labelled_keys))
    excluded |= ~np.isfinite(Xn).all(axis=1) | (np.abs(Xn).sum(axis=1) == 0)
    chosen = _greedy(
        Xn, u, near, excluded, n, strategy, duplicate_threshold, random_state
    )
    reasons = [
        _reason(i, strategy, u, proba, chosen_near, classes, kind)
        for i, chosen_near in chosen
    ]
    return SuggestedRows(
        np.array([i for i, _ in chosen], dtype=int),
        reasons,
        u,
        near,
        np.flatnonzero(excluded),
    )


def _greedy(Xn, u, near, excluded, n, strategy, threshold, random_state):
    """[(row, its highest cosine to labelled rows and earlier picks)], in order."""
    eligible = ~excluded
    # Cosine distance to the nearest labelled row or pick (1 with neither).
    dist = np.where(np.isnan(near), 1.0, 1.0 - np.nan_to_num(near)).astype(np.float64)
    if strategy == "random":
        rng = np.random.default_rng(random_state)
        order = rng.permutation(np.flatnonzero(eligible))
    elif strategy in ("margin", "entropy"):
        order = np.flatnonzero(eligible)[np.argsort(-u[eligible], kind="stable")]
    else:
        order = None
    chosen = []
    while len(chosen) < n and eligible.any():
        if order is not None:
            rest = order[eligible[order]]
            i = int(rest[0])
        else:
            weight = dist if strategy == "kcentre" else u * dist
            i = int(np.argmax(np.where(eligible, weight, -np.inf)))
        chosen.append((i, float(1.0 - dist[i])))
        eligible[i] = False
        if order is None:  # the k-centre strategies
            sims = Xn @ Xn[i]
            eligible &= sims < threshold  # no near-duplicate of a pick
            np.minimum(dist, 1.0 - sims, out=dist)
    return chosen


def _reason(i, strategy, u, proba, nearest, classes, kind) -> str:
    order = np.argsort(-proba[i], kind="stable")
    names = [str(c) for c in classes] if classes is not None else None
    top = (lambda j: names[j]) if names else (lambda j: f"class {j}")
    rank = int(np.sum(u > u[i])) + 1
    if kind == "margin" and proba.shape[1] > 1:
        margin = proba[i, order[0]] - proba[i, order[1]]
        unsure = (
            f"unsure between {top(order[0])} ({proba[i, order[0]]:.2f}) and "
            f"{top(order[1])} ({proba[i, order[1]]:.2f}), margin {margin:.2f}"
        )
    else:
        unsure = f"normalised entropy {u[i]:.2f} (top: {top(order[0])})"
    unsure += f", {_ordinal(rank)} most uncertain of {len(u)}"
    unlike = (
        f"unlike the labelled photos and earlier picks (nearest cosine {nearest:.2f})"
    )
    if strategy == "random":
        return "drawn at random"
    if strategy in ("margin", "entropy"):
        return unsure
    if strategy == "kcentre":
        return unlike
    return f"{unsure}; {unlike}"


def _ordinal(k: int) -> str:
    suffix = (
        "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    )
    return f"{k}{suffix}"
