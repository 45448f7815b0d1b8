"""``unirouter plot``, ``unirouter report`` and ``unirouter reproduce`` (filled in by report/plot)."""

from __future__ import annotations

import typer


def register(root: typer.Typer) -> None:
    return None
