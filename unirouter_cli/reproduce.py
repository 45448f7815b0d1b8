"""Stage 8 - ``unirouter reproduce``: run the YAML presets end to end and index the results.

A preset is a run config (see ``RunConfig``) plus ``name``, ``description``, ``pools`` and
``reference``. Each preset becomes ``<out>/<name>/`` (a normal run directory with report.md,
summary.csv and plots/), and ``<out>/REPORT.md`` links them all.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import yaml

from .errors import ConfigError
from .io import load_yaml, write_text, yaml_problem
from .plot import plot_run
from .report import report_run
from .rundir import RunConfig, evaluate_run, fit_run


def find_presets(configs: list[Path] | None) -> list[Path]:
    if configs:
        return list(configs)
    found = sorted(Path("configs").glob("*.yaml"))
    if not found:
        raise ConfigError("no presets: run from the repository root (configs/*.yaml) or pass --config FILE")
    return found


def load_preset(path: Path) -> tuple[dict, RunConfig]:
    try:
        d = load_yaml(path)
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: preset not found") from e
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid YAML ({yaml_problem(e)})") from e
    if not isinstance(d, dict):
        raise ConfigError(f"{path}: expected a mapping")
    if d.get("version") != 1:
        raise ConfigError(f"{path}: version {d.get('version')!r}; this unirouter reads preset version 1")
    meta = {"name": d.pop("name", path.stem), "description": d.pop("description", ""),
            "pools": d.pop("pools", ["unseen"]), "reference": d.pop("reference", "knn")}
    d.pop("version")
    return meta, RunConfig.from_dict(d, str(path))


def reproduce(configs: list[Path] | None, trials: int | None, out: Path | None, jobs: int,
              progress_factory: Callable | None, info: Callable[[str], None]) -> Path:
    presets = [(p, *load_preset(p)) for p in find_presets(configs)]  # check all before running any
    out = out or Path("runs") / f"reproduce-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    lines = ["# unirouter reproduce", "", f"Presets run on the bundled data; {time.strftime('%Y-%m-%d %H:%M')}.", "",
             "| preset | dataset | trials | router | Area (unseen) | QNC (unseen) | report | plots |",
             "|---|---|---|---|---|---|---|---|"]
    for path, meta, cfg in presets:
        if trials is not None:
            cfg.trials = trials
        info(f"[bold]{meta['name']}[/]: {meta['description']} ({cfg.trials} trials, {path})")
        t0 = time.perf_counter()
        run = out / meta["name"]
        fit_run(cfg, run, resume=(run / "config.yaml").exists(), jobs=jobs, progress_factory=progress_factory)
        evaluate_run(run, meta["pools"], jobs=jobs, progress_factory=progress_factory)
        report_run(run, meta["reference"])
        plots = plot_run(run, "png", meta["reference"])
        info(f"{meta['name']}: done in {time.perf_counter() - t0:.0f} s")
        summary = pd.read_csv(run / "summary.csv")
        s = summary[(summary["pool"] == meta["pools"][0])]
        vs = sorted(s["val_size"].unique())
        s = s[s["val_size"] == (-1 if -1 in vs else vs[len(vs) // 2])]
        plot_links = " ".join(f"[{p.stem}]({meta['name']}/plots/{p.name})" for p in plots)
        first = True
        for router in dict.fromkeys(s["router"]):
            r = s[s["router"] == router].set_index("metric")
            mark = r.loc["area", "mark"] if isinstance(r.loc["area", "mark"], str) else ""
            area = f"{r.loc['area', 'mean']:.4f} {mark}"
            qnc = f"{100 * r.loc['qnc', 'mean']:.1f}%"
            lead = (f"| {meta['name']} | {cfg.dataset_name} | {cfg.trials} |" if first else "| | | |")
            tail = f"[report.md]({meta['name']}/report.md) | {plot_links} |" if first else " | |"
            lines.append(f"{lead} {router} | {area.strip()} | {qnc} | {tail}")
            first = False
    lines += ["", "Marks: `+`/`-` = significantly better/worse than the preset's reference router (paired sign "
              "test, alpha 0.01). Each preset's report.md has intervals, all metrics and chosen hyperparameters.", ""]
    return write_text(out / "REPORT.md", "\n".join(lines))
