"""The oracle: reads the pool's test labels, so it routes each prompt to the cheapest LLM that
answers it correctly. An upper bound on every router (kind ``bound``), not a router."""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from .base import Pool, Router, register_router


@register_router("oracle", "bound", "oracle: reads the test labels (upper bound on every router)",
                 needs_training_llms=False)
class OracleRouter(Router):
    def predict(self, X: np.ndarray, pool: Pool) -> np.ndarray:
        if pool.truth is None:
            raise ConfigError("the oracle needs the test labels of the pool")
        return pool.truth
