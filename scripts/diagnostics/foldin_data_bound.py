"""Is foldin short of the clairvoyant MLP for want of answers or of model? (docs/results.md)

For each trial, foldin is fitted once (training LLMs only) and each new LLM is folded in twice:
  * ``foldin``: on its validation answers (the protocol: ~1,200 prompts on mmlu-pro);
  * ``foldin+train``: on its validation answers *and* its answers on the training prompts (~7,100 more; data
    the protocol does not give a new LLM, only the clairvoyant reference sees them).
ZeroRouter and the clairvoyant MLP give the gap. If ``foldin+train`` reaches the clairvoyant MLP, the rest of
foldin's gap is the noise of too few answers, not a prompt model too small. Usage (~5 s per trial, one core):

    .venv/bin/python scripts/diagnostics/foldin_data_bound.py --dataset mmlu-pro --seed 3 --trials 12
"""

from __future__ import annotations

import numpy as np
from trials import arguments, trials

from unirouter_cli.protocol.trial import errors
from unirouter_cli.routers import Pool, make_router


def main() -> None:
    a = arguments(__doc__.splitlines()[0], seed=3, trials=12).parse_args()
    rows = []
    for t, td in enumerate(trials(a.dataset, a.seed, a.trials, needs_all=True)):
        tr, pool = td.trial, td.pool
        more = Pool(models=pool.models, X_val=np.r_[pool.X_val, td.X[tr.train]],
                    E_val=np.r_[pool.E_val, errors(td.ds, tr.train, tr.test_models)])
        foldin = make_router("foldin").fit(td.data)
        row = {"zero": td.area(make_router("zero").fit(td.data)), "foldin": td.area(foldin),
               "foldin+train": td.area(foldin, more),
               "clairvoyant-mlp": td.area(make_router("clairvoyant-mlp").fit(td.data))}
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
