"""``--explain`` of ``embedclf predict`` and ``evaluate``: arguments, output."""

from __future__ import annotations

__all__ = ["add_explain_argument", "explanation_lines"]


def add_explain_argument(parser, *, report: bool = False):
    if report:
        parser.add_argument(
            "--explain",
            action="store_true",
            help=(
                "Show, for each misclassified image in misclassified.html, the "
                "nearest training photos of the predicted and the runner-up "
                "class and the predicted class's activation map (where the "
                "backbone exposes its feature map). Default: off."
            ),
        )
        return
    parser.add_argument(
        "--explain",
        nargs="?",
        const="",
        default=None,
        metavar="DIR",
        help=(
            "Also show why: the nearest training photos of the predicted and "
            "the runner-up class with their cosine similarity (under "
            "'neighbours' with --json), and the predicted class's activation "
            "map where the backbone exposes its last feature map (exact for a "
            "linear head; otherwise the reason it is not available). With DIR, "
            "also write DIR/explain.html with the photos and maps. Default: off."
        ),
    )


def explanation_lines(r) -> list[str]:
    """The text lines of one result's explanation."""
    lines = []
    if r.get("neighbours"):
        for key, title in (("predicted", "nearest"), ("runner_up", "runner-up")):
            group = r["neighbours"].get(key)
            if not group:
                continue
            photos = ", ".join(
                f"{p['path']} ({p['similarity']:.3f})" for p in group["photos"]
            )
            lines.append(f"  {title} {group['label']}: {photos}")
    elif r.get("neighbours_reason"):
        lines.append(f"  neighbours not available: {r['neighbours_reason']}")
    cam = r.get("activation_map")
    if cam and cam.get("available"):
        import numpy as np

        grid = np.asarray(cam["grid"])
        i, j = np.unravel_index(np.argmax(grid), grid.shape)
        lines.append(
            f"  activation map of {cam['label']}: {grid.shape[0]}x{grid.shape[1]}, "
            f"strongest at row {i}, column {j} (logit {cam['logit']:.3f} = "
            f"mean {grid.mean():.3f} + bias {cam['bias']:.3f})"
        )
    elif cam:
        lines.append(f"  activation map not available: {cam['reason']}")
    return lines
