"""The data-quality audit (private): label issues, duplicates and leaks,
outliers, class balance.

``_run`` assembles the audit (:func:`audit_images`, :func:`audit_vectors`,
:func:`write_audit`), ``_labels`` asks cleanlab for label issues and
outliers, ``_duplicates`` pairs exact and near duplicates within and across
splits, ``_html`` writes the page. Part of :mod:`embedclf.workflow`; the
same import rules apply.
"""
