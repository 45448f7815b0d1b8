"""How much could *any* fixed probe design buy the fold-in router? An upper bound (docs/probes.md).

For each trial the foldin router is fitted once (training LLMs only); its new-LLM fit is then run on
  * ``random`` probes: 100 and 200 uniformly random prompts of the validation reserve (mean of 3 draws),
  * ``doptimal``: 100 probes chosen greedily to maximise the determinant of the Bayesian information of
    foldin's own new-LLM parameters (its prompt map, prior and tau: the design foldin itself would ask for),
and scored on the test prompts (unseen pool). The D-optimal design is not a shipped strategy: it reads the
fitted router, gives prompts unequal chances (biasing every plain-mean router) and is shown only to bound
what selection can do for foldin. Usage (about 1 s per trial on one core):

    .venv/bin/python scripts/diagnostics/probe_design_bound.py --dataset mmlu-pro --seed 3 --trials 20
"""

from __future__ import annotations

import numpy as np
from trials import arguments, trials

from unirouter_cli.routers import Pool, make_router
from unirouter_cli.routers.factor_model import features, prior_precision, sigmoid


def d_optimal(F: np.ndarray, w: np.ndarray, prec: np.ndarray, n: int) -> np.ndarray:
    """Greedy Bayesian D-optimal design: each step adds the candidate with the largest w f' Info^-1 f."""
    info, chosen, free = prec.copy(), [], np.ones(len(F), dtype=bool)
    for _ in range(n):
        gain = w * np.einsum("ij,jk,ik->i", F, np.linalg.inv(info), F)
        gain[~free] = -np.inf
        i = int(np.argmax(gain))
        chosen.append(i)
        free[i] = False
        info += w[i] * np.outer(F[i], F[i])
    return np.asarray(chosen)


def main() -> None:
    ap = arguments(__doc__.splitlines()[0], seed=3, trials=20)
    ap.add_argument("--probes", type=int, default=100)
    a = ap.parse_args()
    rows = []
    for t, td in enumerate(trials(a.dataset, a.seed, a.trials)):
        router = make_router("foldin").fit(td.data)

        def area(idx: np.ndarray, router=router, td=td) -> float:
            return td.area(router, Pool(models=td.pool.models, X_val=td.pool.X_val[idx], E_val=td.pool.E_val[idx]))

        rng = np.random.default_rng([a.seed, t])
        N = len(td.trial.val)
        row = {"full": area(np.arange(N))}
        for n in (a.probes, 2 * a.probes):
            row[f"random{n}"] = float(np.mean([area(rng.permutation(N)[:n]) for _ in range(3)]))
        M, mu, cov, _ = max(router.members_, key=lambda m: len(m[0]))
        F = features(M, router.x_mean_, td.pool.X_val)
        p = sigmoid(F @ mu)
        row[f"doptimal{a.probes}"] = area(d_optimal(F, p * (1 - p), prior_precision(cov, router.tau_), a.probes))
        rows.append(row)
        print(f"trial {t}: " + ", ".join(f"{k} {v:.4f}" for k, v in row.items()), flush=True)
    keys = list(rows[0])
    mean = {k: np.mean([r[k] for r in rows]) for k in keys}
    d = np.array([r[f"doptimal{a.probes}"] - r[f"random{2 * a.probes}"] for r in rows])
    print(f"\n{a.dataset}, seed {a.seed}, {len(rows)} trials, foldin, unseen pool: mean Area")
    print("| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    print("| " + " | ".join(f"{mean[k]:.4f}" for k in keys) + " |")
    print(f"doptimal{a.probes} - random{2 * a.probes}: mean {d.mean():+.4f}, wins {(d > 0).sum()}, "
          f"losses {(d < 0).sum()}")


if __name__ == "__main__":
    main()
