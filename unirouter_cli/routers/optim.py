"""Masked log-loss training shared by the gradient-trained routers: L-BFGS (scipy) over a dict of
arrays, soft labels with their observation mask, binary cross-entropy from probabilities or logits."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

EPS = 1e-4


def lbfgs(loss_grad: Callable[[dict], tuple[float, dict]], params: dict[str, np.ndarray],
          maxiter: int) -> dict[str, np.ndarray]:
    """Minimise ``loss_grad`` (returning the loss and a gradient per array) with scipy's L-BFGS-B."""
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


class Labels:
    """Soft labels with their observation mask, prepared once per training run (``dtype``: of ``E`` and ``w``;
    float32 for the routers that compute their loss in float32)."""

    def __init__(self, E: np.ndarray, dtype: type | None = None) -> None:
        self.obs = ~np.isnan(E)
        self.n = max(int(self.obs.sum()), 1)
        self.E = np.where(self.obs, E, 0.0)
        self.w = self.obs.astype(np.float64) / self.n
        if dtype is not None:
            self.E, self.w = self.E.astype(dtype), self.w.astype(dtype)


def bce_from_prob(G: np.ndarray, y: Labels) -> tuple[float, np.ndarray]:
    """Masked mean binary cross-entropy of probabilities G; returns (loss, dL/dG)."""
    Gc = np.clip(G, EPS, 1 - EPS)
    loss = -float(np.sum(y.w * (y.E * np.log(Gc) + (1 - y.E) * np.log1p(-Gc)), dtype=np.float64))
    return loss, y.w * (Gc - y.E) / (Gc * (1 - Gc))


def bce_from_logits(Z: np.ndarray, y: Labels) -> tuple[float, np.ndarray]:
    """Masked mean binary cross-entropy of logits Z (one exp: softplus(Z) = max(Z, 0) + log1p(exp(-|Z|)));
    returns (loss, summed in float64; dL/dZ in Z's dtype)."""
    e = np.exp(-np.abs(Z))
    loss = float(np.sum(y.w * (np.maximum(Z, 0) + np.log1p(e) - y.E * Z), dtype=np.float64))
    P = np.where(Z >= 0, 1, e) / (1 + e)
    return loss, y.w * (P - y.E)


def softmax(Z: np.ndarray) -> np.ndarray:
    Z = Z - Z.max(axis=1, keepdims=True)
    P = np.exp(Z)
    return P / P.sum(axis=1, keepdims=True)


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 0.01, 0.99)
    return np.log(p / (1 - p))
