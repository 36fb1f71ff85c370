"""``python -m embedclf``: the same as the ``embedclf`` command."""

import sys

from embedclf.cli import main

if __name__ == "__main__":
    sys.exit(main())
