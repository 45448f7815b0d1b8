"""Valid but degenerate tables are accepted and give in-range metrics (no crash, no silent NaN)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from .conftest import invoke, write_dataset


def _run(runner, folder, tmp_path):
    run = tmp_path / "run"
    res = invoke(runner, "fit", "--dataset", folder, "--router", "zero", "--router", "knn", "--router",
                 "uniroute-kmeans", "--router", "oracle", "--trials", "2", "--run-dir", run)
    assert res.exit_code == 0, res.output
    res = invoke(runner, "evaluate", "--run-dir", run, "--pool", "all")
    assert res.exit_code == 0, res.output
    m = pd.read_csv(run / "metrics.csv")
    assert m[["area", "qnc", "aiq"]].notna().all().all()
    assert m["area"].between(0, 1).all() and m["qnc"].between(0, 1).all()
    return m


@pytest.mark.parametrize("case", ["always-right", "always-wrong", "equal-costs"])
def test_degenerate_tables_run(runner, tmp_path, small_tables, case):
    p, o, m = (t.copy() for t in small_tables)
    first = m["model"].iloc[0]
    if case == "always-right":
        o.loc[o["model"] == first, "score"] = 1.0
    elif case == "always-wrong":
        o.loc[o["model"] == first, "score"] = 0.0
    else:
        m["cost"] = 1.0
        o = o.drop(columns="cost")
    metrics = _run(runner, write_dataset(tmp_path / case, p, o, m), tmp_path)
    if case == "always-right":
        oracle = metrics[metrics["router"] == "oracle"]
        assert (oracle["max_quality"] == 1.0).all()
    if case == "equal-costs":
        # every routing costs the same: each curve is one point at normalised cost 1
        assert (metrics["n_points"] == 1).all() and metrics["qnc_reached"].isin([True, False]).all()


def test_ten_megabyte_prompt(runner, tmp_path, small_tables):
    p, o, m = (t.copy() for t in small_tables)
    p.loc[0, "text"] = ("lorem ipsum dolor sit amet " * 400_000)[:10_000_000]
    folder = write_dataset(tmp_path / "big", p, o, m)
    assert invoke(runner, "data", "validate", folder).exit_code == 0
    _run(runner, folder, tmp_path)


def test_prompts_without_outcomes_are_harmless(runner, tmp_path, small_tables):
    p, o, m = (t.copy() for t in small_tables)
    extra = pd.DataFrame({"prompt_id": ["x/1", "x/2"], "text": ["a lone prompt", "another"], "category": "x"})
    folder = write_dataset(tmp_path / "extra", pd.concat([p, extra]), o, m)
    metrics = _run(runner, folder, tmp_path)
    assert np.isfinite(metrics["area"]).all()


def test_texts_with_one_distinct_word_are_one_error_line(runner, tmp_path, small_tables):
    p, o, m = (t.copy() for t in small_tables)
    p["text"] = [f"question {i}" for i in range(len(p))]  # placeholders: one word in two or more prompts
    folder = write_dataset(tmp_path / "placeholders", p, o, m)
    res = invoke(runner, "fit", "--dataset", folder, "--router", "zero", "--trials", "1", "--run-dir",
                 tmp_path / "run")
    errors = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert res.exit_code == 2 and "Traceback" not in res.output and len(errors) == 1, res.output
    assert errors[0].startswith("error: encoder tfidf: the prompt texts hold 1 distinct word"), res.output


def test_a_user_table_without_texts_or_embeddings_names_what_to_add(runner, tmp_path, small_tables):
    p, o, m = (t.copy() for t in small_tables)
    folder = write_dataset(tmp_path / "notexts", p.drop(columns="text"), o, m,
                           {"name": "notexts", "texts_included": False})
    res = invoke(runner, "fit", "--dataset", folder, "--router", "zero", "--trials", "1", "--run-dir",
                 tmp_path / "run")
    assert res.exit_code == 2 and "add the texts to" in res.output and "--encoder precomputed" in res.output, (
        res.output)
    assert "unirouter download notexts" not in res.output
