"""Keep the TFLite converter's and LiteRT's C++ notices off stderr.

The int8 calibrator prints ``fully_quantize: 0, inference_type: 6, ...`` and
every LiteRT interpreter ``INFO: Created TensorFlow Lite XNNPACK delegate for
CPU.`` straight to file descriptor 2; neither has a switch. As
``embedding/_quiet.py`` does for TensorFlow's import, fd 2 is pointed at a
temporary file meanwhile and every other line is written back.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile

__all__ = ["quiet_lite"]

_NOTICE = re.compile(
    rb"^(?:INFO: Created TensorFlow Lite .*delegate for CPU\."
    rb"|fully_quantize: \d+, inference_type: .*"
    rb"|[IW]\d{4} [\d:.]+ +\d+ [\w.\-]+:\d+\] .*)$"
)


@contextlib.contextmanager
def quiet_lite():
    """Run the block with LiteRT's and the converter's notices dropped."""
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
            lines = captured.read().splitlines(keepends=True)
            kept = b"".join(x for x in lines if not _NOTICE.match(x.rstrip(b"\n")))
            if kept:
                os.write(2, kept)
