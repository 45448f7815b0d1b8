"""Third-party routers: a package that declares the ``unirouter.routers`` entry point works with the
CLI, in worker processes (--jobs 2) and through evaluate, without editing unirouter.

The example package lives in tests/example_plugin/. The test installs it the way pip lays out an
installed package (the module plus a ``*.dist-info`` folder holding ``entry_points.txt``) into a
temporary folder on PYTHONPATH, so it needs no network and leaves the environment untouched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

PLUGIN = Path(__file__).parent / "example_plugin"


def _install(site: Path) -> None:
    shutil.copytree(PLUGIN / "unirouter_example", site / "unirouter_example")
    info = site / "unirouter_example-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: unirouter-example\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[unirouter.routers]\nexample-smoothed-zero = unirouter_example\n")


def _cli(env: dict, *args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "unirouter_cli", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=600)


def test_entry_point_router_runs_with_two_jobs(small_dataset, tmp_path):
    site = tmp_path / "site"
    _install(site)
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    res = _cli(env, "routers")
    assert res.returncode == 0 and "example-smoothed-zero" in res.stdout, res.stderr
    run = tmp_path / "run"
    res = _cli(env, "-q", "fit", "--dataset", small_dataset, "--trials", 2, "--jobs", 2, "--run-dir", run,
               "-r", "zero", "-r", "example-smoothed-zero", "-p", "example-smoothed-zero.prior=0")
    assert res.returncode == 0, res.stderr
    res = _cli(env, "-q", "evaluate", "--run-dir", run, "--jobs", 2)
    assert res.returncode == 0, res.stderr
    m = pd.read_csv(run / "metrics.csv").pivot(index="trial", columns="router", values="area")
    # with prior 0 the plug-in is exactly ZeroRouter: same gamma, same curve, same Area
    assert (m["example-smoothed-zero"] - m["zero"]).abs().max() < 1e-12
    # a bad parameter for the plug-in is refused like a built-in one
    res = _cli(env, "fit", "--dataset", small_dataset, "--run-dir", tmp_path / "r2", "-r", "example-smoothed-zero",
               "-p", "example-smoothed-zero.prior=-1")
    assert res.returncode == 2 and "parameter prior" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "r2").exists()
    # without the package on the path, the router is unknown (one line)
    res = _cli({k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "fit", "--dataset", small_dataset,
               "--run-dir", tmp_path / "r3", "-r", "example-smoothed-zero")
    assert res.returncode == 2 and "unknown router 'example-smoothed-zero'" in res.stderr
