"""A router outside the trial loop (`unirouter router ...`, `unirouter_cli.load_router`).

The main scenario is the README's "Use a router": the bundled RouterBench subset with one LLM
(gpt-4-1106-preview) and 300 prompts held out of the table; build -> probes -n 100 -> add-llm the
held-out LLM from its real answers on those probes -> route the 300 held-out prompt texts, scored
with the table's real outcomes and per-query costs.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from unirouter_cli.cli import app
from unirouter_cli.data.folder import load_folder
from unirouter_cli.data.registry import BUNDLED_DIR
from unirouter_cli.embed.encoders import TfidfEncoder, ids_hash, load_encoder, make_encoder, save_encoder
from unirouter_cli.errors import ConfigError
from unirouter_cli.serving.router import MIN_ANSWERS, load_router
from unirouter_cli.serving.store import RouterDirError, dir_hash

from .conftest import SHARED, needs_shared

SRC = BUNDLED_DIR / "routerbench-subset"
NEW_LLM = "gpt-4-1106-preview"
N_HELD = 300


def run(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Held-out table, built router with the new LLM added, and the real outcomes of the held-out prompts."""
    tmp = tmp_path_factory.mktemp("deploy")
    P = pd.read_parquet(SRC / "prompts.parquet")
    outcomes = pd.read_parquet(SRC / "outcomes.parquet")
    M = pd.read_csv(SRC / "models.csv")
    held = set(np.random.default_rng(0).choice(P["prompt_id"].to_numpy(), N_HELD, replace=False))
    table = tmp / "rb-heldout"
    table.mkdir()
    (table / "dataset.yaml").write_text((SRC / "dataset.yaml").read_text().replace(
        "name: routerbench-subset", "name: rb-heldout"))
    P[~P["prompt_id"].isin(held)].to_parquet(table / "prompts.parquet", index=False)
    kept = ~outcomes["prompt_id"].isin(held) & (outcomes["model"] != NEW_LLM)
    outcomes[kept].to_parquet(table / "outcomes.parquet", index=False)
    M[M["model"] != NEW_LLM].to_csv(table / "models.csv", index=False)
    heldP = P[P["prompt_id"].isin(held)][["prompt_id", "text"]].reset_index(drop=True)
    prompts_file = tmp / "held.jsonl"
    heldP.to_json(prompts_file, orient="records", lines=True)

    rdir = tmp / "router"
    res = run("router", "build", "--dataset", table, "--router", "uniroute-kmeans", "--seed", 0, "--out", rdir)
    assert res.exit_code == 0, res.output
    built_hash = dir_hash(rdir)
    res = run("router", "probes", rdir, "-n", 100, "--seed", 0, "--out", tmp / "probes.csv")
    assert res.exit_code == 0, res.output
    probes = pd.read_csv(tmp / "probes.csv", dtype={"prompt_id": str})
    asked = (outcomes["model"] == NEW_LLM) & outcomes["prompt_id"].isin(probes["prompt_id"])
    answers = outcomes[asked][["prompt_id", "score"]]
    answers.to_csv(tmp / "answers.csv", index=False)
    cost = float(M.set_index("model").loc[NEW_LLM, "cost"])
    res = run("router", "add-llm", rdir, "--model", NEW_LLM, "--cost", cost, "--answers", tmp / "answers.csv")
    assert res.exit_code == 0, res.output
    heldO = outcomes[outcomes["prompt_id"].isin(held)]
    S = heldO.pivot(index="prompt_id", columns="model", values="score").loc[heldP["prompt_id"]]
    C = heldO.pivot(index="prompt_id", columns="model", values="cost").loc[heldP["prompt_id"]]
    return {"tmp": tmp, "table": table, "dir": rdir, "prompts": prompts_file, "held": heldP, "S": S, "C": C,
            "probes": probes, "answers": tmp / "answers.csv", "cost": cost, "built_hash": built_hash}


def route_file(sc: dict, out: Path, *opts: object) -> pd.DataFrame:
    res = run("router", "route", sc["dir"], "--prompts", sc["prompts"], "--out", out, *opts)
    assert res.exit_code == 0, res.output
    return pd.read_json(out, lines=True, dtype={"prompt_id": str})


def realised(sc: dict, routes: pd.DataFrame) -> tuple[float, float, np.ndarray]:
    """Accuracy and mean per-query cost of the routed choices on the prompts every LLM answered."""
    S, C = sc["S"], sc["C"]
    ok = S.notna().all(axis=1).to_numpy()
    r = routes.set_index("prompt_id").loc[S.index]
    cols = S.columns.get_indexer(r["model"])
    rows = np.arange(len(S))
    return (float(S.to_numpy()[rows, cols][ok].mean()), float(C.to_numpy()[rows, cols][ok].mean()), ok)


# --------------------------------------------------------------------------------------------
# the README scenario
# --------------------------------------------------------------------------------------------
def test_use_a_router_on_held_out_prompts_and_llm(scenario):
    sc = scenario
    S = sc["S"]
    assert len(sc["probes"]) == 100 and sc["probes"]["text"].str.len().gt(0).all()
    r = load_router(sc["dir"])
    assert r.models[-1] == NEW_LLM and r.card["llms"][-1]["origin"] == "added"
    assert r.card["llms"][-1]["answers"] >= 99  # the table misses one pair of gpt-4 on these probes at most

    costs = []
    for lam in (0, 10, 30, 100, 1000, 100000):
        routes = route_file(sc, sc["tmp"] / f"routes-{lam}.jsonl", "--lambda", lam)
        assert list(routes.columns) == ["prompt_id", "model", "p_correct", "cost", "lambda", "expected_mean_cost"]
        assert len(routes) == N_HELD and set(routes["prompt_id"]) == set(sc["held"]["prompt_id"])
        assert routes["p_correct"].between(0, 1).all() and (routes["lambda"] == lam).all()
        acc, cost, ok = realised(sc, routes)
        costs.append(cost)
        if lam == 0:
            best = float(S[ok].mean().max())
            assert abs(acc - best) <= 0.03, (acc, best)
            assert (routes["model"] == NEW_LLM).mean() > 0.5  # the new LLM is the best one, and is used
    assert all(a >= b for a, b in zip(costs, costs[1:], strict=False)) and costs[0] > 10 * costs[-1], costs

    pool = ["mistralai/mistral-7b-chat", "zero-one-ai/Yi-34B-Chat"]
    routes = route_file(sc, sc["tmp"] / "pool.jsonl", "--lambda", 0, "--pool", ",".join(pool))
    assert set(routes["model"]) <= set(pool) and routes["model"].nunique() >= 1
    routes = route_file(sc, sc["tmp"] / "pool1.jsonl", "--lambda", 0, "--pool", "claude-v1")
    assert set(routes["model"]) == {"claude-v1"}


def test_mean_cost_and_min_quality_choose_lambda_on_the_probe_prompts(scenario):
    sc = scenario
    r = load_router(sc["dir"])
    curve = r.lambda_curve()
    assert np.all(np.diff(curve.cost) > 0) and np.all(np.diff(curve.quality) >= -1e-12)
    budget = 0.001
    routes = route_file(sc, sc["tmp"] / "budget.jsonl", "--mean-cost", budget)
    lam = float(routes["lambda"].iloc[0])
    model, _, cost = r.route_embeddings(r.X_reserve, lam)
    assert cost.mean() <= budget  # expected mean cost on the probe reserve respects the budget ...
    i = int(np.flatnonzero(curve.cost <= budget)[-1])
    assert cost.mean() == pytest.approx(curve.cost[i])  # ... and it is the curve's most accurate such point
    assert routes["expected_mean_cost"].iloc[0] == pytest.approx(cost.mean())  # the route says what it targeted
    assert routes["cost"].mean() <= 1.25 * budget  # on new prompts the expectation roughly holds
    acc_budget, cost_budget, _ = realised(sc, routes)
    assert cost_budget < 0.5 * realised(sc, route_file(sc, sc["tmp"] / "l0.jsonl", "--lambda", 0))[1]

    q = 0.8
    routes = route_file(sc, sc["tmp"] / "quality.jsonl", "--min-quality", q)
    lam = float(routes["lambda"].iloc[0])
    _, p, cost = r.route_embeddings(r.X_reserve, lam)
    j = int(np.flatnonzero(curve.quality >= q)[0])
    assert p.mean() >= q and cost.mean() == pytest.approx(curve.cost[j])
    assert acc_budget > 0.7  # the budget route is still far better than the cheapest LLM (0.58)


def test_route_is_deterministic_and_matches_the_python_api(scenario, tmp_path):
    sc = scenario
    a = route_file(sc, tmp_path / "a.jsonl", "--lambda", 30)
    b = route_file(sc, tmp_path / "b.jsonl", "--lambda", 30)
    assert a.equals(b)
    for fmt in ("csv", "parquet"):  # the same prompts as CSV and parquet route the same way
        f = tmp_path / f"held.{fmt}"
        sc["held"].to_csv(f, index=False) if fmt == "csv" else sc["held"].to_parquet(f, index=False)
        res = run("router", "route", sc["dir"], "--prompts", f, "--lambda", 30, "--out", tmp_path / f"{fmt}.jsonl")
        assert res.exit_code == 0, res.output
        assert pd.read_json(tmp_path / f"{fmt}.jsonl", lines=True, dtype={"prompt_id": str}).equals(a)
    r = load_router(sc["dir"])
    api = r.route(sc["held"]["text"].tolist(), sc["held"]["prompt_id"].tolist(), lam=30)
    assert [d["model"] for d in api] == a["model"].tolist()
    # the same router built twice from the same seed is byte-identical apart from fit timing
    res = run("router", "build", "--dataset", sc["table"], "--seed", 0, "--out", tmp_path / "again")
    assert res.exit_code == 0, res.output
    again = load_router(tmp_path / "again")
    first = load_router(sc["dir"])
    assert first.card["router"]["hyperparams"] == again.card["router"]["hyperparams"]
    np.testing.assert_array_equal(again.errors, first.errors[:, :-1])
    np.testing.assert_array_equal(again.X_reserve, first.X_reserve)


def test_build_keeps_the_reserve_out_of_training_and_profiles_every_llm(scenario):
    r = load_router(scenario["dir"])
    ds = load_folder(scenario["table"])
    card = r.card
    assert card["reserve"]["prompts"] == round(0.1 * ds.n_prompts) == len(r.reserve_ids)
    assert card["reserve"]["training_prompts"] + card["reserve"]["prompts"] == ds.n_prompts
    assert card["dataset"]["content_hash"] == ds.content_hash and card["encoder"]["name"] == "tfidf"
    assert card["router"]["hyperparams"]["K"] >= 1 and card["cost_unit"].startswith("USD per query")
    rows = pd.Index(ds.prompt_ids).get_indexer(r.reserve_ids)
    np.testing.assert_array_equal(r.errors[:, : ds.n_models], 1 - ds.scores[rows])
    assert [m["name"] for m in card["llms"][: ds.n_models]] == ds.models
    np.testing.assert_allclose(r.costs[: ds.n_models], ds.model_cost)
    for f in ("encoder.npz", "router.npz", "reserve.npz", "profiles.npz"):
        with np.load(scenario["dir"] / f, allow_pickle=False) as z:
            assert all(z[k].dtype != object for k in z.files)


# --------------------------------------------------------------------------------------------
# refusals: one line, exit 2, the directory unchanged
# --------------------------------------------------------------------------------------------
def _bad_answers(tmp: Path, sc: dict) -> dict[str, Path]:
    ans = pd.read_csv(sc["answers"], dtype={"prompt_id": str})
    files = {}

    def put(name: str, df: pd.DataFrame | None = None, raw: bytes | None = None) -> None:
        p = tmp / name
        if raw is not None:
            p.write_bytes(raw)
        else:
            df.to_csv(p, index=False)
        files[name] = p

    put("unknown.csv", pd.concat([ans, pd.DataFrame({"prompt_id": ["no-such-prompt"], "score": [1.0]})]))
    train_id = sorted(set(load_folder(sc["table"]).prompt_ids) - set(load_router(sc["dir"]).reserve_ids))[0]
    put("training-prompt.csv", pd.concat([ans, pd.DataFrame({"prompt_id": [train_id], "score": [1.0]})]))
    put("few.csv", ans.head(MIN_ANSWERS - 1))
    put("dup.csv", pd.concat([ans, ans.head(1)]))
    put("range.csv", ans.assign(score=np.where(np.arange(len(ans)) == 3, 1.5, ans["score"])))
    put("text.csv", ans.assign(score=ans["score"].astype(str).where(np.arange(len(ans)) != 2, "yes")))
    put("missing.csv", ans.assign(score=ans["score"].where(np.arange(len(ans)) != 5, np.nan)))
    put("nocol.csv", ans.rename(columns={"score": "correct"}))
    put("empty.csv", raw=b"")
    put("latin1.csv", raw="prompt_id,score\ncaf\xe9,1\n".encode("latin-1"))
    put("broken.csv", raw=b'prompt_id,score\n"unterminated,1\n')
    put("fields.csv", raw=b"prompt_id,score\na,1\nb,1,2,3\n")
    put("answers.txt", ans)
    return files


def refusals(sc: dict, tmp: Path) -> list[tuple[list, str]]:
    d, a = sc["dir"], sc["answers"]
    bad = _bad_answers(tmp, sc)
    held = sc["held"]
    (tmp / "notext.csv").write_text("prompt_id,text\na,hello\nb,\n")
    (tmp / "noid.jsonl").write_text(json.dumps({"text": "hello"}) + "\n")
    held.head(3).assign(prompt_id="same").to_csv(tmp / "dupid.csv", index=False)
    add = ["router", "add-llm", d, "--model", "new-llm", "--cost", "0.001", "--answers"]
    route = ["router", "route", d, "--prompts", sc["prompts"], "--out", tmp / "r.jsonl"]
    return [
        (["router", "add-llm", d, "--model", NEW_LLM, "--cost", "0.005", "--answers", a], "already in this router"),
        (["router", "add-llm", d, "--model", "claude-v1", "--cost", "0.005", "--answers", a], "already in"),
        (["router", "add-llm", d, "--model", " ", "--cost", "0.005", "--answers", a], "non-empty"),
        (["router", "add-llm", d, "--model", "x", "--cost", "0", "--answers", a], "positive number"),
        (["router", "add-llm", d, "--model", "x", "--cost", "-1", "--answers", a], "positive number"),
        (["router", "add-llm", d, "--model", "x", "--cost", "nan", "--answers", a], "positive number"),
        (["router", "add-llm", d, "--model", "x", "--cost", "inf", "--answers", a], "positive number"),
        (add + [bad["unknown.csv"]], "'no-such-prompt' is not a probe prompt"),
        (add + [bad["training-prompt.csv"]], "is not a probe prompt"),
        (add + [bad["few.csv"]], f"at least {MIN_ANSWERS}"),
        (add + [bad["dup.csv"]], "duplicate prompt_id"),
        (add + [bad["range.csv"]], "line 5: score outside [0, 1] (got 1.5)"),
        (add + [bad["text.csv"]], "line 4: score is not a number"),
        (add + [bad["missing.csv"]], "line 7: score is missing"),
        (add + [bad["nocol.csv"]], "missing column(s) score"),
        (add + [bad["empty.csv"]], "is empty"),
        (add + [bad["latin1.csv"]], "latin1.csv: line 2 (byte 19): is not valid UTF-8"),
        (add + [bad["broken.csv"]], 'broken.csv: line 2: a quoted field opens (") and is never closed'),
        (add + [bad["fields.csv"]], "fields.csv: cannot be read as csv"),
        (add + [bad["answers.txt"]], "unknown format .txt"),
        (add + [tmp / "nope.csv"], "file not found"),
        (["router", "remove-llm", d, "--model", "no-such-llm"], "is not in this router"),
        (route + ["--lambda", "0", "--mean-cost", "0.001"], "at most one of"),
        (route, "give one of --lambda, --mean-cost, --min-quality, or --max-cost"),
        (route + ["--lambda", "-1"], ">= 0"),
        (route + ["--mean-cost", "0.00001"], "below the cheapest LLM's cost"),
        (route + ["--max-cost", "0.00001"], "--max-cost 1e-05: no LLM costs that little"),
        (route + ["--lambda", "0", "--pool", "claude-v1", "--max-cost", "0.001"], "no LLM of the pool costs"),
        (route + ["--min-quality", "0.999"], "above the best estimated quality"),
        (route + ["--min-quality", "2"], "in [0, 1]"),
        (route + ["--lambda", "0", "--pool", "claude-v1,gpt-5"], "unknown LLM(s) gpt-5"),
        (route + ["--lambda", "0", "--pool", " , "], "expected LLM names separated by commas"),
        (["router", "route", d, "--prompts", tmp / "notext.csv", "--lambda", "0"], "line 3: prompt without text"),
        (["router", "route", d, "--prompts", tmp / "noid.jsonl", "--lambda", "0"], "missing column(s) prompt_id"),
        (["router", "route", d, "--prompts", tmp / "dupid.csv", "--lambda", "0"], "line 3: duplicate prompt_id"),
        (["router", "probes", d, "-n", "100000"], "candidate probe prompts"),
        (["router", "probes", d, "-n", "10", "--strategy", "clever"], "unknown probe strategy"),
        (["router", "build", "--dataset", sc["table"], "--router", "clairvoyant-mlp", "--out", tmp / "x"],
         "must be dynamic"),
        (["router", "build", "--dataset", sc["table"], "--out", d], "exists and is not empty"),
        (["router", "build", "--dataset", sc["table"], "--probe-reserve", "1.5", "--out", tmp / "y"],
         "--probe-reserve"),
        (["router", "build", "--dataset", sc["table"], "--param", "knn.k=5", "--out", tmp / "z"], "--param given"),
    ]


def test_every_refusal_is_one_line_exit_2_and_leaves_the_directory_unchanged(scenario, tmp_path):
    sc = scenario
    before = dir_hash(sc["dir"])
    for args, expected in refusals(sc, tmp_path):
        res = run(*args)
        assert res.exit_code == 2, (args, res.output)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, res.stderr)
        assert expected in lines[0], (expected, lines[0])
        assert "Traceback" not in res.output
        assert dir_hash(sc["dir"]) == before, args
    assert sorted(p.name for p in sc["dir"].parent.iterdir() if p.name.startswith(f".{sc['dir'].name}")) == []


def _damage(d: Path, how: str) -> None:
    import yaml

    card = yaml.safe_load((d / "router.yaml").read_text())
    if how == "card-alias":
        (d / "router.yaml").write_text("a: &x [1]\nb: *x\n")
    elif how == "card-list":
        (d / "router.yaml").write_text("- 1\n- 2\n")
    elif how == "cost":
        card["llms"][0]["cost"] = -1
        (d / "router.yaml").write_text(yaml.safe_dump(card))
    elif how == "twice":
        card["llms"][1]["name"] = card["llms"][0]["name"]
        (d / "router.yaml").write_text(yaml.safe_dump(card))
    elif how == "version":
        card["format_version"] = 99
        (d / "router.yaml").write_text(yaml.safe_dump(card))
    elif how == "npz-garbage":
        (d / "profiles.npz").write_bytes(b"PK\x03\x04 not really a zip")
    elif how == "npz-pickle":
        np.savez(d / "reserve.npz", X=np.array([{"a": 1}], dtype=object))
    elif how == "npz-missing":
        (d / "router.npz").unlink()
    elif how == "reserve-json":
        (d / "reserve.json").write_text(json.dumps([1, 2, 3]))
    elif how == "reserve-short":
        r = json.loads((d / "reserve.json").read_text())
        (d / "reserve.json").write_text(json.dumps({"prompt_ids": r["prompt_ids"][:-1], "texts": None}))
    elif how == "errors-range":
        z = dict(np.load(d / "profiles.npz"))
        z["errors"][0, 0] = 7.0
        np.savez(d / "profiles.npz", **z)
    elif how in ("router-shape", "router-nan"):  # arrays keep their names, lose their fit to the card
        z = dict(np.load(d / "router.npz"))
        floats = [k for k, v in z.items() if v.dtype.kind == "f"]
        assert floats
        for k in floats:
            z[k] = z[k][..., :1] if how == "router-shape" else np.full_like(z[k], np.nan)
        np.savez(d / "router.npz", **z)
    elif how == "param-range":
        meta = json.loads((d / "router.json").read_text())
        key = next(k for k in ("alpha", "k") if k in meta)
        meta[key] = -5.0
        (d / "router.json").write_text(json.dumps(meta))
    elif how == "encoder":
        (d / "encoder.json").write_text(json.dumps({"encoder": "tfidf", "dim": 3}))
    elif how == "fifo":
        (d / "router.json").unlink()
        os.mkfifo(d / "router.json")


@pytest.mark.parametrize("how", ["card-alias", "card-list", "cost", "twice", "version", "npz-garbage", "npz-pickle",
                                 "npz-missing", "reserve-json", "reserve-short", "errors-range", "encoder", "fifo",
                                 "router-shape", "router-nan", "param-range"])
def test_a_damaged_router_directory_is_one_line(scenario, tmp_path, how):
    d = shutil.copytree(scenario["dir"], tmp_path / "r")
    _damage(d, how)
    for args in (["router", "info", d], ["router", "route", d, "--prompts", scenario["prompts"], "--lambda", "0"],
                 ["router", "remove-llm", d, "--model", "claude-v1"]):
        before = dir_hash(d) if how != "fifo" else None
        res = run(*args)
        assert res.exit_code == 2, (how, res.output)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and str(d) in lines[0], (how, res.stderr)
        if before is not None:
            assert dir_hash(d) == before


def test_a_fifo_as_prompts_or_answers_is_refused(scenario, tmp_path):
    fifo = tmp_path / "p.csv"
    os.mkfifo(fifo)
    for args in (["router", "route", scenario["dir"], "--prompts", fifo, "--lambda", "0"],
                 ["router", "add-llm", scenario["dir"], "--model", "x", "--cost", "1", "--answers", fifo]):
        res = run(*args)
        assert res.exit_code == 2 and "FIFO" in res.stderr, res.output


def test_add_remove_roundtrip_and_atomic_swap(scenario, tmp_path):
    d = shutil.copytree(scenario["dir"], tmp_path / "r")
    before = load_router(d)
    res = run("router", "remove-llm", d, "--model", NEW_LLM)
    assert res.exit_code == 0, res.output
    after = load_router(d)
    assert after.models == before.models[:-1]
    np.testing.assert_array_equal(after.errors, before.errors[:, :-1])
    # removing a table LLM works too (a dynamic router needs only the pool's answers) ...
    assert run("router", "remove-llm", d, "--model", "claude-v2").exit_code == 0
    # ... and the router without the new LLM is the router as built, minus claude-v2
    built = load_router(scenario["dir"])
    np.testing.assert_array_equal(load_router(d).errors, np.delete(built.errors[:, :-1], built.models.index(
        "claude-v2"), axis=1))
    res = run("router", "add-llm", d, "--model", NEW_LLM, "--cost", scenario["cost"], "--answers", scenario["answers"])
    assert res.exit_code == 0
    assert load_router(d).models[-1] == NEW_LLM
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".r.")]  # no staging or old copy left


def test_a_second_writer_and_a_stale_copy_are_refused(scenario, tmp_path):
    d = shutil.copytree(scenario["dir"], tmp_path / "r")
    before = dir_hash(d)
    fd = os.open(d, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        res = run("router", "remove-llm", d, "--model", "claude-v2")
        assert res.exit_code == 2 and "another process" in res.stderr
    finally:
        os.close(fd)
    assert dir_hash(d) == before
    r1, r2 = load_router(d), load_router(d)
    r1.remove_llm("claude-v2")
    r1.save()
    r2.remove_llm("claude-v1")
    with pytest.raises(RouterDirError, match="changed by another process"):
        r2.save()
    assert "claude-v1" in load_router(d).models and "claude-v2" not in load_router(d).models


def test_interrupted_swap_is_explained(scenario, tmp_path):
    d = shutil.copytree(scenario["dir"], tmp_path / "r")
    os.rename(d, tmp_path / ".r.old-12345")
    res = run("router", "info", d)
    assert res.exit_code == 2 and "rename it to" in res.stderr
    res = run("router", "info", tmp_path)
    assert res.exit_code == 2 and "not a router directory" in res.stderr


def test_python_api(scenario, tmp_path):
    import unirouter_cli

    r = unirouter_cli.load_router(str(scenario["dir"]))
    texts = ["Write a Python function that returns the factorial of n.",
             "Which gas do plants absorb from the air? A) oxygen B) carbon dioxide C) helium D) neon"]
    out = r.route(texts, lam=0.0)
    assert [d["prompt_id"] for d in out] == ["0", "1"] and all(d["model"] in r.models for d in out)
    assert r.route(texts, pool=["claude-v1"], max_cost=1.0)[0]["model"] == "claude-v1"
    ans = pd.read_csv(scenario["answers"], dtype={"prompt_id": str})
    r.add_llm("twin", 0.004, dict(zip(ans["prompt_id"], ans["score"], strict=True)))
    assert r.models[-1] == "twin"
    with pytest.raises(ConfigError, match="already in this router"):
        r.add_llm("twin", 0.004, ans)
    saved = r.save(tmp_path / "copy")
    again = load_router(saved)
    assert again.models == r.models
    np.testing.assert_array_equal(again.errors[:, -1], again.errors[:, -2])  # same answers as the new LLM
    assert again.route(texts, lam=0.0) == r.route(texts, lam=0.0)
    again.remove_llm("twin")
    again.save()
    assert load_router(saved).models == load_router(scenario["dir"]).models
    assert dir_hash(scenario["dir"]) != scenario["built_hash"]  # (the scenario router has the added LLM)


def test_pool_names_holding_commas(scenario, tmp_path):
    """`--pool` is comma-separated, yet an LLM whose name holds commas can be named (longest known match)."""
    r = load_router(scenario["dir"])
    ans = pd.read_csv(scenario["answers"], dtype={"prompt_id": str})
    r.add_llm("acme/chat,v2", 0.004, dict(zip(ans["prompt_id"], ans["score"], strict=True)))
    assert r.parse_pool("claude-v1, acme/chat,v2") == ["claude-v1", "acme/chat,v2"]
    assert r.parse_pool("acme/chat,v2,claude-v1") == ["acme/chat,v2", "claude-v1"]
    assert r.parse_pool("acme/chat") == ["acme/chat"]  # not a name: left for the pool check to refuse
    with pytest.raises(ConfigError, match="unknown LLM"):
        r.route(["a prompt"], lam=0.0, pool=r.parse_pool("acme/chat"))
    r.save(tmp_path / "commas")
    (tmp_path / "p.csv").write_text("prompt_id,text\n1,What is 2+2?\n")
    res = run("router", "route", tmp_path / "commas", "--prompts", tmp_path / "p.csv", "--lambda", "0",
              "--pool", "acme/chat,v2")
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout.splitlines()[0])["model"] == "acme/chat,v2"


def test_info_command(scenario):
    res = run("router", "info", scenario["dir"], "--json")
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    new = [m for m in d["llms"] if m["name"] == NEW_LLM][0]
    assert new["origin"] == "added" and new["answers"] >= 99 and 0.8 < new["accuracy_on_answers"] <= 1
    assert d["curve"]["cheapest"]["cost"] < d["curve"]["lambda_0"]["cost"]
    res = run("router", "info", scenario["dir"])
    assert res.exit_code == 0 and "uniroute-kmeans" in res.stdout and "added" in res.stdout


# --------------------------------------------------------------------------------------------
# encoders and probes
# --------------------------------------------------------------------------------------------
def test_tfidf_state_reproduces_scikit_learn_and_roundtrips(tmp_path):
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = pd.read_parquet(SRC / "prompts.parquet")["text"].tolist()
    enc = TfidfEncoder().fit(texts[:2000])
    new = texts[2000:] + ["", "the and of", "Straße naïve café ÄÖÜ", "x" * 5000]
    vec = TfidfVectorizer(sublinear_tf=True, stop_words=enc.stop_words_, dtype=np.float32,
                          vocabulary={t: i for i, t in enumerate(enc.vocabulary_)})
    vec.idf_ = enc.idf_
    np.testing.assert_allclose(enc._tfidf(new).toarray(), vec.transform(new).toarray(), atol=1e-6)
    save_encoder(enc, tmp_path / "e.json", tmp_path / "e.npz")
    back = load_encoder(tmp_path / "e.json", tmp_path / "e.npz")
    np.testing.assert_array_equal(back.transform(new), enc.transform(new))
    assert np.all(back.transform([""]) == 0)
    # the trial loop's embeddings are this encoder's transform of the texts
    from unirouter_cli.embed.encoders import get_embeddings

    ds = load_folder(SRC)
    np.testing.assert_allclose(get_embeddings(ds, "tfidf"), make_encoder("tfidf").fit(texts).transform(texts),
                               atol=1e-5)
    with pytest.raises(ConfigError, match="cannot embed new texts"):
        make_encoder("precomputed").transform(["a"])


def test_bundled_mmlu_pro_builds_and_routes_offline(tmp_path):
    out = tmp_path / "mmlu"
    res = run("router", "build", "--dataset", "mmlu-pro", "--router", "uniroute-kmeans", "--out", out)
    assert res.exit_code == 0, res.output
    assert "unirouter download mmlu-pro" in res.stderr
    res = run("router", "probes", out, "-n", 5, "--out", tmp_path / "p.csv")
    assert res.exit_code == 0 and "unirouter download mmlu-pro" in res.stderr
    probes = pd.read_csv(tmp_path / "p.csv", dtype={"prompt_id": str}, keep_default_na=False)
    assert len(probes) == 5 and (probes["text"] == "").all() and probes["prompt_id"].str.len().gt(0).all()
    (tmp_path / "q.csv").write_text("prompt_id,text\nq1,What is the derivative of x^2 with respect to x?\n"
                                    "q2,Which court case established judicial review in the United States?\n")
    res = run("router", "route", out, "--prompts", tmp_path / "q.csv", "--min-quality", "0.6")
    assert res.exit_code == 0, res.output
    lines = [json.loads(x) for x in res.stdout.splitlines() if x.startswith("{")]
    assert [d["prompt_id"] for d in lines] == ["q1", "q2"]
    r = load_router(out)
    assert r.card["encoder"]["name"] == "tfidf" and len(r.encoder.vocabulary_) == 10_000


def test_a_minilm_router_built_without_the_embed_extra_says_routing_needs_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # an import of it now fails
    out = tmp_path / "mm"
    res = run("router", "build", "--dataset", "mmlu-pro", "--router", "zero", "--encoder", "minilm", "--out", out)
    assert res.exit_code == 0, res.output
    assert "needs the 'embed' extra, which this environment lacks (in the unirouter clone, `make install-embed`" in (
        res.stderr), res.stderr
    (tmp_path / "q.csv").write_text("prompt_id,text\nq1,What is 2 + 2?\n")
    res = run("router", "route", out, "--prompts", tmp_path / "q.csv", "--lambda", "0")
    assert res.exit_code == 2 and "`make install-embed`" in res.output and "Traceback" not in res.output, res.output


@needs_shared
def test_shipped_mmlu_pro_embeddings_are_the_shipped_encoders_transform():
    ds = load_folder(SHARED / "data" / "mmlu-pro")
    emb = BUNDLED_DIR / "mmlu-pro" / "embeddings"
    enc = load_encoder(emb / "tfidf.state.json", emb / "tfidf.state.npz")
    shipped = np.load(emb / "tfidf.npy")
    assert shipped.dtype == np.float16 and enc.components_.dtype == np.float16
    Z = enc.transform([str(t) for t in ds.texts])
    np.testing.assert_array_equal(Z.astype(np.float16), shipped)
    import yaml

    index = yaml.safe_load((emb / "index.yaml").read_text())
    assert index["tfidf"]["prompt_ids_sha256"] == ids_hash(ds.prompt_ids)


def test_precomputed_router_refuses_to_embed_new_texts(tmp_path, small_dataset):
    ds = load_folder(small_dataset)
    (small_dataset / "embeddings").mkdir()
    np.save(small_dataset / "embeddings" / "precomputed.npy", TfidfEncoder().fit_transform(list(ds.texts)))
    res = run("router", "build", "--dataset", small_dataset, "--encoder", "precomputed", "--router", "knn",
              "--out", tmp_path / "r")
    assert res.exit_code == 0, res.output
    assert run("router", "probes", tmp_path / "r", "-n", 20).exit_code == 0
    (tmp_path / "q.csv").write_text("prompt_id,text\nq1,hello\n")
    before = dir_hash(tmp_path / "r")
    res = run("router", "route", tmp_path / "r", "--prompts", tmp_path / "q.csv", "--lambda", "0")
    assert res.exit_code == 2 and "cannot embed new texts" in res.stderr
    assert dir_hash(tmp_path / "r") == before


def test_package_import_stays_light():
    code = "import sys, unirouter_cli; assert callable(unirouter_cli.load_router); " \
           "print(sorted(m for m in ('numpy', 'pandas', 'sklearn', 'scipy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_probes_can_export_an_llms_answers(scenario, tmp_path):
    out = tmp_path / "a.csv"
    res = run("router", "probes", scenario["dir"], "--number", 288, "--answers-of", NEW_LLM, "--out", out)
    assert res.exit_code == 0, res.output
    got = pd.read_csv(out, dtype={"prompt_id": str}).set_index("prompt_id")
    want = pd.read_csv(scenario["answers"], dtype={"prompt_id": str}).set_index("prompt_id")
    assert list(got.columns) == ["text", "score"] and set(got.index) == set(want.index)
    assert (got.loc[want.index, "score"] == want["score"]).all()
    res = run("router", "probes", scenario["dir"], "-n", 5, "--answers-of", "gpt-5")
    assert res.exit_code == 2 and "not in this router" in res.stderr


def test_quiet_silences_the_closing_ok_lines(scenario, tmp_path):
    """-q: no informational output, the closing `ok: <file>` lines included; what the command writes is the same."""
    sc = scenario
    args = ["router", "route", sc["dir"], "--prompts", sc["prompts"], "--lambda", 30]
    loud = run(*args, "--out", tmp_path / "loud.jsonl")
    quiet = run("-q", *args, "--out", tmp_path / "quiet.jsonl")
    assert loud.exit_code == 0 and f"ok: {tmp_path / 'loud.jsonl'}" in loud.output.splitlines(), loud.output
    assert quiet.exit_code == 0 and quiet.output == "", quiet.output
    assert (tmp_path / "loud.jsonl").read_bytes() == (tmp_path / "quiet.jsonl").read_bytes()
    res = run("-q", "router", "probes", sc["dir"], "-n", 10, "--seed", 0, "--out", tmp_path / "p.csv")
    assert res.exit_code == 0 and res.output == "" and (tmp_path / "p.csv").stat().st_size > 0, res.output
