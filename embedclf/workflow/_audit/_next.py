"""What to do next, per kind of issue the audit found, and the list files.

Each kind gets one sentence and, where files can simply be left out, a list
file for ``embedclf train --exclude FILE``: ``exclude.txt`` (image problems
and the training copy of every duplicate) and ``label_issues.txt`` (the
label suspects, to review first).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["exclude_lists", "next_steps", "write_lists"]

#: Image issue types whose photos are left out by exclude.txt; the others
#: (odd size or shape, grayscale) are often fine and only reported.
EXCLUDED_IMAGE_ISSUES = ("blurry", "dark", "light", "low_information")

_ADVICE = {
    "label": (
        "Look at each suspect beside its given and suggested class; move "
        "mislabelled files to the right class folder, or leave them out with "
        "label_issues.txt (edit it to keep the ones that are right)."
    ),
    "cross_split": (
        "A held-out image with a twin in training scores better than it "
        "should; exclude.txt lists the training copy of each pair, so the "
        "test set stays as it is."
    ),
    "duplicate": (
        "Copies within a split weigh twice in training; exclude.txt lists "
        "the second training image of each exact pair (near pairs may be "
        "honest re-shoots: look before removing them)."
    ),
    "image": (
        "Blurry, dark, overexposed and blank photos teach the head little; "
        "exclude.txt lists those in the training split (held-out ones stay, "
        "so the accuracy is measured on the same images). Odd sizes, shapes "
        "and grayscale photos are only reported: check they belong."
    ),
    "outlier": (
        "Unlike anything else in the data: a wrong folder, a different kind "
        "of photo, or a class that needs more examples like it."
    ),
    "balance": (
        "Classes with fewer images than cross-validation folds are scored "
        "poorly; add photos of them or merge them."
    ),
}


def exclude_lists(result) -> dict:
    """``{"exclude.txt": [(path, reason)], "label_issues.txt": [...]}``."""
    if result.paths is None:
        return {"exclude.txt": [], "label_issues.txt": []}
    paths, split = result.paths, result.split
    out, seen = [], set()

    def add(i, reason):
        if i not in seen:
            seen.add(i)
            out.append((str(paths[i]), reason))

    # Training images only: leaving held-out images out would change what
    # the accuracy is measured on.
    for r in result.image_issues:
        if r["issue"] in EXCLUDED_IMAGE_ISSUES and split[r["index"]] == "training":
            add(r["index"], r["issue"])
    for p in result.duplicates:
        i, j = p["i"], p["j"]
        if "/" in p["splits"]:
            train = i if split[i] == "training" else j
            if split[train] == "training":
                add(train, f"twin of a {p['splits']} pair ({p['signal']})")
        elif p["kind"] == "exact" and split[j] == "training":
            add(j, "exact copy")
    labels = [(str(paths[r["index"]]), "label suspect") for r in result.label_issues]
    return {"exclude.txt": out, "label_issues.txt": labels}


def write_lists(lists, output) -> dict:
    """Write the list files (``#`` comments give each path's reason)."""
    files = {}
    for name, rows in lists.items():
        path = Path(output) / name
        text = "".join(f"{p}  # {why}\n" for p, why in rows)
        header = (
            "# Images to leave out: embedclf train ... --exclude "
            f"{path}\n# Delete a line to keep its image; text after '  # ' "
            "is a comment.\n"
        )
        path.write_text(header + text, encoding="utf-8")
        files[name] = path
    return files


def next_steps(result, lists, *, output="audit", train_command=None) -> list:
    """One step per kind of issue found: ``kind``, ``count``, ``advice``,
    ``command`` (None where no command applies)."""
    s = result.summary
    train = train_command or "embedclf train IMAGE_DIR --output MODEL_DIR"
    out_dir = Path(output)

    reasons = [why for _, why in lists["exclude.txt"]]

    def cmd(name, listed=True):
        """The command, when the list holds files for this kind of issue."""
        return f"{train} --exclude {out_dir / name}" if listed else None

    n_image = sum(1 for r in result.image_issues)
    n_within = s["n_exact_duplicate_pairs"] + s["n_near_duplicate_pairs"]
    counts = {
        "label": (
            s["n_label_issues"],
            cmd("label_issues.txt", bool(lists["label_issues.txt"])),
        ),
        "cross_split": (
            s["n_cross_split_pairs"],
            cmd("exclude.txt", any(w.startswith("twin") for w in reasons)),
        ),
        "duplicate": (
            n_within - s["n_cross_split_pairs"],
            cmd("exclude.txt", "exact copy" in reasons),
        ),
        "image": (
            n_image,
            cmd("exclude.txt", any(w in EXCLUDED_IMAGE_ISSUES for w in reasons)),
        ),
        "outlier": (s["n_outliers"], None),
        "balance": (len(s["balance"]["tiny_classes"]), None),
    }
    return [
        {"kind": k, "count": int(n), "advice": _ADVICE[k], "command": c}
        for k, (n, c) in counts.items()
        if n
    ]
