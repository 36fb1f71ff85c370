"""The only module that imports private scikit-learn names.

A scikit-learn upgrade that moves them touches this file alone.
"""

from sklearn.base import _fit_context
from sklearn.utils._param_validation import (
    HasMethods,
    Interval,
    RealNotInt,
    StrOptions,
)

__all__ = ["HasMethods", "Interval", "RealNotInt", "StrOptions", "_fit_context"]
