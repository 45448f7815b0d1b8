"""Shared fixtures. Tests run offline on the bundled data and tests/fixtures; tests that read
../shared skip with a stated reason when it is absent (a user's clone has no ../shared)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from unirouter_cli.runs.executors import one_thread_env

one_thread_env()  # as `unirouter` does before numpy loads: one BLAS thread, so a test sees the CLI's digits
if "numpy" in sys.modules:  # a plugin loaded it first: limit the loaded BLAS instead
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from unirouter_cli.cli import app
from unirouter_cli.data.registry import BUNDLED_DIR

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
SHARED = Path(os.environ.get("UNIROUTER_SHARED", ROOT.parent / "shared"))
needs_shared = pytest.mark.skipif(not (SHARED / "data").is_dir(),
                                  reason=f"needs the shared data folder {SHARED} (in CI, not in a user's clone)")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own empty $UNIROUTER_HOME (no cache leaks between tests)."""
    home = tmp_path_factory.mktemp("unirouter-home")
    monkeypatch.setenv("UNIROUTER_HOME", str(home))
    monkeypatch.delenv("UNIROUTER_DEBUG", raising=False)
    return home


@pytest.fixture()
def runner() -> CliRunner:
    return CliRunner()


def invoke(runner: CliRunner, *args: str):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def write_dataset(folder: Path, prompts: pd.DataFrame, outcomes: pd.DataFrame, models: pd.DataFrame,
                  card: dict | None = None, fmt: str = "parquet") -> Path:
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dataset.yaml").write_text(yaml.safe_dump(card or {"name": folder.name, "cost_unit": "USD"}))
    for name, df in (("prompts", prompts), ("outcomes", outcomes)):
        if fmt == "csv":
            df.to_csv(folder / f"{name}.csv", index=False)
        else:
            df.to_parquet(folder / f"{name}.parquet", index=False)
    models.to_csv(folder / "models.csv", index=False)
    return folder


@pytest.fixture(scope="session")
def small_tables() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """600 real prompts of the bundled RouterBench subset (all 11 LLMs, per-query costs)."""
    src = BUNDLED_DIR / "routerbench-subset"
    prompts = pd.read_parquet(src / "prompts.parquet")
    prompts = prompts.groupby("category", sort=False).head(200).reset_index(drop=True)
    outcomes = pd.read_parquet(src / "outcomes.parquet")
    outcomes = outcomes[outcomes["prompt_id"].isin(prompts["prompt_id"])].reset_index(drop=True)
    models = pd.read_csv(src / "models.csv")
    return prompts, outcomes, models


@pytest.fixture()
def small_dataset(tmp_path: Path, small_tables) -> Path:
    p, o, m = small_tables
    return write_dataset(tmp_path / "small-rb", p, o, m, {"name": "small-rb", "cost_unit": "USD per query"})


def synthetic_scores(n: int, m: int, seed: int = 0, rank: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Low-rank correctness probabilities -> 0/1 scores; embeddings are the latent prompt factors."""
    rng = np.random.default_rng(seed)
    U = rng.normal(size=(n, rank))
    V = rng.normal(size=(m, rank))
    p = 1 / (1 + np.exp(-(U @ V.T)))
    return (rng.random((n, m)) < p).astype(float), U


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
