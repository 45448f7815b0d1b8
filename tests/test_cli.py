"""The CLI end to end on small real data: run directory, determinism, parallel trials, resume after
SIGKILL, the lock, and one-line errors for bad options and damaged run directories."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from unirouter_cli.runs.rundir import RunDir

from .conftest import invoke

ROUTERS = ["zero", "knn", "uniroute-kmeans", "uniroute-learnedmap", "oracle"]


def _fit(runner, dataset, run_dir, *extra, trials=2):
    args = ["fit", "--dataset", dataset, "--trials", trials, "--seed", 3, "--run-dir", run_dir,
            "--param", "uniroute-learnedmap.maxiter=15"]
    for r in ROUTERS:
        args += ["--router", r]
    return invoke(runner, *args, *extra)


def test_fit_evaluate_report_plot_on_a_user_folder(runner, small_dataset, tmp_path):
    run = tmp_path / "run"
    res = _fit(runner, small_dataset, run)
    assert res.exit_code == 0, res.output
    res = invoke(runner, "evaluate", "--run-dir", run, "--pool", "unseen", "--pool", "seen")
    assert res.exit_code == 0, res.output
    m = pd.read_csv(run / "metrics.csv")
    for col in ("trial", "router", "pool", "area", "area_50", "qnc"):
        assert col in m.columns
    assert len(m) == 2 * len(ROUTERS) * 2 and set(m["pool"]) == {"unseen", "seen"}
    assert invoke(runner, "evaluate", "--run-dir", run, "--pool", "all").exit_code == 0  # a later pool adds to it
    m = pd.read_csv(run / "metrics.csv")
    assert set(m["pool"]) == {"unseen", "seen", "all"} and len(m) == 3 * len(ROUTERS) * 2
    assert m[["area", "qnc", "aiq"]].apply(lambda s: s.between(0, 1).all()).all()
    curves = pd.read_parquet(run / "curves.parquet")
    assert list(curves.columns[:1]) == ["trial"] and {"cost", "quality", "router", "pool"} <= set(curves.columns)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["dataset_hash"] and cfg["unirouter_version"] and cfg["encoder"] == "tfidf"
    hp = pd.read_csv(run / "hyperparams.csv")
    assert set(hp["router"]) >= {"knn", "uniroute-kmeans"}
    res = invoke(runner, "report", "--run-dir", run)
    assert res.exit_code == 0, res.output
    assert "| uniroute-kmeans |" in (run / "report.md").read_text()
    res = invoke(runner, "plot", "--run-dir", run, "--format", "svg")
    assert res.exit_code == 0, res.output
    assert (run / "plots" / "curves-unseen.svg").stat().st_size > 1000


def test_same_command_same_bytes_and_jobs_do_not_change_results(runner, small_dataset, tmp_path):
    outs = []
    for name, jobs in (("a", "1"), ("b", "1"), ("c", "2")):
        run = tmp_path / name
        assert _fit(runner, small_dataset, run, "--jobs", jobs, trials=3).exit_code == 0
        assert invoke(runner, "evaluate", "--run-dir", run, "--jobs", jobs).exit_code == 0
        outs.append((run / "metrics.csv").read_bytes())
    assert outs[0] == outs[1] == outs[2]


def test_rerun_needs_resume_and_resume_skips_done_work(runner, small_dataset, tmp_path):
    run = tmp_path / "run"
    assert _fit(runner, small_dataset, run).exit_code == 0
    res = _fit(runner, small_dataset, run)
    assert res.exit_code == 2 and "--resume" in res.output
    assert len([ln for ln in res.output.splitlines() if ln.strip()]) == 1, res.output  # the error line alone
    before = (run / "trials" / "trial-0000" / "fit.json").stat().st_mtime_ns
    res = _fit(runner, small_dataset, run, "--resume")
    assert res.exit_code == 0 and f"nothing to fit: 2 trial(s) x {len(ROUTERS)} router(s)" in res.output, res.output
    assert (run / "trials" / "trial-0000" / "fit.json").stat().st_mtime_ns == before
    res = _fit(runner, small_dataset, run, "--resume", trials=3)
    assert res.exit_code == 2 and "other settings" in res.output


def test_resume_alone_of_a_path_without_a_run_is_refused(runner, tmp_path):
    res = invoke(runner, "fit", "--resume", "--run-dir", tmp_path / "typo")
    assert res.exit_code == 2 and "holds no run (no config.yaml)" in res.output, res.output
    assert not (tmp_path / "typo").exists()


def test_sigkill_mid_run_then_resume_gives_identical_metrics(runner, small_dataset, tmp_path):
    ref = tmp_path / "ref"
    assert _fit(runner, small_dataset, ref, trials=6).exit_code == 0
    assert invoke(runner, "evaluate", "--run-dir", ref).exit_code == 0
    run = tmp_path / "killed"
    cmd = [sys.executable, "-m", "unirouter_cli", "-q", "fit", "--dataset", str(small_dataset), "--trials", "6",
           "--seed", "3", "--run-dir", str(run), "--param", "uniroute-learnedmap.maxiter=15"]
    for r in ROUTERS:
        cmd += ["--router", r]
    proc = subprocess.Popen(cmd, env={**os.environ}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (run / "trials" / "trial-0001" / "fit.json").exists():
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = sorted(p.parent.name for p in (run / "trials").glob("*/fit.json"))
    assert 1 <= len(done) < 6, done
    res = _fit(runner, small_dataset, run, "--resume", trials=6)
    assert res.exit_code == 0, res.output
    assert invoke(runner, "evaluate", "--run-dir", run).exit_code == 0
    assert (run / "metrics.csv").read_bytes() == (ref / "metrics.csv").read_bytes()


def test_sigkill_during_evaluate_then_rerun_gives_identical_metrics(runner, small_dataset, tmp_path):
    run = tmp_path / "run"
    assert _fit(runner, small_dataset, run, trials=6).exit_code == 0
    assert invoke(runner, "evaluate", "--run-dir", run).exit_code == 0
    reference = (run / "metrics.csv").read_bytes()
    for f in [run / "metrics.csv", *(run / "eval" / "unseen").glob("*.parquet")]:
        f.unlink()
    proc = subprocess.Popen([sys.executable, "-m", "unirouter_cli", "-q", "evaluate", "--run-dir", str(run)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list((run / "eval" / "unseen").glob("trial-0001.parquet")):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert invoke(runner, "evaluate", "--run-dir", run).exit_code == 0
    assert (run / "metrics.csv").read_bytes() == reference


def test_second_writer_is_refused(runner, small_dataset, tmp_path):
    run = tmp_path / "run"
    with RunDir(run).lock():
        res = _fit(runner, small_dataset, run)
    assert res.exit_code == 2 and "in use" in res.output
    assert not (run / "config.yaml").exists()


@pytest.mark.parametrize("extra, message", [
    (["--router", "nope"], "unknown router"),
    (["--encoder", "word2vec"], "unknown encoder"),
    (["--train-frac", "0.5", "--val-frac", "0.1", "--test-frac", "0.3"], "sum to 1"),
    (["--unseen", "gpt-4-1106-preview", "--unseen", "claude-v1", "--unseen", "claude-v2", "--unseen", "claude-v1x"],
     "not in dataset"),
    (["--unseen-frac", "1.5"], "unseen fraction"),
    (["--param", "uniroute-kmeans.K=5000"], "validation prompts"),
    (["--param", "uniroute-kmeans.Q=3"], "unknown parameter"),
    (["--param", "badformat"], "ROUTER.NAME=VALUE"),
    (["--trials", "0"], "'--trials' / '-n': Input should be greater than or equal to 1"),
    (["--val-size", "100000"], "more validation prompts than the split leaves"),
    (["--jobs", "0"], "'--jobs' / '-j': Input should be greater than or equal to 1"),
    (["--seed", "-1"], "'--seed': Input should be greater than or equal to 0"),
    (["--val-sizes", "0,abc"], "--val-sizes '0,abc': expected positive integers"),
    (["--val-sizes", "60,60"], "lists a size twice"),
    (["--coverage", "masked-ish"], "--coverage 'masked-ish': expected one of block, all-llms"),
    (["--train-categories", "astrology"], "--train-categories astrology: not a prompt category"),
    (["--param", "uniroute-kmeans.K=1.5"], "parameter K = 1.5; expected an integer >= 1"),
    (["--param", "knn.k=-5"], "parameter k = -5"),
    (["--no-such-option"], "No such option: --no-such-option"),
])
def test_bad_options_one_line_exit_2(runner, small_dataset, tmp_path, extra, message):
    res = _fit(runner, small_dataset, tmp_path / "run", *extra)
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and message in lines[0], res.output
    assert not (tmp_path / "run").exists()  # a refused command leaves no run directory behind


def test_every_llm_unseen_skips_routers_that_need_training_llms(runner, small_dataset, tmp_path, small_tables):
    args = []
    for m in small_tables[2]["model"].tolist():
        args += ["--unseen", m]
    run = tmp_path / "run"
    res = _fit(runner, small_dataset, run, *args)
    assert res.exit_code == 0, res.output
    assert "skipped router uniroute-learnedmap: needs training LLMs" in res.output
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert "uniroute-learnedmap" in cfg["skipped_routers"] and "uniroute-learnedmap" not in cfg["routers"]
    assert invoke(runner, "evaluate", "--run-dir", run).exit_code == 0
    m = pd.read_csv(run / "metrics.csv")
    assert set(m["router"]) == {"zero", "knn", "uniroute-kmeans", "oracle"} and (m["n_pool"] == 11).all()
    res = invoke(runner, "evaluate", "--run-dir", run, "--pool", "seen")
    assert res.exit_code == 2 and "pool is empty" in res.output and "Traceback" not in res.output


def test_damaged_run_directories(runner, small_dataset, tmp_path):
    res = invoke(runner, "evaluate", "--run-dir", tmp_path / "nothing")
    assert res.exit_code == 2 and "config.yaml" in res.output
    run = tmp_path / "run"
    assert _fit(runner, small_dataset, run).exit_code == 0
    (run / "trials" / "trial-0001" / "uniroute-kmeans.npz").unlink()
    res = invoke(runner, "evaluate", "--run-dir", run)
    assert res.exit_code == 2 and "uniroute-kmeans" in res.output and "Traceback" not in res.output
    res = invoke(runner, "evaluate", "--run-dir", run, "--pool", "everything")
    assert res.exit_code == 2 and "unknown pool" in res.output
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["config_version"] = 99
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    res = invoke(runner, "evaluate", "--run-dir", run)
    assert res.exit_code == 2 and "config_version" in res.output
    res = invoke(runner, "report", "--run-dir", run)
    assert res.exit_code == 2 and "metrics.csv" in res.output
    res = invoke(runner, "plot", "--run-dir", run)
    assert res.exit_code == 2


def test_evaluate_refuses_a_changed_dataset(runner, small_dataset, tmp_path):
    run = tmp_path / "run"
    assert _fit(runner, small_dataset, run).exit_code == 0
    models = pd.read_csv(small_dataset / "models.csv")
    models.loc[0, "cost"] *= 2
    models.to_csv(small_dataset / "models.csv", index=False)
    res = invoke(runner, "evaluate", "--run-dir", run)
    assert res.exit_code == 2 and "changed since the run was fitted" in res.output


def test_debug_env_shows_traceback(runner, small_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("UNIROUTER_DEBUG", "1")
    from unirouter_cli.errors import ConfigError

    with pytest.raises(ConfigError):
        runner.invoke(__import__("unirouter_cli.cli", fromlist=["app"]).app,
                      ["fit", "--dataset", str(small_dataset), "--router", "nope", "--run-dir", str(tmp_path / "r")],
                      catch_exceptions=False)


def test_version_and_help_on_every_command(runner):
    res = invoke(runner, "--version")
    assert res.exit_code == 0 and res.output.startswith("unirouter ")
    for cmd in (["data", "list"], ["data", "validate"], ["data", "info"], ["download"], ["routers"], ["encoders"],
                ["embed"], ["fit"], ["evaluate"], ["plot"], ["report"], ["reproduce"]):
        res = invoke(runner, *cmd, "--help")
        assert res.exit_code == 0 and "Example" in res.output, cmd


def test_routers_and_encoders_lists(runner):
    res = invoke(runner, "routers")
    for name in ("zero", "knn", "uniroute-kmeans", "uniroute-learnedmap", "clairvoyant-mlp", "clairvoyant-matfac",
                 "retrained-mlp", "oracle"):
        assert name in res.output
    assert "reference" in res.output and "bound" in res.output
    assert "tfidf" in invoke(runner, "encoders").output


def test_import_touches_no_network_or_env():
    code = ("import os, socket\n"
            "def boom(*a, **k): raise RuntimeError('network used at import')\n"
            "socket.socket.connect = boom\n"
            "os.environ.pop('UNIROUTER_HOME', None)\n"
            "import unirouter_cli, unirouter_cli.cli, unirouter_cli.data.download, unirouter_cli.routers\n"
            "import sys; assert 'torch' not in sys.modules and 'sentence_transformers' not in sys.modules\n"
            "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PATH": os.environ["PATH"]})
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_bundled_embeddings_run_without_texts(runner, tmp_path):
    run = tmp_path / "mm"
    res = invoke(runner, "fit", "--dataset", "mmlu-pro", "--router", "zero", "--router", "uniroute-kmeans",
                 "--encoder", "minilm", "--trials", "1", "--run-dir", run)
    assert res.exit_code == 0, res.output
    assert invoke(runner, "evaluate", "--run-dir", run).exit_code == 0
    m = pd.read_csv(run / "metrics.csv")
    assert set(m["router"]) == {"zero", "uniroute-kmeans"}
    res = invoke(runner, "embed", "--dataset", "mmlu-pro", "--encoder", "st:some-model")
    assert res.exit_code == 2 and "download mmlu-pro" in res.output


def test_val_size_sweep(runner, small_dataset, tmp_path):
    run = tmp_path / "sweep"
    res = invoke(runner, "fit", "--dataset", small_dataset, "--router", "zero", "--router", "knn",
                 "--trials", "2", "--val-sizes", "30,60", "--run-dir", run)
    assert res.exit_code == 0 and "fitted 2 trial(s) (4 tasks: validation sizes x probe strategies)" in res.output, (
        res.output)
    assert invoke(runner, "evaluate", "--run-dir", run).exit_code == 0
    m = pd.read_csv(run / "metrics.csv")
    assert sorted(m["val_size"].unique()) == [30, 60] and set(m.groupby("val_size")["n_val"].first()) == {30, 60}
    # the training prompts are the same for every validation size of a trial
    assert m.groupby("trial")["n_train"].nunique().max() == 1
    assert invoke(runner, "plot", "--run-dir", run).exit_code == 0
    assert (run / "plots" / "valsize-unseen.png").exists()


def test_reproduce_refuses_an_out_folder_whose_report_is_the_users(runner, small_dataset, tmp_path):
    preset = tmp_path / "tiny.yaml"
    preset.write_text(yaml.safe_dump({"version": 1, "name": "tiny", "description": "one trial",
                                      "dataset": str(small_dataset), "routers": ["zero"], "trials": 1, "seed": 1,
                                      "pools": ["unseen"], "reference": "zero"}))
    out = tmp_path / "mine"
    out.mkdir()
    (out / "REPORT.md").write_text("# my report\n")
    res = invoke(runner, "reproduce", "--config", preset, "--out", out, "--jobs", "1")
    assert res.exit_code == 2 and "REPORT.md: not a report `unirouter reproduce` wrote" in res.output, res.output
    assert (out / "REPORT.md").read_text() == "# my report\n" and sorted(p.name for p in out.iterdir()) == [
        "REPORT.md"]


def test_reproduce_runs_presets_and_indexes_them(runner, small_dataset, tmp_path):
    preset = tmp_path / "tiny.yaml"
    preset.write_text(yaml.safe_dump({"version": 1, "name": "tiny", "description": "two trials",
                                      "dataset": str(small_dataset), "routers": ["zero", "knn", "oracle"],
                                      "trials": 2, "seed": 1, "pools": ["unseen"], "reference": "knn"}))
    out = tmp_path / "out"
    res = invoke(runner, "reproduce", "--config", preset, "--out", out, "--jobs", "1")
    assert res.exit_code == 0, res.output
    index = (out / "REPORT.md").read_text()
    assert "| tiny |" in index and "tiny/report.md" in index and "tiny/plots/curves-unseen.png" in index
    assert (out / "tiny" / "report.md").exists() and (out / "tiny" / "plots" / "curves-unseen.png").exists()
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 2\ndataset: x\nrouters: [zero]\n")
    res = invoke(runner, "reproduce", "--config", bad, "--out", tmp_path / "o2")
    assert res.exit_code == 2 and "version" in res.output


def test_repository_presets_are_valid():
    from unirouter_cli.runs.reproduce import find_presets, load_preset
    from unirouter_cli.runs.rundir import prepare

    root = Path(__file__).resolve().parents[1]
    presets = sorted((root / "configs").glob("*.yaml"))
    assert len(presets) >= 3 and find_presets(presets) == presets
    for p in presets:
        meta, cfg = load_preset(p)
        prepare(cfg)  # dataset, routers, encoder and split are all valid on the bundled data


def test_fit_accepts_a_preset_file_and_options_override_it(runner, small_dataset, tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text(yaml.safe_dump({"version": 1, "name": "p", "pools": ["unseen"], "reference": "knn",
                                      "dataset": str(small_dataset), "routers": ["zero", "knn"], "trials": 5,
                                      "seed": 4, "split": {"unseen_frac": 0.5}}))
    run = tmp_path / "run"
    res = invoke(runner, "fit", "--config", preset, "--trials", "2", "--run-dir", run)
    assert res.exit_code == 0, res.output
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["trials"] == 2 and cfg["seed"] == 4 and cfg["split"]["unseen_frac"] == 0.5


def test_a_task_limits_threads_without_importing_scikit_learn(runner, small_dataset, tmp_path):
    """A trial's worker pins BLAS and OpenMP to one thread (parallelism is across trials) without paying
    for a scikit-learn or scipy.optimize import it does not use; libraries loaded later in the task (scipy's
    own BLAS, scikit-learn's OpenMP) are pinned too."""
    run = tmp_path / "run"
    assert _fit(runner, small_dataset, run, trials=1).exit_code == 0
    code = (
        "import sys\n"
        "from unirouter_cli.runs.rundir import _context\n"
        f"_context({str(run)!r})\n"
        "assert 'sklearn' not in sys.modules, 'the task context imported scikit-learn'\n"
        "assert 'scipy.optimize' not in sys.modules, 'the task context imported scipy.optimize'\n"
        "import scipy.optimize  # noqa: F401 - loads scipy's own BLAS\n"
        "import sklearn.cluster  # noqa: F401 - loads scikit-learn's OpenMP runtime\n"
        "from threadpoolctl import threadpool_info\n"
        "pools = {(p['user_api'], p['prefix'], p['num_threads']) for p in threadpool_info()}\n"
        "assert any(api == 'openmp' for api, _, _ in pools), pools\n"
        "assert any('scipy' in prefix for _, prefix, _ in pools), pools\n"
        "assert all(n == 1 for _, _, n in pools), pools\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]


def test_evaluate_on_a_missing_run_directory_creates_nothing(runner, tmp_path):
    run = tmp_path / "runs" / "nope"
    res = invoke(runner, "evaluate", "--run-dir", run)
    assert res.exit_code == 2 and "config.yaml: missing" in res.output, res.output
    assert not run.exists() and not (tmp_path / "runs").exists()  # (it used to be created, with a .lock)


def test_serve_help_shows_the_request_format_whole(runner):
    res = invoke(runner, "router", "serve", "--help")
    assert res.exit_code == 0 and '"pool": [names]}' in res.output, res.output


def test_fit_warns_of_a_parameter_no_fitted_router_uses(runner, small_dataset, tmp_path):
    """-p for a router that is not fitted (and not shared with one that is) is recorded but warned about."""
    base = ["fit", "--dataset", small_dataset, "--trials", 1, "--seed", 3]
    res = invoke(runner, *base, "--run-dir", tmp_path / "a", "-r", "knn", "-p", "uniroute-kmeans.K=4",
                 "-p", "foldin.rank=2", "-p", "knn.k=5")
    assert res.exit_code == 0, res.output
    warn = [line for line in res.output.splitlines() if line.startswith("warning: no router")]
    assert warn == ["warning: no router of this run (knn) uses uniroute-kmeans.K=4, foldin.rank=2: set for a router "
                    "that is not fitted (recorded in config.yaml, no effect)"], res.output
    # K is shared by uniroute-kmeans and uniroute-learnedmap: fixing it through the other name is a use
    res = invoke(runner, *base, "--run-dir", tmp_path / "b", "-r", "uniroute-learnedmap", "-p", "uniroute-kmeans.K=4",
                 "-p", "uniroute-learnedmap.maxiter=15")
    assert res.exit_code == 0 and "warning" not in res.output, res.output
