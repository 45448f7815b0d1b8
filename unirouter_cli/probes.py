"""Probe selection: which validation ("probe") prompts a new LLM answers to join the pool.

A new LLM's cost of joining is the number of probes it must answer. A strategy picks ``n`` probes
out of the candidates (a trial's validation reserve, or a built router's probe reserve) from what
is known *before* the new LLM answers anything: the candidates' embeddings and the *training*
LLMs' errors on them. It never reads a test LLM's labels (an adaptive strategy may read only the
answers it has already asked for).

Strategies register with ``@register_strategy``; ``select_probes`` is the one entry point used by
trials (split.py) and built routers. ``random`` is the paper's protocol and the default.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .errors import ConfigError


@dataclass(frozen=True)
class ProbeContext:
    """What a strategy may look at: candidate embeddings and the training LLMs' errors on them."""

    X: np.ndarray | None  # (n_cand, D) embeddings of the candidate prompts (None: not needed by random)
    E_train: np.ndarray  # (n_cand, m_tr) training LLMs' errors on the candidates, NaN = not evaluated
    seed: int


STRATEGIES: dict[str, Callable[[ProbeContext, int], np.ndarray]] = {}
STRATEGY_HELP: dict[str, str] = {}


def register_strategy(name: str, help: str) -> Callable:
    def deco(fn: Callable[[ProbeContext, int], np.ndarray]) -> Callable[[ProbeContext, int], np.ndarray]:
        STRATEGIES[name] = fn
        STRATEGY_HELP[name] = help
        return fn

    return deco


def check_strategy(name: str) -> str:
    if name not in STRATEGIES:
        raise ConfigError(f"unknown probe strategy {name!r}: expected one of {', '.join(STRATEGIES)}")
    return name


def select_probes(strategy: str, n: int, ctx: ProbeContext) -> np.ndarray:
    """Sorted positions (into the candidates) of the ``n`` probes ``strategy`` picks."""
    check_strategy(strategy)
    n_cand = len(ctx.E_train)
    if n >= n_cand:
        return np.arange(n_cand)
    idx = np.asarray(STRATEGIES[strategy](ctx, n), dtype=np.int64)
    if len(idx) != n or len(np.unique(idx)) != n or idx.min() < 0 or idx.max() >= n_cand:
        raise RuntimeError(f"probe strategy {strategy} returned an invalid selection")
    return np.sort(idx)


@register_strategy("random", "uniformly at random (the paper's protocol); smaller sets nest in larger ones")
def random_probes(ctx: ProbeContext, n: int) -> np.ndarray:
    return np.random.default_rng([ctx.seed, 11]).permutation(len(ctx.E_train))[:n]
