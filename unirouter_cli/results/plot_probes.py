"""Figures of probe sweeps: Area against the number of probes per strategy and router."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .style import STYLE_TABLE, _plt, _save


# --------------------------------------------------------------------------------------------
# the profiling-cost curve (probe sweeps)
# --------------------------------------------------------------------------------------------
def plot_probes(metrics: pd.DataFrame, blind: pd.Series, out: Path, title: str, reference: str = "random") -> Path:
    """Area against the number of probes per new LLM, one panel per dynamic router, one line per probe
    strategy (mean, 95% t-band over trials); below, each strategy's paired per-trial difference to
    ``reference`` at the same size (mean, 95% t-band; filled markers = significant by the sign test at
    0.01). The dashed line is the "probes needed" target of report.py (95% of the full-validation gain)."""
    from .stats import ci95, sign_test
    from .sweep import PROBE_TARGET

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
    from .sweep import blind_area

    if metrics.groupby(["n_val", "probe_strategy"]).ngroups < 2:
        return []
    blind = blind_area(singles)
    out = []
    for pool in dict.fromkeys(metrics["pool"]):
        mp = metrics[metrics["pool"] == pool]
        out.append(plot_probes(mp, blind.loc[pool], outdir / f"probes-{pool}.{fmt}",
                               f"{name}: the profiling-cost curve, {pool} pool ({mp['trial'].nunique()} trials)"))
    return out
