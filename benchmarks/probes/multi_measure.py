import glob
import json
import time

import numpy as np
from sklearn.linear_model import LogisticRegression

from embedclf import ImageEmbedder

R = "/work/shared/data/grocery_store"
M = "/work/shared/models/efficientnet_lite%d_feature_vector"


def part(s):
    p = sorted(glob.glob(f"{R}/{s}/*/*.jpg"))
    return np.array(p), np.array([x.split("/")[-2] for x in p])


(ptr, ytr), (pva, yva), (pte, yte) = part("train"), part("val"), part("test")
allp = np.concatenate([ptr, pva, pte])
grid = [0.01, 0.03, 0.1, 0.3, 1, 3, 10]
out = {}
for name, model, norm in [
    ("lite0", M % 0, False),
    ("lite2", M % 2, False),
    ("lite0+lite2", [M % 0, M % 2], False),
    ("lite0+lite2 norm", [M % 0, M % 2], True),
    ("lite0 norm", M % 0, True),
]:
    t = time.time()
    e = ImageEmbedder(
        model=model, cache="/work/cache/grocery.h5", normalize_each=norm, progress=False
    )
    X = e.transform(allp)
    te_ = time.time() - t
    a, b = len(ptr), len(ptr) + len(pva)
    Xtr, Xva, Xte = X[:a], X[a:b], X[b:]
    vals = {}
    for C in grid:
        vals[C] = LogisticRegression(C=C, max_iter=3000).fit(Xtr, ytr).score(Xva, yva)
    best = max(grid, key=lambda c: (vals[c], -c))
    t = time.time()
    clf = LogisticRegression(C=best, max_iter=3000).fit(
        np.vstack([Xtr, Xva]), np.concatenate([ytr, yva])
    )
    test = clf.score(Xte, yte)
    out[name] = dict(
        val=vals,
        best_C=best,
        test=test,
        dim=X.shape[1],
        embed_s=te_,
        n_computed=e.n_computed_,
    )
    print(name, json.dumps(out[name]), flush=True)
json.dump(out, open("/tmp/h13b/multi_measure.json", "w"), indent=1)
