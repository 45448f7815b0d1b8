"""Reports (sign tests, intervals, costs, summary.json, report.html), figures (the data drawn is
checked against metrics.csv / by_category.csv), the README table script, and the CLI help
(defaults shown, flags, global options after the subcommand, every help example run on a
fresh-clone-like folder)."""

from __future__ import annotations

import inspect
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from unirouter_cli.results.curves import GRID, frontier_curves, mean_curves
from unirouter_cli.results.plot import figure_by_category, figure_curves, figure_metrics, figure_paired, plot_run
from unirouter_cli.results.report import gap_line, report_run, summarise
from unirouter_cli.results.runfiles import default_reference
from unirouter_cli.results.stats import ci95, sign_test
from unirouter_cli.results.style import router_colours, router_styles

from .conftest import ROOT, invoke, write_dataset


def _metrics(values: dict[str, np.ndarray], kinds: dict[str, str] | None = None) -> pd.DataFrame:
    rows = []
    for router, vals in values.items():
        for t, v in enumerate(vals):
            rows.append({"trial": t, "val_size": -1, "router": router, "kind": (kinds or {}).get(router, "dynamic"),
                         "pool": "unseen", "area": v, "area_50": v / 2, "qnc": 1 - v, "qnc_reached": True,
                         "aiq": v, "apgr": v, "best_single": 0.6, "n_pool": 5, "n_test": 100, "n_val": 30})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------------
# statistics
# ------------------------------------------------------------------------------------------------
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


def test_default_reference_is_knn_then_zero_then_first_dynamic():
    x = np.full(3, 0.6)
    assert default_reference(_metrics({"zero": x, "knn": x, "oracle": x})) == "knn"
    assert default_reference(_metrics({"uniroute-kmeans": x, "zero": x})) == "zero"
    assert default_reference(_metrics({"oracle": x, "foldin": x}, {"oracle": "bound"})) == "foldin"
    s = summarise(_metrics({"uniroute-kmeans": x, "zero": x}))
    assert set(s["reference"]) == {"zero"}


def test_gap_line_is_the_share_of_the_zero_to_clairvoyant_gap():
    rows = [(t, r, k, a) for t in range(3) for r, k, a in
            [("zero", "dynamic", 0.50 + t / 100), ("knn", "dynamic", 0.55 + t / 100),
             ("clairvoyant-mlp", "reference", 0.60 + t / 100), ("oracle", "bound", 0.9)]]
    m = pd.DataFrame(rows, columns=["trial", "router", "kind", "area"])
    line = gap_line(m)
    assert "knn 50%" in line and "oracle" not in line and "clairvoyant-mlp 100%" not in line
    assert gap_line(m[m["router"] != "clairvoyant-mlp"]) is None  # no reference, no line
    worse = m.assign(area=np.where(m["router"] == "clairvoyant-mlp", 0.4, m["area"]))
    assert gap_line(worse) is None  # no positive gap to close


def test_qnc_interval_is_clipped_to_its_range():
    qnc = np.array([1.0, 1.0, 1.0, 0.2, 1.0])
    m = _metrics({"knn": np.full(5, 0.6), "zero": np.full(5, 0.6)})
    m.loc[m["router"] == "zero", "qnc"] = qnc
    row = summarise(m).query("router == 'zero' and metric == 'qnc'").iloc[0]
    assert row["mean"] == pytest.approx(qnc.mean()) and row["ci_low"] >= 0 and row["ci_high"] == 1.0
    assert ci95(qnc)[2] > 1  # the unclipped t-interval leaves the range


def test_cost_to_match_interval_stays_within_the_largest_pool_cost():
    m = _metrics({"knn": np.full(4, 0.6), "zero": np.full(4, 0.6)})
    m["cost_max"] = 2.0
    m.loc[m["router"] == "zero", "qnc"] = [1.0, 1.0, 0.1, 1.0]
    row = summarise(m).query("router == 'zero' and metric == 'qnc_cost'").iloc[0]
    assert row["ci_high"] == pytest.approx(2.0) and row["ci_low"] >= 0
    assert ci95(2.0 * np.array([1.0, 1.0, 0.1, 1.0]))[2] > 2.0  # unclipped, the interval passes cost_max


def test_sign_test_min_trials_is_the_first_count_that_can_reach_alpha():
    from unirouter_cli.results.stats import sign_test, sign_test_min_trials

    for alpha in (0.01, 0.05, 0.001):
        n = sign_test_min_trials(alpha)
        assert sign_test(np.ones(n), np.zeros(n), True)[2] < alpha
        assert sign_test(np.ones(n - 1), np.zeros(n - 1), True)[2] >= alpha
    assert sign_test_min_trials(0.01) == 8


def test_a_small_run_says_its_sign_tests_cannot_reach_alpha(small_run):
    from typer.testing import CliRunner

    assert invoke(CliRunner(), "report", "--run-dir", small_run, "-q").exit_code == 0
    text = (small_run / "report.md").read_text()
    assert "**5 trials only**: a paired sign test needs at least 8 trials" in text
    summary = pd.read_csv(small_run / "summary.csv")
    assert (summary["mark"].astype(object).fillna("") == "").all()  # indeed nothing could be marked


def test_metrics_figure_draws_no_boxes_below_ten_trials(small_run):
    metrics, *_ = _read(small_run)
    fig = figure_metrics(metrics, "t")
    assert not any(p.get_gid() is None and type(p).__name__ == "PathPatch" for ax in fig.axes for p in ax.patches)
    assert "no quartile boxes" in fig.texts[-1].get_text()
    many = pd.concat([metrics.assign(trial=metrics["trial"] + 100 * k) for k in range(3)])  # 15 trials
    fig = figure_metrics(many, "t")
    assert any(type(p).__name__ == "PathPatch" for ax in fig.axes for p in ax.patches)


def test_report_includes_paper_numbers_for_paper_datasets(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    _metrics({"knn": np.full(5, 0.7), "zero": np.full(5, 0.68)}).to_csv(run / "metrics.csv", index=False)
    (run / "config.yaml").write_text("dataset_name: routerbench\ndataset: routerbench\n")
    files = report_run(run)
    text = files[0].read_text()
    assert "| zero | area | 0.689 | 0.680 |" in text and "not comparable" not in text
    assert set(pd.read_csv(run / "summary.csv")["metric"]) == {"area", "area_50", "qnc", "aiq", "apgr"}
    (run / "config.yaml").write_text("dataset_name: routerbench-subset\ndataset: routerbench-subset\n")
    text = report_run(run)[0].read_text()
    assert "full `routerbench` table" in text and "not comparable" in text


# ------------------------------------------------------------------------------------------------
# a real small run (bundled RouterBench subset rows, per-query costs, 3 categories)
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_run(tmp_path_factory, small_tables):
    from typer.testing import CliRunner

    base = tmp_path_factory.mktemp("small-run")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UNIROUTER_HOME", str(base / "home"))
        p, o, m = small_tables
        ds = write_dataset(base / "small-rb", p, o, m, {"name": "small-rb", "cost_unit": "USD per query"})
        run = base / "run"
        runner = CliRunner()
        res = invoke(runner, "fit", "--dataset", ds, "-r", "zero", "-r", "knn", "-r", "uniroute-kmeans",
                     "-r", "oracle", "--trials", "5", "--run-dir", run, "-q")
        assert res.exit_code == 0, res.output
        assert res.output.strip() == ""  # -q after the subcommand silenced fit
        assert invoke(runner, "evaluate", "--run-dir", run).exit_code == 0
        yield run


def _read(run: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    return (pd.read_csv(run / "metrics.csv"), pd.read_parquet(run / "curves.parquet"),
            pd.read_parquet(run / "singles.parquet"), pd.read_csv(run / "by_category.csv"))


def _line(ax, gid: str) -> np.ndarray:  # noqa: ANN001
    return next(ln for ln in ax.get_lines() if ln.get_gid() == gid).get_ydata()


def test_plot_files_written(small_run):
    files = plot_run(small_run, "png")
    assert {f.name for f in files} == {"curves-unseen.png", "metrics-unseen.png", "paired-unseen.png",
                                       "by-category-unseen.png"}
    for f in files:
        assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f.stat().st_size > 10_000
    assert not list((small_run / "plots").glob(".*.tmp"))  # atomic writes leave no temporary files


def test_curves_figure_draws_like_for_like_data(small_run):
    metrics, curves, singles, _ = _read(small_run)
    fig = figure_curves(curves, singles, metrics, "t", "knn")
    left, right = fig.axes[:2]
    assert len(fig.axes) == 2 and "oracle" not in {ln.get_gid() for ln in left.get_lines()}  # oracle off by default
    best = metrics.groupby("trial")["best_single"].first()
    for router in ("zero", "knn", "uniroute-kmeans"):
        c = curves[curves["router"] == router]
        manual = np.mean([np.interp(0.5, g["cost"], g["quality"]) - best[t] for t, g in c.groupby("trial")])
        assert _line(left, router)[100] == pytest.approx(manual, abs=1e-6)  # GRID[100] = 0.5
    # the single-LLM frontier: same trials, same normalisation; it ends at the best single LLM (0)
    frontier = _line(left, "frontier")
    assert frontier[-1] == pytest.approx(0.0, abs=1e-6) and np.all(np.diff(frontier) >= -1e-9)
    s0 = singles[singles["trial"] == 0]
    assert frontier_curves(singles)[1][0][0] == pytest.approx(s0.loc[s0["cost"].idxmin(), "quality"])
    # right panel: mean paired difference to knn; its integral over cost is the mean Area difference
    for router in ("zero", "uniroute-kmeans"):
        d = _line(right, router)
        area_diff = (metrics[metrics["router"] == router].set_index("trial")["area"]
                     - metrics[metrics["router"] == "knn"].set_index("trial")["area"]).mean()
        assert np.trapezoid(d, GRID) == pytest.approx(area_diff, abs=2e-3)
    fig3 = figure_curves(curves, singles, metrics, "t", "knn", include_oracle=True)
    assert len(fig3.axes) == 3 and "oracle" in {ln.get_gid() for ln in fig3.axes[2].get_lines()}
    means = mean_curves(curves)
    assert np.all(means["oracle"][0] >= means["zero"][0] - 1e-6)


def test_curves_legend_caption_and_axes_do_not_overlap(small_run):
    """However many lines the caption wraps to and rows the legend takes, neither covers the other or the axes."""
    metrics, curves, singles, _ = _read(small_run)
    many = pd.concat([curves.assign(router=curves["router"] + s) for s in ("", "-a", "-b")])  # 3 legend rows
    kinds = pd.concat([metrics.assign(router=metrics["router"] + s) for s in ("", "-a", "-b")])
    for oracle in (False, True):
        fig = figure_curves(many, singles, kinds, "t", "knn", include_oracle=oracle)
        fig.canvas.draw()
        r = fig.canvas.get_renderer()
        legend = fig.legends[0].get_window_extent(r)
        caption = next(t for t in fig.texts if t.get_text().startswith("Each trial")).get_window_extent(r)
        assert legend.y0 >= caption.y1, (legend, caption)
        for ax in fig.axes:
            assert ax.get_tightbbox(r).y0 >= legend.y1 - 1, (ax.get_title(), legend)


def test_metrics_figure_marks_qnc_not_reached(small_run):
    metrics, *_ = _read(small_run)
    metrics = metrics.copy()
    metrics.loc[metrics.index[:2], ["qnc", "qnc_reached"]] = [1.0, False]  # as evaluate writes a miss
    fig = figure_metrics(metrics, "t")
    qax = fig.axes[1]
    for router in ("zero", "knn", "uniroute-kmeans"):
        m = metrics[metrics["router"] == router]
        missed = [c for c in qax.collections if c.get_gid() == f"{router}:not-reached"]
        trials = next(c for c in qax.collections if c.get_gid() == f"{router}:trials")
        n_missed = int((~m["qnc_reached"].astype(bool)).sum())
        assert (missed[0].get_offsets().shape[0] if missed else 0) == n_missed
        if missed:
            assert np.allclose(missed[0].get_offsets()[:, 0], 100.0)
        assert np.allclose(np.sort(trials.get_offsets()[:, 0]),
                           np.sort(100 * m.loc[m["qnc_reached"].astype(bool), "qnc"].to_numpy()))
    for ln in qax.get_lines():  # error bars (95% intervals) stay inside [0, 100%]
        x = np.asarray(ln.get_xdata(), float)
        assert np.all((x >= -1e-9) & (x <= 100 + 1e-9))
    many = pd.concat([metrics.assign(trial=metrics["trial"] + 100 * k) for k in range(3)])  # 15 trials: boxes
    boxes = figure_metrics(many, "t").axes[0]
    medians = [ln for ln in boxes.get_lines() if ln.get_color() == "black" and ln.get_path_effects()]
    assert len(medians) >= 3  # black medians with a white outline: visible on every box colour


def test_paired_figure_draws_the_metric_differences(small_run):
    metrics, *_ = _read(small_run)
    fig = figure_paired(metrics, "t", "knn")
    for ax, metric in zip(fig.axes[:2], ("area", "qnc"), strict=True):
        for router in ("zero", "uniroute-kmeans"):
            pts = [c.get_offsets()[:, 0] for c in ax.collections
                   if c.get_gid() in (f"{router}:trials", f"{router}:censored")]
            drawn = np.sort(np.concatenate(pts))
            want = (metrics[metrics["router"] == router].set_index("trial")[metric]
                    - metrics[metrics["router"] == "knn"].set_index("trial")[metric]).to_numpy()
            scale = 100.0 if metric == "qnc" else 1.0  # QNC in percentage points, as in the metrics figure
            assert np.allclose(drawn, np.sort(scale * want))
        assert "oracle" not in [t.get_text() for t in ax.get_yticklabels()]


def test_by_category_figure_and_report_table(small_run):
    metrics, _, _, by_cat = _read(small_run)
    assert set(by_cat["category"]) == {"arc-challenge", "mbpp", "winogrande"}
    fig = figure_by_category(by_cat, "t", "knn")
    grid = fig.axes[0].images[0].get_array()
    routers = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    cats = [t.get_text().split("\n")[0] for t in fig.axes[0].get_xticklabels()]
    assert routers == ["zero", "uniroute-kmeans"] and cats == ["arc-challenge", "mbpp", "winogrande"]
    ref = by_cat[by_cat["router"] == "knn"].set_index(["trial", "category"])["area"]
    for i, r in enumerate(routers):
        for j, c in enumerate(cats):
            g = by_cat[(by_cat["router"] == r) & (by_cat["category"] == c)].set_index(["trial", "category"])["area"]
            assert grid[i, j] == pytest.approx((g - ref.loc[g.index]).mean(), abs=1e-12)
    report_run(small_run)
    text = (small_run / "report.md").read_text()
    assert "### By prompt category" in text
    zk = by_cat[(by_cat["router"] == "zero") & (by_cat["category"] == "mbpp")]
    row = next(ln for ln in text.splitlines() if ln.startswith("| mbpp |"))
    assert f"{zk['area'].mean():.3f}" in row.split("|")[3] and f"{100 * zk['qnc'].mean():.0f}%" in row.split("|")[3]


def test_report_costs_json_and_html(small_run):
    files = report_run(small_run)
    assert [f.name for f in files] == ["report.md", "summary.csv", "summary.json", "report.html"]
    metrics = pd.read_csv(small_run / "metrics.csv")
    assert (metrics["cost_max"] > 0).all()
    summary = pd.read_csv(small_run / "summary.csv")
    for router in ("zero", "knn"):
        m = metrics[metrics["router"] == router]
        got = summary.query("router == @router and metric == 'qnc_cost'")["mean"].iloc[0]
        assert got == pytest.approx((m["qnc"] * m["cost_max"]).mean())
    text = (small_run / "report.md").read_text()
    assert "cost to match (USD per query)" in text and "HullArea" in text and "AIQ |" not in text
    assert "reference router: `knn`" in text
    doc = json.loads((small_run / "summary.json").read_text())
    assert doc["reference"] == "knn" and doc["config"]["trials"] == 5 and doc["cost_unit"] == "USD per query"
    assert {"unirouter", "numpy", "scikit-learn", "python"} <= set(doc["versions"])
    rows = pd.DataFrame(doc["summary"])
    assert len(rows) == len(summary) and np.allclose(rows["mean"], summary["mean"], equal_nan=True)
    assert {r["category"] for r in doc["by_category"]} == {"arc-challenge", "mbpp", "winogrande"}
    html = (small_run / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "<table>" in html and "http" not in html.split("</style>")[1]


def test_report_html_opens_in_headless_chromium(small_run, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no chromium on this machine (apt-get install -y chromium); report.html not opened in a browser")
    plot_run(small_run)
    report_run(small_run)
    page = tmp_path / "page.html"  # the report plus a probe that records whether every image decoded
    probe = ("<script>window.addEventListener('load',()=>{document.title='images:'+"
             "[...document.images].map(i=>i.naturalWidth).join(',')+';tables:'+document.querySelectorAll("
             "'table').length});</script></body>")
    page.write_text((small_run / "report.html").read_text().replace("</body>", probe))
    out = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
                          "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    title = re.search(r"<title>(.*?)</title>", out.stdout)
    assert title, out.stderr[-2000:]
    widths = [int(w) for w in title.group(1).split(";")[0].removeprefix("images:").split(",")]
    assert len(widths) == 4 and all(w > 500 for w in widths)
    assert int(title.group(1).split("tables:")[1]) >= 3


def test_report_and_plot_on_a_run_without_knn(runner, small_dataset, tmp_path):
    run = tmp_path / "run"
    assert invoke(runner, "-q", "fit", "--dataset", small_dataset, "-r", "zero", "-r", "uniroute-kmeans",
                  "--trials", "3", "--run-dir", run).exit_code == 0
    assert invoke(runner, "-q", "evaluate", "--run-dir", run).exit_code == 0
    res = invoke(runner, "report", "--run-dir", run)
    assert res.exit_code == 0, res.output
    assert "reference router: `zero`" in (run / "report.md").read_text()
    assert json.loads((run / "summary.json").read_text())["reference"] == "zero"
    res = invoke(runner, "plot", "--run-dir", run)
    assert res.exit_code == 0 and (run / "plots" / "paired-unseen.png").exists()
    # a second pool evaluated later: both pools are reported and drawn
    assert invoke(runner, "-q", "evaluate", "--run-dir", run, "--pool", "seen").exit_code == 0
    assert set(pd.read_csv(run / "metrics.csv")["pool"]) == {"unseen", "seen"}
    assert invoke(runner, "-q", "report", "--run-dir", run).exit_code == 0
    text = (run / "report.md").read_text()
    assert "## pool: unseen" in text and "## pool: seen" in text
    assert invoke(runner, "-q", "plot", "--run-dir", run).exit_code == 0
    assert (run / "plots" / "curves-seen.png").exists() and (run / "plots" / "by-category-seen.png").exists()
    res = invoke(runner, "plot", "--run-dir", run, "--reference", "knn")
    assert res.exit_code == 2 and "reference router 'knn' is not in this run" in res.output


def test_valsize_figure_draws_paired_differences(runner, small_dataset, tmp_path):
    from unirouter_cli.results.plot import figure_valsize

    run = tmp_path / "sweep"
    assert invoke(runner, "-q", "fit", "--dataset", small_dataset, "-r", "zero", "-r", "knn", "--trials", "3",
                  "--val-sizes", "30,60", "--run-dir", run).exit_code == 0
    assert invoke(runner, "-q", "evaluate", "--run-dir", run).exit_code == 0
    assert invoke(runner, "-q", "plot", "--run-dir", run).exit_code == 0
    assert (run / "plots" / "valsize-unseen.png").exists()
    m = pd.read_csv(run / "metrics.csv")
    fig = figure_valsize(m.assign(probe_strategy="random"), "t", "knn")
    left, right = fig.axes[:2]
    z = m[m["router"] == "zero"].set_index(["val_size", "trial"])["area"]
    k = m[m["router"] == "knn"].set_index(["val_size", "trial"])["area"]
    assert np.allclose(_line(right, "zero"), (z - k).groupby("val_size").mean().to_numpy())
    assert np.allclose(_line(left, "knn"), k.groupby("val_size").mean().to_numpy())
    assert "knn" not in {ln.get_gid() for ln in right.get_lines()}  # the reference is the 0 line


def test_router_styles_distinct_for_many_routers():
    from matplotlib.colors import to_rgb

    names = ["zero", "knn", "uniroute-kmeans", "uniroute-learnedmap", "retrained-mlp", "clairvoyant-mlp",
             "clairvoyant-matfac", "oracle", "foldin", "my-plugin", "another", "third"]
    st = router_styles(names)
    assert len({s.colour for s in st.values()}) == len(names)
    assert len({(str(s.linestyle), s.marker) for s in st.values()}) == len(names)
    assert len({s.marker for s in st.values()}) == len(names)  # distinct in grayscale too
    for s in st.values():  # no pale colour (relative luminance of #F0E442 is 0.78)
        r, g, b = (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in to_rgb(s.colour))
        assert 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.5, s
    assert router_styles(["knn", "zero"])["zero"] == st["zero"]  # fixed per name, whatever else is drawn
    assert router_colours(["zero"])["zero"] == st["zero"].colour


# ------------------------------------------------------------------------------------------------
# reproduce layout and the results table script (README.md and docs/*.md blocks)
# ------------------------------------------------------------------------------------------------
def test_reproduce_records_timing_and_readme_tables_fills_markers(runner, small_dataset, tmp_path):
    preset = tmp_path / "tiny.yaml"
    preset.write_text(yaml.safe_dump({"version": 1, "name": "tiny", "description": "two trials",
                                      "dataset": str(small_dataset), "routers": ["zero", "knn", "oracle"],
                                      "trials": 2, "seed": 1, "pools": ["unseen"]}))
    out = tmp_path / "runs" / "reproduce-20260101-000000"
    res = invoke(runner, "-q", "reproduce", "--config", preset, "--out", out, "--jobs", "1")
    assert res.exit_code == 0, res.output
    rec = json.loads((out / "tiny" / "reproduce.json").read_text())
    assert rec["trials"] == 2 and rec["wall_seconds"] > 0 and set(rec["seconds"]) == {"fit", "evaluate", "plot",
                                                                                       "report"}
    index = (out / "REPORT.md").read_text()
    assert "tiny/report.html" in index and "CPUs" in index and "min |" in index
    assert (out / "tiny" / "report.html").read_text().count("data:image/png;base64,") == 4  # plot ran first

    readme, page = tmp_path / "README.md", tmp_path / "docs" / "results.md"
    page.parent.mkdir()
    before = "# project\n\nprose with 1.234 that stays\n\n"
    page.write_text(before + "<!-- results:tiny -->\nstale 0.9999\n<!-- /results:tiny -->\n\ntail\n")
    readme.write_text(before + "<!-- results:reproduce-timing -->\n<!-- /results:reproduce-timing -->\ntail\n")
    files = ["--file", str(readme), "--file", str(page)]
    script = [sys.executable, str(ROOT / "scripts" / "readme_tables.py"), *files]
    tables = _script_module()
    assert tables.main([*files, "--check", str(out)]) == 1
    p = subprocess.run([*script, str(out)], capture_output=True, text=True, env={**os.environ})  # as a user runs it
    assert p.returncode == 0 and p.stdout.count("updated") == 2, p.stderr
    text = page.read_text()
    assert text.startswith(before) and text.endswith("tail\n") and "stale" not in text
    summary = pd.read_csv(out / "tiny" / "summary.csv")
    knn_area = summary.query("router == 'knn' and metric == 'area'").iloc[0]
    assert f"| knn | dynamic | {knn_area['mean']:.4f} [{knn_area['ci_low']:.4f}, {knn_area['ci_high']:.4f}]" in text
    assert f"`{rec['command']}`" in text and "CPUs" in text
    timing = readme.read_text()
    assert "min wall time for fit, evaluate, plot and report of 1 preset (" in timing and timing.endswith("tail\n")
    first = text
    assert tables.main([*files, str(out)]) == 0 and page.read_text() == first  # idempotent
    assert tables.main([*files, "--check", str(out)]) == 0
    with pytest.raises(SystemExit, match="neither a run directory"):
        tables.main([*files, f"other={tmp_path}/nothing"])


def test_result_blocks_are_paired_and_name_presets():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    text = "\n".join(p.read_text() for p in pages)
    starts = re.findall(r"<!-- results:([\w-]+) -->", text)
    ends = re.findall(r"<!-- /results:([\w-]+) -->", text)
    assert starts and starts == ends and len(set(starts)) == len(starts)
    presets = {yaml.safe_load(p.read_text())["name"] for p in (ROOT / "configs").glob("*.yaml")}
    # blocks filled by scripts/readme_runs.sh (NAME=$out/... arguments of readme_tables.py)
    extra = set(re.findall(r'"([\w-]+)=\$out/', (ROOT / "scripts" / "readme_runs.sh").read_text()))
    extra.add("bench")  # filled from `make bench`'s .bench/tables.md (benchmarks/run.py)
    assert extra and set(starts) - {"reproduce-timing"} <= presets | extra
    tables = _script_module()
    for name in starts:
        assert tables.replace_block(text, name, "x")[1]


def _script_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("readme_tables", ROOT / "scripts" / "readme_tables.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ------------------------------------------------------------------------------------------------
# CLI help: defaults, flags, global options, examples
# ------------------------------------------------------------------------------------------------
def _commands():
    from typer.main import get_command

    from unirouter_cli.cli import app

    def walk(cmd, path):  # noqa: ANN001, ANN202
        yield path, cmd
        for name, sub in sorted(getattr(cmd, "commands", {}).items()):
            yield from walk(sub, [*path, name])

    return list(walk(get_command(app), []))


def test_fit_help_shows_every_default_and_they_are_the_real_ones(runner):
    from unirouter_cli.protocol.universe import SplitConfig
    from unirouter_cli.routers import default_fit_routers
    from unirouter_cli.runs.config import RunConfig

    res = runner.invoke(__import__("unirouter_cli.cli", fromlist=["app"]).app, ["fit", "--help"],
                        env={"COLUMNS": "250"})
    text = " ".join(res.output.split())
    cfg, split = RunConfig(dataset="x", routers=[]), SplitConfig()
    for option, value in (("Number of random trials", cfg.trials), ("Seed that fixes every split and router",
                                                                    cfg.seed),
                          ("Prompt encoder", cfg.encoder), ("Training share of prompts", split.train_frac),
                          ("Validation share of prompts", split.val_frac), ("Test share of prompts", split.test_frac)):
        assert f"{option} [default: {value}]" in text, option
    assert "[default: those `unirouter routers` marks 'fit']" in text and "[default: mmlu-pro]" in text
    listed = runner.invoke(__import__("unirouter_cli.cli", fromlist=["app"]).app, ["routers"], env={"COLUMNS": "250"})
    marked = [ln.split("│")[1].strip() for ln in listed.output.splitlines()
              if ln.count("│") > 3 and ln.split("│")[3].strip() == "fit"]
    assert marked == default_fit_routers()
    assert "[default: block]" in text and f"[default: {split.coverage}]" in text
    assert f"[default: {split.probe_strategy}]" in text


def test_help_of_every_command_shows_defaults_and_no_bool_type(runner):
    from unirouter_cli.cli import app

    for path, cmd in _commands():
        res = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "250"})
        assert res.exit_code == 0, path
        assert "<bool>" not in res.output, path
        assert not re.search(r"\w \.(?=\s)", res.output), (path, "a default eaten by rich markup leaves 'word .'")
        for p in cmd.params:
            if "[default:" in (getattr(p, "help", None) or ""):
                assert "[default:" in res.output, (path, p.name)


def test_quiet_flag_before_or_after_the_subcommand(runner, small_dataset, tmp_path):
    from unirouter_cli.cli import hoist_global_flags

    assert hoist_global_flags(["fit", "-n", "2", "-q"]) == ["-q", "fit", "-n", "2"]
    assert hoist_global_flags(["fit", "--", "-q"]) == ["fit", "--", "-q"]
    loud = invoke(runner, "fit", "--dataset", small_dataset, "-r", "zero", "--trials", "1", "--run-dir",
                  tmp_path / "a")
    assert loud.exit_code == 0 and "universe" in loud.output
    for args in (["--quiet", "fit"], ["fit", "--quiet"]):
        res = invoke(runner, *args, "--dataset", small_dataset, "-r", "zero", "--trials", "1", "--run-dir",
                     tmp_path / args[0])
        assert res.exit_code == 0 and res.output.strip() == "", args


def _examples() -> list[tuple[str, str]]:
    out = []
    for path, cmd in _commands():
        for ex in re.findall(r"Example:\s*(.+?)(?:\n\s*\n|$)", inspect.cleandoc(cmd.help or ""), re.S):
            out.append((" ".join(path) or "unirouter", " ".join(ex.split())))
    return out


EXAMPLES = _examples()
OFFLINE_SOURCES = {"routerbench": ROOT / "tests" / "fixtures" / "routerbench-pickle"}  # upstream-format files
def _example_params():
    return [pytest.param(where, ex, id=f"{where}: {ex[:60]}") for where, ex in EXAMPLES]


def test_every_command_has_an_example():
    have = {w for w, _ in EXAMPLES}
    for path, cmd in _commands():
        if not getattr(cmd, "commands", None):
            assert " ".join(path) in have, path


@pytest.fixture(scope="module")
def demo_clone(tmp_path_factory):
    """A fresh-clone-like folder (configs/ only, no ../shared) after the root help's example ran
    (with 1 trial): runs/demo is fitted, evaluated and reported."""
    from typer.testing import CliRunner

    clone = tmp_path_factory.mktemp("clone") / "unirouter"
    shutil.copytree(ROOT / "configs", clone / "configs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UNIROUTER_HOME", str(clone.parent / "home"))
        mp.chdir(clone)
        root = next(ex for where, ex in EXAMPLES if where == "unirouter")
        for part in _commands_of(root):
            res = invoke(CliRunner(), *part)
            assert res.exit_code == 0, (part, res.output)
    return clone


def _commands_of(example: str) -> list[list[str]]:
    """The unirouter commands of an example line, trials cut to 1 (the test runs them, not the protocol)."""
    parts = []
    for cmd in example.split("&&"):
        words = shlex.split(cmd)
        assert words[0] == "unirouter", cmd
        words = words[1:]
        for i, w in enumerate(words[:-1]):
            if w in ("--trials", "-n"):
                words[i + 1] = "1"
        parts.append(words)
    return parts


@pytest.mark.parametrize(("where", "example"), _example_params())
def test_help_example_runs_on_a_fresh_clone(where, example, demo_clone, tmp_path, monkeypatch, runner):
    from typer.main import get_command

    from unirouter_cli.cli import app

    assert "../" not in example and "/work/" not in example, "examples may use bundled data only"
    if where == "unirouter":  # the demo_clone fixture ran it: check what it left
        assert (demo_clone / "runs" / "demo" / "report.md").exists()
        assert (demo_clone / "runs" / "demo" / "summary.json").exists()
        return
    here = tmp_path / "unirouter"
    shutil.copytree(demo_clone / "configs", here / "configs")
    first = _commands_of(example)[0][0]
    if first not in ("fit", "reproduce"):  # the state a user has after the quick-start example
        shutil.copytree(demo_clone / "runs", here / "runs")
    monkeypatch.chdir(here)
    if example.startswith("unirouter data remove "):  # needs a downloaded copy: make one offline first
        name = shlex.split(example)[3]
        if name not in OFFLINE_SOURCES:
            pytest.skip(f"no offline upstream files for {name} to create the downloaded copy the example removes")
        res = invoke(runner, "download", name, "--from", OFFLINE_SOURCES[name])
        assert res.exit_code == 0, res.output
    for words in _commands_of(example):
        if words[0] == "download":  # network: check that the example parses, do not fetch
            root = get_command(app)
            root.commands["download"].make_context("download", words[1:])
            continue
        if words[:2] == ["router", "serve"]:  # serves until stopped: check that it parses (test_server serves)
            get_command(app).commands["router"].commands["serve"].make_context("serve", words[2:])
            continue
        res = invoke(runner, *words)
        assert res.exit_code == 0, (words, res.output)


def test_background_finish_returns_value_and_raises_the_childs_error():
    """reproduce makes a preset's figures in a forked process: its value comes back, its error is raised here
    (the same class and message), and a process that dies is one RunDirError."""
    import os

    from unirouter_cli.errors import ConfigError, RunDirError
    from unirouter_cli.runs.reproduce import Finish

    def ok(a, b):
        return [a, b, os.getpid()]

    def bad():
        raise ConfigError("bad preset figure")

    value = Finish(ok, 1, "x").result()
    assert value[:2] == [1, "x"] and value[2] != os.getpid()
    assert Finish(ok, 2, "y", fork=False).result()[2] == os.getpid()
    with pytest.raises(ConfigError, match="bad preset figure"):
        Finish(bad).result()
    with pytest.raises(RunDirError, match="died"):
        Finish(os._exit, 3).result()
