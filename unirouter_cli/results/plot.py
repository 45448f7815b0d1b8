"""figures from a run directory (matplotlib, Agg backend, files under DIR/plots/).

Every figure compares like with like: each trial's curves are interpolated on one grid of
normalised costs (cost / that trial's mean largest pool cost, ``GRID``) and every aggregate is over
the same trials. Per pool:

* ``curves-<pool>``: left, each router's deferral curve minus the trial's best single test LLM's
  accuracy, and the single-LLM frontier (the best random mix of the trial's single test LLMs) on
  the same footing, averaged over trials; right, the main comparison: the per-trial difference
  to the reference router at each cost, mean and 95% t-interval. The oracle (a bound) only with
  ``include_oracle``, in its own panel;
* ``metrics-<pool>``: Area and QNC per trial (box, trials as markers, mean with a 95% interval);
  a QNC that was never reached is drawn as a cross at 100%;
* ``paired-<pool>``: per-trial Area and QNC differences to the reference (what the report's sign
  test counts), with wins/losses;
* ``by-category-<pool>``: Area difference to the reference per prompt category (heatmap);
* ``valsize-<pool>``: Area against validation-set size with two-sigma bands, and the paired
  difference to the reference per size (sweeps only);
* ``probes-<pool>``: the profiling-cost curve: Area against the probes each new LLM answers, one
  line per probe strategy, and the paired difference to ``random`` at the same count (probe sweeps).

Styles (``router_styles``) are fixed per router name: a colour (Okabe-Ito and Tol colours, no pale
yellow), a line style and a marker, so up to twelve routers stay distinct in colour and in
grayscale. Figures are written atomically (``_save``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ConfigError, RunDirError
from .curves import (
    GRID,
    category_differences,
    curve_differences,
    frontier_curves,
    grid_curves,
    paired_metric,
    relative_to_best,
)
from .plot_probes import plot_probe_sweeps
from .style import FRONTIER_STYLE, _caption, _label, _plt, _save, router_styles


def _fit_ylim(ax, ys: list[np.ndarray], skip: float = 0.1) -> str:  # noqa: ANN001 - a matplotlib Axes
    """Scale the y axis to the curves past the cheapest ``skip`` of the cost axis, where every router still
    sends most prompts to the cheapest LLMs and the curves start far below the rest of the figure; returns a
    caption sentence when something is cut."""
    keep = GRID >= skip
    lo = min(float(np.nanmin(y[keep])) for y in ys)
    hi = max(max(float(np.nanmax(y)) for y in ys), 0.0)
    full_lo = min(float(np.nanmin(y)) for y in ys)
    pad = 0.06 * max(hi - lo, 1e-3)
    ax.set_ylim(lo - pad, hi + pad)
    if full_lo < lo - pad:
        return (f" Left: the y axis starts at {lo - pad:.3f} (the curves below it, at costs under {skip:g}, run "
                f"down to {full_lo:.3f}).")
    return ""


def figure_curves(curves: pd.DataFrame, singles: pd.DataFrame, metrics: pd.DataFrame, title: str, reference: str,
                  include_oracle: bool = False):  # noqa: ANN201 - a matplotlib Figure
    plt = _plt()
    kinds = dict(zip(metrics["router"], metrics["kind"], strict=False))
    names = list(dict.fromkeys(curves["router"]))
    styles = router_styles(names)
    bounds = [r for r in names if kinds.get(r) == "bound"]
    shown = [r for r in names if r not in bounds]
    best = metrics.groupby("trial")["best_single"].first()
    grids = grid_curves(curves)
    ft, fy = frontier_curves(singles)
    n_trials = len(best)
    panels = 3 if include_oracle and bounds else 2
    fig, axes = plt.subplots(1, panels, figsize=(6.4 * panels, 6.4), squeeze=False)
    axes = axes[0]
    ax = axes[0]
    ax.plot(GRID, relative_to_best(ft, fy, best), label="single-LLM frontier (best mix of single test LLMs)",
            gid="frontier", **FRONTIER_STYLE)
    for r in shown:
        t, ys = grids[r]
        ax.plot(GRID, relative_to_best(t, ys, best), label=_label(r, kinds), gid=r, **styles[r].line())
    ax.axhline(0, color="#444444", lw=1, ls=(0, (1, 1)))
    ax.set_ylabel("accuracy - best single test LLM's accuracy (same trial)")
    ax.set_title(f"deferral curves (mean over {n_trials} trials)")
    cut = _fit_ylim(ax, [relative_to_best(*grids[r], best) for r in shown] + [relative_to_best(ft, fy, best)])
    ax = axes[1]
    diffs = curve_differences(curves, reference)
    for r in shown:
        if r not in diffs:
            continue
        m, lo, hi, _ = diffs[r]
        ax.plot(GRID, m, label=_label(r, kinds), gid=r, **styles[r].line())
        ax.fill_between(GRID, lo, hi, color=styles[r].colour, alpha=0.12, lw=0)
    ax.axhline(0, color=styles[reference].colour if reference in styles else "#444444", lw=1.5,
               ls=styles[reference].linestyle if reference in styles else "-")
    ax.set_ylabel(f"accuracy - accuracy of {reference} (same trial and cost)")
    ax.set_title(f"paired difference to {reference}: mean, 95% interval")
    if panels == 3:
        ax = axes[2]
        ax.plot(GRID, relative_to_best(ft, fy, best), gid="frontier", **FRONTIER_STYLE)
        for r in bounds:
            t, ys = grids[r]
            ax.plot(GRID, relative_to_best(t, ys, best), label=_label(r, kinds), gid=r, **styles[r].line())
        ax.axhline(0, color="#444444", lw=1, ls=(0, (1, 1)))
        ax.set_title("bound (own scale): " + ", ".join(bounds))
        ax.set_ylabel("accuracy - best single test LLM's accuracy (same trial)")
    for ax in axes:
        ax.set_xlim(0, 1)
        ax.set_xlabel("cost / largest pool cost (per trial)")
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    if panels == 3:
        h3, l3 = axes[2].get_legend_handles_labels()
        handles, labels = handles + h3, labels + l3
    fig.suptitle(title, fontsize=11)
    omitted = "" if panels == 3 or not bounds else f" {', '.join(bounds)} (a bound) omitted: plot --oracle adds it."
    cap = _caption(fig, f"Each trial's curve is interpolated on {len(GRID)} normalised costs (cost / that trial's mean "
                  f"largest pool cost) and every line averages the same {n_trials} trials. Left: minus that trial's "
                  f"best single test LLM (mean accuracy {best.mean():.3f}); 0 = the best single LLM; the grey "
                  "frontier is the best random mix of the trial's single test LLMs, averaged the same way. Right: "
                  f"per-trial difference to {reference} at each cost, mean and 95% t-interval over trials "
                  f"(above 0 = better than {reference}).{omitted}{cut}")
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), frameon=False,
               bbox_to_anchor=(0.5, cap + 0.005))  # above the caption, however many lines it wraps to
    rows = (len(labels) + 3) // 4
    fig.tight_layout(rect=(0, cap + 0.015 + 0.04 * rows, 1, 0.96))
    return fig


STRIP_BELOW = 10  # trials: below this, metric figures show the trials and means only (no quartile boxes)


def figure_metrics(metrics: pd.DataFrame, title: str, include_oracle: bool = False):  # noqa: ANN201
    """Box + markers of Area and QNC per router; a QNC never reached is a cross at 100%."""
    import matplotlib.patheffects as pe

    from .stats import ci95

    plt = _plt()
    if not include_oracle and (metrics["kind"] != "bound").any():
        omitted = sorted(set(metrics.loc[metrics["kind"] == "bound", "router"]))
        metrics = metrics[metrics["kind"] != "bound"]
        if omitted:
            title += f" ({', '.join(omitted)} omitted: see report.md)"
    names = list(dict.fromkeys(metrics["router"]))
    styles = router_styles(names)
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.5 * len(names) + 2.6))
    median = {"color": "black", "lw": 2.4, "path_effects": [pe.Stroke(linewidth=4.2, foreground="white"), pe.Normal()]}
    rng = np.random.default_rng(0)
    strip = metrics["trial"].nunique() < STRIP_BELOW
    for ax, metric, label, scale in ((axes[0], "area", "Area (higher is better)", 1.0),
                                     (axes[1], "qnc", "QNC, % of the largest pool cost (lower is better)", 100.0)):
        data = [scale * metrics.loc[metrics["router"] == n, metric].to_numpy(float) for n in names]
        if strip:  # too few trials for quartiles to mean anything: the trials themselves, and the mean
            ax.set_ylim(len(names) + 0.7, 0.3)
        else:
            bp = ax.boxplot(data, orientation="horizontal", patch_artist=True, widths=0.6, showfliers=False,
                            medianprops=median)
            for patch, n in zip(bp["boxes"], names, strict=True):
                patch.set_facecolor(styles[n].colour)
                patch.set_alpha(0.3)
        ax.set_yticks(range(1, len(names) + 1), names)
        for i, (d, n) in enumerate(zip(data, names, strict=True), start=1):
            jitter = i + rng.uniform(-0.17, 0.17, len(d))
            reached = (metrics.loc[metrics["router"] == n, "qnc_reached"].to_numpy(bool) if metric == "qnc"
                       else np.ones(len(d), bool))
            ax.scatter(d[reached], jitter[reached], s=14, marker=styles[n].marker, color=styles[n].colour,
                       alpha=0.8, lw=0, gid=f"{n}:trials")
            if (~reached).any():
                first = not ax.get_legend_handles_labels()[0]
                ax.scatter(d[~reached], jitter[~reached], s=30, marker="x", color="#B00000", lw=1.2,
                           gid=f"{n}:not-reached", label="QNC never reached (drawn at 100%)" if first else None)
            m, lo, hi = ci95(d / scale)
            if metric == "qnc":
                lo, hi = max(lo, 0.0), min(hi, 1.0)
            ax.errorbar([scale * m], [i + 0.36], xerr=[[scale * (m - lo)], [scale * (hi - m)]], fmt="D",
                        color="black", ms=4, capsize=3, lw=1.2, gid=f"{n}:mean")
        if metric == "qnc":
            ax.set_xlim(-2, 104)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
        ax.set_xlabel(label)
        ax.grid(axis="x", alpha=0.3)
        if not strip:
            ax.invert_yaxis()
    fig.suptitle(title, fontsize=11)
    _caption(fig, (f"Markers: each of the {metrics['trial'].nunique()} trials (fewer than {STRIP_BELOW}: no "
                   "quartile boxes); " if strip else "Box: quartiles over trials, black line: median; markers: "
                   "trials; ") + "black diamond below the markers: mean with its 95% t-interval (QNC's clipped "
                  "to [0, 100%]).")
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


def figure_paired(metrics: pd.DataFrame, title: str, reference: str):  # noqa: ANN201
    """Per-trial Area and QNC differences to the reference router (what the sign test counts)."""
    from .stats import ci95

    plt = _plt()
    names = list(dict.fromkeys(metrics["router"]))
    kinds = dict(zip(metrics["router"], metrics["kind"], strict=False))
    others = [n for n in names if n != reference and kinds.get(n) != "bound"]
    styles = router_styles(names)
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.5 * max(len(others), 1) + 2.6))
    rng = np.random.default_rng(0)
    for ax, metric, label, sign in ((axes[0], "area", f"Area - Area({reference}); right is better", 1),
                                    (axes[1], "qnc", f"QNC - QNC({reference}), percentage points of the largest "
                                                     "pool cost; left is better", -1)):
        for i, n in enumerate(others, start=1):
            p = paired_metric(metrics, n, reference, metric)
            d, ok = p["diff"].to_numpy(float) * (100.0 if metric == "qnc" else 1.0), p["reached"].to_numpy(bool)
            if metric != "qnc":
                ok = np.ones(len(d), bool)
            y = i + rng.uniform(-0.17, 0.17, len(d))
            ax.scatter(d[ok], y[ok], s=14, marker=styles[n].marker, color=styles[n].colour, alpha=0.85, lw=0,
                       gid=f"{n}:trials")
            if (~ok).any():
                ax.scatter(d[~ok], y[~ok], s=30, marker="x", color="#B00000", lw=1.2, gid=f"{n}:censored",
                           label="either QNC never reached" if not ax.get_legend_handles_labels()[0] else None)
            m, lo, hi = ci95(d)
            ax.errorbar([m], [i + 0.36], xerr=[[m - lo], [hi - m]], fmt="D", color="black", ms=4, capsize=3,
                        lw=1.2, gid=f"{n}:mean")
            wins, losses = int((sign * d > 1e-12).sum()), int((sign * d < -1e-12).sum())
            ax.annotate(f"{wins}W/{losses}L", (1.0, i), xycoords=("axes fraction", "data"), xytext=(4, 0),
                        textcoords="offset points", va="center", fontsize=8, annotation_clip=False)
        ax.axvline(0, color="#444444", lw=1, ls="--")
        ax.set_yticks(range(1, len(others) + 1), others)
        ax.set_xlabel(label)
        ax.grid(axis="x", alpha=0.3)
        ax.invert_yaxis()
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    fig.suptitle(f"{title}\nper-trial differences to {reference}", fontsize=11)
    _caption(fig, "Markers: trials; black diamond: mean difference with its 95% t-interval; W/L: trials better/"
                  f"worse than {reference} (ties dropped), what the report's sign test counts.")
    fig.tight_layout(rect=(0, 0.05, 0.97, 1))
    return fig


def figure_by_category(by_cat: pd.DataFrame, title: str, reference: str):  # noqa: ANN201
    """Heatmap: mean Area difference to the reference per router (rows) and prompt category (columns)."""
    plt = _plt()
    kinds = dict(zip(by_cat["router"], by_cat["kind"], strict=False))
    table = category_differences(by_cat[by_cat["kind"] != "bound"], reference)
    routers = [r for r in dict.fromkeys(by_cat["router"]) if r in set(table["router"])]
    cats = list(dict.fromkeys(by_cat["category"]))
    grid = table.pivot(index="router", columns="category", values="diff").reindex(index=routers, columns=cats)
    vmax = float(np.nanmax(np.abs(grid.to_numpy()))) if grid.size else 0.0
    vmax = vmax if vmax > 0 else 0.01
    fig, ax = plt.subplots(figsize=(max(7.5, 1.05 * len(cats) + 4), 0.55 * len(routers) + 3.2))
    im = ax.imshow(grid.to_numpy(float), cmap="RdBu", vmin=-vmax, vmax=vmax, aspect="auto")
    ref = by_cat[by_cat["router"] == reference].groupby("category")
    ref_area, n_test = ref["area"].mean(), ref["n_test"].median()
    many = len(cats) > 6
    ax.set_xticks(range(len(cats)), cats, fontsize=8.5, rotation=30 if many else 0, ha="right" if many else "center")
    top = ax.secondary_xaxis("top")
    top.set_xticks(range(len(cats)), [f"{ref_area[c]:.3f}\nn={int(n_test[c])}" for c in cats], fontsize=7.5)
    top.set_xlabel(f"{reference}'s Area; test prompts per trial", fontsize=8)
    ax.set_yticks(range(len(routers)), [_label(r, kinds) for r in routers])
    cells = table.set_index(["router", "category"])
    for i, r in enumerate(routers):
        for j, c in enumerate(cats):
            if (r, c) not in cells.index:
                continue
            x = cells.loc[(r, c)]
            colour = "white" if abs(x["diff"]) > 0.6 * vmax else "black"
            ax.text(j, i, f"{x['diff']:+.3f}\n{int(x['wins'])}W/{int(x['losses'])}L", ha="center", va="center",
                    fontsize=7.5, color=colour)
    fig.colorbar(im, ax=ax, label=f"Area - Area({reference})", shrink=0.85)
    fig.suptitle(f"{title}\nArea difference to {reference} per prompt category (blue: better)", fontsize=10)
    _caption(fig, f"Cells: mean over trials of the router's Area minus {reference}'s on that category's test "
                  f"prompts, and trials won/lost against {reference}. Above each column: {reference}'s Area and "
                  "the test prompts per trial in the category. Bounds (oracle) omitted.")
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return fig


def figure_valsize(metrics: pd.DataFrame, title: str, reference: str):  # noqa: ANN201
    """Per probe strategy: left, Area against validation size (mean, two-sigma band, as in the paper);
    right, the per-trial Area difference to the reference at each size (mean, 95% t-interval)."""
    from .stats import t_halfwidth

    plt = _plt()
    names = list(dict.fromkeys(metrics["router"]))
    kinds = dict(zip(metrics["router"], metrics["kind"], strict=False))
    styles = router_styles(names)
    strategies = list(dict.fromkeys(metrics["probe_strategy"]))
    fig, axes = plt.subplots(len(strategies), 2, figsize=(13, 4.8 * len(strategies)), squeeze=False)
    for (left, right), s in zip(axes, strategies, strict=True):
        ms = metrics[metrics["probe_strategy"] == s]
        ref = ms[ms["router"] == reference].set_index(["val_size", "trial"])["area"]
        for n in names:
            st = styles[n]
            line = {"color": st.colour, "ls": st.linestyle, "marker": st.marker, "label": _label(n, kinds), "gid": n}
            g = ms[ms["router"] == n].groupby("val_size")["area"]
            m, se = g.mean(), g.std(ddof=1).fillna(0) / np.sqrt(g.count())
            left.plot(m.index, m.to_numpy(), **line)
            left.fill_between(m.index, (m - 2 * se).to_numpy(), (m + 2 * se).to_numpy(), color=st.colour,
                              alpha=0.12, lw=0)
            if n == reference or kinds.get(n) == "bound":
                continue
            d = (ms[ms["router"] == n].set_index(["val_size", "trial"])["area"] - ref).dropna()
            sizes = sorted(d.index.get_level_values(0).unique())
            dm = np.array([d.loc[v].mean() for v in sizes])
            dh = np.array([t_halfwidth(d.loc[v].to_numpy()) for v in sizes])
            right.plot(sizes, dm, **line)
            right.fill_between(sizes, dm - dh, dm + dh, color=st.colour, alpha=0.12, lw=0)
        right.axhline(0, color=styles[reference].colour if reference in styles else "#444444", lw=1.5,
                      ls=styles[reference].linestyle if reference in styles else "-")
        tag = f" (probe strategy {s})" if len(strategies) > 1 else ""
        left.set_title("Area: mean, two-sigma band" + tag, fontsize=10)
        right.set_title(f"paired difference to {reference}: mean, 95% interval" + tag, fontsize=10)
        left.set_ylabel("Area")
        right.set_ylabel(f"Area - Area({reference}) (same trial)")
        for ax in (left, right):
            ax.set_xlabel("validation prompts per new LLM")
            ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.0, 0.92), frameon=False)
    fig.suptitle(title, fontsize=11)
    _caption(fig, "Left: mean Area over trials at each validation size with a two-sigma band (between-trial spread, "
                  "as in the paper's figure). Right: per-trial Area difference to the reference at each size, mean and "
                  f"95% t-interval: above 0 = better than {reference}.")
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


def plot_curves(curves: pd.DataFrame, singles: pd.DataFrame, metrics: pd.DataFrame, out: Path, title: str,
                reference: str, include_oracle: bool = False) -> Path:
    return _save(_plt(), figure_curves(curves, singles, metrics, title, reference, include_oracle), out)


def plot_metrics(metrics: pd.DataFrame, out: Path, title: str, include_oracle: bool = False) -> Path:
    return _save(_plt(), figure_metrics(metrics, title, include_oracle), out)


def plot_paired(metrics: pd.DataFrame, out: Path, title: str, reference: str) -> Path:
    return _save(_plt(), figure_paired(metrics, title, reference), out)


def plot_by_category(by_cat: pd.DataFrame, out: Path, title: str, reference: str) -> Path:
    return _save(_plt(), figure_by_category(by_cat, title, reference), out)


def plot_valsize(metrics: pd.DataFrame, out: Path, title: str, reference: str) -> Path:
    return _save(_plt(), figure_valsize(metrics, title, reference), out)


# ------------------------------------------------------------------------------------------------
def plot_run(run_dir: str | Path, fmt: str = "png", reference: str | None = None,
             include_oracle: bool = False) -> list[Path]:
    """Draw every figure of an evaluated run into DIR/plots/; returns the files written."""
    from .runfiles import default_reference, read_metrics, read_optional, read_run_config

    run_dir = Path(run_dir)
    if fmt not in ("png", "svg", "pdf"):
        raise ConfigError(f"--format {fmt!r}: expected png, svg or pdf")
    metrics = read_metrics(run_dir)
    tables = {}
    for key in ("curves", "singles"):
        f = run_dir / f"{key}.parquet"
        if not f.exists():
            raise RunDirError(f"{f}: missing; run `unirouter evaluate --run-dir {run_dir}` first")
        tables[key] = read_optional(f)
        if tables[key] is None:
            raise RunDirError(f"{f}: no rows; rerun `unirouter evaluate --run-dir {run_dir}`")
    by_cat = read_optional(run_dir / "by_category.csv")
    config = read_run_config(run_dir)
    routers = list(dict.fromkeys(metrics["router"]))
    if reference is not None and reference not in routers:
        raise ConfigError(f"reference router {reference!r} is not in this run (routers: {', '.join(routers)})")
    reference = reference or default_reference(metrics)
    default_strategy = (config.get("split") or {}).get("probe_strategy")
    outdir = run_dir / "plots"
    if outdir.is_symlink():  # fixed file names would replace files wherever the link points
        raise RunDirError(f"{outdir}: is a symbolic link; unirouter writes plots only inside the run directory")
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    name = config.get("dataset_name", "")
    for pool in dict.fromkeys(metrics["pool"]):
        mp = metrics[metrics["pool"] == pool]
        sweep = sorted(int(v) for v in mp["val_size"].unique() if v >= 0)
        vs = -1 if (mp["val_size"] < 0).any() else (sweep[len(sweep) // 2] if sweep else -1)
        strategies = list(dict.fromkeys(mp["probe_strategy"]))
        strategy = default_strategy if default_strategy in strategies else strategies[0]

        def sel(d: pd.DataFrame, p: str = pool, v: int = vs, s: str = strategy) -> pd.DataFrame:
            return d[(d["pool"] == p) & (d["val_size"] == v) & (d["probe_strategy"] == s)]

        n_trials = sel(mp)["trial"].nunique()
        tag = ("" if vs < 0 else f", {vs} validation prompts") + ("" if len(strategies) == 1 else f", {strategy}")
        written.append(plot_curves(sel(tables["curves"]), sel(tables["singles"]), sel(mp),
                                   outdir / f"curves-{pool}.{fmt}",
                                   f"{name}: {pool} pool ({n_trials} trials{tag})", reference, include_oracle))
        written.append(plot_metrics(sel(mp), outdir / f"metrics-{pool}.{fmt}",
                                    f"{name}: per-trial Area and QNC, {pool} pool{tag}", include_oracle))
        if len(routers) > 1:
            written.append(plot_paired(sel(mp), outdir / f"paired-{pool}.{fmt}", f"{name}, {pool} pool{tag}",
                                       reference))
        cat = sel(by_cat) if by_cat is not None else None
        if cat is not None and len(cat) and reference in set(cat["router"]) and \
                set(cat.loc[cat["kind"] != "bound", "router"]) - {reference}:
            written.append(plot_by_category(cat, outdir / f"by-category-{pool}.{fmt}",
                                            f"{name}, {pool} pool{tag}", reference))
        if len(sweep) > 1:
            written.append(plot_valsize(mp[mp["val_size"] >= 0], outdir / f"valsize-{pool}.{fmt}",
                                        f"{name}: Area vs validation size, {pool} pool", reference))
    return written + plot_probe_sweeps(outdir, metrics, tables["singles"], fmt, name)


