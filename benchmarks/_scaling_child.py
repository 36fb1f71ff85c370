"""Child process of bench_scaling: embed N images cold, print time and memory.

Usage: _scaling_child.py MODEL PATH_LIST CACHE BATCH_SIZE. Prints one JSON line.
The backbone is loaded and warmed up on one full batch (no cache) first, so
the timing covers only the N images. Memory: the process's peak RSS
(``ru_maxrss``, which includes loading TensorFlow and the first traced call)
and the highest RSS seen by polling ``/proc/self/status`` every 20 ms during
the timed ``transform`` alone.
"""

import json
import os
import resource
import sys
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_s():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _rss_mb():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class _RssPoller(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        self.peak = _rss_mb()
        self._done = threading.Event()

    def run(self):
        while not self._done.wait(0.02):
            self.peak = max(self.peak, _rss_mb())

    def stop(self):
        self._done.set()
        self.join()
        self.peak = max(self.peak, _rss_mb())


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
    load_before = os.getloadavg()[0]
    poller = _RssPoller()
    poller.start()
    cpu = _cpu_s()
    t = time.perf_counter()
    X = emb.transform(paths)
    seconds = time.perf_counter() - t
    cpu = _cpu_s() - cpu
    poller.stop()
    print(
        json.dumps(
            {
                "n": len(paths),
                "seconds": seconds,
                "cpu_seconds": cpu,
                "computed": emb.n_computed_,
                "shape": list(X.shape),
                "baseline_peak_rss_mb": base_peak,
                "baseline_rss_mb": base_rss,
                "peak_rss_mb": _peak_mb(),
                "transform_peak_rss_mb": poller.peak,
                "final_rss_mb": _rss_mb(),
                "loadavg_before": load_before,
                "loadavg_after": os.getloadavg()[0],
            }
        )
    )


if __name__ == "__main__":
    main()
