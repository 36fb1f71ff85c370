"""Keep the TFLite converter's and LiteRT's C++ notices off stderr.

The int8 calibrator prints ``fully_quantize: 0, inference_type: 6, ...`` and
every LiteRT interpreter ``INFO: Created TensorFlow Lite XNNPACK delegate for
CPU.`` straight to file descriptor 2; neither has a switch. As for
TensorFlow's import, ``embedding/_quiet.stderr_without`` points fd 2 at a
temporary file meanwhile and writes every other line back.
"""

from __future__ import annotations

import re

from embedclf.embedding._quiet import stderr_without

__all__ = ["quiet_lite"]

_NOTICE = re.compile(
    rb"^(?:INFO: Created TensorFlow Lite .*delegate for CPU\."
    rb"|fully_quantize: \d+, inference_type: .*"
    rb"|[IW]\d{4} [\d:.]+ +\d+ [\w.\-]+:\d+\] .*)$"
)


def quiet_lite():
    """Run the block with LiteRT's and the converter's notices dropped."""
    return stderr_without(_NOTICE)
