"""The release of embedclf, in a module of its own.

Modules below the top level read it from here (``from embedclf._version
import __version__``), not from ``embedclf`` itself, whose lazy re-exports
point back down at them: that would be an import circle.
"""

__version__ = "0.2.0"
