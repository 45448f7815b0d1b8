"""The routing rules of a built router, as plain functions of costs, estimates and the reserve's curve.

Each prompt goes to ``argmin_h gamma(x, h) + lambda * c(h)`` over the pool (ties to the cheaper LLM).
``max_cost`` is a hard cap per prompt: only LLMs with ``c(h) <= max_cost`` are in the pool. lambda comes
from at most one of ``lambda`` itself, ``mean_cost`` (a budget on the expected mean cost per prompt over the
probe reserve: the most accurate point of the reserve's curve within it) and ``min_quality`` (the cheapest
point of that curve whose estimated accuracy reaches it); with none of them lambda is 0 (the lowest
estimated error). Option names in messages come from ``names``: the command line's flags or the HTTP
server's JSON keys. ``Routing`` holds these rules as the routing methods of ``DeployedRouter``
(router.py).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..protocol.metrics import Curve, deferral_curve

CACHE_SIZE = 512  # cached reserve estimates (per pool) and expected costs (per pool and lambda)

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


class Routing:
    """The routing methods of ``DeployedRouter`` (router.py), which provides ``models``, ``costs``,
    ``cost_unit``, ``encoder``, ``router``, ``X_reserve``, ``_pool_cols``, ``_pool`` and the ``_cache`` dict."""

    models: list[str]
    costs: np.ndarray
    cost_unit: str
    encoder: Any
    router: Any
    X_reserve: np.ndarray
    _cache: dict

    def _allowed(self, pool: list[str] | None, max_cost: float | None, names: dict[str, str]) -> np.ndarray:
        """Pool columns after the hard cap ``max_cost``."""
        cols = self._pool_cols(pool, names)
        return capped(cols, self.costs, max_cost, len(cols) == len(self.models), self.cost_unit, names)

    def estimate(self, X: np.ndarray, pool: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(gamma (n, m) estimated errors of the pool's LLMs, pool column indices) for embeddings X."""
        cols = self._pool_cols(pool)
        return self._gamma(X, cols), cols

    def _gamma(self, X: np.ndarray, cols: np.ndarray) -> np.ndarray:
        gamma = np.asarray(self.router.predict(np.asarray(X, dtype=np.float32), self._pool(cols)), dtype=np.float64)
        return np.clip(gamma, 0.0, 1.0)

    def _reserve(self, cols: np.ndarray) -> tuple[np.ndarray, Curve]:
        """(gamma on the probe reserve, its deferral curve) for the pool ``cols``; cached until the pool's
        profiles change (add_llm, remove_llm)."""
        key = ("reserve", *map(int, cols))
        hit = self._cache.get(key)
        if hit is None:
            gamma = self._gamma(self.X_reserve, cols)
            norm = float(self.costs[cols].max())  # the curve works in costs scaled to the pool's largest
            c = deferral_curve(gamma, 1.0 - gamma, np.broadcast_to(self.costs[cols][None, :] / norm, gamma.shape))
            hit = self._remember(key, (gamma, Curve(c.cost * norm, c.quality, c.lambdas / norm)))
        return hit

    def _remember(self, key: tuple, value: Any) -> Any:
        if len(self._cache) >= CACHE_SIZE:  # pools and lambdas may come from HTTP requests: bounded
            self._cache.clear()
        self._cache[key] = value
        return value

    def lambda_curve(self, pool: list[str] | None = None) -> Curve:
        """Exact deferral curve on the probe reserve of the router's own estimates.

        ``cost`` is the expected mean cost per prompt in the card's unit (not normalised), ``quality``
        the estimated accuracy (mean 1 - gamma of the chosen LLMs), ``lambdas`` where each point starts.
        """
        return self._reserve(self._pool_cols(pool))[1]

    def expected_mean_cost(self, lam: float, cols: np.ndarray) -> float:
        """Mean cost per prompt of routing the probe reserve among ``cols`` at ``lam``."""
        key = ("mean", float(lam), *map(int, cols))
        hit = self._cache.get(key)
        if hit is None:
            c = self.costs[cols]
            hit = self._remember(key, float(c[pick(self._reserve(cols)[0], c, lam)].mean()))
        return hit

    def choose_lambda(self, lam: float | None = None, mean_cost: float | None = None,
                      min_quality: float | None = None, pool: list[str] | None = None, max_cost: float | None = None,
                      names: dict[str, str] = CLI_NAMES) -> float:
        """lambda from at most one of: lambda itself, a budget (the most accurate point of the reserve's curve
        whose expected mean cost is <= mean_cost) or a quality floor (the cheapest point whose estimated quality
        on the reserve is >= min_quality); none of them: 0. The curve is that of the pool under the cap
        ``max_cost``. Inside a curve segment the midpoint lambda is used (routing.py)."""
        check_rule(lam, mean_cost, min_quality, max_cost, names, need_one=False)
        cols = self._allowed(pool, max_cost, names)
        curve = self._reserve(cols)[1] if lam is None and (mean_cost, min_quality) != (None, None) else None
        return lambda_from_curve(curve, lam, mean_cost, min_quality, self.cost_unit, names)  # type: ignore[arg-type]

    def route_embeddings(self, X: np.ndarray, lam: float, pool: list[str] | None = None
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(chosen LLM index into self.models, estimated P(correct), cost) per row of X at lambda."""
        gamma, cols = self.estimate(X, pool)
        c = self.costs[cols]
        best = pick(gamma, c, lam)
        return cols[best], 1.0 - gamma[np.arange(len(gamma)), best], c[best]

    def route(self, texts: list[str], prompt_ids: list[str] | None = None, lam: float | None = None,
              mean_cost: float | None = None, min_quality: float | None = None, max_cost: float | None = None,
              pool: list[str] | None = None, names: dict[str, str] = CLI_NAMES, ranked: bool = False) -> list[dict]:
        """One dict per text: prompt_id, model, p_correct (estimated), cost (card unit), lambda, and
        expected_mean_cost (of that lambda on the probe reserve); with ``ranked`` also ``ranking``: every LLM
        allowed, best first ({model, p_correct, cost}), the order a server falls back in.

        Give one of ``lam`` / ``mean_cost`` / ``min_quality`` (how lambda is chosen), a hard cap per prompt
        ``max_cost``, or both (routing.py)."""
        texts = [str(t) for t in texts]
        ids = [str(i) for i in (prompt_ids if prompt_ids is not None else range(len(texts)))]
        if len(ids) != len(texts):
            raise ConfigError(f"{len(ids)} prompt ids for {len(texts)} texts")
        check_rule(lam, mean_cost, min_quality, max_cost, names)
        if not self.encoder.can_embed:
            self.encoder.transform(texts)  # raises the encoder's one-line explanation
        cols = self._allowed(pool, max_cost, names)
        value = self.choose_lambda(lam, mean_cost, min_quality, pool, max_cost, names)
        expected = self.expected_mean_cost(value, cols)
        if not texts:
            return []
        gamma, c, models = self._gamma(self.encoder.transform(texts), cols), self.costs[cols], self.models
        order = ranks(gamma, c, value) if ranked else pick(gamma, c, value)[:, None]
        out = []
        for i, pid in enumerate(ids):
            j = int(order[i, 0])
            d = {"prompt_id": pid, "model": models[cols[j]], "p_correct": round(1.0 - float(gamma[i, j]), 6),
                 "cost": float(c[j]), "lambda": value, "expected_mean_cost": expected}
            if ranked:
                d["ranking"] = [{"model": models[cols[k]], "p_correct": round(1.0 - float(gamma[i, k]), 6),
                                 "cost": float(c[k])} for k in order[i].tolist()]
            out.append(d)
        return out
