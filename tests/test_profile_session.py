"""Adaptive profiling of a new LLM on a built foldin router: the Python session and `router probes --adaptive`,
driven by a real LLM's answers from the bundled table."""

from __future__ import annotations

import copy
import io

import numpy as np
import pandas as pd
import pytest

from unirouter_cli.cli import app
from unirouter_cli.errors import ConfigError

from .conftest import invoke, write_dataset

PARAMS = {"rank": 1, "lam": 6.0, "tau": 1.0, "max_rank": 1, "maxiter": 40}
HELD_OUT = "claude-v2"


@pytest.fixture(scope="module")
def built_once(tmp_path_factory, small_tables):
    """A foldin router built on 600 real prompts of the bundled RouterBench subset (200 of them the probe reserve),
    with one LLM removed; that LLM's answers on the reserve are the oracle a new LLM's answers come from."""
    from unirouter_cli.serving.build import build

    folder = write_dataset(tmp_path_factory.mktemp("data") / "small-rb", *small_tables,
                           {"name": "small-rb", "cost_unit": "USD per query"})
    r = build(str(folder), "foldin", seed=3, reserve=200, params=PARAMS)
    truth = dict(zip(r.reserve_ids.astype(str), 1.0 - r.errors[:, r.models.index(HELD_OUT)].astype(float),
                     strict=True))
    r.remove_llm(HELD_OUT)
    return r, truth


@pytest.fixture()
def built(built_once):
    r, truth = built_once
    return copy.deepcopy(r), truth


def _drive(session, truth: dict, n: int, batch: int) -> list[str]:
    asked = []
    while session.answered < n:
        ids = list(session.next(min(batch, n - session.answered))["prompt_id"])
        session.answer({i: truth[i] for i in ids})
        asked += ids
    return asked


def test_session_profiles_and_adds_the_llm(built):
    r, truth = built
    s = r.profile("new-llm", 0.001)
    asked = _drive(s, truth, 40, 10)
    assert len(set(asked)) == 40
    again = _drive(r.profile("new-llm", 0.001), truth, 40, 10)
    assert asked == again  # the same answers, the same probes
    entry = s.done()
    assert entry["name"] == "new-llm" and entry["answers"] == 40 and "new-llm" in r.models
    col = r.errors[:, r.models.index("new-llm")]
    answered = set(r.reserve_ids[~np.isnan(col)].astype(str))
    assert answered == set(asked)
    gamma, _ = r.estimate(r.X_reserve[:5])
    assert np.isfinite(gamma).all()


def test_session_refusals(built):
    r, truth = built
    with pytest.raises(ConfigError, match="already in this router"):
        r.profile(r.models[0], 0.001)
    with pytest.raises(ConfigError, match="positive number"):
        r.profile("x", -1)
    with pytest.raises(ConfigError, match="router probes --adaptive"):
        r.probes(10, "adaptive")
    s = r.profile("few", 0.001)
    _drive(s, truth, 10, 10)
    with pytest.raises(Exception, match="at least 20"):
        s.done()
    from unirouter_cli.routers import make_router

    r.router = make_router("zero")
    with pytest.raises(ConfigError, match="needs a foldin router"):
        r.profile("x", 0.001)


def test_cli_adaptive_loop(built, runner, tmp_path):
    r, truth = built
    asked = _drive(r.profile("new-llm", 0.001), truth, 30, 10)  # the probes the loop will print, in order
    d = r.save(tmp_path / "router")
    stdin = "".join(f"{truth[i]:g}\n" for i in asked)
    res = runner.invoke(app, ["router", "probes", str(d), "--adaptive", "-n", "30", "--batch", "10", "--model",
                              "new-llm", "--cost", "0.001"], input=stdin, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    printed = pd.read_csv(io.StringIO(res.stdout.split("ok:")[0]))
    assert list(printed["prompt_id"].astype(str)) == asked
    from unirouter_cli.serving.router import load_router

    r2 = load_router(d)
    col = r2.errors[:, r2.models.index("new-llm")]
    assert set(r2.reserve_ids[~np.isnan(col)].astype(str)) == set(asked)
    np.testing.assert_allclose(1.0 - col[~np.isnan(col)],
                               [truth[i] for i in r2.reserve_ids[~np.isnan(col)].astype(str)], atol=1e-6)
    bad = invoke(runner, "router", "probes", d, "--adaptive", "-n", "30", "--model", "other")
    assert bad.exit_code == 2 and "needs --model and --cost" in bad.output
