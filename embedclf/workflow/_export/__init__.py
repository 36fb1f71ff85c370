"""Exporting a model directory for use without embedclf.

Owns: the TensorFlow SavedModel export (``_savedmodel.py``: image bytes ->
probabilities, bit-exact with ``embedclf predict``) and the open-set score as
TensorFlow ops (``_unknown.py``).

May import what :mod:`embedclf.workflow` may; these modules are the
workflow's TensorFlow importers (lazily, inside functions).
"""
