"""Child process of bench_scaling: embed N images cold, print time and peak RSS.

Usage: _scaling_child.py MODEL PATH_LIST CACHE BATCH_SIZE. Prints one JSON line.
The backbone is loaded and warmed up on one full batch (no cache) first, so
the timing covers only the N images and the baseline includes the memory of
one batch; the peak RSS (``ru_maxrss``) is read before and after.
"""

import json
import os
import resource
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_mb():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main():
    model, path_list, cache, batch_size = sys.argv[1:5]
    with open(path_list) as fh:
        paths = fh.read().splitlines()
    from embedclf import ImageEmbedder

    ImageEmbedder(model, batch_size=int(batch_size), progress=False).transform(
        paths[: int(batch_size)]
    )
    base_peak, base_rss = _peak_mb(), _rss_mb()
    emb = ImageEmbedder(model, cache=cache, batch_size=int(batch_size), progress=False)
    t = time.perf_counter()
    X = emb.transform(paths)
    seconds = time.perf_counter() - t
    print(
        json.dumps(
            {
                "n": len(paths),
                "seconds": seconds,
                "computed": emb.n_computed_,
                "shape": list(X.shape),
                "baseline_peak_rss_mb": base_peak,
                "baseline_rss_mb": base_rss,
                "peak_rss_mb": _peak_mb(),
                "final_rss_mb": _rss_mb(),
            }
        )
    )


if __name__ == "__main__":
    main()
