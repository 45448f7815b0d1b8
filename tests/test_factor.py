"""The fold-in factor router: its pieces (training, truncation, fold-in) and its in-trial selection."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unirouter_cli.routers import FitData, Pool, make_router
from unirouter_cli.routers.factor_model import (
    fold_in,
    gaussian_prior,
    ledoit_wolf,
    neighbour_fit,
    neighbour_gamma,
    neighbour_weights,
    prior_precision,
    sigmoid,
    train_factors,
    truncate,
)


def _logloss(G: np.ndarray, P: np.ndarray) -> float:
    """Expected log-loss of predicted error probabilities G against the true ones P."""
    G = np.clip(G, 1e-6, 1 - 1e-6)
    return float(-np.mean(P * np.log(G) + (1 - P) * np.log1p(-G)))


def _table(n: int, m: int, rank: int, seed: int, D: int = 24, scale: float = 1.0):
    """Errors of m LLMs on n prompts from a rank-``rank`` logistic model of D-dim prompt embeddings."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, D)) / np.sqrt(D)
    A = rng.normal(size=(rank, D)) * scale * np.sqrt(D / max(rank, 1))
    V = rng.normal(size=(m, rank))
    b = rng.normal(0, 0.7, m)
    P = sigmoid((X @ A.T) @ V.T + b)  # true P(error)
    E = (rng.random(P.shape) < P).astype(np.float64)
    return X, E, P


def _split(X, E, P, n_tr: int, n_val: int, m_tr: int, seed: int = 3):
    tr, va, te = slice(0, n_tr), slice(n_tr, n_tr + n_val), slice(n_tr + n_val, None)
    data = FitData(X_train=X[tr], E_train=E[tr, :m_tr], C_train=np.ones((n_tr, m_tr)), X_val=X[va],
                   E_val=E[va, :m_tr], train_models=[f"h{j}" for j in range(m_tr)], seed=seed)
    pool = Pool(models=[f"h{j}" for j in range(m_tr, E.shape[1])], X_val=X[va], E_val=E[va, m_tr:])
    return data, pool, X[te], P[te, m_tr:]


def test_foldin_recovers_new_llms_of_a_low_rank_table_better_than_zero():
    X, E, P = _table(n=3000, m=30, rank=3, seed=0)
    data, pool, Xt, Pt = _split(X, E, P, n_tr=2000, n_val=300, m_tr=22)
    r = make_router("foldin").fit(data)
    g = r.predict(Xt, pool)
    zero = make_router("zero").fit(data).predict(Xt, pool)
    assert r.hyperparams_["rank"] >= 2  # the prompt structure is found ...
    assert _logloss(g, Pt) < _logloss(zero, Pt) - 0.2  # ... and new LLMs are placed in it from 300 answers
    assert _logloss(g, Pt) < _logloss(Pt, Pt) + 0.03  # close to the true probabilities
    assert np.corrcoef(g.ravel(), Pt.ravel())[0, 1] > 0.9


def test_rank_zero_is_chosen_when_errors_do_not_depend_on_the_prompt():
    rng = np.random.default_rng(1)
    n, m = 1500, 6
    X = rng.normal(size=(n, 16))
    E = (rng.random((n, m)) < rng.uniform(0.2, 0.8, m)).astype(np.float64)  # one error rate per LLM
    data, pool, Xt, _ = _split(X, E, np.zeros_like(E), n_tr=1000, n_val=200, m_tr=4)
    r = make_router("foldin").fit(data)
    assert r.hyperparams_["rank"] == 0
    g = r.predict(Xt, pool)
    assert np.allclose(g, g[0])  # prompt-independent, like ZeroRouter ...
    own, train_mean = np.nanmean(pool.E_val, axis=0), np.nanmean(data.E_train)
    assert np.argsort(g[0]).tolist() == np.argsort(own).tolist()  # ... same order of the LLMs ...
    assert np.all(np.abs(g[0] - train_mean) <= np.abs(own - train_mean) + 1e-9)  # ... shrunk toward the prior


def test_a_single_training_llm_keeps_rank_zero():
    X, E, P = _table(n=800, m=4, rank=2, seed=2)
    data, pool, Xt, _ = _split(X, E, P, n_tr=500, n_val=100, m_tr=1)
    r = make_router("foldin").fit(data)
    assert r.hyperparams_["rank"] == 0
    assert r.predict(Xt, pool).shape == (len(Xt), 3)


def test_selection_is_deterministic_and_round_trips(tmp_path):
    X, E, P = _table(n=1500, m=14, rank=2, seed=4)
    data, pool, Xt, _ = _split(X, E, P, n_tr=1000, n_val=150, m_tr=10)
    r1, r2 = make_router("foldin").fit(data), make_router("foldin").fit(data)
    assert r1.hyperparams_ == r2.hyperparams_ and r1.selection_ == r2.selection_
    g = r1.predict(Xt, pool)
    np.testing.assert_array_equal(g, r2.predict(Xt, pool))
    meta, arrays = r1.state()
    (tmp_path / "m.json").write_text(json.dumps(meta))
    np.savez(tmp_path / "a.npz", **arrays)
    with np.load(tmp_path / "a.npz", allow_pickle=False) as z:
        loaded = make_router("foldin").load_state(json.loads((tmp_path / "m.json").read_text()), dict(z))
    np.testing.assert_allclose(loaded.predict(Xt, pool), g)
    assert loaded.hyperparams_ == r1.hyperparams_


def test_fixed_hyperparameters_skip_the_selection():
    X, E, P = _table(n=1200, m=10, rank=2, seed=5)
    data, pool, Xt, _ = _split(X, E, P, n_tr=800, n_val=150, m_tr=7)
    r = make_router("foldin", rank=2, lam=6.0, tau=1.0, mix=0.3, mix_temp=0.5).fit(data)
    assert r.selection_ == {} and r.hyperparams_ == {"rank": 2, "ensemble": "2", "lam": 6.0, "tau": 1.0,
                                                     "mix": 0.3, "mix_temp": 0.5}
    r = make_router("foldin", rank=[0, 2], lam=6.0, tau=1.0, mix=0).fit(data)  # a list is a grid
    assert "mix_temp" not in r.hyperparams_ and r.hyperparams_["mix"] == 0.0  # no mixture, no temperature
    assert set(r.selection_) == {"lam=6,rank=0,tau=1", "lam=6,rank=2,tau=1"}
    r = make_router("foldin", rank=2, lam=6.0, tau=1.0, mix=[0, 0.5], mix_temp=0.2).fit(data)
    assert set(r.selection_) == {"lam=6,rank=2,tau=1", "lam=6,rank=2,tau=1,mix=0.5@0.2"}


def test_the_final_prompt_side_learns_from_the_validation_prompts_unless_told_not_to():
    """The training LLMs' answers on the validation prompts train the final prompt side (x_mean and A see those
    prompts); the new LLMs' answers there serve only the fold-in, so their labels cannot move the prompt side."""
    X, E, P = _table(n=1200, m=10, rank=2, seed=5)
    data, pool, Xt, _ = _split(X, E, P, n_tr=800, n_val=150, m_tr=7)
    fixed = {"rank": 2, "lam": 6.0, "tau": 1.0, "mix": 0}
    on = make_router("foldin", **fixed).fit(data)
    off = make_router("foldin", **fixed, val_prompts=False).fit(data)
    np.testing.assert_allclose(on.x_mean_, np.r_[data.X_train, data.X_val].mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(off.x_mean_, data.X_train.mean(axis=0), rtol=1e-5, atol=1e-6)
    assert not np.allclose(on.members_[0][0], off.members_[0][0])
    flipped = Pool(models=pool.models, X_val=pool.X_val, E_val=1.0 - pool.E_val)  # other new-LLM answers ...
    again = make_router("foldin", **fixed).fit(data)
    np.testing.assert_array_equal(again.members_[0][0], on.members_[0][0])  # ... the same prompt side
    assert not np.allclose(again.predict(Xt, flipped), on.predict(Xt, pool))  # (they do move the fold-in)


def test_train_factors_gradient_matches_finite_differences():
    from unirouter_cli.routers import optim

    X, E, _ = _table(n=60, m=5, rank=2, seed=6, D=7)
    E[3, 1] = np.nan  # a missing pair is masked
    captured = {}

    def capture(loss_grad, params, maxiter):
        captured["f"], captured["p"] = loss_grad, params
        return params

    orig = optim.lbfgs
    import unirouter_cli.routers.factor_model as factor

    factor.lbfgs = capture
    try:
        train_factors(X, E, rank=2, lam=3.0, seed=0, maxiter=1)
    finally:
        factor.lbfgs = orig
    f, p = captured["f"], {k: v + 0.3 for k, v in captured["p"].items()}
    _, grad = f(p)
    for key in ("A", "V", "b"):
        idx = (0,) * p[key].ndim
        h = 1e-3
        up = {k: v.copy() for k, v in p.items()}
        dn = {k: v.copy() for k, v in p.items()}
        up[key][idx] += h
        dn[key][idx] -= h
        numeric = (f(up)[0] - f(dn)[0]) / (2 * h)
        assert numeric == pytest.approx(grad[key][idx], rel=2e-2, abs=1e-5)


def test_fold_in_matches_logistic_regression_with_a_flat_prior():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(7)
    n, k = 4000, 3
    F = np.c_[rng.normal(size=(n, k)), np.ones(n)]
    theta = np.array([1.0, -0.5, 0.25, 0.3])
    y = (rng.random(n) < sigmoid(F @ theta)).astype(float)
    E = np.c_[y, y]
    E[::2, 1] = np.nan  # the second LLM answered half of the prompts
    T = fold_in(F, E, np.zeros(k + 1), 1e-8 * np.eye(k + 1))
    lr = LogisticRegression(C=1e8, max_iter=1000).fit(F[:, :k], y)
    np.testing.assert_allclose(T[0], np.r_[lr.coef_[0], lr.intercept_], atol=1e-3)
    half = LogisticRegression(C=1e8, max_iter=1000).fit(F[1::2, :k], y[1::2])
    np.testing.assert_allclose(T[1], np.r_[half.coef_[0], half.intercept_], atol=1e-3)
    # no answer at all: the prior mean
    mu = np.array([0.1, 0.2, 0.3, 0.4])
    T = fold_in(F, np.full((n, 1), np.nan), mu, np.eye(k + 1))
    np.testing.assert_allclose(T[0], mu)


def test_truncation_and_prior_shapes():
    X, E, _ = _table(n=400, m=9, rank=3, seed=8)
    P = train_factors(X, E, rank=6, lam=1.0, seed=0, maxiter=50)
    for r in (0, 1, 3):
        M, T = truncate(P, r)
        assert M.shape == (r, X.shape[1]) and T.shape == (9, r + 1)
        mu, cov = gaussian_prior(T)
        prec = prior_precision(cov, 4.0)
        assert mu.shape == (r + 1,) and np.all(np.linalg.eigvalsh(prec) > 0)
        assert np.linalg.inv(prec)[-1, -1] >= 0.25 - 1e-12  # the bias variance floor holds after tau
    full = truncate(P, 6)
    W = P["A"].T @ P["V"].T
    np.testing.assert_allclose(full[0].T @ full[1][:, :-1].T, W, atol=1e-8)


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 40), st.integers(1, 40), st.integers(0, 2**32 - 1), st.sampled_from(["normal", "ties", "one"]))
def test_ledoit_wolf_is_scikit_learns_bit_for_bit(m, k, seed, kind):
    """The prior's covariance is scikit-learn's Ledoit-Wolf estimate, to the last bit (the port only saves
    the import): random, tied-column and single-row-repeated inputs, fewer LLMs than dimensions too."""
    from sklearn.covariance import ledoit_wolf as sklearn_ledoit_wolf

    rng = np.random.default_rng(seed)
    T = rng.normal(size=(m, k)) * rng.gamma(1.0, 1.0, size=k)
    if kind == "ties":
        T[:, : max(k // 2, 1)] = T[:, :1]
    elif kind == "one":
        T[:] = T[0]  # every LLM alike: no spread at all
    import sklearn

    ours, theirs = ledoit_wolf(T), sklearn_ledoit_wolf(T)[0]
    if sklearn.__version__.startswith("1.9."):  # the version it was ported from: the same operations
        assert np.array_equal(ours, theirs)
    else:  # another version may order its sums differently
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-14)


def test_near_identical_training_llms_do_not_pin_a_new_llms_error_rate():
    rng = np.random.default_rng(9)
    n, m = 1500, 6
    X = rng.normal(size=(n, 16))
    rates = np.r_[np.full(5, 0.4), 0.05]  # five alike training LLMs; the new one is much better
    E = (rng.random((n, m)) < rates).astype(np.float64)
    data, pool, Xt, _ = _split(X, E, np.zeros_like(E), n_tr=1000, n_val=200, m_tr=5)
    g = make_router("foldin").fit(data).predict(Xt, pool)
    assert np.nanmean(pool.E_val) < 0.08 and g.mean() < 0.15  # its own answers win over the prior


def test_neighbour_mixture_finds_the_training_llm_a_new_llm_copies_and_its_shift():
    """A new LLM that answers like training LLM 2 with a shifted bias: the shift is recovered (the MAP of a
    one-variable logistic regression), LLM 2 carries the weight, and weights sum to one at every temperature."""
    rng = np.random.default_rng(12)
    n, m = 3000, 5
    Sv = rng.normal(0, 1.5, (n, m))  # the training LLMs' logits on the validation prompts
    y = (rng.random(n) < sigmoid(Sv[:, 2] + 0.8)).astype(float)
    E = np.c_[y, np.where(rng.random(n) < 0.5, y, np.nan)]  # the second new LLM: the same, half unanswered
    d, ll = neighbour_fit(Sv, E)
    assert d.shape == ll.shape == (2, m)
    assert d[0, 2] == pytest.approx(0.8, abs=0.12) and d[1, 2] == pytest.approx(0.8, abs=0.2)
    for c, mask in enumerate(~np.isnan(E).T):  # every shift satisfies the MAP condition of prior N(0, 0.25)
        for j in range(m):
            grad = (sigmoid(Sv[mask, j] + d[c, j]) - E[mask, c]).sum() + d[c, j] / 0.25
            assert abs(grad) < 1e-4
    for temp in (0.1, 1.0):
        idx, dd, w = neighbour_weights(d, ll, temp)
        assert idx[0, 0] == 2 and np.allclose(w.sum(axis=1), 1) and np.all(w >= 0)
    warm, cold = neighbour_weights(d, ll, 1e-3)[2][0, 0], neighbour_weights(d, ll, 1.0)[2][0, 0]
    assert warm < cold and cold > 0.99  # the smaller the temperature, the more even the weights
    St = rng.normal(size=(7, m))
    idx, dd, w = neighbour_weights(d, ll, 0.5)
    expected = np.array([[sum(w[c, j] * sigmoid(St[i, idx[c, j]] + dd[c, j]) for j in range(m)) for c in range(2)]
                         for i in range(7)])
    np.testing.assert_allclose(neighbour_gamma(St, idx, dd, w), expected)


def test_the_neighbour_mixture_is_chosen_in_trial_and_round_trips():
    X, E, P = _table(n=1400, m=12, rank=2, seed=13)
    data, pool, Xt, _ = _split(X, E, P, n_tr=900, n_val=200, m_tr=8)
    r = make_router("foldin", rank=2, lam=6.0, tau=1.0, mix="auto").fit(data)  # mix, mix_temp "auto": stage 3 runs
    keys = set(r.selection_)
    assert "lam=6,rank=2,tau=1" in keys and {f"lam=6,rank=2,tau=1,mix={a}@{t}" for a in ("0.3", "0.5")
                                             for t in ("0.1", "0.2", "0.5", "1")} <= keys
    on = make_router("foldin", rank=2, lam=6.0, tau=1.0, mix=0.5, mix_temp=0.5).fit(data)
    off = make_router("foldin", rank=2, lam=6.0, tau=1.0, mix=0).fit(data)
    g_on, g_off = on.predict(Xt, pool), off.predict(Xt, pool)
    assert g_on.shape == g_off.shape == (len(Xt), 4) and np.all((g_on > 0) & (g_on < 1))
    assert not np.allclose(g_on, g_off)
    meta, arrays = on.state()
    loaded = make_router("foldin").load_state(json.loads(json.dumps(meta)), arrays)
    np.testing.assert_array_equal(loaded.predict(Xt, pool), g_on)
    meta, arrays = off.state()  # a router saved before the mixture existed (no "mix", no T arrays) loads as off
    del meta["mix"]
    old = make_router("foldin").load_state(meta, {k: v for k, v in arrays.items() if not k.startswith("T")})
    np.testing.assert_array_equal(old.predict(Xt, pool), g_off)


@pytest.mark.parametrize(("logit", "rate"), [(-3.0, 0.5), (3.0, 0.1), (-5.0, 1.0), (4.0, 0.0), (0.0, 0.5)])
def test_neighbour_shift_is_the_map_even_for_a_distant_training_llm(logit, rate):
    """A training LLM whose logits are far from the new LLM's error rate: a plain Newton step overshoots there
    (found by an attack pass); the safeguarded one lands on the MAP, checked against scipy's bounded search."""
    from scipy.optimize import minimize_scalar

    rng = np.random.default_rng(14)
    n = 1000
    Sv = logit + rng.normal(0, 0.05, (n, 1))
    y = (rng.random(n) < rate).astype(float)
    d, ll = neighbour_fit(Sv, y[:, None])

    def objective(x: float) -> float:
        return float(np.sum(np.logaddexp(0, Sv[:, 0] + x) - y * (Sv[:, 0] + x)) + x * x / (2 * 0.25))

    ref = minimize_scalar(objective, bounds=(-300, 300), method="bounded", options={"xatol": 1e-10}).x
    assert d[0, 0] == pytest.approx(ref, abs=1e-5)
    assert ll[0, 0] == pytest.approx(-(objective(ref) - ref * ref / (2 * 0.25)), rel=1e-6)


def test_mixture_edge_cases():
    X, E, P = _table(n=1200, m=10, rank=2, seed=15)
    data, pool, Xt, _ = _split(X, E, P, n_tr=800, n_val=150, m_tr=7)
    # mix = 0 (the default) fixes the rest of the mixture: no cross-fold when the other hyperparameters are fixed
    r = make_router("foldin", rank=2, lam=6.0, tau=1.0).fit(data)
    assert r.selection_ == {} and r.mix_[0] == 0.0
    # a new LLM with no validation answer gets the fold-in alone (its mixture weights would be arbitrary)
    on = make_router("foldin", rank=2, lam=6.0, tau=1.0, mix=0.5, mix_temp=0.5).fit(data)
    E_val = pool.E_val.copy()
    E_val[:, 0] = np.nan
    blank = Pool(models=pool.models, X_val=pool.X_val, E_val=E_val)
    off = make_router("foldin").load_state(*on.state())
    off.mix_ = (0.0, 0.5)
    np.testing.assert_allclose(on.predict(Xt, blank)[:, 0], off.predict(Xt, blank)[:, 0])
    # a router saved before the mixture existed can be saved and loaded again (no None array written)
    meta, arrays = r.state()
    del meta["mix"]
    old = make_router("foldin").load_state(meta, {k: v for k, v in arrays.items() if not k.startswith("T")})
    meta2, arrays2 = old.state()
    assert all(isinstance(v, np.ndarray) and v.dtype != object for v in arrays2.values())
    np.testing.assert_array_equal(make_router("foldin").load_state(meta2, arrays2).predict(Xt, pool),
                                  r.predict(Xt, pool))


def test_neighbour_fit_in_blocks_equals_one_block(monkeypatch):
    """Pools too large for one (new LLMs x prompts x training LLMs) array are fitted in blocks of new LLMs; the
    blocks give the same shifts and likelihoods (a review found the block size overwritten inside the loop)."""
    import unirouter_cli.routers.factor_model as factor

    rng = np.random.default_rng(16)
    Sv = rng.normal(0, 1.5, (300, 6))
    E = (rng.random((300, 7)) < 0.4).astype(float)
    E[rng.random(E.shape) < 0.2] = np.nan
    whole = neighbour_fit(Sv, E)
    monkeypatch.setattr(factor, "BLOCK_CELLS", 2 * 300 * 6)  # two new LLMs per block, the last one alone
    blocks = neighbour_fit(Sv, E)
    for a, b in zip(whole, blocks, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)
