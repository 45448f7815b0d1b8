"""``unirouter fit`` and ``unirouter evaluate``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer
import yaml

from ..errors import ConfigError
from ..io import load_yaml_mapping, loads_yaml, yaml_problem
from .common import MAX_JOBS, boundary, info, progress_factory

if TYPE_CHECKING:
    from ..runs.config import RunConfig



def parse_params(items: list[str]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for it in items:
        if "=" not in it or "." not in it.split("=", 1)[0]:
            raise ConfigError(f"--param {it!r}: expected ROUTER.NAME=VALUE, e.g. uniroute-kmeans.K=16")
        key, val = it.split("=", 1)
        router, name = key.split(".", 1)
        try:
            out.setdefault(router, {})[name] = loads_yaml(val)
        except yaml.YAMLError as e:
            raise ConfigError(f"--param {it!r}: value is not valid YAML ({yaml_problem(e)})") from e
    return out


def parse_int_list(option: str, text: str) -> list[int]:
    """'100,200,400' -> [100, 200, 400]; one line naming the option for anything else."""
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) < 1:
            raise ConfigError(f"{option} {text!r}: expected positive integers separated by commas, e.g. 100,200,400")
        out.append(int(part))
    return out


def load_config_file(path: Path) -> dict:
    """A --config file (a preset or a run's config.yaml): every key checked (as ``fit`` checks its
    options); the preset-only keys are checked and dropped."""
    from ..runs.config import PRESET_KEYS, check_config_keys, check_preset_keys

    d = load_yaml_mapping(path, f"--config {path}")
    check_preset_keys(d, str(path))
    for key in PRESET_KEYS:
        d.pop(key, None)
    check_config_keys(d, str(path), partial=True)
    return d


STORED_ONLY = ("config_version", "unirouter_version", "dataset_name", "dataset_path", "dataset_hash", "universe",
               "skipped_routers")  # written by fit, recomputed on every fit


def stored_options(run_dir: Path) -> dict:
    """The options a run directory was fitted with (its config.yaml, checked), as a --config mapping:
    the routers fit skipped are listed again, so fitting with it reproduces the same config."""
    from ..runs.rundir import RunDir

    cfg = RunDir(run_dir).read_config()
    d = cfg.to_dict()
    d["routers"] = list(cfg.routers) + [r for r in cfg.skipped_routers if r not in cfg.routers]
    for key in STORED_ONLY:
        d.pop(key, None)
    return d


OPTION_NAMES = {"routers": "router", "params": "param"}  # build_config keyword -> option (without --)


def build_config(config: Path | None, base: dict | None = None, **cli: object) -> RunConfig:
    """The run config: ``base`` (a run's stored options) or the --config file, then the command line."""
    base = dict(base) if base is not None else load_config_file(config) if config else {}
    split = dict(base.pop("split", {}) or {})
    for key in ("train_frac", "val_frac", "test_frac", "val_size", "unseen_frac", "unseen_source", "unseen_strongest",
                "coverage", "probe_strategy"):
        if cli.get(key) is not None:
            split[key] = cli[key]
    if cli.get("unseen"):
        split["unseen_models"] = list(cli["unseen"])
    if cli.get("train_categories"):
        split["train_categories"] = [c.strip() for c in str(cli["train_categories"]).split(",") if c.strip()]
    for key in ("dataset", "trials", "seed", "encoder"):
        if cli.get(key) is not None:
            base[key] = cli[key]
    if cli.get("routers"):
        base["routers"] = list(cli["routers"])
    if cli.get("val_sizes"):
        base["val_sizes"] = parse_int_list("--val-sizes", str(cli["val_sizes"]))
    if cli.get("probe_strategies"):
        base["probe_strategies"] = [x.strip() for x in str(cli["probe_strategies"]).split(",") if x.strip()]
    params = parse_params(list(cli.get("params") or []))
    rp = dict(base.get("router_params") or {})
    for r, p in params.items():
        rp.setdefault(r, {}).update(p)
    base["router_params"] = rp
    from ..routers import default_fit_routers
    from ..runs.config import RunConfig

    base.setdefault("dataset", "mmlu-pro")
    base.setdefault("routers", default_fit_routers())
    base["split"] = split
    if config is None:  # the command line (over a run's stored, checked options): prepare names the options
        return RunConfig.from_dict(base, "command line", check=False)
    from ..runs.config import check_config_keys

    given = [f"--{OPTION_NAMES.get(k, k).replace('_', '-')}" for k, v in cli.items() if v]
    check_config_keys(base, f"{config}" + (f" with {', '.join(given)}" if given else ""))
    return RunConfig.from_dict(base, str(config), check=False)


def interrupted(what: str) -> NoReturn:
    """Ctrl-C: one line saying what is kept and how this command continues, exit code 130."""
    print(f"error: interrupted ({what})", file=sys.stderr)
    raise typer.Exit(130)


def register(root: typer.Typer) -> None:
    @root.command("fit")
    @boundary
    def fit_cmd(
        dataset: str | None = typer.Option(None, "--dataset", "-d", help="Registered name or dataset folder path "
                                           "\\[default: mmlu-pro]."),
        routers: list[str] | None = typer.Option(None, "--router", "-r", help="Router to fit; repeat for several "
                                                 "\\[default: those `unirouter routers` marks 'fit']."),
        trials: int | None = typer.Option(None, "--trials", "-n", min=1,
                                          help="Number of random trials \\[default: 10]."),
        seed: int | None = typer.Option(None, "--seed", min=0, help="Seed that fixes every split and router "
                                        "\\[default: 0]."),
        encoder: str | None = typer.Option(None, "--encoder", "-e", help="Prompt encoder \\[default: tfidf]."),
        run_dir: Path = typer.Option(..., "--run-dir", "-o", help="Run directory to write."),
        config: Path | None = typer.Option(None, "--config", "-c", help="YAML experiment file (configs/*.yaml); "
                                           "command-line options override it."),
        train_frac: float | None = typer.Option(None, help="Training share of prompts \\[default: 0.6]."),
        val_frac: float | None = typer.Option(None, help="Validation share of prompts \\[default: 0.1]."),
        test_frac: float | None = typer.Option(None, help="Test share of prompts \\[default: 0.3]."),
        val_size: int | None = typer.Option(None, help="Validation prompts (overrides --val-frac)."),
        val_sizes: str | None = typer.Option(None, help="Sweep of validation sizes, e.g. 100,200,300,400,500."),
        probe_strategy: str | None = typer.Option(None, help="How a new LLM's validation (probe) prompts are picked "
                                                  "from the validation reserve: random, ... (see `unirouter probes`) "
                                                  "\\[default: random]."),
        probe_strategies: str | None = typer.Option(None, help="Sweep of probe strategies, e.g. "
                                                    "random,stratified (with --val-sizes: the profiling-cost curve)."),
        unseen_frac: float | None = typer.Option(None, help="Share of LLMs in the unseen test pool \\[default: 1/3]; "
                                                 "1 = every LLM unseen (no training LLMs)."),
        coverage: str | None = typer.Option(None, help="How the prompts and LLMs trials draw from are fixed on an "
                                            "incomplete table: block (largest complete block) or all-llms "
                                            "\\[default: block]."),
        train_categories: str | None = typer.Option(None, help="Training prompts only from these prompt categories "
                                                    "(comma-separated); validation and test from the others."),
        unseen: list[str] | None = typer.Option(None, "--unseen", help="An LLM of a fixed unseen pool; repeat."),
        unseen_source: str | None = typer.Option(None, help="Unseen pool = the LLMs whose models.csv source is this."),
        unseen_strongest: int | None = typer.Option(None, help="Unseen pool = the K most accurate LLMs of the universe "
                                                    "(mean score over its prompts): routing extrapolates upwards."),
        params: list[str] | None = typer.Option(None, "--param", "-p", help="Router hyperparameter, "
                                                "ROUTER.NAME=VALUE (e.g. uniroute-kmeans.K=16); repeat."),
        jobs: int = typer.Option(1, "--jobs", "-j", min=1, max=MAX_JOBS,
                                 help="Trials in parallel on this machine (joblib)."),
        backend: str = typer.Option("local", help="local (joblib) or dask (extra 'dask')."),
        scheduler: str | None = typer.Option(None, help="Dask scheduler address for --backend dask."),
        resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run in --run-dir; alone (no "
                                    "--dataset or --config) it continues with the run's own config.yaml."),
    ) -> None:
        """Split prompts and LLMs for each trial and fit the routers; write the run directory.

        Example: unirouter fit --dataset mmlu-pro --router uniroute-kmeans --router knn --trials 10 --run-dir runs/demo
        """
        from ..runs.rundir import fit_run

        base = None
        if resume and config is None and dataset is None:
            if not (run_dir / "config.yaml").exists():
                raise ConfigError(f"--resume: {run_dir} holds no run (no config.yaml); check the path, or give "
                                  "--dataset / --config to start a new run there")
            base = stored_options(run_dir)  # `fit --resume --run-dir X` alone: continue with X's own options
        cfg = build_config(config, base, dataset=dataset, routers=routers, trials=trials, seed=seed, encoder=encoder,
                           train_frac=train_frac, val_frac=val_frac, test_frac=test_frac, val_size=val_size,
                           val_sizes=val_sizes, unseen_frac=unseen_frac, unseen=unseen, unseen_source=unseen_source,
                           unseen_strongest=unseen_strongest,
                           coverage=coverage, train_categories=train_categories, probe_strategy=probe_strategy,
                           probe_strategies=probe_strategies, params=params)
        try:
            rd = fit_run(cfg, run_dir, resume=resume, jobs=jobs, backend=backend, scheduler=scheduler,
                         progress_factory=progress_factory(), info=info)
        except KeyboardInterrupt:
            interrupted(f"fitted trials are kept; continue with `unirouter fit --resume --run-dir {run_dir}`")
        n_tasks = len(cfg.tasks())
        what = f"{cfg.trials} trial(s)" + (f" ({n_tasks} tasks: validation sizes x probe strategies)"
                                           if n_tasks != cfg.trials else "") + f" x {len(cfg.routers)} router(s)"
        if rd.fitted_now == 0:
            info(f"nothing to fit: {what} in {rd.path} were fitted before")
        elif rd.fitted_now < n_tasks:
            info(f"fitted {rd.fitted_now} of the {n_tasks} task(s) of {what} (the others were fitted before) into "
                 f"{rd.path}")
        else:
            info(f"fitted {what} into {rd.path}")

    @root.command("evaluate")
    @boundary
    def evaluate_cmd(
        run_dir: Path = typer.Option(..., "--run-dir", "-o", help="Run directory written by `unirouter fit`."),
        pool: list[str] = typer.Option(["unseen"], "--pool", help="unseen (the paper's setting), seen or all; "
                                       "repeat for several."),
        jobs: int = typer.Option(1, "--jobs", "-j", min=1, max=MAX_JOBS,
                                 help="Trials in parallel on this machine (joblib)."),
        backend: str = typer.Option("local", help="local (joblib) or dask (extra 'dask')."),
        scheduler: str | None = typer.Option(None, help="Dask scheduler address for --backend dask."),
    ) -> None:
        """Route the test prompts among a pool of LLMs and write deferral curves and metrics.

        Writes metrics.csv (trial, router, pool, area, area_50, qnc, ...), curves.parquet, singles.parquet.
        Example: unirouter evaluate --run-dir runs/demo --pool unseen
        """
        from ..runs.rundir import evaluate_run

        try:
            rd = evaluate_run(run_dir, list(pool), jobs=jobs, backend=backend, scheduler=scheduler,
                              progress_factory=progress_factory())
        except KeyboardInterrupt:
            interrupted(f"evaluated trials are kept; continue with `unirouter evaluate --run-dir {run_dir}`")
        info(f"wrote {rd.path / 'metrics.csv'} and {rd.path / 'curves.parquet'}")
