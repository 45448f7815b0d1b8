"""Reading a run directory's result tables and config for reports and figures."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from ..errors import ConfigError, DataError, RunDirError
from ..io import load_yaml, read_table, yaml_problem

REFERENCE_PREFERENCE = ("knn", "zero")


def default_reference(metrics: pd.DataFrame) -> str:
    """``knn`` if the run has it, else ``zero``, else its first router that is not a bound."""
    routers = list(dict.fromkeys(metrics["router"]))
    for r in REFERENCE_PREFERENCE:
        if r in routers:
            return r
    kinds = metrics.groupby("router", sort=False)["kind"].first()
    return next((r for r in routers if kinds.get(r) != "bound"), routers[0])


# ------------------------------------------------------------------------------------------------
# reading a run
# ------------------------------------------------------------------------------------------------
METRIC_NEED = ("trial", "router", "pool", "val_size", "kind", "area", "area_50", "qnc", "aiq", "apgr",
               "qnc_reached", "n_pool", "n_test", "n_val", "best_single")


def read_metrics(run_dir: Path) -> pd.DataFrame:
    """metrics.csv of an evaluated run, checked (one RunDirError naming the file otherwise)."""
    mfile = run_dir / "metrics.csv"
    if not mfile.exists():
        raise RunDirError(f"{mfile}: missing; run `unirouter evaluate --run-dir {run_dir}` first")
    hint = f"rerun `unirouter evaluate --run-dir {run_dir}` to rewrite it"
    metrics = read_table(mfile, METRIC_NEED, tuple(c for c in METRIC_NEED if c not in ("router", "pool", "kind")),
                         hint)
    if metrics.empty:
        raise RunDirError(f"{mfile}: no rows; {hint}")
    check_metrics(metrics, mfile, hint)
    return with_derived(metrics)


FINITE = ("trial", "val_size", "area", "qnc", "aiq", "n_pool", "n_test", "n_val", "best_single")
COUNTS = ("trial", "n_pool", "n_test", "n_val")
KINDS = ("dynamic", "reference", "bound")  # routers.registry.KINDS, not imported: it loads every router
POOLS = ("unseen", "seen", "all")  # protocol.trial.POOLS, likewise


def check_metrics(metrics: pd.DataFrame, path: Path, hint: str) -> None:
    """The values evaluate writes, and nothing else: one RunDirError naming the line and column otherwise.

    Numbers are finite (NaN only where a metric can be undefined: apgr, area_50), counts whole and
    non-negative, ``qnc_reached`` true/false, names printable text, ``kind`` and ``pool`` known values."""
    import numpy as np

    from ..data.tables import row_label

    def bad(col: str, mask: np.ndarray, want: str) -> None:
        if mask.any():
            i = int(np.flatnonzero(mask)[0])
            v = metrics[col].iloc[i]
            v = v.item() if isinstance(v, np.generic) else v
            raise RunDirError(f"{path}: {row_label(path, i)}: {col} = {v!r:.40}; expected {want}; "
                              f"{hint}")

    for col in metrics.columns:
        s = metrics[col]
        if pd.api.types.is_bool_dtype(s) and col != "qnc_reached":
            bad(col, np.ones(len(s), bool), "a number, not true/false")
        if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
            v = s.to_numpy(dtype=np.float64)
            bad(col, np.isinf(v), "a finite number")
            if col in FINITE:
                bad(col, np.isnan(v), "a number")
            if col in COUNTS:
                bad(col, (v < 0) | (v != np.round(v)), "a whole number >= 0")
    if not pd.api.types.is_bool_dtype(metrics["qnc_reached"]):
        bad("qnc_reached", ~metrics["qnc_reached"].isin([True, False]).to_numpy(), "True or False")
    for col, known in (("router", None), ("pool", POOLS), ("kind", KINDS)):
        s = metrics[col]
        text = s.map(lambda v: isinstance(v, str) and v.isprintable() and v != "").to_numpy(dtype=bool)
        bad(col, ~text, "printable text")
        if known:
            bad(col, ~s.isin(known).to_numpy(), f"one of {', '.join(known)}")


def read_run_config(run_dir: Path) -> dict:
    """config.yaml as a mapping for labels ({} if absent); a corrupt file is one RunDirError."""
    f = run_dir / "config.yaml"
    if not f.exists():
        return {}
    try:
        d = load_yaml(f)
    except (yaml.YAMLError, UnicodeDecodeError, DataError) as e:
        raise RunDirError(f"{f}: not valid YAML ({yaml_problem(e)})") from e
    if not isinstance(d, dict):
        raise RunDirError(f"{f}: expected a mapping")
    from ..runs.config import RunConfig, check_config_keys
    from ..runs.rundir import RunDir  # checked as fit checks it, and against fit.json

    try:
        check_config_keys(d, str(f), partial=True)
        if "dataset" in d and "routers" in d:
            RunDir(run_dir).check_fitted_with(d, RunConfig.from_dict(d, str(f)).tasks())
    except ConfigError as e:
        raise RunDirError(str(e)) from None
    return d


OPTIONAL_TABLES = {  # file -> (required columns, numeric columns, how to recreate it)
    "hyperparams.csv": (("trial", "val_size", "router", "name", "value"), ("trial", "val_size"),
                        "delete it or refit into a new --run-dir"),
    "singles.parquet": (("trial", "val_size", "pool", "model", "cost", "quality"),
                        ("trial", "val_size", "cost", "quality"), "rerun `unirouter evaluate` to rewrite it"),
    "curves.parquet": (("trial", "val_size", "router", "pool", "cost", "quality"),
                       ("trial", "val_size", "cost", "quality"), "rerun `unirouter evaluate` to rewrite it"),
    "by_category.csv": (("trial", "val_size", "router", "kind", "pool", "category", "area", "qnc", "n_test"),
                        ("trial", "val_size", "area", "area_50", "qnc", "n_test"),
                        "rerun `unirouter evaluate` to rewrite it"),
}


def read_optional(path: Path) -> pd.DataFrame | None:
    """A table of the run (``OPTIONAL_TABLES``), checked, if present and non-empty; else None."""
    if not path.exists() or path.stat().st_size == 0:
        return None
    required, numeric, hint = OPTIONAL_TABLES[path.name]
    df = read_table(path, required, (), hint)
    if df.empty:  # a header only (e.g. by_category.csv of a run with one test category)
        return None
    for c in numeric:
        if c in df and not (pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c])):
            raise RunDirError(f"{path}: column {c} is not numeric; {hint}")
    if "probe_strategy" not in df:
        df["probe_strategy"] = "random"
    return df


def with_derived(metrics: pd.DataFrame) -> pd.DataFrame:
    """Add ``qnc_cost`` (QNC in the dataset's cost unit) and, for older runs, ``probe_strategy``."""
    out = metrics.copy()
    if "probe_strategy" not in out:
        out["probe_strategy"] = "random"
    if "cost_max" in out and "qnc" in out:
        out["qnc_cost"] = out["qnc"] * out["cost_max"]
    return out
