"""Shared CLI helpers: quiet state, the error boundary, progress bars, rich console."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import typer
from rich.console import Console

from ..errors import UnirouterError


@dataclass
class _State:
    quiet: bool = False


STATE = _State()
console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def boundary(fn: Callable) -> Callable:
    """Known errors -> one line on stderr, exit code 2 (UNIROUTER_DEBUG=1 shows the traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (UnirouterError, OSError, MemoryError) as e:
            if os.environ.get("UNIROUTER_DEBUG"):
                raise
            msg = " ".join(str(e).split()) or type(e).__name__
            print(f"error: {msg}", file=sys.stderr)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            print("error: interrupted (finished trials are kept; rerun with --resume)", file=sys.stderr)
            raise typer.Exit(130) from None

    return wrapper


def info(msg: str) -> None:
    if not STATE.quiet:
        err_console.print(msg, soft_wrap=True)


def progress_factory() -> Callable[[int, str], Callable[[int], None]] | None:
    """A factory for rich progress bars (with time left), or None when quiet / nothing to show."""
    if STATE.quiet:
        return None
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    def make(total: int, label: str) -> Callable[[int], None]:
        if total == 0:
            return lambda n: None
        prog = Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TextColumn("left"), TimeRemainingColumn(), console=err_console, transient=False)
        prog.start()
        task = prog.add_task(label, total=total)
        state = {"done": 0}

        def advance(n: int) -> None:
            prog.advance(task, n)
            state["done"] += n
            if state["done"] >= total:
                prog.stop()

        return advance

    return make
