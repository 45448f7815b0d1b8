"""Hostile sizes, tables, names, presets and plug-ins, run through the real CLI.

Sizes that allocate (trials, validation sizes, rows a file declares) are bounded, with a one-line refusal
naming the limit; answers are numbers (not booleans or text) and text columns are strings; names shown on
a terminal have their control characters escaped; preset names are one safe path component inside
``--out``; a plug-in that fails, exits or hangs at import costs one warning line and nothing else.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from unirouter_cli.cli import app
from unirouter_cli.serving.store import write_manifest

from .test_hostile import Attack, make_dataset, run_attack
from .test_hostile_router import _prompts, answers, rcopy, routers  # noqa: F401 - the session fixture

ESC = "\x1b]0;pwned\x07"
pytestmark = pytest.mark.usefixtures("routers")


def _fit(t: Path, *extra: object, cfg: dict | None = None) -> list:
    ds = make_dataset(t / "ds")
    if cfg is not None:
        (t / "c.yaml").write_text(yaml.safe_dump({"dataset": str(ds), "routers": ["zero"], **cfg}))
        return ["fit", "--config", t / "c.yaml", "--run-dir", t / "run"]
    return ["fit", "--dataset", ds, "--run-dir", t / "run", "-r", "zero", *extra]


# --------------------------------------------------------------------------------------------
# bounds on sizes that allocate
# --------------------------------------------------------------------------------------------
BOUNDS = [
    Attack("trials-option-1e9", lambda t: _fit(t, "--trials", 10 ** 9), "UNIROUTER_MAX_TRIALS",
           may_change=["run", "ds"]),
    Attack("trials-config-1e9", lambda t: _fit(t, cfg={"trials": 10 ** 9}), "UNIROUTER_MAX_TRIALS",
           may_change=["run", "ds"]),
    Attack("trials-config-boolean", lambda t: _fit(t, cfg={"trials": True}), "trials", may_change=["run", "ds"]),
    Attack("val-size-1e9", lambda t: _fit(t, "--val-size", 10 ** 9), "val", may_change=["run", "ds"]),
    Attack("val-sizes-5000-entries", lambda t: _fit(t, "--val-sizes", ",".join(map(str, range(1, 5000)))),
           "val", may_change=["run", "ds"]),
    Attack("val-sizes-config-1e12", lambda t: _fit(t, cfg={"val_sizes": [10 ** 12]}), "val",
           may_change=["run", "ds"]),
    Attack("jobs-1e6", lambda t: _fit(t, "--jobs", 10 ** 6, "--trials", 1), "--jobs", may_change=["run", "ds"]),
]


def _into_user_folder(t: Path) -> list:
    (t / "user").mkdir()
    (t / "user" / "thesis.tex").write_text("\\section{results}\n")
    return ["fit", "--dataset", make_dataset(t / "ds"), "--run-dir", t / "user", "--trials", 1, "-r", "zero"]


def test_fit_writes_only_into_a_new_empty_or_run_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_attack(Attack("fit-into-user-folder", _into_user_folder, "holds no run", may_change=["ds"]), tmp_path,
               monkeypatch)
    assert sorted(p.name for p in (tmp_path / "user").iterdir()) == ["thesis.tex"]


def test_prompt_files_are_bounded_in_columns_and_text_length(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def wide(t: Path) -> list:
        (t / "p.csv").write_text("prompt_id,text," + ",".join(f"c{i}" for i in range(5000)) + "\nq1,hi" + ",1" * 5000
                                 + "\n")
        return ["router", "route", rcopy(t), "--prompts", t / "p.csv", "--lambda", "0"]

    def long(t: Path) -> list:
        (t / "p.csv").write_text("prompt_id,text\nq1," + "word " * 250_000 + "\n")
        return ["router", "route", rcopy(t), "--prompts", t / "p.csv", "--lambda", "0"]

    run_attack(Attack("wide-csv", wide, "columns", may_change=["out"]), tmp_path, monkeypatch)
    shutil.rmtree(tmp_path / "out")
    run_attack(Attack("long-text", long, "1,000,000 characters", may_change=["out"]), tmp_path, monkeypatch)


@pytest.mark.parametrize("attack", BOUNDS, ids=lambda a: a.name)
def test_sizes_that_allocate_are_bounded(attack: Attack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_attack(attack, tmp_path, monkeypatch)
    assert not (tmp_path / "run" / "trials").exists()


def _constant_parquet(path: Path, n: int, columns: dict[str, object]) -> Path:
    """A small file declaring ``n`` rows (dictionary-encoded constants)."""
    idx = pa.array(np.zeros(n, dtype=np.int32))
    cols = {k: pa.DictionaryArray.from_arrays(idx, pa.array([v])) for k, v in columns.items()}
    pq.write_table(pa.table(cols), path, compression="zstd")
    return path


def test_rows_a_file_declares_are_bounded_before_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def route(t: Path) -> list:
        p = _constant_parquet(t / "p.parquet", 2_000_000, {"prompt_id": "a", "text": "same text"})
        return ["router", "route", rcopy(t), "--prompts", p, "--lambda", "0"]

    out = run_attack(Attack("route-2M-rows", route, "rows", may_change=["out"]), tmp_path, monkeypatch)
    assert "UNIROUTER_MAX_ROWS" in out

    def add(t: Path) -> list:
        d = rcopy(t)
        p = _constant_parquet(t / "a.parquet", 1_000_000, {"prompt_id": "p1", "score": 1.0})
        return ["router", "add-llm", d, "--model", "x", "--cost", "1", "--answers", p]

    shutil.rmtree(tmp_path / "out")
    out = run_attack(Attack("answers-1M-rows", add, "rows", may_change=["out"]), tmp_path, monkeypatch)
    assert "probe prompts" in out

    shutil.rmtree(tmp_path / "out")
    d = rcopy(tmp_path)  # quoted texts spanning lines: records are counted, not lines
    ids = json.loads((d / "reserve.json").read_text())["prompt_ids"]
    pd.DataFrame({"prompt_id": ids, "text": ["line one\nline two\nline three"] * len(ids),
                  "score": [k % 2 for k in range(len(ids))]}).to_csv(tmp_path / "multi.csv", index=False)
    res = CliRunner().invoke(app, ["router", "add-llm", str(d), "--model", "x", "--cost", "1", "--answers",
                                   str(tmp_path / "multi.csv")], catch_exceptions=False)
    assert res.exit_code == 0, res.output


# --------------------------------------------------------------------------------------------
# answers are numbers, texts are strings
# --------------------------------------------------------------------------------------------
def _answers_file(kind: str):
    def build(t: Path) -> list:
        d = rcopy(t)
        ids = json.loads((d / "reserve.json").read_text())["prompt_ids"]
        if kind == "csv-True-False":
            p = t / "a.csv"
            p.write_text("prompt_id,score\n" + "".join(f"{i},{['True', 'False'][k % 2]}\n" for k, i in enumerate(ids)))
        elif kind in ("jsonl-booleans", "jsonl-strings"):
            p = t / "a.jsonl"
            vals = [True, False] if kind == "jsonl-booleans" else ["1", "0"]
            p.write_text("".join(json.dumps({"prompt_id": i, "score": vals[k % 2]}) + "\n" for k, i in enumerate(ids)))
        else:
            p = t / "a.parquet"
            pd.DataFrame({"prompt_id": ids, "score": [k % 2 == 0 for k in range(len(ids))]}).to_parquet(p)
        return ["router", "add-llm", d, "--model", "x", "--cost", "1", "--answers", p]
    return build


@pytest.mark.parametrize("kind", ["csv-True-False", "jsonl-booleans", "jsonl-strings", "parquet-booleans"])
def test_answers_must_be_numbers(kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_attack(Attack(kind, _answers_file(kind), "score", may_change=["out"]), tmp_path, monkeypatch)


def _route_file(name: str, content: str | pd.DataFrame):
    def build(t: Path) -> list:
        p = t / name
        content.to_parquet(p) if isinstance(content, pd.DataFrame) else p.write_text(content)
        return ["router", "route", rcopy(t), "--prompts", p, "--lambda", "0"]
    return build


TEXTS = [
    ("p.jsonl", '{"prompt_id": "a", "text": {"x": 1}}\n'),
    ("p.jsonl", '{"prompt_id": "a", "text": ["x", "y"]}\n'),
    ("p.jsonl", '{"prompt_id": "a", "text": 5}\n'),
    ("p.jsonl", '{"prompt_id": {"a": 1}, "text": "hi"}\n'),
    ("p.parquet", pd.DataFrame({"prompt_id": ["a", "b"], "text": [1, 2]})),
]


@pytest.mark.parametrize("case", TEXTS, ids=["jsonl-object", "jsonl-list", "jsonl-number", "jsonl-id-object",
                                             "parquet-ints"])
def test_text_columns_must_be_strings(case: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    expect = "expected a prompt id" if "prompt_id\": {" in str(case[1]) else "expected text"
    run_attack(Attack("text", _route_file(*case), expect, may_change=["out"]), tmp_path, monkeypatch)


def test_dataset_scores_and_texts_have_their_types(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def bool_scores(t: Path) -> list:
        ds = make_dataset(t / "ds")
        o = pd.read_parquet(ds / "outcomes.parquet")
        o.assign(score=o["score"].astype(bool)).to_parquet(ds / "outcomes.parquet")
        return ["data", "info", ds]

    def int_texts(t: Path) -> list:
        ds = make_dataset(t / "ds")
        p = pd.read_parquet(ds / "prompts.parquet")
        p.assign(text=np.arange(len(p))).to_parquet(ds / "prompts.parquet")
        return ["data", "info", ds]

    run_attack(Attack("bool-scores", bool_scores, "score", may_change=["ds"]), tmp_path, monkeypatch)
    shutil.rmtree(tmp_path / "ds")
    run_attack(Attack("int-texts", int_texts, "text", may_change=["ds"]), tmp_path, monkeypatch)


# --------------------------------------------------------------------------------------------
# names on a terminal
# --------------------------------------------------------------------------------------------
def test_control_characters_in_names_are_refused_or_escaped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def add(t: Path) -> list:
        d = rcopy(t)
        return ["router", "add-llm", d, "--model", ESC, "--cost", "1", "--answers", answers(t, d)]

    out = run_attack(Attack("add-escape", add, "control characters", may_change=["out"]), tmp_path, monkeypatch)
    assert "\x1b" not in out and "\x07" not in out and "\\x1b" in out

    def renamed(t: Path) -> list:  # a directory whose card and profiles name an LLM with a terminal escape
        d = t / "out"
        card = yaml.safe_load((d / "router.yaml").read_text())
        card["llms"][1]["name"] = ESC
        (d / "router.yaml").write_text(yaml.safe_dump(card, sort_keys=False))
        z = dict(np.load(d / "profiles.npz"))
        z["models"] = np.array([m["name"] for m in card["llms"]])
        np.savez(d / "profiles.npz", **z)
        write_manifest(d, card)
        return ["router", "info", d]

    info = run_attack(Attack("info-escape", renamed, None, codes=(0,), may_change=["out"]), tmp_path, monkeypatch)
    assert "\x1b" not in info and "\\x1b]0;pwned\\x07" in info

    def data_info(t: Path) -> list:
        ds = make_dataset(t / "ds2")
        o = pd.read_parquet(ds / "outcomes.parquet")
        o.assign(model=o["model"].replace("m1", ESC)).to_parquet(ds / "outcomes.parquet")
        m = pd.read_csv(ds / "models.csv")
        m.assign(model=m["model"].replace("m1", ESC)).to_csv(ds / "models.csv", index=False)
        return ["data", "info", ds]

    out = run_attack(Attack("data-info-escape", data_info, None, codes=(0, 2), may_change=["out", "ds2"]),
                     tmp_path, monkeypatch)
    assert "\x1b" not in out and "\x07" not in out


# --------------------------------------------------------------------------------------------
# preset names
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["../escaped", "/tmp/abs-preset", ".", "", "a/b", "x" + ESC, ".hidden"])
def test_preset_name_is_one_safe_path_component(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def build(t: Path) -> list:
        ds = make_dataset(t / "ds")
        (t / "preset.yaml").write_text(yaml.safe_dump({"version": 1, "name": name, "dataset": str(ds),
                                                       "routers": ["zero"], "trials": 1, "pools": ["unseen"],
                                                       "reference": "zero"}))
        (t / "out").mkdir()
        return ["reproduce", "--config", t / "preset.yaml", "--out", t / "out", "--jobs", 1]

    run_attack(Attack(f"preset-{name!r}", build, "name", may_change=["out", "ds"]), tmp_path, monkeypatch)
    assert not any((tmp_path / "out").iterdir())
    assert not Path("/tmp/abs-preset").exists()


# --------------------------------------------------------------------------------------------
# plug-ins: one broken plug-in costs one warning line
# --------------------------------------------------------------------------------------------
def _install_plugin(site: Path, module: str, body: str, entry: str | None = None) -> None:
    (site / module).mkdir(parents=True)
    (site / module / "__init__.py").write_text(body)
    info = site / f"{module}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[unirouter.routers]\n{entry or module} = {module}\n")


def _run(site: Path, *args: object, timeout_env: str = "5") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site), "UNIROUTER_PLUGIN_TIMEOUT": timeout_env, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "unirouter_cli", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=120)


PLUGINS = {
    "raises": "raise RuntimeError('boom')\n",
    "exits": "import sys\nsys.exit(0)\n",
    "interrupts": "raise KeyboardInterrupt\n",
    "hangs": "import time\ntime.sleep(600)\n",
}


def test_each_broken_plugin_costs_one_warning_line(tmp_path: Path) -> None:
    """Four plug-ins (raising, calling sys.exit, raising KeyboardInterrupt, hanging past the timeout) beside a
    working one: each broken one is one warning line; built-in routers and the working plug-in stay usable."""
    site = tmp_path / "site"
    for kind, body in PLUGINS.items():
        _install_plugin(site, f"broken_{kind}", body)
    _install_plugin(site, "good_plugin", "import numpy as np\n"
                    "from unirouter_cli.routers import Router, register_router\n"
                    "@register_router\nclass G(Router):\n    name, kind, help = 'good-zero', 'dynamic', 'a plug-in'\n"
                    "    def predict(self, X, pool):\n        return np.zeros((len(X), len(pool.models)))\n")
    res = _run(site, "routers", timeout_env="2")
    warnings = [ln for ln in res.stderr.splitlines() if ln.startswith("warning:")]
    assert res.returncode == 0, res.stderr
    assert sorted(w.split()[3] for w in warnings) == sorted(f"broken_{k}" for k in PLUGINS), res.stderr
    assert "knn" in res.stdout and "good-zero" in res.stdout and "Traceback" not in res.stderr
    d = rcopy(tmp_path)
    res = _run(site, "router", "route", d, "--prompts", _prompts(tmp_path), "--lambda", "0", timeout_env="2")
    assert res.returncode == 0 and len(res.stdout.splitlines()) == 2, res.stderr
    assert len([ln for ln in res.stderr.splitlines() if ln.startswith("warning:")]) == len(PLUGINS), res.stderr


def test_a_plugin_exiting_while_fitting_is_an_error_not_a_silent_end(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Installed on sys.path (a dist-info folder with its entry point) and imported by the registry in this
    process; ``fit`` of its router calls sys.exit, which ends the command with one error line, exit 2."""
    from unirouter_cli.routers import registry

    site = tmp_path / "site"
    _install_plugin(site, "exits_in_fit", "from unirouter_cli.routers import Router, register_router\n"
                    "@register_router\nclass E(Router):\n    name, kind, help = 'exits', 'dynamic', 'exits'\n"
                    "    def fit(self, data):\n        raise SystemExit(0)\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    try:
        out = run_attack(Attack("plugin-exits-in-fit", lambda t: ["fit", "--dataset", make_dataset(t / "ds"),
                                                                   "--run-dir", t / "run", "--trials", 1, "-r",
                                                                   "exits", "--jobs", 1], "SystemExit(0)",
                                may_change=["run", "ds", "site"]), tmp_path, monkeypatch)
    finally:
        registry.ROUTERS.pop("exits", None)
    assert "sys.exit" in out


def test_metrics_check_knows_every_router_kind_and_pool() -> None:
    from unirouter_cli.protocol.trial import POOLS
    from unirouter_cli.results import runfiles
    from unirouter_cli.routers.registry import KINDS

    assert runfiles.KINDS == KINDS and runfiles.POOLS == POOLS


def test_a_library_warning_is_one_line_without_a_source_path() -> None:
    import subprocess
    import sys

    code = ("from unirouter_cli.cli.common import one_line_warnings; one_line_warnings(); "
            "import numpy as np; np.float64(1e308) * 10")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stderr == "warning: RuntimeWarning: overflow encountered in scalar multiply\n", out.stderr
