"""``fit`` evaluates the unseen pool while the routers are in memory; ``evaluate`` merges those files. The
numbers equal an evaluation from the saved states, and a refitted task's older evaluation files are removed."""

from __future__ import annotations

import pandas as pd

from .conftest import invoke

ROUTERS = ["zero", "knn", "uniroute-kmeans", "foldin"]


def _fit(runner, dataset, run):
    args = ["fit", "--dataset", dataset, "--trials", 2, "--seed", 4, "--run-dir", run]
    for r in ROUTERS:
        args += ["--router", r]
    res = invoke(runner, *args)
    assert res.exit_code == 0, res.output


def test_fit_writes_the_unseen_evaluation_and_it_equals_one_from_saved_states(runner, small_dataset, tmp_path):
    run = tmp_path / "run"
    _fit(runner, small_dataset, run)
    files = sorted((run / "eval" / "unseen").glob("*.parquet"))
    assert [f.stem for f in files] == ["trial-0000", "trial-0001"]
    assert not (run / "metrics.csv").exists()  # fit writes no merged tables
    assert invoke(runner, "evaluate", "--run-dir", run).exit_code == 0
    eager = pd.read_csv(run / "metrics.csv")
    eager_curves = pd.read_parquet(run / "curves.parquet")
    for f in files:  # the same evaluation, now from the router states on disk
        f.unlink()
    assert invoke(runner, "evaluate", "--run-dir", run).exit_code == 0
    cols = [c for c in eager.columns if c != "seconds_predict"]
    pd.testing.assert_frame_equal(eager[cols], pd.read_csv(run / "metrics.csv")[cols])
    pd.testing.assert_frame_equal(eager_curves, pd.read_parquet(run / "curves.parquet"))
    assert set(eager["pool"]) == {"unseen"}


def test_other_pools_are_merged_only_when_asked(runner, small_dataset, tmp_path):
    run = tmp_path / "run"
    _fit(runner, small_dataset, run)
    assert invoke(runner, "evaluate", "--run-dir", run, "--pool", "all").exit_code == 0
    assert set(pd.read_csv(run / "metrics.csv")["pool"]) == {"all"}
    assert invoke(runner, "evaluate", "--run-dir", run, "--pool", "unseen").exit_code == 0
    assert set(pd.read_csv(run / "metrics.csv")["pool"]) == {"unseen", "all"}  # earlier pools are kept


def test_a_refitted_task_loses_its_old_evaluations(runner, small_dataset, tmp_path):
    run = tmp_path / "run"
    _fit(runner, small_dataset, run)
    assert invoke(runner, "evaluate", "--run-dir", run, "--pool", "seen").exit_code == 0
    old_seen = run / "eval" / "seen" / "trial-0001.parquet"
    assert old_seen.exists()
    (run / "trials" / "trial-0001" / "fit.json").unlink()  # trial 1 is no longer fitted
    res = invoke(runner, "fit", "--resume", "--run-dir", run)
    assert res.exit_code == 0 and "fitted 1 of the 2 task(s) of 2 trial(s)" in res.output, res.output
    assert not old_seen.exists()  # it belonged to the earlier fit
    assert (run / "eval" / "unseen" / "trial-0001.parquet").exists()
    assert (run / "eval" / "seen" / "trial-0000.parquet").exists()  # other tasks' files are untouched


def test_evaluate_refuses_a_missing_state_even_with_the_evaluation_present(runner, small_dataset, tmp_path):
    run = tmp_path / "run"
    _fit(runner, small_dataset, run)
    (run / "trials" / "trial-0000" / "knn.json").unlink()
    res = invoke(runner, "evaluate", "--run-dir", run)
    assert res.exit_code == 2 and "knn.json" in res.output and "missing" in res.output
    assert "Traceback" not in res.output
