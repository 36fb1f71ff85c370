"""Mixed int8/float TensorFlow Lite quantization: int8 except the most sensitive ops.

TensorFlow's ``tf.lite.experimental.QuantizationDebugger`` does the work: it
calibrates the model on the calibration photos, runs them through a debug
model in which every quantized op's output is compared with the same op in
float on the same inputs (``NumericVerify``), and reports per-tensor error
statistics. The ops are ranked by RMSE / scale, the output error measured in
quantization steps (TensorFlow's debugger guide ranks them so; pure rounding
noise is about 0.29), and ``mlir_quantize`` leaves the top
``float_fraction`` of them in float (``denylisted_nodes``); the rest stays
int8 as in the full-integer export.

Why a fixed fraction and not "the smallest set that keeps agreement on
held-out calibration photos above a level": the model's own training photos
are too easy (the head was fit on them). On grocery, even the full int8
export gave the float export's answer on all of 300 held-out training photos
while it changed 6.4 % of the test answers (benchmarks/probes/
tflite_int8_probe.json), so such a rule would keep nothing in float.
"""

from __future__ import annotations

import csv
import io
import math
import warnings

from embedclf.workflow._export._open_set_lite import open_set_tensors

__all__ = ["DEFAULT_FLOAT_FRACTION", "check_float_fraction", "mixed_quantize"]

#: The share of the checked ops kept in float by default: 20 of EfficientNet-Lite0's
#: 65 (grocery: 97.2 % top-1 agreement with the float model at 7.2 MB, against
#: 93.6 % for full int8 at 4.1 MB and 13.8 MB in float32).
DEFAULT_FLOAT_FRACTION = 0.3


def check_float_fraction(float_fraction) -> float:
    """``float_fraction`` as a float in (0, 1], or a ValueError naming it."""
    try:
        value = float(float_fraction)
    except (TypeError, ValueError):
        value = math.nan
    if not 0.0 < value <= 1.0:
        raise ValueError(
            "float_fraction (--float-fraction) is the share of the ops kept in "
            f"float by quantize='mixed', a number in (0, 1]; got {float_fraction!r}."
        )
    return value


def _ranked(debugger) -> list[dict]:
    """The debugger's checked ops, most sensitive first."""
    debugger.run()
    buf = io.StringIO()
    debugger.layer_statistics_dump(buf)
    buf.seek(0)
    rows = []
    for row in csv.DictReader(buf):
        scale = float(row["scale"])
        rmse = math.sqrt(float(row["mean_squared_error"]))
        rows.append(
            {
                "op": row["op_name"],
                "tensor": row["tensor_name"],
                "rmse_per_scale": rmse / scale if scale > 0 else math.inf,
            }
        )
    rows.sort(key=lambda r: -r["rmse_per_scale"])
    return rows


def mixed_quantize(converter, calibration, float_fraction: float, open_set=False):
    """Quantize with the most sensitive ops kept in float.

    Parameters
    ----------
    converter : tf.lite.TFLiteConverter
        Set up with ``optimizations`` and ``representative_dataset``.
    calibration : callable
        Yields the calibration inputs (also used for the error statistics).
    float_fraction : float in (0, 1]
        Share of the checked ops to keep in float, rounded up.
    open_set : bool, default=False
        Also keep every op of the open-set rule in float (not counted in
        ``float_ops``: ``_open_set_lite``).

    Returns
    -------
    flat : bytes
        The ``.tflite`` model.
    float_ops : list of dict
        The ops kept in float (``op``, ``tensor``: the output tensor's name,
        ``rmse_per_scale``), most sensitive first.
    n_checked : int
        How many ops the debugger checked (the quantizable ones).
    """
    import tensorflow as tf
    from tensorflow.lite.python.convert import mlir_quantize

    with warnings.catch_warnings():  # the debugger runs tf.lite.Interpreter
        warnings.filterwarnings("ignore", message=r"(?s).*tf\.lite\.Interpreter")
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=calibration
        )
        ranked = _ranked(debugger)
        keep = ranked[: math.ceil(float_fraction * len(ranked))]
        denied = [r["tensor"] for r in keep]
        if open_set:
            denied += open_set_tensors(debugger.calibrated_model)
        # What debugger.get_nondebug_quantized_model() runs, called directly:
        # setting debugger.options first would rebuild the debug model, which
        # fails ("Please check if the quantized model is in debug mode") when
        # every checked op is denylisted (float_fraction=1).
        flat = mlir_quantize(
            debugger.calibrated_model,
            disable_per_channel=converter._experimental_disable_per_channel,
            denylisted_nodes=denied,
            # the knn detector's TOPK_V2 is not matched by its output names;
            # no other op of the exported graphs is a TOPK_V2
            denylisted_ops=["TOPK_V2"] if open_set else None,
        )
    for r in keep:
        r["rmse_per_scale"] = round(r["rmse_per_scale"], 4)
    return flat, keep, len(ranked)
