"""reports: summary statistics, paired sign tests, real cost units, per-category tables.

``summarise`` gives, per view (pool / validation size / probe strategy), router and metric: the
mean, a 95% t-interval over trials (clipped to the metric's range, e.g. QNC to [0, 100%]) and a
two-sided paired sign test against a reference router (ties dropped), marked ``+`` (significantly
better) or ``-`` (significantly worse) at ``alpha`` (default 0.01, the paper's). The reference is
``knn`` when the run has it, else ``zero`` (``default_reference``).

Costs in real units: ``cost_max`` (metrics.csv) is the per-trial normaliser, the mean over test
prompts of the largest pool cost, in the dataset card's ``cost_unit``. ``qnc_cost = qnc * cost_max``
is the mean cost per query at which a router matches the best single test LLM.

``report_run`` writes report.md, summary.csv, summary.json (summary.csv's rows, the per-category
summary, the run config and library versions) and report.html (report.md with the figures in
DIR/plots/ embedded as base64, one self-contained file). A run that sweeps probe counts or
strategies gets a profiling-cost section (``probes_markdown``): Area per strategy and probe count,
sign tests against ``random`` at the same and at twice the count, and the probes needed to reach
95% of the full-validation Area gain.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..io import load_yaml, write_csv, write_text
from ..protocol.universe import universe_line
from .html import render_html, run_figures
from .runfiles import default_reference, read_metrics, read_optional, read_run_config, with_derived
from .stats import _clip, ci95, sign_test, sign_test_min_trials
from .sweep import probes_markdown

METRICS = {  # name -> (higher is better, label)
    "area": (True, "Area"),
    "area_50": (True, "Area(50%)"),
    "qnc": (False, "QNC"),
    "qnc_cost": (False, "cost to match"),
    "aiq": (True, "HullArea"),
    "apgr": (True, "APGR"),
}
CATEGORY_METRICS = ("area", "area_50", "qnc")
VIEW_KEYS = ["pool", "val_size", "probe_strategy"]

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


def summarise(metrics: pd.DataFrame, reference: str | None = None, alpha: float = 0.01,
              extra_keys: tuple[str, ...] = (), metric_names: tuple[str, ...] | None = None) -> pd.DataFrame:
    """One row per view (+ ``extra_keys``, e.g. category), router and metric; see the module doc."""
    metrics = with_derived(metrics)
    reference = reference or default_reference(metrics)
    if reference not in set(metrics["router"]):
        raise ConfigError(f"reference router {reference!r} is not in this run "
                          f"(routers: {', '.join(dict.fromkeys(metrics['router']))})")
    names = [m for m in (metric_names or METRICS) if m in metrics.columns]
    keys = VIEW_KEYS + list(extra_keys)
    order = list(dict.fromkeys(metrics["router"]))
    rows = []
    for vals, grp in metrics.groupby(keys, sort=False):
        ref = grp[grp["router"] == reference].set_index("trial")
        for router in order:
            g = grp[grp["router"] == router].set_index("trial")
            if g.empty:
                continue
            base = dict(zip(keys, vals, strict=True))
            base.update({"val_size": int(base["val_size"]), "router": router, "kind": g["kind"].iloc[0]})
            if "n_test" in g and extra_keys:
                base["n_test"] = int(g["n_test"].median())
            for metric in names:
                hb = METRICS[metric][0]
                x = g[metric].to_numpy(dtype=float)
                m, lo, hi = ci95(x)
                lo, hi = _clip(metric, lo, hi)
                if metric == "qnc_cost" and "cost_max" in g:  # each trial's value is at most its cost_max
                    lo, hi = min(lo, float(g["cost_max"].mean())), min(hi, float(g["cost_max"].mean()))
                row = {**base, "metric": metric, "mean": m, "ci_low": lo, "ci_high": hi,
                       "n_trials": int(np.isfinite(x).sum()), "reference": reference, "wins": np.nan,
                       "losses": np.nan, "p_value": np.nan, "mark": ""}
                if router != reference and not ref.empty:
                    common = g.index.intersection(ref.index)
                    w, lo_, p = sign_test(g.loc[common, metric].to_numpy(float),
                                          ref.loc[common, metric].to_numpy(float), hb)
                    row.update({"wins": w, "losses": lo_, "p_value": p,
                                "mark": ("+" if w > lo_ else "-") if p < alpha else ""})
                rows.append(row)
    return pd.DataFrame(rows)


def pool_costs(metrics: pd.DataFrame, singles: pd.DataFrame | None) -> dict[str, float]:
    """Per view: mean over trials of the normaliser (largest pool cost) and of the best single test
    LLM's own cost per query (the most accurate LLM, ties to the cheaper), both in the cost unit."""
    if "cost_max" not in metrics:
        return {}
    per_trial = metrics.groupby("trial")["cost_max"].first()
    out = {"cost_max": float(per_trial.mean())}
    if singles is not None and len(singles):
        best = singles.sort_values(["trial", "quality", "cost"], ascending=[True, False, True]).groupby("trial").first()
        common = best.index.intersection(per_trial.index)
        out["best_single_cost"] = float((best.loc[common, "cost"] * per_trial.loc[common]).mean())
    return out


def cost_unit(config: dict) -> str:
    """The dataset card's ``cost_unit`` (a label only: never an error)."""
    for spec in (config.get("dataset_path"), config.get("dataset")):
        if not spec:
            continue
        try:
            from ..data.registry import resolve

            card = load_yaml(resolve(str(spec))[1] / "dataset.yaml")
            if isinstance(card, dict) and card.get("cost_unit"):
                return str(card["cost_unit"])
        except Exception:  # noqa: BLE001, S112 - a label: fall through to the next spec
            continue
    return "cost units"


def versions() -> dict[str, str]:
    import platform
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("unirouter", "numpy", "scikit-learn", "scipy", "pandas", "matplotlib"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


# ------------------------------------------------------------------------------------------------
# rendering
# ------------------------------------------------------------------------------------------------
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


def short_unit(unit: str) -> str:
    """'USD per query (models.csv: mean over the table)' -> 'USD per query'; 'USD per 1M tokens, ...' ->
    'USD per 1M tokens'."""
    return re.split(r" \(|, ", unit, maxsplit=1)[0].strip() or unit


def fmt_cost(x: float) -> str:
    return "n/a" if not np.isfinite(x) else f"{x:.3g}"


def fmt_cell(metric: str, m: float, lo: float, hi: float) -> str:
    if not np.isfinite(m):
        return "n/a"
    if metric == "qnc":
        return f"{100 * m:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"
    if metric == "qnc_cost":
        return f"{fmt_cost(m)} [{fmt_cost(lo)}, {fmt_cost(hi)}]"
    return f"{m:.4f} [{lo:.4f}, {hi:.4f}]"


def _mark(x: pd.Series) -> str:
    if not np.isfinite(x["wins"]):
        return ""
    return f" {x['mark']} ({int(x['wins'])}W/{int(x['losses'])}L)".replace("  ", " ")


def view_title(pool: str, vs: int, strategy: str, strategies: int) -> str:
    return (f"pool: {pool}" + ("" if vs < 0 else f", validation size {vs}")
            + (f", probe strategy {strategy}" if strategies > 1 or strategy != "random" else ""))


def _views(df: pd.DataFrame) -> list[tuple[str, int, str]]:
    return [tuple(v) for v in df[VIEW_KEYS].drop_duplicates().itertuples(index=False, name=None)]


def _select(df: pd.DataFrame | None, pool: str, vs: int, strategy: str) -> pd.DataFrame | None:
    if df is None:
        return None
    return df[(df["pool"] == pool) & (df["val_size"] == vs) & (df["probe_strategy"] == strategy)]


def gap_line(metrics: pd.DataFrame, low: str = "zero", high: str = "clairvoyant-mlp") -> str | None:
    """One line: each dynamic router's share of the ``low`` -> ``high`` Area gap, from mean Areas over trials.

    ``(mean Area(router) - mean Area(low)) / (mean Area(high) - mean Area(low))``; None when the run lacks
    either router or the gap is not positive.
    """
    area = metrics.groupby("router", sort=False)["area"].mean()
    if low not in area or high not in area or not area[high] > area[low]:
        return None
    kinds = metrics.drop_duplicates("router").set_index("router")["kind"]
    shares = [f"{r} {round(100 * (area[r] - area[low]) / (area[high] - area[low])):d}%"
              for r in area.index if r != low and kinds.get(r) == "dynamic"]
    return (f"Share of the `{low}` -> `{high}` Area gap closed (difference of mean Areas): "
            + ", ".join(shares) + ".")


def render_markdown(summary: pd.DataFrame, metrics: pd.DataFrame, config: dict, hyper: pd.DataFrame | None,
                    alpha: float, reference: str, by_category: pd.DataFrame | None = None,
                    singles: pd.DataFrame | None = None, unit: str = "cost units") -> str:
    name = config.get("dataset_name", "?")
    lines = [f"# unirouter report: {name}", ""]
    lines += [f"- dataset: `{config.get('dataset')}` (content hash `{config.get('dataset_hash')}`)",
              f"- encoder: `{config.get('encoder')}`; trials: {config.get('trials')}; seed: {config.get('seed')}; "
              f"unirouter {config.get('unirouter_version')}",
              f"- split: {split_line(config)}",
              f"- {universe_line(config.get('universe') or {})}" if config.get("universe") else "- universe: n/a",
              *[f"- skipped router `{r}`: {why}" for r, why in (config.get("skipped_routers") or {}).items()],
              f"- reference router: `{reference}` (default: knn if the run has it, else zero; `--reference` "
              "changes it)",
              f"- cells: mean [95% t-interval over trials, clipped to the metric's range]; `+`/`-`: better/worse "
              f"than `{reference}` by a paired two-sided sign test at alpha = {alpha} (W/L = trials won/lost "
              "against it)",
              "- kinds: `dynamic` routers see the unseen LLMs only through their validation answers; "
              "`reference` routers (clairvoyant) were trained on the test LLMs' labels on the training prompts "
              "and are an upper reference, not a fair competitor; `bound` is the oracle.",
              "- Area: mean accuracy over normalised cost [0, 1] (cost 1 = the trial's mean, over test prompts, "
              "of the largest cost in the pool). QNC: share of that cost needed to match the best single test "
              "LLM's accuracy (100% when never reached; `reached` = share of trials that reached it). "
              f"Cost to match: QNC x that cost, the mean cost per query at which the router matches the best "
              f"single test LLM, in {unit}.",
              "- HullArea (metrics.csv column `aiq`): Area under the non-decreasing upper convex hull of the "
              "curve, over normalised cost [0, 1]. RouterBench's AIQ averages its hull over the cost range "
              "[c_min, c_max] instead, so the two are not the same number. APGR: (Area - accuracy of the "
              "cheapest LLM) / (best - cheapest LLM accuracy).", ""]
    if "test_categories" in metrics and (config.get("split") or {}).get("train_categories"):
        tested = sorted({c for v in metrics["test_categories"].dropna() for c in str(v).split(";")})
        lines.insert(5, f"- trained on categories {', '.join(config['split']['train_categories'])}; "
                        f"tested on {', '.join(tested)}")
    need = sign_test_min_trials(alpha)
    n_trials = int(metrics["trial"].nunique())
    if n_trials < need:
        lines[-1:-1] = [f"- **{n_trials} trial{'s' if n_trials != 1 else ''} only**: a paired sign test needs at "
                        f"least {need} trials to reach alpha = {alpha} (all won gives p = 2 x 0.5^n), so no "
                        "difference can be marked `+` or `-` here, and the intervals are wide; run more trials "
                        "(`--trials`) before reading a difference."]
    strategies = summary["probe_strategy"].nunique() if "probe_strategy" in summary else 1
    for pool, vs, strategy in _views(summary):
        grp = _select(summary, pool, vs, strategy)
        m = _select(metrics, pool, vs, strategy)
        costs = pool_costs(m, _select(singles, pool, vs, strategy))
        lines += [f"## {view_title(pool, vs, strategy, strategies)}", "",
                  f"Pool size {int(m['n_pool'].median())} LLMs; test prompts per trial {int(m['n_test'].median())} "
                  f"(median); validation prompts {int(m['n_val'].median())}; best single LLM accuracy "
                  f"{m['best_single'].mean():.4f} (mean)."]
        if costs:
            best = (f"; the best single test LLM's own cost is {fmt_cost(costs['best_single_cost'])}"
                    if "best_single_cost" in costs else "")
            lines.append(f"Costs in {unit}: the largest pool cost (1.0 on the cost axis) is "
                         f"{fmt_cost(costs['cost_max'])} (mean over trials){best}.")
        lines.append("")
        shown = [k for k in METRICS if k in set(grp["metric"])]
        labels = [METRICS[k][1] + (f" ({short_unit(unit)})" if k == "qnc_cost" else "") for k in shown]
        lines += ["| router | kind | " + " | ".join(labels) + " | QNC reached |", "|" + "---|" * (len(shown) + 3)]
        for router in dict.fromkeys(grp["router"]):
            r = grp[grp["router"] == router].set_index("metric")
            cells = [fmt_cell(k, r.loc[k, "mean"], r.loc[k, "ci_low"], r.loc[k, "ci_high"])
                     + (_mark(r.loc[k]) if router != reference else "") for k in shown]
            reached = m[m["router"] == router]["qnc_reached"].astype(bool).mean()
            lines.append(f"| {router} | {r['kind'].iloc[0]} | " + " | ".join(cells) + f" | {100 * reached:.0f}% |")
        lines.append("")
        if gap := gap_line(m):
            lines += [gap, ""]
        cat = _select(by_category, pool, vs, strategy)
        if cat is not None and len(cat):
            lines += category_table(cat, reference)
    lines += paper_section(summary, name)
    if hyper is not None and len(hyper):
        lines += ["## Hyperparameters chosen inside each trial (from training and validation data only)", "",
                  "| router | name | values chosen (count over trials) |", "|---|---|---|"]
        for (router, pname), g in hyper.groupby(["router", "name"], sort=False):
            counts = g["value"].map(_fmt_value).value_counts()
            vals = ", ".join(f"{k} ({v})" for k, v in counts.items())
            lines.append(f"| {router} | {pname} | {vals} |")
        lines.append("")
    return "\n".join(lines)


def category_table(cat: pd.DataFrame, reference: str) -> list[str]:
    """Markdown: one row per prompt category, one column per router; cells 'Area / QNC' with marks."""
    routers = list(dict.fromkeys(cat["router"]))
    lines = ["### By prompt category", "",
             f"Area / QNC per category (mean over trials); `+`/`-`: better/worse than `{reference}` in that "
             "category (sign test, same alpha).", "",
             "| category | test prompts | " + " | ".join(routers) + " |", "|" + "---|" * (len(routers) + 2)]
    for c in dict.fromkeys(cat["category"]):
        g = cat[cat["category"] == c]
        cells = []
        for router in routers:
            r = g[g["router"] == router].set_index("metric")
            if r.empty:
                cells.append("")
                continue
            a, q = r.loc["area"], r.loc["qnc"]
            cells.append(f"{a['mean']:.3f}{a['mark']} / {100 * q['mean']:.0f}%{q['mark']}")
        lines.append(f"| {c} | {int(g['n_test'].iloc[0])} | " + " | ".join(cells) + " |")
    return lines + [""]


def paper_section(summary: pd.DataFrame, name: str) -> list[str]:
    base = str(name).removesuffix("-subset") if name else ""
    paper = PAPER.get(base)
    lines = ["## The paper's numbers (v2, unseen LLMs)", ""]
    if not paper:
        return lines + [f"The paper reports no numbers for `{name}` (it used EmbedLLM, RouterBench, SPROUT, "
                        "Math+Code, Headlines).", ""]
    if base != name:
        lines += [f"The paper's numbers are for the full `{base}` table (and its Gecko embeddings); this run uses "
                  f"`{name}`, a different table. The columns are not comparable, only the orderings.", ""]
    ours = summary[(summary["pool"] == "unseen") & (summary["val_size"] < 0)]
    lines += ["| router | metric | paper | this run |", "|---|---|---|---|"]
    for metric, vals in paper.items():
        for router, v in vals.items():
            o = ours[(ours["router"] == router) & (ours["metric"] == metric)]
            mine = f"{o['mean'].iloc[0]:.3f}" if len(o) else "not run"
            lines.append(f"| {router} | {metric} | {v:.3f} | {mine} |")
    return lines + ["", "Different encoder, costs and trial count than the paper: compare orderings, not digits.", ""]


def _fmt_value(v: object) -> str:
    try:
        return f"{float(v):g}"
    except (TypeError, ValueError):
        return str(v)


def _records(df: pd.DataFrame | None) -> list[dict]:
    if df is None:
        return []
    return [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
            for row in json.loads(df.to_json(orient="records"))]


def summary_document(summary: pd.DataFrame, by_category: pd.DataFrame | None, config: dict, reference: str,
                     alpha: float, unit: str, costs: dict) -> dict:
    """summary.json: the rows of summary.csv and of the per-category summary, plus what made them."""
    return {"format": "unirouter-summary", "format_version": 1, "reference": reference, "alpha": alpha,
            "cost_unit": unit, "costs": costs, "versions": versions(), "config": config,
            "summary": _records(summary), "by_category": _records(by_category)}


# ------------------------------------------------------------------------------------------------
def report_run(run_dir: str | Path, reference: str | None = None, alpha: float = 0.01) -> list[Path]:
    """Write report.md, summary.csv, summary.json and report.html; returns their paths (report.md first)."""
    run_dir = Path(run_dir)
    metrics = read_metrics(run_dir)
    config = read_run_config(run_dir)
    hyper = read_optional(run_dir / "hyperparams.csv")
    singles = read_optional(run_dir / "singles.parquet")
    by_cat_raw = read_optional(run_dir / "by_category.csv")
    reference = reference or default_reference(metrics)
    summary = summarise(metrics, reference, alpha)
    by_cat = (summarise(by_cat_raw, reference, alpha, ("category",), CATEGORY_METRICS)
              if by_cat_raw is not None and reference in set(by_cat_raw["router"]) else None)
    unit = cost_unit(config)
    costs = {"/".join(map(str, v)): pool_costs(_select(metrics, *v), _select(singles, *v)) for v in _views(metrics)}
    md = render_markdown(summary, metrics, config, hyper, alpha, reference, by_cat, singles, unit)
    md += probes_markdown(metrics, singles, config, alpha)
    written = [write_text(run_dir / "report.md", md), write_csv(run_dir / "summary.csv", summary)]
    doc = summary_document(summary, by_cat, config, reference, alpha, unit, costs)
    written.append(write_text(run_dir / "summary.json", json.dumps(doc, indent=1, allow_nan=False) + "\n"))
    title = f"unirouter report: {config.get('dataset_name', run_dir.name)}"
    written.append(write_text(run_dir / "report.html", render_html(md, run_figures(run_dir), title)))
    return written


