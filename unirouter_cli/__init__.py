"""unirouter: benchmarking toolkit for dynamic LLM routing (UniRoute, arXiv 2502.08773).

``load_router(DIR)`` opens a router directory written by ``unirouter router build`` (see deploy.py);
importing the package itself loads nothing heavy and touches no network.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .deploy import DeployedRouter


def load_router(path: str) -> DeployedRouter:
    """Load a router directory: ``.route(texts, ...)``, ``.probes(n)``, ``.add_llm(...)``,
    ``.remove_llm(...)``, ``.save()`` (see ``unirouter_cli.deploy.DeployedRouter``)."""
    from .deploy import load_router as _load

    return _load(path)


__all__ = ["__version__", "load_router"]
