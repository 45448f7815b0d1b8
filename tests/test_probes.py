"""Probe strategies: the selection contract, self-weighting designs, balance, no training LLMs, the
guarantee that test LLMs' labels are read only on the selected probes, and the profiling-cost
report and plot."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from unirouter_cli.protocol.probes import (
    ADAPTIVE,
    STRATEGIES,
    ProbeContext,
    cube,
    error_factors,
    select_probes,
    systematic,
)
from unirouter_cli.results.sweep import blind_area, probe_sweep_table, probes_needed

from .conftest import invoke, synthetic_scores, write_dataset

ALL = [s for s in STRATEGIES if s != ADAPTIVE]  # the fixed designs (adaptive: tests/test_adaptive.py)


def _ctx(n_cand: int = 120, m: int = 8, seed: int = 0) -> ProbeContext:
    S, U = synthetic_scores(n_cand, m, seed=seed)
    rng = np.random.default_rng(seed)
    X = np.column_stack([U, rng.normal(size=(n_cand, 5))]).astype(np.float32)
    return ProbeContext(X=X, E_train=(1.0 - S).astype(np.float32), seed=seed)


@pytest.mark.parametrize("strategy", ALL)
def test_selection_contract(strategy):
    ctx = _ctx()
    for n in (1, 7, 30, 119):
        idx = select_probes(strategy, n, ctx)
        assert len(idx) == n and len(np.unique(idx)) == n and np.all(np.diff(idx) > 0)
        assert idx.min() >= 0 and idx.max() < 120
        assert np.array_equal(idx, select_probes(strategy, n, ctx)), "same seed, same probes"
    assert np.array_equal(select_probes(strategy, 500, ctx), np.arange(120)), "n >= candidates: all of them"
    other = ProbeContext(X=ctx.X, E_train=ctx.E_train, seed=1)
    assert not np.array_equal(select_probes(strategy, 30, ctx), select_probes(strategy, 30, other))


@pytest.mark.parametrize("strategy", ALL)
def test_no_training_llms_falls_back_to_embeddings(strategy):
    ctx = _ctx()
    bare = ProbeContext(X=ctx.X, E_train=np.zeros((120, 0), dtype=np.float32), seed=0)
    idx = select_probes(strategy, 20, bare)
    assert len(np.unique(idx)) == 20
    if strategy == "informative":  # nothing but embeddings to balance on: a balanced stratified design
        nan = ProbeContext(X=ctx.X, E_train=np.full((120, 3), np.nan, dtype=np.float32), seed=0)
        assert np.array_equal(idx, select_probes(strategy, 20, nan))


@pytest.mark.parametrize("strategy", ["random", "stratified", "informative"])
def test_every_candidate_has_the_same_chance(strategy):
    """Self-weighting: each candidate is a probe with probability n/N, so the plain mean of a new LLM's
    answers is unbiased and no router needs weights (picking the most disputed prompts is not)."""
    ctx = _ctx(n_cand=60, m=6)
    n, reps = 12, 400
    counts = np.zeros(60)
    for s in range(reps):
        counts[select_probes(strategy, n, ProbeContext(X=ctx.X, E_train=ctx.E_train, seed=s))] += 1
    p = counts / reps
    sd = np.sqrt(0.2 * 0.8 / reps)
    assert abs(p.mean() - 0.2) < 1e-12
    assert np.abs(p - 0.2).max() < 4.5 * sd, f"inclusion probabilities {p.min():.3f}..{p.max():.3f}, expected 0.2"


def test_informative_probes_match_the_reserve_better_than_random():
    """The point of `informative`: the training LLMs' mean errors on the probes are close to their means
    on the whole reserve (the balancing variables), much closer than on random probes."""
    ctx = _ctx(n_cand=400, m=12, seed=3)
    full = ctx.E_train.mean(axis=0)

    def dev(strategy: str) -> float:
        return float(np.mean([np.abs(ctx.E_train[select_probes(strategy, 40, ProbeContext(
            X=ctx.X, E_train=ctx.E_train, seed=s))].mean(axis=0) - full).mean() for s in range(30)]))

    assert dev("informative") < 0.8 * dev("random")


def test_cube_sample_size_and_balance():
    rng = np.random.default_rng(0)
    N, n = 200, 25
    Z = rng.normal(size=(N, 3))
    pi = np.full(N, n / N)
    s = cube(pi, np.column_stack([pi, Z]), np.random.default_rng(1))
    assert set(np.unique(s)) <= {0.0, 1.0} and s.sum() == n
    bal = np.abs(Z[s > 0].mean(axis=0) - Z.mean(axis=0)).max()
    ran = np.mean([np.abs(Z[rng.choice(N, n, replace=False)].mean(axis=0) - Z.mean(axis=0)).max() for _ in range(50)])
    assert bal < 0.5 * ran


def _other_svd(flip: np.ndarray):
    """An SVD as another LAPACK build may return it: each singular pair's sign flipped where ``flip`` says, and
    the (right) null-space basis rotated, both of which are equally valid factorisations."""
    svd = np.linalg.svd

    def patched(B, *args, **kwargs):
        U, s, Vt = svd(B, *args, **kwargs)
        sign = np.where(flip[np.arange(len(Vt)) % len(flip)], -1.0, 1.0)
        U, Vt = U * sign[: U.shape[1]], Vt * sign[:, None]
        k = int((s > 1e-12).sum())
        if len(Vt) - k > 1:  # rotate the null-space basis by a fixed angle
            c, t = np.cos(0.3), np.sin(0.3)
            a, b = Vt[k].copy(), Vt[k + 1].copy()
            Vt[k], Vt[k + 1] = c * a + t * b, -t * a + c * b
        return U, s, Vt

    return patched


@pytest.mark.parametrize("flip_seed", [1, 2, 3])
def test_informative_probes_do_not_depend_on_the_svd_sign_convention(monkeypatch: pytest.MonkeyPatch,
                                                                      flip_seed: int) -> None:
    """The cube method's flight follows a null vector of the balancing constraints; another BLAS build or CPU may
    return it negated (or, for a null space of dimension > 1, another basis). The probes must not change."""
    ctx = _ctx(300, 8, seed=4)
    want = {n: select_probes("informative", n, ctx) for n in (20, 40, 80)}
    flip = np.random.default_rng(flip_seed).random(64) < 0.5
    monkeypatch.setattr(np.linalg, "svd", _other_svd(flip))
    for n, idx in want.items():
        np.testing.assert_array_equal(select_probes("informative", n, ctx), idx)


def test_systematic_takes_proportional_shares():
    order = np.arange(100)
    for s in range(20):
        idx = systematic(order, 10, np.random.default_rng(s))
        assert len(np.unique(idx)) == 10
        assert np.all(np.bincount(idx // 10, minlength=10) == 1), "each tenth of the order gets exactly one"


def test_error_factors_handle_missing_answers():
    E = np.array([[0, 1, np.nan], [1, 1, 1], [np.nan, np.nan, np.nan], [0, 0, 1]], dtype=float)
    F = error_factors(E, 2)
    assert F.shape == (4, 3) and np.isfinite(F).all()
    assert F[1, 0] == 1.0 and F[2, 0] == pytest.approx(np.nanmean(E))


# --------------------------------------------------------------------------------------------
# test LLMs' labels are read only on the selected probes
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("strategy", ALL)
def test_test_llm_labels_read_only_on_selected_probes(runner, tmp_path, small_tables, strategy):
    """Changing a test LLM's labels anywhere but its probes and the test prompts (training prompts and
    the unselected rest of the validation reserve) changes neither the probes nor any metric."""
    prompts, outcomes, models = small_tables
    card = {"name": "small-rb", "cost_unit": "USD per query"}
    a = write_dataset(tmp_path / "a", prompts, outcomes, models, card)
    args = ["--trials", "1", "--val-size", "30", "--probe-strategy", strategy, "-r", "zero", "-r", "knn",
            "-r", "uniroute-kmeans", "-r", "uniroute-learnedmap", "-r", "retrained-mlp"]
    for tag, folder in (("a", a),):
        assert invoke(runner, "fit", "--dataset", folder, "--run-dir", tmp_path / f"run-{tag}", *args).exit_code == 0
        assert invoke(runner, "evaluate", "--run-dir", tmp_path / f"run-{tag}").exit_code == 0
    split = np.load(tmp_path / "run-a" / "trials" / "trial-0000" / "split.npz")
    from unirouter_cli.data.registry import load_dataset

    ds = load_dataset(str(a))
    keep_prompts = {ds.prompt_ids[i] for i in np.r_[split["val"], split["test"]]}
    test_llms = {ds.models[j] for j in split["test_models"]}
    assert len(split["val"]) == 30 and test_llms
    flip = ~outcomes["prompt_id"].isin(keep_prompts) & outcomes["model"].isin(test_llms)
    assert flip.sum() > 1000
    changed = outcomes.copy()
    changed.loc[flip, "score"] = 1.0 - changed.loc[flip, "score"]
    b = write_dataset(tmp_path / "b", prompts, changed, models, card)
    assert invoke(runner, "fit", "--dataset", b, "--run-dir", tmp_path / "run-b", *args).exit_code == 0
    assert invoke(runner, "evaluate", "--run-dir", tmp_path / "run-b").exit_code == 0
    split_b = np.load(tmp_path / "run-b" / "trials" / "trial-0000" / "split.npz")
    for k in ("train", "val", "test", "train_models", "test_models"):
        assert np.array_equal(split[k], split_b[k]), k
    ma, mb = (pd.read_csv(tmp_path / f"run-{t}" / "metrics.csv") for t in "ab")
    pd.testing.assert_frame_equal(ma, mb)
    # the check has teeth: flipping one test LLM's labels on its probes does change the metrics
    probes = {ds.prompt_ids[i] for i in split["val"]}
    one = outcomes["prompt_id"].isin(probes) & outcomes["model"].eq(sorted(test_llms)[0])
    changed = outcomes.copy()
    changed.loc[one, "score"] = 1.0 - changed.loc[one, "score"]
    c = write_dataset(tmp_path / "c", prompts, changed, models, card)
    assert invoke(runner, "fit", "--dataset", c, "--run-dir", tmp_path / "run-c", *args).exit_code == 0
    assert invoke(runner, "evaluate", "--run-dir", tmp_path / "run-c").exit_code == 0
    mc = pd.read_csv(tmp_path / "run-c" / "metrics.csv")
    assert not ma[["area", "qnc"]].equals(mc[["area", "qnc"]])


# --------------------------------------------------------------------------------------------
# the profiling-cost curve: sweep, report section, plot
# --------------------------------------------------------------------------------------------
def test_probes_needed_interpolates_in_log_probes():
    sizes = np.array([25, 50, 100, 200])
    assert probes_needed(sizes, np.array([0.5, 0.7, 0.9, 1.0]), 0.8) == pytest.approx(np.sqrt(50 * 100))
    assert probes_needed(sizes, np.array([0.9, 0.95, 0.97, 1.0]), 0.8) == 0.0
    assert probes_needed(sizes, np.array([0.1, 0.2, 0.3, 0.4]), 0.8) == float("inf")


def test_sweep_table_on_a_known_table():
    rows = []
    for t in range(6):
        for s, shift in (("random", 0.0), ("better", 0.01)):
            for n, a in ((25, 0.60), (50, 0.63), (100, 0.65), (200, 0.66)):
                rows.append({"trial": t, "n_val": n, "probe_strategy": s, "router": "knn", "kind": "dynamic",
                             "pool": "unseen", "area": a + shift + 0.001 * t})
    metrics = pd.DataFrame(rows)
    singles = pd.DataFrame({"trial": list(range(6)) * 2, "pool": "unseen", "model": ["a"] * 6 + ["b"] * 6,
                            "cost": [1.0] * 6 + [2.0] * 6, "quality": [0.4] * 6 + [0.7] * 6})
    blind = blind_area(singles)
    assert blind.loc[("unseen", 0)] == 0.4
    table = probe_sweep_table(metrics, blind, n_boot=50).set_index(["probe_strategy", "probes"])
    # full gain = 0.66 - 0.4 = 0.26; 95% = 0.247 -> Area 0.647 (+0.0025 mean trial shift)
    assert table.loc[("random", 100), "area"] == pytest.approx(0.6525)
    assert 50 < table.loc[("random", 25), "needed"] < 100
    assert table.loc[("better", 25), "needed"] < table.loc[("random", 25), "needed"]
    b = table.loc[("better", 100)]
    assert b["d_same"] == pytest.approx(0.01) and b["w_same"] == 6 and b["mark_same"] == ""  # 6 trials: p = .03
    assert b["d_double"] == pytest.approx(0.0, abs=1e-12)  # 0.65 + 0.01 with 100 probes = random with 200


def test_sweep_run_report_and_plot(runner, small_dataset, tmp_path):
    run = tmp_path / "run"
    res = invoke(runner, "fit", "--dataset", small_dataset, "--trials", "2", "--val-sizes", "10,20,40",
                 "--probe-strategies", ",".join(ALL), "-r", "zero", "-r", "uniroute-kmeans", "--run-dir", run)
    assert res.exit_code == 0, res.output
    assert invoke(runner, "evaluate", "--run-dir", run).exit_code == 0
    m = pd.read_csv(run / "metrics.csv")
    assert set(m["probe_strategy"]) == set(ALL) and set(m["val_size"]) == {10, 20, 40}
    assert invoke(runner, "report", "--run-dir", run, "--reference", "zero").exit_code == 0
    md = (run / "report.md").read_text()
    assert "## The profiling-cost curve" in md and "probes needed" in md
    for s in ALL:
        assert f"| uniroute-kmeans | {s} |" in md
    assert invoke(runner, "plot", "--run-dir", run).exit_code == 0
    assert (run / "plots" / "probes-unseen.png").stat().st_size > 10_000


def test_no_training_llms_run(runner, small_dataset, tmp_path):
    run = tmp_path / "run"
    res = invoke(runner, "fit", "--dataset", small_dataset, "--trials", "1", "--unseen-frac", "1",
                 "--val-size", "20", "--probe-strategies", "random,informative", "-r", "zero", "-r", "knn",
                 "--run-dir", run)
    assert res.exit_code == 0, res.output
    assert invoke(runner, "evaluate", "--run-dir", run).exit_code == 0
    assert invoke(runner, "report", "--run-dir", run).exit_code == 0
    md = (run / "report.md").read_text()
    assert "no training LLMs" in md and "| knn | informative | " in md and "20 probes" in md


def test_probes_listing(runner):
    res = invoke(runner, "probes")
    assert res.exit_code == 0
    for s in ALL:
        assert s in res.output


def test_reproduce_runs_a_probe_sweep_preset(runner, small_dataset, tmp_path):
    import yaml

    preset = tmp_path / "sweep.yaml"
    preset.write_text(yaml.safe_dump({"version": 1, "name": "sweep", "dataset": str(small_dataset),
                                      "routers": ["zero", "knn"], "trials": 2, "seed": 0, "val_sizes": [10, 20],
                                      "probe_strategies": ["random", "informative"], "pools": ["unseen"],
                                      "reference": "knn"}))
    res = invoke(runner, "reproduce", "--config", preset, "--out", tmp_path / "out")
    assert res.exit_code == 0, res.output
    assert "| sweep |" in (tmp_path / "out" / "REPORT.md").read_text()
    assert (tmp_path / "out" / "sweep" / "plots" / "probes-unseen.png").exists()
    assert "## The profiling-cost curve" in (tmp_path / "out" / "sweep" / "report.md").read_text()
