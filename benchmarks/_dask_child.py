"""Child process of bench_dask: one single-threaded local embedder, no Dask.

Usage: _dask_child.py MODEL PATH_LIST WARM_LIST. TensorFlow gets one intra-
and one inter-op thread (as on a ``dask worker --nthreads 1``); the backbone
is loaded and warmed up on the images of WARM_LIST first (each batch size
once). Prints ``READY``; then, for each line read on stdin (so that two
children start together), embeds the listed images with no cache and prints
one JSON line: ``seconds`` of the transform. Ends at end of input.
"""

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main():
    model, listing, warm = sys.argv[1:4]
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from embedclf import ImageEmbedder

    paths = open(listing).read().split()
    embedder = ImageEmbedder(model, progress=False)
    embedder.transform(open(warm).read().split())  # load and trace
    print("READY", flush=True)
    for _ in sys.stdin:
        start = time.perf_counter()
        embedder.transform(paths)
        print(json.dumps({"seconds": time.perf_counter() - start}), flush=True)


if __name__ == "__main__":
    main()
