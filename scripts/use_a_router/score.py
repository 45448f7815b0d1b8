"""Realised accuracy and mean real cost of route files, on the held-out prompts every LLM answered."""

import sys

import pandas as pd

outcomes = pd.read_parquet("new-outcomes.parquet")
S, C = (outcomes.pivot(index="prompt_id", columns="model", values=v) for v in ("score", "cost"))
S, C = S[S.notna().all(axis=1)], C[S.notna().all(axis=1)]
best = S.mean().idxmax()
print(f"| routing | accuracy | mean cost (USD) | share routed to {best} |\n|---|---|---|---|")
print(f"| best single LLM ({best}) | {S[best].mean():.3f} | {C[best].mean():.6f} | |")
for f in sys.argv[1:]:
    r = pd.read_json(f, lines=True, dtype={"prompt_id": str}).set_index("prompt_id").loc[S.index]
    acc = pd.Series([S.at[p, m] for p, m in r.model.items()]).mean()
    cost = pd.Series([C.at[p, m] for p, m in r.model.items()]).mean()
    print(f"| `{f}` (lambda {r['lambda'].iloc[0]:.4g}) | {acc:.3f} | {cost:.6f} | {(r.model == best).mean():.0%} |")
