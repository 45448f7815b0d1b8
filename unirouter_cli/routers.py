"""Stage 4 - routers: one interface, one registry.

Every router estimates ``gamma(x, h)`` = P(LLM h answers prompt x wrongly) for a pool of LLMs it may
never have seen, known only through their errors on the validation prompts (``Pool.E_val``):

* ``fit(FitData)`` sees training prompts, validation prompts and the *training* LLMs' errors on
  both (reference routers also see every LLM's errors on the training prompts);
* ``predict(X, Pool)`` returns gamma for prompts ``X`` (n, D) and the pool's LLMs (n, m);
* ``state()`` / ``load_state()`` round-trip through JSON + numpy arrays (no pickle).

Hyperparameters set to ``"auto"`` are chosen inside each trial from training and validation data
only: the candidate that gives the largest deferral-curve Area for the *training* LLMs on the
*training* prompts, with the LLMs profiled on the validation prompts exactly as unseen LLMs are.
Router kinds: ``dynamic`` (the fair comparison), ``reference`` (clairvoyant: trained on the test
LLMs' labels on the training prompts; an upper reference, not a dynamic router) and ``bound``
(the oracle, which reads the test labels).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import ConfigError
from .metrics import area, deferral_curve, grouped_curve

# --------------------------------------------------------------------------------------------
# data handed to routers
# --------------------------------------------------------------------------------------------


@dataclass
class FitData:
    X_train: np.ndarray  # (n_tr, D)
    E_train: np.ndarray  # (n_tr, m_tr) errors of the training LLMs, NaN = not evaluated
    C_train: np.ndarray  # (n_tr, m_tr) per-query costs of the training LLMs
    X_val: np.ndarray  # (n_val, D)
    E_val: np.ndarray  # (n_val, m_tr)
    train_models: list[str]
    seed: int
    E_train_all: np.ndarray | None = None  # (n_tr, M): every LLM, for reference routers only
    all_models: list[str] = field(default_factory=list)
    cache: dict = field(default_factory=dict)  # results shared by routers of one trial (e.g. K-means)


@dataclass
class Pool:
    models: list[str]
    X_val: np.ndarray
    E_val: np.ndarray  # (n_val, m) validation errors: all a dynamic router knows about the pool
    truth: np.ndarray | None = None  # (n_test, m) test errors, given to the oracle only


# --------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RouterSpec:
    name: str
    factory: Callable[..., Router]
    kind: str
    help: str
    defaults: dict[str, Any]


ROUTERS: dict[str, RouterSpec] = {}


def register_router(name: str, kind: str, help: str, **defaults: Any) -> Callable:
    def deco(cls: type[Router]) -> type[Router]:
        ROUTERS[name] = RouterSpec(name, cls, kind, help, defaults)
        return cls

    return deco


def make_router(name: str, **overrides: Any) -> Router:
    if name not in ROUTERS:
        raise ConfigError(f"unknown router {name!r}: expected one of {', '.join(ROUTERS)}")
    spec = ROUTERS[name]
    params = {**spec.defaults, **{k: v for k, v in overrides.items() if v is not None}}
    r = spec.factory(**params)
    r.name, r.kind = name, spec.kind
    return r


def check_routers(names: list[str]) -> list[str]:
    for n in names:
        if n not in ROUTERS:
            raise ConfigError(f"unknown router {n!r}: expected one of {', '.join(ROUTERS)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"router listed twice in {', '.join(names)}")
    return names


class Router:
    """Base class. The constructor stores hyperparameters only; all work happens in ``fit``."""

    name = ""
    kind = "dynamic"

    def __init__(self, **params: Any) -> None:
        self.params = params
        self.hyperparams_: dict[str, Any] = {}

    def fit(self, data: FitData) -> Router:
        return self

    def predict(self, X: np.ndarray, pool: Pool) -> np.ndarray:
        raise NotImplementedError

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        return {"params": self.params, "hyperparams": self.hyperparams_}, {}

    def load_state(self, meta: dict, arrays: dict[str, np.ndarray]) -> Router:
        self.params = meta.get("params", self.params)
        self.hyperparams_ = meta.get("hyperparams", {})
        return self


# --------------------------------------------------------------------------------------------
# shared pieces
# --------------------------------------------------------------------------------------------
def masked_mean(E: np.ndarray, axis: int = 0, fallback: float | np.ndarray = 0.5) -> np.ndarray:
    obs = ~np.isnan(E)
    cnt = obs.sum(axis=axis)
    tot = np.where(obs, E, 0.0).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = tot / cnt
    return np.where(cnt > 0, out, fallback)


def overall_error(E_val: np.ndarray) -> np.ndarray:
    """Each LLM's mean validation error (0.5 if it has no validation label at all)."""
    return masked_mean(E_val, axis=0, fallback=0.5)


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
    # k-means++ seeding (weighted)
    C = np.empty((K, X.shape[1]), dtype=np.float32)
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


SELECTION_ROWS = 20_000  # at most this many training prompts score hyperparameter candidates ...
SELECTION_CELLS = 4_000_000  # ... and at most this many (prompt, LLM) cells (fewer prompts for huge pools)


def selection_rows(n: int, m: int, seed: int) -> np.ndarray:
    return subset(n, int(min(SELECTION_ROWS, max(2_000, SELECTION_CELLS // max(m, 1)))), seed)
KMEANS_ROWS = 50_000  # training prompts K-means is fitted on (all prompts are then assigned)


def subset(n: int, limit: int, seed: int) -> np.ndarray:
    """All row indices if n <= limit, else a seeded random subset of ``limit`` rows (sorted)."""
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))


def selection_area(gamma: np.ndarray, E: np.ndarray, C: np.ndarray) -> float:
    """Area of the deferral curve on the rows where every LLM has a label (selection criterion)."""
    ok = ~np.isnan(E).any(axis=1)
    if ok.sum() == 0:
        return float("nan")
    return area(deferral_curve(gamma[ok], 1.0 - E[ok], C[ok]))


def _grid(value: Any, default: list) -> list:
    if value == "auto" or value is None:
        return list(default)
    if isinstance(value, list | tuple):
        return list(value)
    return [value]


# --------------------------------------------------------------------------------------------
# UniRoute (K-means) and ZeroRouter
# --------------------------------------------------------------------------------------------
K_GRID = [1, 2, 4, 8, 12, 16, 24, 32, 48, 64]
ALPHA_GRID = [0.0, 2.0, 8.0, 32.0, 128.0]


@register_router("uniroute-kmeans", "dynamic",
                 "UniRoute (K-means): gamma = the LLM's validation error on the prompt's cluster",
                 K="auto", alpha="auto")
class KMeansRouter(Router):
    def fit(self, data: FitData) -> KMeansRouter:
        key = ("uniroute-kmeans", repr(self.params.get("K")), repr(self.params.get("alpha")))
        if key in data.cache:  # LearnedMap reuses the clusters chosen for K-means in the same trial
            self.centroids_, self.alpha_, self.hyperparams_, self.selection_ = data.cache[key]
            return self
        n_val = len(data.X_val)
        ks = [k for k in _grid(self.params.get("K"), K_GRID) if k == 1 or k <= max(1, n_val // 4)] or [1]
        alphas = _grid(self.params.get("alpha"), ALPHA_GRID)
        best = (-np.inf, ks[0], alphas[0])
        scores: dict[str, float] = {}
        if len(ks) * len(alphas) > 1:
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
        _, K, alpha = best
        C = kmeans(data.X_train, K, data.seed)  # the chosen K, fitted exactly
        self.centroids_ = np.asarray(C, dtype=np.float32)
        self.alpha_ = float(alpha)
        self.hyperparams_ = {"K": int(len(self.centroids_)), "alpha": self.alpha_}
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


@register_router("zero", "dynamic", "ZeroRouter: prompt-independent, gamma = the LLM's overall validation error",
                 K=1, alpha=0.0)
class ZeroRouter(KMeansRouter):
    """UniRoute (K-means) with K = 1: one cluster, so gamma(x, h) = h's validation error."""


# --------------------------------------------------------------------------------------------
# K-NN
# --------------------------------------------------------------------------------------------
KNN_GRID = [5, 10, 20, 40, 80, 160, 320]


def knn_errors(Xq: np.ndarray, X_val: np.ndarray, E_val: np.ndarray, ks: list[int],
               batch: int | None = None) -> dict[int, np.ndarray]:
    """For each k: mean validation error of each query's k nearest validation prompts (cosine).

    Exact search, batched over queries so the similarity block stays ~256 MB; neighbour errors are
    summed with a sparse (query x validation) indicator product, never a (query, k, LLM) array.
    """
    from scipy.sparse import csr_matrix

    n_val, m = E_val.shape
    kmax = min(max(ks), n_val)
    obs = ~np.isnan(E_val)
    E0 = np.where(obs, E_val, 0.0).astype(np.float32)
    obs_f = obs.astype(np.float32)
    fallback = overall_error(E_val)
    out = {k: np.empty((len(Xq), m)) for k in ks}
    Xv = np.asarray(X_val, dtype=np.float32)
    batch = batch or int(max(256, min(8192, (1 << 26) // max(n_val, 1))))
    for s in range(0, len(Xq), batch):
        sim = np.asarray(Xq[s:s + batch], dtype=np.float32) @ Xv.T
        b = len(sim)
        if kmax < n_val:
            top = np.argpartition(-sim, kmax - 1, axis=1)[:, :kmax]
        else:
            top = np.tile(np.arange(n_val), (b, 1))
        order = np.argsort(-np.take_along_axis(sim, top, axis=1), axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        tot = np.zeros((b, m))
        cnt = np.zeros((b, m))
        done = 0
        for k in sorted(ks):
            kk = min(k, kmax)
            if kk > done:
                seg = top[:, done:kk]
                W = csr_matrix((np.ones(seg.size, dtype=np.float32), seg.ravel(),
                                np.arange(0, seg.size + 1, kk - done)), shape=(b, n_val))
                tot += W @ E0
                cnt += W @ obs_f
                done = kk
            with np.errstate(invalid="ignore", divide="ignore"):
                v = tot / cnt
            out[k][s:s + batch] = np.where(cnt > 0, v, fallback[None, :])
    return out


@register_router("knn", "dynamic", "K-NN: gamma = the LLM's mean error on the k nearest validation prompts",
                 k="auto")
class KNNRouter(Router):
    def fit(self, data: FitData) -> KNNRouter:
        ks = [k for k in _grid(self.params.get("k"), KNN_GRID) if k <= max(1, len(data.X_val) // 4)] or [1]
        if len(ks) == 1:
            self.k_ = ks[0]
        else:
            rows = selection_rows(len(data.X_train), data.E_train.shape[1], data.seed)
            errs = knn_errors(data.X_train[rows], data.X_val, data.E_val, ks)
            self.selection_ = {f"k={k}": selection_area(errs[k], data.E_train[rows], data.C_train[rows]) for k in ks}
            self.k_ = max(ks, key=lambda k: (self.selection_[f"k={k}"], -k))
        self.hyperparams_ = {"k": int(self.k_)}
        return self

    def predict(self, X: np.ndarray, pool: Pool) -> np.ndarray:
        return knn_errors(X, pool.X_val, pool.E_val, [self.k_])[self.k_]

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        meta, _ = super().state()
        meta["k"] = int(self.k_)
        return meta, {}

    def load_state(self, meta: dict, arrays: dict[str, np.ndarray]) -> KNNRouter:
        super().load_state(meta, arrays)
        self.k_ = int(meta["k"])
        return self


# --------------------------------------------------------------------------------------------
# gradient-trained models (masked log-loss, L-BFGS): LearnedMap, MLP, matrix factorisation
# --------------------------------------------------------------------------------------------
_EPS = 1e-4


def _lbfgs(loss_grad: Callable[[dict], tuple[float, dict]], params: dict[str, np.ndarray],
           maxiter: int) -> dict[str, np.ndarray]:
    from scipy.optimize import minimize

    keys = list(params)
    shapes = [params[k].shape for k in keys]
    sizes = [int(np.prod(s)) for s in shapes]

    def unflat(v: np.ndarray) -> dict[str, np.ndarray]:
        out, o = {}, 0
        for k, s, n in zip(keys, shapes, sizes, strict=True):
            out[k] = v[o:o + n].reshape(s)
            o += n
        return out

    def fun(v: np.ndarray) -> tuple[float, np.ndarray]:
        loss, grads = loss_grad(unflat(v))
        return loss, np.concatenate([grads[k].ravel() for k in keys])

    v0 = np.concatenate([params[k].ravel().astype(np.float64) for k in keys])
    res = minimize(fun, v0, jac=True, method="L-BFGS-B", options={"maxiter": maxiter})
    return unflat(res.x)


class _Labels:
    """Soft labels with their observation mask, prepared once per training run."""

    def __init__(self, E: np.ndarray) -> None:
        self.obs = ~np.isnan(E)
        self.n = max(int(self.obs.sum()), 1)
        self.E = np.where(self.obs, E, 0.0)
        self.w = self.obs.astype(np.float64) / self.n


def _bce_from_prob(G: np.ndarray, y: _Labels) -> tuple[float, np.ndarray]:
    """Masked mean binary cross-entropy of probabilities G; returns (loss, dL/dG)."""
    Gc = np.clip(G, _EPS, 1 - _EPS)
    loss = -float(np.sum(y.w * (y.E * np.log(Gc) + (1 - y.E) * np.log1p(-Gc))))
    return loss, y.w * (Gc - y.E) / (Gc * (1 - Gc))


def _bce_from_logits(Z: np.ndarray, y: _Labels) -> tuple[float, np.ndarray]:
    loss = float(np.sum(y.w * (np.logaddexp(0, Z) - y.E * Z)))
    P = 1.0 / (1.0 + np.exp(-Z))
    return loss, y.w * (P - y.E)


def _softmax(Z: np.ndarray) -> np.ndarray:
    Z = Z - Z.max(axis=1, keepdims=True)
    P = np.exp(Z)
    return P / P.sum(axis=1, keepdims=True)


LEARNEDMAP_L2_GRID = [1e-4, 1e-3, 1e-2]


@register_router("uniroute-learnedmap", "dynamic",
                 "UniRoute (LearnedMap): gamma = softmax(theta x) . Psi(h), theta trained on training LLMs",
                 K="auto", alpha="auto", l2="auto", beta=20.0, maxiter=100)
class LearnedMapRouter(Router):
    def _logits(self, X: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.asarray(X, dtype=np.float64) @ W.T + b

    def _train(self, X: np.ndarray, E: np.ndarray, psi: np.ndarray, W0: np.ndarray, b0: np.ndarray,
               l2: float) -> tuple[np.ndarray, np.ndarray]:
        X = np.asarray(X, dtype=np.float64)
        y = _Labels(E)

        def loss_grad(p: dict) -> tuple[float, dict]:
            P = _softmax(X @ p["W"].T + p["b"])
            loss, dG = _bce_from_prob(P @ psi, y)
            dP = dG @ psi.T
            dZ = P * (dP - (dP * P).sum(axis=1, keepdims=True))
            dW = dZ.T @ X + 2 * l2 * (p["W"] - W0)
            loss += l2 * float(np.sum((p["W"] - W0) ** 2))
            return loss, {"W": dW, "b": dZ.sum(axis=0)}

        out = _lbfgs(loss_grad, {"W": W0.copy(), "b": b0.copy()}, int(self.params.get("maxiter", 100)))
        return out["W"], out["b"]

    def fit(self, data: FitData) -> LearnedMapRouter:
        km = make_router("uniroute-kmeans", K=self.params.get("K"), alpha=self.params.get("alpha")).fit(data)
        C = km.centroids_.astype(np.float64)
        beta = float(self.params.get("beta", 20.0))
        W0, b0 = beta * C, -0.5 * beta * (C * C).sum(axis=1)
        psi = cluster_profile(data.E_val, nearest(data.X_val, km.centroids_), len(C), km.alpha_)
        grid = _grid(self.params.get("l2"), LEARNEDMAP_L2_GRID)
        if len(C) == 1:  # one cluster: softmax is constant, nothing to learn
            W, b, l2 = W0, b0, float(grid[0])
        else:
            l2 = float(grid[0])
            if len(grid) > 1:  # choose l2 on 20% of the training prompts held out from training
                rng = np.random.default_rng(data.seed)
                perm = rng.permutation(len(data.X_train))
                ho, tr = perm[: len(perm) // 5], perm[len(perm) // 5:]
                self.selection_ = {}
                best = -np.inf
                for cand in grid:
                    W, b = self._train(data.X_train[tr], data.E_train[tr], psi, W0, b0, cand)
                    g = _softmax(self._logits(data.X_train[ho], W, b)) @ psi
                    s = selection_area(g, data.E_train[ho], data.C_train[ho])
                    self.selection_[f"l2={cand:g}"] = s
                    if s > best + 1e-9:
                        best, l2 = s, float(cand)
            W, b = self._train(data.X_train, data.E_train, psi, W0, b0, l2)
        self.centroids_, self.alpha_ = km.centroids_, km.alpha_
        self.W_, self.b_ = W, b
        self.hyperparams_ = {"K": int(len(C)), "alpha": self.alpha_, "l2": l2}
        return self

    def predict(self, X: np.ndarray, pool: Pool) -> np.ndarray:
        psi = cluster_profile(pool.E_val, nearest(pool.X_val, self.centroids_), len(self.centroids_), self.alpha_)
        return _softmax(self._logits(X, self.W_, self.b_)) @ psi

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


def train_mlp(X: np.ndarray, E: np.ndarray, hidden: int, l2: float, seed: int, maxiter: int) -> dict:
    X = np.asarray(X, dtype=np.float64)
    rng = np.random.default_rng(seed)
    d, m = X.shape[1], E.shape[1]
    p0 = {"W1": rng.normal(0, np.sqrt(2.0 / d), (d, hidden)), "b1": np.zeros(hidden),
          "W2": rng.normal(0, np.sqrt(1.0 / hidden), (hidden, m)), "b2": _logit(overall_error(E))}

    y = _Labels(E)

    def loss_grad(p: dict) -> tuple[float, dict]:
        A = X @ p["W1"] + p["b1"]
        H = np.maximum(A, 0)
        loss, dZ = _bce_from_logits(H @ p["W2"] + p["b2"], y)
        dH = (dZ @ p["W2"].T) * (A > 0)
        loss += l2 * float((p["W1"] ** 2).sum() + (p["W2"] ** 2).sum())
        return loss, {"W1": X.T @ dH + 2 * l2 * p["W1"], "b1": dH.sum(0),
                      "W2": H.T @ dZ + 2 * l2 * p["W2"], "b2": dZ.sum(0)}

    return _lbfgs(loss_grad, p0, maxiter)


def mlp_forward(p: dict, X: np.ndarray) -> np.ndarray:
    H = np.maximum(np.asarray(X, dtype=np.float64) @ p["W1"] + p["b1"], 0)
    return 1.0 / (1.0 + np.exp(-(H @ p["W2"] + p["b2"])))


def train_matfac(X: np.ndarray, E: np.ndarray, rank: int, l2: float, seed: int, maxiter: int) -> dict:
    X = np.asarray(X, dtype=np.float64)
    rng = np.random.default_rng(seed)
    d, m = X.shape[1], E.shape[1]
    p0 = {"A": rng.normal(0, np.sqrt(1.0 / d), (rank, d)), "V": rng.normal(0, 0.1, (m, rank)),
          "b": _logit(overall_error(E))}

    y = _Labels(E)

    def loss_grad(p: dict) -> tuple[float, dict]:
        U = X @ p["A"].T
        loss, dZ = _bce_from_logits(U @ p["V"].T + p["b"], y)
        dU = dZ @ p["V"]
        loss += l2 * float((p["A"] ** 2).sum() + (p["V"] ** 2).sum())
        return loss, {"A": dU.T @ X + 2 * l2 * p["A"], "V": dZ.T @ U + 2 * l2 * p["V"], "b": dZ.sum(0)}

    return _lbfgs(loss_grad, p0, maxiter)


def matfac_forward(p: dict, X: np.ndarray) -> np.ndarray:
    Z = (np.asarray(X, dtype=np.float64) @ p["A"].T) @ p["V"].T + p["b"]
    return 1.0 / (1.0 + np.exp(-Z))


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 0.01, 0.99)
    return np.log(p / (1 - p))


class _StaticRouter(Router):
    """A static router: one output per LLM, trained on labels of exactly the LLMs it will route to."""

    train_fn: Callable[..., dict]
    forward_fn: Callable[[dict, np.ndarray], np.ndarray]
    size_key = "hidden"

    def _train(self, X: np.ndarray, E: np.ndarray, seed: int) -> dict:
        return type(self).train_fn(X, E, int(self.params[self.size_key]), float(self.params["l2"]), seed,
                                   int(self.params.get("maxiter", 200)))

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        meta, _ = super().state()
        meta["models"] = getattr(self, "models_", [])
        return meta, dict(getattr(self, "weights_", {}))

    def load_state(self, meta: dict, arrays: dict[str, np.ndarray]) -> _StaticRouter:
        super().load_state(meta, arrays)
        self.models_ = list(meta.get("models", []))
        self.weights_ = dict(arrays)
        self.seed_ = int(meta.get("seed", 0))
        return self


class _Clairvoyant(_StaticRouter):
    def fit(self, data: FitData) -> _Clairvoyant:
        if data.E_train_all is None:
            raise ConfigError(f"{self.name} needs every LLM's training labels (a reference router)")
        self.models_ = list(data.all_models)
        self.weights_ = self._train(data.X_train, data.E_train_all, data.seed)
        self.hyperparams_ = {self.size_key: int(self.params[self.size_key]), "l2": float(self.params["l2"])}
        return self

    def predict(self, X: np.ndarray, pool: Pool) -> np.ndarray:
        cols = [self.models_.index(m) for m in pool.models]
        return type(self).forward_fn(self.weights_, X)[:, cols]


@register_router("clairvoyant-mlp", "reference",
                 "upper reference: MLP trained on every LLM's labels on the training prompts (sees test LLMs)",
                 hidden=64, l2=1e-4, maxiter=100)
class ClairvoyantMLP(_Clairvoyant):
    train_fn = staticmethod(train_mlp)
    forward_fn = staticmethod(mlp_forward)


@register_router("clairvoyant-matfac", "reference",
                 "upper reference: matrix factorisation trained on every LLM's labels on the training prompts",
                 rank=16, l2=1e-4, maxiter=100)
class ClairvoyantMatFac(_Clairvoyant):
    train_fn = staticmethod(train_matfac)
    forward_fn = staticmethod(matfac_forward)
    size_key = "rank"


@register_router("retrained-mlp", "dynamic",
                 "static MLP retrained for the new pool on the validation prompts only",
                 hidden=32, l2=1e-2, maxiter=100)
class RetrainedMLP(_StaticRouter):
    train_fn = staticmethod(train_mlp)
    forward_fn = staticmethod(mlp_forward)

    def fit(self, data: FitData) -> RetrainedMLP:
        self.seed_ = data.seed
        self.hyperparams_ = {"hidden": int(self.params["hidden"]), "l2": float(self.params["l2"])}
        return self

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        meta, arrays = super().state()
        meta["seed"] = int(self.seed_)
        return meta, arrays

    def predict(self, X: np.ndarray, pool: Pool) -> np.ndarray:
        w = self._train(pool.X_val, pool.E_val, self.seed_)
        return mlp_forward(w, X)


@register_router("oracle", "bound", "oracle: reads the test labels (upper bound on every router)")
class OracleRouter(Router):
    def predict(self, X: np.ndarray, pool: Pool) -> np.ndarray:
        if pool.truth is None:
            raise ConfigError("the oracle needs the test labels of the pool")
        return pool.truth


DEFAULT_ROUTERS = ["zero", "knn", "uniroute-kmeans", "uniroute-learnedmap", "retrained-mlp",
                   "clairvoyant-mlp", "clairvoyant-matfac", "oracle"]
