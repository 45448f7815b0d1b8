"""Probe selection: which validation ("probe") prompts a new LLM answers to join the pool.

A new LLM's cost of joining is the number of probes it must answer. A strategy picks ``n`` probes
out of the candidates (a trial's validation reserve, or a built router's probe reserve) from what
is known *before* the new LLM answers anything: the candidates' embeddings and the *training*
LLMs' errors on them. It never reads a test LLM's labels (an adaptive strategy may read only the
answers it has already asked for).

Strategies register with ``@register_strategy``; ``select_probes`` is the one entry point used by
trials (universe.py) and built routers. ``random`` is the paper's protocol and the default.

``adaptive`` is different: each new LLM gets its own probes, chosen batch by batch from its answers so far
(adaptive.py), when the pool is profiled. What ``select_probes`` returns for it is the set the routers are
*fitted* with (their hyperparameters are chosen for ``n`` answers per new LLM): ``random``'s, so the routers of an
adaptive trial are those of the random trial of the same size and only the design differs.

**No weights, by design.** Every router builds a new LLM's profile from plain means over probes
(per cluster, per neighbourhood, overall). A design that favours some candidates (e.g. the prompts
the training LLMs disagree on most) biases those means unless every router re-weights them, and a
biased profile moves the deferral curve (on mmlu-pro, picking the most disputed prompts lowered
Area by .015). ``stratified`` and ``informative`` are therefore *self-weighting*: every candidate is
a probe with probability exactly n / n_cand, so the plain mean over the probes is unbiased, and the
design only removes variance:

* ``stratified``: K-means clusters of the candidates' embeddings (``strata_count``: about ten probes
  per cluster), proportional allocation by systematic sampling over the clusters;
* ``informative``: a balanced sample (the cube method) whose probes reproduce the whole reserve's
  totals of the balancing variables: the candidates' difficulty (the training LLMs' mean error), the
  embedding-cluster shares, and the top factors of the training LLMs' residual errors (one per ten
  probes). A new LLM's errors correlate with these, so its mean error on the probes varies less
  than on random probes. With no training LLMs (``--unseen-frac 1``) there are no answers to balance
  on and ``informative`` is an embedding-only design (clusters only).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError


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


ADAPTIVE = "adaptive"


@register_strategy(ADAPTIVE, "each new LLM its own probes, batch by batch (split.probe_batch, default 10): the "
                   "V-optimal batch under foldin's posterior from its answers so far; needs the foldin router; "
                   "plain-mean routers get foldin's posterior predictive on the unasked candidates")
def adaptive_fit_probes(ctx: ProbeContext, n: int) -> np.ndarray:
    return random_probes(ctx, n)  # the probes the routers are fitted with (see the module docstring)


# --------------------------------------------------------------------------------------------
# self-weighting designs: every candidate is a probe with probability exactly n / n_cand
# --------------------------------------------------------------------------------------------
PROBES_PER_STRATUM = 10


def strata_count(n: int) -> int:
    """Embedding clusters used by ``stratified`` and ``informative``: about ten probes per cluster
    (a fixed rule, not tuned), at least 2."""
    return max(2, n // PROBES_PER_STRATUM)


def embedding_strata(X: np.ndarray, n: int, seed: int) -> np.ndarray:
    """K-means cluster (0..K-1) of each candidate's embedding, K = ``strata_count(n)``."""
    from ..routers.clusters import kmeans, nearest

    X = np.asarray(X, dtype=np.float32)
    K = min(strata_count(n), len(X))
    return nearest(X, kmeans(X, K, seed))


def systematic(order: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Systematic sampling along ``order`` with a random start: unit ``order[i]`` is taken when an
    integer falls in ((i) n/N, (i+1) n/N] + u, so each unit's inclusion probability is exactly n/N and
    any contiguous run of ``order`` gets the floor or ceiling of its proportional share."""
    N = len(order)
    pos = np.floor((np.arange(n) + rng.random()) * N / n).astype(np.int64)
    return order[np.minimum(pos, N - 1)]


def null_direction(B: np.ndarray) -> np.ndarray:
    """A unit vector u with ``B @ u = 0`` (B has more columns than rows) that does not depend on how the linear
    algebra library signs or rotates its singular vectors: the projection of a fixed vector onto B's null space.
    (A null vector read straight off an SVD flips sign between BLAS builds and CPUs, and the cube method's flight
    then takes the other branch for the same random number: other probes on another machine.)"""
    _, s, Vt = np.linalg.svd(B)
    rank = int((s > max(B.shape) * np.finfo(np.float64).eps * max(float(s.max(initial=0.0)), 1e-300)).sum())
    N = Vt[rank:]
    z = np.cos(np.arange(1, B.shape[1] + 1) * 0.7548776662466927)  # fixed, far from any sparse pattern
    u = N.T @ (N @ z)
    norm = float(np.linalg.norm(u))
    if norm < 1e-6:  # z (almost) orthogonal to the null space: its first basis vector, sign fixed
        u = N[0] * np.sign(N[0][np.argmax(np.abs(N[0]))])
        norm = float(np.linalg.norm(u))
    return u / norm


def cube(pi: np.ndarray, Xb: np.ndarray, rng: np.random.Generator, eps: float = 1e-9) -> np.ndarray:
    """Balanced sampling by the cube method (Deville and Tille 2004; fast flight phase of Chauvet and
    Tille 2006). Returns a 0/1 vector s with E[s] = pi exactly (a martingale) and, as far as the
    landing allows, sum_i s_i Xb_i / pi_i = sum_i Xb_i for every column of ``Xb`` (the balancing
    variables, most important first; the landing phase drops columns from the last). Give ``pi`` as a
    column of ``Xb`` to fix the sample size."""
    pi = np.asarray(pi, dtype=np.float64).copy()
    N = len(pi)
    perm = rng.permutation(N)  # units enter the flight in random order
    pi = pi[perm]
    A = np.asarray(Xb, dtype=np.float64)[perm] / np.maximum(pi, eps)[:, None]
    A /= np.maximum(np.abs(A).max(axis=0), eps)  # scale only: the balancing constraints are unchanged
    p = A.shape[1]
    queue = iter([i for i in range(N) if eps < pi[i] < 1 - eps])
    work: list[int] = []
    while True:
        work += [i for _, i in zip(range(p + 1 - len(work)), queue, strict=False)]
        if not work:
            break
        while p > 0 and len(work) <= p:  # landing: drop the least important balancing variable
            p -= 1
        S = np.asarray(work)
        u = null_direction(A[S, :p].T) if p else np.ones(len(S))  # keeps every balancing total
        pos, neg = u > eps, u < -eps
        with np.errstate(divide="ignore"):
            up = min(((1 - pi[S]) / u)[pos].min(initial=np.inf), (pi[S] / -u)[neg].min(initial=np.inf))
            down = min((pi[S] / u)[pos].min(initial=np.inf), ((1 - pi[S]) / -u)[neg].min(initial=np.inf))
        pi[S] = np.clip(pi[S] + (up * u if rng.random() * (up + down) < down else -down * u), 0.0, 1.0)
        work = [i for i in work if eps < pi[i] < 1 - eps]
    out = np.empty(N)
    out[perm] = np.round(pi)
    return out


@register_strategy("stratified", "spread over K-means clusters of the candidates' embeddings (about 10 probes "
                   "per cluster), proportional allocation by systematic sampling; every candidate has chance n/N")
def stratified_probes(ctx: ProbeContext, n: int) -> np.ndarray:
    rng = np.random.default_rng([ctx.seed, 12])
    strata = embedding_strata(ctx.X, n, ctx.seed)
    order = np.lexsort((rng.random(len(strata)), strata))  # clusters in turn, random order inside each
    return systematic(order, n, rng)


def error_factors(E: np.ndarray, r: int) -> np.ndarray:
    """(n_cand, 1 + r): each candidate's difficulty (the training LLMs' mean error; NaN-masked, the
    overall mean when no training LLM answered it) and its top ``r`` factor scores of the training
    LLMs' residual errors (SVD of the difficulty-removed, LLM-centred error matrix)."""
    obs = ~np.isnan(E)
    overall = float(np.nanmean(E)) if obs.any() else 0.5
    cnt = obs.sum(axis=1)
    d = np.where(cnt > 0, np.where(obs, E, 0.0).sum(axis=1) / np.maximum(cnt, 1), overall)
    R = np.where(obs, E, d[:, None]) - d[:, None]
    R -= R.mean(axis=0, keepdims=True)
    r = min(r, *R.shape)
    if r < 1:
        return d[:, None]
    U, S, _ = np.linalg.svd(R, full_matrices=False)
    return np.column_stack([d, U[:, :r] * S[:r]])


PROBES_PER_FACTOR = 10  # informative balances one residual factor per ten probes (a fixed rule)


@register_strategy("informative", "balanced sample (cube method): every candidate has chance n/N (the plain "
                   "mean stays unbiased, no weights) and the training LLMs' mean errors, difficulty and "
                   "embedding-cluster shares on the probes match the whole reserve; with no training LLMs, "
                   "embedding clusters only (= a balanced `stratified`)")
def informative_probes(ctx: ProbeContext, n: int) -> np.ndarray:
    rng = np.random.default_rng([ctx.seed, 13])
    N = len(ctx.E_train)
    pi = np.full(N, n / N)
    strata = embedding_strata(ctx.X, n, ctx.seed)
    cols = [pi, *(strata == k for k in range(strata.max()))]
    if ctx.E_train.shape[1] and (~np.isnan(ctx.E_train)).any():
        F = error_factors(ctx.E_train, min(ctx.E_train.shape[1], max(1, n // PROBES_PER_FACTOR)))
        cols = [pi, F[:, 0], *cols[1:], *F[:, 1:].T]
    s = cube(pi, np.column_stack(cols).astype(np.float64), rng)
    return np.flatnonzero(s > 0.5)
