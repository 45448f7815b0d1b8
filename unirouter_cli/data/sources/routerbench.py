"""RouterBench: the 0-shot DataFrame pickle (one 0/1 column per model, per-query costs)."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pandas as pd

from ...errors import DownloadError
from ..safepickle import safe_load
from .common import Converted, _short

# --------------------------------------------------------------------------------------------
# RouterBench 0-shot pickle (a pandas DataFrame)
# --------------------------------------------------------------------------------------------
_ROUTERBENCH_URL = "https://huggingface.co/datasets/withmartian/routerbench/resolve/main/routerbench_0shot.pkl"


_RB_META = ("sample_id", "prompt", "eval_name", "oracle_model_to_route_to")


def _prompt_text(value: object) -> str:
    if isinstance(value, list | tuple):
        return "\n".join(map(str, value))
    s = str(value)
    if s.startswith("["):
        try:
            turns = ast.literal_eval(s)
            if isinstance(turns, list | tuple):
                return "\n".join(map(str, turns))
        except (ValueError, SyntaxError):
            pass
    return s


def _numeric_column(df: pd.DataFrame, col: str, where: str, what: str) -> np.ndarray:
    """``df[col]`` as floats (missing = NaN); a value that is not a number is an error naming the row."""
    values = df[col]
    num = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    bad = np.isnan(num) & values.notna().to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DownloadError(f"{where}: row {i}: column {col} is {str(values.iloc[i])[:30]!r}, expected {what}")
    return num


def routerbench_frame_to_folder(df: pd.DataFrame, where: str) -> Converted:
    missing = [c for c in ("prompt", "eval_name") if c not in df.columns]
    if missing:
        raise DownloadError(f"{where}: missing column(s) {', '.join(missing)}")
    models = [c[: -len("|total_cost")] for c in df.columns if c.endswith("|total_cost")]
    models = [m for m in models if m in df.columns]
    if len(models) < 2:
        raise DownloadError(f"{where}: expected '<model>' and '<model>|total_cost' columns for 2+ models")
    if len(set(df.columns)) != len(df.columns):
        raise DownloadError(f"{where}: a column name appears twice")
    ids = [f"routerbench/{i}" for i in df.index]
    dup = np.flatnonzero(pd.Index(ids).duplicated())
    if len(dup):
        raise DownloadError(f"{where}: row {int(dup[0])}: index {str(df.index[int(dup[0])])!r} appears twice "
                            "(each row is one prompt)")
    for i, p in enumerate(df["prompt"]):
        if not (isinstance(p, str) or (isinstance(p, list | tuple) and all(isinstance(t, str) for t in p))):
            raise DownloadError(f"{where}: row {i}: prompt must be text or a list of texts, got {type(p).__name__}")
    prompts = pd.DataFrame({"prompt_id": ids, "text": [_prompt_text(p) for p in df["prompt"]],
                            "category": df["eval_name"].astype(str).to_numpy()})
    frames = []
    for m in models:
        score = _numeric_column(df, m, where, "a score in [0, 1]")
        cost = _numeric_column(df, f"{m}|total_cost", where, "a cost")
        bad = ~np.isnan(score) & ((score < 0) | (score > 1))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DownloadError(f"{where}: row {i}: column {m} is {score[i]:g}, expected a score in [0, 1]")
        keep = ~np.isnan(score)
        cost = np.where(np.isfinite(cost) & (cost > 0), cost, np.nan)
        frames.append(pd.DataFrame({"prompt_id": np.asarray(ids)[keep], "model": m,
                                    "score": score[keep], "cost": cost[keep]}))
    outcomes = pd.concat(frames, ignore_index=True)
    mean_cost = outcomes.groupby("model")["cost"].mean()
    models_df = pd.DataFrame({"model": models, "cost": [float(mean_cost.get(m, np.nan)) for m in models],
                              "params_b": np.nan, "kind": "mixed", "source": "routerbench-0shot"})
    card = {
        "name": "routerbench",
        "description": "RouterBench 0-shot: prompts from standard benchmarks answered by 11 LLMs, with the "
                       "measured per-query USD cost of each answer.",
        "license": "MIT (withmartian/routerbench dataset card)",
        "sources": ["huggingface withmartian/routerbench routerbench_0shot.pkl"],
        "cost_unit": "USD per query (models.csv: mean over the table)",
        "score": "correctness in [0, 1]",
    }
    return card, prompts, outcomes, models_df


def convert_routerbench(src: Path) -> Converted:
    pkl = src / "routerbench_0shot.pkl"
    if pkl.exists():
        df = safe_load(pkl)
        if not isinstance(df, pd.DataFrame):
            raise DownloadError(f"{pkl}: expected a pandas DataFrame, got {type(df).__name__}")
        return routerbench_frame_to_folder(df, str(pkl))
    csvs = sorted(src.glob("routerbench_0shot*.csv"))
    if csvs:
        try:
            from ...io import check_regular

            df = pd.read_csv(check_regular(csvs[0], "CSV file"), index_col=0)
        except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as e:
            raise DownloadError(f"{csvs[0]}: unreadable ({_short(e)})") from e
        return routerbench_frame_to_folder(df, str(csvs[0]))
    raise DownloadError(f"{src}: no routerbench_0shot.pkl (or routerbench_0shot*.csv rows) found")
