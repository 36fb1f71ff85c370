"""Why a model answered what it did: nearest training photos and class
activation maps (``embedclf predict --explain``, the report's page).

``_training_index`` records the photos a head was fitted on in the model
directory (paths, content keys, labels; the vectors are read back from the
cache by key), ``_neighbours`` finds the nearest training photos of the
predicted and the runner-up class, ``_cam`` computes exact class activation
maps for a linear head on an averaged feature map, ``_html`` draws them.
"""
