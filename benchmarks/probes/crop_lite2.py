import glob
import json
import time

import numpy as np
from sklearn.linear_model import LogisticRegression

from embedclf import EmbeddingCache, ImageEmbedder
from embedclf.embedding._backbones import resolve_backbone
from embedclf.embedding._images import content_key, read_image_bytes

R = "/work/shared/data/grocery_store"
M = "/work/shared/models/efficientnet_lite%d_feature_vector"
SHARED = "/work/cache/grocery.h5"


def part(s):
    p = sorted(glob.glob(f"{R}/{s}/*/*.jpg"))
    return np.array(p), np.array([x.split("/")[-2] for x in p])


(ptr, ytr), (pva, yva), (pte, yte) = part("train"), part("val"), part("test")
allp = np.concatenate([ptr, pva, pte])
# 1. copy Lite0 crop-0.875 vectors computed in /tmp/h13b/prep.h5 into the shared cache
e0 = ImageEmbedder(model=M % 0, crop_fraction=0.875)
ns = e0._namespace(resolve_backbone(M % 0))
keys = list(dict.fromkeys(content_key(read_image_bytes(p)) for p in allp))
vecs, found = EmbeddingCache("/tmp/h13b/prep.h5").get(ns, keys)
shared = EmbeddingCache(SHARED)
_, have = shared.get(ns, keys)  # copied rows are idempotent by key: no lock needed
todo = [i for i in range(len(keys)) if found[i] and not have[i]]
if todo:
    shared.put(ns, [keys[i] for i in todo], vecs[todo])
shared.compact()
print("copied lite0 crop rows", len(todo), int(found.sum()), flush=True)
# 2. Lite2 with the crop, all parts, into the shared cache; val decision + test
out = {}
for name, model in [
    ("lite2 crop0.875", M % 2),
    ("lite0+lite2 crop0.875", [M % 0, M % 2]),
]:
    t = time.time()
    e = ImageEmbedder(model=model, cache=SHARED, crop_fraction=0.875, progress=False)
    X = e.transform(allp)
    te_ = time.time() - t
    a, b = len(ptr), len(ptr) + len(pva)
    Xtr, Xva, Xte = X[:a], X[a:b], X[b:]
    grid = [0.03, 0.1, 0.3, 1]
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
    json.dump(out, open("/tmp/h13b/crop_lite2.json", "w"), indent=1)
