"""Cluster routers: ZeroRouter, UniRoute (K-means) and UniRoute (LearnedMap).

All three share ``Psi(h)``: each LLM's validation error per K-means cluster of the training
prompts, shrunk toward its overall validation error (``cluster_profile``). K-means (``kmeans``) is
the project's own Lloyd iteration with k-means++ seeding in float32: at one thread it is 1.3-2.7x
faster than scikit-learn's ``KMeans(n_init=1)`` on this workload (7,200 x 128 TF-IDF rows, K = 8 / 64,
measured), and candidates for K are chosen from nested clusterings of one fine K-means.
"""

from __future__ import annotations

import numpy as np

from ..protocol.metrics import area, grouped_curve
from .base import (
    FitData,
    Param,
    Pool,
    Router,
    candidates,
    capped_candidates,
    overall_error,
    selection_area,
    selection_rows,
    subset,
    validation_folds,
)
from .memo import memoised
from .optim import Labels, bce_from_prob, lbfgs, softmax
from .registry import make_router, register_router

KMEANS_ROWS = 50_000  # training prompts K-means is fitted on (all prompts are then assigned)
K_GRID = [1, 2, 4, 8, 12, 16, 24, 32, 48, 64]
ALPHA_GRID = [0.0, 2.0, 8.0, 32.0, 128.0]
LEARNEDMAP_L2_GRID = [1e-4, 1e-3, 1e-2]
K_PARAM = Param(int, low=1, auto=True, grid=True, shared="clusters.K",
                help="clusters (K = 1 is ZeroRouter)")
ALPHA_PARAM = Param(float, low=0, high=1e6, auto=True, grid=True, shared="clusters.alpha",
                    help="shrinkage of a cluster's error toward the LLM's overall error")


def cluster_profile(E_val: np.ndarray, assign: np.ndarray, K: int, alpha: float) -> np.ndarray:
    """Psi (K, m): each LLM's validation error per cluster, shrunk toward its overall error.

    Psi_k(h) = (sum of h's errors in cluster k + alpha * overall(h)) / (labels of h in k + alpha);
    a cluster with no validation label for h gets overall(h) exactly.
    """
    obs = ~np.isnan(E_val)
    onehot = np.zeros((len(assign), K), dtype=np.float64)
    onehot[np.arange(len(assign)), assign] = 1.0
    sums = onehot.T @ np.where(obs, E_val, 0.0)
    cnts = onehot.T @ obs.astype(np.float64)
    overall = overall_error(E_val)[None, :]
    denom = cnts + alpha
    with np.errstate(invalid="ignore", divide="ignore"):
        psi = (sums + alpha * overall) / denom
    return np.where(denom > 0, psi, np.broadcast_to(overall, psi.shape))


def nearest(X: np.ndarray, C: np.ndarray, batch: int = 65536) -> np.ndarray:
    """Index of the nearest centroid (squared Euclidean), batched to bound memory."""
    cn = (C * C).sum(1)
    out = np.empty(len(X), dtype=np.int64)
    for s in range(0, len(X), batch):
        xb = X[s:s + batch]
        out[s:s + batch] = np.argmin(cn[None, :] - 2.0 * (xb @ C.T), axis=1)
    return out


def _sq_dist(X: np.ndarray, C: np.ndarray) -> np.ndarray:
    return np.maximum((X * X).sum(1)[:, None] - 2.0 * (X @ C.T) + (C * C).sum(1)[None, :], 0.0)


@memoised
def kmeans(X: np.ndarray, K: int, seed: int, max_iter: int = 100, tol: float = 1e-4,
           weights: np.ndarray | None = None, batch: int = 65536) -> np.ndarray:
    """Lloyd's K-means with k-means++ seeding, float32, distances in batches of ``batch`` rows.

    K = 1 gives the (weighted) mean; K >= n returns the points. ``weights`` lets the same code
    cluster weighted centroids (used for fast model selection over K).
    """
    X = np.asarray(X, dtype=np.float32)
    if weights is None and len(X) > KMEANS_ROWS:
        X = X[subset(len(X), KMEANS_ROWS, seed)]
    n = len(X)
    w = np.ones(n, dtype=np.float64) if weights is None else np.asarray(weights, dtype=np.float64)
    if K <= 1:
        return (w @ X / w.sum())[None, :].astype(np.float32)
    if K >= n:
        return X.copy()
    rng = np.random.default_rng(seed)
    C = np.empty((K, X.shape[1]), dtype=np.float32)  # k-means++ seeding (weighted)
    C[0] = X[rng.choice(n, p=w / w.sum())]
    d2 = _sq_dist(X, C[:1])[:, 0]
    for k in range(1, K):
        p = w * d2
        tot = p.sum()
        i = rng.choice(n, p=p / tot) if tot > 0 else int(rng.integers(n))
        C[k] = X[i]
        d2 = np.minimum(d2, _sq_dist(X, C[k:k + 1])[:, 0])
    scale = float(np.mean(np.var(X, axis=0))) or 1.0
    for _ in range(max_iter):
        assign = nearest(X, C, batch)
        sums = np.zeros((K, X.shape[1]), dtype=np.float64)
        np.add.at(sums, assign, X * w[:, None]) if n < 4096 else _accumulate(sums, assign, X, w)
        cnt = np.bincount(assign, weights=w, minlength=K)
        newC = C.astype(np.float64).copy()
        nz = cnt > 0
        newC[nz] = sums[nz] / cnt[nz, None]
        if (~nz).any():  # empty cluster: restart it at the point farthest from its centroid
            far = np.argsort(-_sq_dist(X, C)[np.arange(n), assign])[: int((~nz).sum())]
            newC[~nz] = X[far]
        shift = float(((newC - C) ** 2).sum(1).max())
        C = newC.astype(np.float32)
        if shift <= tol * scale:
            break
    return C


def _accumulate(sums: np.ndarray, assign: np.ndarray, X: np.ndarray, w: np.ndarray) -> None:
    order = np.argsort(assign, kind="stable")
    bounds = np.searchsorted(assign[order], np.arange(len(sums) + 1))
    Xw = X[order] * w[order, None]
    for k in range(len(sums)):
        if bounds[k + 1] > bounds[k]:
            sums[k] = Xw[bounds[k]:bounds[k + 1]].sum(0)


def nested_kmeans(X: np.ndarray, ks: list[int], seed: int,
                  rows: np.ndarray | None = None) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Clusterings for several K from one fine K-means: coarser K cluster the fine centroids
    (weighted by size). Returns K -> (centroids, assignment of X[rows]). Used to *select* K cheaply."""
    kmax = max(ks)
    fine = kmeans(X, kmax, seed)
    fine_assign = nearest(X if rows is None else X[rows], fine)
    sizes = np.bincount(fine_assign, minlength=len(fine)).astype(np.float64)
    keep = sizes > 0
    out = {}
    for K in ks:
        if K >= len(fine):
            out[K] = (fine, fine_assign)
            continue
        Cc = kmeans(fine[keep], K, seed, weights=sizes[keep])
        map_fine = nearest(fine, Cc)
        out[K] = (Cc, map_fine[fine_assign])
    return out


# --------------------------------------------------------------------------------------------
# UniRoute (K-means) and ZeroRouter
# --------------------------------------------------------------------------------------------
@register_router
class KMeansRouter(Router):
    name = "uniroute-kmeans"
    help = "UniRoute (K-means): gamma = the LLM's validation error on the prompt's cluster"
    parameters = {"K": K_PARAM, "alpha": ALPHA_PARAM}
    needs_training_llms = False
    fit_by_default = True
    order = 2

    def __init__(self, K: int | list[int] | str = "auto", alpha: float | list[float] | str = "auto") -> None:
        super().__init__()
        self.K = K
        self.alpha = alpha

    def _candidates(self, data: FitData) -> tuple[list[int], list[float]]:
        n_val = len(data.X_val)
        ks = capped_candidates(self.K, K_GRID, n_val // 4, n_val)
        return ks, candidates(self.alpha, ALPHA_GRID)

    def _select_on_validation(self, data: FitData, ks: list[int], alphas: list[float]) -> tuple[int, float, dict]:
        """No training LLMs: the (K, alpha) with the largest mean Area over two validation folds
        (the pool profiled on one half of the validation prompts, scored on the other)."""
        clusterings = nested_kmeans(data.X_train, ks, data.seed)
        best, scores = (-np.inf, ks[0], alphas[0]), {}
        for K in ks:
            a_val = nearest(data.X_val, clusterings[K][0])
            for alpha in alphas:
                s = float(np.mean([selection_area(cluster_profile(data.E_val[p], a_val[p], K, alpha)[a_val[q]],
                                                  data.E_val[q], data.C_val[q])
                                   for p, q in validation_folds(len(data.X_val), data.seed)]))
                scores[f"K={K},alpha={alpha:g}"] = s
                if s > best[0] + 1e-9:
                    best = (s, K, alpha)
        return best[1], best[2], scores

    def _select(self, data: FitData, ks: list[int], alphas: list[float]) -> tuple[int, float, dict]:
        """The (K, alpha) with the largest Area of the training LLMs on the training prompts."""
        if data.pool_labels:
            return self._select_on_validation(data, [k for k in ks if k <= max(1, len(data.X_val) // 8)] or [1],
                                              alphas)
        best = (-np.inf, ks[0], alphas[0])
        scores: dict[str, float] = {}
        rows = selection_rows(len(data.X_train), data.E_train.shape[1], data.seed)
        clusterings = nested_kmeans(data.X_train, ks, data.seed, rows)
        E_sel, C_sel = data.E_train[rows], data.C_train[rows]
        ok = ~np.isnan(E_sel).any(axis=1)
        per_llm = C_sel.strides[0] == 0 or bool(np.all(C_sel == C_sel[:1]))
        for K in ks:
            C, a_tr = clusterings[K]
            a_val = nearest(data.X_val, C)
            if per_llm and ok.any():  # one gamma row per cluster: score the K groups directly
                onehot = np.zeros((int(ok.sum()), len(C)))
                onehot[np.arange(int(ok.sum())), a_tr[ok]] = 1.0
                ssum, cnt = onehot.T @ (1.0 - E_sel[ok]), onehot.sum(axis=0)
                keep = cnt > 0
                cost_row = np.broadcast_to(C_sel[0], (int(keep.sum()), C_sel.shape[1]))
            for alpha in alphas:
                psi = cluster_profile(data.E_val, a_val, len(C), alpha)
                if per_llm and ok.any():
                    s = area(grouped_curve(psi[keep], cost_row, ssum[keep], cnt[keep], float(C_sel[0].max())))
                else:
                    s = selection_area(psi[a_tr], E_sel, C_sel)
                scores[f"K={K},alpha={alpha:g}"] = s
                if s > best[0] + 1e-9:
                    best = (s, K, alpha)
        return best[1], best[2], scores

    def fit(self, data: FitData) -> KMeansRouter:
        key = ("uniroute-kmeans", repr(self.K), repr(self.alpha))
        if key in data.cache:  # LearnedMap reuses the clusters chosen for K-means in the same trial
            self.centroids_, self.alpha_, self.hyperparams_, self.selection_ = data.cache[key]
            return self
        ks, alphas = self._candidates(data)
        K, alpha, scores = ks[0], alphas[0], {}
        if len(ks) * len(alphas) > 1:
            K, alpha, scores = self._select(data, ks, alphas)
        C = kmeans(data.X_train, K, data.seed)  # the chosen K, fitted exactly
        self.centroids_ = np.asarray(C, dtype=np.float32)
        self.alpha_ = float(alpha)
        self.hyperparams_ = {"K": int(len(self.centroids_)), "alpha": self.alpha_}
        if data.pool_labels and scores:
            self.hyperparams_["selected_on"] = "validation-2fold"
        self.selection_ = scores
        data.cache[key] = (self.centroids_, self.alpha_, self.hyperparams_, self.selection_)
        return self

    def psi(self, pool: Pool) -> np.ndarray:
        return cluster_profile(pool.E_val, nearest(pool.X_val, self.centroids_), len(self.centroids_), self.alpha_)

    def predict(self, X: np.ndarray, pool: Pool) -> np.ndarray:
        return self.psi(pool)[nearest(X, self.centroids_)]

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        meta, _ = super().state()
        meta["alpha"] = self.alpha_
        return meta, {"centroids": self.centroids_}

    def load_state(self, meta: dict, arrays: dict[str, np.ndarray]) -> KMeansRouter:
        super().load_state(meta, arrays)
        self.centroids_ = arrays["centroids"].astype(np.float32)
        self.alpha_ = float(meta["alpha"])
        return self


@register_router
class ZeroRouter(KMeansRouter):
    """UniRoute (K-means) with K = 1 and no shrinkage: gamma(x, h) = h's validation error."""

    name = "zero"
    help = "ZeroRouter: prompt-independent, gamma = the LLM's overall validation error"
    parameters = {}
    order = 0

    def __init__(self) -> None:
        super().__init__(K=1, alpha=0.0)


# --------------------------------------------------------------------------------------------
# UniRoute (LearnedMap)
# --------------------------------------------------------------------------------------------
@register_router
class LearnedMapRouter(Router):
    name = "uniroute-learnedmap"
    help = "UniRoute (LearnedMap): gamma = softmax(theta x) . Psi(h), theta trained on training LLMs"
    parameters = {"K": K_PARAM, "alpha": ALPHA_PARAM,
                  "l2": Param(float, low=0, high=1e6, auto=True, grid=True, help="L2 penalty toward the centroid map"),
                  "beta": Param(float, low=0, low_open=True, high=1e6, help="sharpness of the initial soft assignment"),
                  "maxiter": Param(int, low=1, high=100_000, help="L-BFGS iterations")}
    fit_by_default = True
    order = 3

    def __init__(self, K: int | list[int] | str = "auto", alpha: float | list[float] | str = "auto",
                 l2: float | list[float] | str = "auto", beta: float = 20.0, maxiter: int = 100) -> None:
        super().__init__()
        self.K = K
        self.alpha = alpha
        self.l2 = l2
        self.beta = beta
        self.maxiter = maxiter

    def _logits(self, X: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.asarray(X, dtype=np.float64) @ W.T + b

    def _train(self, X: np.ndarray, E: np.ndarray, psi: np.ndarray, W0: np.ndarray, b0: np.ndarray,
               l2: float, start: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """L-BFGS from ``start`` (default: the centroid map W0, b0); the L2 penalty pulls W toward W0."""
        X = np.asarray(X, dtype=np.float32)  # loss and gradient in float32 (sums in float64)
        y = Labels(E, np.float32)
        psi32 = psi.astype(np.float32)

        def loss_grad(p: dict) -> tuple[float, dict]:
            Z = X @ p["W"].astype(np.float32).T
            Z += p["b"].astype(np.float32)
            P = softmax(Z)
            loss, dG = bce_from_prob(P @ psi32, y)
            dP = dG @ psi32.T
            dZ = P * (dP - (dP * P).sum(axis=1, keepdims=True))
            dW = dZ.T @ X + 2 * l2 * (p["W"] - W0)
            loss += l2 * float(np.sum((p["W"] - W0) ** 2))
            return loss, {"W": dW, "b": dZ.sum(axis=0, dtype=np.float64)}

        W_start, b_start = start or (W0, b0)
        out = lbfgs(loss_grad, {"W": W_start.copy(), "b": b_start.copy()}, int(self.params["maxiter"]))
        return out["W"], out["b"]

    def fit(self, data: FitData) -> LearnedMapRouter:
        km = make_router("uniroute-kmeans", K=self.params.get("K"), alpha=self.params.get("alpha")).fit(data)
        C = km.centroids_.astype(np.float64)
        beta = float(self.params["beta"])
        W0, b0 = beta * C, -0.5 * beta * (C * C).sum(axis=1)
        psi = cluster_profile(data.E_val, nearest(data.X_val, km.centroids_), len(C), km.alpha_)
        grid = candidates(self.params.get("l2"), LEARNEDMAP_L2_GRID)
        if len(C) == 1:  # one cluster: softmax is constant, nothing to learn
            W, b, l2 = W0, b0, float(grid[0])
        else:
            l2, start = float(grid[0]), None
            if len(grid) > 1:  # choose l2 on 20% of the training prompts held out from training
                rng = np.random.default_rng(data.seed)
                perm = rng.permutation(len(data.X_train))
                ho, tr = perm[: len(perm) // 5], perm[len(perm) // 5:]
                self.selection_ = {}
                best, prev = -np.inf, None
                for cand in grid:  # a path: each l2 starts from the previous one's solution
                    prev = self._train(data.X_train[tr], data.E_train[tr], psi, W0, b0, cand, prev)
                    g = softmax(self._logits(data.X_train[ho], *prev)) @ psi
                    s = selection_area(g, data.E_train[ho], data.C_train[ho])
                    self.selection_[f"l2={cand:g}"] = s
                    if s > best + 1e-9:
                        best, l2, start = s, float(cand), prev
            W, b = self._train(data.X_train, data.E_train, psi, W0, b0, l2, start)  # from the chosen l2's solution
        self.centroids_, self.alpha_ = km.centroids_, km.alpha_
        self.W_, self.b_ = W, b
        self.hyperparams_ = {"K": int(len(C)), "alpha": self.alpha_, "l2": l2}
        return self

    def predict(self, X: np.ndarray, pool: Pool) -> np.ndarray:
        psi = cluster_profile(pool.E_val, nearest(pool.X_val, self.centroids_), len(self.centroids_), self.alpha_)
        return softmax(self._logits(X, self.W_, self.b_)) @ psi

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        meta, _ = super().state()
        meta["alpha"] = self.alpha_
        return meta, {"centroids": self.centroids_, "W": self.W_, "b": self.b_}

    def load_state(self, meta: dict, arrays: dict[str, np.ndarray]) -> LearnedMapRouter:
        super().load_state(meta, arrays)
        self.centroids_ = arrays["centroids"].astype(np.float32)
        self.W_, self.b_ = arrays["W"], arrays["b"]
        self.alpha_ = float(meta["alpha"])
        return self
