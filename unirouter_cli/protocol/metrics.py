"""Deferral curves and the metrics read off them (pure numpy, no I/O).

The routing rule is ``r_lambda(x) = argmin_h gamma(x, h) + lambda * c(x, h)``. For one prompt, the
LLMs chosen as lambda falls from +inf to 0 are the vertices of the lower convex hull of the points
``(c(x, h), gamma(x, h))``, walked from the cheapest LLM towards the lowest predicted error. Every
hull edge is a breakpoint ``lambda = (gamma_from - gamma_to) / (c_to - c_from)``. Sorting all
prompts' breakpoints by lambda and accumulating their cost and quality changes gives the *exact*
deferral curve: one point per distinct breakpoint, no grid. Ties at lambda = 0 go to the cheaper LLM
(the lambda -> 0+ limit), and among equally cheap LLMs to the lower predicted error.

Conventions (documented in the README):
* cost axis: mean cost per query divided by the mean over test prompts of the largest cost in the
  pool (with per-LLM costs: the pool's most expensive LLM), so the curve lies in [0, 1];
* between curve points the curve is linear (mixing two routers at random realises it); left of the
  cheapest point and right of the most expensive point it is flat;
* Area = integral of quality over normalised cost in [0, 1]; Area(50%) = integral over [0, 0.5]
  (not rescaled, so it lies in [0, 0.5]);
* QNC = the smallest normalised cost on the curve at which its quality reaches the accuracy of the
  best single LLM of the pool (linear interpolation inside a segment); if the curve never reaches
  it, QNC = 1 and ``qnc_reached`` is False;
* AIQ (RouterBench) = Area of the non-decreasing upper convex hull of the curve points;
* APGR analogue = (Area - q_cheapest) / (q_best - q_cheapest): the share of the gap between the
  cheapest and the best single LLM the router recovers, averaged over cost (NaN if no gap).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_TOL = 1e-12


@dataclass
class Curve:
    cost: np.ndarray  # normalised, strictly increasing
    quality: np.ndarray
    lambdas: np.ndarray  # lambda at which each point starts (inf for the first), per unit of normalised cost


CHUNK_CELLS = 1 << 24  # (prompt, LLM) cells per block: bounds the hull stacks to ~64 MB


def breakpoints(gamma: np.ndarray, cost: np.ndarray) -> tuple[np.ndarray, ...]:
    """Hull walk for all prompts, in blocks of rows. Returns (start, rows, from, to, lambdas)."""
    n, m = gamma.shape
    step = max(1024, CHUNK_CELLS // max(m, 1))
    if n <= step:
        return _breakpoints(gamma, cost)
    parts = [_breakpoints(gamma[s:s + step], cost[s:s + step]) for s in range(0, n, step)]
    offs = np.arange(0, n, step)
    return (np.concatenate([p[0] for p in parts]),
            np.concatenate([p[1] + o for p, o in zip(parts, offs, strict=True)]),
            np.concatenate([p[2] for p in parts]), np.concatenate([p[3] for p in parts]),
            np.concatenate([p[4] for p in parts]))


def _breakpoints(gamma: np.ndarray, cost: np.ndarray) -> tuple[np.ndarray, ...]:
    """Lower convex hull of each row's points (cost, gamma), by a monotone chain over the LLMs in
    cost order, vectorised over prompts: one pass over the columns, O(n) work per column (plus pops).

    Only points that lower the running minimum of gamma are pushed (the others never win for any
    lambda >= 0); an equally cheap point with lower gamma replaces the top; collinear points are
    dropped (they add no curve point).
    """
    n, m = gamma.shape
    per_llm = cost.strides[0] == 0 or n == 1  # the same cost row for every prompt
    order = np.argsort(cost[0], kind="stable") if per_llm else np.argsort(cost, axis=1, kind="stable")
    c_row = cost[0]
    ar = np.arange(n)
    S = np.empty((n, m), dtype=np.int32)  # per-prompt hull stacks (column indices)
    L = np.zeros(n, dtype=np.int64)
    top_g = np.full(n, np.inf)
    top_c = np.full(n, -np.inf)

    def cost_of(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return c_row[cols] if per_llm else cost[rows, cols]

    # columns in cost order, each contiguous in memory (one strided pass instead of m of them)
    cols_in_order = np.ascontiguousarray(gamma[:, order].T) if per_llm else None
    for j in range(m):
        col = order[j] if per_llm else order[:, j]
        pg = cols_in_order[j] if per_llm else gamma[ar, col]
        pend = np.flatnonzero(pg < top_g)
        if pend.size == 0:
            continue
        pcol = np.full(pend.size, col, dtype=np.int32) if per_llm else col[pend].astype(np.int32)
        pg_p = pg[pend]
        pc_p = cost_of(pend, pcol)
        while pend.size:
            length = L[pend]
            tg, tc = top_g[pend], top_c[pend]
            pop = (length >= 1) & (tc == pc_p)
            two = np.flatnonzero((length >= 2) & ~pop)
            if two.size:
                rr = pend[two]
                a = S[rr, length[two] - 2]
                ag, ac = gamma[rr, a], cost_of(rr, a)
                cross = (tc[two] - ac) * (pg_p[two] - ag) - (tg[two] - ag) * (pc_p[two] - ac)
                pop[two] = cross <= 0
            done = ~pop
            d = pend[done]
            S[d, L[d]] = pcol[done]
            L[d] += 1
            top_g[d] = pg_p[done]
            top_c[d] = pc_p[done]
            pend, pg_p, pc_p, pcol = pend[pop], pg_p[pop], pc_p[pop], pcol[pop]
            if pend.size:
                L[pend] -= 1
                has = L[pend] > 0
                rr = pend[has]
                t = S[rr, L[rr] - 1]
                top_g[rr], top_c[rr] = gamma[rr, t], cost_of(rr, t)
                empty = pend[~has]
                top_g[empty], top_c[empty] = np.inf, -np.inf
    start = S[:, 0].astype(np.int64)
    rows, pos = np.nonzero(np.arange(m)[None, :] < (L - 1)[:, None])
    frm = S[rows, pos].astype(np.int64)
    to = S[rows, pos + 1].astype(np.int64)
    lam = (gamma[rows, frm] - gamma[rows, to]) / (cost_of(rows, to) - cost_of(rows, frm))
    return start, rows, frm, to, lam


def _group_rows(gamma: np.ndarray, score: np.ndarray, cost: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Merge prompts that share a gamma row when costs are per LLM (same hull, same breakpoints).

    Returns (gamma, cost, summed score, prompt count) per group. Cluster routers give K distinct
    rows, so their curves cost O(K m) instead of O(n m). Per-query costs are never grouped.
    """
    n = len(gamma)
    if n > 64 and (cost.strides[0] == 0 or np.all(cost == cost[:1])):
        # hash rows by a fixed random projection, then verify exact equality before merging
        proj = np.random.default_rng(20250212).standard_normal(gamma.shape[1])
        sample = gamma[:: max(1, n // 2048)] @ proj
        if len(np.unique(sample)) > len(sample) // 2:  # mostly distinct rows: grouping would not pay
            return gamma, cost, score, np.ones(n)
        _, first, inv = np.unique(gamma @ proj, return_index=True, return_inverse=True)
        inv = inv.ravel()
        uniq = gamma[first]
        if len(uniq) <= n // 2 and np.array_equal(uniq[inv], gamma):
            counts = np.bincount(inv, minlength=len(uniq)).astype(np.float64)
            order = np.argsort(inv, kind="stable")
            starts = np.r_[0, np.cumsum(counts)[:-1]].astype(np.int64)
            ssum = np.add.reduceat(score[order], starts, axis=0)
            return uniq, np.broadcast_to(cost[:1], uniq.shape), ssum, counts
    return gamma, cost, score, np.ones(n)


def deferral_curve(gamma: np.ndarray, score: np.ndarray, cost: np.ndarray) -> Curve:
    """Exact deferral curve of the rule argmin gamma + lambda * cost on a complete test table.

    gamma, score, cost: (n_prompts, n_models). Quality = mean score of the chosen LLMs.
    """
    gamma = np.asarray(gamma, dtype=np.float64)
    score = np.asarray(score, dtype=np.float64)
    cost = np.asarray(cost, dtype=np.float64)
    n = gamma.shape[0]
    if n == 0:
        raise ValueError("deferral curve needs at least one prompt")
    if not np.isfinite(gamma).all():
        raise ValueError("router returned a non-finite error estimate")
    cost = scaled_costs(cost)  # scale before any arithmetic: huge costs (1e308) never overflow
    g, c, s, w = _group_rows(gamma, score, cost)
    return grouped_curve(g, c, s, w, 1.0)


def grouped_curve(gamma: np.ndarray, cost: np.ndarray, score_sum: np.ndarray, count: np.ndarray,
                  norm: float) -> Curve:
    """Deferral curve of groups of prompts that share a gamma row (and a cost row).

    gamma, cost: (G, m); score_sum: (G, m) summed scores of the group's prompts; count: (G,)
    prompts per group; norm: the cost that maps to 1. Cluster routers use this directly.
    """
    g, c, s, w = gamma, cost, score_sum, np.asarray(count, dtype=np.float64)
    n = float(w.sum())
    start, rows, frm, to, lam = breakpoints(g, c)
    ar = np.arange(len(g))
    c0 = float((w * c[ar, start]).sum())
    q0 = float(s[ar, start].sum())
    if lam.size == 0:
        return Curve(np.array([c0 / n / norm]), np.array([q0 / n]), np.array([np.inf]))
    order = np.argsort(-lam, kind="stable")
    lam_s = lam[order]
    dcost = w[rows] * (c[rows, to] - c[rows, frm])
    dq = s[rows, to] - s[rows, frm]
    cum_c = c0 + np.cumsum(dcost[order])
    cum_q = q0 + np.cumsum(dq[order])
    # one point per distinct lambda: keep the last cumulative value of each group
    last = np.r_[lam_s[1:] != lam_s[:-1], True]
    costs = np.r_[c0, cum_c[last]] / n / norm
    quals = np.r_[q0, cum_q[last]] / n
    lams = np.r_[np.inf, lam_s[last]]
    return Curve(costs, quals, lams)


def area(curve: Curve, upto: float = 1.0) -> float:
    """Integral of quality over normalised cost in [0, upto] (flat extension at both ends)."""
    x, y = curve.cost, curve.quality
    inner = x[(x > 0) & (x < upto)]
    grid = np.r_[0.0, inner, upto]
    vals = np.interp(grid, x, y)
    return float(np.sum((grid[1:] - grid[:-1]) * (vals[1:] + vals[:-1]) / 2))


def qnc(curve: Curve, target: float) -> tuple[float, bool]:
    """Smallest normalised cost on the curve with quality >= target; (1.0, False) if never reached."""
    x, y = curve.cost, curve.quality
    hit = np.flatnonzero(y >= target - 1e-12)
    if hit.size == 0:
        return 1.0, False
    i = int(hit[0])
    if i == 0:
        return float(min(x[0], 1.0)), True
    x0, x1, y0, y1 = x[i - 1], x[i], y[i - 1], y[i]
    t = (target - y0) / (y1 - y0) if y1 != y0 else 1.0
    return float(min(x0 + t * (x1 - x0), 1.0)), True


def upper_hull(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Non-decreasing upper convex hull of points sorted by x (RouterBench's AIQ envelope)."""
    keep = y >= np.maximum.accumulate(y) - 1e-15  # only running-max points can be on it
    xs, ys = x[keep], y[keep]
    hx: list[float] = []
    hy: list[float] = []
    for px, py in zip(xs.tolist(), ys.tolist(), strict=True):
        while len(hx) >= 2 and (hx[-1] - hx[-2]) * (py - hy[-2]) - (hy[-1] - hy[-2]) * (px - hx[-2]) >= 0:
            hx.pop()
            hy.pop()
        hx.append(px)
        hy.append(py)
    return np.asarray(hx), np.asarray(hy)


def aiq(curve: Curve) -> float:
    hx, hy = upper_hull(curve.cost, curve.quality)
    return area(Curve(hx, hy, np.zeros_like(hx)))


def cost_norm(cost: np.ndarray) -> float:
    """The cost that maps to 1: the mean over prompts of the largest cost in the pool, computed
    after scaling by the table's largest cost so that extreme values (1e308) cannot overflow."""
    cost = np.asarray(cost, dtype=np.float64)
    if cost.ndim == 2 and len(cost) and cost.strides[0] == 0:
        cost = cost[:1]  # per-LLM costs: every prompt has the same largest cost
    top = float(cost.max())
    if not np.isfinite(top) or top <= 0:
        raise ValueError("costs must be positive and finite")
    return float((cost.max(axis=1) / top).mean()) * top


def scaled_costs(cost: np.ndarray) -> np.ndarray:
    """Costs divided by ``cost_norm``; per-LLM costs (one row broadcast over prompts) stay a
    broadcast view, which keeps the per-LLM fast paths (one cost row, grouped gamma rows)."""
    cost = np.asarray(cost, dtype=np.float64)
    norm = cost_norm(cost)
    if cost.ndim == 2 and len(cost) and cost.strides[0] == 0:
        return np.broadcast_to(cost[0] / norm, cost.shape)
    return cost / norm


def single_points(score: np.ndarray, cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(normalised cost, accuracy) of always using each single LLM of the pool."""
    return scaled_costs(cost).mean(axis=0), score.mean(axis=0)


def curve_metrics(curve: Curve, score: np.ndarray, cost: np.ndarray) -> dict[str, float]:
    """Area, Area(50%), QNC, AIQ and APGR of a curve against the pool's single LLMs."""
    sc, sq = single_points(score, cost)
    best = float(sq.max())
    cheap = float(sq[np.argmin(sc)])
    a = area(curve)
    q, reached = qnc(curve, best)
    gap = best - cheap
    return {
        "area": a,
        "area_50": area(curve, 0.5),
        "qnc": q,
        "qnc_reached": bool(reached),
        "aiq": aiq(curve),
        "apgr": (a - cheap) / gap if gap > 1e-12 else float("nan"),
        "best_single": best,
        "max_quality": float(curve.quality.max()),
    }
