"""The profiling-cost section of a report: Area against the number of probes per strategy."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .stats import sign_test

# --------------------------------------------------------------------------------------------
# the profiling-cost curve: Area against the number of probes per strategy (probe sweeps)
# --------------------------------------------------------------------------------------------
PROBE_TARGET = 0.95  # share of the full-validation Area gain that "probes needed" asks for


def blind_area(singles: pd.DataFrame) -> pd.Series:
    """Per (pool, trial): the Area of a router that knows nothing about the pool's LLMs (no probe
    answered: every estimate equal, ties to the cheaper LLM) = the accuracy of the pool's cheapest LLM
    on the test prompts (the curve is that single point, flat over the cost axis)."""
    first = singles.sort_values(["pool", "trial", "cost", "model"], kind="stable")
    return first.groupby(["pool", "trial"], sort=False)["quality"].first()


def probes_needed(sizes: np.ndarray, gains: np.ndarray, target: float) -> float:
    """The smallest number of probes at which the mean gain reaches ``target``, interpolated linearly
    in log(probes) between swept sizes; 0 if the smallest size already reaches it (reported as
    "<= smallest"), inf if the largest does not."""
    order = np.argsort(sizes)
    sizes, gains = np.asarray(sizes, float)[order], np.asarray(gains, float)[order]
    hit = np.flatnonzero(gains >= target)
    if not len(hit):
        return float("inf")
    i = int(hit[0])
    if i == 0:
        return 0.0
    lo, hi = np.log(sizes[i - 1]), np.log(sizes[i])
    frac = (target - gains[i - 1]) / (gains[i] - gains[i - 1])
    return float(np.exp(lo + frac * (hi - lo)))


def probe_sweep_table(metrics: pd.DataFrame, blind: pd.Series, reference: str = "random", alpha: float = 0.01,
                      n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per pool, dynamic router and probe strategy: mean Area at each size, the paired sign test
    against ``reference`` at equal size and at twice the size (when swept), and the probes needed to
    reach PROBE_TARGET of the full-validation gain, with a 95% bootstrap interval over trials.

    The full-validation gain of a router is its mean Area with ``reference`` probes at the largest
    swept size minus the blind Area (``blind_area``); a strategy's gain at n probes is its mean Area
    at n minus the blind Area, on the same trials."""
    m = metrics[metrics["kind"] == "dynamic"]
    rows = []
    rng = np.random.default_rng(seed)
    for (pool, router), g in m.groupby(["pool", "router"], sort=False):
        A = g.pivot_table(index="trial", columns=["probe_strategy", "n_val"], values="area")
        if reference not in A.columns.get_level_values(0):
            continue
        A = A.dropna()
        sizes = np.array(sorted(A[reference].columns))
        floor = blind.loc[pool].reindex(A.index).to_numpy(float)
        full = A[(reference, sizes[-1])].to_numpy(float)
        boot = rng.integers(0, len(A), size=(n_boot, len(A)))
        for strategy in dict.fromkeys(A.columns.get_level_values(0)):
            S = A[strategy]
            ss = np.array([n for n in sizes if n in S.columns])
            G = S[ss].to_numpy(float) - floor[:, None]
            G_full = full - floor
            need = probes_needed(ss, G.mean(axis=0), PROBE_TARGET * G_full.mean())
            bs = [probes_needed(ss, G[b].mean(axis=0), PROBE_TARGET * G_full[b].mean()) for b in boot]
            lo, hi = np.quantile(bs, [0.025, 0.975], method="inverted_cdf")
            for n in ss:
                a = S[n].to_numpy(float)
                row = {"pool": pool, "router": router, "probe_strategy": strategy, "probes": int(n),
                       "area": float(a.mean()), "gain_share": float((a - floor).mean() / G_full.mean()),
                       "needed": need, "needed_low": float(lo), "needed_high": float(hi),
                       "n_trials": int(len(a))}
                for tag, k in (("same", n), ("double", 2 * n)):
                    if strategy != reference and k in A[reference].columns:
                        r = A[(reference, k)].to_numpy(float)
                        w, lo_, p = sign_test(a, r, True)
                        row.update({f"d_{tag}": float((a - r).mean()), f"w_{tag}": w, f"l_{tag}": lo_,
                                    f"p_{tag}": p, f"mark_{tag}": ("+" if w > lo_ else "-") if p < alpha else ""})
                rows.append(row)
    return pd.DataFrame(rows)


def _fmt_needed(v: float, sizes: list[int]) -> str:
    if v == 0:
        return f"<= {min(sizes)}"
    if not np.isfinite(v):
        return f"> {max(sizes)}"
    return f"{v:.0f}"


def probes_markdown(metrics: pd.DataFrame, singles: pd.DataFrame | None, config: dict, alpha: float = 0.01,
                    reference: str = "random") -> str:
    """The report section of a probe sweep (empty unless the run has several probe counts or strategies)."""
    if singles is None or metrics.groupby(["n_val", "probe_strategy"]).ngroups < 2 \
            or reference not in set(metrics["probe_strategy"]):
        return ""
    table = probe_sweep_table(metrics, blind_area(singles), reference, alpha)
    if table.empty:
        return ""
    sizes = sorted(int(v) for v in table["probes"].unique())
    lines = ["", "## The profiling-cost curve: Area against the number of probes per new LLM", "",
             f"- each cell: mean Area; against `{reference}` at the same size, paired over trials: mean difference "
             f"and W/L, `+`/`-` = significant by a two-sided sign test at alpha = {alpha};",
             f"- the second table: each strategy with n probes against `{reference}` with 2n probes (a positive "
             "difference = the profiling cost halved; `+` = significantly so);",
             f"- probes needed: the fewest probes at which the mean Area gain reaches {PROBE_TARGET:.0%} of the "
             f"full-validation gain. Gain = Area minus the blind Area (the pool's cheapest LLM on the test "
             f"prompts: what a router gets with no probe answered); full-validation gain = the router's gain with "
             f"`{reference}` probes at the largest size ({max(sizes)}). Interpolated linearly in log(probes) "
             "between swept sizes; [95% bootstrap interval over trials]; `> max` = not reached in the sweep.", ""]
    if float(((config or {}).get("split") or {}).get("unseen_frac") or 0) >= 1:
        lines[-1:-1] = ["- no training LLMs in this run: `informative` has no answers to balance on and is an "
                        "embedding-only design (balanced over embedding clusters, like `stratified`);"]
    for pool, tp in table.groupby("pool", sort=False):
        lines += [f"### pool: {pool}", "",
                  "| router | strategy | " + " | ".join(f"{n} probes" for n in sizes) + " | probes needed |",
                  "|---|---|" + "---|" * (len(sizes) + 1)]
        for (router, strategy), g in tp.groupby(["router", "probe_strategy"], sort=False):
            g = g.set_index("probes")
            cells = []
            for n in sizes:
                if n not in g.index:
                    cells.append("")
                    continue
                x = g.loc[n]
                cell = f"{x['area']:.4f}"
                if "w_same" in x and np.isfinite(x.get("w_same", np.nan)):
                    cell += (f" ({1000 * x['d_same']:+.1f}e-3, {int(x['w_same'])}W/{int(x['l_same'])}L"
                             f"{' ' + x['mark_same'] if x['mark_same'] else ''})")
                cells.append(cell)
            x = g.iloc[0]
            need = (f"{_fmt_needed(x['needed'], sizes)} [{_fmt_needed(x['needed_low'], sizes)}, "
                    f"{_fmt_needed(x['needed_high'], sizes)}]")
            lines.append(f"| {router} | {strategy} | " + " | ".join(cells) + f" | {need} |")
        dbl = tp[tp["probe_strategy"].ne(reference) & tp.get("w_double", pd.Series(np.nan, index=tp.index)).notna()]
        if len(dbl):
            lines += ["", f"Against `{reference}` with twice the probes (mean difference, W/L, sign test):", "",
                      f"| router | strategy | n | Area (n) | Area ({reference}, 2n) | difference | W/L | p |",
                      "|---|---|---|---|---|---|---|---|"]
            for _, x in dbl.iterrows():
                ref = float(x["area"] - x["d_double"])
                lines.append(f"| {x['router']} | {x['probe_strategy']} | {int(x['probes'])} | {x['area']:.4f} | "
                             f"{ref:.4f} | {1000 * x['d_double']:+.1f}e-3 {x['mark_double']} | "
                             f"{int(x['w_double'])}W/{int(x['l_double'])}L | {x['p_double']:.3g} |")
        lines.append("")
    return "\n".join(lines)
