"""EmbedLLM: the 0/1 correctness CSVs of 112 LLMs (cost = parameter count from the model name)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from ...errors import DownloadError
from .common import Converted, _read_upstream_table
from .routerbench import _numeric_column

# --------------------------------------------------------------------------------------------
# EmbedLLM (hub RZ412/EmbedLLM): train/val/test.csv + model_order.csv + question_order.csv
# --------------------------------------------------------------------------------------------
_EMBEDLLM_BASE = "https://huggingface.co/datasets/RZ412/EmbedLLM/resolve/main/"


_SIZE_RE = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)\s*[bB](?![a-zA-Z])")


_KNOWN_SIZES = {"phi-2": 2.7, "phi-1_5": 1.3, "phi-1": 1.3}


def params_from_name(name: str) -> float:
    """Parameter count in billions read off a model name ("Llama-2-13b-hf" -> 13.0; "8x7B" -> 56)."""
    base = name.split("/")[-1]
    moe = re.search(r"(\d+)x(\d+(?:\.\d+)?)[bB]", base)
    if moe:
        return float(moe.group(1)) * float(moe.group(2))
    m = _SIZE_RE.search(base)
    if m:
        return float(m.group(1))
    return _KNOWN_SIZES.get(base.lower(), float("nan"))


def convert_embedllm(src: Path) -> Converted:
    parts = [src / f for f in ("train.csv", "val.csv", "test.csv") if (src / f).exists()]
    if not parts:
        raise DownloadError(f"{src}: no train.csv / val.csv / test.csv (EmbedLLM format) found")
    frames = []
    for p in parts:
        df = _read_upstream_table(p)
        need = [c for c in ("model_id", "prompt_id", "label") if c not in df.columns]
        if need:
            raise DownloadError(f"{p}: missing column(s) {', '.join(need)} (EmbedLLM format)")
        label = _numeric_column(df, "label", str(p), "a 0/1 label")
        bad = np.isnan(label) | (label < 0) | (label > 1)
        if bad.any():
            raise DownloadError(f"{p}: line {int(np.flatnonzero(bad)[0]) + 2}: label must be a number in [0, 1]")
        frames.append(df)
    long = pd.concat(frames, ignore_index=True).drop_duplicates(subset=["model_id", "prompt_id"])
    if (src / "model_order.csv").exists():
        mo = _read_upstream_table(src / "model_order.csv")
        if not {"model_id", "model_name"} <= set(mo.columns):
            raise DownloadError(f"{src / 'model_order.csv'}: expected columns model_id, model_name")
        names = dict(zip(mo["model_id"], mo["model_name"], strict=True))
    elif "model_name" in long.columns:
        names = dict(zip(long["model_id"], long["model_name"], strict=False))
    else:
        raise DownloadError(f"{src}: model_order.csv missing and no model_name column")
    if (src / "question_order.csv").exists():
        qo = _read_upstream_table(src / "question_order.csv")
        if "prompt_id" not in qo.columns or len(qo.columns) < 2:
            raise DownloadError(f"{src / 'question_order.csv'}: expected columns prompt_id, prompt")
        text_col = "prompt" if "prompt" in qo.columns else qo.columns[-1]
        texts = dict(zip(qo["prompt_id"], qo[text_col], strict=True))
    elif "prompt" in long.columns:
        texts = dict(zip(long["prompt_id"], long["prompt"], strict=False))
    else:
        raise DownloadError(f"{src}: question_order.csv missing and no prompt column")
    cats = (dict(zip(long["prompt_id"], long["category"], strict=False)) if "category" in long.columns else {})
    pids = sorted(long["prompt_id"].unique())
    prompts = pd.DataFrame({"prompt_id": [f"embedllm/{p}" for p in pids],
                            "text": [str(texts.get(p, "")) for p in pids],
                            "category": [str(cats.get(p, "")) for p in pids]})
    model_names = {mid: str(names.get(mid, mid)) for mid in long["model_id"].unique()}
    models = pd.DataFrame({"model": sorted(set(model_names.values()))})
    models["params_b"] = [params_from_name(m) for m in models["model"]]
    unpriced = models.loc[models["params_b"].isna(), "model"].tolist()
    models = models[models["params_b"].notna()].reset_index(drop=True)
    models["cost"] = models["params_b"]
    models["kind"] = "open"
    models["source"] = "embedllm"
    outcomes = pd.DataFrame({"prompt_id": "embedllm/" + long["prompt_id"].astype(str),
                             "model": long["model_id"].map(model_names),
                             "score": pd.to_numeric(long["label"], errors="coerce").astype(float)})
    outcomes = outcomes[outcomes["model"].isin(models["model"])]
    card = {"name": "embedllm",
            "description": "EmbedLLM: correctness of open LLMs on 10 benchmarks (converted by unirouter).",
            "license": "Apache-2.0 (RZ412/EmbedLLM dataset card)",
            "sources": ["huggingface RZ412/EmbedLLM " + ", ".join(p.name for p in parts)],
            "cost_unit": "parameters (billions), read off the model name", "score": "0/1 correctness"}
    if unpriced:
        card["excluded_models"] = unpriced
        card["excluded_reason"] = "parameter count not readable from the model name"
    return card, prompts, outcomes.reset_index(drop=True), models[["model", "cost", "params_b", "kind", "source"]]
