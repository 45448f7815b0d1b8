"""The coverage policy: trials draw from one universe of prompts and LLMs fixed per dataset before
any split, so the test set never depends on which LLMs are unseen, and incomplete
(leaderboard-shaped) tables run with the defaults."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import yaml

from unirouter_cli.data.folder import load_folder
from unirouter_cli.errors import DataError
from unirouter_cli.protocol.universe import SplitConfig, _best_block, make_trial, universe

from .conftest import SHARED, invoke, needs_shared, write_dataset


def leaderboard_shaped(outcomes: pd.DataFrame, prompts: pd.DataFrame, models: list[str], seed: int = 0,
                       share: float = 0.5) -> pd.DataFrame:
    """Half of the LLMs evaluated on only some prompt categories (as on public leaderboards), plus a
    few scattered missing pairs."""
    rng = np.random.default_rng(seed)
    cats = sorted(prompts["category"].unique())
    cat_of = prompts.set_index("prompt_id")["category"]
    restricted = rng.choice(models, int(len(models) * share), replace=False)
    keep = np.ones(len(outcomes), dtype=bool)
    for mdl in restricted:
        allowed = rng.choice(cats, int(rng.integers(1, len(cats))), replace=False)
        sel = (outcomes["model"] == mdl).to_numpy()
        keep &= ~(sel & ~outcomes["prompt_id"].map(cat_of).isin(allowed).to_numpy())
    keep &= rng.random(len(outcomes)) > 0.002
    return outcomes[keep].reset_index(drop=True)


@pytest.fixture()
def lb_folder(tmp_path, small_tables):
    p, o, m = small_tables
    return write_dataset(tmp_path / "lb", p, leaderboard_shaped(o, p, m["model"].tolist()), m,
                         {"name": "lb", "cost_unit": "USD per query"})


def _cells(obs: np.ndarray, keep: np.ndarray) -> int:
    return int(keep.sum()) * int(obs[:, keep].all(axis=1).sum())


def test_block_is_the_largest_complete_block_on_small_tables():
    """Against brute force over every LLM subset of random incomplete tables."""
    rng = np.random.default_rng(1)
    for _ in range(30):
        n, m = int(rng.integers(20, 80)), int(rng.integers(2, 9))
        obs = rng.random((n, m)) > rng.uniform(0.0, 0.4, m)[None, :]
        obs[:, rng.integers(m)] &= rng.random(n) > 0.6
        best = max(_cells(obs, np.isin(np.arange(m), s)) for k in range(2, m + 1)
                   for s in itertools.combinations(range(m), k))
        assert _cells(obs, _best_block(obs, [f"m{j}" for j in range(m)])) >= 0.9 * best


def test_test_set_never_depends_on_the_pool(lb_folder):
    ds = load_folder(lb_folder)
    u = universe(ds)
    assert 2 <= len(u.models) < ds.n_models and u.dropped  # leaderboard-shaped: some LLMs left out
    obs = ~np.isnan(ds.scores[np.ix_(u.prompts, u.models)])
    assert obs.all()  # every kept LLM answered every kept prompt: nothing is ever made up
    names = [ds.models[j] for j in u.models]
    tests = []
    for cfg in (SplitConfig(), SplitConfig(unseen_frac=0.5), SplitConfig(unseen_models=tuple(names[:2])),
                SplitConfig(unseen_frac=1.0)):
        tr = make_trial(ds, cfg, seed=5, index=3)
        tests.append(tr.test)
        assert set(tr.test_models) <= set(u.models) and set(tr.train_models) <= set(u.models)
    for t in tests[1:]:
        np.testing.assert_array_equal(t, tests[0])  # same prompts whichever LLMs are unseen
    sizes = {len(make_trial(ds, SplitConfig(), seed=0, index=i).test) for i in range(10)}
    assert len(sizes) == 1


def test_universe_is_deterministic_and_order_free(tmp_path, small_tables):
    p, o, m = small_tables
    o = leaderboard_shaped(o, p, m["model"].tolist(), seed=3)
    a = load_folder(write_dataset(tmp_path / "a", p, o, m))
    b = load_folder(write_dataset(tmp_path / "b", p.sample(frac=1, random_state=1), o.sample(frac=1, random_state=2),
                                  m.sample(frac=1, random_state=3)))
    ua, ub = universe(a), universe(b)
    assert sorted(a.models[j] for j in ua.models) == sorted(b.models[j] for j in ub.models)
    assert sorted(a.prompt_ids[ua.prompts]) == sorted(b.prompt_ids[ub.prompts])


def test_all_llms_policy_keeps_every_llm(lb_folder):
    ds = load_folder(lb_folder)
    try:
        u = universe(ds, "all-llms")
    except DataError as e:  # allowed: then it says why in one line
        assert "no complete block" in str(e)
        return
    assert len(u.models) == ds.n_models and not u.dropped


def test_no_complete_block_is_one_clear_line(runner, tmp_path, small_tables):
    p, o, m = small_tables
    names = m["model"].tolist()
    ids = p["prompt_id"].tolist()
    # each LLM answered its own disjoint slice of the prompts: no prompt was answered by two LLMs
    owner = {pid: names[i % len(names)] for i, pid in enumerate(ids)}
    o = o[o["prompt_id"].map(owner) == o["model"]]
    folder = write_dataset(tmp_path / "disjoint", p, o, m)
    res = invoke(runner, "fit", "--dataset", folder, "--run-dir", tmp_path / "run", "-r", "zero")
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == 2 and len(lines) == 1 and "no complete block" in lines[0], res.output
    assert not (tmp_path / "run").exists()


def test_leaderboard_shaped_table_runs_with_defaults_and_says_what_it_left_out(runner, lb_folder, tmp_path):
    run = tmp_path / "run"
    res = invoke(runner, "fit", "--dataset", lb_folder, "--trials", 3, "--run-dir", run,
                 "-p", "uniroute-learnedmap.maxiter=10")
    assert res.exit_code == 0, res.output
    line = next(ln for ln in res.output.splitlines() if ln.startswith("universe"))
    assert "--coverage block" in line and "left out" in line
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    u = cfg["universe"]
    assert u["coverage"] == "block" and u["models_left_out"] and u["n_models"] + len(u["models_left_out"]) == 11
    assert invoke(runner, "evaluate", "--run-dir", run).exit_code == 0
    metrics = pd.read_csv(run / "metrics.csv")
    assert metrics["n_test"].nunique() == 1  # the same test-set size in every trial
    assert invoke(runner, "report", "--run-dir", run).exit_code == 0
    assert "left out" in (run / "report.md").read_text()


@needs_shared
def test_leaderboard_shaped_mmlu_pro(runner, tmp_path):
    """mmlu-pro with half of its LLMs evaluated on only a few categories: defaults run end to end."""
    src = SHARED / "data" / "mmlu-pro"
    p = pd.read_parquet(src / "prompts.parquet")
    o = pd.read_parquet(src / "outcomes.parquet")
    m = pd.read_csv(src / "models.csv")
    folder = write_dataset(tmp_path / "lb-mmlu", p, leaderboard_shaped(o, p, m["model"].tolist(), seed=2), m,
                           {"name": "lb-mmlu", "cost_unit": "USD / 1M tokens"})
    run = tmp_path / "run"
    res = invoke(runner, "fit", "--dataset", folder, "--trials", 4, "--run-dir", run, "-r", "zero", "-r", "knn",
                 "-r", "uniroute-kmeans", "-r", "oracle")
    assert res.exit_code == 0, res.output
    assert invoke(runner, "evaluate", "--run-dir", run).exit_code == 0
    metrics = pd.read_csv(run / "metrics.csv")
    n = metrics["n_test"]
    assert n.nunique() == 1 and n.iloc[0] > 1000
    assert metrics["area"].between(0, 1).all()


@needs_shared
def test_mmlu_pro_test_set_is_fixed_per_dataset():
    from unirouter_cli.data.registry import load_dataset

    ds = load_dataset(str(SHARED / "data" / "mmlu-pro"))
    u = universe(ds)
    assert [n for n, _ in u.dropped] == ["DeepSeek-Coder-V2"] and len(u.models) == 48
    sizes = {len(make_trial(ds, SplitConfig(), seed=0, index=i).test) for i in range(20)}
    assert sizes == {int(round(0.3 * len(u.prompts)))}


def test_a_one_llm_unseen_pool_is_warned_about(runner, tmp_path):
    """11 LLMs at --unseen-frac 0.05: one unseen LLM per trial, so routing has nothing to choose; fit says so."""
    args = ["fit", "--dataset", "routerbench-subset", "--trials", 1, "-r", "zero"]
    res = invoke(runner, *args, "--unseen-frac", "0.05", "--run-dir", tmp_path / "one")
    assert res.exit_code == 0, res.output
    assert "warning: the unseen pool holds 1 of the universe's 11 LLMs" in res.output
    res = invoke(runner, *args, "--run-dir", tmp_path / "default")
    assert res.exit_code == 0 and "warning" not in res.output, res.output
