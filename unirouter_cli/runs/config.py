"""The run config schema: ``RunConfig`` and the checks of config.yaml, presets and ``--config`` files."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields

import numpy as np

from .. import __version__
from ..embed.encoders import check_encoder
from ..errors import ConfigError
from ..protocol.probes import STRATEGIES
from ..protocol.trial import POOLS
from ..protocol.universe import (
    COVERAGE_POLICIES,
    SplitConfig,
    fractions_off,
)
from ..routers import get_spec, resolve_params

CONFIG_VERSION = 1
MAX_TRIALS = 10_000  # trials of one run (every trial is a task with its own files)
MAX_TRIALS_ENV = "UNIROUTER_MAX_TRIALS"
MAX_VAL_SIZES = 64  # entries of a validation-size sweep
MAX_VAL_SIZE = 10_000_000  # prompts of one validation set


def max_trials() -> int:
    """The largest trial count a run accepts: ``MAX_TRIALS``, or ``$UNIROUTER_MAX_TRIALS``."""
    try:
        return max(1, int(os.environ.get(MAX_TRIALS_ENV, MAX_TRIALS)))
    except ValueError as e:
        raise ConfigError(f"{MAX_TRIALS_ENV}={os.environ[MAX_TRIALS_ENV]!r}: expected a number of trials") from e


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
        """config.yaml's mapping: the versions, then every field (``split`` as its own mapping)."""
        out: dict = {"config_version": CONFIG_VERSION, "unirouter_version": __version__}
        for k in _FIELD_ORDER:
            v = getattr(self, k)
            out[k] = v.to_dict() if isinstance(v, SplitConfig) else list(v) if isinstance(v, list) else v
        return out

    @classmethod
    def from_dict(cls, d: dict, where: str = "config", check: bool = True) -> RunConfig:
        """A RunConfig from a mapping (a config.yaml, a --config file, a preset): every key checked
        first (``check_config_keys``), one ConfigError naming ``where`` and the key otherwise.
        ``check=False``: values from the command line, which ``prepare`` checks naming the options."""
        if check:
            check_config_keys(d, where)
        check_sizes(d, where)
        kw: dict = {}
        for f in fields(cls):
            if f.name not in d or (d[f.name] is None and f.name not in ("dataset", "routers")):
                continue
            v = d[f.name]
            if f.name == "split":
                split = dict(v)
                split["unseen_models"] = tuple(split.get("unseen_models") or ())
                split["train_categories"] = tuple(split.get("train_categories") or ())
                v = SplitConfig(**split)
            elif f.name == "dataset":
                v = str(v)
            elif f.default_factory in (list, dict):
                v = f.default_factory(v)  # a fresh copy
            elif f.name == "routers":
                v = list(v)
            kw[f.name] = v
        return cls(**kw)


# config.yaml's key order (after the versions): fixed, so a config written twice is the same file
_FIELD_ORDER = ("dataset", "dataset_name", "dataset_path", "dataset_hash", "encoder", "routers", "router_params",
                "trials", "seed", "split", "val_sizes", "probe_strategies", "universe", "skipped_routers")


# --------------------------------------------------------------------------------------------
# checking a config mapping (the rules `fit` applies to its options)
# --------------------------------------------------------------------------------------------
CONFIG_KEYS = ("config_version", "unirouter_version", *_FIELD_ORDER)


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
    if split.get("unseen_strongest") is not None and not (_is_int(split["unseen_strongest"])
                                                         and split["unseen_strongest"] >= 1):
        raise ConfigError(f"{where}: split.unseen_strongest = {split['unseen_strongest']!r}; expected an integer >= 1")
    if "probe_batch" in split and not (_is_int(split["probe_batch"]) and split["probe_batch"] >= 1):
        raise ConfigError(f"{where}: split.probe_batch = {split['probe_batch']!r}; expected an integer >= 1")
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


def check_sizes(d: dict, where: str) -> None:
    """Sizes that allocate: the trial count and the validation-size sweep (from a file or the command line)."""
    cli = where == "command line"
    trials = d.get("trials")
    if _is_int(trials) and trials > max_trials():
        raise ConfigError(f"{'--trials' if cli else where + ': trials ='} {trials:,}: at most {max_trials():,} "
                          f"trials per run (set {MAX_TRIALS_ENV} to raise the limit)")
    sizes = d.get("val_sizes")
    if isinstance(sizes, list) and sizes and (
            len(sizes) > MAX_VAL_SIZES or any(_is_int(v) and v > MAX_VAL_SIZE for v in sizes)):
        big = max((v for v in sizes if _is_int(v)), default=0)
        raise ConfigError(f"{'--val-sizes' if cli else where + ': val_sizes'}: {len(sizes)} sizes up to {big:,}; a "
                          f"sweep has at most {MAX_VAL_SIZES} sizes of at most {MAX_VAL_SIZE:,} prompts")
    split = d.get("split")
    size = split.get("val_size") if isinstance(split, dict) else None
    if _is_int(size) and size > MAX_VAL_SIZE:
        raise ConfigError(f"{'--val-size' if cli else where + ': split.val_size ='} {size:,}: at most "
                          f"{MAX_VAL_SIZE:,} validation prompts")


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
