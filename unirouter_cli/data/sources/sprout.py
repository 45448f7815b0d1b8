"""SPROUT (CARROT): per-prompt scores and token counts of 13 LLMs, priced by list prices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ...errors import DownloadError
from .common import Converted, _read_upstream_table
from .routerbench import _prompt_text

# --------------------------------------------------------------------------------------------
# SPROUT (hub CARROT-LLM-Routing/SPROUT): one row per prompt, one struct column per model
# --------------------------------------------------------------------------------------------
_SPROUT_BASE = "https://huggingface.co/datasets/CARROT-LLM-Routing/SPROUT/resolve/main/data/"


# USD per 1M (input, output) tokens; approximate list prices in CARROT's model table (early 2025).
SPROUT_PRICES: dict[str, tuple[float, float]] = {
    "claude-3-5-sonnet-v1": (3.0, 15.0), "titan-text-premier-v1": (0.5, 1.5),
    "openai-gpt-4o": (2.5, 10.0), "openai-gpt-4o-mini": (0.15, 0.6),
    "granite-3-2b-instruct": (0.1, 0.1), "granite-3-8b-instruct": (0.2, 0.2),
    "llama-3-1-70b-instruct": (0.9, 0.9), "llama-3-1-8b-instruct": (0.2, 0.2),
    "llama-3-2-1b-instruct": (0.06, 0.06), "llama-3-2-3b-instruct": (0.06, 0.06),
    "llama-3-3-70b-instruct": (0.9, 0.9), "mixtral-8x7b-instruct": (0.6, 0.6),
    "llama-3-405b-instruct": (3.5, 3.5),
}


def _sprout_score(cell: object, where: Path, i: int, model: str) -> float:
    if not isinstance(cell, dict) or cell.get("score") is None:
        return np.nan
    try:
        s = float(cell["score"])
    except (TypeError, ValueError):
        s = np.nan
    if not 0 <= s <= 1:
        raise DownloadError(f"{where}: row {i}: {model} score {str(cell['score'])[:30]!r}, expected a number in [0, 1]")
    return s


def convert_sprout(src: Path) -> Converted:
    files = sorted(src.glob("*.parquet")) + sorted(src.glob("*.jsonl"))
    if not files:
        raise DownloadError(f"{src}: no SPROUT *.parquet or *.jsonl files found")
    df = pd.concat([_read_upstream_table(f) for f in files], ignore_index=True)
    if "prompt" not in df.columns:
        raise DownloadError(f"{files[0]}: missing column prompt (SPROUT format)")
    model_cols = [c for c in df.columns if c in SPROUT_PRICES]
    if len(model_cols) < 2:
        raise DownloadError(f"{files[0]}: expected model columns named like {', '.join(list(SPROUT_PRICES)[:3])}")
    key = df["key"].astype(str) if "key" in df.columns else pd.Series(np.arange(len(df)).astype(str))
    ids = ("sprout/" + key).to_numpy()
    cat = df["dataset"].astype(str) if "dataset" in df.columns else pd.Series([""] * len(df))
    prompts = pd.DataFrame({"prompt_id": ids, "text": [_prompt_text(p) for p in df["prompt"]],
                            "category": cat.to_numpy()})
    frames = []
    for m in model_cols:
        cells = df[m].tolist()
        score = np.array([_sprout_score(c, files[0], i, m) for i, c in enumerate(cells)])
        tin = np.array([float(c.get("num_input_tokens") or 0) if isinstance(c, dict) else 0 for c in cells])
        tout = np.array([float(c.get("num_output_tokens") or 0) if isinstance(c, dict) else 0 for c in cells])
        pin, pout = SPROUT_PRICES[m]
        cost = (tin * pin + tout * pout) / 1e6
        keep = ~np.isnan(score)
        frames.append(pd.DataFrame({"prompt_id": ids[keep], "model": m, "score": score[keep],
                                    "cost": np.where(cost[keep] > 0, cost[keep], np.nan)}))
    outcomes = pd.concat(frames, ignore_index=True)
    mean_cost = outcomes.groupby("model")["cost"].mean()
    models = pd.DataFrame({"model": model_cols, "cost": [float(mean_cost.get(m, np.nan)) for m in model_cols],
                           "params_b": np.nan, "kind": "mixed", "source": "sprout"})
    card = {"name": "sprout", "description": "SPROUT (CARROT) prompts answered by 13 LLMs (converted by unirouter).",
            "license": "see the CARROT-LLM-Routing/SPROUT dataset card",
            "sources": ["huggingface CARROT-LLM-Routing/SPROUT " + ", ".join(f.name for f in files)],
            "cost_unit": "USD per query (token counts x approximate list prices)", "score": "score in [0, 1]"}
    return card, prompts.drop_duplicates("prompt_id"), outcomes, models
