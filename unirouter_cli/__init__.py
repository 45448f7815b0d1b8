"""unirouter: benchmarking toolkit for dynamic LLM routing (UniRoute, arXiv 2502.08773).

The subpackages follow the pipeline: ``data`` (correctness tables) -> ``embed`` (prompt embeddings) ->
``protocol`` (trials, probes, metrics) -> ``routers`` -> ``runs`` (run directories) -> ``results`` (reports,
figures); ``serving`` uses a built router outside the benchmark loop; ``cli`` is the ``unirouter`` command.

``load_router(DIR)`` opens a router directory written by ``unirouter router build`` (see serving/router.py);
importing the package itself loads nothing heavy and touches no network.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .serving.router import DeployedRouter


def load_router(path: str) -> DeployedRouter:
    """Load a router directory: ``.route(texts, ...)``, ``.probes(n)``, ``.add_llm(...)``,
    ``.remove_llm(...)``, ``.save()`` (see ``unirouter_cli.serving.router.DeployedRouter``)."""
    from .serving.router import load_router as _load

    return _load(path)


__all__ = ["__version__", "load_router"]
