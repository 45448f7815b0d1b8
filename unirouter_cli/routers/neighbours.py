"""K-NN: gamma(x, h) = h's mean error on the k nearest validation prompts of x (cosine).

The search is the project's own exact batched search rather than scikit-learn's
``NearestNeighbors``: one sorted neighbour list serves every candidate k at once, and neighbour
errors (with missing labels masked) are summed with a sparse indicator product, never a
(query, k, LLM) array.
"""

from __future__ import annotations

import numpy as np

from .base import (
    FitData,
    Param,
    Pool,
    Router,
    capped_candidates,
    overall_error,
    selection_area,
    selection_rows,
    validation_folds,
)
from .registry import register_router

KNN_GRID = [5, 10, 20, 40, 80, 160, 320]


def knn_errors(Xq: np.ndarray, X_val: np.ndarray, E_val: np.ndarray, ks: list[int],
               batch: int | None = None) -> dict[int, np.ndarray]:
    """For each k: mean validation error of each query's k nearest validation prompts (cosine).

    Exact search, batched over queries so the similarity block stays ~256 MB.
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
        top = nearest_columns(sim, kmax)
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


def rank_keys(sim: np.ndarray, cols: np.ndarray | None = None) -> np.ndarray:
    """uint64 keys that sort like (-similarity, column): all distinct, so every selection and sort algorithm
    (numpy's SIMD ones differ by CPU in how they order ties) picks the same neighbours in the same order;
    equally similar prompts are taken in index order. ``cols``: the column of each entry (default: its position)."""
    bits = (np.asarray(sim, dtype=np.float32) + np.float32(0.0)).view(np.uint32)  # (+ 0: -0.0 becomes 0.0)
    asc = np.where(bits & np.uint32(0x80000000), ~bits, bits | np.uint32(0x80000000))  # float order as integers
    key = (~asc).astype(np.uint64) << np.uint64(32)
    key |= np.arange(sim.shape[1], dtype=np.uint64)[None, :] if cols is None else cols.astype(np.uint64)
    return key


def nearest_columns(sim: np.ndarray, k: int) -> np.ndarray:
    """(rows, k) columns of each row's k largest similarities, in the order of ``rank_keys`` (largest first,
    equal similarities by column), the same on every CPU. A float partition picks the set; only rows with a tie
    at the k-th value (where partition algorithms differ in which tied columns they keep) are redone on the
    distinct keys."""
    n = sim.shape[1]
    if k < n:
        top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        kth = np.take_along_axis(sim, top, axis=1).min(axis=1)
        tied = np.flatnonzero((sim >= kth[:, None]).sum(axis=1) > k)
        if tied.size:
            top[tied] = np.argpartition(rank_keys(sim[tied]), k - 1, axis=1)[:, :k]
    else:
        top = np.tile(np.arange(n), (len(sim), 1))
    keys = rank_keys(np.take_along_axis(sim, top, axis=1), top)
    return np.take_along_axis(top, np.argsort(keys, axis=1), axis=1)


@register_router
class KNNRouter(Router):
    name = "knn"
    help = "K-NN: gamma = the LLM's mean error on the k nearest validation prompts"
    parameters = {"k": Param(int, low=1, high=1_000_000, auto=True, grid=True, help="neighbours")}
    needs_training_llms = False
    fit_by_default = True
    order = 1

    def __init__(self, k: int | list[int] | str = "auto") -> None:
        super().__init__()
        self.k = k

    def fit(self, data: FitData) -> KNNRouter:
        n_val = len(data.X_val)
        if data.pool_labels:  # no training LLMs: neighbours of one validation half among the other
            ks = capped_candidates(self.params.get("k"), KNN_GRID, n_val // 8, n_val // 2)
        else:
            ks = capped_candidates(self.params.get("k"), KNN_GRID, n_val // 4, n_val)
        if len(ks) == 1:
            self.k_ = ks[0]
        elif data.pool_labels:
            folds = validation_folds(len(data.X_val), data.seed)
            errs = [knn_errors(data.X_val[q], data.X_val[p], data.E_val[p], ks) for p, q in folds]
            self.selection_ = {f"k={k}": float(np.mean([selection_area(e[k], data.E_val[q], data.C_val[q])
                                                        for e, (_, q) in zip(errs, folds, strict=True)]))
                               for k in ks}
            self.k_ = max(ks, key=lambda k: (self.selection_[f"k={k}"], -k))
        else:
            rows = selection_rows(len(data.X_train), data.E_train.shape[1], data.seed)
            errs = knn_errors(data.X_train[rows], data.X_val, data.E_val, ks)
            self.selection_ = {f"k={k}": selection_area(errs[k], data.E_train[rows], data.C_train[rows]) for k in ks}
            self.k_ = max(ks, key=lambda k: (self.selection_[f"k={k}"], -k))
        self.hyperparams_ = {"k": int(self.k_)}
        if data.pool_labels and len(ks) > 1:
            self.hyperparams_["selected_on"] = "validation-2fold"
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
