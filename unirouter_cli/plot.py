"""Stage 7b - figures from a run directory (matplotlib, Agg backend, files under DIR/plots/).

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

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import ConfigError, RunDirError

GRID = np.linspace(0.0, 1.0, 201)
#  colour, line style, marker: pairwise distinct colours and (line style, marker) pairs
STYLE_TABLE = [
    ("#000000", ":", "o"),
    ("#D55E00", "--", "s"),
    ("#0072B2", "-", "^"),
    ("#009E73", "-.", "D"),
    ("#E69F00", (0, (3, 1, 1, 1, 1, 1)), "v"),
    ("#CC79A7", "--", "P"),
    ("#882255", ":", "X"),
    ("#666666", "-", "*"),
    ("#332288", "-", "h"),
    ("#999933", "-.", "<"),
    ("#56B4E9", "--", ">"),
    ("#117733", (0, (5, 1)), "p"),
]
MARK_EVERY = 25
FRONTIER_STYLE = {"color": "#9a9a9a", "lw": 4.0, "alpha": 0.7, "solid_capstyle": "butt"}
FIGURE_HELP = {
    "curves": "left: deferral curves minus each trial's best single test LLM, with the single-LLM frontier, "
              "averaged over the same trials; right: per-cost paired difference to the reference "
              "(mean, 95% interval)",
    "metrics": "Area and QNC per trial (box, trials as markers, mean with 95% interval; x = QNC never reached)",
    "paired": "per-trial Area and QNC differences to the reference router, with wins/losses",
    "by-category": "Area difference to the reference per prompt category (mean over trials, wins/losses)",
    "valsize": "Area against the number of validation prompts (two-sigma bands) and its paired difference to the "
               "reference (95% intervals)",
    "probes": "the profiling-cost curve: Area against the probes each new LLM answers, per probe strategy (95% "
              "bands), and the paired difference to random probes at the same count",
}


@dataclass(frozen=True)
class Style:
    colour: str
    linestyle: object
    marker: str
    slot: int

    def line(self) -> dict:
        return {"color": self.colour, "ls": self.linestyle, "marker": self.marker, "lw": 1.8, "ms": 5.5,
                "markevery": ((3 * self.slot) % MARK_EVERY, MARK_EVERY)}


def router_styles(names: list[str]) -> dict[str, Style]:
    """Fixed style per router name: the default routers first, then the registry, then other names."""
    from .routers import DEFAULT_ROUTERS, ROUTERS

    known = list(dict.fromkeys([*DEFAULT_ROUTERS, *ROUTERS]))
    unknown = sorted(n for n in set(names) if n not in known)
    out = {}
    for n in names:
        i = known.index(n) if n in known else len(known) + unknown.index(n)
        c, ls, mk = STYLE_TABLE[i % len(STYLE_TABLE)]
        if i >= len(STYLE_TABLE):  # past the table: shift the line style so the triple stays new
            ls = [s for _, s, _ in STYLE_TABLE][(i + i // len(STYLE_TABLE)) % len(STYLE_TABLE)]
        out[n] = Style(c, ls, mk, i)
    return out


def router_colours(names: list[str]) -> dict[str, str]:
    return {n: s.colour for n, s in router_styles(names).items()}


def figure_help(filename: str) -> str:
    for key in sorted(FIGURE_HELP, key=len, reverse=True):
        if filename.startswith(key + "-"):
            return FIGURE_HELP[key]
    return ""


# ------------------------------------------------------------------------------------------------
# the data drawn (pure functions; tests check them against metrics.csv)
# ------------------------------------------------------------------------------------------------
def grid_curves(curves: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per router: (trials, quality on GRID per trial), flat extension at both ends."""
    out = {}
    for router, g in curves.groupby("router", sort=False):
        trials, ys = [], []
        for t, c in g.groupby("trial", sort=True):
            trials.append(int(t))
            ys.append(np.interp(GRID, c["cost"].to_numpy(float), c["quality"].to_numpy(float)))
        out[str(router)] = (np.array(trials), np.array(ys))
    return out


def mean_curves(curves: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per router: (mean, low, high) of quality on GRID across trials (95% t-interval)."""
    from .report import t_halfwidth

    out = {}
    for router, (_, ys) in grid_curves(curves).items():
        m, h = ys.mean(axis=0), t_halfwidth(ys, axis=0)
        out[router] = (m, m - h, m + h)
    return out


def frontier_curves(singles: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per trial, the single-LLM frontier on GRID: the non-decreasing upper convex hull of the
    single test LLMs' (normalised cost, accuracy) points, i.e. the best random mix of single LLMs
    that knows their test accuracies; flat left of the cheapest LLM and right of the hull's end."""
    from .metrics import upper_hull

    trials, ys = [], []
    for t, s in singles.groupby("trial", sort=True):
        s = s.sort_values(["cost", "quality"], ascending=[True, False]).drop_duplicates("cost")
        hx, hy = upper_hull(s["cost"].to_numpy(float), s["quality"].to_numpy(float))
        trials.append(int(t))
        ys.append(np.interp(GRID, hx, hy))
    return np.array(trials), np.array(ys)


def relative_to_best(trials: np.ndarray, ys: np.ndarray, best: pd.Series) -> np.ndarray:
    """Mean over trials of (curve - that trial's best single test LLM accuracy)."""
    return (ys - best.loc[trials].to_numpy(float)[:, None]).mean(axis=0)


def curve_differences(curves: pd.DataFrame, reference: str) -> dict[str, tuple[np.ndarray, ...]]:
    """Per router: (mean, low, high, n_trials) on GRID of the per-trial difference to the reference's
    curve, over the trials both have (paired; 95% t-interval)."""
    from .report import t_halfwidth

    grids = grid_curves(curves)
    if reference not in grids:
        return {}
    t_ref, y_ref = grids[reference]
    out = {}
    for router, (t, ys) in grids.items():
        if router == reference:
            continue
        common, i, j = np.intersect1d(t, t_ref, return_indices=True)
        if len(common) == 0:
            continue
        d = ys[i] - y_ref[j]
        m, h = d.mean(axis=0), t_halfwidth(d, axis=0)
        out[router] = (m, m - h, m + h, len(common))
    return out


def paired_metric(metrics: pd.DataFrame, router: str, reference: str, metric: str) -> pd.DataFrame:
    """Per common trial: the router's and the reference's value, their difference, and whether
    both reached QNC (a difference involving an unreached QNC is censored)."""
    cols = [metric, "qnc_reached"]
    g = metrics[metrics["router"] == router].set_index("trial")[cols]
    r = metrics[metrics["router"] == reference].set_index("trial")[cols]
    j = g.merge(r, left_index=True, right_index=True, how="inner", suffixes=("", "_ref"))
    return pd.DataFrame({"diff": j[metric] - j[f"{metric}_ref"],
                         "reached": j["qnc_reached"].astype(bool) & j["qnc_reached_ref"].astype(bool)})


def category_differences(by_cat: pd.DataFrame, reference: str, metric: str = "area") -> pd.DataFrame:
    """Per (router, category): mean over trials of metric - reference's metric, wins, losses, trials."""
    ref = by_cat[by_cat["router"] == reference].set_index(["trial", "category"])[metric]
    rows = []
    for (router, category), g in by_cat[by_cat["router"] != reference].groupby(["router", "category"], sort=False):
        r = ref.xs(category, level="category")
        g = g.set_index("trial")[metric]
        common = g.index.intersection(r.index)
        d = (g.loc[common] - r.loc[common]).to_numpy(float)
        rows.append({"router": router, "category": category, "diff": float(d.mean()) if len(d) else np.nan,
                     "wins": int((d > 1e-12).sum()), "losses": int((d < -1e-12).sum()), "n": len(d)})
    return pd.DataFrame(rows, columns=["router", "category", "diff", "wins", "losses", "n"])


# ------------------------------------------------------------------------------------------------
# figures (each returns a matplotlib Figure; plot_* save it)
# ------------------------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, out: Path) -> Path:  # noqa: ANN001 - matplotlib objects
    """Write the figure atomically (a killed plot never leaves a truncated image) and close it."""
    from .io import atomic_path

    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=150, format=out.suffix.lstrip("."), bbox_inches="tight", pad_inches=0.15)
    plt.close(fig)
    return out


def _label(router: str, kinds: dict[str, str]) -> str:
    k = kinds.get(router, "dynamic")
    return router if k == "dynamic" else f"{router} ({k})"


def _caption(fig, text: str) -> None:  # noqa: ANN001
    import textwrap

    width = int(fig.get_figwidth() * 15)  # characters of 8-point text per line
    fig.text(0.01, 0.005, "\n".join(textwrap.wrap(text, width)), ha="left", va="bottom", fontsize=8, color="#222222")


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
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), frameon=False,
               bbox_to_anchor=(0.5, 0.06))
    fig.suptitle(title, fontsize=11)
    omitted = "" if panels == 3 or not bounds else f" {', '.join(bounds)} (a bound) omitted: plot --oracle adds it."
    _caption(fig, f"Each trial's curve is interpolated on {len(GRID)} normalised costs (cost / that trial's mean "
                  f"largest pool cost) and every line averages the same {n_trials} trials. Left: minus that trial's "
                  f"best single test LLM (mean accuracy {best.mean():.3f}); 0 = the best single LLM; the grey "
                  "frontier is the best random mix of the trial's single test LLMs, averaged the same way. Right: "
                  f"per-trial difference to {reference} at each cost, mean and 95% t-interval over trials "
                  f"(above 0 = better than {reference}).{omitted}")
    fig.tight_layout(rect=(0, 0.06 + 0.035 * ((len(labels) + 3) // 4), 1, 0.96))
    return fig


def figure_metrics(metrics: pd.DataFrame, title: str, include_oracle: bool = False):  # noqa: ANN201
    """Box + markers of Area and QNC per router; a QNC never reached is a cross at 100%."""
    import matplotlib.patheffects as pe

    from .report import ci95

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
    for ax, metric, label, scale in ((axes[0], "area", "Area (higher is better)", 1.0),
                                     (axes[1], "qnc", "QNC, % of the largest pool cost (lower is better)", 100.0)):
        data = [scale * metrics.loc[metrics["router"] == n, metric].to_numpy(float) for n in names]
        bp = ax.boxplot(data, orientation="horizontal", patch_artist=True, widths=0.6, showfliers=False,
                        medianprops=median)
        ax.set_yticks(range(1, len(names) + 1), names)
        for patch, n in zip(bp["boxes"], names, strict=True):
            patch.set_facecolor(styles[n].colour)
            patch.set_alpha(0.3)
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
        ax.invert_yaxis()
    fig.suptitle(title, fontsize=11)
    _caption(fig, "Box: quartiles over trials, black line: median; markers: trials; black diamond below each box: "
                  "mean with its 95% t-interval (QNC's clipped to [0, 100%]).")
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


def figure_paired(metrics: pd.DataFrame, title: str, reference: str):  # noqa: ANN201
    """Per-trial Area and QNC differences to the reference router (what the sign test counts)."""
    from .report import ci95

    plt = _plt()
    names = list(dict.fromkeys(metrics["router"]))
    kinds = dict(zip(metrics["router"], metrics["kind"], strict=False))
    others = [n for n in names if n != reference and kinds.get(n) != "bound"]
    styles = router_styles(names)
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.5 * max(len(others), 1) + 2.6))
    rng = np.random.default_rng(0)
    for ax, metric, label, sign in ((axes[0], "area", f"Area - Area({reference}); right is better", 1),
                                    (axes[1], "qnc", f"QNC - QNC({reference}); left is better", -1)):
        for i, n in enumerate(others, start=1):
            p = paired_metric(metrics, n, reference, metric)
            d, ok = p["diff"].to_numpy(float), p["reached"].to_numpy(bool)
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
    from .report import t_halfwidth

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
    from .report import default_reference, read_metrics, read_optional, read_run_config

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


# --------------------------------------------------------------------------------------------
# the profiling-cost curve (probe sweeps)
# --------------------------------------------------------------------------------------------
def plot_probes(metrics: pd.DataFrame, blind: pd.Series, out: Path, title: str, reference: str = "random") -> Path:
    """Area against the number of probes per new LLM, one panel per dynamic router, one line per probe
    strategy (mean, 95% t-band over trials); below, each strategy's paired per-trial difference to
    ``reference`` at the same size (mean, 95% t-band; filled markers = significant by the sign test at
    0.01). The dashed line is the "probes needed" target of report.py (95% of the full-validation gain)."""
    from .report import PROBE_TARGET, ci95, sign_test

    plt = _plt()
    m = metrics[metrics["kind"] == "dynamic"]
    routers = list(dict.fromkeys(m["router"]))
    strategies = list(dict.fromkeys(m["probe_strategy"]))
    styles = {s: STYLE_TABLE[i % len(STYLE_TABLE)] for i, s in enumerate(strategies)}  # (colour, line, marker)
    colours = {s: c for s, (c, _, _) in styles.items()}
    fig, axes = plt.subplots(2, len(routers), figsize=(3.6 * len(routers) + 1, 6.8), sharex=True, squeeze=False,
                             gridspec_kw={"height_ratios": [3, 2]})
    for j, router in enumerate(routers):
        A = m[m["router"] == router].pivot_table(index="trial", columns=["probe_strategy", "n_val"],
                                                 values="area")
        top, bottom = axes[0, j], axes[1, j]
        for s in strategies:
            if s not in A.columns.get_level_values(0):
                continue
            S = A[s]
            sizes = np.array(sorted(S.columns))
            stats = np.array([ci95(S[n].dropna().to_numpy(float)) for n in sizes])
            top.plot(sizes, stats[:, 0], marker=styles[s][2], ls=styles[s][1], ms=4, color=colours[s], label=s)
            top.fill_between(sizes, stats[:, 1], stats[:, 2], color=colours[s], alpha=0.18, lw=0)
            if s == reference or reference not in A.columns.get_level_values(0):
                continue
            R = A[reference]
            both = [n for n in sizes if n in R.columns]
            if not both:
                continue
            st = np.array([ci95((S[n] - R[n]).dropna().to_numpy(float)) for n in both])
            bottom.plot(both, st[:, 0], marker=styles[s][2], ls=styles[s][1], ms=5, mfc="white", color=colours[s],
                        label=s)
            bottom.fill_between(both, st[:, 1], st[:, 2], color=colours[s], alpha=0.18, lw=0)
            sig = [sign_test(S[n].to_numpy(float), R[n].to_numpy(float), True)[2] < 0.01 for n in both]
            bottom.scatter(np.array(both)[sig], st[sig, 0], s=30, marker=styles[s][2], color=colours[s], zorder=3)
        if reference in A.columns.get_level_values(0):
            full = A[(reference, max(A[reference].columns))]
            floor = blind.reindex(full.index).to_numpy(float)
            target = float(np.nanmean(floor + PROBE_TARGET * (full.to_numpy(float) - floor)))
            top.axhline(target, color="#555555", ls="--", lw=1,
                        label=f"{PROBE_TARGET:.0%} of the full-validation gain")
        bottom.axhline(0, color="#555555", lw=1)
        top.set_title(router, fontsize=10)
        top.grid(alpha=0.3)
        bottom.grid(alpha=0.3)
        bottom.set_xscale("log", base=2)
        bottom.set_xlabel("probes answered per new LLM")
        ticks = sorted(m["n_val"].unique())
        bottom.set_xticks(ticks, [str(t) for t in ticks])
        if j == 0:
            top.set_ylabel("Area (mean, 95% band)")
            bottom.set_ylabel(f"Area - Area({reference}),\nsame trial and size")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False, bbox_to_anchor=(0.5, 0.0))
    fig.suptitle(f"{title}\nbelow, filled markers: significant difference to {reference} (sign test, alpha = 0.01)",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return _save(plt, fig, out)


def plot_probe_sweeps(outdir: Path, metrics: pd.DataFrame, singles: pd.DataFrame, fmt: str, name: str) -> list[Path]:
    """``probes-<pool>.<fmt>`` for each pool of a run with several probe counts or strategies."""
    from .report import blind_area

    if metrics.groupby(["n_val", "probe_strategy"]).ngroups < 2:
        return []
    blind = blind_area(singles)
    out = []
    for pool in dict.fromkeys(metrics["pool"]):
        mp = metrics[metrics["pool"] == pool]
        out.append(plot_probes(mp, blind.loc[pool], outdir / f"probes-{pool}.{fmt}",
                               f"{name}: the profiling-cost curve, {pool} pool ({mp['trial'].nunique()} trials)"))
    return out
