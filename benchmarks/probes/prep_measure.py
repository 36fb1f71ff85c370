import glob
import json
import time

import numpy as np
from sklearn.linear_model import LogisticRegression

from embedclf import ImageEmbedder

R = "/work/shared/data/grocery_store"
M = "/work/shared/models/efficientnet_lite0_feature_vector"


def part(s):
    p = sorted(glob.glob(f"{R}/{s}/*/*.jpg"))
    return np.array(p), np.array([x.split("/")[-2] for x in p])


(ptr, ytr), (pva, yva), (pte, yte) = part("train"), part("val"), part("test")
allp = np.concatenate([ptr, pva, pte])
grid = [0.03, 0.1, 0.3, 1]
out = {}
for name, kw, cache in [
    ("bilinear", {}, "/work/cache/grocery.h5"),
    ("bicubic", {"resample": "bicubic"}, "/tmp/h13b/prep.h5"),
    ("bilinear crop0.875", {"crop_fraction": 0.875}, "/tmp/h13b/prep.h5"),
]:
    t = time.time()
    e = ImageEmbedder(model=M, cache=cache, progress=False, **kw)
    X = e.transform(allp)
    te_ = time.time() - t
    a, b = len(ptr), len(ptr) + len(pva)
    Xtr, Xva, Xte = X[:a], X[a:b], X[b:]
    vals = {
        C: LogisticRegression(C=C, max_iter=2000).fit(Xtr, ytr).score(Xva, yva)
        for C in grid
    }
    best = max(grid, key=lambda c: (vals[c], -c))
    clf = LogisticRegression(C=best, max_iter=2000).fit(
        np.vstack([Xtr, Xva]), np.concatenate([ytr, yva])
    )
    out[name] = dict(
        val=vals,
        best_C=best,
        test=clf.score(Xte, yte),
        embed_s=te_,
        n_computed=e.n_computed_,
    )
    print(name, json.dumps(out[name]), flush=True)
    json.dump(out, open("/tmp/h13b/prep_measure.json", "w"), indent=1)
