"""The paired tables of docs/adaptive.md from the runs of scripts/adaptive_curve.sh: per router and probe count,
random against adaptive at the same count and adaptive against random at twice the count (unseen pool, mean
Area; each adaptive trial paired with the random trial of the same index; W/L count trials, p is the two-sided
sign test).

    python scripts/adaptive_tables.py RUN [RUN ...]      (prints Markdown, one table per run)
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
from scipy.stats import binomtest

ROUTERS = ["zero", "knn", "uniroute-kmeans", "foldin"]


def table(run: Path) -> list[str]:
    m = pd.read_csv(run / "metrics.csv")
    m = m[m["pool"] == "unseen"]
    A = m.pivot_table(index="trial", columns=["router", "probe_strategy", "n_val"], values="area")
    sizes = sorted(m["n_val"].unique())
    out = [f"{run.name}: {m['trial'].nunique()} trials", "",
           "| router | probes | random | adaptive | adaptive - random (W/L) | random, 2x probes | "
           "adaptive - random 2x (W/L) |", "|---|---|---|---|---|---|---|"]
    for r in ROUTERS:
        for n in sizes:
            a, b = A[(r, "adaptive", n)], A[(r, "random", n)]
            d = a - b
            wins, losses = int((d > 0).sum()), int((d < 0).sum())
            row = f"| {r} | {n} | {b.mean():.4f} | {a.mean():.4f} | {d.mean():+.4f} ({wins}W/{losses}L) |"
            if 2 * n in sizes:
                c = A[(r, "random", 2 * n)]
                e = a - c
                w, lost = int((e > 0).sum()), int((e < 0).sum())
                p = binomtest(w, w + lost).pvalue if w + lost else 1.0
                row += f" {c.mean():.4f} | {e.mean():+.4f} ({w}W/{lost}L, p={p:.2g}) |"
            else:
                row += " | |"
            out.append(row)
    return out + [""]


def main() -> int:
    for run in sys.argv[1:]:
        print("\n".join(table(Path(run))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
