"""One conformance suite every registered router passes, plus router-specific properties."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unirouter_cli.data.folder import load_folder
from unirouter_cli.embed.encoders import get_embeddings
from unirouter_cli.protocol.trial import errors, evaluate_trial, fit_data
from unirouter_cli.protocol.universe import SplitConfig, make_trial
from unirouter_cli.routers import ROUTERS, Pool, cluster_profile, kmeans, make_router, nearest

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
    rows, _, _, _ = evaluate_trial(ds, X, trial, routers, "unseen")
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
    from unirouter_cli.protocol.metrics import area, grouped_curve
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


@pytest.mark.parametrize("router,params,message", [
    ("uniroute-kmeans", {"K": 1.5}, "parameter K = 1.5; expected an integer >= 1"),
    ("uniroute-kmeans", {"K": 0}, "parameter K = 0"),
    ("uniroute-kmeans", {"K": -3}, "parameter K = -3"),
    ("uniroute-kmeans", {"K": True}, "parameter K = True"),
    ("uniroute-kmeans", {"alpha": -1}, "parameter alpha = -1; expected a number in [0, 1e+06]"),
    ("uniroute-kmeans", {"K": []}, "parameter K = []"),
    ("knn", {"k": -5}, "parameter k = -5"),
    ("uniroute-learnedmap", {"maxiter": "1e12"}, "parameter maxiter = '1e12'; expected an integer in [1, 100000]"),
    ("uniroute-learnedmap", {"beta": 0}, "expected a number in (0, 1e+06]"),
    ("clairvoyant-mlp", {"hidden": 0}, "parameter hidden = 0"),
    ("retrained-mlp", {"l2": float("nan")}, "parameter l2 = nan"),
    ("zero", {"K": 3}, "router zero: unknown parameter(s) K; expected none"),
])
def test_declared_parameters_are_checked(router, params, message):
    from unirouter_cli.errors import ConfigError
    from unirouter_cli.routers import resolve_params

    with pytest.raises(ConfigError) as e:
        resolve_params({router: params})
    assert message in str(e.value)


def test_parameter_values_are_normalised_and_shared():
    from unirouter_cli.errors import ConfigError
    from unirouter_cli.routers import resolve_params

    out = resolve_params({"uniroute-kmeans": {"K": 16.0, "alpha": [8, 2, 8]}},
                         ["uniroute-kmeans", "uniroute-learnedmap", "zero"])
    assert out["uniroute-kmeans"] == {"K": 16, "alpha": [2.0, 8.0]} and isinstance(out["uniroute-kmeans"]["K"], int)
    assert out["uniroute-learnedmap"] == {"K": 16, "alpha": [2.0, 8.0]}  # shared: fixed for one, fixed for both
    own = resolve_params({"uniroute-kmeans": {"K": 16}, "uniroute-learnedmap": {"K": 8}})
    assert own["uniroute-learnedmap"]["K"] == 8  # a router's own value wins
    with pytest.raises(ConfigError, match="parameters must be a mapping"):
        resolve_params({"uniroute-kmeans": 5})
    with pytest.raises(ConfigError, match="unknown router 'nope'"):
        resolve_params({"nope": {}})


def test_shared_k_reaches_learnedmap_in_a_trial(problem):
    ds, X, trial = problem
    from unirouter_cli.protocol.trial import fit_trial
    from unirouter_cli.routers import resolve_params

    params = resolve_params({"uniroute-kmeans": {"K": 4}}, ["uniroute-kmeans", "uniroute-learnedmap"])
    params["uniroute-learnedmap"].update(maxiter=10, l2=1e-3)
    fitted, _ = fit_trial(ds, X, trial, ["uniroute-kmeans", "uniroute-learnedmap"], params)
    assert fitted["uniroute-kmeans"].hyperparams_["K"] == 4 == fitted["uniroute-learnedmap"].hyperparams_["K"]


def test_fixed_sizes_above_the_grid_cap_are_kept_not_replaced_by_one(problem):
    """The grid ("auto") drops K and k above a quarter of the validation prompts; a value the user fixed is
    used as given (clipped only to the validation prompts there are), never silently replaced by 1."""
    ds, X, trial = problem
    data = fit_data(ds, X, trial, False)
    n_val = len(data.X_val)
    big = n_val // 4 + 3
    km = make_router("uniroute-kmeans", K=big, alpha=0.0).fit(data)
    nn = make_router("knn", k=big).fit(data)
    assert km.hyperparams_["K"] == big and nn.hyperparams_["k"] == big
    assert make_router("knn", k=[big, 10 * n_val]).fit(data).hyperparams_["k"] in (big, n_val)
    auto = make_router("knn").fit(data).hyperparams_["k"]
    assert auto <= max(1, n_val // 4) or auto == 1


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([0.5, -0.5, 0.0, -0.0, 1.0, -1.0, 0.25, 3.4e38, -3.4e38, 1e-45, -1e-45]),
                min_size=1, max_size=40))
def test_neighbour_keys_sort_by_similarity_then_index(values):
    """K-NN's neighbour order is (-similarity, column) exactly, ties included, whatever sort numpy's CPU picks."""
    from unirouter_cli.routers.neighbours import rank_keys

    sim = np.array([values], dtype=np.float32)
    want = np.lexsort((np.arange(sim.shape[1]), -sim[0].astype(np.float64)))
    assert np.array_equal(np.argsort(rank_keys(sim)[0], kind="stable"), want)
    assert len(np.unique(rank_keys(sim))) == sim.shape[1]


def test_knn_ties_are_taken_in_index_order():
    """Three validation prompts equally similar to the query, k = 2: the first two (by index) are the neighbours."""
    from unirouter_cli.routers.neighbours import knn_errors

    Xv = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    E = np.array([[0.0], [0.0], [1.0], [1.0]])
    out = knn_errors(np.array([[1.0, 0.0]], dtype=np.float32), Xv, E, [2, 3])
    assert out[2][0, 0] == 0.0 and out[3][0, 0] == pytest.approx(1 / 3)


@settings(max_examples=100, deadline=None)
@given(st.integers(2, 50), st.integers(0, 2), st.integers(0, 2**31 - 1))
def test_nearest_columns_match_a_full_sort(n, decimals, seed):
    """The partition-then-sort neighbour lists equal a full lexicographic sort by (-similarity, column), with
    ties (rounded similarities) at the k-th place."""
    from unirouter_cli.routers.neighbours import nearest_columns

    rng = np.random.default_rng(seed)
    sim = np.round(rng.normal(size=(5, n)), decimals).astype(np.float32)
    k = int(rng.integers(1, n + 1))
    got = nearest_columns(sim, k)
    for i in range(5):
        assert np.array_equal(got[i], np.lexsort((np.arange(n), -sim[i].astype(np.float64)))[:k])
