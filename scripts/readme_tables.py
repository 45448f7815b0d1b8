"""Regenerate the result tables of docs/*.md and README.md from real run directories (no hand-copied digits).

    python scripts/readme_tables.py runs/reproduce-<timestamp>           # every preset in it
    python scripts/readme_tables.py mmlu-pro-unseen=runs/demo            # one run, named block
    python scripts/readme_tables.py --check runs/reproduce-<timestamp>   # exit 1 if a page is stale
    python scripts/readme_tables.py --file docs/results.md runs/demo     # only that page

Each run directory (one with metrics.csv) fills the block between the marker comments
``<!-- results:NAME -->`` and ``<!-- /results:NAME -->``, NAME being the run folder's name (a
reproduce preset's name) or the ``NAME=`` given, in every page that holds those markers: by default
README.md and docs/*.md (the result tables are in docs/results.md and docs/probes.md, the
``make reproduce`` timing in README.md, the benchmark tables in docs/performance.md, the router
walk-through's table in docs/using-a-router.md). A reproduce folder also fills
``<!-- results:reproduce-timing -->`` with the wall times ``unirouter reproduce`` recorded
(reproduce.json) and the machine. The block holds a Markdown table made from metrics.csv with
``unirouter_cli.results.report.summarise`` (mean, 95% interval, paired sign tests against each
``--reference``), the command that made the run and its timing. Text outside the markers is never
touched; running the script twice gives the same file.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import pandas as pd

from unirouter_cli.results.report import cost_unit, fmt_cell, gap_line, short_unit, summarise
from unirouter_cli.results.runfiles import read_metrics, read_run_config
from unirouter_cli.runs.reproduce import machine_line

MARK = "<!-- results:{name} -->"
END = "<!-- /results:{name} -->"
TIMING_BLOCK = "reproduce-timing"


def find_runs(specs: list[str]) -> list[tuple[str, Path]]:
    """(block name, run directory) for each spec: DIR, NAME=DIR, or a folder of run directories."""
    runs = []
    for spec in specs:
        name, _, path = spec.rpartition("=") if "=" in spec else ("", "", spec)
        p = Path(path)
        if (p / "metrics.csv").exists():
            runs.append((name or p.resolve().name, p))
        elif p.is_dir() and (subs := sorted(d for d in p.iterdir() if (d / "metrics.csv").exists())):
            if name:
                raise SystemExit(f"error: {spec}: NAME= needs a single run directory, {p} holds {len(subs)}")
            runs += [(d.name, d) for d in subs]
        else:
            raise SystemExit(f"error: {p}: neither a run directory (metrics.csv) nor a folder of them")
    return runs


def fit_command(config: dict) -> str:
    """An equivalent `unirouter fit` command for a run made by hand (reproduce records its own)."""
    parts = ["unirouter fit", f"--dataset {config.get('dataset')}", f"--encoder {config.get('encoder')}",
             f"--trials {config.get('trials')}", f"--seed {config.get('seed')}"]
    parts += [f"-r {r}" for r in config.get("routers") or []]
    if config.get("val_sizes"):
        parts.append("--val-sizes " + ",".join(map(str, config["val_sizes"])))
    if config.get("probe_strategies"):
        parts.append("--probe-strategies " + ",".join(config["probe_strategies"]))
    return " ".join(parts)


def provenance(run: Path, config: dict) -> str:
    """The command and timing line of a run."""
    rec = run / "reproduce.json"
    version = config.get("unirouter_version", "?")
    if rec.exists():
        r = json.loads(rec.read_text())
        s = r.get("seconds", {})
        stages = ", ".join(f"{k} {v:.0f} s" for k, v in s.items())
        return (f"Made by `{r['command']}` (unirouter {version}, {r.get('date')}): {r['wall_seconds'] / 60:.1f} min "
                f"wall time ({stages}) on {machine_line(r.get('machine', {}))}.")
    t = run / "timings.csv"
    fit_s = pd.read_csv(t)["seconds"].sum() if t.exists() and t.stat().st_size > 0 else float("nan")
    return (f"Made by `{fit_command(config)}`, then `unirouter evaluate` (unirouter {version}); fitting took "
            f"{fit_s:.0f} s summed over trials and routers (timings.csv); wall time and machine not recorded "
            "(`unirouter reproduce` records them).")


def _vs(summary: pd.DataFrame, router: str, ref: str, metric: str) -> str:
    if router == ref:
        return ""
    r = summary[(summary["router"] == router) & (summary["metric"] == metric)]
    if r.empty or pd.isna(r["wins"].iloc[0]):
        return ""
    x = r.iloc[0]
    return f"{x['mark']} {int(x['wins'])}W/{int(x['losses'])}L".strip()


def main_table(metrics: pd.DataFrame, refs: list[str], unit: str) -> list[str]:
    """One row per router: Area, QNC, cost to match, and W/L against each reference."""
    sums = {ref: summarise(metrics, ref) for ref in refs}
    base = sums[refs[0]]
    head = ["router", "kind", "Area", "QNC", f"cost to match the best single LLM ({short_unit(unit)})"]
    head += [f"vs {ref} (Area / QNC)" for ref in refs]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for router in dict.fromkeys(base["router"]):
        r = base[base["router"] == router].set_index("metric")
        cells = [router, r["kind"].iloc[0]]
        for metric in ("area", "qnc", "qnc_cost"):
            cells.append(fmt_cell(metric, *r.loc[metric, ["mean", "ci_low", "ci_high"]]) if metric in r.index
                         else "n/a")
        for ref in refs:
            a, q = _vs(sums[ref], router, ref, "area"), _vs(sums[ref], router, ref, "qnc")
            cells.append(f"{a} / {q}" if a or q else "")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def sweep_table(metrics: pd.DataFrame, ref: str) -> list[str]:
    """One row per router (and probe strategy), one column per validation size: Area and W/L vs ref."""
    s = summarise(metrics, ref)
    s = s[s["metric"] == "area"]
    sizes = sorted(s["val_size"].unique())
    many = s["probe_strategy"].nunique() > 1
    lines = ["| router | kind | " + " | ".join(f"Area, {v} validation prompts" for v in sizes) + " |",
             "|" + "---|" * (len(sizes) + 2)]
    for (router, strategy), g in s.groupby(["router", "probe_strategy"], sort=False):
        cells = []
        for v in sizes:
            x = g[g["val_size"] == v]
            if x.empty:
                cells.append("")
                continue
            x = x.iloc[0]
            vs = "" if router == ref else f" {x['mark']} {int(x['wins'])}W/{int(x['losses'])}L".replace("  ", " ")
            cells.append(f"{x['mean']:.4f} [{x['ci_low']:.4f}, {x['ci_high']:.4f}]{vs}")
        label = f"{router} ({strategy})" if many else router
        lines.append(f"| {label} | {g['kind'].iloc[0]} | " + " | ".join(cells) + " |")
    return lines


def shown_path(run: Path) -> str:
    """The run's path as the pages show it: from its ``runs/`` folder on (the same for any clone)."""
    parts = run.absolute().parts
    return "/".join(parts[len(parts) - 1 - parts[::-1].index("runs"):]) if "runs" in parts else run.as_posix()


def block(name: str, run: Path, references: list[str]) -> str:
    """The Markdown between the markers of one run."""
    metrics = read_metrics(run)
    config = read_run_config(run)
    unit = cost_unit(config)
    pool = "unseen" if "unseen" in set(metrics["pool"]) else metrics["pool"].iloc[0]
    metrics = metrics[metrics["pool"] == pool]
    refs = [r for r in references if r in set(metrics["router"])] or [metrics["router"].iloc[0]]
    sweep = metrics["val_size"].nunique() > 1
    n_trials = metrics["trial"].nunique()
    intro = (f"**{config.get('dataset_name', name)}**, {pool} pool: {int(metrics['n_pool'].median())} LLMs, "
             f"{int(metrics['n_test'].median()):,} test prompts per trial"
             + ("" if sweep else f", {int(metrics['n_val'].median()):,} validation prompts")
             + f"; {n_trials} trials, seed {config.get('seed')}, `{config.get('encoder')}` embeddings; "
             "mean [95% interval over trials]; `W/L` = trials won/lost against the reference in a paired sign "
             "test, `+`/`-` = significant at alpha = 0.01.")
    if not sweep:
        intro += f" Costs in {unit}."
        one = metrics[metrics["val_size"] == metrics["val_size"].iloc[0]]
        table = main_table(one, refs, unit)
        if gap := gap_line(one):
            table += ["", gap]
    elif metrics["probe_strategy"].nunique() > 1:  # the profiling-cost curve: the report's own section
        table = profiling_section(run)
    else:
        table = sweep_table(metrics, refs[-1])
        intro += f" Reference: `{refs[-1]}`."
    src = f"<!-- generated by scripts/readme_tables.py from {shown_path(run)}; edit the runs, not this block -->"
    return "\n".join([src, "", intro, "", *table, "", provenance(run, config)])


def profiling_section(run: Path, n: int = 100) -> list[str]:
    """The profiling-cost tables of the run's report.md (written by `unirouter report`): the table of
    Area per router, strategy and probe count with "probes needed", and the comparison with `random`
    at twice the probes for ``n`` probes."""
    text = (run / "report.md").read_text(encoding="utf-8")
    start = text.find("## The profiling-cost curve")
    if start < 0:
        raise SystemExit(f"error: {run}/report.md has no profiling-cost section; rerun `unirouter report`")
    lines = text[start:].splitlines()[1:]
    out, tables, rows = [], 0, []
    for ln in [*lines, ""]:
        if ln.startswith("## "):
            ln = ""
        if ln.startswith("- "):
            out.append(ln)
        elif ln.startswith("|"):
            rows.append(ln)
        elif rows:
            tables += 1
            if tables == 1:
                out += ["", *rows]
            else:
                head, body = rows[:2], [r for r in rows[2:] if r.split("|")[3].strip() == str(n)]
                out += ["", f"Each strategy with {n} probes against `random` with {2 * n}:", "", *head, *body]
            rows = []
    return out


def timing_block(folders: list[Path]) -> str | None:
    recs = [(d.name, json.loads((d / "reproduce.json").read_text()))
            for f in folders for d in sorted(f.iterdir()) if (d / "reproduce.json").exists()]
    if not recs:
        return None
    # one reproduce makes a preset's figures while the next preset's trials run: its elapsed time is the last
    # preset's finished_after_seconds, less than the sum of the presets' own times
    total = max((r.get("finished_after_seconds", 0.0) for _, r in recs), default=0.0) or sum(
        r["wall_seconds"] for _, r in recs)
    each = ", ".join(f"`{n}` {r['wall_seconds'] / 60:.1f} min ({r['trials']} trials)" for n, r in recs)
    first = recs[0][1]
    return (f"<!-- generated by scripts/readme_tables.py from reproduce.json files -->\n\n"
            f"Measured on {machine_line(first.get('machine', {}))}, {first.get('date')}, `--jobs {first.get('jobs')}`:"
            f" {total / 60:.1f} min wall time for fit, evaluate, plot and report of {len(recs)} "
            f"preset{'s' if len(recs) > 1 else ''} (each preset's own time: {each}); "
            "creating the environment is not included.")


def replace_block(text: str, name: str, body: str) -> tuple[str, bool]:
    """Replace what is between the markers of ``name``; (new text, whether the markers exist)."""
    start, end = MARK.format(name=name), END.format(name=name)
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if not pattern.search(text):
        return text, False
    return pattern.sub(lambda _: f"{start}\n{body}\n{end}", text, count=1), True


def default_pages() -> list[Path]:
    """README.md and docs/*.md of the current folder (the repository root)."""
    return [p for p in [Path("README.md"), *sorted(Path("docs").glob("*.md"))] if p.is_file()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="*", help="run directory, NAME=run directory, or a reproduce folder")
    ap.add_argument("--file", "--readme", dest="files", type=Path, action="append", default=None,
                    help="page to fill (repeat) [default: README.md and docs/*.md]")
    ap.add_argument("--reference", action="append", default=None,
                    help="router to compare against (repeat) [default: zero and knn]")
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if a page is out of date")
    ap.add_argument("--text", action="append", default=[], metavar="NAME=FILE",
                    help="fill block NAME with FILE, a table another script wrote (e.g. scripts/use_a_router/run.sh)")
    args = ap.parse_args(argv)
    refs = args.reference or ["zero", "knn"]
    pages = args.files or default_pages()
    texts = {p: p.read_text(encoding="utf-8") for p in pages}
    new = dict(texts)
    blocks = [(name, block(name, run, refs)) for name, run in find_runs(args.runs)]
    paths = [Path(s.rpartition("=")[2]) for s in args.runs]
    folders = [p for p in paths if not (p / "metrics.csv").exists()]
    if (tb := timing_block(folders)) is not None:
        blocks.append((TIMING_BLOCK, tb))
    for spec in args.text:
        name, _, path = spec.partition("=")
        blocks.append((name, f"<!-- generated: {path} -->\n\n" + Path(path).read_text(encoding="utf-8").strip()))
    for name, body in blocks:
        found = False
        for p in pages:
            new[p], hit = replace_block(new[p], name, body)
            found = found or hit
        if not found:
            where = ", ".join(map(str, pages)) or "no page"
            print(f"note: {where}: no {MARK.format(name=name)} ... {END.format(name=name)}; skipped {name}",
                  file=sys.stderr)
    stale = [p for p in pages if new[p] != texts[p]]
    if args.check:
        for p in stale:
            print(f"{p} is out of date; rerun scripts/readme_tables.py", file=sys.stderr)
        return 1 if stale else 0
    for p in stale:
        tmp = p.with_name(f".{p.name}.tmp")
        tmp.write_text(new[p], encoding="utf-8")
        tmp.replace(p)
    for p in pages:
        print(f"{p}: {'updated' if p in stale else 'unchanged'}")
    print(f"{len(blocks)} block(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
