"""Figures in the documents and the results files they come from.

A measured figure in the README or a guide is followed by a marker naming
its source (the convention: ``tests/test_doc_figures.py``'s docstring and
``docs/benchmarks.md``)::

    reaches 74.9 %<!-- fig benchmarks/results/latest.json PATH x100 -->

(``PATH``: keys and list indices joined by dots, e.g.
``results.6.metrics.rows.1.test_accuracy``).

This module reads those markers (the test checks every figure with it) and,
run as a script, rewrites the figures of the given documents from their
results files after a benchmark re-run, keeping the decimals written::

    python benchmarks/figures.py docs/runtimes.md          # show what changes
    python benchmarks/figures.py docs/runtimes.md --write  # and write it

The sentences around the figures are not touched: read the diff, and fix a
sentence whose meaning a new figure changes ("faster" that is now slower).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

MARKER = re.compile(
    r"<!--\s*fig\s+(?P<file>\S+)\s+(?P<path>.+?)(?:\s+x(?P<scale>[-+0-9.e]+))?\s*-->"
)
NUMBER = r"[-+−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
#: %, ×, or one word of letters, optionally per another (x, s, points, MB, images/s)
UNIT = r"(?:%|×|[A-Za-z]{1,8}(?:/[A-Za-z]{1,8})?)?"
#: the number, its unit and emphasis, at the very end of the text before a marker
BEFORE_MARKER = re.compile(rf"(?<![\w.,])(?P<number>{NUMBER})\s*{UNIT}[*_]*\s*$")


def lookup(data, dotted: str):
    """Walk ``dotted`` through dicts and lists; the longest matching key wins."""
    rest = dotted
    node = data
    while rest:
        if isinstance(node, list):
            head, _, tail = rest.partition(".")
            node, rest = node[int(head)], tail
            continue
        if not isinstance(node, dict):
            raise KeyError(f"{rest!r}: {type(node).__name__} has no keys")
        keys = [k for k in node if rest == k or rest.startswith(k + ".")]
        if not keys:
            raise KeyError(f"{rest!r} is not a key of {sorted(node)[:12]}")
        key = max(keys, key=len)
        node, rest = node[key], rest[len(key) + 1 :]
    return node


def expected(value, scale, written: str) -> Decimal:
    """``value`` x ``scale`` rounded to the decimals of ``written``."""
    number = written.replace(",", "").replace("−", "-")
    decimals = len(number.split(".")[1]) if "." in number else 0
    scaled = Decimal(repr(float(value))) * Decimal(scale or "1")
    return scaled.quantize(Decimal(1).scaleb(-decimals), ROUND_HALF_EVEN)


def formatted(amount: Decimal, written: str) -> str:
    """``amount`` written as ``written`` was: thousands separators, sign."""
    text = f"{amount:,f}" if "," in written else f"{amount:f}"
    if written.startswith("−"):
        text = text.replace("-", "−")
    return text


def source_value(match, root: Path = ROOT):
    """The number a marker names (``KeyError``/``OSError`` if it is gone)."""
    data = json.loads((root / match["file"]).read_text())
    return lookup(data, match["path"].strip())


def refreshed(text: str, root: Path = ROOT) -> tuple[str, list[str]]:
    """``text`` with every marked figure set from its file; and the changes."""
    out, changes, pos = [], [], 0
    for match in MARKER.finditer(text):
        before = text[pos : match.start()]
        written = BEFORE_MARKER.search(before)
        value = source_value(match, root)
        if written and isinstance(value, int | float) and not isinstance(value, bool):
            new = formatted(expected(value, match["scale"], written["number"]),
                            written["number"])  # fmt: skip
            if new != written["number"]:
                line = text.count("\n", 0, match.start()) + 1
                changes.append(f"line {line}: {written['number']} -> {new}")
                start, end = written.span("number")
                before = before[:start] + new + before[end:]
        out.append(before + match.group(0))
        pos = match.end()
    out.append(text[pos:])
    return "".join(out), changes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("documents", nargs="+", type=Path)
    parser.add_argument("--write", action="store_true", help="rewrite the files")
    args = parser.parse_args(argv)
    for doc in args.documents:
        text, changes = refreshed(doc.read_text())
        print(f"{doc}: {len(changes)} figure(s) changed")
        for change in changes:
            print("  " + change)
        if args.write and changes:
            doc.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
