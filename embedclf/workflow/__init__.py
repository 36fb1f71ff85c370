"""The retrain workflow as library functions.

Public: ``train`` (the whole of ``embedclf train``, returning a
``TrainResult``), ``evaluate``, ``predict``; the private subpackages hold
the families: ``_train/`` (the policy of train), ``_model_dir/`` (the model
directory), ``_report/`` (the report), ``_audit/``, ``_export/``, ``_suggest/``,
``_explain/``.

Owns: collecting labelled images from folders (``load_image_folder``, the
official ``train/ val/ test/`` layout, the hash split), tuning and fitting a
head on embedded images, the model directory (head, labels, manifest),
the report (metrics, confusion matrix, calibration, misclassified-image page),
the data-quality audit (label issues, duplicates and leaks between splits,
CleanVision image checks, outliers, class balance, lists of files to leave
out), which photos to label next (``_suggest/``), why a prediction was made
(``_explain/``: nearest training photos, class activation maps), TensorBoard
summaries, test-time views, and the SavedModel and TensorFlow Lite exports
(``_export/``).

May import: :mod:`embedclf.embedding`, :mod:`embedclf.heads`,
:mod:`embedclf.model_selection`, :mod:`embedclf.cache`, and the top-level
``exceptions`` and ``_compat``. Never :mod:`embedclf.cli`. TensorFlow only
inside ``_export/`` and ``_summaries`` (they build a TF graph and write TF
event files), imported lazily; the optional ``ai_edge_litert`` only in
``_export/_litert.py``.
"""

from embedclf._lazy import lazy_exports

_EXPORTS = {
    "EvaluationResult": "embedclf.workflow._evaluate",
    "TrainResult": "embedclf.workflow._train._result",
    "evaluate": "embedclf.workflow._evaluate",
    "predict": "embedclf.workflow._predict",
    "train": "embedclf.workflow._train._run",
    "suggest": "embedclf.workflow._suggest._suggest",
    "audit_images": "embedclf.workflow._audit._run",
    "audit_vectors": "embedclf.workflow._audit._run",
    "load_image_folder": "embedclf.workflow._datasets",
    "write_audit": "embedclf.workflow._audit._run",
    "predict_proba_views": "embedclf.workflow._train._views",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
