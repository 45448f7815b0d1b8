"""Hostile router directories and the files around them, run through the real CLI.

A router directory owns only its own files (``--force`` replaces only a router directory; updates keep
every file they do not own); a directory whose files were edited, swapped in from another router, or hold
values no build writes (NaN, infinity, float64 beyond float32) is refused at load in one line; a damaged
card is refused in one line. Every case runs through ``tests.test_hostile.run_attack``: exit code, no
traceback, one ``error:`` line, nothing outside the allowed folders changed.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from unirouter_cli.cli import app
from unirouter_cli.serving.store import MANIFEST, write_manifest

from .test_hostile import Attack, make_dataset, run_attack

_BUILT: dict[str, Path] = {}


def _cli(*args: object) -> str:
    res = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output


@pytest.fixture(scope="session")
def routers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two routers built on two different small tables (same shapes), and a knn router on the first."""
    base = tmp_path_factory.mktemp("hostile-routers")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UNIROUTER_HOME", str(base / "home"))
        ds = make_dataset(base / "ds")
        other = make_dataset(base / "ds-other")
        rng = np.random.default_rng(7)
        import pandas as pd

        o = pd.read_parquet(other / "outcomes.parquet")
        o["score"] = (rng.random(len(o)) < 0.5).astype(float)
        o.to_parquet(other / "outcomes.parquet", index=False)
        p = pd.read_parquet(other / "prompts.parquet")
        p["text"] = [f"{t} and a note on topic {i % 7}" for i, t in enumerate(p["text"])]
        p.to_parquet(other / "prompts.parquet", index=False)
        for name, d, extra in (("a", ds, []), ("b", other, []), ("knn", ds, ["--router", "knn"])):
            _cli("router", "build", "--dataset", d, "--out", base / name, "--probe-reserve", 40, *extra)
    _BUILT.update(a=base / "a", b=base / "b", knn=base / "knn")
    return dict(_BUILT)


def rcopy(t: Path, which: str = "a") -> Path:
    shutil.copytree(_BUILT[which], t / "out")
    return t / "out"


def reserve_ids(d: Path) -> list[str]:
    return json.loads((d / "reserve.json").read_text())["prompt_ids"]


def answers(t: Path, d: Path) -> Path:
    """Alternating 1/0 scores on every probe prompt of ``d``."""
    ids = reserve_ids(d)
    scores = [1 - k % 2 for k in range(len(ids))]
    p = t / "answers.csv"
    p.write_text("prompt_id,score\n" + "".join(f"{i},{s}\n" for i, s in zip(ids, scores, strict=False)))
    return p


def user_folder(t: Path) -> Path:
    u = t / "user"
    (u / "src").mkdir(parents=True)
    (u / "thesis.tex").write_text("\\section{results}\n")
    (u / "src" / "main.c").write_text("int main(void) { return 0; }\n")
    return u


# --------------------------------------------------------------------------------------------
# a router directory owns only its own files
# --------------------------------------------------------------------------------------------
def _force_into(prepare: Callable[[Path], Path]) -> Callable[[Path], list]:
    def build(t: Path) -> list:
        return ["router", "build", "--dataset", make_dataset(t / "ds"), "--force", "--out", prepare(t)]
    return build


def _with_card_copy(t: Path) -> Path:
    u = user_folder(t)
    shutil.copy(_BUILT["a"] / "router.yaml", u / "router.yaml")
    return u


def _with_notes_card(t: Path) -> Path:
    u = user_folder(t)
    (u / "router.yaml").write_text("notes: my own router notes\n")
    return u


def _link_to_router_copy(t: Path) -> Path:
    shutil.copytree(_BUILT["a"], t / "user" / "r")
    (t / "link").symlink_to(t / "user" / "r")
    return t / "link"


OWNERSHIP = [
    Attack("force-folder-holding-a-router-yaml", _force_into(_with_notes_card), "not a router directory",
           may_change=["ds"]),
    Attack("force-folder-holding-a-copied-card", _force_into(_with_card_copy), "lacks the router file",
           may_change=["ds"]),
    Attack("force-out-is-a-symbolic-link", _force_into(_link_to_router_copy), "symbolic link",
           may_change=["ds"]),
]


@pytest.mark.parametrize("attack", OWNERSHIP, ids=lambda a: a.name)
def test_force_replaces_only_a_router_directory(attack: Attack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                routers: dict) -> None:
    run_attack(attack, tmp_path, monkeypatch)
    assert (tmp_path / "user" / "src" / "main.c").exists() or (tmp_path / "user" / "r" / "router.yaml").exists()


def _plant(d: Path) -> None:
    (d / "NOTES.txt").write_text("my notes\n")
    (d / "routes.jsonl").write_text('{"prompt_id": "q1", "model": "m1"}\n')
    (d / "mine").mkdir()
    (d / "mine" / "x.txt").write_text("x\n")
    (d / f".{d.name}.notes").write_text("hidden\n")  # a dot file named like the directory
    os.mkfifo(d / "pipe")


def _planted_intact(d: Path) -> bool:
    return ((d / "NOTES.txt").read_text() == "my notes\n" and (d / "mine" / "x.txt").read_text() == "x\n"
            and (d / "routes.jsonl").exists() and (d / f".{d.name}.notes").read_text() == "hidden\n"
            and stat.S_ISFIFO((d / "pipe").lstat().st_mode))


@pytest.mark.parametrize("command", ["add-llm", "remove-llm", "build --force"])
def test_updates_keep_every_file_they_do_not_own(command: str, tmp_path: Path, routers: dict) -> None:
    d = rcopy(tmp_path)
    _plant(d)
    args = {"add-llm": ["router", "add-llm", d, "--model", "new", "--cost", "1", "--answers",
                        answers(tmp_path, d)],
            "remove-llm": ["router", "remove-llm", d, "--model", "m1"],
            "build --force": ["router", "build", "--dataset", make_dataset(tmp_path / "ds"), "--force", "--out", d]}
    _cli(*args[command])
    assert _planted_intact(d)
    assert (d / MANIFEST).is_file()
    _cli("router", "route", d, "--prompts", _prompts(tmp_path), "--lambda", "0")


def test_build_force_refuses_a_users_file_with_a_name_the_new_router_writes(tmp_path: Path, routers: dict) -> None:
    d = rcopy(tmp_path)
    (d / "references.csv").write_text("my own file\n")  # the card does not list it: it is the user's
    ds = make_dataset(tmp_path / "ds")
    ids = pd.read_parquet(ds / "prompts.parquet")["prompt_id"]
    pd.DataFrame({"prompt_id": ids, "answer": "A", "rule": "choice"}).to_csv(ds / "references.csv", index=False)
    res = CliRunner().invoke(app, ["router", "build", "--dataset", str(ds), "--force", "--out", str(d)])
    assert res.exit_code == 2 and "references.csv: not the router's" in res.output, res.output
    assert (d / "references.csv").read_text() == "my own file\n"


def test_out_is_written_through_a_link_or_fifo_and_never_replaces_it(tmp_path: Path, routers: dict) -> None:
    target = tmp_path / "real.jsonl"
    (tmp_path / "link.jsonl").symlink_to(target)
    os.mkfifo(tmp_path / "fifo")
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append((tmp_path / "fifo").read_bytes()))
    reader.start()
    for out in ("link.jsonl", "fifo"):
        _cli("router", "route", _BUILT["a"], "--prompts", _prompts(tmp_path), "--lambda", "0",
             "--out", tmp_path / out)
    reader.join(timeout=60)
    assert (tmp_path / "link.jsonl").is_symlink() and len(target.read_text().splitlines()) == 2
    assert stat.S_ISFIFO((tmp_path / "fifo").lstat().st_mode) and got and got[0].count(b"\n") == 2


@pytest.mark.parametrize("case", ["prompts", "router card", "directory"])
def test_out_that_is_an_input_the_router_or_a_directory_is_refused(case: str, tmp_path: Path,
                                                                   routers: dict) -> None:
    d, prompts = rcopy(tmp_path), _prompts(tmp_path)
    before = {p: p.read_bytes() for p in [prompts, *d.iterdir()] if p.is_file()}
    out, want = {"prompts": (prompts, "is an input of this command"),
                 "router card": (d / "router.yaml", "inside the router directory"),
                 "directory": (tmp_path, "is a directory")}[case]
    res = CliRunner().invoke(app, ["router", "route", str(d), "--prompts", str(prompts), "--lambda", "0",
                                   "--out", str(out)])
    assert res.exit_code == 2 and f"--out {out}: {want}" in res.output, res.output
    assert len([ln for ln in res.output.splitlines() if ln.strip()]) == 1, res.output
    assert all(p.read_bytes() == b for p, b in before.items())


def _prompts(t: Path) -> Path:
    p = t / "prompts.csv"
    p.write_text("prompt_id,text\nq1,a question about algebra\nq2,a poem about history\n")
    return p


# --------------------------------------------------------------------------------------------
# tampered router directories: refused at load, in one line
# --------------------------------------------------------------------------------------------
def _npz(name: str, fn: Callable[[dict], None]) -> Callable[[Path], None]:
    def mutate(d: Path) -> None:
        z = dict(np.load(d / name, allow_pickle=False))
        fn(z)
        np.savez(d / name, **z)
    return mutate


def _set(key: str, value: Callable[[np.ndarray], np.ndarray]) -> Callable[[dict], None]:
    return lambda z: z.__setitem__(key, value(z[key]))


def _nan_at_0(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a.flat[0] = np.nan
    return a


def _card(fn: Callable[[dict], None]) -> Callable[[Path], None]:
    def mutate(d: Path) -> None:
        c = yaml.safe_load((d / "router.yaml").read_text())
        fn(c)
        (d / "router.yaml").write_text(yaml.safe_dump(c, sort_keys=False))
    return mutate


def _swap(name: str) -> Callable[[Path], None]:
    return lambda d: shutil.copy(_BUILT["b"] / name, d / name)


def _json_file(name: str, fn: Callable[[dict], None]) -> Callable[[Path], None]:
    def mutate(d: Path) -> None:
        z = json.loads((d / name).read_text())
        fn(z)
        (d / name).write_text(json.dumps(z))
    return mutate


# (name, mutation, expected words); each runs twice: as is (the manifest catches it) and with the manifest
# rewritten to match (the load checks catch it on their own)
TAMPERED: list[tuple[str, Callable[[Path], None], str]] = [
    ("encoder-npz-nan", _npz("encoder.npz", _set("components", _nan_at_0)), "NaN or infinite"),
    ("encoder-npz-inf", _npz("encoder.npz", _set("idf", lambda a: np.full_like(a, np.inf))), "NaN or infinite"),
    ("encoder-npz-float64-1e300", _npz("encoder.npz", _set("components", lambda a: np.full(a.shape, 1e300))),
     "NaN or infinite"),
    ("router-npz-float64-1e300", _npz("router.npz", _set("centroids", lambda a: np.full(a.shape, 1e300))),
     "NaN or infinite"),
    ("reserve-npz-nan", _npz("reserve.npz", _set("X", lambda a: np.full_like(a, np.nan))), "NaN or infinite"),
    ("profiles-all-nan", _npz("profiles.npz", _set("errors", lambda a: np.full_like(a, np.nan))), "no answered"),
    ("profiles-float64-1e300", _npz("profiles.npz", _set("errors", lambda a: np.full(a.shape, 1e300))),
     "errors outside [0, 1]"),
    ("profiles-llms-renamed", _npz("profiles.npz", _set("models", lambda a: np.array(["a", "b", "c", "d"]))),
     "other LLMs"),
    ("card-llm-renamed", _card(lambda c: c["llms"][0].__setitem__("name", "zz")), "other LLMs"),
    ("card-router-other-than-state", _card(lambda c: c["router"].__setitem__("name", "knn")), "router.json"),
    ("card-hyperparameters-other-than-state", _card(lambda c: c["router"]["hyperparams"].__setitem__("K", 3)),
     "hyperparameters"),
    ("card-encoder-dim-other-than-state", _card(lambda c: c["encoder"].__setitem__("dim", 500)), "dim"),
    ("card-reserve-size-other-than-state", _card(lambda c: c["reserve"].__setitem__("prompts", 5)), "reserve"),
    ("card-n-prompts-other-than-reserve", _card(lambda c: c["dataset"].__setitem__("n_prompts", 7)),
     "dataset.n_prompts = 7"),
    ("card-answers-other-than-profiles", _card(lambda c: c["llms"][0].__setitem__("answers", 3)), "answers"),
    ("reserve-json-duplicate-ids", _json_file("reserve.json", lambda z: z["prompt_ids"].__setitem__(
        1, z["prompt_ids"][0])), "twice"),
    ("knn-state-in-a-kmeans-directory", lambda d: [shutil.copy(_BUILT["knn"] / f, d / f)
                                                    for f in ("router.json", "router.npz")], "router.json"),
]
SWAPPED = ["encoder.json", "encoder.npz", "router.npz", "reserve.json", "reserve.npz", "profiles.npz"]


def _tamper_attack(mutate: Callable[[Path], None], expect: str, rewrite_manifest: bool) -> Callable[[Path], list]:
    def build(t: Path) -> list:
        d = rcopy(t)
        mutate(d)
        if rewrite_manifest:
            write_manifest(d, yaml.safe_load((d / "router.yaml").read_text()))
        return ["router", "route", d, "--prompts", _prompts(t), "--lambda", "0"]
    return build


@pytest.mark.parametrize("rewrite", [False, True], ids=["manifest-as-written", "manifest-rewritten"])
@pytest.mark.parametrize("case", TAMPERED, ids=lambda c: c[0])
def test_tampered_router_directory_is_refused_at_load(case: tuple, rewrite: bool, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch, routers: dict) -> None:
    name, mutate, expect = case
    out = run_attack(Attack(name, _tamper_attack(mutate, expect, rewrite), None if not rewrite else expect),
                     tmp_path, monkeypatch)
    assert out.startswith("error:") or "\nerror:" in out
    if not rewrite:
        assert "manifest.json" in out or expect in out


@pytest.mark.parametrize("name", SWAPPED)
def test_a_file_swapped_in_from_a_router_of_another_table_is_refused(name: str, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    routers: dict) -> None:
    run_attack(Attack(f"swap-{name}", _tamper_attack(_swap(name), "", False), f"{name}: does not match"),
               tmp_path, monkeypatch)


def test_add_llm_does_not_write_back_a_tampered_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     routers: dict) -> None:
    def build(t: Path) -> list:
        d = rcopy(t)
        _npz("encoder.npz", _set("components", _nan_at_0))(d)
        write_manifest(d, yaml.safe_load((d / "router.yaml").read_text()))
        return ["router", "add-llm", d, "--model", "new", "--cost", "1", "--answers", answers(t, d)]

    run_attack(Attack("add-llm-on-nan-encoder", build, "NaN or infinite", may_change=[]), tmp_path, monkeypatch)


DAMAGED_CARDS = [
    ("dataset-null", _card(lambda c: c.__setitem__("dataset", None)), "dataset"),
    ("dataset-name-a-list", _card(lambda c: c["dataset"].__setitem__("name", [1])), "dataset.name"),
    ("reserve-null", _card(lambda c: c.__setitem__("reserve", None)), "reserve"),
    ("seed-text", _card(lambda c: c.__setitem__("seed", "x")), "seed"),
    ("encoder-missing", _card(lambda c: c.pop("encoder")), "encoder"),
    ("format-marker-missing", _card(lambda c: c.pop("format")), "format"),
    ("router-json-deeply-nested", lambda d: (d / "router.json").write_text("[" * 100_000 + "]" * 100_000),
     "router.json"),
    ("reserve-json-empty", _json_file("reserve.json", lambda z: z.update(prompt_ids=[], texts=[])), "reserve"),
    ("reserve-json-deeply-nested", lambda d: (d / "reserve.json").write_text(
        '{"prompt_ids": ' + "[" * 100_000 + "]" * 100_000 + "}"), "reserve.json"),
]


@pytest.mark.parametrize("case", DAMAGED_CARDS, ids=lambda c: c[0])
@pytest.mark.parametrize("command", ["info", "probes"])
def test_damaged_card_or_state_is_one_line(case: tuple, command: str, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch, routers: dict) -> None:
    name, mutate, expect = case

    def build(t: Path) -> list:
        d = rcopy(t)
        mutate(d)
        write_manifest(d, yaml.safe_load((d / "router.yaml").read_text())) if name.startswith(
            ("router-json", "reserve-json")) else None
        return ["router", command, d] + (["-n", "5"] if command == "probes" else [])

    run_attack(Attack(name, build, expect), tmp_path, monkeypatch)


@pytest.mark.parametrize("command", [["router", "info"], ["router", "probes", "-n", "30"]])
def test_a_closed_stdout_ends_quietly_with_the_sigpipe_status(command: list[str], routers: dict) -> None:
    import subprocess
    import sys

    args = [sys.executable, "-m", "unirouter_cli", command[0], command[1], str(_BUILT["a"]), *command[2:]]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the command writes (as `| head` after its lines)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 141 and err == b"", err
