"""Every measured figure in the README and the guides comes from a results file.

The convention (also in HELPERS.md and docs/benchmarks.md): a measured figure
is followed at once by a marker naming where it comes from::

    reaches 74.9 %<!-- fig benchmarks/results/latest.json
    results.6.metrics.rows.1.test_accuracy x100 -->

(on one line in the documents);

- the file is a JSON file under ``benchmarks/results/``;
- the path joins keys and list indices with dots. A key that itself holds
  dots or spaces is written as it is (``...draws.Lite0.0.1.0 rule
  (detector=None).auroc``): at each level the longest key that matches wins;
- ``xSCALE`` is optional (``x100`` for a fraction written as a percentage);
- the number checked is the last number before the marker; between the two
  only a unit (``%``, ``x``, ``s``, ``points``, ``images/s``: one word) and
  Markdown emphasis may stand. Thousands separators (``5,421``) and a sign are read.

The test reads the JSON value, multiplies it by the scale, rounds it to the
decimals written and compares it with the number written, as text: a default
that changes and a benchmark re-run then fail the test until the sentence is
updated, instead of leaving a stale figure behind.

Unmarked figures. Outside code (fenced blocks and ``inline code``) and
outside HTML comments, these numbers must carry a marker:

- a decimal number followed by a unit of measurement: ``%``, ``x``/``×``,
  ``s`` or ``ms`` (``74.9 %``, ``1.83x``, ``4.4 s``);
- a decimal number with three or more digits after the point (an AUROC,
  a ratio: ``0.734``).

Not figures, so never flagged: integers (``95 %`` known recall, a ``10 %``
validation part, a ``30 s`` lease: parameters are written as integers,
measured figures with their decimals), numbers inside code (flags and
parameters such as ``--crop-fraction 0.875`` or ``C=3.16``), and a number
right after a comparison sign or the word "target" or "goal" (``target
>= 0.90``, ``goal 0.75``), which states what was aimed at. Anything else that
is not a measurement goes into ``ALLOWED`` with the reason.
"""

from __future__ import annotations

import importlib.util
import json
import re
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

# the marker grammar and the lookup live with the refresh script
_spec = importlib.util.spec_from_file_location(
    "embedclf_bench_figures", ROOT / "benchmarks" / "figures.py"
)
figures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(figures)
MARKER, BEFORE_MARKER, _lookup = figures.MARKER, figures.BEFORE_MARKER, figures.lookup


def _documents() -> list[Path]:
    docs = sorted((ROOT / "docs").rglob("*.md"))
    return [ROOT / "README.md", ROOT / "benchmarks" / "README.md", *docs]


#: Numbers that look like figures but are not measurements: (file, text, reason).
ALLOWED: list[tuple[str, str, str]] = []


def _markers(path: Path):
    text = path.read_text()
    for match in MARKER.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        yield text[: match.start()], match, f"{path.relative_to(ROOT)}:{line}"


def _all_markers():
    found = []
    for doc in _documents():
        found.extend(_markers(doc))
    return found


def test_there_are_figure_markers():
    files = {where.split(":")[0] for _, _, where in _all_markers()}
    assert "README.md" in files, "the README quotes no figure with its source"


@pytest.mark.parametrize(
    "before, match, where",
    _all_markers(),
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_figure_equals_its_results_file(before, match, where):
    file = ROOT / match["file"]
    assert file.parent == RESULTS or RESULTS in file.parents, (
        f"{where}: {match['file']} is not under benchmarks/results/"
    )
    assert file.is_file(), f"{where}: {match['file']} does not exist"
    value = _lookup(json.loads(file.read_text()), match["path"].strip())
    assert isinstance(value, int | float) and not isinstance(value, bool), (
        f"{where}: {match['path']} is {value!r}, not a number"
    )
    written = BEFORE_MARKER.search(before)
    assert written, f"{where}: no number right before the marker"
    number = written["number"].replace(",", "").replace("−", "-")
    expected = figures.expected(value, match["scale"], written["number"])
    assert Decimal(number) == expected, (
        f"{where}: written {written['number']}, but {match['file']} "
        f"{match['path']} x{match['scale'] or 1} = {value} -> {expected} "
        "(python benchmarks/figures.py FILE --write rewrites it)"
    )


CODE_FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")
COMMENT = re.compile(r"<!--.*?-->", re.S)
FIGURE = re.compile(
    r"(?<![\w.])(?P<number>[-+]?\d+\.(?P<fraction>\d+))"
    r"(?P<unit>\s?(?:%|×|x|ms|s)(?!\w))?"
)
TARGET = re.compile(r"(?:>=|<=|≥|≤|>|<|~|\btarget|\bgoal)\s*\(?\s*$", re.I)


def _blank(match):
    return re.sub(r"[^\n]", " ", match.group(0))


def _unmarked(text: str, name: str):
    # Code and comments become blanks of the same length: offsets stay valid,
    # and a figure followed by a marker is followed by blanks then its end.
    visible = CODE_FENCE.sub(_blank, text)
    visible = INLINE_CODE.sub(_blank, visible)
    visible = COMMENT.sub(_blank, visible)
    for match in FIGURE.finditer(visible):
        if not (match["unit"] or len(match["fraction"]) >= 3):
            continue
        after = text[match.end() :]
        if re.match(r"[*_]*\s*<!--\s*fig\s", after):
            continue
        if TARGET.search(visible[max(0, match.start() - 12) : match.start()]):
            continue
        line_start = text.rfind("\n", 0, match.start()) + 1
        line_end = text.find("\n", match.end())
        line = text[line_start : line_end if line_end >= 0 else None]
        if any(f == name and allowed in line for f, allowed, _ in ALLOWED):
            continue
        line_number = text.count("\n", 0, match.start()) + 1
        yield f"{name}:{line_number}: {match.group(0).strip()}"


def test_every_figure_like_number_is_marked():
    unmarked = [
        hit
        for doc in _documents()
        for hit in _unmarked(doc.read_text(), str(doc.relative_to(ROOT)))
    ]
    assert not unmarked, (
        "figures without a <!-- fig FILE PATH xSCALE --> marker (see this "
        "test's docstring for the rule):\n" + "\n".join(unmarked)
    )


#: Figures issue 24 found stale; they must not come back.
STALE = [
    "error is 0.09",
    "right 69 %",
    "189 suspected label issues",
    "6 near-duplicate pairs",
    "395 near pairs",
    "66.17 %",
    "66.24 %",
]


def test_stale_figures_of_issue_24_are_gone():
    for doc in _documents():
        flat = " ".join(doc.read_text().split())
        for stale in STALE:
            assert stale not in flat, f"{doc.relative_to(ROOT)}: {stale!r}"


def test_the_checker_catches_a_wrong_figure():
    """The checks above can fail: a figure off by one digit, an unmarked one."""
    path = "results.6.metrics.rows.1.test_accuracy"
    value = _lookup(json.loads((RESULTS / "latest.json").read_text()), path)
    right = f"{value * 100:.1f}"
    wrong = f"{value * 100 + 0.1:.1f}"
    marker = f"<!-- fig benchmarks/results/latest.json {path} x100 -->"
    for written, ok in ((right, True), (wrong, False)):
        match = MARKER.search(marker)
        number = BEFORE_MARKER.search(f"reaches {written} %")["number"]
        scaled = Decimal(repr(float(value))) * Decimal(match["scale"])
        expected = scaled.quantize(Decimal("0.1"), ROUND_HALF_EVEN)
        assert (Decimal(number) == expected) is ok
    text = f"reaches {right} % and `--flag 0.875` at cosine 0.85, AUROC 0.734;\n"
    hits = [hit.split(": ")[1] for hit in _unmarked(text, "probe.md")]
    assert hits == [f"{right} %", "0.734"]
    text = f"reaches {right} %{marker}, target >= 0.90x, 3.11.7, 95 %\n"
    assert list(_unmarked(text, "probe.md")) == []
    assert BEFORE_MARKER.search("at 35.5 images/s")["number"] == "35.5"
    assert BEFORE_MARKER.search("**2,423 s**")["number"] == "2,423"
    assert BEFORE_MARKER.search("74.9 % on test") is None
    assert BEFORE_MARKER.search("AUROC 0.734 with Lite0") is None


def test_lookup_takes_the_longest_key():
    data = {"draws": {"Lite0": {"0.1.0 rule (detector=None)": {"auroc": 0.7}}}}
    assert _lookup(data, "draws.Lite0.0.1.0 rule (detector=None).auroc") == 0.7
    assert _lookup({"rows": [{"a": 1}, {"a": 2}]}, "rows.1.a") == 2
    with pytest.raises(KeyError, match="missing"):
        _lookup(data, "draws.missing")


def test_refresh_rewrites_a_stale_figure_and_keeps_the_rest(tmp_path):
    """benchmarks/figures.py sets each marked figure from its file, with the
    decimals, separators and unit written, and leaves the text around it."""
    results = tmp_path / "benchmarks" / "results"
    results.mkdir(parents=True)
    (results / "r.json").write_text(json.dumps({"a": {"b": [0.123456, 12345.6]}}))
    text = (
        "rate 1.1 %<!-- fig benchmarks/results/r.json a.b.0 x100 --> and "
        "**9,999 s**<!-- fig benchmarks/results/r.json a.b.1 --> then 0.12<!-- "
        "fig benchmarks/results/r.json a.b.0 --> end\n"
    )
    new, changes = figures.refreshed(text, root=tmp_path)
    assert new == (
        "rate 12.3 %<!-- fig benchmarks/results/r.json a.b.0 x100 --> and "
        "**12,346 s**<!-- fig benchmarks/results/r.json a.b.1 --> then 0.12<!-- "
        "fig benchmarks/results/r.json a.b.0 --> end\n"
    )
    assert changes == ["line 1: 1.1 -> 12.3", "line 1: 9,999 -> 12,346"]
    assert figures.refreshed(new, root=tmp_path) == (new, [])
