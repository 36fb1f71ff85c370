"""The cross-fitted estimate with refitting, as ``train`` refits its choice.

``train`` chooses on the validation part and then refits the choice on
training + validation. The plain cross-fitted estimate (``_estimate``) scores
each half-choice with the model fitted on the training part alone, so it
misses what the validation photos add to the final model. Here each half's
choice is refitted on the training part + that half (training views of the
training part only, as ``train`` makes them) and scored on the other half,
with its test-time views: the whole procedure, at half the validation size.
Used with a validation part (``Plan.mode == "validation"``), when the budget
leaves room for its ``2 * REFIT_CUTS`` fits.
"""

from __future__ import annotations

import numpy as np

from embedclf.workflow._search._estimate import _halves, choose, row_scores
from embedclf.workflow._search._heldout import Config, Plan, evaluate

__all__ = ["REFIT_CUTS", "refit_cross_fitted"]

#: Random halvings of the validation part (two refits each).
REFIT_CUTS = 3


def refit_cross_fitted(s, *, random_state=0):
    """Mean accuracy over the cuts, and its spread (see the module docstring).

    ``s`` is the search state (``_search._Search``) after its steps.
    """
    plan = s.plan
    train_rows = plan.folds[0][0]
    ce = np.array([c[2] for c in s.cands])
    fam = [(c[0], c[1].get("head"), c[1].get("standardize")) for c in s.cands]
    Cs = [c[1].get("C") for c in s.cands]
    rule = s.rule_kwargs(list(range(len(s.cands))))
    y_held = s.y[plan.rows]
    per_cut = []
    for r in range(REFIT_CUTS):
        a, b = _halves(y_held, plan.halves_groups, random_state + r)
        if not len(a) or not len(b):
            continue
        accs = []
        for pick, score in ((a, b), (b, a)):
            config, params = s.cands[choose(ce, fam, Cs, rows=pick, **rule)][:2]
            fit = np.concatenate([train_rows, plan.rows[pick]])
            held = plan.rows[score]
            half = Plan("validation", [(fit, held)], held, held, plan.classes, s.y)
            out = evaluate(
                s.source,
                half,
                Config(config.backbones, config.copies),
                [params],
                test_views=(config.test_views,),
                class_weight=s.class_weight,
                n_jobs=s.n_jobs,
                views_of=train_rows,
            )
            _, ok = row_scores(out[(config.test_views, 0)], s.y[held], plan.classes)
            accs.append(float(ok.mean()))
        per_cut.append(float(np.mean(accs)))
    if not per_cut:
        return None, None
    return float(np.mean(per_cut)), float(np.std(per_cut))
