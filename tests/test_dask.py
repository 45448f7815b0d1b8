"""Trials on a real Dask distributed cluster (LocalCluster on loopback) equal the local run."""

from __future__ import annotations

import pytest

from .conftest import invoke

distributed = pytest.importorskip("dask.distributed", reason="needs the 'dask' extra (installed by make install)")


def test_dask_backend_matches_local(runner, small_dataset, tmp_path):
    local = tmp_path / "local"
    args = ["--dataset", small_dataset, "--router", "zero", "--router", "knn", "--router", "uniroute-kmeans",
            "--trials", "3", "--seed", "5"]
    assert invoke(runner, "fit", *args, "--run-dir", local).exit_code == 0
    assert invoke(runner, "evaluate", "--run-dir", local).exit_code == 0
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None,
                                  processes=True) as cluster:
        remote = tmp_path / "dask"
        res = invoke(runner, "fit", *args, "--run-dir", remote, "--backend", "dask", "--scheduler",
                     cluster.scheduler_address)
        assert res.exit_code == 0, res.output
        res = invoke(runner, "evaluate", "--run-dir", remote, "--backend", "dask", "--scheduler",
                     cluster.scheduler_address)
        assert res.exit_code == 0, res.output
    assert (remote / "metrics.csv").read_bytes() == (local / "metrics.csv").read_bytes()


def test_dask_needs_a_scheduler(runner, small_dataset, tmp_path):
    res = invoke(runner, "fit", "--dataset", small_dataset, "--router", "zero", "--trials", "1", "--run-dir",
                 tmp_path / "r", "--backend", "dask")
    assert res.exit_code == 2 and "--scheduler" in res.output
    assert not (tmp_path / "r").exists()
