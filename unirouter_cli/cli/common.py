"""Shared CLI helpers: quiet state, the error boundary, progress bars, rich console."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import typer
from rich.console import Console

from .. import __version__
from ..errors import UnirouterError, printable


class SafeConsole(Console):
    """A rich console that escapes control characters in every string it renders (table cells included)."""

    def render_str(self, text: str, **kwargs: Any) -> Any:
        return super().render_str(printable(text), **kwargs)

    def on_broken_pipe(self) -> None:
        """The reader of stdout went away (``| head``): the command's boundary ends quietly."""
        self.quiet = True
        raise BrokenPipeError


def _stdout_closed() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush does not fail again on the broken pipe."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


MAX_JOBS = 256  # --jobs: worker processes on one machine


@dataclass
class _State:
    quiet: bool = False


STATE = _State()
# Tables piped to a file or another program keep their full width (rich would cut them to 80 columns).
console = SafeConsole(highlight=False, width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 160)
err_console = SafeConsole(stderr=True, highlight=False)


def click_exceptions():  # noqa: ANN201 - a module
    """Click's exceptions module: typer >= 0.20 vendors click as ``typer._click``; older typer uses click."""
    try:
        from typer._click import exceptions
    except ImportError:
        from click import exceptions
    return exceptions


def _click_flow() -> tuple[type[BaseException], ...]:
    """Click's own control-flow exceptions (usage errors, exits), which the root command prints."""
    ex = click_exceptions()
    out: list[type[BaseException]] = [getattr(typer, n) for n in ("Exit", "Abort") if hasattr(typer, n)]
    return tuple(out + [getattr(ex, n) for n in ("ClickException", "Abort", "Exit") if hasattr(ex, n)])


_CLICK_FLOW = _click_flow()


def boundary(fn: Callable) -> Callable:
    """The one error boundary of every command.

    - a known error (``UnirouterError``: bad data, options, run directory, download), a file system
      error (``OSError``: missing file, permission, full disk) or running out of memory: one line
      ``error: ...`` on stderr, exit code 2;
    - ``SystemExit`` raised inside the command (a plug-in or library calling ``sys.exit``): one line, exit
      code 2, never a silent end;
    - Ctrl-C: one line, exit code 130;
    - stdout's reader gone (``| head``): no message, exit code 141, as a shell reports a process ended by SIGPIPE;
    - anything else is a bug in unirouter: one line ``error: internal error (this is a bug): ...``
      naming a file that holds the traceback, exit code 1.

    ``UNIROUTER_DEBUG=1`` re-raises instead, so the traceback shows.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except _CLICK_FLOW:  # usage errors and exits: the root command prints them
            raise
        except BrokenPipeError:  # stdout's reader stopped reading (`| head`): quiet, exit 141 as after SIGPIPE
            _stdout_closed()
            raise typer.Exit(141) from None
        except (UnirouterError, OSError, MemoryError) as e:
            if os.environ.get("UNIROUTER_DEBUG"):
                raise
            print(f"error: {_one_line(e)}", file=sys.stderr)
            raise typer.Exit(2) from None
        except SystemExit as e:  # sys.exit inside a command: a plug-in or library, never unirouter itself
            if os.environ.get("UNIROUTER_DEBUG"):
                raise
            print(printable(f"error: the command was ended by SystemExit({e.code!r}) raised inside it (a router "
                            "plug-in or a library called sys.exit); its results are incomplete", keep=""),
                  file=sys.stderr)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            print("error: interrupted (files already written are complete; nothing is half-written)", file=sys.stderr)
            raise typer.Exit(130) from None
        except Exception as e:  # noqa: BLE001 - the boundary: a bug gets a short line and a saved traceback
            if os.environ.get("UNIROUTER_DEBUG"):
                raise
            where = _save_traceback(e)
            print(f"error: internal error (this is a bug): {type(e).__name__}: {_one_line(e)[:200]}; "
                  f"traceback written to {where} (UNIROUTER_DEBUG=1 shows it)", file=sys.stderr)
            raise typer.Exit(1) from None

    return wrapper


def _one_line(e: BaseException) -> str:
    """The message of ``e`` on one line, control characters (newlines, terminal escapes) made visible."""
    if isinstance(e, OSError) and e.filename is not None and e.strerror:
        target = f" -> {e.filename2}" if e.filename2 is not None else ""
        msg = f"{e.filename}{target}: {e.strerror}"
    elif isinstance(e, MemoryError):
        msg = f"out of memory{(': ' + str(e)) if str(e) else ''}"
    else:
        msg = str(e) or type(e).__name__
    return printable(" ".join(msg.split()), keep="")


def _save_traceback(e: BaseException) -> str:
    """Write the traceback of ``e`` to $UNIROUTER_HOME/crash-<time>-<pid>.txt (else the temp folder)."""
    import tempfile
    import time
    import traceback
    from pathlib import Path

    from ..data.registry import unirouter_home
    from ..io import write_text

    text = (f"unirouter {__version__} crashed running: {' '.join(sys.argv)}\n\n"
            + "".join(traceback.format_exception(type(e), e, e.__traceback__)))
    name = f"crash-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.txt"
    for folder in (unirouter_home(), Path(tempfile.gettempdir())):
        try:
            return str(write_text(folder / name, text))
        except Exception:  # noqa: BLE001, S112 - try the next place
            continue
    return "(nowhere: no writable folder)"


def info(msg: str) -> None:
    if not STATE.quiet:
        err_console.print(msg, soft_wrap=True)


def done(msg: str) -> None:
    """A command's closing ``ok: ...`` line (what it wrote or checked), on standard output; -q silences it."""
    if not STATE.quiet:
        typer.echo(printable(msg))


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


def one_line_warnings() -> None:
    """Print a library's warning as one line, without its source file and line (the user's data, not the code
    the warning points at, caused it): ``warning: RuntimeWarning: overflow encountered in divide``."""
    import warnings

    warnings.formatwarning = lambda message, category, *_args, **_kw: f"warning: {category.__name__}: {message}\n"
