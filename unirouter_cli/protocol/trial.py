"""fitting and evaluating routers trial by trial (no file I/O here; see rundir.py).

``fit_trial`` fits every requested router on one trial's training data. ``evaluate_trial`` profiles
a pool of LLMs on the validation prompts, asks each router for gamma on the test prompts, and turns
the answers into exact deferral curves and metrics (metrics.py), for the whole test set and for
each prompt category.

Under the ``adaptive`` probe strategy each pool LLM gets its own probes from the trial's validation reserve
(adaptive.py), and the test labels there are read only on the probes asked: foldin folds in those answers (the
pool's errors on the reserve, NaN where not asked), every other router gets the model-based profile (the asked
answers, foldin's posterior predictive on the rest of the reserve).

With no training LLMs (``--unseen-frac 1``) there is nothing to learn from but prompts and the
pool's validation answers: routers that need training LLMs are left out of the run (rundir.py), and
``FitData.E_val`` then holds the *pool's* validation errors, which the remaining routers use to
choose their hyperparameters by cross-validation over the validation prompts (routers/base.py).
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from ..data.folder import Dataset
from ..errors import ConfigError, DataError
from ..routers import FitData, Pool, Router, get_spec, make_router
from ..routers.factor import FoldInRouter
from .adaptive import BATCH, profiles
from .metrics import cost_norm, curve_metrics, deferral_curve, single_points
from .universe import Trial

POOLS = ("unseen", "seen", "all")
CATEGORY_COLUMNS = ["trial", "router", "kind", "pool", "category", "area", "area_50", "qnc", "qnc_reached",
                    "best_single", "n_test"]


def errors(ds: Dataset, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """0/1 (or fractional) errors as float32, NaN where the pair was not evaluated."""
    return 1.0 - ds.scores[np.ix_(rows, cols)].astype(np.float32)


def fit_data(ds: Dataset, X: np.ndarray, trial: Trial, needs_all: bool) -> FitData:
    tr, tm = trial.train, trial.train_models
    vm = tm if len(tm) else trial.test_models  # no training LLMs: the pool's validation answers
    return FitData(
        X_train=X[tr], E_train=errors(ds, tr, tm), C_train=ds.cost_matrix(tr, tm),
        X_val=X[trial.val], E_val=errors(ds, trial.val, vm), C_val=ds.cost_matrix(trial.val, vm),
        train_models=[ds.models[j] for j in tm], seed=trial.router_seed(),
        E_train_all=errors(ds, tr, np.arange(ds.n_models)) if needs_all else None,
        all_models=list(ds.models),
    )


def fit_trial(ds: Dataset, X: np.ndarray, trial: Trial, routers: list[str],
              params: dict[str, dict] | None = None) -> tuple[dict[str, Router], dict[str, float]]:
    """Fit each router on the trial; returns (routers, seconds per router)."""
    params = params or {}
    needs_all = any(get_spec(r).kind == "reference" for r in routers)  # they train on every LLM's labels
    data = fit_data(ds, X, trial, needs_all)
    fitted, seconds = {}, {}
    for name in routers:
        t0 = time.perf_counter()
        fitted[name] = make_router(name, **params.get(name, {})).fit(data)
        seconds[name] = time.perf_counter() - t0
    return fitted, seconds


def pool_models(trial: Trial, pool: str) -> np.ndarray:
    if pool == "unseen":
        return trial.test_models
    if pool == "seen":
        return trial.train_models
    return np.sort(np.r_[trial.train_models, trial.test_models])


def adaptive_pools(ds: Dataset, X: np.ndarray, trial: Trial, routers: dict[str, Router], cols: np.ndarray,
                   names: list[str]) -> tuple[Pool, Pool]:
    """(the model-based pool for plain-mean routers, the asked-answers pool for foldin) of an adaptive trial: each
    pool LLM answers ``len(trial.val)`` probes of the reserve, chosen by the trial's fitted foldin."""
    design = routers.get("foldin")
    if not isinstance(design, FoldInRouter):
        raise ConfigError("probe strategy adaptive needs the foldin router in the run (its posterior chooses the "
                          "probes): add -r foldin")
    res = trial.reserve

    def answer(j: int, pos: np.ndarray) -> np.ndarray:  # the only read of pool labels on the reserve
        return errors(ds, res[pos], cols[j:j + 1])[:, 0]

    E, G = profiles(design, X[res], answer, len(cols), len(trial.val), int(trial.info.get("probe_batch", BATCH)))
    return Pool(models=names, X_val=X[res], E_val=G), Pool(models=names, X_val=X[res], E_val=E)


def evaluate_trial(ds: Dataset, X: np.ndarray, trial: Trial, routers: dict[str, Router],
                   pool: str) -> tuple[list[dict], pd.DataFrame, pd.DataFrame, list[dict]]:
    """Metrics rows, exact curves, single-LLM points and per-category rows of every router on one
    trial and pool. The test prompts are the trial's, whatever the pool (the universe is complete)."""
    cols = pool_models(trial, pool)
    if len(cols) == 0:
        raise DataError(f"trial {trial.index}: the {pool} pool is empty (no training LLMs in this run); "
                        "evaluate --pool unseen")
    rows = trial.test
    S = ds.scores[np.ix_(rows, cols)].astype(np.float64)
    if np.isnan(S).any():  # cannot happen inside a universe; never score a made-up answer
        raise DataError(f"trial {trial.index}: a test prompt lacks an answer of a pool LLM")
    C = ds.cost_matrix(rows, cols)
    cost_max = cost_norm(C)  # the normaliser: cost 1 on the curves, in the dataset's unit
    names = [ds.models[j] for j in cols]
    base = asked = Pool(models=names, X_val=X[trial.val], E_val=errors(ds, trial.val, cols))
    if trial.reserve is not None:
        base, asked = adaptive_pools(ds, X, trial, routers, cols, names)
    Xt = X[rows]
    cats = ds.categories[rows]
    test_categories = ";".join(sorted(set(cats)))
    groups = {c: np.flatnonzero(cats == c) for c in sorted(set(cats))} if len(set(cats)) > 1 else {}
    metrics, curves, by_cat = [], [], []
    for name, router in routers.items():
        pool_obj = asked if isinstance(router, FoldInRouter) else base
        if router.kind == "bound":
            pool_obj = Pool(models=names, X_val=base.X_val, E_val=base.E_val, truth=1.0 - S)
        t0 = time.perf_counter()
        gamma = np.asarray(router.predict(Xt, pool_obj), dtype=np.float64)
        curve = deferral_curve(gamma, S, C)
        row = {"trial": trial.index, "router": name, "pool": pool, "kind": router.kind}
        row.update(curve_metrics(curve, S, C))
        row.update({"cost_max": cost_max, "test_categories": test_categories, "n_test": int(len(rows)),
                    "n_val": int(len(trial.val)), "n_train": int(len(trial.train)), "n_pool": int(len(cols)),
                    "n_points": int(len(curve.cost)),
                    "seconds_predict": time.perf_counter() - t0})
        metrics.append(row)
        curves.append(pd.DataFrame({"trial": trial.index, "router": name, "pool": pool,
                                    "cost": curve.cost.astype(np.float32),
                                    "quality": curve.quality.astype(np.float32)}))
        for c, idx in groups.items():
            cm = curve_metrics(deferral_curve(gamma[idx], S[idx], C[idx]), S[idx], C[idx])
            by_cat.append({"trial": trial.index, "router": name, "kind": router.kind, "pool": pool, "category": c,
                           **{k: cm[k] for k in ("area", "area_50", "qnc", "qnc_reached", "best_single")},
                           "n_test": int(len(idx))})
    sc, sq = single_points(S, C)
    singles = pd.DataFrame({"trial": trial.index, "pool": pool, "model": names, "cost": sc, "quality": sq})
    return metrics, pd.concat(curves, ignore_index=True), singles, by_cat
