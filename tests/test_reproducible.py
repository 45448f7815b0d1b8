"""The numbers of a small preset run, at the digits the report prints, against a stored file.

The run is the routerbench-subset preset (every router, bundled data) cut to 3 trials, through the CLI in a fresh
process (as a user runs it: nothing another test loaded or set in this process reaches it). With the versions of
constraints.txt installed, every cell must match tests/data/routerbench-subset-3trials.csv exactly; a change of a
dependency, of BLAS or of router code that moves a printed digit fails here. After an intended change of results,
rewrite the stored file with ``UNIROUTER_STORE=1 pytest tests/test_reproducible.py`` and commit it with the change.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from unirouter_cli.results.report import fmt_cell

from .conftest import ROOT

STORED = Path(__file__).parent / "data" / "routerbench-subset-3trials.csv"
METRICS = ("area", "area_50", "qnc", "aiq")


def printed_cells(run_dir: Path) -> pd.DataFrame:
    """router, metric, cell: the mean and 95% interval of each metric as report.md prints them."""
    summary = pd.read_csv(run_dir / "summary.csv")
    summary = summary[summary["metric"].isin(METRICS)]
    cells = [fmt_cell(m, mean, lo, hi) for m, mean, lo, hi in
             summary[["metric", "mean", "ci_low", "ci_high"]].itertuples(index=False)]
    return pd.DataFrame({"router": summary["router"].to_numpy(), "metric": summary["metric"].to_numpy(),
                         "cell": cells})


def _has_avx2() -> bool:
    try:
        flags = next(ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")).split()
    except (OSError, StopIteration):
        return False
    from unirouter_cli.runs.executors import X86_64_V3

    return X86_64_V3 <= set(flags)


def _fixed_kernels() -> bool:
    """This machine runs the kernels the stored digits were made with (``runs.executors.fixed_kernels_env``)."""
    from unirouter_cli.runs.executors import BLAS_KERNELS, NATIVE_ENV

    return (sys.platform.startswith("linux") and _has_avx2() and os.environ.get(NATIVE_ENV) != "1"
            and os.environ.get("OPENBLAS_CORETYPE", BLAS_KERNELS) == BLAS_KERNELS)


@pytest.mark.slow
@pytest.mark.skipif(not _fixed_kernels(), reason="the stored digits are those of the fixed kernels (Linux x86-64 "
                    "with AVX2, OPENBLAS_CORETYPE=Haswell); this machine or environment runs other kernels")
def test_routerbench_subset_three_trials_match_the_stored_digits(tmp_path: Path) -> None:
    run = tmp_path / "run"
    config = ROOT / "configs" / "routerbench-subset.yaml"
    for args in (("fit", "-c", config, "--trials", "3", "--run-dir", run, "--jobs", "1"),
                 ("evaluate", "--run-dir", run, "--jobs", "1"), ("report", "--run-dir", run)):
        result = subprocess.run([sys.executable, "-m", "unirouter_cli", "-q", *map(str, args)], capture_output=True,
                                text=True, cwd=ROOT)
        assert result.returncode == 0, result.stderr
    got = printed_cells(run)
    if os.environ.get("UNIROUTER_STORE") == "1":
        STORED.parent.mkdir(parents=True, exist_ok=True)
        got.to_csv(STORED, index=False)
    want = pd.read_csv(STORED, dtype=str)
    assert len(got) == len(want) == 9 * len(METRICS)
    merged = want.merge(got, on=["router", "metric"], how="outer", suffixes=("_stored", "_now"), indicator=True)
    drift = merged[(merged["_merge"] != "both") | (merged["cell_stored"] != merged["cell_now"])]
    assert drift.empty, "printed numbers differ from the stored run:\n" + drift.to_string(index=False)


def _kernels_in_fresh_process(env: dict[str, str]) -> str:
    code = ("from unirouter_cli.runs.executors import one_thread_env, kernels; one_thread_env(); import numpy; "
            "print(kernels())")
    clean = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "NPY_DISABLE_CPU_FEATURES")}
    out = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True,
                         check=True)
    assert out.stderr == "", out.stderr  # numpy warns here if it does not know a feature name
    return out.stdout.strip()


@pytest.mark.skipif(not _has_avx2(), reason="the fixed kernels apply to x86-64 CPUs with AVX2 on Linux")
def test_every_avx2_machine_runs_the_same_kernels() -> None:
    """OpenBLAS's Haswell kernels and numpy at most X86_V3 (no AVX-512 loops), whatever this CPU would pick;
    UNIROUTER_NATIVE_KERNELS=1 leaves the choice to the libraries, and a user's own OPENBLAS_CORETYPE wins."""
    assert _kernels_in_fresh_process({}) == "BLAS Haswell, numpy X86_V3"
    assert _kernels_in_fresh_process({"OPENBLAS_CORETYPE": "Sandybridge"}).startswith("BLAS Sandybridge")
    native = _kernels_in_fresh_process({"UNIROUTER_NATIVE_KERNELS": "1"})
    assert native.startswith("BLAS ") and "numpy" in native
