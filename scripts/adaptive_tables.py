"""The paired tables of docs/adaptive.md from the runs of scripts/adaptive_curve.sh: per router and probe count,
random against adaptive at the same count and adaptive against random at twice the count (unseen pool, mean
Area; each adaptive trial paired with the random trial of the same index; W/L count trials, p is the two-sided
sign test).

    python scripts/adaptive_tables.py RUN [RUN ...]                    (prints Markdown, one table per run)
    python scripts/adaptive_tables.py --write docs/adaptive.md RUN ...  (also replaces each run's table between
                                                                         <!-- adaptive:RUN_NAME --> markers)
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


def write(doc: Path, run: Path, lines: list[str]) -> bool:
    """Replace the table between ``<!-- adaptive:NAME -->`` and ``<!-- /adaptive:NAME -->`` in ``doc``; True if
    the file changed. A missing marker pair is an error (the page names every run it shows)."""
    text = doc.read_text()
    start, end = f"<!-- adaptive:{run.name} -->\n", f"\n<!-- /adaptive:{run.name} -->"
    if start not in text or end not in text:
        raise SystemExit(f"{doc}: no {start.strip()} ... {end.strip()} block for {run}")
    head, rest = text.split(start, 1)
    new = head + start + "\n".join(line for line in lines[2:] if line) + end + rest.split(end, 1)[1]
    if new != text:
        doc.write_text(new)
    return new != text


def main() -> int:
    args = sys.argv[1:]
    doc = None
    if args[:1] == ["--write"]:
        doc, args = Path(args[1]), args[2:]
    for run in map(Path, args):
        lines = table(run)
        print("\n".join(lines))
        if doc is not None:
            print(f"{doc}: {'updated' if write(doc, run, lines) else 'unchanged'} ({run.name})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
