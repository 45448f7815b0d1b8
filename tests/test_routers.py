"""One conformance suite every registered router passes, plus router-specific properties."""

from __future__ import annotations

import json

import numpy as np
import pytest

from unirouter_cli.data import load_folder
from unirouter_cli.embed import get_embeddings
from unirouter_cli.evaluate import errors, evaluate_trial, fit_data
from unirouter_cli.routers import ROUTERS, Pool, cluster_profile, kmeans, make_router, nearest
from unirouter_cli.split import SplitConfig, make_trial

FAST = {"uniroute-learnedmap": {"maxiter": 15, "l2": 1e-3}, "clairvoyant-mlp": {"maxiter": 15},
        "clairvoyant-matfac": {"maxiter": 15}, "retrained-mlp": {"maxiter": 15}}


@pytest.fixture(scope="module")
def problem(tmp_path_factory, small_tables):
    from .conftest import write_dataset

    folder = write_dataset(tmp_path_factory.mktemp("ds") / "small", *small_tables)
    ds = load_folder(folder)
    X = get_embeddings(ds, "tfidf")
    trial = make_trial(ds, SplitConfig(), seed=7, index=0)
    return ds, X, trial


def _pool(ds, X, trial, cols, rows=None):
    truth = None if rows is None else errors(ds, rows, cols)
    return Pool(models=[ds.models[j] for j in cols], X_val=X[trial.val], E_val=errors(ds, trial.val, cols),
                truth=truth)


@pytest.mark.parametrize("name", list(ROUTERS))
def test_router_conformance(problem, name, tmp_path):
    ds, X, trial = problem
    data = fit_data(ds, X, trial, needs_all=True)
    r1 = make_router(name, **FAST.get(name, {})).fit(data)
    r2 = make_router(name, **FAST.get(name, {})).fit(data)
    rows = trial.test
    cols = trial.test_models
    pool = _pool(ds, X, trial, cols, rows)
    g1 = r1.predict(X[rows], pool)
    assert g1.shape == (len(rows), len(cols))
    assert np.all(np.isfinite(g1)) and g1.min() >= 0 and g1.max() <= 1
    np.testing.assert_array_equal(g1, r2.predict(X[rows], pool))  # same seed -> same router
    # state round-trips through JSON + npz files (no pickle)
    meta, arrays = r1.state()
    (tmp_path / "m.json").write_text(json.dumps(meta))
    np.savez(tmp_path / "a.npz", **arrays)
    with np.load(tmp_path / "a.npz", allow_pickle=False) as z:
        loaded = make_router(name).load_state(json.loads((tmp_path / "m.json").read_text()), dict(z))
    np.testing.assert_allclose(loaded.predict(X[rows], pool), g1)
    # a pool with one more LLM, never seen in training: no refit needed
    bigger = np.r_[cols, trial.train_models[:1]]
    g3 = r1.predict(X[rows], _pool(ds, X, trial, bigger, rows))
    assert g3.shape == (len(rows), len(bigger))
    if ROUTERS[name].kind == "dynamic" and name != "retrained-mlp":
        np.testing.assert_allclose(g3[:, : len(cols)], g1)  # gamma of an LLM depends only on its own answers


def test_zero_equals_kmeans_with_one_cluster(problem):
    ds, X, trial = problem
    data = fit_data(ds, X, trial, needs_all=False)
    zero = make_router("zero").fit(data)
    k1 = make_router("uniroute-kmeans", K=1, alpha=0.0).fit(data)
    pool = _pool(ds, X, trial, trial.test_models)
    np.testing.assert_array_equal(zero.predict(X[trial.test], pool), k1.predict(X[trial.test], pool))
    g = zero.predict(X[trial.test], pool)
    assert np.all(g == g[0])  # prompt-independent


def test_oracle_bounds_every_router(problem):
    ds, X, trial = problem
    routers = {n: make_router(n, **FAST.get(n, {})).fit(fit_data(ds, X, trial, True)) for n in ROUTERS}
    rows, _, _ = evaluate_trial(ds, X, trial, routers, "unseen")
    by = {r["router"]: r for r in rows}
    for name, r in by.items():
        assert by["oracle"]["area"] >= r["area"] - 1e-12, name
        assert by["oracle"]["qnc"] <= r["qnc"] + 1e-12, name


def test_cluster_profile_shrinkage_and_empty_clusters():
    E = np.array([[1.0, 0.0], [1.0, np.nan], [0.0, 1.0], [0.0, 1.0]])
    assign = np.array([0, 0, 1, 1])
    psi = cluster_profile(E, assign, K=3, alpha=0.0)
    np.testing.assert_allclose(psi[0], [1.0, 0.0])
    np.testing.assert_allclose(psi[1], [0.0, 1.0])
    np.testing.assert_allclose(psi[2], [0.5, 2 / 3])  # empty cluster -> overall validation error
    shrunk = cluster_profile(E, assign, K=3, alpha=2.0)
    assert shrunk[0, 0] == pytest.approx((2 + 2 * 0.5) / 4)


def test_kmeans_is_deterministic_and_assigns_nearest():
    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(0, 0.1, (50, 2)), rng.normal(5, 0.1, (50, 2))].astype(np.float32)
    C1, C2 = kmeans(X, 2, seed=1), kmeans(X, 2, seed=1)
    np.testing.assert_array_equal(C1, C2)
    a = nearest(X, C1)
    assert len(set(a[:50])) == 1 and len(set(a[50:])) == 1 and a[0] != a[-1]


def test_hyperparameters_are_chosen_without_test_data(problem):
    """Selection sees FitData only: changing test labels must not change the chosen K or k."""
    ds, X, trial = problem
    data = fit_data(ds, X, trial, needs_all=False)
    km = make_router("uniroute-kmeans").fit(data)
    knn = make_router("knn").fit(data)
    ds.scores[np.ix_(trial.test, trial.test_models)] = 1 - ds.scores[np.ix_(trial.test, trial.test_models)]
    try:
        data2 = fit_data(ds, X, trial, needs_all=False)
        assert make_router("uniroute-kmeans").fit(data2).hyperparams_ == km.hyperparams_
        assert make_router("knn").fit(data2).hyperparams_ == knn.hyperparams_
    finally:
        ds.scores[np.ix_(trial.test, trial.test_models)] = 1 - ds.scores[np.ix_(trial.test, trial.test_models)]
    assert km.hyperparams_["K"] >= 1 and "k" in knn.hyperparams_


def test_grouped_selection_equals_row_level_selection():
    from unirouter_cli.metrics import area, grouped_curve
    from unirouter_cli.routers import selection_area

    rng = np.random.default_rng(5)
    n, m, K = 500, 6, 7
    assign = rng.integers(0, K, n)
    psi = rng.random((K, m))
    E = (rng.random((n, m)) < 0.4).astype(float)
    E[3, 2] = np.nan  # an incomplete row is left out by both
    cost = rng.uniform(0.1, 5, m)
    C = np.broadcast_to(cost, (n, m))
    ok = ~np.isnan(E).any(axis=1)
    onehot = np.eye(K)[assign[ok]]
    ssum, cnt = onehot.T @ (1 - E[ok]), onehot.sum(0)
    keep = cnt > 0
    grouped = area(grouped_curve(psi[keep], np.broadcast_to(cost, (int(keep.sum()), m)), ssum[keep], cnt[keep],
                                 float(cost.max())))
    assert grouped == pytest.approx(selection_area(psi[assign], E, C), abs=1e-12)


def test_missing_pairs_policy(tmp_path, small_tables):
    """Unevaluated pairs are masked in training/validation and their test prompts are left out."""
    from .conftest import write_dataset

    p, o, m = small_tables
    partial = m["model"].iloc[0]
    drop = o[(o["model"] == partial)].sample(frac=0.3, random_state=0).index
    ds = load_folder(write_dataset(tmp_path / "partial", p, o.drop(index=drop), m))
    X = get_embeddings(ds, "tfidf")
    trial = make_trial(ds, SplitConfig(unseen_models=(partial, m["model"].iloc[1])), seed=0, index=0)
    data = fit_data(ds, X, trial, needs_all=False)
    assert not np.isnan(data.E_train).any()  # the partial LLM is in the unseen pool, not in training
    routers = {"zero": make_router("zero").fit(data), "oracle": make_router("oracle")}
    rows, _, _ = evaluate_trial(ds, X, trial, routers, "unseen")
    complete = (~np.isnan(ds.scores[np.ix_(trial.test, trial.test_models)])).all(axis=1).sum()
    assert rows[0]["n_test"] == complete < len(trial.test)
    # validation profile of the partial LLM uses only its evaluated prompts (masked mean)
    pool = _pool(ds, X, trial, trial.test_models)
    j = [ds.models[c] for c in trial.test_models].index(partial)
    expected = np.nanmean(1 - ds.scores[trial.val, ds.models.index(partial)])
    assert routers["zero"].predict(X[trial.test[:1]], pool)[0, j] == pytest.approx(expected, rel=1e-6)
