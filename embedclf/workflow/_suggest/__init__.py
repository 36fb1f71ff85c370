"""Which unlabelled photos to label next (``embedclf suggest``).

``_rank`` chooses rows from vectors and probabilities (uncertainty times
distance to the labelled photos, near-duplicates left out); ``_suggest``
embeds a folder with a model directory's backbone and head and writes the
result; ``_html`` writes ``suggestions.csv`` and the thumbnail page.
"""
