"""Property-based tests of the parsers: random tables never crash the validator, and whatever it
accepts loads into matrices that agree with the long table."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unirouter_cli.data.folder import load_folder, validate_folder
from unirouter_cli.data.sources.routerbench import routerbench_frame_to_folder

from .conftest import write_dataset

score_values = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32),
                         st.sampled_from([0.0, 1.0, 0.5]))
cost_values = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32), st.floats(0.001, 100))


@st.composite
def tables(draw):
    n_p = draw(st.integers(1, 6))
    n_m = draw(st.integers(1, 4))
    prompts = pd.DataFrame({"prompt_id": [f"p{i}" for i in range(n_p)],
                            "text": draw(st.lists(st.text(min_size=0, max_size=8), min_size=n_p, max_size=n_p)),
                            "category": "c"})
    models = pd.DataFrame({"model": [f"m{j}" for j in range(n_m)],
                           "cost": draw(st.lists(cost_values, min_size=n_m, max_size=n_m))})
    pairs = draw(st.lists(st.tuples(st.integers(0, n_p), st.integers(0, n_m)), min_size=0, max_size=12))
    outcomes = pd.DataFrame({"prompt_id": [f"p{i}" for i, _ in pairs], "model": [f"m{j}" for _, j in pairs],
                             "score": draw(st.lists(score_values, min_size=len(pairs), max_size=len(pairs)))},
                            columns=["prompt_id", "model", "score"])
    return prompts, outcomes, models


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(t=tables())
def test_validator_never_crashes_and_accepted_tables_load_consistently(tmp_path_factory, t):
    prompts, outcomes, models = t
    folder = write_dataset(tmp_path_factory.mktemp("prop") / "d", prompts, outcomes.astype({"score": float}),
                           models, fmt="csv")
    problems, _, _ = validate_folder(folder)
    if problems:
        assert all(str(p) for p in problems)
        return
    ds = load_folder(folder)  # validate and load agree: an accepted folder always loads
    pivot = outcomes.pivot(index="prompt_id", columns="model", values="score")
    for (pid, model), v in pivot.stack().items():
        i, j = list(ds.prompt_ids).index(pid), ds.models.index(model)
        assert ds.scores[i, j] == np.float32(v)
    assert int((~np.isnan(ds.scores)).sum()) == len(outcomes)
    assert np.all((ds.model_cost > 0) & np.isfinite(ds.model_cost))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 8), m=st.integers(2, 4), seed=st.integers(0, 1000))
def test_routerbench_frames_convert(n, m, seed):
    rng = np.random.default_rng(seed)
    names = [f"org/model-{j}" for j in range(m)]
    df = pd.DataFrame({"sample_id": [f"s{i}" for i in range(n)],
                       "prompt": [str([f"question {i}"]) for i in range(n)],
                       "eval_name": rng.choice(["a", "b"], n)}, index=rng.permutation(1000)[:n])
    for name in names:
        s = rng.choice([0.0, 1.0, np.nan], n)
        df[name] = s
        df[f"{name}|total_cost"] = rng.uniform(1e-5, 1e-3, n)
    card, prompts, outcomes, models = routerbench_frame_to_folder(df, "frame")
    assert len(prompts) == n and set(models["model"]) == set(names)
    assert len(outcomes) == int(df[names].notna().sum().sum())
    assert outcomes["score"].between(0, 1).all()
