"""MMLU-Pro: the TIGER-AI-Lab per-model output zips plus CARROT's Open LLM Leaderboard v2 pickle."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ...errors import DownloadError
from ..safepickle import safe_load
from .common import Converted, _short, read_zip_member

PRICES_DIR = Path(__file__).parent / "prices"


# --------------------------------------------------------------------------------------------
# MMLU-Pro: TIGER-AI-Lab zips + CARROT's Open LLM Leaderboard v2 pickle
# --------------------------------------------------------------------------------------------
_TIGER_URL = "https://github.com/TIGER-AI-Lab/MMLU-Pro/raw/main/eval_results/model_outputs_{m}_5shots.zip"


_CARROT_URL = ("https://github.com/somerstep/CARROT/raw/main/data/open-llm-lb-v2/"
               "new_leaderboard_processed_20241205.pickle")


_LETTERS = "ABCDEFGHIJKLMNOP"


_TIGER_KEYS = ("question_id", "question", "options", "answer", "category", "pred")


def _mmlu_pro_prices() -> pd.DataFrame:
    return pd.read_csv(PRICES_DIR / "mmlu-pro-models.csv")


def _read_tiger_zip(path: Path) -> list[dict]:
    member, raw = read_zip_member(path, ".json")
    where = f"{path} ({member})"
    try:
        rows = json.loads(raw)
    except json.JSONDecodeError as e:
        raise DownloadError(f"{where}: JSON is malformed at line {e.lineno}") from e
    except (ValueError, RecursionError) as e:
        raise DownloadError(f"{where}: JSON is malformed ({_short(e)})") from e
    if not isinstance(rows, list) or not rows:
        raise DownloadError(f"{where}: expected a JSON list of answered questions")
    seen: set[int] = set()
    for i, r in enumerate(rows):
        _check_tiger_row(r, where, i, seen)
    return rows


def _check_tiger_row(r: object, where: str, i: int, seen: set[int]) -> None:
    """One record of an MMLU-Pro output file; normalises question_id and options in place."""
    def bad(msg: str) -> DownloadError:
        return DownloadError(f"{where} record {i}: {msg}")

    if not isinstance(r, dict):
        raise bad(f"expected an object with keys {', '.join(_TIGER_KEYS)}, got {type(r).__name__}")
    missing = [k for k in _TIGER_KEYS if k not in r]
    if missing:
        raise bad(f"lacks key(s) {', '.join(missing)}")
    qid = r["question_id"]
    if isinstance(qid, str) and qid.strip().isdigit():
        qid = int(qid)
    if type(qid) is not int or qid < 0:
        raise bad(f"question_id must be a non-negative integer, got {str(qid)[:30]!r}")
    if qid in seen:
        raise bad(f"question_id {qid} appears twice")
    seen.add(qid)
    r["question_id"] = qid
    opts = r["options"]
    if isinstance(opts, str):
        try:
            opts = ast.literal_eval(opts)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            opts = [opts]
    if not isinstance(opts, list | tuple) or not 1 <= len(opts) <= len(_LETTERS):
        n = len(opts) if isinstance(opts, list | tuple) else type(opts).__name__
        raise bad(f"options must be a list of 1 to {len(_LETTERS)} answers, got {n}")
    if not all(isinstance(o, str | int | float) for o in opts):
        raise bad("options must be strings")
    r["options"] = list(opts)
    for k in ("question", "answer", "category"):
        if not isinstance(r[k], str):
            raise bad(f"{k} must be a string, got {type(r[k]).__name__}")
    if r["pred"] is not None and not isinstance(r["pred"], str):
        raise bad(f"pred must be a letter or null, got {type(r['pred']).__name__}")
    if r.get("generated_text") is not None and not isinstance(r["generated_text"], str):
        raise bad("generated_text must be a string or null")


def _mmlu_pro_text(row: dict) -> str:
    opts = row["options"]
    if isinstance(opts, str):
        try:
            opts = ast.literal_eval(opts)
        except (ValueError, SyntaxError):
            opts = [opts]
    lines = [str(row["question"]).strip()] + [f"{_LETTERS[i]}. {str(o).strip()}" for i, o in enumerate(opts)]
    return "\n".join(lines)


def _openllm_name(hub_name: str) -> str:
    # "open-llm-leaderboard/Qwen__Qwen2-72B-Instruct-details" -> "openllm-v2:Qwen/Qwen2-72B-Instruct"
    base = hub_name.split("/", 1)[-1]
    base = re.sub(r"-details$", "", base)
    return "openllm-v2:" + base.replace("__", "/", 1)


def _read_item_map(path: Path) -> pd.DataFrame:
    from ...io import check_regular

    check_regular(path, "CSV file")
    try:
        df = pd.read_csv(path)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as e:
        raise DownloadError(f"{path}: unreadable ({_short(e)})") from e
    need = [c for c in ("mmlu_pro_question_id", "category") if c not in df.columns]
    if need:
        raise DownloadError(f"{path}: missing column(s) {', '.join(need)}")
    q = pd.to_numeric(df["mmlu_pro_question_id"], errors="coerce")
    bad = q.isna() | (q < 0) | (q != q.round())
    if bad.any():
        raise DownloadError(f"{path}: line {int(np.flatnonzero(bad.to_numpy())[0]) + 2}: mmlu_pro_question_id "
                            "must be a non-negative integer")
    if q.duplicated().any():
        raise DownloadError(f"{path}: line {int(np.flatnonzero(q.duplicated().to_numpy())[0]) + 2}: "
                            "duplicate mmlu_pro_question_id")
    return pd.DataFrame({"mmlu_pro_question_id": q.astype(np.int64), "category": df["category"].astype(str)})


def _read_carrot(pk: Path, n_items: int) -> tuple[np.ndarray, list[str]]:
    """CARROT's leaderboard_mmlu_pro correctness (models x items, NaN = not evaluated) and model names."""
    data = safe_load(pk)
    task = data.get("leaderboard_mmlu_pro") if isinstance(data, dict) else None
    if not isinstance(task, dict) or "correctness" not in task or "models" not in task:
        raise DownloadError(f"{pk}: expected a dict with leaderboard_mmlu_pro -> correctness, models")
    models = task["models"]
    if isinstance(models, np.ndarray):
        models = models.tolist()
    if not isinstance(models, list | tuple) or not all(isinstance(m, str) and m for m in models):
        raise DownloadError(f"{pk}: leaderboard_mmlu_pro models must be a list of model names")
    if len(set(models)) != len(models):
        raise DownloadError(f"{pk}: leaderboard_mmlu_pro models lists a model twice")
    corr = task["correctness"]
    if not isinstance(corr, np.ndarray) or corr.dtype.kind not in "biuf":
        kind = corr.dtype if isinstance(corr, np.ndarray) else type(corr).__name__
        raise DownloadError(f"{pk}: leaderboard_mmlu_pro correctness must be a numeric array, got {kind}")
    if corr.shape != (len(models), n_items):
        raise DownloadError(f"{pk}: correctness has shape {corr.shape}, expected "
                            f"({len(models)}, {n_items}) from the item map")
    corr = corr.astype(float)
    bad = ~np.isnan(corr) & ((corr < 0) | (corr > 1))
    if bad.any():
        j, i = (int(x[0]) for x in np.nonzero(bad))
        raise DownloadError(f"{pk}: correctness of model {j} ({models[j]}) at item {i} is {corr[j, i]:g}, "
                            "expected a number in [0, 1]")
    return corr, list(models)


def convert_mmlu_pro(src: Path) -> Converted:
    zips = sorted(src.glob("model_outputs_*_5shots.zip"))
    pickles = sorted(src.glob("new_leaderboard_processed_*.pickle"))
    if not zips and not pickles:
        raise DownloadError(f"{src}: no model_outputs_<MODEL>_5shots.zip and no CARROT "
                            "new_leaderboard_processed_*.pickle found")
    prompts: dict[str, dict] = {}
    answers: dict[str, str] = {}  # gold option letters: the reference answers (rule choice)
    outcome_frames = []
    for z in zips:
        model = re.sub(r"^model_outputs_(.*)_5shots\.zip$", r"\1", z.name)
        rows = _read_tiger_zip(z)
        for r in rows:
            pid = f"mmlu-pro/{r['question_id']}"
            if pid not in prompts:
                prompts[pid] = {"prompt_id": pid, "text": _mmlu_pro_text(r), "category": str(r["category"])}
                answers[pid] = r["answer"]
        outcome_frames.append(pd.DataFrame({
            "prompt_id": [f"mmlu-pro/{r['question_id']}" for r in rows],
            "model": model,
            "score": [float(r["pred"] is not None and r["pred"] == r["answer"]) for r in rows],
            "output_chars": [float(len(r.get("generated_text") or "")) for r in rows],
        }))
    for pk in pickles:
        mapping = src / "mmlu_pro_item_to_question_id.csv"
        if mapping.exists():
            item_map = _read_item_map(mapping)
        elif prompts:  # leaderboard item i is the i-th smallest MMLU-Pro question id
            qid = sorted(prompts, key=lambda p: int(p.split("/", 1)[1]))
            item_map = pd.DataFrame({"mmlu_pro_question_id": [int(p.split("/", 1)[1]) for p in qid],
                                     "category": [prompts[p]["category"] for p in qid]})
        else:
            raise DownloadError(f"{src}: {pk.name} needs the MMLU-Pro zips or mmlu_pro_item_to_question_id.csv "
                                "beside it to map leaderboard items to question ids")
        corr, hub_models = _read_carrot(pk, len(item_map))
        qids = [f"mmlu-pro/{q}" for q in item_map["mmlu_pro_question_id"]]
        for pid, cat in zip(qids, item_map["category"], strict=True):
            prompts.setdefault(pid, {"prompt_id": pid, "text": None, "category": str(cat)})
        for j, hub in enumerate(hub_models):
            keep = ~np.isnan(corr[j])
            outcome_frames.append(pd.DataFrame({"prompt_id": np.asarray(qids)[keep], "model": _openllm_name(hub),
                                                "score": corr[j][keep], "output_chars": np.nan}))
    outcomes = pd.concat(outcome_frames, ignore_index=True)
    prompts_df = pd.DataFrame(list(prompts.values()))
    texts_included = bool(prompts_df["text"].notna().all())
    if not texts_included:
        prompts_df = prompts_df.drop(columns="text")
    prices = _mmlu_pro_prices()
    present = sorted(outcomes["model"].unique())
    models = prices[prices["model"].isin(present)].sort_values("model").reset_index(drop=True)
    unpriced = sorted(set(present) - set(models["model"]))
    outcomes = outcomes[outcomes["model"].isin(models["model"])]
    card = {
        "name": "mmlu-pro",
        "description": "MMLU-Pro answered by the MMLU-Pro authors' 5-shot CoT runs and Open LLM Leaderboard v2 "
                       "configurations (converted by unirouter download).",
        "license": "Apache-2.0 (TIGER-AI-Lab/MMLU-Pro eval results); Open LLM Leaderboard v2 details: research use",
        "sources": [f"{z.name}" for z in zips] + [p.name for p in pickles],
        "cost_unit": "USD per 1M tokens, approximate 2024 list price blended (3*input+output)/4",
        "score": "0/1 correctness",
        "texts_included": texts_included,
    }
    if unpriced:
        card["excluded_models"] = unpriced
        card["excluded_reason"] = "no price in unirouter_cli/data/sources/prices/mmlu-pro-models.csv"
    references = pd.DataFrame({"prompt_id": list(answers), "answer": list(answers.values()), "rule": "choice"})
    return card, prompts_df, outcomes.reset_index(drop=True), models, references


def _mmlu_pro_files() -> tuple[tuple[str, str], ...]:
    prices = _mmlu_pro_prices()
    tiger = prices.loc[prices["source"].str.startswith("tiger"), "model"]
    files = [(_TIGER_URL.format(m=m), f"model_outputs_{m}_5shots.zip") for m in tiger]
    files.append((_CARROT_URL, "new_leaderboard_processed_20241205.pickle"))
    return tuple(files)
