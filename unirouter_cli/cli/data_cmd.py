"""``unirouter data list|validate|info|remove`` and ``unirouter download``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from .common import boundary, console, done, info, printable

app = typer.Typer(help="List, validate and inspect routing tables.", no_args_is_help=True)


@app.command("list")
@boundary
def list_cmd() -> None:
    """List the registered datasets: what is on this machine (counted from the folder a command would
    use: a download, else the bundled copy) and what can be downloaded (upstream sizes in parentheses).

    Example: unirouter data list
    """
    from ..data.registry import REGISTRY, availability, bundled_path, cached_path, folder_counts

    t = Table(title="unirouter datasets", caption="(n) = upstream size, not on this machine")
    t.add_column("name", no_wrap=True)
    t.add_column("prompts", no_wrap=True, justify="right")
    t.add_column("LLMs", no_wrap=True, justify="right")
    t.add_column("status", no_wrap=True)
    t.add_column("cost unit", ratio=1)
    wide = console.width >= 110  # on a narrow terminal the source (also in `data info`) is left out
    if wide:
        t.add_column("source", ratio=1)
    for d in REGISTRY.values():
        folder = cached_path(d.name) or bundled_path(d.name)
        if folder is not None:
            try:
                n_prompts, n_models = folder_counts(folder)
                prompts, llms = f"{n_prompts:,}", str(n_models)
            except Exception:  # noqa: BLE001 - a damaged copy is listed, `data validate` says what is wrong
                prompts, llms = "?", "?"
        else:
            prompts, llms = f"({d.prompts})", f"({d.llms})"
        t.add_row(d.name, prompts, llms, availability(d.name), d.cost_unit, *([d.source] if wide else []))
    console.print(t)


@app.command("validate")
@boundary
def validate_cmd(
    dataset: str = typer.Argument(..., help="A dataset folder (dataset.yaml, prompts, outcomes, models.csv) or "
                                  "the name of a bundled or downloaded dataset."),
) -> None:
    """Check a dataset folder and report every problem (file, row/column, what was expected).

    Example: unirouter data validate routerbench-subset
    """
    from ..data.folder import validate_folder
    from ..data.registry import REGISTRY, resolve

    path = Path(dataset)
    if not path.exists() and dataset in REGISTRY:
        path = resolve(dataset)[1]
    problems, tables, card = validate_folder(path)
    if problems:
        for p in problems:
            where = p if p.file == str(path) else f"{path / p.file}{str(p)[len(p.file):]}"
            typer.echo(printable(f"error: {where}"), err=True)
        typer.echo(f"{len(problems)} problem(s) in {path}", err=True)
        raise typer.Exit(2)
    n = {k: len(v) for k, v in tables.items()}
    done(f"ok: {path}: {n['prompts']} prompts, {n['models']} models, {n['outcomes']} outcomes")


COVERAGE_SHADES = ((1.0, "█"), (0.75, "▓"), (0.25, "▒"), (1e-12, "░"), (0.0, "·"))


def coverage_glyph(share: float) -> str:
    """One character for a share of prompts answered: █ all, ▓ >= 75%, ▒ >= 25%, ░ some, · none."""
    return next(g for t, g in COVERAGE_SHADES if share >= t - 1e-12)


@app.command("info")
@boundary
def info_cmd(
    dataset: str = typer.Argument(..., help="Registered name or folder path."),
    coverage: str = typer.Option("block", help="Coverage policy to preview: block or all-llms."),
) -> None:
    """Summarise a dataset: sizes, per-LLM accuracy, cost and coverage, a category x LLM coverage map,
    and which LLMs and prompts the coverage policy keeps for trials.

    Example: unirouter data info routerbench-subset
    """
    import numpy as np

    from ..data.registry import load_dataset
    from ..protocol.universe import universe

    ds = load_dataset(dataset)
    evaluated = ~np.isnan(ds.scores)
    console.print(f"[bold]{ds.name}[/] ({ds.path}) hash {ds.content_hash}")
    console.print(f"{ds.n_prompts} prompts, {ds.n_models} LLMs, {int(evaluated.sum())} outcomes, "
                  f"{int((~evaluated).sum())} pairs not evaluated; cost unit: {ds.card.get('cost_unit', '?')}")
    cats = sorted(set(ds.categories))
    masks = [ds.categories == c for c in cats]
    u = universe(ds, coverage)
    kept = set(u.models.tolist())
    t = Table(caption=f"coverage by category (columns in this order): {', '.join(cats)}; "
                      "█ all prompts answered, ▓ >= 75%, ▒ >= 25%, ░ some, · none")
    for col in ("model", "accuracy", "answered", "coverage", "cost", "by category", "trials"):
        t.add_column(col, no_wrap=True)
    acc = np.nanmean(np.where(evaluated, ds.scores, np.nan), axis=0)
    for j in np.argsort(ds.model_cost, kind="stable"):
        shades = "".join(coverage_glyph(float(evaluated[mk, j].mean())) for mk in masks)
        t.add_row(ds.models[j], f"{acc[j]:.3f}", f"{int(evaluated[:, j].sum()):,}",
                  f"{100 * evaluated[:, j].mean():.1f}%", f"{ds.model_cost[j]:.4g}", shades,
                  "kept" if j in kept else "[red]left out[/]")
    console.print(t)
    console.print(f"--coverage {coverage} keeps {len(u.models)} of {ds.n_models} LLMs and {len(u.prompts):,} of "
                  f"{ds.n_prompts:,} prompts (every kept LLM answered every kept prompt); "
                  f"left out: {len(u.dropped)} LLM(s), {u.n_prompts_out:,} prompt(s).")


@app.command("remove")
@boundary
def remove_cmd(name: str = typer.Argument(..., help="A registered dataset with a downloaded copy.")) -> None:
    """Delete the downloaded copy of a dataset from $UNIROUTER_HOME/datasets (bundled data stays).

    Example: unirouter data remove routerbench
    """
    from ..data.download import remove_download
    from ..data.registry import bundled_path

    folder = remove_download(name)
    left = bundled_path(name)
    typer.echo(f"removed {folder}" + (f"; {name} now uses the bundled copy" if left else ""))


def register(root: typer.Typer) -> None:
    @root.command("download")
    @boundary
    def download_cmd(
        name: str = typer.Argument(..., help="mmlu-pro, routerbench, embedllm or sprout."),
        from_dir: Path | None = typer.Option(None, "--from", help="Convert upstream files already in this folder."),
        dest: Path | None = typer.Option(None, "--dest", help="Write here instead of $UNIROUTER_HOME/datasets/NAME "
                                         "(a new or empty folder, or a unirouter dataset folder to replace)."),
        replace_bundled: bool = typer.Option(False, "--replace-bundled", help="Let a download with fewer prompts or "
                                             "LLMs than the bundled copy hide it."),
    ) -> None:
        """Fetch a public routing table, convert it to the dataset folder format and verify it.

        Example: unirouter download routerbench --from tests/fixtures/routerbench-pickle
        """
        from ..data.download import download as do_download

        folder, summary = do_download(name, from_dir, dest, progress=info, replace_bundled=replace_bundled)
        done(f"ok: {folder}: {summary['prompts']} prompts, {summary['models']} models, "
             f"{summary['outcomes']} outcomes")
        if summary.get("not_found"):
            typer.echo(printable(f"warning: not on the host, skipped: {', '.join(summary['not_found'])}"), err=True)
        if summary["excluded_models"]:
            typer.echo(printable(f"warning: left out (no cost known): {', '.join(summary['excluded_models'])}"),
                       err=True)
