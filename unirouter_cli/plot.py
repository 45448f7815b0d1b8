"""Stage 7b - figures from a run directory (matplotlib, Agg backend, files under DIR/plots/).

* ``curves-<pool>.<fmt>``: deferral curves, mean over trials with a 95% band, one line per router,
  the single test LLMs as points, the best single LLM's accuracy as a dashed line;
* ``metrics-<pool>.<fmt>``: Area and QNC per router across trials (box plots with the trials as dots);
* ``paired-<pool>.<fmt>``: per-trial Area and QNC differences to a reference router (what the
  report's paired sign test counts);
* ``valsize-<pool>.<fmt>``: Area against validation-set size with two-sigma bands (sweeps only).
Colours come from the Okabe-Ito colour-blind-safe palette, fixed per router name.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .errors import RunDirError

OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
GRID = np.linspace(0.0, 1.0, 201)


def router_colours(names: list[str]) -> dict[str, str]:
    from .routers import ROUTERS

    known = list(ROUTERS)
    out = {}
    for n in names:
        i = known.index(n) if n in known else len(known) + sorted(names).index(n)
        out[n] = OKABE_ITO[i % len(OKABE_ITO)]
    return out


def mean_curves(curves: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per router: (mean, low, high) of quality on GRID across trials (flat extension at the ends)."""
    out = {}
    for router, g in curves.groupby("router", sort=False):
        ys = np.array([np.interp(GRID, t["cost"].to_numpy(float), t["quality"].to_numpy(float))
                       for _, t in g.groupby("trial", sort=True)])
        m = ys.mean(axis=0)
        h = 1.96 * ys.std(axis=0, ddof=1) / np.sqrt(len(ys)) if len(ys) > 1 else np.zeros_like(m)
        out[str(router)] = (m, m - h, m + h)
    return out


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, out: Path) -> Path:  # noqa: ANN001 - matplotlib objects
    """Write the figure atomically (a killed plot never leaves a truncated image) and close it."""
    from .io import atomic_path

    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=150, format=out.suffix.lstrip("."))
    plt.close(fig)
    return out


def plot_curves(curves: pd.DataFrame, singles: pd.DataFrame, metrics: pd.DataFrame, out: Path, title: str,
                cost_unit: str) -> Path:
    """Left: every router over the whole cost range. Right: a zoom on the non-oracle routers."""
    plt = _plt()
    names = list(dict.fromkeys(curves["router"]))
    colours = router_colours(names)
    kinds = dict(zip(metrics["router"], metrics["kind"], strict=False))
    means = mean_curves(curves)
    s = singles.groupby("model")[["cost", "quality"]].mean()
    best = float(metrics["best_single"].mean())
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.8))
    for ax, zoom in ((axes[0], False), (axes[1], True)):
        shown = [r for r in means if not (zoom and kinds.get(r) == "bound")]
        for router in shown:
            m, lo, hi = means[router]
            ls = "--" if kinds.get(router) == "reference" else ":" if kinds.get(router) == "bound" else "-"
            ax.plot(GRID, m, color=colours[router], lw=2, ls=ls, label=f"{router} ({kinds.get(router, '?')})")
            ax.fill_between(GRID, lo, hi, color=colours[router], alpha=0.18, lw=0)
        ax.scatter(s["cost"], s["quality"], marker="o", s=22, facecolors="none", edgecolors="#555555",
                   label="single test LLMs (mean over trials)")
        ax.axhline(best, color="#555555", ls="--", lw=1, label=f"best single test LLM ({best:.3f})")
        ax.grid(alpha=0.3)
        ax.set_xlabel("cost / largest cost in the pool")
        if zoom:
            top = max(float(means[r][0].max()) for r in shown) if shown else best
            low = min(float(means[r][0][GRID <= 0.5].min()) for r in shown) if shown else 0
            ax.set_xlim(0, 0.5)
            ax.set_ylim(low - 0.02, max(top, best) + 0.02)
            ax.set_title("zoom: cost <= 0.5, without the oracle")
        else:
            ax.set_xlim(0, 1)
            ax.set_ylabel("accuracy on test prompts (mean over trials, 95% band)")
            ax.set_title("all routers")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, frameon=False, bbox_to_anchor=(0.5, 0.0))
    fig.suptitle(f"{title}\ncost unit: {cost_unit}", fontsize=11)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    return _save(plt, fig, out)


def plot_metrics(metrics: pd.DataFrame, out: Path, title: str) -> Path:
    """Box + strip plots of Area and QNC per router; the oracle (a bound far off scale) is left out."""
    plt = _plt()
    if (metrics["kind"] != "bound").any():
        metrics = metrics[metrics["kind"] != "bound"]
        title += " (oracle omitted: see report.md)"
    names = list(dict.fromkeys(metrics["router"]))
    colours = router_colours(names)
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.45 * len(names) + 2.2))
    for ax, metric, label in ((axes[0], "area", "Area (higher is better)"),
                              (axes[1], "qnc", "QNC (lower is better)")):
        data = [metrics.loc[metrics["router"] == n, metric].to_numpy(float) for n in names]
        bp = ax.boxplot(data, orientation="horizontal", patch_artist=True, widths=0.6, showfliers=False)
        ax.set_yticks(range(1, len(names) + 1), names)
        for patch, n in zip(bp["boxes"], names, strict=True):
            patch.set_facecolor(colours[n])
            patch.set_alpha(0.35)
        rng = np.random.default_rng(0)
        for i, (d, n) in enumerate(zip(data, names, strict=True), start=1):
            ax.scatter(d, i + rng.uniform(-0.15, 0.15, len(d)), s=8, color=colours[n], alpha=0.8)
        ax.set_xlabel(label)
        ax.grid(axis="x", alpha=0.3)
        ax.invert_yaxis()
    fig.suptitle(title)
    fig.tight_layout()
    return _save(plt, fig, out)


def plot_paired(metrics: pd.DataFrame, out: Path, title: str, reference: str) -> Path:
    """Per-trial Area and QNC differences to the reference router (what the sign test counts)."""
    plt = _plt()
    ref = metrics[metrics["router"] == reference].set_index("trial")
    others = [n for n in dict.fromkeys(metrics["router"]) if n != reference
              and (metrics.loc[metrics["router"] == n, "kind"] != "bound").all()]
    colours = router_colours(list(dict.fromkeys(metrics["router"])))
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.45 * max(len(others), 1) + 2.4))
    rng = np.random.default_rng(0)
    for ax, metric, label in ((axes[0], "area", f"Area - Area({reference}); right is better"),
                              (axes[1], "qnc", f"QNC - QNC({reference}); left is better")):
        for i, n in enumerate(others, start=1):
            g = metrics[metrics["router"] == n].set_index("trial")
            common = g.index.intersection(ref.index)
            d = (g.loc[common, metric] - ref.loc[common, metric]).to_numpy(float)
            ax.scatter(d, i + rng.uniform(-0.15, 0.15, len(d)), s=9, color=colours[n], alpha=0.8)
            ax.plot([np.median(d)] * 2, [i - 0.3, i + 0.3], color="black", lw=1.5)
        ax.axvline(0, color="#555555", lw=1, ls="--")
        ax.set_yticks(range(1, len(others) + 1), others)
        ax.set_xlabel(label)
        ax.grid(axis="x", alpha=0.3)
        ax.invert_yaxis()
    fig.suptitle(f"{title}\nper-trial differences to {reference} (black bar: median)")
    fig.tight_layout()
    return _save(plt, fig, out)


def plot_valsize(metrics: pd.DataFrame, out: Path, title: str) -> Path:
    plt = _plt()
    names = list(dict.fromkeys(metrics["router"]))
    colours = router_colours(names)
    fig, ax = plt.subplots(figsize=(8, 5))
    for n in names:
        g = metrics[metrics["router"] == n].groupby("val_size")["area"]
        m, sd, cnt = g.mean(), g.std(ddof=1).fillna(0), g.count()
        se = sd / np.sqrt(cnt)
        ax.plot(m.index, m.to_numpy(), marker="o", color=colours[n], label=n)
        ax.fill_between(m.index, (m - 2 * se).to_numpy(), (m + 2 * se).to_numpy(), color=colours[n], alpha=0.2, lw=0)
    ax.set_xlabel("validation prompts per new LLM")
    ax.set_ylabel("Area (mean, two-sigma band)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return _save(plt, fig, out)


def plot_run(run_dir: str | Path, fmt: str = "png", reference: str = "knn") -> list[Path]:
    from .io import read_table
    from .report import read_metrics, read_run_config

    run_dir = Path(run_dir)
    if fmt not in ("png", "svg", "pdf"):
        raise RunDirError(f"--format {fmt!r}: expected png, svg or pdf")
    files = {k: run_dir / f for k, f in (("metrics", "metrics.csv"), ("curves", "curves.parquet"),
                                         ("singles", "singles.parquet"))}
    for f in files.values():
        if not f.exists():
            raise RunDirError(f"{f}: missing; run `unirouter evaluate --run-dir {run_dir}` first")
    hint = f"rerun `unirouter evaluate --run-dir {run_dir}` to rewrite it"
    metrics = read_metrics(run_dir)
    curves = read_table(files["curves"], ("trial", "val_size", "router", "pool", "cost", "quality"),
                        ("trial", "val_size", "cost", "quality"), hint)
    singles = read_table(files["singles"], ("trial", "val_size", "pool", "model", "cost", "quality"),
                         ("trial", "val_size", "cost", "quality"), hint)
    config = read_run_config(run_dir)
    cost_unit = "?"
    try:
        from .data import load_dataset

        cost_unit = str(load_dataset(config.get("dataset_path") or config.get("dataset")).card.get("cost_unit", "?"))
    except Exception:  # noqa: BLE001 - the plot does not need the dataset; the unit is a label
        pass
    outdir = run_dir / "plots"
    if outdir.is_symlink():  # fixed file names would replace files wherever the link points
        raise RunDirError(f"{outdir}: is a symbolic link; unirouter writes plots only inside the run directory")
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    name = config.get("dataset_name", "")
    for pool in dict.fromkeys(metrics["pool"]):
        mp = metrics[metrics["pool"] == pool]
        sweep = sorted(v for v in mp["val_size"].unique() if v >= 0)
        vs = -1 if (mp["val_size"] < 0).any() else (sweep[len(sweep) // 2] if sweep else -1)
        sel = (lambda d, p=pool, v=vs: d[(d["pool"] == p) & (d["val_size"] == v)])  # noqa: E731
        n_trials = sel(mp)["trial"].nunique()
        tag = "" if vs < 0 else f", {vs} validation prompts"
        written.append(plot_curves(sel(curves), sel(singles), sel(mp), outdir / f"curves-{pool}.{fmt}",
                                   f"{name}: deferral curves, {pool} pool ({n_trials} trials{tag})", cost_unit))
        written.append(plot_metrics(sel(mp), outdir / f"metrics-{pool}.{fmt}",
                                    f"{name}: per-trial Area and QNC, {pool} pool{tag}"))
        if reference in set(mp["router"]) and mp["router"].nunique() > 1:
            written.append(plot_paired(sel(mp), outdir / f"paired-{pool}.{fmt}", f"{name}, {pool} pool{tag}",
                                       reference))
        if len(sweep) > 1:
            written.append(plot_valsize(mp[mp["val_size"] >= 0], outdir / f"valsize-{pool}.{fmt}",
                                        f"{name}: Area vs validation size, {pool} pool"))
    return written
