"""The dataset registry: named datasets, where their folders are (download cache or bundled), loading."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..errors import DataError
from .folder import CARD, Dataset, _find_table, load_folder

BUNDLED_DIR = Path(__file__).parents[1] / "bundled"


def unirouter_home() -> Path:
    """Cache root: ``$UNIROUTER_HOME`` or ``~/.cache/unirouter`` (read lazily, never required)."""
    env = os.environ.get("UNIROUTER_HOME")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "unirouter"


# --------------------------------------------------------------------------------------------
# the registry of named datasets
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DatasetInfo:
    name: str
    description: str
    prompts: str
    llms: str
    cost_unit: str
    license: str
    source: str
    downloadable: bool = True


REGISTRY: dict[str, DatasetInfo] = {}


def register_dataset(info: DatasetInfo) -> DatasetInfo:
    REGISTRY[info.name] = info
    return info


def bundled_path(name: str) -> Path | None:
    p = BUNDLED_DIR / name
    return p if (p / CARD).exists() else None


def cached_path(name: str) -> Path | None:
    p = unirouter_home() / "datasets" / name
    return p if (p / CARD).exists() else None


def availability(name: str) -> str:
    """Where ``name`` comes from on this machine: the folder used first, then what it hides."""
    cached, bundled = cached_path(name), bundled_path(name)
    if cached and bundled:
        return "downloaded (hides bundled)"
    if cached:
        return "downloaded"
    if bundled:
        return "bundled"
    return "downloadable" if REGISTRY[name].downloadable else "missing"


def folder_counts(folder: Path) -> tuple[int, int]:
    """(prompts, LLMs) actually in a dataset folder: parquet row counts from the file footer, CSV rows
    otherwise, models.csv rows. Cheap: no table is loaded."""
    from ..io import check_regular

    def rows(p: Path | None) -> int:
        if p is None:
            return 0
        check_regular(p, "table")
        if p.suffix == ".parquet":
            import pyarrow.parquet as pq

            return int(pq.ParquetFile(p).metadata.num_rows)
        return int(len(pd.read_csv(p, usecols=[0])))

    return rows(_find_table(folder, "prompts")), rows(folder / "models.csv" if (folder / "models.csv").exists()
                                                       else None)


def resolve(spec: str) -> tuple[str, Path]:
    """Turn a registered name or a folder path into (name, folder). Downloaded copies win over bundled."""
    p = Path(spec).expanduser()
    if p.is_dir():
        return p.resolve().name, p.resolve()
    if spec in REGISTRY:
        for cand in (cached_path(spec), bundled_path(spec)):
            if cand is not None:
                return spec, cand
        raise DataError(f"dataset {spec!r} is not on this machine: run `unirouter download {spec}` "
                        f"(or `unirouter download {spec} --from DIR` with upstream files on disk)")
    if os.sep in spec or spec.startswith("."):
        raise DataError(f"dataset folder {spec} does not exist")
    raise DataError(f"unknown dataset {spec!r}: expected one of {', '.join(sorted(REGISTRY))} or a folder path")


_LOADED: dict[tuple[str, str], Dataset] = {}


def load_dataset(spec: str) -> Dataset:
    """Load a dataset by registered name or folder path (memoised per process)."""
    name, folder = resolve(spec)
    key = (name, str(folder))
    if key not in _LOADED:
        _LOADED[key] = load_folder(folder, name=name)
    return _LOADED[key]


register_dataset(DatasetInfo(
    "mmlu-pro", "MMLU-Pro answered by 31 CoT LLMs + 18 Open LLM Leaderboard v2 configurations",
    "12,032", "49", "USD / 1M tokens (2024 list, 3:1 blend)",
    "Apache-2.0 (TIGER-AI-Lab); OpenLLM v2 details: research use",
    "github TIGER-AI-Lab/MMLU-Pro + somerstep/CARROT"))


register_dataset(DatasetInfo(
    "routerbench", "RouterBench 0-shot: 11 LLMs with measured per-query cost", "36,497", "11",
    "USD per query", "MIT", "hf withmartian/routerbench"))


register_dataset(DatasetInfo(
    "routerbench-subset", "RouterBench 0-shot rows for ARC-Challenge, MBPP, Winogrande (bundled, with texts)",
    "3,178", "11", "USD per query", "MIT (RouterBench; rows via RouterDC)", "RouterDC datasets/routerbench_zs",
    downloadable=False))


register_dataset(DatasetInfo(
    "embedllm", "EmbedLLM correctness of 112 open LLMs on 10 benchmarks", "~36,000", "112",
    "parameters (billions)", "Apache-2.0", "hf RZ412/EmbedLLM"))


register_dataset(DatasetInfo(
    "sprout", "SPROUT (CARROT): 13 LLMs with token counts and list prices", "~45,000", "13",
    "USD per query", "see dataset card", "hf CARROT-LLM-Routing/SPROUT"))
