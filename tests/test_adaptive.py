"""Adaptive probe selection (protocol/adaptive.py) on the bundled MMLU-Pro table with a fitted foldin."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from unirouter_cli.errors import ConfigError
from unirouter_cli.protocol.adaptive import DesignModel, Session, model_profile, next_batch, posterior, profile

from .conftest import invoke, write_dataset


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, small_tables):
    """A small foldin (rank 2, fixed penalty and prior: no cross-fold) fitted on one trial of 600 real RouterBench
    prompts, the trial's validation reserve and the unseen LLMs' true errors there."""
    from unirouter_cli.data.registry import load_dataset
    from unirouter_cli.embed.encoders import get_embeddings
    from unirouter_cli.protocol.trial import errors, fit_data
    from unirouter_cli.protocol.universe import SplitConfig, make_trial
    from unirouter_cli.routers import make_router

    folder = write_dataset(tmp_path_factory.mktemp("data") / "small-rb", *small_tables, {"name": "small-rb"})
    ds = load_dataset(str(folder))
    X = get_embeddings(ds, "tfidf")
    trial = make_trial(ds, SplitConfig(val_size=40, val_reserve=80), 7, 0)
    router = make_router("foldin", rank=2, lam=6.0, tau=1.0, max_rank=2, maxiter=30).fit(fit_data(ds, X, trial, False))
    reserve = make_trial(ds, SplitConfig(val_reserve=80), 7, 0).val
    assert set(trial.val) <= set(reserve) and len(reserve) == 80
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


@pytest.mark.parametrize("criterion", ["v", "d"])
def test_same_answers_same_probes_and_other_answers_do_not_matter(fitted, criterion, monkeypatch):
    import unirouter_cli.protocol.adaptive as adaptive

    monkeypatch.setattr(adaptive, "CRITERION", criterion)
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
    d_gain, v_gain = np.zeros(model.n_cand), np.zeros(model.n_cand)
    for F, (P, S) in zip(model.F, posterior(model, empty), strict=True):
        w = P[:, 0] * (1 - P[:, 0])
        q = np.einsum("ik,kl,il->i", F, S[0], F)
        d_gain += np.log1p(w * q)
        C = F @ S[0] @ F.T  # C[i, j] = f_i' Sigma f_j; the V-optimal gain written out over the reserve, unvectorised
        v_gain += np.array([np.sum(w ** 2 * C[:, j] ** 2) * w[j] / (1 + w[j] * q[j]) for j in range(model.n_cand)])
    assert next_batch(model, empty, 1, criterion="d")[0][0] == int(np.argmax(d_gain))
    assert next_batch(model, empty, 1)[0][0] == int(np.argmax(v_gain))  # V-optimal is the default
    assert set(next_batch(model, empty, 10)[0]) != set(next_batch(model, empty, 10, criterion="d")[0])  # they differ
    with pytest.raises(ConfigError, match="unknown adaptive criterion"):
        next_batch(model, empty, 1, criterion="a")
    # a batch never repeats a probe and never re-asks an answered one, under either criterion
    half = empty.copy()
    half[:20, 0] = E[:20, 0]
    v_gain = np.zeros(model.n_cand)  # after answers: the posterior's variances, still summed over the whole reserve
    for F, (P, S) in zip(model.F, posterior(model, half), strict=True):
        w, C = P[:, 0] * (1 - P[:, 0]), F @ S[0] @ F.T
        v_gain += np.array([np.sum(w ** 2 * C[:, j] ** 2) * w[j] / (1 + w[j] * C[j, j]) for j in range(model.n_cand)])
    assert next_batch(model, half, 1)[0][0] == 20 + int(np.argmax(v_gain[20:]))
    for criterion in ("v", "d"):
        picks = next_batch(model, half, 15, criterion=criterion)[0]
        assert len(set(picks)) == 15 and picks.min() >= 20


def test_v_optimal_prefers_typical_prompts_to_extreme_norm_ones(fitted):
    """D-optimality favours candidates of large feature norm; the V-optimal batch sits closer to the reserve's
    typical prompt."""
    router, Xr, _ = fitted
    model = DesignModel.from_foldin(router, Xr)
    empty = np.full((model.n_cand, 1), np.nan)
    F = model.F[-1]
    norm = np.linalg.norm(F - F.mean(axis=0), axis=1)
    v, d = next_batch(model, empty, 10)[0], next_batch(model, empty, 10, criterion="d")[0]
    assert norm[v].mean() < norm[d].mean()


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


# --------------------------------------------------------------------------------------------
# a run with --probe-strategy adaptive
# --------------------------------------------------------------------------------------------
ARGS = ["--trials", "1", "--seed", "5", "--val-size", "30", "--probe-strategy", "adaptive", "-r", "zero", "-r", "knn",
        "-r", "uniroute-kmeans", "-r", "foldin", "-p", "foldin.rank=1", "-p", "foldin.lam=6", "-p", "foldin.tau=1",
        "-p", "foldin.max_rank=1", "-p", "foldin.maxiter=40"]


def _run(runner, tmp_path, tag, prompts, outcomes, models):
    card = {"name": "small-rb", "cost_unit": "USD per query"}
    # one folder name for every variant: the same texts then share one cached tfidf, so the embeddings cannot differ
    # in the last bits (a second tfidf fit of the same texts in one pytest process did), and only the labels do
    folder = write_dataset(tmp_path / tag / "small-rb", prompts, outcomes, models, card)
    run = tmp_path / f"run-{tag}"
    res = invoke(runner, "fit", "--dataset", folder, "--run-dir", run, *ARGS)
    assert res.exit_code == 0, res.output
    assert invoke(runner, "evaluate", "--run-dir", run).exit_code == 0
    return folder, run


def _asked(folder, run):
    """The unseen LLMs' asked probes, (prompt id, LLM) pairs, by the protocol code on the run's fitted routers."""
    from unirouter_cli.data.registry import load_dataset
    from unirouter_cli.embed.encoders import get_embeddings
    from unirouter_cli.protocol.trial import adaptive_pools
    from unirouter_cli.runs.config import Task
    from unirouter_cli.runs.rundir import RunDir

    rd = RunDir(run)
    cfg = rd.read_config()
    ds = load_dataset(str(folder))
    X = get_embeddings(ds, cfg.encoder)
    trial, routers = rd.load_fit(ds, cfg, Task(0), X)
    cols = trial.test_models
    _, asked = adaptive_pools(ds, X, trial, routers, cols, [ds.models[j] for j in cols])
    rows, js = np.nonzero(~np.isnan(asked.E_val))
    return trial, {(ds.prompt_ids[trial.reserve[i]], ds.models[cols[j]]) for i, j in zip(rows, js, strict=True)}


def test_adaptive_run_reads_test_labels_only_on_asked_probes(runner, tmp_path, small_tables):
    """Changing an unseen LLM's labels anywhere but the probes it was asked and the test prompts changes neither
    the probes nor any metric; changing them on its asked probes does."""
    prompts, outcomes, models = small_tables
    a, run_a = _run(runner, tmp_path, "a", prompts, outcomes, models)
    trial, asked = _asked(a, run_a)
    from unirouter_cli.data.registry import load_dataset

    ds = load_dataset(str(a))
    test_ids = set(ds.prompt_ids[trial.test])
    test_llms = {ds.models[j] for j in trial.test_models}
    assert len(asked) == 30 * len(test_llms) and len({p for p, _ in asked}) > 30  # each LLM its own 30 probes
    pair = list(zip(outcomes["prompt_id"], outcomes["model"], strict=True))
    keep = np.array([(p, m) in asked for p, m in pair])
    flip = ~outcomes["prompt_id"].isin(test_ids).to_numpy() & outcomes["model"].isin(test_llms).to_numpy() & ~keep
    assert flip.sum() > 1000
    changed = outcomes.copy()
    changed.loc[flip, "score"] = 1.0 - changed.loc[flip, "score"]
    b, run_b = _run(runner, tmp_path, "b", prompts, changed, models)
    assert _asked(b, run_b)[1] == asked
    ma, mb = (pd.read_csv(r / "metrics.csv") for r in (run_a, run_b))
    pd.testing.assert_frame_equal(ma, mb)
    changed = outcomes.copy()
    changed.loc[keep, "score"] = 1.0 - changed.loc[keep, "score"]
    c, run_c = _run(runner, tmp_path, "c", prompts, changed, models)
    mc = pd.read_csv(run_c / "metrics.csv")
    for r in ("zero", "knn", "uniroute-kmeans", "foldin"):
        assert not np.allclose(ma[ma.router == r]["area"], mc[mc.router == r]["area"]), r


def test_adaptive_needs_foldin(runner, small_dataset, tmp_path):
    res = invoke(runner, "fit", "--dataset", small_dataset, "--run-dir", tmp_path / "run", "--trials", "1",
                 "--val-size", "30", "--probe-strategy", "adaptive", "-r", "uniroute-kmeans")
    assert res.exit_code == 2 and "needs the foldin router" in res.output


def test_unseen_strongest_puts_the_most_accurate_llms_unseen():
    from unirouter_cli.data.registry import load_dataset
    from unirouter_cli.protocol.universe import SplitConfig, make_trial, universe

    ds = load_dataset("routerbench-subset")
    u = universe(ds)
    acc = ds.scores[np.ix_(u.prompts, u.models)].mean(axis=0)
    top = np.sort(u.models[np.argsort(-acc)[:3]])
    cfg = SplitConfig(unseen_strongest=3)
    cfg.check(ds)
    for seed in (0, 1):
        t = make_trial(ds, cfg, seed, 0)
        np.testing.assert_array_equal(t.test_models, top)
        assert len(t.train_models) == len(u.models) - 3
    with pytest.raises(ConfigError, match="--unseen-strongest 11: expected 1 to 10"):
        SplitConfig(unseen_strongest=11).check(ds)
