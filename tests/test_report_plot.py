"""Reports (sign tests, intervals, paper numbers) and plots (files written, data drawn)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from unirouter_cli.plot import GRID, mean_curves, plot_run, router_colours
from unirouter_cli.report import ci95, report_run, sign_test, summarise

from .conftest import invoke


def _metrics(values: dict[str, np.ndarray], kinds: dict[str, str] | None = None) -> pd.DataFrame:
    rows = []
    for router, vals in values.items():
        for t, v in enumerate(vals):
            rows.append({"trial": t, "val_size": -1, "router": router, "kind": (kinds or {}).get(router, "dynamic"),
                         "pool": "unseen", "area": v, "area_50": v / 2, "qnc": 1 - v, "qnc_reached": True,
                         "aiq": v, "apgr": v, "best_single": 0.6, "n_pool": 5, "n_test": 100, "n_val": 30})
    return pd.DataFrame(rows)


def test_identical_routers_are_not_significant():
    x = np.random.default_rng(0).uniform(0.5, 0.7, 50)
    s = summarise(_metrics({"knn": x, "uniroute-kmeans": x.copy()}))
    row = s[(s["router"] == "uniroute-kmeans") & (s["metric"] == "area")].iloc[0]
    assert row["wins"] == 0 and row["losses"] == 0 and row["p_value"] == 1.0 and row["mark"] == ""


def test_oracle_is_significant():
    rng = np.random.default_rng(1)
    x = rng.uniform(0.5, 0.7, 30)
    s = summarise(_metrics({"knn": x, "oracle": x + rng.uniform(0.1, 0.3, 30)}, {"oracle": "bound"}))
    area = s[(s["router"] == "oracle") & (s["metric"] == "area")].iloc[0]
    qnc = s[(s["router"] == "oracle") & (s["metric"] == "qnc")].iloc[0]
    assert area["mark"] == "+" and area["p_value"] < 1e-6 and area["wins"] == 30
    assert qnc["mark"] == "+"  # lower QNC is better


def test_sign_test_and_interval_values():
    w, lo, p = sign_test(np.array([1, 2, 3, 4.0]), np.array([0, 0, 0, 5.0]), higher_better=True)
    assert (w, lo) == (3, 1) and p == pytest.approx(0.625)
    m, a, b = ci95(np.array([1.0, 2.0, 3.0]))
    assert m == 2 and a < 2 < b and b - m == pytest.approx(4.302652729911275 * 1 / np.sqrt(3))


def test_unknown_reference_is_an_error():
    from unirouter_cli.errors import ConfigError

    with pytest.raises(ConfigError, match="reference router"):
        summarise(_metrics({"zero": np.ones(3)}), reference="knn")


def test_report_includes_paper_numbers_for_paper_datasets(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    _metrics({"knn": np.full(5, 0.7), "zero": np.full(5, 0.68)}).to_csv(run / "metrics.csv", index=False)
    (run / "config.yaml").write_text("dataset_name: routerbench\ndataset: routerbench\n")
    rfile, sfile = report_run(run)
    text = rfile.read_text()
    assert "| zero | area | 0.689 | 0.680 |" in text
    assert set(pd.read_csv(sfile)["metric"]) == {"area", "area_50", "qnc", "aiq", "apgr"}


def test_plots_written_and_drawn_data(runner, small_dataset, tmp_path):
    run = tmp_path / "run"
    assert invoke(runner, "fit", "--dataset", small_dataset, "--router", "zero", "--router", "knn",
                  "--router", "oracle", "--trials", "3", "--run-dir", run).exit_code == 0
    assert invoke(runner, "evaluate", "--run-dir", run).exit_code == 0
    files = plot_run(run, "png")
    assert {f.name for f in files} == {"curves-unseen.png", "metrics-unseen.png", "paired-unseen.png"}
    for f in files:
        assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f.stat().st_size > 10_000
    curves = pd.read_parquet(run / "curves.parquet")
    means = mean_curves(curves)
    # the drawn mean curve at a grid point equals the mean of the trials' interpolated curves
    zero = curves[curves["router"] == "zero"]
    manual = np.mean([np.interp(0.5, g["cost"], g["quality"]) for _, g in zero.groupby("trial")])
    assert means["zero"][0][np.searchsorted(GRID, 0.5)] == pytest.approx(manual, abs=1e-6)
    assert np.all(means["oracle"][0] >= means["zero"][0] - 1e-6)
    colours = router_colours(["knn", "zero"])
    assert colours["zero"] == router_colours(["zero", "oracle"])["zero"] != colours["knn"]
