"""Stage 7a - reports: summary statistics, paired sign tests, the paper's numbers side by side.

``summarise`` gives, per pool / validation size / router / metric: mean, 95% t-interval over
trials, and a two-sided paired sign test against a reference router (ties dropped), marked
``+`` (significantly better) or ``-`` (significantly worse) at ``alpha`` (default 0.01, the paper's).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from .errors import ConfigError, DataError, RunDirError
from .io import load_yaml, read_table, write_csv, write_text, yaml_problem
from .split import universe_line

METRICS = {  # name -> (higher is better, label)
    "area": (True, "Area"),
    "area_50": (True, "Area(50%)"),
    "qnc": (False, "QNC"),
    "aiq": (True, "AIQ"),
    "apgr": (True, "APGR"),
}

# The paper's v2 numbers for unseen LLMs (METHOD.md); keyed by dataset name.
PAPER = {
    "embedllm": {"area": {"zero": .607, "knn": .636, "uniroute-kmeans": .648, "uniroute-learnedmap": .651,
                          "clairvoyant-mlp": .664},
                 "qnc": {"zero": .875, "knn": .461, "uniroute-kmeans": .339, "uniroute-learnedmap": .331}},
    "routerbench": {"area": {"zero": .689, "knn": .707, "uniroute-kmeans": .712, "uniroute-learnedmap": .711,
                             "clairvoyant-mlp": .723}},
    "sprout": {"area": {"zero": .820, "knn": .844, "uniroute-kmeans": .850, "uniroute-learnedmap": .846,
                        "clairvoyant-mlp": .859}},
}


def sign_test(a: np.ndarray, b: np.ndarray, higher_better: bool) -> tuple[int, int, float]:
    """Paired two-sided sign test of a vs b: (wins of a, losses of a, p-value); ties dropped."""
    from scipy.stats import binomtest

    d = (a - b) if higher_better else (b - a)
    d = d[np.isfinite(d)]
    wins, losses = int((d > 1e-12).sum()), int((d < -1e-12).sum())
    if wins + losses == 0:
        return wins, losses, 1.0
    return wins, losses, float(binomtest(wins, wins + losses, 0.5).pvalue)


def ci95(x: np.ndarray) -> tuple[float, float, float]:
    from scipy.stats import t as student_t

    x = x[np.isfinite(x)]
    if len(x) == 0:
        return float("nan"), float("nan"), float("nan")
    m = float(x.mean())
    if len(x) < 2:
        return m, m, m
    h = float(student_t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))
    return m, m - h, m + h


def summarise(metrics: pd.DataFrame, reference: str = "knn", alpha: float = 0.01) -> pd.DataFrame:
    if reference not in set(metrics["router"]):
        raise ConfigError(f"reference router {reference!r} is not in this run "
                          f"(routers: {', '.join(dict.fromkeys(metrics['router']))})")
    rows = []
    order = list(dict.fromkeys(metrics["router"]))
    for (pool, vs), grp in metrics.groupby(["pool", "val_size"], sort=False):
        ref = grp[grp["router"] == reference].set_index("trial")
        for router in order:
            g = grp[grp["router"] == router].set_index("trial")
            if g.empty:
                continue
            kind = g["kind"].iloc[0]
            for metric, (hb, _label) in METRICS.items():
                x = g[metric].to_numpy(dtype=float)
                m, lo, hi = ci95(x)
                row = {"pool": pool, "val_size": int(vs), "router": router, "kind": kind, "metric": metric,
                       "mean": m, "ci_low": lo, "ci_high": hi, "n_trials": int(np.isfinite(x).sum()),
                       "reference": reference, "wins": np.nan, "losses": np.nan, "p_value": np.nan, "mark": ""}
                if router != reference:
                    common = g.index.intersection(ref.index)
                    w, lo_, p = sign_test(g.loc[common, metric].to_numpy(float),
                                          ref.loc[common, metric].to_numpy(float), hb)
                    row.update({"wins": w, "losses": lo_, "p_value": p,
                                "mark": ("+" if w > lo_ else "-") if p < alpha else ""})
                rows.append(row)
    return pd.DataFrame(rows)


def split_line(config: dict) -> str:
    """The run's split in words (no raw dicts, no None values)."""
    sp = config.get("split") or {}
    if sp.get("train_categories"):
        prompts = (f"training prompts from categories {', '.join(sp['train_categories'])}; validation and test "
                   f"prompts from the other categories ({sp.get('val_frac')} : {sp.get('test_frac')})")
    else:
        prompts = f"prompts {sp.get('train_frac')} / {sp.get('val_frac')} / {sp.get('test_frac')} train/val/test"
    if sp.get("val_size"):
        prompts += f", {sp['val_size']} validation prompts"
    if config.get("val_sizes"):
        prompts += f", validation sizes {', '.join(map(str, config['val_sizes']))}"
    if sp.get("unseen_models"):
        llms = f"fixed unseen pool: {', '.join(sp['unseen_models'])}"
    elif sp.get("unseen_source"):
        llms = f"unseen pool = LLMs with source {sp['unseen_source']}"
    elif float(sp.get("unseen_frac") or 0) >= 1:
        llms = "every LLM unseen (no training LLMs)"
    else:
        llms = f"{float(sp.get('unseen_frac', 1 / 3)):.3g} of the LLMs unseen"
    return f"{prompts}; {llms}"


def _fmt(metric: str, m: float, lo: float, hi: float) -> str:
    if not np.isfinite(m):
        return "n/a"
    if metric == "qnc":
        return f"{100 * m:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"
    return f"{m:.4f} [{lo:.4f}, {hi:.4f}]"


def render_markdown(summary: pd.DataFrame, metrics: pd.DataFrame, config: dict, hyper: pd.DataFrame | None,
                    alpha: float, reference: str) -> str:
    name = config.get("dataset_name", "?")
    lines = [f"# unirouter report: {name}", ""]
    lines += [f"- dataset: `{config.get('dataset')}` (content hash `{config.get('dataset_hash')}`)",
              f"- encoder: `{config.get('encoder')}`; trials: {config.get('trials')}; seed: {config.get('seed')}; "
              f"unirouter {config.get('unirouter_version')}",
              f"- split: {split_line(config)}",
              f"- {universe_line(config.get('universe') or {})}" if config.get("universe") else "- universe: n/a",
              *[f"- skipped router `{r}`: {why}" for r, why in (config.get("skipped_routers") or {}).items()],
              f"- cells: mean [95% interval over trials]; `+`/`-`: better/worse than `{reference}` by a paired "
              f"two-sided sign test at alpha = {alpha} (W/L = trials won/lost against it)",
              "- kinds: `dynamic` routers see the unseen LLMs only through their validation answers; "
              "`reference` routers (clairvoyant) were trained on the test LLMs' labels on the training prompts "
              "and are an upper reference, not a fair competitor; `bound` is the oracle.",
              "- QNC: share of the largest pool cost needed to match the best single test LLM "
              "(1.0 when never reached; `reached` = share of trials that reached it).", ""]
    if "test_categories" in metrics and (config.get("split") or {}).get("train_categories"):
        tested = sorted({c for v in metrics["test_categories"].dropna() for c in str(v).split(";")})
        lines.insert(5, f"- trained on categories {', '.join(config['split']['train_categories'])}; "
                        f"tested on {', '.join(tested)}")
    for (pool, vs), grp in summary.groupby(["pool", "val_size"], sort=False):
        m = metrics[(metrics["pool"] == pool) & (metrics["val_size"] == vs)]
        title = f"## pool: {pool}" + ("" if vs < 0 else f", validation size {vs}")
        lines += [title, "",
                  f"Pool size {int(m['n_pool'].median())} LLMs; test prompts per trial {int(m['n_test'].median())} "
                  f"(median); validation prompts {int(m['n_val'].median())}; best single LLM accuracy "
                  f"{m['best_single'].mean():.4f} (mean).", ""]
        head = "| router | kind | " + " | ".join(label for _, label in METRICS.values()) + " | QNC reached |"
        lines += [head, "|" + "---|" * (len(METRICS) + 3)]
        for router in dict.fromkeys(grp["router"]):
            r = grp[grp["router"] == router].set_index("metric")
            cells = []
            for metric in METRICS:
                x = r.loc[metric]
                cell = _fmt(metric, x["mean"], x["ci_low"], x["ci_high"])
                if router != reference and np.isfinite(x["wins"]):
                    cell += f" {x['mark']} ({int(x['wins'])}W/{int(x['losses'])}L)".replace("  ", " ")
                cells.append(cell)
            reached = m[m["router"] == router]["qnc_reached"].astype(bool).mean()
            lines.append(f"| {router} | {r['kind'].iloc[0]} | " + " | ".join(cells) + f" | {100 * reached:.0f}% |")
        lines.append("")
    paper = PAPER.get(str(name).split("-subset")[0]) if name else None
    lines += ["## The paper's numbers (v2, unseen LLMs)", ""]
    if paper:
        ours = summary[(summary["pool"] == "unseen") & (summary["val_size"] < 0)]
        lines += ["| router | metric | paper | this run |", "|---|---|---|---|"]
        for metric, vals in paper.items():
            for router, v in vals.items():
                o = ours[(ours["router"] == router) & (ours["metric"] == metric)]
                mine = f"{o['mean'].iloc[0]:.3f}" if len(o) else "not run"
                lines.append(f"| {router} | {metric} | {v:.3f} | {mine} |")
        lines += ["", "Different encoder, costs and trial count than the paper: compare orderings, not digits.", ""]
    else:
        lines += [f"The paper reports no numbers for `{name}` (it used EmbedLLM, RouterBench, SPROUT, "
                  "Math+Code, Headlines).", ""]
    if hyper is not None and len(hyper):
        lines += ["## Hyperparameters chosen inside each trial (from training and validation data only)", "",
                  "| router | name | values chosen (count over trials) |", "|---|---|---|"]
        for (router, pname), g in hyper.groupby(["router", "name"], sort=False):
            counts = g["value"].map(_fmt_value).value_counts()
            vals = ", ".join(f"{k} ({v})" for k, v in counts.items())
            lines.append(f"| {router} | {pname} | {vals} |")
        lines.append("")
    return "\n".join(lines)


def _fmt_value(v: object) -> str:
    try:
        return f"{float(v):g}"
    except (TypeError, ValueError):
        return str(v)


METRIC_NEED = ("trial", "router", "pool", "val_size", "kind", *METRICS, "qnc_reached", "n_pool", "n_test", "n_val",
               "best_single")


def read_metrics(run_dir: Path) -> pd.DataFrame:
    """metrics.csv of an evaluated run, checked (one RunDirError naming the file otherwise)."""
    mfile = run_dir / "metrics.csv"
    if not mfile.exists():
        raise RunDirError(f"{mfile}: missing; run `unirouter evaluate --run-dir {run_dir}` first")
    hint = f"rerun `unirouter evaluate --run-dir {run_dir}` to rewrite it"
    metrics = read_table(mfile, METRIC_NEED, ("trial", "val_size", *METRICS, "n_pool", "n_test", "n_val",
                                                "best_single"), hint)
    if metrics.empty:
        raise RunDirError(f"{mfile}: no rows; {hint}")
    return metrics


def read_run_config(run_dir: Path) -> dict:
    """config.yaml as a mapping for labels ({} if absent); a corrupt file is one RunDirError."""
    f = run_dir / "config.yaml"
    if not f.exists():
        return {}
    try:
        d = load_yaml(f)
    except (yaml.YAMLError, UnicodeDecodeError, DataError) as e:
        raise RunDirError(f"{f}: not valid YAML ({yaml_problem(e)})") from e
    if not isinstance(d, dict):
        raise RunDirError(f"{f}: expected a mapping")
    return d


def report_run(run_dir: str | Path, reference: str = "knn", alpha: float = 0.01) -> tuple[Path, Path]:
    run_dir = Path(run_dir)
    metrics = read_metrics(run_dir)
    config = read_run_config(run_dir)
    hfile = run_dir / "hyperparams.csv"
    hyper = (read_table(hfile, ("trial", "val_size", "router", "name", "value"), ("trial", "val_size"),
                        "delete it or refit into a new --run-dir") if hfile.exists() and hfile.stat().st_size > 0
             else None)
    summary = summarise(metrics, reference, alpha)
    sfile = write_csv(run_dir / "summary.csv", summary)
    rfile = write_text(run_dir / "report.md", render_markdown(summary, metrics, config, hyper, alpha, reference))
    return rfile, sfile
