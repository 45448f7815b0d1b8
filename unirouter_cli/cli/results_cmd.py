"""``unirouter plot``, ``unirouter report`` and ``unirouter reproduce``."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import MAX_JOBS, boundary, done, info, progress_factory


def register(root: typer.Typer) -> None:
    @root.command("plot")
    @boundary
    def plot_cmd(
        run_dir: Path = typer.Option(..., "--run-dir", "-o", help="An evaluated run directory."),
        fmt: str = typer.Option("png", "--format", "-f", help="png, svg or pdf."),
        reference: str | None = typer.Option(None, "--reference", help="Router the paired figures compare to "
                                             r"\[default: knn if the run has it, else zero]."),
        oracle: bool = typer.Option(False, "--oracle", help="Draw the oracle (a bound) too: its own panel in the "
                                    "curves figure, a row in the per-trial figure."),
    ) -> None:
        """Draw deferral curves (relative to the best single LLM, and paired differences to a reference
        router), per-trial Area/QNC, paired differences, Area per prompt category and (sweeps) Area vs
        validation size into DIR/plots/.

        Example: unirouter plot --run-dir runs/demo --format svg
        """
        from ..results.plot import plot_run

        for f in plot_run(run_dir, fmt, reference, oracle):
            info(f"wrote {f}")

    @root.command("report")
    @boundary
    def report_cmd(
        run_dir: Path = typer.Option(..., "--run-dir", "-o", help="An evaluated run directory."),
        reference: str | None = typer.Option(None, "--reference", help="Router every other router is tested "
                                             r"against \[default: knn if the run has it, else zero]."),
        alpha: float = typer.Option(0.01, "--alpha", min=0.0, max=1.0,
                                    help="Significance level of the paired sign test."),
    ) -> None:
        """Write DIR/report.md, summary.csv, summary.json and report.html: means, 95% intervals, sign
        tests, costs in the dataset's unit, per-category tables, the paper's numbers.

        Example: unirouter report --run-dir runs/demo --reference zero
        """
        from ..results.report import report_run

        for f in report_run(run_dir, reference, alpha):
            info(f"wrote {f}")

    @root.command("reproduce")
    @boundary
    def reproduce_cmd(
        configs: list[Path] | None = typer.Option(None, "--config", "-c", help="Preset YAML; repeat "
                                                  r"\[default: every configs/*.yaml]."),
        trials: int | None = typer.Option(None, "--trials", "-n", min=1, help="Override every preset's trial count "
                                          r"(400 = the paper's protocol) \[default: each preset's]."),
        out: Path | None = typer.Option(None, "--out", help=r"Output folder \[default: runs/reproduce-<timestamp>]."),
        jobs: int = typer.Option(2, "--jobs", "-j", min=1, max=MAX_JOBS, help="Trials in parallel."),
    ) -> None:
        """Run the presets end to end (fit, evaluate, plot, report) and index them in REPORT.md.

        Example: unirouter reproduce --config configs/routerbench-subset.yaml --trials 5
        """
        from ..runs.reproduce import reproduce

        index = reproduce(configs or None, trials, out, jobs, progress_factory(), info)
        done(f"ok: {index}")
