"""The retrain workflow as library functions.

Public: ``train`` (the whole of ``embedclf train``, returning a
``TrainResult``), ``evaluate``, ``predict``; the private subpackages hold
the families: ``_train/`` (the policy of train), ``_model_dir/`` (the model
directory), ``_report/`` (the report), plus ``_audit*``, ``_export*``.

Owns: collecting labelled images from folders (``load_image_folder``, the
official ``train/ val/ test/`` layout, the hash split), tuning and fitting a
head on embedded images, the model directory (head, labels, manifest),
the report (metrics, confusion matrix, calibration, misclassified-image page),
the data-quality audit (label issues, duplicates and leaks between splits,
outliers, class balance), TensorBoard summaries, test-time views, and the
SavedModel export.

May import: :mod:`embedclf.embedding`, :mod:`embedclf.heads`,
:mod:`embedclf.model_selection`, :mod:`embedclf.cache`, and the top-level
``exceptions`` and ``_compat``. Never :mod:`embedclf.cli`. TensorFlow only
inside ``_export`` and ``_summaries`` (they build a TF graph and write TF
event files), imported lazily.
"""

from embedclf._lazy import lazy_exports

_EXPORTS = {
    "EvaluationResult": "embedclf.workflow._predict",
    "TrainResult": "embedclf.workflow._train._run",
    "evaluate": "embedclf.workflow._predict",
    "predict": "embedclf.workflow._predict",
    "train": "embedclf.workflow._train._run",
    "audit_images": "embedclf.workflow._audit",
    "audit_vectors": "embedclf.workflow._audit",
    "load_image_folder": "embedclf.workflow._datasets",
    "write_audit": "embedclf.workflow._audit",
    "predict_proba_views": "embedclf.workflow._train._views",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
