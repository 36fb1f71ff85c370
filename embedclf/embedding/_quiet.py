"""Import TensorFlow without its start-up log lines on stderr.

Importing TensorFlow 2.21 on a CPU-only machine prints, from C++ and before
``TF_CPP_MIN_LOG_LEVEL`` is read, two "All log messages before
absl::InitializeLog() is called are written to STDERR" blocks, oneDNN and CPU
feature notices, "Could not find cuda drivers on your machine" and, on the
first device query, an ``E0000 ... failed call to cuInit`` line that looks like
a failure but is not one. Neither TensorFlow nor absl offers a switch for the
lines written before logging is initialised (``TF_CPP_MIN_LOG_LEVEL=3`` still
shows them), so :func:`quiet_tensorflow` imports TensorFlow and lists its
devices with file descriptor 2 pointed at a temporary file, then writes back
every line that is not one of TensorFlow's log lines: nothing else written
meanwhile is lost.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import logging
import os
import re
import sys
import tempfile

__all__ = ["quiet_tensorflow", "stderr_without"]

# TensorFlow's C++ log lines ("I0000 00:00:1796173577.600439   14310
# port.cc:153] ..."), absl's pre-initialisation banner and the continuation
# line of the CPU feature notice.
_TF_LOG_LINE = re.compile(
    rb"^(?:[IWEF]\d{4} [\d:.]+ +\d+ [\w.\-]+:\d+\] "
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    rb"|To enable the following instructions: .* in other operations, rebuild "
    rb"TensorFlow with the appropriate compiler flags\.)"
)
_LOGGERS = ("tensorflow", "absl")


def _drop_lines(text: bytes, pattern: re.Pattern) -> bytes:
    """``text`` without the lines ``pattern`` matches (others kept, in order)."""
    lines = text.splitlines(keepends=True)
    return b"".join(x for x in lines if not pattern.match(x.rstrip(b"\n")))


def _drop_tf_log_lines(text: bytes) -> bytes:
    """``text`` without TensorFlow's C++ log lines (other lines kept, in order)."""
    return _drop_lines(text, _TF_LOG_LINE)


@contextlib.contextmanager
def stderr_without(pattern: re.Pattern):
    """Point fd 2 at a temporary file; write back all lines but ``pattern``'s.

    For C++ notices written straight to file descriptor 2 (TensorFlow's
    start-up lines here, LiteRT's in ``workflow/_export/_quiet_lite.py``).
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = _drop_lines(captured.read(), pattern)
            if kept:
                os.write(2, kept)


def _stderr_without_tf_log_lines():
    """:func:`stderr_without` TensorFlow's log lines."""
    return stderr_without(_TF_LOG_LINE)


class _QuietLoader(importlib.abc.Loader):
    """TensorFlow's own loader, run with its start-up lines filtered out."""

    def __init__(self, loader):
        self._loader = loader

    def __getattr__(self, name):
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        with _stderr_without_tf_log_lines():
            self._loader.exec_module(module)
            module.config.list_physical_devices()  # the CUDA lines come here
        for name in _LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)


class _QuietFinder(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` once, through the other finders, quietly loaded."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "tensorflow":
            return None
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def quiet_tensorflow() -> bool:
    """Keep TensorFlow's start-up log lines off stderr.

    Call it before anything imports TensorFlow; it costs nothing until then.
    When TensorFlow is first imported, it is imported and its devices listed
    (which prints the CUDA messages) with stderr captured, and what was not a
    TensorFlow log line is written back. ``TF_CPP_MIN_LOG_LEVEL`` is set to
    ``"2"`` unless it is set (later C++ messages: errors only), and the
    ``tensorflow`` and ``absl`` Python loggers to ERROR.

    Returns
    -------
    quietened : bool
        False when TensorFlow was already imported (too late: only the Python
        loggers are changed), True otherwise.

    Examples
    --------
    >>> import embedclf
    >>> embedclf.quiet_tensorflow()  # doctest: +SKIP
    True
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for name in _LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    if "tensorflow" in sys.modules:
        return False
    if not any(isinstance(f, _QuietFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietFinder())
    return True
