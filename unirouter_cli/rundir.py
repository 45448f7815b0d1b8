"""Stage 6 - the run directory: config, per-trial router states, resumable fit and evaluate.

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
import fcntl
import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from . import __version__
from .data import Dataset, folder_hash, load_dataset, resolve
from .embed import check_encoder, get_embeddings
from .errors import ConfigError, DataError, RunDirError
from .evaluate import CATEGORY_COLUMNS, POOLS, evaluate_trial, fit_trial, pool_models
from .io import (
    check_regular,
    load_yaml,
    read_npz,
    read_table,
    write_csv,
    write_json,
    write_npz,
    write_parquet,
    write_yaml,
    yaml_problem,
)
from .probes import STRATEGIES, check_strategy
from .routers import Pool, Router, check_routers, get_spec, make_router, resolve_params, unused_params
from .routers.base import STATE_ERRORS, check_prediction, nonfinite_array
from .split import COVERAGE_POLICIES, SplitConfig, Trial, fractions_off, make_trial, pool_warning, universe_line

CONFIG_VERSION = 1
METRIC_COLUMNS = ["trial", "val_size", "probe_strategy", "router", "kind", "pool", "area", "area_50", "qnc",
                  "qnc_reached", "aiq", "apgr", "best_single", "max_quality", "cost_max", "test_categories", "n_test",
                  "n_val", "n_train", "n_pool", "n_points"]


@dataclass
class RunConfig:
    dataset: str
    routers: list[str]
    trials: int = 10
    seed: int = 0
    encoder: str = "tfidf"
    split: SplitConfig = field(default_factory=SplitConfig)
    val_sizes: list[int] = field(default_factory=list)
    probe_strategies: list[str] = field(default_factory=list)  # a sweep over probe strategies
    router_params: dict[str, dict] = field(default_factory=dict)
    # filled by prepare():
    dataset_name: str = ""
    dataset_path: str = ""
    dataset_hash: str = ""
    universe: dict = field(default_factory=dict)  # what the coverage policy kept and left out
    skipped_routers: dict[str, str] = field(default_factory=dict)  # router -> why it is not in this run

    def tasks(self) -> list[Task]:
        sizes: list[int | None] = list(self.val_sizes) or [None]
        strategies: list[str | None] = list(self.probe_strategies) or [None]
        return [Task(t, v, s) for t in range(self.trials) for v in sizes for s in strategies]

    def to_dict(self) -> dict:
        return {
            "config_version": CONFIG_VERSION,
            "unirouter_version": __version__,
            "dataset": self.dataset, "dataset_name": self.dataset_name, "dataset_path": self.dataset_path,
            "dataset_hash": self.dataset_hash, "encoder": self.encoder, "routers": list(self.routers),
            "router_params": self.router_params, "trials": self.trials, "seed": self.seed,
            "split": self.split.to_dict(), "val_sizes": list(self.val_sizes),
            "probe_strategies": list(self.probe_strategies),
            "universe": self.universe, "skipped_routers": self.skipped_routers,
        }

    @classmethod
    def from_dict(cls, d: dict, where: str = "config", check: bool = True) -> RunConfig:
        """A RunConfig from a mapping (a config.yaml, a --config file, a preset): every key checked
        first (``check_config_keys``), one ConfigError naming ``where`` and the key otherwise.
        ``check=False``: values from the command line, which ``prepare`` checks naming the options."""
        if check:
            check_config_keys(d, where)
        split = dict(d.get("split") or {})
        split["unseen_models"] = tuple(split.get("unseen_models") or ())
        split["train_categories"] = tuple(split.get("train_categories") or ())
        return cls(dataset=str(d["dataset"]), routers=list(d["routers"]), trials=d.get("trials", 10),
                   seed=d.get("seed", 0), encoder=d.get("encoder", "tfidf"), split=SplitConfig(**split),
                   val_sizes=list(d.get("val_sizes") or []), probe_strategies=list(d.get("probe_strategies") or []),
                   router_params=dict(d.get("router_params") or {}), dataset_name=d.get("dataset_name", ""),
                   dataset_path=d.get("dataset_path", ""), dataset_hash=d.get("dataset_hash", ""),
                   universe=dict(d.get("universe") or {}), skipped_routers=dict(d.get("skipped_routers") or {}))


# --------------------------------------------------------------------------------------------
# checking a config mapping (the rules `fit` applies to its options)
# --------------------------------------------------------------------------------------------
CONFIG_KEYS = ("config_version", "unirouter_version", "dataset", "dataset_name", "dataset_path", "dataset_hash",
               "encoder", "routers", "router_params", "trials", "seed", "split", "val_sizes", "probe_strategies",
               "universe", "skipped_routers")
PRESET_KEYS = ("name", "description", "version", "pools", "reference")  # a preset / --config file only


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and bool(np.isfinite(v))


def _str_list(where: str, key: str, v: object, allow_empty: bool = True) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v) or (not allow_empty and not v):
        raise ConfigError(f"{where}: {key} = {v!r}; expected a {'' if allow_empty else 'non-empty '}list of names, "
                          f"e.g. [a, b]")
    if len(set(v)) != len(v):
        raise ConfigError(f"{where}: {key} lists a name twice: {', '.join(v)}")
    return v


def _check_split(where: str, split: object, partial: bool = False) -> None:
    if not isinstance(split, dict):
        raise ConfigError(f"{where}: split = {split!r}; expected a mapping, e.g. {{train_frac: 0.6}}")
    keys = set(SplitConfig.__dataclass_fields__)
    bad = sorted(map(str, set(split) - keys))
    if bad:
        raise ConfigError(f"{where}: unknown split key(s) {', '.join(bad)}; expected {', '.join(sorted(keys))}")
    for k in ("train_frac", "val_frac", "test_frac"):
        if k in split and not (_is_number(split[k]) and 0 <= split[k] <= 1):
            raise ConfigError(f"{where}: split.{k} = {split[k]!r}; expected a number in [0, 1]")
    for k in ("val_size", "val_reserve"):
        if split.get(k) is not None and not (_is_int(split[k]) and split[k] >= 1):
            raise ConfigError(f"{where}: split.{k} = {split[k]!r}; expected an integer >= 1 (or null)")
    if "unseen_frac" in split and not (_is_number(split["unseen_frac"]) and 0 < split["unseen_frac"] <= 1):
        raise ConfigError(f"{where}: split.unseen_frac = {split['unseen_frac']!r}; expected a number in (0, 1] "
                          "(1 = every LLM unseen)")
    for k in ("unseen_models", "train_categories"):
        if split.get(k) is not None:
            _str_list(where, f"split.{k}", split[k])
    if split.get("unseen_source") is not None and not isinstance(split["unseen_source"], str):
        raise ConfigError(f"{where}: split.unseen_source = {split['unseen_source']!r}; expected a string (or null)")
    if "coverage" in split and split["coverage"] not in COVERAGE_POLICIES:
        raise ConfigError(f"{where}: split.coverage = {split['coverage']!r}; expected one of "
                          f"{', '.join(COVERAGE_POLICIES)}")
    if "probe_strategy" in split and (not isinstance(split["probe_strategy"], str)
                                      or split["probe_strategy"] not in STRATEGIES):
        raise ConfigError(f"{where}: split.probe_strategy = {split['probe_strategy']!r}; expected one of "
                          f"{', '.join(STRATEGIES)}")
    fr = [split.get(k, getattr(SplitConfig, k)) for k in ("train_frac", "val_frac", "test_frac")]
    if not partial and fractions_off(fr, split.get("val_size"), split.get("train_categories")):
        raise ConfigError(f"{where}: split fractions train_frac + val_frac + test_frac = {fr[0]:g} + {fr[1]:g} + "
                          f"{fr[2]:g} = {sum(fr):g}; expected them to sum to 1")


def check_config_keys(d: dict, where: str, partial: bool = False) -> None:
    """Check a run config mapping with the rules ``fit`` applies to its options: types, ranges and
    names (routers, encoder, probe strategies, router parameters against their declared Params).
    ``partial``: a --config file that the command line completes (dataset and routers may be absent).
    Checks that need the dataset (split sizes, unseen LLMs, categories) are ``prepare``'s."""
    unknown = sorted(map(str, set(d) - set(CONFIG_KEYS)))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; expected {', '.join(CONFIG_KEYS)}")
    if not partial and ("dataset" not in d or "routers" not in d):
        raise ConfigError(f"{where}: needs at least 'dataset' and 'routers'")
    if "dataset" in d and not (isinstance(d["dataset"], str) and d["dataset"]):
        raise ConfigError(f"{where}: dataset = {d['dataset']!r}; expected a registered name or a dataset folder path")
    if "routers" in d:
        routers = _str_list(where, "routers", d["routers"], allow_empty=False)
        for r in routers:
            try:
                get_spec(r)
            except ConfigError as e:
                raise ConfigError(f"{where}: routers: {e}") from None
    if "trials" in d and not (_is_int(d["trials"]) and d["trials"] >= 1):
        raise ConfigError(f"{where}: trials = {d['trials']!r}; expected an integer >= 1")
    if "seed" in d and not (_is_int(d["seed"]) and d["seed"] >= 0):
        raise ConfigError(f"{where}: seed = {d['seed']!r}; expected an integer >= 0")
    if "encoder" in d:
        try:
            if not isinstance(d["encoder"], str):
                raise ConfigError("expected a string")
            check_encoder(d["encoder"])
        except ConfigError as e:
            raise ConfigError(f"{where}: encoder = {d['encoder']!r}: {e}") from None
    if d.get("split") is not None:
        _check_split(where, d["split"], partial)
    if d.get("val_sizes") is not None:
        v = d["val_sizes"]
        if not isinstance(v, list) or not all(_is_int(x) and x >= 1 for x in v):
            raise ConfigError(f"{where}: val_sizes = {v!r}; expected a list of positive integers, e.g. [100, 200]")
        if len(set(v)) != len(v):
            raise ConfigError(f"{where}: val_sizes lists a size twice: {v}")
    if d.get("probe_strategies") is not None:
        for s in _str_list(where, "probe_strategies", d["probe_strategies"]):
            if s not in STRATEGIES:
                raise ConfigError(f"{where}: probe_strategies: unknown probe strategy {s!r}; expected one of "
                                  f"{', '.join(STRATEGIES)}")
    if d.get("router_params") is not None:
        try:
            resolve_params(d["router_params"], d.get("routers") if isinstance(d.get("routers"), list) else None)
        except ConfigError as e:
            raise ConfigError(f"{where}: router_params: {e}") from None
    for k in ("dataset_name", "dataset_path", "dataset_hash", "unirouter_version"):
        if k in d and not isinstance(d[k], str):
            raise ConfigError(f"{where}: {k} = {d[k]!r}; expected a string")
    for k in ("universe", "skipped_routers"):
        if d.get(k) is not None and not isinstance(d[k], dict):
            raise ConfigError(f"{where}: {k} = {d[k]!r}; expected a mapping")


def check_preset_keys(d: dict, where: str) -> None:
    """The keys only a preset (or a --config file) has: version 1, pools, reference, name, description."""
    if "version" in d and d["version"] != 1:
        raise ConfigError(f"{where}: version = {d['version']!r}; this unirouter reads preset version 1")
    if "pools" in d:
        pools = _str_list(where, "pools", d["pools"], allow_empty=False)
        bad = [p for p in pools if p not in POOLS]
        if bad:
            raise ConfigError(f"{where}: pools: unknown pool {bad[0]!r}; expected one of {', '.join(POOLS)}")
    if d.get("reference") is not None:
        if not isinstance(d["reference"], str):
            raise ConfigError(f"{where}: reference = {d['reference']!r}; expected a router name")
        try:
            get_spec(d["reference"])
        except ConfigError as e:
            raise ConfigError(f"{where}: reference: {e}") from None
    for k in ("name", "description"):
        if d.get(k) is not None and not isinstance(d[k], str):
            raise ConfigError(f"{where}: {k} = {d[k]!r}; expected a string")


@dataclass(frozen=True)
class Task:
    """One unit of work: a trial, and in sweeps a validation size and a probe strategy."""

    trial: int
    val_size: int | None = None
    strategy: str | None = None

    @property
    def name(self) -> str:
        return (f"trial-{self.trial:04d}" + ("" if self.val_size is None else f"-val{self.val_size:05d}")
                + ("" if self.strategy is None else f"-{self.strategy}"))

    @property
    def val_size_column(self) -> int:
        return -1 if self.val_size is None else self.val_size


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


def open_lock_file(path: Path):  # noqa: ANN201 - a text file object
    """Open (create) a run directory's lock file without following a symbolic link at ``path``.

    A lock file that is a link, a FIFO, a directory or has other hard links is refused: truncating
    it would write through to a file someone else chose.
    """
    import errno
    import stat

    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise RunDirError(f"{path}: is a symbolic link; unirouter does not follow it (remove it if you "
                              "did not put it there)") from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        os.close(fd)
        what = "not a regular file" if not stat.S_ISREG(st.st_mode) else f"has {st.st_nlink} hard links"
        raise RunDirError(f"{path}: {what}; unirouter does not write through it (remove it if you did not put it "
                          "there)")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "a+")


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
        fh = open_lock_file(self.path / ".lock")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise RunDirError(f"run directory {self.path} is in use by {holder}; "
                              "wait for it to finish or use another --run-dir") from None
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(f"unirouter pid {os.getpid()}\n")
            fh.flush()
            yield
        finally:
            fh.seek(0)
            fh.truncate()
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
            fh.close()

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


# --------------------------------------------------------------------------------------------
# task functions (run in worker processes: they reload the dataset and embeddings by path)
# --------------------------------------------------------------------------------------------
def one_thread() -> None:
    """Pin BLAS and OpenMP to one thread in this process: parallelism is across trials, and threads inside a trial
    oversubscribe. threadpool_limits reaches the libraries loaded so far (numpy's BLAS); the variables reach those
    loaded later (scipy's own BLAS and scikit-learn's OpenMP read them when they load), so no task pays for
    importing scipy.optimize (~0.8 s) or scikit-learn (~2 s per process) unless it uses them."""
    from threadpoolctl import threadpool_limits

    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    threadpool_limits(1)


def _context(run_path: str) -> tuple[RunDir, RunConfig, Dataset, np.ndarray]:
    one_thread()
    rd = RunDir(run_path)
    cfg = rd.read_config()
    ds = load_dataset(cfg.dataset_path)
    X = get_embeddings(ds, cfg.encoder)
    return rd, cfg, ds, X


FITTED_WITH = ("encoder", "seed", "dataset_hash", "router_params")  # recorded in each fit.json


def fit_task(run_path: str, task: Task) -> dict:
    rd, cfg, ds, X = _context(run_path)
    trial = trial_for(ds, cfg, task, X)
    routers, seconds = fit_trial(ds, X, trial, cfg.routers, cfg.router_params)
    rd.save_fit(task, trial, routers, seconds, {k: getattr(cfg, k) for k in FITTED_WITH})
    return seconds


def evaluate_task(run_path: str, task: Task, pool: str) -> None:
    rd, cfg, ds, X = _context(run_path)
    trial, routers = rd.load_fit(ds, cfg, task, X)
    rows, curves, singles, by_cat = evaluate_trial(ds, X, trial, routers, pool)
    parts = [pd.DataFrame(rows).assign(part="metrics"), curves.assign(part="curve"), singles.assign(part="single")]
    if by_cat:
        parts.append(pd.DataFrame(by_cat).assign(part="category"))
    table = pd.concat(parts, ignore_index=True).assign(
        val_size=task.val_size_column, probe_strategy=task.strategy or cfg.split.probe_strategy)
    write_parquet(rd.eval_file(pool, task), table)


# --------------------------------------------------------------------------------------------
# executors
# --------------------------------------------------------------------------------------------
def check_backend(backend: str, scheduler: str | None) -> None:
    if backend not in ("local", "dask"):
        raise ConfigError(f"unknown backend {backend!r}: expected local or dask")
    if backend == "dask" and not scheduler:
        raise ConfigError("--backend dask needs --scheduler ADDRESS (e.g. tcp://127.0.0.1:8786)")


def run_tasks(fn: Callable, args: list[tuple], jobs: int = 1, backend: str = "local",
              scheduler: str | None = None, progress: Callable[[int], None] | None = None) -> list:
    """Run ``fn(*a)`` for every ``a``; results in input order. Local joblib (loky) or Dask."""
    check_backend(backend, scheduler)
    if not args:
        return []
    if backend == "dask":
        try:
            from dask.distributed import Client, as_completed
        except ImportError as e:
            raise ConfigError("--backend dask needs the 'dask' extra: pip install 'unirouter[dask]'") from e
        try:
            client = Client(scheduler, timeout="10s")
        except (OSError, TimeoutError) as e:
            raise ConfigError(f"cannot connect to the Dask scheduler at {scheduler} ({e})") from e
        try:
            futures = [client.submit(fn, *a, pure=False) for a in args]
            index = {f.key: i for i, f in enumerate(futures)}
            out: list = [None] * len(args)
            for fut in as_completed(futures):
                out[index[fut.key]] = fut.result()
                if progress:
                    progress(1)
            return out
        finally:
            client.close()
    if jobs == 1:
        out = []
        for a in args:
            out.append(fn(*a))
            if progress:
                progress(1)
        return out
    from joblib import Parallel, delayed

    out = [None] * len(args)
    gen = Parallel(n_jobs=jobs, backend="loky", return_as="generator_unordered")(
        delayed(_indexed)(i, fn, a) for i, a in enumerate(args))
    for i, res in gen:
        out[i] = res
        if progress:
            progress(1)
    return out


def _indexed(i: int, fn: Callable, a: tuple) -> tuple[int, object]:
    return i, fn(*a)


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
    """Refuse to fit into a directory that holds a run, unless resuming it with the same settings."""
    if not rd.config_file.exists():
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
        progress = progress_factory(len(todo), "fit") if progress_factory else None
        run_tasks(fit_task, todo, jobs, backend, scheduler, progress)
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
        todo = [(str(rd.path.resolve()), task, p) for p in pools for task in cfg.tasks()
                if not rd.eval_file(p, task).exists()]
        progress = progress_factory(len(todo), "evaluate") if progress_factory else None
        run_tasks(evaluate_task, todo, jobs, backend, scheduler, progress)
        merge(rd, cfg, pools)
    return rd


_EVAL_PARTS = {"metrics": METRIC_COLUMNS,
               "curve": ["trial", "val_size", "probe_strategy", "router", "pool", "cost", "quality"],
               "single": ["trial", "val_size", "probe_strategy", "pool", "model", "cost", "quality"],
               "category": CATEGORY_COLUMNS}
_EVAL_NUMERIC = ("trial", "val_size", "area", "area_50", "qnc", "aiq", "apgr", "best_single", "max_quality", "n_test",
                 "n_val", "n_train", "n_pool", "n_points", "cost", "quality")


def read_eval_file(f: Path, cfg: RunConfig, pool: str, task: Task) -> pd.DataFrame:
    """One task's evaluation file, checked: every part and column, this task's trial, validation size,
    probe strategy and pool, one metrics row per router of the run. Anything else is one RunDirError
    naming the file (a valid parquet with other content must not silently drop a trial)."""
    hint = "delete it and rerun evaluate"
    cols = sorted({"part", *(c for k, cs in _EVAL_PARTS.items() if k != "category" for c in cs)})
    df = read_table(f, cols, tuple(c for c in _EVAL_NUMERIC if c in cols), hint)
    parts = set(df["part"].astype(str))
    if not parts <= set(_EVAL_PARTS) or "metrics" not in parts:
        raise RunDirError(f"{f}: not an evaluation file of this unirouter (parts {', '.join(sorted(parts))}); {hint}")
    if "category" in parts and (missing := [c for c in CATEGORY_COLUMNS if c not in df.columns]):
        raise RunDirError(f"{f}: missing column(s) {', '.join(missing)}; {hint}")
    m = df[df["part"] == "metrics"]
    strategy = task.strategy or cfg.split.probe_strategy
    for col, want in (("trial", task.trial), ("val_size", task.val_size_column), ("probe_strategy", strategy),
                      ("pool", pool)):
        if not (df[col] == want).all():
            raise RunDirError(f"{f}: holds rows of another task (column {col} is not {want}); {hint}")
    if sorted(m["router"].astype(str)) != sorted(cfg.routers):
        raise RunDirError(f"{f}: metrics for router(s) {', '.join(map(str, m['router']))}, expected "
                          f"{', '.join(cfg.routers)}; {hint}")
    for c in ("n_test", "n_val", "n_train", "n_pool", "n_points"):
        if not np.isfinite(m[c].to_numpy(dtype=float)).all():
            raise RunDirError(f"{f}: column {c} has missing values; {hint}")
    return df


def merge(rd: RunDir, cfg: RunConfig, pools: list[str]) -> None:
    """Collect per-task evaluation files into metrics.csv, curves.parquet, singles.parquet and
    by_category.csv: the pools of this call plus every pool evaluated earlier (all its files present)."""
    pools = [p for p in POOLS if p in pools or all(rd.eval_file(p, task).exists() for task in cfg.tasks())]
    parts = []
    for p in pools:
        for task in cfg.tasks():
            parts.append(read_eval_file(rd.eval_file(p, task), cfg, p, task))
    table = pd.concat(parts, ignore_index=True)
    order = {r: i for i, r in enumerate(cfg.routers)}
    pool_order = {p: i for i, p in enumerate(POOLS)}
    strategy_order = {s: i for i, s in enumerate(cfg.probe_strategies or [cfg.split.probe_strategy])}

    def sort(df: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
        df = df.assign(_r=df["router"].map(order) if "router" in df else 0, _p=df["pool"].map(pool_order),
                       _s=df["probe_strategy"].map(strategy_order))
        return df.sort_values(["_p", "trial", "val_size", "_s", "_r"] + cols, kind="stable").drop(
            columns=["_r", "_p", "_s"])

    metrics = sort(table[table["part"] == "metrics"], [])[METRIC_COLUMNS]
    metrics = metrics.astype({"trial": int, "val_size": int, "n_test": int, "n_val": int, "n_train": int,
                              "n_pool": int, "n_points": int, "qnc_reached": bool})
    curves = sort(table[table["part"] == "curve"], [])[["trial", "val_size", "probe_strategy", "router", "pool", "cost",
                                                      "quality"]]
    singles = table[table["part"] == "single"][["trial", "val_size", "probe_strategy", "pool", "model", "cost",
                                                "quality"]]
    singles = singles.assign(_p=singles["pool"].map(pool_order), _s=singles["probe_strategy"].map(strategy_order))
    singles = singles.sort_values(["_p", "trial", "val_size", "_s", "model"], kind="stable").drop(columns=["_p", "_s"])
    write_csv(rd.path / "metrics.csv", metrics.reset_index(drop=True))
    cats = table[table["part"] == "category"] if "category" in table else table.iloc[:0]
    cat_cols = ["trial", "val_size", "probe_strategy"] + [c for c in CATEGORY_COLUMNS if c != "trial"]
    cats = sort(cats, ["category"])[cat_cols] if len(cats) else pd.DataFrame(columns=cat_cols)
    write_csv(rd.path / "by_category.csv", cats.astype({"trial": int, "val_size": int, "n_test": int,
                                                        "qnc_reached": bool}).reset_index(drop=True))
    write_parquet(rd.path / "curves.parquet", curves.astype({"trial": int, "val_size": int}).reset_index(drop=True))
    write_parquet(rd.path / "singles.parquet", singles.astype({"trial": int, "val_size": int}).reset_index(drop=True))
