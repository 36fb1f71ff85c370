"""Exporting a model directory for use without embedclf.

Owns: what can be exported and the graph after the pixels (``_graph.py``),
the open-set score as TensorFlow ops (``_unknown.py``), the TensorFlow
SavedModel export (``_savedmodel.py``: image bytes -> probabilities,
bit-exact with ``embedclf predict``), the TensorFlow Lite export
(``_tflite.py``: uint8 pixels -> probabilities, ``labels.txt``,
``preprocessing.json``; int8 calibration ``_calibration.py``, mixed
int8/float ``_mixed.py``, the open-set rule in int8 and mixed
``_open_set_lite.py``) and running such an export with LiteRT
(``_litert.py``).

May import what :mod:`embedclf.workflow` may; these modules are the
workflow's TensorFlow importers (lazily, inside functions), and
``_litert.py`` the only importer of the optional ``ai_edge_litert``.
"""
