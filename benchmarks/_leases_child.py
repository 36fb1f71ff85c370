"""Child process of bench_leases: embed a list of photos into a cache, timed.

Usage: _leases_child.py MODEL PATH_LIST CACHE BATCH_SIZE MODE. Single-threaded
on purpose (TensorFlow intra/inter-op threads 1, one decode thread), so two
children on two cores measure how well processes sharing a cache run side by
side. MODE ``leases`` is the code as it is; ``global_lock`` wraps every
``embed_missing`` call in one inter-process ``FileLock`` on
``<cache>.compute.lock``, as embedclf did before per-key leases.

The backbone is loaded and traced on one batch (no cache) first. Then the
child prints ``READY``, waits for a line on stdin, runs ``transform`` and
prints one JSON line: wall-clock start and end (``time.time``), seconds, CPU
seconds (all threads; about ``seconds`` when single-threaded and not
waiting), images computed (``n_computed_``), images through the backbone and
the wall-clock intervals spent in ``embed_missing`` (inside the lock in
``global_lock`` mode), from which the parent sees whether the two children
computed at the same time.
"""

import json
import os
import resource
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main():
    model, path_list, cache, batch_size, mode = sys.argv[1:6]
    batch_size = int(batch_size)
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    with open(path_list) as fh:
        paths = fh.read().splitlines()
    from embedclf import ImageEmbedder
    from embedclf.embedding import _batches
    from embedclf.embedding._backbones import backbone_image_count

    intervals = []  # (start, end) of every embed_missing call, wall clock
    plain = _batches.embed_missing

    def timed(*args):
        start = time.time()
        try:
            return plain(*args)
        finally:
            intervals.append((start, time.time()))

    _batches.embed_missing = timed
    if mode == "global_lock":
        from filelock import FileLock

        def locked(store, *args):
            if store is None:  # the warm-up, without a cache
                return timed(store, *args)
            with FileLock(store.path + ".compute.lock"):
                return timed(store, *args)

        _batches.embed_missing = locked

    def embedder(**kw):
        return ImageEmbedder(
            model, batch_size=batch_size, n_decode_threads=1, progress=False, **kw
        )

    embedder().transform(paths[:batch_size])  # load and trace
    print("READY", flush=True)
    sys.stdin.readline()
    emb = embedder(cache=cache)
    intervals.clear()
    calls = backbone_image_count()
    cpu = _cpu_seconds()
    start, t = time.time(), time.perf_counter()
    emb.transform(paths)
    seconds, end = time.perf_counter() - t, time.time()
    cpu = _cpu_seconds() - cpu
    print(
        json.dumps(
            {
                "n": len(paths),
                "start": start,
                "end": end,
                "seconds": seconds,
                "cpu_seconds": cpu,
                "computed": emb.n_computed_,
                "calls": backbone_image_count() - calls,
                "intervals": intervals,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
