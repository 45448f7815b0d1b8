"""``unirouter plot``, ``unirouter report`` and ``unirouter reproduce``."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import boundary, info, progress_factory


def register(root: typer.Typer) -> None:
    @root.command("plot")
    @boundary
    def plot_cmd(
        run_dir: Path = typer.Option(..., "--run-dir", "-o", help="An evaluated run directory."),
        fmt: str = typer.Option("png", "--format", "-f", help="png, svg or pdf."),
        reference: str = typer.Option("knn", "--reference", help="Router the paired-difference figure compares to."),
    ) -> None:
        """Draw deferral curves, per-trial Area/QNC, paired differences to a reference router and
        (sweeps) Area vs validation size into DIR/plots/.

        Example: unirouter plot --run-dir runs/demo --format svg
        """
        from ..plot import plot_run

        for f in plot_run(run_dir, fmt, reference):
            info(f"wrote {f}")

    @root.command("report")
    @boundary
    def report_cmd(
        run_dir: Path = typer.Option(..., "--run-dir", "-o", help="An evaluated run directory."),
        reference: str = typer.Option("knn", "--reference", help="Router every other router is tested against."),
        alpha: float = typer.Option(0.01, "--alpha", help="Significance level of the paired sign test."),
    ) -> None:
        """Write DIR/report.md and DIR/summary.csv: means, 95% intervals, sign tests, the paper's numbers.

        Example: unirouter report --run-dir runs/demo --reference knn
        """
        from ..report import report_run

        rfile, sfile = report_run(run_dir, reference, alpha)
        info(f"wrote {rfile} and {sfile}")

    @root.command("reproduce")
    @boundary
    def reproduce_cmd(
        configs: list[Path] | None = typer.Option(None, "--config", "-c", help="Preset YAML; repeat "
                                                  "[default: every configs/*.yaml, or the packaged presets]."),
        trials: int | None = typer.Option(None, "--trials", "-n", min=1, help="Override every preset's trial count "
                                          "(400 = the paper's protocol)."),
        out: Path | None = typer.Option(None, "--out", help="Output folder [default: runs/reproduce-<timestamp>]."),
        jobs: int = typer.Option(2, "--jobs", "-j", min=1, help="Trials in parallel."),
    ) -> None:
        """Run the presets end to end (fit, evaluate, report, plot) and index them in REPORT.md.

        Example: unirouter reproduce --trials 400
        """
        from ..reproduce import reproduce

        index = reproduce(configs or None, trials, out, jobs, progress_factory(), info)
        typer.echo(f"ok: {index}")
