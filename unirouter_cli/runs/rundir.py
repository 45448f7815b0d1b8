"""the run directory: config, per-trial router states, resumable fit and evaluate.

Layout of ``DIR``::

    config.yaml                 resolved config: unirouter version, dataset + content hash, encoder,
                                routers, split, trials, seed (everything needed to rerun)
    trials/<task>/split.npz     prompt and LLM indices of the trial
    trials/<task>/<router>.npz  router arrays; <router>.json its parameters and chosen hyperparameters
    trials/<task>/fit.json      written last: the task is fitted (used by --resume)
    eval/<pool>/<task>.parquet  metrics, curves and single-LLM points of one task (used by --resume)
    hyperparams.csv, metrics.csv, curves.parquet, singles.parquet, timings.csv

Every file is written atomically; a ``.lock`` file (fcntl) refuses a second writer. A task is a
trial index, or (trial, validation size) in a validation-size sweep.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from ..data.folder import Dataset, folder_hash
from ..data.registry import load_dataset, resolve
from ..embed.encoders import check_encoder, get_embeddings
from ..errors import ConfigError, DataError, RunDirError
from ..io import (
    check_regular,
    exclusive_lock,
    load_yaml,
    read_npz,
    write_csv,
    write_json,
    write_npz,
    write_parquet,
    write_yaml,
    yaml_problem,
)
from ..protocol.probes import ADAPTIVE, check_strategy
from ..protocol.trial import POOLS, evaluate_trial, fit_trial, pool_models
from ..protocol.universe import (
    SplitConfig,
    Trial,
    make_trial,
    pool_warning,
    universe_line,
)
from ..routers import Pool, Router, check_routers, get_spec, make_router, resolve_params, unused_params
from ..routers.base import STATE_ERRORS, check_prediction, nonfinite_array
from .config import CONFIG_VERSION, RunConfig, Task
from .executors import check_backend, lazy_progress, one_thread, run_tasks
from .merge import merge


def smoke_predict(router: Router, ds: Dataset, X: np.ndarray, trial: Trial) -> None:
    """``check_prediction`` on two of the trial's test prompts for (up to) two of its LLMs."""
    cols = np.r_[pool_models(trial, "unseen"), pool_models(trial, "train")][:2]
    if not len(cols) or not len(trial.test):
        return
    val, test = trial.val[:3], trial.test[:2]
    pool = Pool(models=[ds.models[j] for j in cols], X_val=X[val], E_val=np.zeros((len(val), len(cols))),
                truth=np.zeros((len(test), len(cols))) if router.kind == "bound" else None)
    check_prediction(router, X[test], pool)


def _why(e: BaseException) -> str:
    msg = " ".join(str(e).split())[:80]
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of a run directory's .npz (io.read_npz); a bad file is one RunDirError naming it."""
    import zipfile
    import zlib

    try:
        return read_npz(path)
    except DataError as e:  # a FIFO, a directory
        raise RunDirError(f"{e}; refit this run") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise RunDirError(f"{path}: missing or unreadable ({_why(e)}); refit this run") from e


def prepare(cfg: RunConfig) -> tuple[RunConfig, Dataset]:
    """Check every option against the dataset before anything is written."""
    check_routers(cfg.routers)
    check_encoder(cfg.encoder)
    if cfg.trials < 1:
        raise ConfigError(f"--trials must be at least 1, got {cfg.trials}")
    cfg.router_params = resolve_params(cfg.router_params, cfg.routers)
    ds = load_dataset(cfg.dataset)
    cfg.dataset_name, cfg.dataset_path, cfg.dataset_hash = ds.name, str(ds.path), ds.content_hash
    if cfg.val_sizes:
        if any(v < 1 for v in cfg.val_sizes):
            raise ConfigError(f"--val-sizes must be positive, got {cfg.val_sizes}")
        if len(set(cfg.val_sizes)) != len(cfg.val_sizes):
            raise ConfigError(f"--val-sizes lists a size twice: {cfg.val_sizes}")
        cfg.split = SplitConfig(**{**cfg.split.__dict__, "val_reserve": max(cfg.val_sizes)})
        for v in cfg.val_sizes:
            u = SplitConfig(**{**cfg.split.__dict__, "val_size": v}).check(ds)
    else:
        u = cfg.split.check(ds)
    if len(set(cfg.probe_strategies)) != len(cfg.probe_strategies):
        raise ConfigError(f"--probe-strategies lists a strategy twice: {', '.join(cfg.probe_strategies)}")
    for s in cfg.probe_strategies:
        check_strategy(s)
    cfg.universe = u.summary()
    if len(make_trial(ds, replace(cfg.split, probe_strategy="random"), cfg.seed, 0).train_models) == 0:  # LLMs only
        cfg.skipped_routers = {r: "needs training LLMs; this run has none (every LLM is unseen)"
                               for r in cfg.routers if get_spec(r).needs_training_llms}
        cfg.routers = [r for r in cfg.routers if r not in cfg.skipped_routers]
        if not cfg.routers:
            raise ConfigError(f"every requested router needs training LLMs ({', '.join(cfg.skipped_routers)}) but "
                              "this run has none; add zero, knn or uniroute-kmeans")
    if ADAPTIVE in {cfg.split.probe_strategy, *cfg.probe_strategies} and "foldin" not in cfg.routers:
        raise ConfigError("probe strategy adaptive needs the foldin router (its posterior chooses each new LLM's "
                          "probes): add -r foldin" + (" and training LLMs" if "foldin" in cfg.skipped_routers else ""))
    for name in cfg.routers:
        K = cfg.router_params.get(name, {}).get("K")
        n_val = min(cfg.val_sizes) if cfg.val_sizes else (
            cfg.split.val_size or int(round(cfg.split.val_frac * ds.n_prompts)))
        if isinstance(K, int) and K > n_val:
            raise ConfigError(f"router {name}: K = {K} clusters but only {n_val} validation prompts; "
                              "each cluster needs validation prompts to profile an LLM")
    return cfg, ds


def trial_for(ds: Dataset, cfg: RunConfig, task: Task, X: np.ndarray | None = None) -> Trial:
    split = cfg.split
    if task.val_size is not None:
        split = replace(split, val_size=task.val_size)
    if task.strategy is not None:
        split = replace(split, probe_strategy=task.strategy)
    return make_trial(ds, split, cfg.seed, task.trial, X)


class RunDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.fitted_now = 0  # tasks fitted by this process's fit_run (0: all were fitted before)

    @property
    def config_file(self) -> Path:
        return self.path / "config.yaml"

    def task_dir(self, task: Task) -> Path:
        return self.path / "trials" / task.name

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        self.path.mkdir(parents=True, exist_ok=True)
        for sub in ("trials", "eval", "plots"):  # we write fixed names in them: never through a link
            if (self.path / sub).is_symlink():
                raise RunDirError(f"{self.path / sub}: is a symbolic link; unirouter writes only inside the run "
                                  "directory (remove the link)")
        with exclusive_lock(self.path / ".lock", RunDirError,
                            lambda holder: f"run directory {self.path} is in use by {holder}; wait for it to finish "
                                           "or use another --run-dir"):
            yield

    def read_config(self) -> RunConfig:
        if not self.config_file.exists():
            raise RunDirError(f"{self.config_file}: missing; run `unirouter fit --run-dir {self.path}` first")
        try:
            d = load_yaml(self.config_file)
        except (yaml.YAMLError, UnicodeDecodeError, DataError) as e:
            raise RunDirError(f"{self.config_file}: not valid YAML ({yaml_problem(e)})") from e
        if not isinstance(d, dict):
            raise RunDirError(f"{self.config_file}: expected a mapping")
        if d.get("config_version") != CONFIG_VERSION:
            raise RunDirError(f"{self.config_file}: config_version {d.get('config_version')!r}, this unirouter "
                              f"reads version {CONFIG_VERSION}; refit with this version")
        try:
            return RunConfig.from_dict(d, str(self.config_file))
        except ConfigError as e:
            raise RunDirError(str(e)) from None
        except (TypeError, ValueError, AttributeError, KeyError, OverflowError) as e:
            raise RunDirError(f"{self.config_file}: malformed ({_why(e)})") from e

    # ---- per-task state -------------------------------------------------------------------
    def save_fit(self, task: Task, trial: Trial, routers: dict, seconds: dict, fitted_with: dict | None = None) -> None:
        """Write one task's split and router states; fit.json last, with ``fitted_with`` (the config
        values the states depend on, see ``FITTED_WITH``) so a later edit of config.yaml is caught."""
        d = self.task_dir(task)
        write_npz(d / "split.npz", train=trial.train, val=trial.val, test=trial.test,
                  train_models=trial.train_models, test_models=trial.test_models)
        hyper = {}
        for name, r in routers.items():
            meta, arrays = r.state()
            write_npz(d / f"{name}.npz", **arrays)
            write_json(d / f"{name}.json", meta)
            hyper[name] = r.hyperparams_
        write_json(d / "fit.json", {"routers": list(routers), "seconds": seconds, "hyperparams": hyper,
                                    "fitted_with": fitted_with or {}})

    def check_fitted_with(self, d: dict, tasks: list[Task]) -> None:
        """Refuse a config.yaml (mapping ``d``) whose encoder, seed, router parameters or dataset hash
        differ from what the tasks' router states were fitted with (fit.json ``fitted_with``; runs
        written before it was recorded are not checked)."""
        for task in tasks:
            try:
                info = json.loads(check_regular(self.task_dir(task) / "fit.json", "JSON file").read_text("utf-8"))
            except (OSError, ValueError, DataError):
                continue  # not fitted: is_fitted / load_fit say so
            fitted = info.get("fitted_with") if isinstance(info, dict) else None
            for key, value in (fitted if isinstance(fitted, dict) else {}).items():
                if key in d and d[key] != value:
                    raise RunDirError(f"{self.config_file}: {key} = {d[key]!r}, but {task.name} was fitted with "
                                      f"{key} = {value!r}; restore it, or refit into a new --run-dir")

    def is_fitted(self, task: Task, routers: list[str]) -> bool:
        """True if the task's fit.json is complete for ``routers`` (a corrupt one means: fit again)."""
        f = self.task_dir(task) / "fit.json"
        if not f.exists():
            return False
        try:
            info = json.loads(check_regular(f, "JSON file").read_text(encoding="utf-8"))
        except (OSError, ValueError, DataError):
            return False
        return (isinstance(info, dict) and info.get("routers") == list(routers)
                and isinstance(info.get("seconds"), dict) and isinstance(info.get("hyperparams"), dict)
                and all(isinstance(h, dict) for h in info["hyperparams"].values()))

    def load_fit(self, ds: Dataset, cfg: RunConfig, task: Task, X: np.ndarray) -> tuple[Trial, dict]:
        d = self.task_dir(task)
        if not (d / "fit.json").exists():
            raise RunDirError(f"{d}: not fitted (fit.json missing); run `unirouter fit --resume --run-dir {self.path}`")
        trial = trial_for(ds, cfg, task, X)
        split = _read_npz(d / "split.npz")
        keys = ("train", "val", "test", "train_models", "test_models")
        if any(k not in split for k in keys):
            raise RunDirError(f"{d / 'split.npz'}: lacks array(s) {', '.join(k for k in keys if k not in split)}; "
                              "refit this run")
        if not all(np.array_equal(split[k], getattr(trial, k)) for k in keys):
            raise RunDirError(f"{d / 'split.npz'}: recorded split differs from the one the config gives")
        routers = {}
        for name in cfg.routers:
            jf = d / f"{name}.json"
            try:
                meta = json.loads(check_regular(jf, "JSON file").read_text(encoding="utf-8"))
            except DataError as e:
                raise RunDirError(f"{e}; refit this run") from None
            except (OSError, ValueError) as e:
                raise RunDirError(f"{jf}: missing or unreadable ({_why(e)}); refit this run") from e
            if not isinstance(meta, dict):
                raise RunDirError(f"{jf}: expected a JSON object (router parameters); refit this run")
            arrays = _read_npz(d / f"{name}.npz")
            if (bad := nonfinite_array(arrays)) is not None:
                raise RunDirError(f"{d / name}.npz: array {bad!r} holds NaN or infinite values (a router state "
                                  "is finite); refit this run")
            try:
                routers[name] = router = make_router(name).load_state(meta, arrays)
                smoke_predict(router, ds, X, trial)
            except STATE_ERRORS as e:
                raise RunDirError(f"{d / name}.npz/.json: router state does not fit {name} and this trial "
                                  f"({_why(e)}); refit this run") from e
        return trial, routers

    def eval_file(self, pool: str, task: Task) -> Path:
        return self.path / "eval" / pool / f"{task.name}.parquet"


def _context(run_path: str) -> tuple[RunDir, RunConfig, Dataset, np.ndarray]:
    one_thread()
    rd = RunDir(run_path)
    cfg = rd.read_config()
    ds = load_dataset(cfg.dataset_path)
    X = get_embeddings(ds, cfg.encoder)
    return rd, cfg, ds, X


FITTED_WITH = ("encoder", "seed", "dataset_hash", "router_params")  # recorded in each fit.json


EAGER_POOL = "unseen"  # evaluated by fit while the routers are in memory (evaluate's default pool)


def fit_task(run_path: str, task: Task) -> dict:
    """Fit one task's routers and save their states; then evaluate them on the unseen pool (the file
    ``evaluate`` would write, from the same routers, so ``evaluate --pool unseen`` only merges). The task's
    earlier evaluation files belong to its earlier fit and are removed first."""
    rd, cfg, ds, X = _context(run_path)
    trial = trial_for(ds, cfg, task, X)
    for p in POOLS:
        rd.eval_file(p, task).unlink(missing_ok=True)
    routers, seconds = fit_trial(ds, X, trial, cfg.routers, cfg.router_params)
    rd.save_fit(task, trial, routers, seconds, {k: getattr(cfg, k) for k in FITTED_WITH})
    write_evaluation(rd, cfg, ds, X, task, trial, routers, EAGER_POOL)
    return seconds


def evaluate_task(run_path: str, task: Task, pool: str) -> None:
    rd, cfg, ds, X = _context(run_path)
    trial, routers = rd.load_fit(ds, cfg, task, X)
    write_evaluation(rd, cfg, ds, X, task, trial, routers, pool)


def write_evaluation(rd: RunDir, cfg: RunConfig, ds: Dataset, X: np.ndarray, task: Task, trial: Trial,
                     routers: dict[str, Router], pool: str) -> None:
    """One task's evaluation file for ``pool``: metrics, curves, single-LLM points, per-category rows."""
    rows, curves, singles, by_cat = evaluate_trial(ds, X, trial, routers, pool)
    parts = [pd.DataFrame(rows).assign(part="metrics"), curves.assign(part="curve"), singles.assign(part="single")]
    if by_cat:
        parts.append(pd.DataFrame(by_cat).assign(part="category"))
    table = pd.concat(parts, ignore_index=True).assign(
        val_size=task.val_size_column, probe_strategy=task.strategy or cfg.split.probe_strategy)
    write_parquet(rd.eval_file(pool, task), table)


# --------------------------------------------------------------------------------------------
# the two stages
# --------------------------------------------------------------------------------------------
def fit_run(cfg: RunConfig, run_dir: str | Path, resume: bool = False, jobs: int = 1, backend: str = "local",
            scheduler: str | None = None, progress_factory: Callable | None = None,
            info: Callable[[str], None] | None = None) -> RunDir:
    """Fit every task of ``cfg`` into ``run_dir``. Everything is checked before the directory is
    created; a run refused before its config.yaml is written leaves no directory behind."""
    check_backend(backend, scheduler)
    cfg, ds = prepare(cfg)
    rd = RunDir(run_dir)
    _check_existing(rd, cfg, resume)  # refuse before any informational line (checked again under the lock)
    if info:
        info(universe_line(cfg.universe))
        if warn := pool_warning(cfg.split, int(cfg.universe.get("n_models", 0))):
            info(warn)
        for r, why in cfg.skipped_routers.items():
            info(f"skipped router {r}: {why}")
        unused = unused_params({r: p for r, p in cfg.router_params.items() if r not in cfg.skipped_routers},
                               cfg.routers)
        if unused:
            info(f"warning: no router of this run ({', '.join(cfg.routers)}) uses {', '.join(unused)}: "
                 "set for a router that is not fitted (recorded in config.yaml, no effect)")
    fresh = not rd.path.exists()
    try:
        _fit_locked(cfg, ds, rd, resume, jobs, backend, scheduler, progress_factory)
    except BaseException:
        if fresh and rd.path.is_dir() and not rd.config_file.exists():
            shutil.rmtree(rd.path, ignore_errors=True)
        raise
    return rd


def _check_existing(rd: RunDir, cfg: RunConfig, resume: bool) -> None:
    """Refuse to fit into a directory that holds a run, unless resuming it with the same settings, and into a
    non-empty directory that is not a run directory (its files are the user's)."""
    if not rd.config_file.exists():
        if rd.path.is_dir() and any(p.name != ".lock" for p in rd.path.iterdir()):
            raise RunDirError(f"{rd.path} exists, is not empty and holds no run (no config.yaml); give a new or "
                              "empty directory to --run-dir")
        return
    old = rd.read_config().to_dict()
    new = cfg.to_dict()
    diff = [k for k in new if k != "unirouter_version" and old.get(k) != new.get(k)]
    if diff:
        raise RunDirError(f"{rd.config_file}: this run was made with other settings ({', '.join(diff)}); "
                          f"to continue it, repeat the original options or run `unirouter fit --resume "
                          f"--run-dir {rd.path}` alone; else use a new --run-dir")
    if not resume:
        raise RunDirError(f"{rd.path} already holds a run; add --resume to continue it or use a new --run-dir")
    rd.check_fitted_with(new, cfg.tasks())


def _fit_locked(cfg: RunConfig, ds: Dataset, rd: RunDir, resume: bool, jobs: int, backend: str,
                scheduler: str | None, progress_factory: Callable | None) -> None:
    with rd.lock():
        _check_existing(rd, cfg, resume)
        get_embeddings(ds, cfg.encoder)  # compute + cache once, before workers start
        write_yaml(rd.config_file, cfg.to_dict())
        todo = [(str(rd.path.resolve()), task) for task in cfg.tasks() if not rd.is_fitted(task, cfg.routers)]
        progress = lazy_progress(progress_factory, len(todo), "fit")
        run_tasks(fit_task, todo, jobs, backend, scheduler, progress, warm=lambda: _context(str(rd.path.resolve())))
        rd.fitted_now = len(todo)
        write_hyperparams(rd, cfg)


def write_hyperparams(rd: RunDir, cfg: RunConfig) -> None:
    rows, times = [], []
    for task in cfg.tasks():
        f = rd.task_dir(task) / "fit.json"
        if not f.exists():
            continue
        info = json.loads(f.read_text())
        for name, hp in info["hyperparams"].items():
            for k, val in hp.items():
                rows.append({"trial": task.trial, "val_size": task.val_size_column,
                             "probe_strategy": task.strategy or cfg.split.probe_strategy, "router": name, "name": k,
                             "value": val})
        for name, s in info["seconds"].items():
            times.append({"trial": task.trial, "val_size": task.val_size_column,
                          "probe_strategy": task.strategy or cfg.split.probe_strategy, "router": name, "stage": "fit",
                          "seconds": s})
    keys = ["trial", "val_size", "probe_strategy", "router"]
    write_csv(rd.path / "hyperparams.csv", pd.DataFrame(rows, columns=keys + ["name", "value"]))
    write_csv(rd.path / "timings.csv", pd.DataFrame(times, columns=keys + ["stage", "seconds"]))


def evaluate_run(run_dir: str | Path, pools: list[str], jobs: int = 1, backend: str = "local",
                 scheduler: str | None = None, progress_factory: Callable | None = None) -> RunDir:
    check_backend(backend, scheduler)
    rd = RunDir(run_dir)
    for p in pools:
        if p not in POOLS:
            raise ConfigError(f"unknown pool {p!r}: expected one of {', '.join(POOLS)}")
    rd.read_config()  # refused before the lock: a missing run directory is not created
    with rd.lock():
        cfg = rd.read_config()
        _name, folder = resolve(cfg.dataset_path if Path(cfg.dataset_path).is_dir() else cfg.dataset)
        h = folder_hash(folder)
        if h != cfg.dataset_hash:
            raise RunDirError(f"dataset {folder} changed since the run was fitted (content hash {h}, "
                              f"run recorded {cfg.dataset_hash}); refit into a new --run-dir")
        rd.check_fitted_with(cfg.to_dict(), cfg.tasks())
        missing = [task.name for task in cfg.tasks() if not rd.is_fitted(task, cfg.routers)]
        if missing:
            raise RunDirError(f"{rd.path}: {len(missing)} trial(s) not fitted (first: {missing[0]}); "
                              f"run `unirouter fit --resume --run-dir {rd.path}`")
        for task in cfg.tasks():  # an evaluation made by fit stands for states that must still be there
            d = rd.task_dir(task)
            for f in [d / "split.npz", *(d / f"{r}.{ext}" for r in cfg.routers for ext in ("npz", "json"))]:
                try:
                    check_regular(f, "router state")
                except FileNotFoundError:
                    raise RunDirError(f"{f}: missing (a state or split of {task.name}); refit this run") from None
                except DataError as e:
                    raise RunDirError(f"{e}; refit this run") from None
        todo = [(str(rd.path.resolve()), task, p) for p in pools for task in cfg.tasks()
                if not rd.eval_file(p, task).exists()]
        progress = lazy_progress(progress_factory, len(todo), "evaluate")
        run_tasks(evaluate_task, todo, jobs, backend, scheduler, progress,
                  warm=lambda: _context(str(rd.path.resolve())))
        merge(rd.path, rd.eval_file, cfg, pools)
    return rd


