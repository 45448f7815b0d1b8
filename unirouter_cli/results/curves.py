"""Curves on one normalised-cost grid: per-trial interpolation, means, differences, the single-LLM frontier."""

from __future__ import annotations

import numpy as np
import pandas as pd

GRID = np.linspace(0.0, 1.0, 201)


# ------------------------------------------------------------------------------------------------
# the data drawn (pure functions; tests check them against metrics.csv)
# ------------------------------------------------------------------------------------------------
def grid_curves(curves: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per router: (trials, quality on GRID per trial), flat extension at both ends."""
    out = {}
    for router, g in curves.groupby("router", sort=False):
        trials, ys = [], []
        for t, c in g.groupby("trial", sort=True):
            trials.append(int(t))
            ys.append(np.interp(GRID, c["cost"].to_numpy(float), c["quality"].to_numpy(float)))
        out[str(router)] = (np.array(trials), np.array(ys))
    return out


def mean_curves(curves: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per router: (mean, low, high) of quality on GRID across trials (95% t-interval)."""
    from .stats import t_halfwidth

    out = {}
    for router, (_, ys) in grid_curves(curves).items():
        m, h = ys.mean(axis=0), t_halfwidth(ys, axis=0)
        out[router] = (m, m - h, m + h)
    return out


def frontier_curves(singles: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per trial, the single-LLM frontier on GRID: the non-decreasing upper convex hull of the
    single test LLMs' (normalised cost, accuracy) points, i.e. the best random mix of single LLMs
    that knows their test accuracies; flat left of the cheapest LLM and right of the hull's end."""
    from ..protocol.metrics import upper_hull

    trials, ys = [], []
    for t, s in singles.groupby("trial", sort=True):
        s = s.sort_values(["cost", "quality"], ascending=[True, False]).drop_duplicates("cost")
        hx, hy = upper_hull(s["cost"].to_numpy(float), s["quality"].to_numpy(float))
        trials.append(int(t))
        ys.append(np.interp(GRID, hx, hy))
    return np.array(trials), np.array(ys)


def relative_to_best(trials: np.ndarray, ys: np.ndarray, best: pd.Series) -> np.ndarray:
    """Mean over trials of (curve - that trial's best single test LLM accuracy)."""
    return (ys - best.loc[trials].to_numpy(float)[:, None]).mean(axis=0)


def curve_differences(curves: pd.DataFrame, reference: str) -> dict[str, tuple[np.ndarray, ...]]:
    """Per router: (mean, low, high, n_trials) on GRID of the per-trial difference to the reference's
    curve, over the trials both have (paired; 95% t-interval)."""
    from .stats import t_halfwidth

    grids = grid_curves(curves)
    if reference not in grids:
        return {}
    t_ref, y_ref = grids[reference]
    out = {}
    for router, (t, ys) in grids.items():
        if router == reference:
            continue
        common, i, j = np.intersect1d(t, t_ref, return_indices=True)
        if len(common) == 0:
            continue
        d = ys[i] - y_ref[j]
        m, h = d.mean(axis=0), t_halfwidth(d, axis=0)
        out[router] = (m, m - h, m + h, len(common))
    return out


def paired_metric(metrics: pd.DataFrame, router: str, reference: str, metric: str) -> pd.DataFrame:
    """Per common trial: the router's and the reference's value, their difference, and whether
    both reached QNC (a difference involving an unreached QNC is censored)."""
    cols = [metric, "qnc_reached"]
    g = metrics[metrics["router"] == router].set_index("trial")[cols]
    r = metrics[metrics["router"] == reference].set_index("trial")[cols]
    j = g.merge(r, left_index=True, right_index=True, how="inner", suffixes=("", "_ref"))
    return pd.DataFrame({"diff": j[metric] - j[f"{metric}_ref"],
                         "reached": j["qnc_reached"].astype(bool) & j["qnc_reached_ref"].astype(bool)})


def category_differences(by_cat: pd.DataFrame, reference: str, metric: str = "area") -> pd.DataFrame:
    """Per (router, category): mean over trials of metric - reference's metric, wins, losses, trials."""
    ref = by_cat[by_cat["router"] == reference].set_index(["trial", "category"])[metric]
    rows = []
    for (router, category), g in by_cat[by_cat["router"] != reference].groupby(["router", "category"], sort=False):
        r = ref.xs(category, level="category")
        g = g.set_index("trial")[metric]
        common = g.index.intersection(r.index)
        d = (g.loc[common] - r.loc[common]).to_numpy(float)
        rows.append({"router": router, "category": category, "diff": float(d.mean()) if len(d) else np.nan,
                     "wins": int((d > 1e-12).sum()), "losses": int((d < -1e-12).sum()), "n": len(d)})
    return pd.DataFrame(rows, columns=["router", "category", "diff", "wins", "losses", "n"])
