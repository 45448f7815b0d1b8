"""An example third-party router package for unirouter (used by tests/test_plugins.py).

A package makes its routers available to unirouter by declaring an entry point in the
``unirouter.routers`` group (see pyproject.toml here); unirouter imports it in every process that
builds routers, which runs the ``@register_router`` decorator below.
"""

from __future__ import annotations

import numpy as np

from unirouter_cli.routers import Param, Pool, Router, register_router


@register_router
class SmoothedZero(Router):
    name = "example-smoothed-zero"
    kind = "dynamic"
    help = "example plug-in: each LLM's validation error with a Beta(prior, prior) prior"
    parameters = {"prior": Param(float, low=0, high=1e6, help="pseudo-counts per outcome")}
    needs_training_llms = False

    def __init__(self, prior: float = 1.0) -> None:
        super().__init__()
        self.prior = prior

    def predict(self, X: np.ndarray, pool: Pool) -> np.ndarray:
        obs = ~np.isnan(pool.E_val)
        a = float(self.prior)
        err = (np.where(obs, pool.E_val, 0.0).sum(0) + a) / (obs.sum(0) + 2 * a)
        self.hyperparams_ = {"prior": a}
        return np.broadcast_to(err, (len(X), len(err))).copy()
