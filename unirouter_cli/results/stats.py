"""Statistics over trials: 95% t-intervals (clipped to a metric's range) and paired sign tests."""

from __future__ import annotations

import math

import numpy as np

RANGES = {"area": (0.0, 1.0), "area_50": (0.0, 0.5), "qnc": (0.0, 1.0), "qnc_cost": (0.0, math.inf),
          "aiq": (0.0, 1.0)}  # an interval of a bounded metric is clipped to its range


# ------------------------------------------------------------------------------------------------
# statistics
# ------------------------------------------------------------------------------------------------
def sign_test(a: np.ndarray, b: np.ndarray, higher_better: bool) -> tuple[int, int, float]:
    """Paired two-sided sign test of a vs b: (wins of a, losses of a, p-value); ties dropped."""
    from scipy.stats import binomtest

    d = (a - b) if higher_better else (b - a)
    d = d[np.isfinite(d)]
    wins, losses = int((d > 1e-12).sum()), int((d < -1e-12).sum())
    if wins + losses == 0:
        return wins, losses, 1.0
    return wins, losses, float(binomtest(wins, wins + losses, 0.5).pvalue)


def sign_test_min_trials(alpha: float) -> int:
    """The fewest paired trials (no ties) with which a two-sided sign test can reach ``alpha``: all n won gives
    p = 2 x 0.5^n, so n must satisfy 2 x 0.5^n < alpha (8 at alpha = 0.01, 6 at 0.05)."""
    n = 1
    while 2 * 0.5**n >= alpha:
        n += 1
    return n


def t_halfwidth(x: np.ndarray, axis: int = 0) -> np.ndarray:
    """Half-width of the 95% t-interval of the mean along ``axis`` (0 with fewer than 2 values)."""
    from scipy.stats import t as student_t

    x = np.asarray(x, dtype=float)
    n = x.shape[axis]
    if n < 2:
        return np.zeros(np.delete(x.shape, axis)) if x.ndim > 1 else np.float64(0.0)
    return student_t.ppf(0.975, n - 1) * x.std(axis=axis, ddof=1) / np.sqrt(n)


def ci95(x: np.ndarray) -> tuple[float, float, float]:
    """(mean, low, high) of the finite values: a 95% t-interval of the mean."""
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return float("nan"), float("nan"), float("nan")
    m, h = float(x.mean()), float(t_halfwidth(x))
    return m, m - h, m + h


def _clip(metric: str, lo: float, hi: float) -> tuple[float, float]:
    a, b = RANGES.get(metric, (-math.inf, math.inf))
    return (min(max(lo, a), b), min(max(hi, a), b)) if np.isfinite(lo) else (lo, hi)
