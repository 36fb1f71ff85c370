"""The ``embedclf`` command line: argparse entry point, one module per verb.

Owns: parsing arguments, printing, exit codes, progress-bar and logging
choices for a terminal user. Holds no logic a Python user would also want:
each verb calls a library function of :mod:`embedclf.workflow` (or
:mod:`embedclf.embedding` / :mod:`embedclf.cache` for ``embed`` and
``cache``).

May import: every other embedclf package. Nothing imports it, except
``embedclf.__main__``.
"""

from embedclf.cli._entrypoint import list_images, main

__all__ = ["list_images", "main"]
