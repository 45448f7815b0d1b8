"""Is foldin short of the clairvoyant MLP for want of answers or of model? A diagnostic for issue 10.

For each trial, foldin is fitted once (training LLMs only) and each new LLM is folded in twice:
  * ``foldin``: on its validation answers (the protocol: ~1,200 prompts on mmlu-pro);
  * ``foldin+train``: on its validation answers *and* its answers on the training prompts (~7,100 more; data
    the protocol does not give a new LLM, only the clairvoyant reference sees them).
ZeroRouter and the clairvoyant MLP give the gap. If ``foldin+train`` reaches the clairvoyant MLP, the rest of
foldin's gap is the noise of too few answers, not a prompt model too small. Usage (~5 s per trial, one core):

    .venv/bin/python scripts/diagnostics/foldin_data_bound.py --dataset mmlu-pro --seed 3 --trials 12
"""

from __future__ import annotations

import argparse

import numpy as np

from unirouter_cli.data import load_dataset
from unirouter_cli.embed import get_embeddings
from unirouter_cli.evaluate import errors, fit_data
from unirouter_cli.metrics import curve_metrics, deferral_curve
from unirouter_cli.routers import Pool, make_router
from unirouter_cli.split import SplitConfig, make_trial


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="mmlu-pro")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--trials", type=int, default=12)
    a = ap.parse_args()
    ds = load_dataset(a.dataset)
    X = get_embeddings(ds, "tfidf")
    rows = []
    for t in range(a.trials):
        tr = make_trial(ds, SplitConfig(), a.seed, t, X)
        data = fit_data(ds, X, tr, needs_all=True)
        cols = tr.test_models
        S = ds.scores[np.ix_(tr.test, cols)].astype(np.float64)
        C = ds.cost_matrix(tr.test, cols)
        names = [ds.models[j] for j in cols]
        pool = Pool(models=names, X_val=X[tr.val], E_val=errors(ds, tr.val, cols))
        more = Pool(models=names, X_val=np.r_[X[tr.val], X[tr.train]],
                    E_val=np.r_[pool.E_val, errors(ds, tr.train, cols)])

        def area(router, p: Pool, S=S, C=C, Xt=X[tr.test]) -> float:
            g = np.asarray(router.predict(Xt, p), dtype=np.float64)
            return float(curve_metrics(deferral_curve(g, S, C), S, C)["area"])

        foldin = make_router("foldin").fit(data)
        row = {"zero": area(make_router("zero").fit(data), pool), "foldin": area(foldin, pool),
               "foldin+train": area(foldin, more),
               "clairvoyant-mlp": area(make_router("clairvoyant-mlp").fit(data), pool)}
        rows.append(row)
        print(f"trial {t}: " + ", ".join(f"{k} {v:.4f}" for k, v in row.items()), flush=True)
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    gap = mean["clairvoyant-mlp"] - mean["zero"]
    print(f"\n{a.dataset}, seed {a.seed}, {len(rows)} trials, unseen pool: mean Area (share of the zero -> "
          "clairvoyant-mlp gap)")
    print("| " + " | ".join(mean) + " |\n|" + "---|" * len(mean))
    print("| " + " | ".join(f"{v:.4f} ({(v - mean['zero']) / gap:.0%})" for v in mean.values()) + " |")


if __name__ == "__main__":
    main()
