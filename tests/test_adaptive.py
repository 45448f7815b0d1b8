"""Adaptive probe selection (protocol/adaptive.py) on the bundled MMLU-Pro table with a fitted foldin."""

from __future__ import annotations

import numpy as np
import pytest

from unirouter_cli.errors import ConfigError
from unirouter_cli.protocol.adaptive import DesignModel, Session, model_profile, next_batch, posterior, profile


@pytest.fixture(scope="module")
def fitted():
    """A small foldin (rank 2, fixed penalty and prior: no cross-fold) fitted on one bundled MMLU-Pro trial, the trial's
    validation reserve and the unseen LLMs' true errors there."""
    from unirouter_cli.data import load_dataset
    from unirouter_cli.embed import get_embeddings
    from unirouter_cli.protocol.trial import errors, fit_data
    from unirouter_cli.protocol.universe import SplitConfig, make_trial
    from unirouter_cli.routers import make_router

    ds = load_dataset("mmlu-pro")
    X = get_embeddings(ds, "tfidf")
    trial = make_trial(ds, SplitConfig(val_size=40, val_reserve=40), 7, 0)
    router = make_router("foldin", rank=2, lam=6.0, tau=1.0, max_rank=2, maxiter=30).fit(fit_data(ds, X, trial, False))
    reserve = make_trial(ds, SplitConfig(val_reserve=40), 7, 0).val
    assert set(trial.val) <= set(reserve)
    return router, X[reserve], errors(ds, reserve, trial.test_models).astype(np.float64)


def reader(E: np.ndarray, log: list):
    def answer(j: int, pos: np.ndarray) -> np.ndarray:
        log.append((j, tuple(pos)))
        return E[pos, j]
    return answer


def test_profile_asks_n_distinct_probes_and_reads_only_those(fitted):
    router, Xr, E = fitted
    model = DesignModel.from_foldin(router, Xr)
    log: list = []
    A = profile(model, reader(E, log), E.shape[1], 25, batch=10)
    asked = ~np.isnan(A)
    assert (asked.sum(axis=0) == 25).all()
    assert np.array_equal(A[asked], E[asked])
    read = np.zeros_like(asked)
    for j, pos in log:
        read[list(pos), j] = True
    assert np.array_equal(read, asked)
    assert [len(p) for j, p in log if j == 0] == [10, 10, 5]  # batches of 10, the last one short
    assert len({tuple(np.flatnonzero(asked[:, j])) for j in range(E.shape[1])}) > 1  # each LLM its own probes


def test_same_answers_same_probes_and_other_answers_do_not_matter(fitted):
    router, Xr, E = fitted
    model = DesignModel.from_foldin(router, Xr)
    A = profile(model, reader(E, []), E.shape[1], 30, batch=5)
    assert np.array_equal(np.isnan(A), np.isnan(profile(model, reader(E, []), E.shape[1], 30, batch=5)))
    flipped = np.where(np.isnan(A), 1.0 - E, E)  # every answer that was not asked changed
    B = profile(model, reader(flipped, []), E.shape[1], 30, batch=5)
    np.testing.assert_array_equal(A, B)
    G = model_profile(router, Xr, A)
    np.testing.assert_array_equal(G, model_profile(router, Xr, B))
    # the check has teeth: changing the answers to the first batch changes the later probes
    first = next_batch(model, np.full((model.n_cand, 1), np.nan), 5)[0]
    changed = E.copy()
    changed[first, 0] = 1.0 - changed[first, 0]
    C = profile(model, reader(changed, []), E.shape[1], 30, batch=5)
    assert not np.array_equal(np.isnan(A[:, 0]), np.isnan(C[:, 0]))


def test_first_pick_is_the_most_informative_under_the_prior(fitted):
    router, Xr, E = fitted
    model = DesignModel.from_foldin(router, Xr)
    empty = np.full((model.n_cand, 1), np.nan)
    gain = np.zeros(model.n_cand)
    for F, (P, S) in zip(model.F, posterior(model, empty), strict=True):
        w = P[:, 0] * (1 - P[:, 0])
        gain += np.log1p(w * np.einsum("ik,kl,il->i", F, S[0], F))
    assert next_batch(model, empty, 1)[0][0] == int(np.argmax(gain))
    # a batch never repeats a probe and never re-asks an answered one
    half = empty.copy()
    half[:20, 0] = E[:20, 0]
    picks = next_batch(model, half, 15)[0]
    assert len(set(picks)) == 15 and picks.min() >= 20


def test_model_profile_keeps_answers_and_fills_the_rest(fitted):
    router, Xr, E = fitted
    A = np.full_like(E, np.nan)
    A[:10] = E[:10]
    G = model_profile(router, Xr, A)
    np.testing.assert_array_equal(G[:10], E[:10])
    assert np.isfinite(G).all() and ((G[10:] > 0) & (G[10:] < 1)).all()


def test_session_gives_the_probes_of_the_loop(fitted):
    router, Xr, E = fitted
    model = DesignModel.from_foldin(router, Xr)
    A = profile(model, reader(E, []), E.shape[1], 20, batch=10)
    s = Session(model)
    for _ in range(2):
        pos = s.next(10)
        np.testing.assert_array_equal(pos, s.next(10))  # asking again before answering: the same probes
        s.answer(pos, E[pos, 0])
    np.testing.assert_array_equal(s.asked, np.flatnonzero(~np.isnan(A[:, 0])))
    with pytest.raises(ConfigError, match="answered twice"):
        s.answer(s.asked[:1], [0.0])
    with pytest.raises(ConfigError, match="not a candidate"):
        s.answer([model.n_cand], [0.0])
    with pytest.raises(ConfigError, match=r"in \[0, 1\]"):
        s.answer(s.next(1), [2.0])
