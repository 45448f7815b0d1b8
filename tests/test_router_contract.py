"""The router contract: a router is one class (name, kind, declared parameters, keyword ``__init__``), registered
by ``@register_router``; a built-in router is one file in unirouter_cli/routers/; a name is registered once."""

from __future__ import annotations

import inspect
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import unirouter_cli
from unirouter_cli.errors import ConfigError
from unirouter_cli.routers import (
    DEFAULT_ROUTERS,
    ROUTERS,
    Param,
    Router,
    default_fit_routers,
    make_router,
    register_router,
)

NEW_ROUTER = '''
"""A router added as one file: each LLM's validation error, smoothed toward one half."""

from __future__ import annotations

import numpy as np

from .base import Param, Pool, Router
from .registry import register_router


@register_router
class HalfSmoothed(Router):
    name = "half-smoothed"
    help = "each LLM's validation error, smoothed toward 1/2"
    parameters = {"weight": Param(float, low=0, high=1, help="weight of 1/2")}
    needs_training_llms = False
    fit_by_default = True
    order = 50

    def __init__(self, weight: float = 0.25) -> None:
        super().__init__()
        self.weight = weight

    def predict(self, X: np.ndarray, pool: Pool) -> np.ndarray:
        obs = ~np.isnan(pool.E_val)
        err = np.where(obs, pool.E_val, 0.0).sum(0) / np.maximum(obs.sum(0), 1)
        return np.broadcast_to((1 - self.weight) * err + self.weight * 0.5, (len(X), len(err))).copy()
'''


def test_every_builtin_router_follows_the_contract():
    for name in DEFAULT_ROUTERS:
        spec = ROUTERS[name]
        cls = spec.factory
        assert cls.name == name and cls.kind == spec.kind and spec.source.startswith("unirouter_cli.routers.")
        sig = inspect.signature(cls.__init__)
        assert all(p.kind is not inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()), name
        r = make_router(name)
        # the constructor stores each declared parameter under its own name; get_params returns exactly them
        assert r.get_params() == {k: sig.parameters[k].default for k in cls.parameters}
        assert r.get_params() == spec.defaults
    assert default_fit_routers() == [n for n in DEFAULT_ROUTERS if ROUTERS[n].fit_by_default]
    assert "oracle" in default_fit_routers() and "clairvoyant-mlp" not in default_fit_routers()


def test_a_duplicate_name_is_refused_naming_both_classes():
    with pytest.raises(ConfigError) as err:
        @register_router
        class Imposter(Router):  # noqa: F841 - registration is the point
            name = "knn"

    msg = str(err.value)
    assert "unirouter_cli.routers.neighbours.KNNRouter" in msg and "Imposter" in msg
    assert ROUTERS["knn"].source == "unirouter_cli.routers.neighbours.KNNRouter"


def test_a_declared_parameter_needs_a_keyword_argument_with_a_default():
    with pytest.raises(TypeError, match="no keyword argument 'depth'"):
        @register_router
        class NoArg(Router):  # noqa: F841
            name = "contract-no-arg"
            parameters = {"depth": Param(int, low=1)}
    assert "contract-no-arg" not in ROUTERS


def test_set_params_refuses_an_undeclared_name():
    r = make_router("knn")
    assert r.set_params(k=5).k == 5
    with pytest.raises(ConfigError, match="unknown parameter K"):
        r.set_params(K=4)


@pytest.mark.slow
def test_a_router_added_as_one_file_appears_in_fit_routers_report_and_plot(tmp_path):
    """Copy the package, add one file to routers/, and run the CLI from the copy: the new router is listed,
    fitted by default, evaluated, reported and plotted, with no other file touched."""
    site = tmp_path / "site"
    pkg = Path(unirouter_cli.__file__).parent
    shutil.copytree(pkg, site / "unirouter_cli", ignore=shutil.ignore_patterns("__pycache__", "bundled"))
    os.symlink(pkg / "bundled", site / "unirouter_cli" / "bundled")
    (site / "unirouter_cli" / "routers" / "half_smoothed.py").write_text(NEW_ROUTER)
    env = {**os.environ, "PYTHONPATH": str(site), "COLUMNS": "200"}

    def cli(*args: object) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "unirouter_cli", *map(str, args)], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=600)

    listed = cli("routers")
    assert listed.returncode == 0 and "half-smoothed" in listed.stdout, listed.stderr
    run = tmp_path / "run"
    res = cli("-q", "fit", "--dataset", "routerbench-subset", "--trials", 2, "--run-dir", run, "-r", "zero",
              "-r", "half-smoothed", "-p", "half-smoothed.weight=0")
    assert res.returncode == 0, res.stderr
    assert cli("-q", "evaluate", "--run-dir", run).returncode == 0
    m = pd.read_csv(run / "metrics.csv").pivot(index="trial", columns="router", values="area")
    assert (m["half-smoothed"] - m["zero"]).abs().max() < 1e-12  # weight 0: ZeroRouter's gamma exactly
    assert cli("-q", "report", "--run-dir", run).returncode == 0
    assert "half-smoothed" in (run / "report.md").read_text()
    assert cli("-q", "plot", "--run-dir", run).returncode == 0
    assert any((run / "plots").glob("*.png"))
    # the default router list (no -r) now includes it, as its class says
    res = cli("-q", "fit", "--dataset", "routerbench-subset", "--trials", 1, "--run-dir", tmp_path / "r2")
    assert res.returncode == 0, res.stderr
    assert "half-smoothed" in (tmp_path / "r2" / "config.yaml").read_text()
