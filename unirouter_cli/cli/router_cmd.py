"""``unirouter router ...``: build a router from a table, list probe prompts, add or remove LLMs,
route new prompts, grade a new LLM's raw responses, describe a router, serve it over HTTP (serving/ does the
work)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from ..errors import ConfigError, install_hint
from .common import STATE, boundary, console, done, printable

app = typer.Typer(help="Build a router from a table, add LLMs from their probe answers, route new prompts.",
                  no_args_is_help=True)

DIR_ARG = typer.Argument(..., help="Router directory (written by `unirouter router build`).")


def note(msg: str) -> None:
    if not STATE.quiet:
        print(printable(msg), file=sys.stderr)


def _reserve(spec: str | None) -> float | None:
    if spec is None:
        return None
    try:
        return float(spec)
    except ValueError as e:
        raise ConfigError(f"--probe-reserve {spec!r}: expected a number of prompts or a fraction in (0, 1)") from e


@app.command("build")
@boundary
def build_cmd(
    dataset: str = typer.Option("mmlu-pro", "--dataset", "-d", help="Registered name or dataset folder path."),
    router: str = typer.Option("uniroute-kmeans", "--router", "-r", help="A dynamic router (see `unirouter routers`)."),
    encoder: str = typer.Option("tfidf", "--encoder", "-e", help="tfidf, minilm or st:<model> (precomputed cannot "
                                "embed new texts)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Fixes the prompt split and the router."),
    probe_reserve: str | None = typer.Option(None, "--probe-reserve", help="Probe reserve: a number of prompts or a "
                                             "fraction in (0, 1) (default: 0.1)."),
    params: list[str] | None = typer.Option(None, "--param", "-p", help="ROUTER.NAME=VALUE, e.g. "
                                            "uniroute-kmeans.K=16 (default: chosen from training + reserve data)."),
    out: Path = typer.Option(..., "--out", "-o", help="Router directory to write."),
    force: bool = typer.Option(False, "--force", help="Replace an existing router directory."),
) -> None:
    """Fit encoder and router on a whole table and profile every LLM on a probe reserve.

    The table's prompts are split (seeded) into training prompts and the probe reserve; every LLM of
    the table is a training LLM; hyperparameters are chosen as in trials.
    Example: unirouter router build --dataset routerbench-subset --router uniroute-kmeans --out routers/rb
    """
    from ..embed.encoders import embeds_new_texts_here
    from ..serving.build import build
    from .run_cmd import parse_params

    parsed = parse_params(list(params or []))
    other = sorted(set(parsed) - {router})
    if other:
        raise ConfigError(f"--param given for {', '.join(other)}, but the router built is {router}")
    from ..serving.store import check_replaceable

    if out.is_dir() and not out.is_symlink() and not force and any(out.iterdir()):
        raise ConfigError(f"--out {out} exists and is not empty; choose another directory or pass --force "
                          "(only a router directory is replaced)")
    check_replaceable(out)
    r = build(dataset, router, encoder, seed, _reserve(probe_reserve), parsed.get(router))
    path = r.save(out, overwrite=True)
    res, hp = r.card["reserve"], r.card["router"]["hyperparams"]
    note(f"built {router} ({', '.join(f'{k}={v}' for k, v in hp.items()) or 'no hyperparameters'}) on "
         f"{r.card['dataset']['name']}: {res['training_prompts']} training prompts, {res['prompts']} probe "
         f"reserve, {len(r.models)} LLMs, encoder {encoder}")
    if encoder != "precomputed" and not embeds_new_texts_here(encoder):
        note(f"warning: routing new prompts with encoder {encoder} needs the 'embed' extra, which this environment "
             f"lacks ({install_hint('embed')}); `route` and `serve` refuse new prompts until it is installed")
    if r.reserve_texts is None:
        note(f"note: {r.card['dataset']['name']} ships no prompt texts: `router probes` lists prompt ids; "
             f"`unirouter download {r.card['dataset']['name']}` fetches the texts")
    done(f"ok: {path}")


@app.command("probes")
@boundary
def probes_cmd(
    router_dir: Path = DIR_ARG,
    n: int = typer.Option(100, "-n", "--number", help="Number of probe prompts a new LLM answers."),
    strategy: str = typer.Option("random", "--strategy", help="Probe selection strategy (probes.py)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the selection."),
    answers_of: str | None = typer.Option(None, "--answers-of", help="Add a score column with this LLM's known "
                                          "answers (a file `add-llm` reads; probes it did not answer are left out)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="CSV to write (prompt_id, text) (default: stdout)."),
    adaptive: bool = typer.Option(False, "--adaptive", help="Interactive, foldin routers: print a batch of probes "
                                  "(CSV), read one score in [0, 1] per probe from stdin (a line each, in order), "
                                  "print the next batch chosen from the answers so far; then add the LLM."),
    model: str | None = typer.Option(None, "--model", "-m", help="With --adaptive: name of the new LLM."),
    cost: float | None = typer.Option(None, "--cost", help="With --adaptive: its cost per query (router's unit)."),
    batch: int = typer.Option(10, "--batch", help="With --adaptive: probes per batch."),
) -> None:
    """The prompts (prompt_id, text) a new LLM should answer before `add-llm`.

    Example: unirouter router build --dataset routerbench-subset --out routers/rb &&
    unirouter router probes routers/rb --number 100 --out probes.csv

    Adaptive (a foldin router): unirouter router probes routers/rb --adaptive -n 50 --model new-llm --cost 0.002
    prints 10 probes, reads their 10 scores from stdin, prints the next 10, ...; then adds new-llm.
    """
    from ..io import write_output
    from ..serving.router import load_router

    r = load_router(router_dir)
    if adaptive:
        if model is None or cost is None:
            raise ConfigError("--adaptive needs --model and --cost (the LLM joins when its answers are in)")
        if batch < 1:
            raise ConfigError(f"--batch {batch}: expected an integer >= 1")
        entry = _adaptive_loop(r.profile(model, cost), n, batch)
        r.save()
        done(f"ok: {router_dir}: added {entry['name']} ({entry['answers']} adaptive answers, cost {entry['cost']:g} "
             f"{r.cost_unit}); {len(r.models)} LLMs")
        return
    df = r.probes(n, strategy, seed, answers_of=answers_of)
    if out is None:
        df.to_csv(sys.stdout, index=False, lineterminator="\n")
    else:
        write_output(out, lambda p: df.to_csv(p, index=False, lineterminator="\n"), inside=(router_dir,))
        done(f"ok: {out}: {len(df)} probe prompts ({strategy}, seed {seed})")
    if r.reserve_texts is None:
        name = r.card["dataset"]["name"]
        note(f"note: {name} ships no prompt texts (the text column is empty): `unirouter download {name}` fetches "
             "them; the prompt ids are the table's")
    if r.references is None:
        from ..serving.grade import no_references

        note(f"note: {no_references(r.card['dataset']['name'])}")


@app.command("grade")
@boundary
def grade_cmd(
    router_dir: Path | None = typer.Argument(None, help="Router directory (grades against its probe prompts' "
                                             "reference answers)."),
    responses: Path = typer.Option(..., "--responses", help="CSV/JSONL/parquet with prompt_id, response: the new "
                                   "LLM's raw responses to probe prompts."),
    references: str | None = typer.Option(None, "--references", help="Instead of a router directory: a "
                                          "references.csv, or a dataset (name or folder) that carries one."),
    column: str = typer.Option("response", "--response-column", help="The column of --responses holding the "
                               "responses."),
    out: Path | None = typer.Option(None, "--out", "-o", help="CSV to write (prompt_id, score, extracted) "
                                    "(default: stdout)."),
) -> None:
    """Grade a new LLM's raw responses into 0/1 scores for `add-llm --answers` (rules: docs/grading.md).

    Answer each probe's text with the new LLM, save prompt_id,response, grade, then `add-llm --answers`.
    Example: unirouter router build --dataset mmlu-pro --out routers/mp &&
    unirouter router probes routers/mp --number 100 --out probes.csv &&
    unirouter router grade routers/mp --responses probes.csv --response-column text --out answers.csv

    (probes.csv stands in for a responses file here: the bundled mmlu-pro has no texts, so every score is 0.)
    """
    from ..io import write_output
    from ..serving.grade import PROBES_HINT, grade_responses, references_of
    from ..serving.router import load_router

    if (router_dir is None) == (references is None):
        raise ConfigError("give a router directory or --references (exactly one of the two)")
    if router_dir is not None:
        r = load_router(router_dir)
        refs, name, hint = r.references, r.card["dataset"]["name"], PROBES_HINT
    else:
        (refs, name), hint = references_of(str(references)), ""
    g, label = grade_responses(responses, refs, name, hint, column), f"{name} reference answers"
    if out is None:
        g.to_csv(sys.stdout, index=False, lineterminator="\n")
    else:
        write_output(out, lambda p: g.to_csv(p, index=False, lineterminator="\n"),
                     inputs=(responses,) + ((references,) if references is not None else ()),
                     inside=(router_dir,) if router_dir is not None else ())
        done(f"ok: {out}")
    note(f"graded {len(g)} responses against {label}: mean score {g['score'].mean():.4f}, "
         f"{int(g['extracted'].isna().sum())} without an extracted answer")


def _adaptive_loop(session, n: int, batch: int) -> dict:  # noqa: ANN001 - a serving.profile.ProfileSession
    """Print batches of probes as CSV on stdout and read one score per probe from stdin until ``n`` are answered
    (or stdin ends); then add the LLM with the answers given."""
    header = True
    while session.answered < n:
        df = session.next(min(batch, n - session.answered))
        df.to_csv(sys.stdout, index=False, header=header, lineterminator="\n")
        sys.stdout.flush()
        header = False
        scores = {}
        for pid in df["prompt_id"]:
            line = sys.stdin.readline()
            if not line:
                break
            try:
                scores[pid] = float(line.strip())
            except ValueError:
                raise ConfigError(f"stdin: answer to probe {pid!r}: {line.strip()!r} is not a score") from None
        if scores:
            session.answer(scores)
        if len(scores) < len(df):
            note(f"stdin ended after {session.answered} answers")
            break
    return session.done()


@app.command("add-llm")
@boundary
def add_llm_cmd(
    router_dir: Path = DIR_ARG,
    model: str = typer.Option(..., "--model", "-m", help="Name of the new LLM."),
    cost: float = typer.Option(..., "--cost", help="Its cost per query, in the router's cost unit (see `info`)."),
    answers: Path = typer.Option(..., "--answers", "-a", help="CSV/JSONL/parquet with prompt_id, score in [0, 1] on "
                                 "probe prompts (at least 20)."),
) -> None:
    """Add an LLM from its scores on probe prompts; nothing is retrained. DIR is updated atomically.

    Example: unirouter router build --dataset routerbench-subset --out routers/rb &&
    unirouter router probes routers/rb --number 100 --answers-of claude-v2 --out answers.csv &&
    unirouter router add-llm routers/rb --model claude-v2-copy --cost 0.0038 --answers answers.csv
    """
    from ..serving.router import load_router

    r = load_router(router_dir)
    entry = r.add_llm(model, cost, answers)
    r.save()
    done(f"ok: {router_dir}: added {entry['name']} ({entry['answers']} answers, cost {entry['cost']:g} "
         f"{r.cost_unit}); {len(r.models)} LLMs")


@app.command("remove-llm")
@boundary
def remove_llm_cmd(
    router_dir: Path = DIR_ARG,
    model: str = typer.Option(..., "--model", "-m", help="Name of the LLM to remove."),
) -> None:
    """Remove an LLM from the pool. DIR is updated atomically.

    Example: unirouter router build --dataset routerbench-subset --out routers/rb &&
    unirouter router remove-llm routers/rb --model claude-v2
    """
    from ..serving.router import load_router

    r = load_router(router_dir)
    r.remove_llm(model)
    r.save()
    done(f"ok: {router_dir}: removed {model.strip()}; {len(r.models)} LLMs")


def _summary(routes: list[dict]) -> str:
    from collections import Counter

    if not routes:
        return "no prompts"
    n = len(routes)
    share = Counter(d["model"] for d in routes).most_common()
    cost = sum(d["cost"] for d in routes) / n
    q = sum(d["p_correct"] for d in routes) / n
    top = ", ".join(f"{m} {c / n:.0%}" for m, c in share[:4]) + (", ..." if len(share) > 4 else "")
    return (f"{n} prompts at lambda {routes[0]['lambda']:.6g} (expected mean cost on the probe prompts "
            f"{routes[0]['expected_mean_cost']:.4g}): mean cost {cost:.4g}, estimated accuracy {q:.3f}; {top}")


@app.command("route")
@boundary
def route_cmd(
    router_dir: Path = DIR_ARG,
    prompts: Path = typer.Option(..., "--prompts", help="CSV/JSONL/parquet with prompt_id and text."),
    out: Path | None = typer.Option(None, "--out", "-o", help="JSON lines to write (default: stdout)."),
    lam: float | None = typer.Option(None, "--lambda", help="Cost weight: argmin error + lambda * cost (0 = always "
                                     "the lowest estimated error)."),
    mean_cost: float | None = typer.Option(None, "--mean-cost", help="Largest expected mean cost per prompt (card's "
                                           "unit) on the probe reserve; lambda is chosen there."),
    min_quality: float | None = typer.Option(None, "--min-quality", help="Cheapest lambda whose estimated accuracy "
                                             "on the probe reserve is at least this."),
    max_cost: float | None = typer.Option(None, "--max-cost", help="Hard cap per prompt: only LLMs costing at most "
                                          "this (card's unit); alone, the lowest estimated error among them."),
    pool: str | None = typer.Option(None, "--pool", help="Route only among these LLMs (comma-separated; a name "
                                    "holding commas is recognised)."),
) -> None:
    """Route prompts: one JSON line per prompt with prompt_id, model, p_correct (estimated), cost, lambda,
    expected_mean_cost (of that lambda on the probe reserve).

    Give one of --lambda, --mean-cost, --min-quality (how lambda is chosen), --max-cost (a cap on each
    prompt's LLM cost), or one of the first three with --max-cost.
    Example: unirouter router build --dataset routerbench-subset --out routers/rb &&
    unirouter router probes routers/rb --number 50 --out new.csv &&
    unirouter router route routers/rb --prompts new.csv --mean-cost 0.001 --out routes.jsonl
    """
    from ..data.tables import read_prompts
    from ..io import write_output
    from ..serving.router import load_router

    r = load_router(router_dir)
    ids, texts = read_prompts(prompts)
    routes = r.route(texts, ids, lam=lam, mean_cost=mean_cost, min_quality=min_quality, max_cost=max_cost,
                     pool=None if pool is None else r.parse_pool(pool))
    body = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in routes)
    if out is None:
        sys.stdout.write(body)
    else:
        write_output(out, lambda p: p.write_text(body, encoding="utf-8"), inputs=(prompts,), inside=(router_dir,))
        done(f"ok: {out}")
    note(f"routed {_summary(routes)}")


@app.command("info")
@boundary
def info_cmd(
    router_dir: Path = DIR_ARG,
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Describe a router: dataset, encoder, router and hyperparameters, LLMs, cost/quality range.

    Example: unirouter router build --dataset routerbench-subset --out routers/rb &&
    unirouter router info routers/rb
    """
    from rich.markup import escape
    from rich.table import Table

    from ..serving.router import load_router

    r = load_router(router_dir)
    d = r.info()
    if as_json:
        typer.echo(json.dumps(d, indent=2))
        return
    ds, rt, res = d["dataset"], d["router"], d["reserve"]
    hp = ", ".join(f"{k}={v}" for k, v in rt["hyperparams"].items()) or "none"
    console.print(escape(f"{r.path}: {rt['name']} ({hp}), encoder {d['encoder']['name']}, unirouter "
                         f"{d['unirouter_version']}, seed {d['seed']}"))
    console.print(escape(f"built on {ds['name']} (hash {ds['content_hash']}): {res['training_prompts']} training "
                         f"prompts, {res['prompts']} probe prompts; cost unit: {d['cost_unit']}"))
    c = d["curve"]
    console.print(escape(f"on the probe prompts: cheapest routing cost {c['cheapest']['cost']:.4g} (estimated "
                         f"accuracy {c['cheapest']['quality']:.3f}), lambda 0 cost {c['lambda_0']['cost']:.4g} "
                         f"(estimated accuracy {c['lambda_0']['quality']:.3f})"))
    t = Table()
    for col in ("LLM", "cost", "origin", "probes answered", "accuracy on them"):
        t.add_column(col)
    for m in sorted(d["llms"], key=lambda m: m["cost"]):
        acc = m["accuracy_on_answers"]
        t.add_row(escape(m["name"]), f"{m['cost']:.4g}", m.get("origin", "?"), str(m["answers"]),
                  "-" if acc is None else f"{acc:.3f}")
    console.print(t)


@app.command("serve")
@boundary
def serve_cmd(
    router_dir: Path = DIR_ARG,
    port: int = typer.Option(8000, "--port", help="TCP port (0 = any free port)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    lam: float | None = typer.Option(None, "--lambda", help="Default lambda when a request gives no rule."),
    mean_cost: float | None = typer.Option(None, "--mean-cost", help="Default budget: expected mean cost per "
                                           "prompt on the probe reserve."),
    min_quality: float | None = typer.Option(None, "--min-quality", help="Default quality floor."),
    max_cost: float | None = typer.Option(None, "--max-cost", help="Default hard cap on each prompt's LLM cost."),
    pool: str | None = typer.Option(None, "--pool", help="Default pool (comma-separated)."),
    upstream: list[str] | None = typer.Option(None, "--upstream", help="NAME=URL: the OpenAI-compatible base URL "
                                              "of LLM NAME (* = every other LLM); repeatable."),
    upstreams: Path | None = typer.Option(None, "--upstreams", help="YAML file of upstreams (docs/serving.md)."),
    attempts: int = typer.Option(3, "--attempts", min=1, max=20, help="LLMs tried per chat request: the chosen "
                                 "one, then fallbacks in ranking order."),
    reload_interval: float = typer.Option(1.0, "--reload-interval", min=0.0, help="Seconds between checks of "
                                          "DIR for changes (0 = reload on SIGHUP only)."),
    access_log: str = typer.Option("-", "--access-log", help="JSON access log: a file, - (stderr) or off."),
    log_prompts: bool = typer.Option(False, "--log-prompts", help="Put prompt texts in the access log."),
    max_connections: int = typer.Option(512, "--max-connections", min=1, help="Open connections at most."),
    timeout: float = typer.Option(10.0, "--timeout", min=0.1, help="Seconds a client has to send a request head "
                                  "(x3: its body)."),
) -> None:
    """Serve a router over HTTP: POST /route (preview), POST /v1/chat/completions (route and forward),
    GET /info, /health, /metrics, /v1/models.

    POST /route takes {"prompts": [{"prompt_id": ..., "text": ...}] or "texts": \\[...], "lambda" | "mean_cost" |
    "min_quality": number, "max_cost": number, "pool": \\[names]} and answers {"routes": [{prompt_id, model,
    p_correct, cost, lambda, expected_mean_cost}]}. The directory is reloaded when it changes.
    Needs the serve extra: pip install 'unirouter\\[serve]'. docs/serving.md has the details.
    Example: unirouter router build --dataset routerbench-subset --out routers/rb &&
    unirouter router serve routers/rb --port 8000 --mean-cost 0.001 --upstream '*=http://127.0.0.1:9000/v1'
    """
    from ..serving.server import Limits, bind, require_extra, serve

    require_extra()
    from ..serving.observe import AccessLog
    from ..serving.server import build

    defaults = {"lam": lam, "mean_cost": mean_cost, "min_quality": min_quality, "max_cost": max_cost,
                "pool": None}
    if pool is not None:
        from ..serving.router import load_router

        defaults["pool"] = load_router(router_dir).parse_pool(pool)
    limits = Limits(max_connections=max_connections, header_timeout=timeout, body_timeout=3 * timeout)
    log = AccessLog(None if access_log == "off" else sys.stderr if access_log == "-" else
                    open(access_log, "a", encoding="utf-8"), prompts=log_prompts)  # noqa: SIM115 - lives as long as the server
    live, app = build(router_dir, defaults, upstream, upstreams, limits, max_attempts=attempts,
                      reload_interval=reload_interval, access_log=log)
    sock = bind(host, port, limits.backlog)
    h, p = sock.getsockname()[:2]
    serve(app, sock, limits, f"serving {router_dir} (version {live.current.version}) on http://{h}:{p} "
          "(POST /route, POST /v1/chat/completions, GET /info, /metrics); Ctrl-C stops")
