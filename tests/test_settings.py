"""The paper's remaining settings: a pool with no training LLMs, and prompts that change domain."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from unirouter_cli.data.folder import load_folder
from unirouter_cli.embed.encoders import get_embeddings
from unirouter_cli.protocol.trial import fit_data
from unirouter_cli.protocol.universe import SplitConfig, make_trial
from unirouter_cli.routers import make_router

from .conftest import invoke


@pytest.fixture(scope="module")
def ds(tmp_path_factory, small_tables):
    from .conftest import write_dataset

    return load_folder(write_dataset(tmp_path_factory.mktemp("set") / "small", *small_tables))


def test_train_categories_split(ds):
    cfg = SplitConfig(train_categories=("arc-challenge", "winogrande"))
    for i in range(5):
        t = make_trial(ds, cfg, seed=1, index=i)
        assert set(ds.categories[t.train]) == {"arc-challenge", "winogrande"}
        assert set(ds.categories[t.val]) == set(ds.categories[t.test]) == {"mbpp"}
        other = len(t.val) + len(t.test)
        assert other == (ds.categories == "mbpp").sum() and abs(len(t.val) / other - 0.25) < 0.01  # 0.1 : 0.3
        again = make_trial(ds, cfg, seed=1, index=i)
        np.testing.assert_array_equal(again.test, t.test)  # seeded
    # a validation-size sweep: smaller probe sets nest in larger ones, the test set stays
    a = make_trial(ds, SplitConfig(train_categories=("mbpp",), val_size=40, val_reserve=120), seed=0, index=0)
    b = make_trial(ds, SplitConfig(train_categories=("mbpp",), val_size=120, val_reserve=120), seed=0, index=0)
    assert set(a.val) <= set(b.val) and np.array_equal(a.test, b.test)


def test_no_training_llms_hyperparameters_come_from_validation_only(ds):
    """With every LLM unseen, K and k are chosen on the pool's validation answers (two folds);
    flipping the test labels changes nothing."""
    t = make_trial(ds, SplitConfig(unseen_frac=1.0, train_frac=0.5, val_frac=0.2), seed=2, index=0)
    assert len(t.train_models) == 0 and len(t.test_models) == ds.n_models
    X = get_embeddings(ds, "tfidf")
    data = fit_data(ds, X, t, needs_all=False)
    assert data.pool_labels and data.E_val.shape[1] == ds.n_models
    km, knn = make_router("uniroute-kmeans").fit(data), make_router("knn").fit(data)
    assert km.hyperparams_["selected_on"] == knn.hyperparams_["selected_on"] == "validation-2fold"
    saved = ds.scores[t.test].copy()
    ds.scores[t.test] = 1 - ds.scores[t.test]
    try:
        data2 = fit_data(ds, X, t, needs_all=False)
        assert make_router("uniroute-kmeans").fit(data2).hyperparams_ == km.hyperparams_
        assert make_router("knn").fit(data2).hyperparams_ == knn.hyperparams_
    finally:
        ds.scores[t.test] = saved


def test_cross_domain_run_reports_train_and_test_categories(runner, small_dataset, tmp_path):
    run = tmp_path / "run"
    res = invoke(runner, "fit", "--dataset", small_dataset, "--trials", 2, "--run-dir", run,
                 "--train-categories", "arc-challenge,winogrande", "-r", "zero", "-r", "knn", "-r", "uniroute-kmeans")
    assert res.exit_code == 0, res.output
    assert invoke(runner, "evaluate", "--run-dir", run).exit_code == 0
    m = pd.read_csv(run / "metrics.csv")
    assert (m["test_categories"] == "mbpp").all()
    assert invoke(runner, "report", "--run-dir", run, "--reference", "zero").exit_code == 0
    text = (run / "report.md").read_text()
    assert "trained on categories arc-challenge, winogrande; tested on mbpp" in text


def test_val_size_larger_than_the_split_allows_names_the_limit(ds):
    from unirouter_cli.errors import ConfigError

    n = len(ds.prompt_ids)
    with pytest.raises(ConfigError, match=r"--val-size .*: more validation prompts than the split leaves.*at most"):
        SplitConfig(val_size=10 * n).check(ds)
    SplitConfig(val_size=max(1, n // 20)).check(ds)  # a size the split allows passes
