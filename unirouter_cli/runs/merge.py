"""Merging per-trial evaluation files into the run's tables (metrics.csv, curves.csv, ...)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import RunDirError
from ..io import (
    read_table,
    write_csv,
    write_parquet,
)
from ..protocol.trial import CATEGORY_COLUMNS, POOLS
from .config import RunConfig, Task

METRIC_COLUMNS = ["trial", "val_size", "probe_strategy", "router", "kind", "pool", "area", "area_50", "qnc",
                  "qnc_reached", "aiq", "apgr", "best_single", "max_quality", "cost_max", "test_categories", "n_test",
                  "n_val", "n_train", "n_pool", "n_points"]
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


def merge(out: Path, eval_file: Callable[[str, Task], Path], cfg: RunConfig, pools: list[str]) -> None:
    """Collect per-task evaluation files into metrics.csv, curves.parquet, singles.parquet and
    by_category.csv: the pools of this call plus the pools of the run's earlier metrics.csv (all their files
    present). (``fit`` writes the unseen pool's files too; they are merged when that pool is asked for.)"""
    earlier = set()
    if (out / "metrics.csv").is_file():
        with contextlib.suppress(OSError, ValueError, KeyError, pd.errors.ParserError):
            earlier = set(pd.read_csv(out / "metrics.csv", usecols=["pool"])["pool"].astype(str))
    pools = [p for p in POOLS if p in pools or (p in earlier and all(eval_file(p, t).exists() for t in cfg.tasks()))]
    parts = []
    for p in pools:
        for task in cfg.tasks():
            parts.append(read_eval_file(eval_file(p, task), cfg, p, task))
    table = pd.concat(parts, ignore_index=True)
    order = {r: i for i, r in enumerate(cfg.routers)}
    pool_order = {p: i for i, p in enumerate(POOLS)}
    strategy_order = {s: i for i, s in enumerate(cfg.probe_strategies or [cfg.split.probe_strategy])}

    def rank(col: pd.Series, order: dict[str, int]) -> np.ndarray:
        """Each value's place in ``order`` (every value is in it: read_eval_file checked them)."""
        return pd.Categorical(col, categories=list(order)).codes

    def sort(df: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
        df = df.assign(_r=rank(df["router"], order) if "router" in df else 0, _p=rank(df["pool"], pool_order),
                       _s=rank(df["probe_strategy"], strategy_order))
        return df.sort_values(["_p", "trial", "val_size", "_s", "_r"] + cols, kind="stable").drop(
            columns=["_r", "_p", "_s"])

    metrics = sort(table[table["part"] == "metrics"], [])[METRIC_COLUMNS]
    metrics = metrics.astype({"trial": int, "val_size": int, "n_test": int, "n_val": int, "n_train": int,
                              "n_pool": int, "n_points": int, "qnc_reached": bool})
    curves = sort(table[table["part"] == "curve"], [])[["trial", "val_size", "probe_strategy", "router", "pool", "cost",
                                                      "quality"]]
    singles = table[table["part"] == "single"][["trial", "val_size", "probe_strategy", "pool", "model", "cost",
                                                "quality"]]
    singles = singles.assign(_p=rank(singles["pool"], pool_order), _s=rank(singles["probe_strategy"], strategy_order))
    singles = singles.sort_values(["_p", "trial", "val_size", "_s", "model"], kind="stable").drop(columns=["_p", "_s"])
    write_csv(out / "metrics.csv", metrics.reset_index(drop=True))
    cats = table[table["part"] == "category"] if "category" in table else table.iloc[:0]
    cat_cols = ["trial", "val_size", "probe_strategy"] + [c for c in CATEGORY_COLUMNS if c != "trial"]
    cats = sort(cats, ["category"])[cat_cols] if len(cats) else pd.DataFrame(columns=cat_cols)
    write_csv(out / "by_category.csv", cats.astype({"trial": int, "val_size": int, "n_test": int,
                                                        "qnc_reached": bool}).reset_index(drop=True))
    write_parquet(out / "curves.parquet", curves.astype({"trial": int, "val_size": int}).reset_index(drop=True))
    write_parquet(out / "singles.parquet", singles.astype({"trial": int, "val_size": int}).reset_index(drop=True))
