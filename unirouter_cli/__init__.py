"""unirouter: benchmarking toolkit for dynamic LLM routing (UniRoute, arXiv 2502.08773)."""

__version__ = "0.1.0"
