"""The ``unirouter`` command: one Typer app composed from one module per command group.

Error boundary: every command runs inside ``boundary``; a known error (``UnirouterError``, a
missing file, a full disk) prints one line ``error: ...`` to stderr and exits with code 2; a bug
prints one "internal error" line naming the file with its traceback and exits with code 1.
``UNIROUTER_DEBUG=1`` re-raises instead so the traceback shows.
"""

from __future__ import annotations

import sys
from typing import Any

import typer
from typer.core import TyperGroup

from .. import __version__
from . import common, data_cmd, info_cmd, results_cmd, router_cmd, run_cmd

GLOBAL_FLAGS = ("-q", "--quiet")  # root options that may also follow the subcommand


def hoist_global_flags(args: list[str]) -> list[str]:
    """Move root flags given after the subcommand (``unirouter fit ... -q``) to the front, where the
    root command parses them. Tokens after ``--`` are left alone."""
    end = args.index("--") if "--" in args else len(args)
    flags = [a for a in args[:end] if a in GLOBAL_FLAGS]
    if not flags:
        return args
    return flags + [a for a in args[:end] if a not in GLOBAL_FLAGS] + args[end:]


def tidy_help(cmd: Any, parent: Any = None) -> None:
    """Flags take no value: show them without a type (typer would print ``<bool>``), for every
    command and its help option (built in a context under its parent's, as at run time)."""
    ctx = cmd.context_class(cmd, parent=parent, **(getattr(cmd, "context_settings", None) or {}))
    for p in [*cmd.params, cmd.get_help_option(ctx)]:
        if p is not None and getattr(p, "is_flag", False) and p.metavar is None:
            p.metavar = ""
    for sub in getattr(cmd, "commands", {}).values():
        tidy_help(sub, ctx)


class OneLineErrors(TyperGroup):
    """The root command: a usage error (bad option value, unknown option, missing argument) prints
    one line ``error: ...`` and exits with code 2, like every other user error. Root flags (-q) are
    accepted after the subcommand too; flags show no type in help."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_global_flags(list(args)))

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        tidy_help(self)
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        ex = common.click_exceptions()
        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)
        except ex.NoArgsIsHelpError as e:
            print(e.format_message())
            sys.exit(0)
        except ex.ClickException as e:
            ctx = getattr(e, "ctx", None)
            hint = f" (see {ctx.command_path} --help)" if ctx is not None else ""
            print(common.printable(f"error: {' '.join(e.format_message().split())}{hint}", keep=""), file=sys.stderr)
            sys.exit(e.exit_code)
        sys.exit(rv if isinstance(rv, int) else 0)

app = typer.Typer(
    name="unirouter",
    help="Benchmark dynamic LLM routers (UniRoute, arXiv 2502.08773) on public correctness tables.\n\n"
         "Example: unirouter fit --dataset mmlu-pro --trials 10 --run-dir runs/demo && "
         "unirouter evaluate --run-dir runs/demo --pool unseen && unirouter report --run-dir runs/demo",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    cls=OneLineErrors,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"unirouter {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or informational output."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    common.STATE.quiet = quiet


app.add_typer(data_cmd.app, name="data")
app.add_typer(router_cmd.app, name="router")
data_cmd.register(app)
info_cmd.register(app)
run_cmd.register(app)
results_cmd.register(app)


def main() -> None:
    from ..runs.executors import one_thread_env  # before anything loads numpy: parallelism is across trials

    one_thread_env()
    common.one_line_warnings()
    app()
