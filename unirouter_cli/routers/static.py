"""Static routers (one output per LLM, so a new LLM needs retraining): MLP and matrix factorisation.

* ``clairvoyant-mlp`` / ``clairvoyant-matfac`` (kind ``reference``): trained on *every* LLM's labels
  on the training prompts, the test LLMs included - an upper reference, not a fair dynamic router;
* ``retrained-mlp`` (dynamic): retrained for each new pool on its validation answers only.
Masked log-loss, L-BFGS, fixed sizes and L2 (baselines, not tuned per trial). The loss and its gradient are
computed in float32 (sums in float64), the L-BFGS parameters kept in float64.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import ConfigError
from .base import FitData, Param, Pool, Router, overall_error
from .optim import Labels, bce_from_logits, lbfgs, logit
from .registry import register_router

MAXITER = Param(int, low=1, high=100_000, help="L-BFGS iterations")
L2 = Param(float, low=0, high=1e6, help="L2 penalty")


def _f32(p: dict, *keys: str) -> list[np.ndarray]:
    return [p[k].astype(np.float32) for k in keys]


def train_mlp(X: np.ndarray, E: np.ndarray, hidden: int, l2: float, seed: int, maxiter: int) -> dict:
    X = np.asarray(X, dtype=np.float32)
    rng = np.random.default_rng(seed)
    d, m = X.shape[1], E.shape[1]
    p0 = {"W1": rng.normal(0, np.sqrt(2.0 / d), (d, hidden)), "b1": np.zeros(hidden),
          "W2": rng.normal(0, np.sqrt(1.0 / hidden), (hidden, m)), "b2": logit(overall_error(E))}
    y = Labels(E, np.float32)

    def loss_grad(p: dict) -> tuple[float, dict]:
        W1, b1, W2, b2 = _f32(p, "W1", "b1", "W2", "b2")
        A = X @ W1
        A += b1
        H = np.maximum(A, 0)
        Z = H @ W2
        Z += b2
        loss, dZ = bce_from_logits(Z, y)
        dH = (dZ @ W2.T) * (A > 0)
        loss += l2 * float((p["W1"] ** 2).sum() + (p["W2"] ** 2).sum())
        return loss, {"W1": X.T @ dH + 2 * l2 * p["W1"], "b1": dH.sum(0, dtype=np.float64),
                      "W2": H.T @ dZ + 2 * l2 * p["W2"], "b2": dZ.sum(0, dtype=np.float64)}

    return lbfgs(loss_grad, p0, maxiter)


def mlp_forward(p: dict, X: np.ndarray) -> np.ndarray:
    H = np.maximum(np.asarray(X, dtype=np.float64) @ p["W1"] + p["b1"], 0)
    return 1.0 / (1.0 + np.exp(-(H @ p["W2"] + p["b2"])))


def train_matfac(X: np.ndarray, E: np.ndarray, rank: int, l2: float, seed: int, maxiter: int) -> dict:
    X = np.asarray(X, dtype=np.float32)
    rng = np.random.default_rng(seed)
    d, m = X.shape[1], E.shape[1]
    p0 = {"A": rng.normal(0, np.sqrt(1.0 / d), (rank, d)), "V": rng.normal(0, 0.1, (m, rank)),
          "b": logit(overall_error(E))}
    y = Labels(E, np.float32)

    def loss_grad(p: dict) -> tuple[float, dict]:
        A, V, b = _f32(p, "A", "V", "b")
        U = X @ A.T
        Z = U @ V.T
        Z += b
        loss, dZ = bce_from_logits(Z, y)
        dU = dZ @ V
        loss += l2 * float((p["A"] ** 2).sum() + (p["V"] ** 2).sum())
        return loss, {"A": dU.T @ X + 2 * l2 * p["A"], "V": dZ.T @ U + 2 * l2 * p["V"],
                      "b": dZ.sum(0, dtype=np.float64)}

    return lbfgs(loss_grad, p0, maxiter)


def matfac_forward(p: dict, X: np.ndarray) -> np.ndarray:
    Z = (np.asarray(X, dtype=np.float64) @ p["A"].T) @ p["V"].T + p["b"]
    return 1.0 / (1.0 + np.exp(-Z))


class _StaticRouter(Router):
    """A static router: one output per LLM, trained on labels of exactly the LLMs it will route to."""

    needs_training_llms = False
    train_fn: Callable[..., dict]
    forward_fn: Callable[[dict, np.ndarray], np.ndarray]
    size_key = "hidden"

    def _train(self, X: np.ndarray, E: np.ndarray, seed: int) -> dict:
        return type(self).train_fn(X, E, int(self.params[self.size_key]), float(self.params["l2"]), seed,
                                   int(self.params["maxiter"]))

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


@register_router
class ClairvoyantMLP(_Clairvoyant):
    name = "clairvoyant-mlp"
    kind = "reference"
    help = "upper reference: MLP trained on every LLM's labels on the training prompts (sees test LLMs)"
    parameters = {"hidden": Param(int, low=1, high=4096, help="hidden units"), "l2": L2, "maxiter": MAXITER}
    order = 5
    train_fn = staticmethod(train_mlp)
    forward_fn = staticmethod(mlp_forward)

    def __init__(self, hidden: int = 64, l2: float = 1e-4, maxiter: int = 100) -> None:
        super().__init__()
        self.hidden = hidden
        self.l2 = l2
        self.maxiter = maxiter


@register_router
class ClairvoyantMatFac(_Clairvoyant):
    name = "clairvoyant-matfac"
    kind = "reference"
    help = "upper reference: matrix factorisation trained on every LLM's labels on the training prompts"
    parameters = {"rank": Param(int, low=1, high=1024, help="factor rank"), "l2": L2, "maxiter": MAXITER}
    order = 6
    train_fn = staticmethod(train_matfac)
    forward_fn = staticmethod(matfac_forward)
    size_key = "rank"

    def __init__(self, rank: int = 16, l2: float = 1e-4, maxiter: int = 100) -> None:
        super().__init__()
        self.rank = rank
        self.l2 = l2
        self.maxiter = maxiter


@register_router
class RetrainedMLP(_StaticRouter):
    name = "retrained-mlp"
    help = "static MLP retrained for the new pool on the validation prompts only"
    parameters = {"hidden": Param(int, low=1, high=4096, help="hidden units"),
                  "l2": Param(float, low=0, high=1e6, help="L2 penalty"), "maxiter": MAXITER}
    order = 4
    train_fn = staticmethod(train_mlp)
    forward_fn = staticmethod(mlp_forward)

    def __init__(self, hidden: int = 32, l2: float = 1e-2, maxiter: int = 100) -> None:
        super().__init__()
        self.hidden = hidden
        self.l2 = l2
        self.maxiter = maxiter

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
