"""The oracle: reads the pool's test labels, so it routes each prompt to the cheapest LLM that
answers it correctly. An upper bound on every router (kind ``bound``), not a router."""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from .base import Pool, Router
from .registry import register_router


@register_router
class OracleRouter(Router):
    name = "oracle"
    kind = "bound"
    help = "oracle: reads the test labels (upper bound on every router)"
    needs_training_llms = False
    fit_by_default = True
    order = 7

    def predict(self, X: np.ndarray, pool: Pool) -> np.ndarray:
        if pool.truth is None:
            raise ConfigError("the oracle needs the test labels of the pool")
        return pool.truth
