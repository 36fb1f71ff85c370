"""``embedclf train``: arguments -> :func:`embedclf.train` -> printed lines.

The parser is built by ``_train_args.py``; the workflow is the library's
(``embedclf/workflow/_train/``). What the library logs on ``embedclf.train``
is printed on stdout as it happens.
"""

from __future__ import annotations

import logging
import sys
import time
from contextlib import contextmanager

__all__ = ["run_train", "train_options"]

#: ``embedclf train`` flags that are not keywords of :func:`embedclf.train`.
_CLI_ONLY = ("command", "handler", "verbose", "model", "C_grid")


def train_options(args) -> dict:
    """The keywords of :func:`embedclf.train` from parsed arguments."""
    from embedclf.cli._common import DEFAULT_MODEL, _models, _progress

    options = {k: v for k, v in vars(args).items() if k not in _CLI_ONLY}
    options.update(
        model=_models(args, DEFAULT_MODEL),
        C=args.C_grid,
        progress=_progress(args),
    )
    return options


class _Stdout(logging.Handler):
    """Prints each record's message on stdout, flushed, as ``print`` did."""

    def emit(self, record):
        print(record.getMessage(), flush=True)


@contextmanager
def _printed(logger_name: str):
    """Print what ``logger_name`` logs at INFO and above; restore it after."""
    log = logging.getLogger(logger_name)
    handler = _Stdout(logging.INFO)
    saved = log.level, log.propagate
    log.addHandler(handler)
    log.setLevel(min(logging.INFO, logging.getLogger("embedclf").getEffectiveLevel()))
    log.propagate = False
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(saved[0])
        log.propagate = saved[1]


def run_train(args) -> int:
    from embedclf.cli._common import report_failures
    from embedclf.workflow._train._run import train

    t0 = time.perf_counter()
    with _printed("embedclf.train"):
        result = train(**train_options(args))
    report_failures(result.unreadable)
    print(
        f"Model written to {result.model_dir} (manifest.json and the head and "
        f"labels it names{', report/' if result.report is not None else ''}) in "
        f"{time.perf_counter() - t0:.1f} s.",
        flush=True,
    )
    if result.test_accuracy is not None:
        views = result.params.get("test_views") or "none"
        views_text = "" if views == "none" else f", test views: {views}"
        print(
            f"Final test accuracy = {result.test_accuracy:.2%} "
            f"(N={result.counts['testing']}{views_text})",
            flush=True,
        )
    sys.stdout.flush()
    return 0
