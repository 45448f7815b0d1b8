"""``unirouter reproduce``: run the YAML presets end to end and index the results.

A preset is a run config (see ``RunConfig``) plus ``name``, ``description``, ``pools`` and
``reference``. Each preset becomes ``<out>/<name>/`` (a normal run directory with report.md,
report.html, summary.csv, summary.json and plots/) plus ``reproduce.json`` (the command, wall
seconds per stage, the machine), and ``<out>/REPORT.md`` links them all.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import platform
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from ..errors import ConfigError, DataError, RunDirError
from ..io import check_regular, load_yaml_mapping, write_text
from ..results.plot import plot_run
from ..results.report import fmt_cost, report_run
from ..results.style import FIGURE_HELP, figure_help
from .config import RunConfig, check_preset_keys, check_sizes
from .rundir import evaluate_run, fit_run


def find_presets(configs: list[Path] | None) -> list[Path]:
    if configs:
        return list(configs)
    found = sorted(Path("configs").glob("*.yaml"))
    if not found:
        raise ConfigError("no presets: run from the repository root (configs/*.yaml) or pass --config FILE")
    return found


PRESET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}")


def preset_name(name: object, path: Path) -> str:
    """A preset's name, which becomes the folder ``<out>/<name>``: one path component of letters, digits and
    ``. _ + -`` (not starting with a dot), so a run stays inside ``--out``."""
    if not isinstance(name, str) or not PRESET_NAME.fullmatch(name):
        raise ConfigError(f"{path}: name = {name!r}; expected a folder name of letters, digits and . _ + - "
                          "(not starting with a dot or holding a slash): each preset writes <out>/<name>")
    return name


def load_preset(path: Path) -> tuple[dict, RunConfig]:
    d = load_yaml_mapping(path, str(path))
    if d.get("version") != 1:
        raise ConfigError(f"{path}: version {d.get('version')!r}; this unirouter reads preset version 1")
    check_preset_keys(d, str(path))
    meta = {"name": preset_name(d.pop("name", path.stem), path), "description": d.pop("description", ""),
            "pools": d.pop("pools", ["unseen"]), "reference": d.pop("reference", None)}
    d.pop("version")
    return meta, RunConfig.from_dict(d, str(path))


def machine() -> dict[str, object]:
    """What the timings were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from .executors import kernels

    return {"system": f"{platform.system()} {platform.machine()}", "cpu": cpu, "cpus": os.cpu_count(),
            "python": platform.python_version(), "kernels": kernels()}


def machine_line(m: dict) -> str:
    line = f"{m.get('system')}, {m.get('cpus')} CPUs ({m.get('cpu')}), Python {m.get('python')}"
    return line + (f", {m['kernels']}" if m.get("kernels") else "")


REPORT_HEADER = "# unirouter reproduce"


def check_report_is_ours(report: Path) -> None:
    """``--out`` may be an earlier reproduce folder (its presets resume), but a REPORT.md there that reproduce did
    not write is the user's: refused before anything runs (it would be replaced at the end)."""
    if not (report.exists() or report.is_symlink()):
        return
    try:
        with open(check_regular(report, "REPORT.md"), "rb") as fh:
            ours = not report.is_symlink() and fh.read(len(REPORT_HEADER)).decode("utf-8", "replace") == REPORT_HEADER
    except (OSError, DataError):
        ours = False
    if not ours:
        raise RunDirError(f"{report}: not a report `unirouter reproduce` wrote, and reproduce writes that file; "
                          "choose another --out")


def reproduce(configs: list[Path] | None, trials: int | None, out: Path | None, jobs: int,
              progress_factory: Callable | None, info: Callable[[str], None]) -> Path:
    presets = [(p, *load_preset(p)) for p in find_presets(configs)]  # check all before running any
    names = [meta["name"] for _, meta, _ in presets]
    if len(set(names)) != len(names):
        twice = next(n for n in names if names.count(n) > 1)
        raise ConfigError(f"two presets are named {twice!r}; each preset writes <out>/<name>, so names must differ")
    if trials is not None:
        check_sizes({"trials": trials}, "command line")
    out = out or Path("runs") / f"reproduce-{time.strftime('%Y%m%d-%H%M%S')}"
    check_report_is_ours(out / "REPORT.md")
    out.mkdir(parents=True, exist_ok=True)
    host = machine()
    lines = [REPORT_HEADER, "",
             f"Presets run on the bundled data; {time.strftime('%Y-%m-%d %H:%M')}; {machine_line(host)}; "
             f"`--jobs {jobs}`.", "",
             "| preset | dataset | trials | wall time | router | Area (unseen) | QNC (unseen; cost to match) | report "
             "| figures |",
             "|---|---|---|---|---|---|---|---|---|"]
    began = time.perf_counter()
    pending: list[tuple[Finish, Callable[[list[Path], dict[str, float]], None]]] = []
    background = jobs > 1 and sys.platform.startswith("linux")  # fork; one figure process beside the trials

    def collect() -> None:
        for finish, then in pending:
            then(*finish.result())
        pending.clear()

    for path, meta, cfg in presets:
        if trials is not None:
            cfg.trials = trials
        info(f"[bold]{meta['name']}[/]: {meta['description']} ({cfg.trials} trials, {path})")
        run = (out / meta["name"]).resolve()  # absolute: pooled workers may have another working directory
        stamps = {"start": time.perf_counter()}
        fit_run(cfg, run, resume=(run / "config.yaml").exists(), jobs=jobs, progress_factory=progress_factory)
        stamps["fit"] = time.perf_counter()
        evaluate_run(run, meta["pools"], jobs=jobs, progress_factory=progress_factory)
        stamps["evaluate"] = time.perf_counter()
        seconds = {k: round(stamps[k] - stamps[p], 2) for p, k in zip(list(stamps)[:-1], list(stamps)[1:],
                                                                        strict=True)}
        command = (f"unirouter reproduce --config {path} --jobs {jobs}"
                   + (f" --trials {trials}" if trials is not None else ""))

        def done(plots: list[Path], later: dict[str, float], run: Path = run, meta: dict = meta,
                 cfg: RunConfig = cfg, seconds: dict[str, float] = seconds, command: str = command,
                 path: Path = path) -> None:
            seconds = {**seconds, **later}
            wall = sum(seconds.values())
            write_text(run / "reproduce.json", json.dumps({
                "command": command, "preset": str(path), "trials": cfg.trials, "jobs": jobs, "seconds": seconds,
                "wall_seconds": round(wall, 2), "finished_after_seconds": round(time.perf_counter() - began, 2),
                "machine": host, "date": time.strftime("%Y-%m-%d")}, indent=1) + "\n")
            info(f"{meta['name']}: done in {wall:.0f} s")
            lines.extend(index_rows(run, meta, cfg, plots, wall))

        collect()  # at most one figure process at a time, and the index in preset order
        pending.append((Finish(finish, run, meta["reference"], fork=background), done))
    collect()
    total = time.perf_counter() - began
    lines += ["", f"Total wall time {total / 60:.1f} min (each preset's figures and report are made while the next "
              "preset's trials run). Marks: `+`/`-` = significantly better/worse than the "
              "preset's reference router (paired sign test, alpha 0.01). Each preset's report.md (and the "
              "self-contained report.html) has intervals, all metrics, costs in the dataset's unit, per-category "
              "tables and the chosen hyperparameters; summary.json is the machine-readable version.", "",
              "Figures: " + "; ".join(f"`{k}`: {v}" for k, v in FIGURE_HELP.items()) + ".", ""]
    return write_text(out / "REPORT.md", "\n".join(lines))


def finish(run: Path, reference: str) -> tuple[list[Path], dict[str, float]]:
    """Figures, then report.md/html (which embeds them), of one preset; (figure paths, seconds per stage)."""
    t0 = time.perf_counter()
    plots = plot_run(run, "png", reference)
    t1 = time.perf_counter()
    report_run(run, reference)
    return plots, {"plot": round(t1 - t0, 2), "report": round(time.perf_counter() - t1, 2)}


class Finish:
    """``fn(*args)`` in a forked process (``fork``) or here; ``result()`` returns its value or raises its error."""

    def __init__(self, fn: Callable, *args: object, fork: bool = True) -> None:
        self.proc = None
        if not fork:
            try:
                self.outcome: tuple[bool, object] = (True, fn(*args))
            except Exception as e:
                self.outcome = (False, e)
            return
        ctx = multiprocessing.get_context("fork")
        self.pipe, child_end = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(target=_send_outcome, args=(child_end, fn, args), daemon=True)
        self.proc.start()
        child_end.close()

    def result(self) -> object:
        if self.proc is not None:
            try:
                self.outcome = self.pipe.recv()
            except EOFError:
                self.proc.join()
                raise RunDirError(f"the process making a preset's figures and report died (exit code "
                                  f"{self.proc.exitcode})") from None
            self.proc.join()
            self.proc = None
        ok, value = self.outcome
        if not ok:
            raise value  # type: ignore[misc]
        return value


def _send_outcome(conn: object, fn: Callable, args: tuple) -> None:
    try:
        out: tuple[bool, object] = (True, fn(*args))
    except Exception as e:
        out = (False, e)
    conn.send(out)  # type: ignore[attr-defined]
    conn.close()  # type: ignore[attr-defined]


def index_rows(run: Path, meta: dict, cfg: RunConfig, plots: list[Path], wall: float) -> list[str]:
    """REPORT.md rows of one preset: one per router of its first pool (middle validation size)."""
    summary = pd.read_csv(run / "summary.csv")
    s = summary[(summary["pool"] == meta["pools"][0])]
    vs = sorted(s["val_size"].unique())
    s = s[s["val_size"] == (-1 if -1 in vs else vs[len(vs) // 2])]
    s = s[s["probe_strategy"] == s["probe_strategy"].iloc[0]]
    name = meta["name"]
    links = " ".join(f"[{p.stem}]({name}/plots/{p.name})" for p in plots if figure_help(p.name))
    rows, first = [], True
    for router in dict.fromkeys(s["router"]):
        r = s[s["router"] == router].set_index("metric")
        mark = r.loc["area", "mark"] if isinstance(r.loc["area", "mark"], str) else ""
        qnc = f"{100 * r.loc['qnc', 'mean']:.1f}%"
        if "qnc_cost" in r.index:
            qnc += f" ({fmt_cost(r.loc['qnc_cost', 'mean'])})"
        lead = f"| {name} | {cfg.dataset_name} | {cfg.trials} | {wall / 60:.1f} min |" if first else "| | | | |"
        tail = (f"[report.md]({name}/report.md), [html]({name}/report.html) | {links} |" if first else " | |")
        rows.append(f"{lead} {router} | {r.loc['area', 'mean']:.4f} {mark}".rstrip() + f" | {qnc} | {tail}")
        first = False
    return rows
