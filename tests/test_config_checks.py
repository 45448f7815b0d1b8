"""Hand-edited and hand-written configs: a run directory's config.yaml, ``fit --config`` files and
presets are checked key by key when read (the rules ``fit`` applies to its options); every refusal
is one line naming the file and the key, exit code 2, and leaves what was written untouched. Also:
repeated YAML keys, ``fit --resume --run-dir X`` alone, and the interrupt message of fit/evaluate."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from .conftest import invoke, write_dataset


def _one_error(res, *parts: str) -> str:
    """The refusal: exit 2, exactly one line, starting 'error:', holding every part, no traceback."""
    out = res.output.strip()
    assert res.exit_code == 2, out
    assert len(out.splitlines()) == 1 and out.startswith("error: "), out
    assert "Traceback" not in out and "internal error" not in out, out
    for p in parts:
        assert p in out, (p, out)
    return out


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock"}


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory, small_tables) -> tuple[Path, Path]:
    """(dataset, run): zero + knn, 2 trials, fitted and evaluated once for the module."""
    base = tmp_path_factory.mktemp("configchecks")
    p, o, m = small_tables
    ds = write_dataset(base / "ds", p, o, m, {"name": "ds", "cost_unit": "USD"})
    run = base / "run"
    from typer.testing import CliRunner

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UNIROUTER_HOME", str(base / "home"))
        r = CliRunner()
        assert invoke(r, "-q", "fit", "-d", ds, "-r", "zero", "-r", "knn", "-n", 2, "-o", run).exit_code == 0
        assert invoke(r, "-q", "evaluate", "-o", run).exit_code == 0
    return ds, run


def _edited(fitted, tmp_path: Path, edit) -> Path:
    run = shutil.copytree(fitted[1], tmp_path / "run")
    d = yaml.safe_load((run / "config.yaml").read_text())
    edit(d)
    (run / "config.yaml").write_text(yaml.safe_dump(d, sort_keys=False))
    return run


def _set(path: str, value):
    def edit(d: dict) -> None:
        *parents, last = path.split(".")
        for k in parents:
            d = d[k]
        d[last] = value
    return edit


RUN_EDITS = [  # (key, value, parts of the one-line refusal)
    ("trials", -3, ["trials = -3", "integer >= 1"]),
    ("trials", True, ["trials = True", "integer >= 1"]),
    ("seed", 7.5, ["seed = 7.5", "integer >= 0"]),
    ("seed", "abc", ["seed = 'abc'", "integer >= 0"]),
    ("encoder", "nope", ["encoder = 'nope'", "unknown encoder"]),
    ("split.unseen_frac", 2, ["split.unseen_frac = 2", "(0, 1]"]),
    ("split.val_frac", 0.5, ["split fractions", "= 1.4", "sum to 1"]),
    ("split.coverage", "most", ["split.coverage = 'most'", "block"]),
    ("routers", [], ["routers = []", "non-empty list"]),
    ("routers", "zero", ["routers = 'zero'", "list"]),
    ("routers", ["zero", "nope"], ["routers", "unknown router 'nope'"]),
    ("router_params", {"knn": {"k": -5}}, ["router_params", "router knn: parameter k = -5", "expected an integer"]),
    ("val_sizes", [0], ["val_sizes = [0]", "positive integers"]),
    ("probe_strategies", ["nope"], ["probe_strategies", "unknown probe strategy 'nope'"]),
]


@pytest.mark.parametrize(("key", "value", "parts"), RUN_EDITS, ids=[f"{k}={v!r}" for k, v, _ in RUN_EDITS])
def test_edited_run_config_is_refused_by_evaluate_report_and_resume(runner, fitted, tmp_path, key, value, parts):
    run = _edited(fitted, tmp_path, _set(key, value))
    before = _snapshot(run)
    for args in (("evaluate", "-o", run), ("report", "-o", run), ("fit", "--resume", "-o", run)):
        _one_error(invoke(runner, "-q", *args), str(run / "config.yaml"), *parts)
    assert _snapshot(run) == before


@pytest.mark.parametrize(("key", "value"), [("encoder", "minilm"), ("router_params", {"knn": {"k": 3}})])
def test_config_that_disagrees_with_the_fitted_trials_is_refused(runner, fitted, tmp_path, key, value):
    """A valid value that is not what the trials were fitted with (recorded in fit.json)."""
    run = _edited(fitted, tmp_path, _set(key, value))
    shutil.rmtree(run / "eval")  # evaluate must refuse before computing anything (minilm embeddings)
    before = _snapshot(run)
    for args in (("evaluate", "-o", run), ("report", "-o", run), ("fit", "--resume", "-o", run)):
        _one_error(invoke(runner, "-q", *args), str(run / "config.yaml"), f"{key} = {value!r}",
                   "trial-0000 was fitted with")
    assert _snapshot(run) == {k: v for k, v in before.items() if not k.startswith("eval")}


def test_repeated_key_in_run_config_is_refused(runner, fitted, tmp_path):
    run = shutil.copytree(fitted[1], tmp_path / "run")
    text = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(text + "trials: 5\n")
    _one_error(invoke(runner, "-q", "evaluate", "-o", run), str(run / "config.yaml"), "key 'trials' appears twice")


FILE_EDITS = [  # a --config file's content -> parts of the refusal
    ("routers: zero", ["routers = 'zero'", "list"]),
    ("routers: []", ["routers = []", "non-empty list"]),
    ("trials: 2.5", ["trials = 2.5", "integer >= 1"]),
    ("trials: true", ["trials = True", "integer >= 1"]),
    ("seed: 1e3", ["seed = '1e3'", "integer >= 0"]),
    ("pools: [nope]", ["pools", "unknown pool 'nope'"]),
    ("version: 2", ["version = 2"]),
    ("encoder: [tfidf]", ["encoder = ['tfidf']"]),
    ("split: {val_frac: 0.5}", ["split fractions", "sum to 1"]),
    ("router_params: {knn: {k: 0}}", ["router_params", "router knn: parameter k = 0"]),
    ("trials: 2\nseed: 1\ntrials: 3", ["not valid YAML", "line 4: key 'trials' appears twice"]),
]


@pytest.mark.parametrize(("text", "parts"), FILE_EDITS, ids=[t.split(":")[0] + str(i) for i, (t, _) in
                                                             enumerate(FILE_EDITS)])
def test_fit_config_file_is_checked_like_the_command_line(runner, fitted, tmp_path, text, parts):
    cfg = tmp_path / "preset.yaml"
    cfg.write_text(f"dataset: {fitted[0]}\n{text}\n")
    run = tmp_path / "run"
    _one_error(invoke(runner, "-q", "fit", "--config", cfg, "-o", run), str(cfg), *parts)
    assert not run.exists()


def test_reproduce_preset_with_unknown_pool_is_refused_before_running(runner, fitted, tmp_path):
    cfg = tmp_path / "p.yaml"
    cfg.write_text(f"version: 1\nname: p\ndataset: {fitted[0]}\nrouters: [zero]\ntrials: 1\npools: [nope]\n")
    out = tmp_path / "out"
    _one_error(invoke(runner, "-q", "reproduce", "--config", cfg, "--out", out), str(cfg), "unknown pool 'nope'")
    assert not out.exists()


def test_resume_alone_continues_with_the_runs_own_config(runner, fitted, tmp_path):
    ds = fitted[0]
    run = tmp_path / "run"
    args = ("-q", "fit", "-d", ds, "-r", "zero", "-r", "knn", "-r", "foldin", "-n", 2, "--seed", 4,
            "--unseen-frac", 1, "-o", run)  # foldin is skipped (no training LLMs): must not count as a change
    assert invoke(runner, *args).exit_code == 0
    shutil.rmtree(run / "trials" / "trial-0001")
    kept = (run / "trials" / "trial-0000" / "fit.json").stat().st_mtime_ns
    res = invoke(runner, "-q", "fit", "--resume", "--run-dir", run)
    assert res.exit_code == 0, res.output
    assert (run / "trials" / "trial-0001" / "fit.json").exists()
    assert (run / "trials" / "trial-0000" / "fit.json").stat().st_mtime_ns == kept
    ref = tmp_path / "ref"
    assert invoke(runner, *args[:-1], ref).exit_code == 0
    for r in (run, ref):
        assert invoke(runner, "-q", "evaluate", "-o", r).exit_code == 0
    assert (run / "metrics.csv").read_bytes() == (ref / "metrics.csv").read_bytes()
    # explicit options that disagree with the stored config still refuse, and say how to continue
    before = _snapshot(run)
    _one_error(invoke(runner, "-q", "fit", "--resume", "--run-dir", run, "--trials", 3), "other settings (trials)",
               f"unirouter fit --resume --run-dir {run}")
    assert _snapshot(run) == before


def test_interrupted_fit_says_how_to_continue(fitted, tmp_path):
    """A real Ctrl-C (SIGINT) while fit runs: one line naming `fit --resume`, exit 130, trials kept."""
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "unirouter_cli", "-q", "fit", "-d", str(fitted[0]), "-r", "zero", "-r", "knn",
           "-n", "5000", "--run-dir", str(run)]
    # A shell that starts the test suite in the background (`make test &`) ignores SIGINT, and children inherit
    # that; the child gets the default disposition back, as in a terminal, where Python turns it into Ctrl-C.
    proc = subprocess.Popen(cmd, env={**os.environ}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 60
    while time.time() < deadline and not (run / "trials" / "trial-0000" / "fit.json").exists():
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)  # 5000 trials take minutes: the signal lands mid-fit
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip() == (f"error: interrupted (fitted trials are kept; continue with `unirouter fit --resume "
                           f"--run-dir {run}`)")
    assert (run / "trials" / "trial-0000" / "fit.json").exists()


def test_interrupted_evaluate_says_rerun_evaluate(runner, fitted, tmp_path, monkeypatch):
    """Ctrl-C inside an evaluation task (KeyboardInterrupt raised where the signal would land)."""
    from unirouter_cli.runs import rundir

    run = shutil.copytree(fitted[1], tmp_path / "run")
    shutil.rmtree(run / "eval")

    def interrupt(*a: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(rundir, "evaluate_task", interrupt)
    res = invoke(runner, "-q", "evaluate", "-o", run)
    assert res.exit_code == 130
    assert res.output.strip() == (f"error: interrupted (evaluated trials are kept; continue with `unirouter evaluate "
                                  f"--run-dir {run}`)")
    assert "--resume" not in res.output


def test_the_config_schema_is_the_dataclass():
    """config.yaml's keys are RunConfig's fields (plus the two versions), and a config round-trips."""
    from dataclasses import fields

    from unirouter_cli.runs.config import CONFIG_KEYS, RunConfig

    assert set(CONFIG_KEYS) == {f.name for f in fields(RunConfig)} | {"config_version", "unirouter_version"}
    cfg = RunConfig(dataset="routerbench-subset", routers=["zero", "knn"], trials=3, val_sizes=[50, 100],
                    probe_strategies=["random"], router_params={"knn": {"k": 4}})
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
