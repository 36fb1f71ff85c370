"""The data-quality audit (private): label issues, duplicates and leaks,
image problems, outliers, class balance, and what to do next.

``_run`` assembles the audit (:func:`audit_images`, :func:`audit_vectors`,
:func:`write_audit`), ``_labels`` asks cleanlab for label issues and
outliers, ``_duplicates`` pairs exact and near duplicates within and across
splits (``_hash_pairs``: by perceptual hash), ``_images`` runs
CleanVision's image checks, ``_next`` says what to do next and writes the
lists for ``train --exclude``, ``_write`` and ``_html`` write the files.
Part of :mod:`embedclf.workflow`; the same import rules apply.
"""
