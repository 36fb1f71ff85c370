import glob
import json
import time

import numpy as np
from sklearn.linear_model import LogisticRegression

from embedclf import ImageEmbedder
from embedclf.workflow import predict_proba_views

R = "/work/shared/data/grocery_store"
M = "/work/shared/models/efficientnet_lite%d_feature_vector"


def part(s):
    p = sorted(glob.glob(f"{R}/{s}/*/*.jpg"))
    return np.array(p), np.array([x.split("/")[-2] for x in p])


(ptr, ytr), (pva, yva), (pte, yte) = part("train"), part("val"), part("test")
out = {}
configs = [
    ("lite0", M % 0, [0.03, 0.1, 0.3, 1]),
    ("lite0+lite2", [M % 0, M % 2], [0.1, 0.3, 1]),
]
for name, model, grid in configs:
    e = ImageEmbedder(model=model, cache="/work/cache/grocery.h5", progress=False)
    Xtr, Xva, Xte = e.transform(ptr), e.transform(pva), e.transform(pte)
    vals = {
        C: LogisticRegression(C=C, max_iter=2000).fit(Xtr, ytr).score(Xva, yva)
        for C in grid
    }
    best = max(grid, key=lambda c: (vals[c], -c))
    # views chosen on val: head fitted on train only
    head_tr = LogisticRegression(C=best, max_iter=2000).fit(Xtr, ytr)
    row = {"best_C": best}
    for views in ["none", "flip"]:
        t = time.time()
        pv, n1 = predict_proba_views(head_tr, Xva, pva, e, test_views=views)
        row[f"val_{views}"] = float(np.mean(head_tr.classes_[pv.argmax(1)] == yva))
        row[f"val_{views}_s"] = time.time() - t
    head = LogisticRegression(C=best, max_iter=2000).fit(
        np.vstack([Xtr, Xva]), np.concatenate([ytr, yva])
    )
    for views in ["none", "flip"]:
        t = time.time()
        pt, n = predict_proba_views(head, Xte, pte, e, test_views=views)
        row[f"test_{views}"] = float(np.mean(head.classes_[pt.argmax(1)] == yte))
        row[f"test_{views}_s_cold"] = time.time() - t
        row[f"test_{views}_n_computed"] = n
        t = time.time()
        predict_proba_views(head, Xte, pte, e, test_views=views)
        row[f"test_{views}_s_warm"] = time.time() - t
    out[name] = row
    print(name, json.dumps(row), flush=True)
    json.dump(out, open("/tmp/h13b/tta_measure.json", "w"), indent=1)
