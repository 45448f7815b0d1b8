"""The routing rules of a built router, as plain functions of costs, estimates and the reserve's curve.

Each prompt goes to ``argmin_h gamma(x, h) + lambda * c(h)`` over the pool (ties to the cheaper LLM).
``max_cost`` is a hard cap per prompt: only LLMs with ``c(h) <= max_cost`` are in the pool. lambda comes
from at most one of ``lambda`` itself, ``mean_cost`` (a budget on the expected mean cost per prompt over the
probe reserve: the most accurate point of the reserve's curve within it) and ``min_quality`` (the cheapest
point of that curve whose estimated accuracy reaches it); with none of them lambda is 0 (the lowest
estimated error). Option names in messages come from ``names``: the command line's flags or the HTTP
server's JSON keys.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ConfigError
from ..protocol.metrics import Curve

CLI_NAMES = {"lambda": "--lambda", "mean_cost": "--mean-cost", "max_cost": "--max-cost",
             "min_quality": "--min-quality", "pool": "--pool"}


def check_rule(lam: float | None, mean_cost: float | None, min_quality: float | None, max_cost: float | None,
               names: dict[str, str], need_one: bool = True) -> None:
    """At most one of lambda / mean_cost / min_quality; with ``need_one``, one of them or max_cost."""
    given = [names[k] for k, v in (("lambda", lam), ("mean_cost", mean_cost), ("min_quality", min_quality))
             if v is not None]
    if len(given) > 1:
        raise ConfigError(f"give at most one of {names['lambda']}, {names['mean_cost']}, {names['min_quality']} "
                          f"(got {', '.join(given)})")
    if need_one and not given and max_cost is None:
        raise ConfigError(f"give one of {names['lambda']}, {names['mean_cost']}, {names['min_quality']}, or "
                          f"{names['max_cost']} (a cap per prompt; then lambda is 0)")


def capped(cols: np.ndarray, costs: np.ndarray, max_cost: float | None, whole_pool: bool, unit: str,
           names: dict[str, str]) -> np.ndarray:
    """The pool columns whose cost is at most ``max_cost`` (all of them when None); none: ConfigError."""
    if max_cost is None:
        return cols
    if isinstance(max_cost, bool) or not (math.isfinite(max_cost) and max_cost > 0):
        raise ConfigError(f"{names['max_cost']} {max_cost}: expected a positive number ({unit})")
    keep = cols[costs[cols] <= max_cost * (1 + 1e-9)]
    if keep.size == 0:
        raise ConfigError(f"{names['max_cost']} {max_cost:g}: no LLM{'' if whole_pool else ' of the pool'} costs "
                          f"that little (the cheapest costs {costs[cols].min():.4g} {unit})")
    return keep


def lambda_from_curve(curve: Curve, lam: float | None, mean_cost: float | None, min_quality: float | None,
                      unit: str, names: dict[str, str]) -> float:
    """lambda from the rule given (``check_rule`` first); inside a curve segment, its midpoint."""
    if lam is not None:
        if not (math.isfinite(lam) and lam >= 0):
            raise ConfigError(f"{names['lambda']} {lam}: expected a number >= 0 (0 = always the lowest estimated "
                              "error)")
        return float(lam)
    if mean_cost is None and min_quality is None:
        return 0.0
    if mean_cost is not None:
        if not (math.isfinite(mean_cost) and mean_cost > 0):
            raise ConfigError(f"{names['mean_cost']} {mean_cost}: expected a positive number ({unit})")
        ok = np.flatnonzero(curve.cost <= mean_cost * (1 + 1e-9))
        if ok.size == 0:
            raise ConfigError(f"{names['mean_cost']} {mean_cost:g} is below the cheapest LLM's cost "
                              f"{curve.cost[0]:.4g} ({unit})")
        i = int(ok[-1])
    else:
        assert min_quality is not None
        if not (math.isfinite(min_quality) and 0 <= min_quality <= 1):
            raise ConfigError(f"{names['min_quality']} {min_quality}: expected a number in [0, 1]")
        ok = np.flatnonzero(curve.quality >= min_quality - 1e-12)
        if ok.size == 0:
            raise ConfigError(f"{names['min_quality']} {min_quality:g} is above the best estimated quality on the "
                              f"probe prompts ({curve.quality.max():.4f}, at lambda 0)")
        i = int(ok[0])
    lams = curve.lambdas
    if i == len(lams) - 1:
        return 0.0
    hi, lo = lams[i], lams[i + 1]
    return float(2 * lo if not np.isfinite(hi) else (hi + lo) / 2)


def ranks(gamma: np.ndarray, c: np.ndarray, lam: float) -> np.ndarray:
    """(n, m) pool positions per row, best first by gamma + lam * c; ties to the cheaper LLM."""
    order = np.argsort(c, kind="stable")
    return order[np.argsort(gamma[:, order] + lam * c[order][None, :], axis=1, kind="stable")]


def pick(gamma: np.ndarray, c: np.ndarray, lam: float) -> np.ndarray:
    """The best pool position per row (the first column of ``ranks``)."""
    order = np.argsort(c, kind="stable")
    return order[np.argmin(gamma[:, order] + lam * c[order][None, :], axis=1)]
