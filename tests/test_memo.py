"""Exact memoisation of the repeated fits (routers/memo.py): a stored result equals a fresh computation, callers
cannot change it, the store stays within its budget, and a sweep's results do not depend on it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from unirouter_cli.routers import memo
from unirouter_cli.routers.clusters import kmeans
from unirouter_cli.routers.factor_model import train_factors


@pytest.fixture(autouse=True)
def _empty_store():
    memo.clear()
    yield
    memo.clear()


def _data(n: int = 3000, d: int = 32, m: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    E = (rng.random((n, m)) < 0.4).astype(np.float64)
    return X, E


def test_stored_result_equals_a_fresh_computation(monkeypatch):
    X, E = _data()
    first = train_factors(X, E, 4, 2.0, 7, 20)
    assert len(memo._STORE) == 1
    again = train_factors(X, E, 4, 2.0, 7, 20)
    monkeypatch.setenv("UNIROUTER_MEMO", "0")
    fresh = train_factors(X, E, 4, 2.0, 7, 20)
    for k in first:
        assert np.array_equal(first[k], again[k]) and np.array_equal(first[k], fresh[k])


def test_a_changed_argument_is_a_different_call():
    X, E = _data()
    C1 = kmeans(X, 8, 1)
    X2 = X.copy()
    X2[0, 0] += 1.0  # one value differs
    C2 = kmeans(X2, 8, 1)
    C3 = kmeans(X, 8, 2)  # another seed
    assert len(memo._STORE) == 3
    assert not np.array_equal(C1, C3)
    assert C2.shape == C1.shape


def test_callers_get_copies():
    X, E = _data()
    C = kmeans(X, 5, 3)
    C[:] = 0.0
    assert not np.array_equal(kmeans(X, 5, 3), C)


def test_small_calls_are_not_stored():
    X, _ = _data(n=50, d=4)
    kmeans(X, 3, 0)
    assert len(memo._STORE) == 0


def test_store_stays_within_budget(monkeypatch):
    monkeypatch.setattr(memo, "BUDGET_BYTES", 8 * 2**10)
    monkeypatch.setattr(memo, "MIN_BYTES", 0)
    X, _ = _data(n=400, d=8)
    for K in range(2, 40):
        kmeans(X, K, 0)
    assert memo._SIZE[0] <= memo.BUDGET_BYTES
    assert sum(size for _, size in memo._STORE.values()) == memo._SIZE[0]
    assert len(memo._STORE) < 38  # the oldest were dropped


def test_sweep_results_do_not_depend_on_the_store(tmp_path, monkeypatch):
    """Two validation sizes x two probe strategies of one trial (the sweep the store serves) in one process, with
    and without it: every metric and chosen hyperparameter equal."""
    from unirouter_cli.runs.config import RunConfig
    from unirouter_cli.runs.rundir import evaluate_run, fit_run

    def run(path):
        cfg = RunConfig(dataset="mmlu-pro", routers=["uniroute-kmeans", "foldin"], trials=1, seed=5,
                        val_sizes=[50, 100], probe_strategies=["random", "stratified"])
        fit_run(cfg, path)
        evaluate_run(path, ["unseen"])
        return pd.read_csv(path / "metrics.csv"), pd.read_csv(path / "hyperparams.csv")

    with_store = run(tmp_path / "a")
    assert len(memo._STORE) > 0
    memo.clear()
    monkeypatch.setenv("UNIROUTER_MEMO", "0")
    without = run(tmp_path / "b")
    assert len(memo._STORE) == 0
    pd.testing.assert_frame_equal(with_store[0], without[0])
    pd.testing.assert_frame_equal(with_store[1], without[1])
