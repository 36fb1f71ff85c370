"""Worker-side helpers of tests/embedding/test_dask.py.

Dask workers are separate processes that unpickle these by reference, so they
live in an importable module (``tests/`` is on ``sys.path``, which
``multiprocessing`` hands to the worker processes).
"""

from __future__ import annotations

import os

try:
    from distributed.diagnostics.plugin import WorkerPlugin
except ImportError:  # collected (doctests) without the dask extra
    WorkerPlugin = object

#: Sizes of the batches the backbone ran on in this worker process.
BATCH_SIZES: list = []


class _WrapBackbone(WorkerPlugin):
    """Wrap ``Backbone.__call__`` in a worker; ``teardown`` restores it."""

    def setup(self, worker):
        from embedclf.embedding import _backbones

        self._original = original = _backbones.Backbone.__call__
        hook = self.before_call

        def call(backbone, images):
            hook(images)
            return original(backbone, images)

        _backbones.Backbone.__call__ = call

    def teardown(self, worker):
        from embedclf.embedding import _backbones

        _backbones.Backbone.__call__ = self._original

    def before_call(self, images):
        raise NotImplementedError


class RecordBatches(_WrapBackbone):
    """Record the size of every backbone call in ``BATCH_SIZES``."""

    name = "record-batches"

    def setup(self, worker):
        BATCH_SIZES.clear()
        super().setup(worker)

    def before_call(self, images):
        BATCH_SIZES.append(len(images))


class DieOnce(_WrapBackbone):
    """The worker process that first reaches its ``at_call``-th backbone call
    dies there (``os._exit(1)``, as a killed process would), once per cluster:
    the one that creates ``flag`` first."""

    name = "die-once"

    def __init__(self, flag, at_call=2):
        self.flag = str(flag)
        self.at_call = at_call

    def setup(self, worker):
        self.calls = 0
        super().setup(worker)

    def before_call(self, images):
        self.calls += 1
        if self.calls < self.at_call:
            return
        try:
            fd = os.open(self.flag, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        os._exit(1)


def batch_sizes() -> list:
    """``BATCH_SIZES`` of this worker (for ``client.run``)."""
    return list(BATCH_SIZES)


def worker_pid() -> int:
    """The process id of this worker (for ``client.run``)."""
    return os.getpid()
