"""Stage 0 - downloads: fetch public upstream files and convert them to the dataset folder format.

Each source has a converter ``convert_<name>(src_dir) -> (card, prompts, outcomes, models)`` that
reads upstream files already on disk; ``download`` fetches them first (plain HTTPS, no credentials)
unless ``--from DIR`` names a folder that holds them. The converted folder is validated, written
to a temporary folder and renamed into the cache, so a failed download never damages a good copy.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .data import REGISTRY, unirouter_home, validate_folder, write_folder
from .errors import DownloadError
from .safepickle import safe_load

PRICES_DIR = Path(__file__).parent / "prices"


class NotFound(DownloadError):
    """The host answered, but has no such file (HTTP 404)."""
Converted = tuple[dict, pd.DataFrame, pd.DataFrame, pd.DataFrame]


@dataclass(frozen=True)
class Source:
    name: str
    files: Callable[[], tuple[tuple[str, str], ...]]  # -> (url, local file name) pairs to fetch
    convert: Callable[[Path], Converted]
    skip_missing: bool = False  # a file the host does not have (HTTP 404) is skipped, not fatal


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
    try:
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if n.endswith(".json")]
            if not names:
                raise DownloadError(f"{path}: zip holds no .json file (expected model_outputs_<MODEL>_5shots.json)")
            raw = zf.read(names[0])
    except zipfile.BadZipFile as e:
        raise DownloadError(f"{path}: not a valid zip ({e}); truncated download or an error page?") from e
    try:
        rows = json.loads(raw)
    except json.JSONDecodeError as e:
        raise DownloadError(f"{path}: JSON inside the zip is malformed at line {e.lineno}") from e
    if not isinstance(rows, list) or not rows:
        raise DownloadError(f"{path}: expected a JSON list of answered questions")
    missing = [k for k in _TIGER_KEYS if k not in rows[0]]
    if missing:
        raise DownloadError(f"{path}: first record lacks key(s) {', '.join(missing)}")
    return rows


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


def convert_mmlu_pro(src: Path) -> Converted:
    zips = sorted(src.glob("model_outputs_*_5shots.zip"))
    pickles = sorted(src.glob("new_leaderboard_processed_*.pickle"))
    if not zips and not pickles:
        raise DownloadError(f"{src}: no model_outputs_<MODEL>_5shots.zip and no CARROT "
                            "new_leaderboard_processed_*.pickle found")
    prompts: dict[str, dict] = {}
    outcome_frames = []
    for z in zips:
        model = re.sub(r"^model_outputs_(.*)_5shots\.zip$", r"\1", z.name)
        rows = _read_tiger_zip(z)
        for r in rows:
            pid = f"mmlu-pro/{r['question_id']}"
            if pid not in prompts:
                prompts[pid] = {"prompt_id": pid, "text": _mmlu_pro_text(r), "category": str(r["category"])}
        outcome_frames.append(pd.DataFrame({
            "prompt_id": [f"mmlu-pro/{r['question_id']}" for r in rows],
            "model": model,
            "score": [float(r["pred"] is not None and r["pred"] == r["answer"]) for r in rows],
            "output_chars": [float(len(r.get("generated_text") or "")) for r in rows],
        }))
    for pk in pickles:
        mapping = src / "mmlu_pro_item_to_question_id.csv"
        if mapping.exists():
            item_map = pd.read_csv(mapping)
        elif prompts:  # leaderboard item i is the i-th smallest MMLU-Pro question id
            qid = sorted(prompts, key=lambda p: int(p.split("/", 1)[1]))
            item_map = pd.DataFrame({"mmlu_pro_question_id": [int(p.split("/", 1)[1]) for p in qid],
                                     "category": [prompts[p]["category"] for p in qid]})
        else:
            raise DownloadError(f"{src}: {pk.name} needs the MMLU-Pro zips or mmlu_pro_item_to_question_id.csv "
                                "beside it to map leaderboard items to question ids")
        data = safe_load(pk)
        task = data.get("leaderboard_mmlu_pro") if isinstance(data, dict) else None
        if not isinstance(task, dict) or "correctness" not in task or "models" not in task:
            raise DownloadError(f"{pk}: expected a dict with leaderboard_mmlu_pro -> correctness, models")
        corr = np.asarray(task["correctness"], dtype=float)
        if corr.shape != (len(task["models"]), len(item_map)):
            raise DownloadError(f"{pk}: correctness has shape {corr.shape}, expected "
                                f"({len(task['models'])}, {len(item_map)}) from the item map")
        qids = [f"mmlu-pro/{q}" for q in item_map["mmlu_pro_question_id"]]
        for pid, cat in zip(qids, item_map["category"], strict=True):
            prompts.setdefault(pid, {"prompt_id": pid, "text": None, "category": str(cat)})
        for j, hub in enumerate(task["models"]):
            outcome_frames.append(pd.DataFrame({"prompt_id": qids, "model": _openllm_name(str(hub)),
                                                "score": corr[j], "output_chars": np.nan}))
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
        card["excluded_reason"] = "no price in unirouter_cli/prices/mmlu-pro-models.csv"
    return card, prompts_df, outcomes.reset_index(drop=True), models


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


def routerbench_frame_to_folder(df: pd.DataFrame, where: str) -> Converted:
    missing = [c for c in ("prompt", "eval_name") if c not in df.columns]
    if missing:
        raise DownloadError(f"{where}: missing column(s) {', '.join(missing)}")
    models = [c[: -len("|total_cost")] for c in df.columns if c.endswith("|total_cost")]
    models = [m for m in models if m in df.columns]
    if len(models) < 2:
        raise DownloadError(f"{where}: expected '<model>' and '<model>|total_cost' columns for 2+ models")
    ids = [f"routerbench/{i}" for i in df.index]
    prompts = pd.DataFrame({"prompt_id": ids, "text": [_prompt_text(p) for p in df["prompt"]],
                            "category": df["eval_name"].astype(str).to_numpy()})
    frames = []
    for m in models:
        score = pd.to_numeric(df[m], errors="coerce").to_numpy(dtype=float)
        cost = pd.to_numeric(df[f"{m}|total_cost"], errors="coerce").to_numpy(dtype=float)
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
        return routerbench_frame_to_folder(pd.read_csv(csvs[0], index_col=0), str(csvs[0]))
    raise DownloadError(f"{src}: no routerbench_0shot.pkl (or routerbench_0shot*.csv rows) found")


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
        df = pd.read_csv(p)
        need = [c for c in ("model_id", "prompt_id", "label") if c not in df.columns]
        if need:
            raise DownloadError(f"{p}: missing column(s) {', '.join(need)} (EmbedLLM format)")
        frames.append(df)
    long = pd.concat(frames, ignore_index=True).drop_duplicates(subset=["model_id", "prompt_id"])
    if (src / "model_order.csv").exists():
        mo = pd.read_csv(src / "model_order.csv")
        names = dict(zip(mo["model_id"], mo["model_name"], strict=True))
    elif "model_name" in long.columns:
        names = dict(zip(long["model_id"], long["model_name"], strict=False))
    else:
        raise DownloadError(f"{src}: model_order.csv missing and no model_name column")
    if (src / "question_order.csv").exists():
        qo = pd.read_csv(src / "question_order.csv")
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


def convert_sprout(src: Path) -> Converted:
    files = sorted(src.glob("*.parquet")) + sorted(src.glob("*.jsonl"))
    if not files:
        raise DownloadError(f"{src}: no SPROUT *.parquet or *.jsonl files found")
    df = pd.concat([pd.read_parquet(f) if f.suffix == ".parquet" else pd.read_json(f, lines=True) for f in files],
                   ignore_index=True)
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
        score = np.array([float(c["score"]) if isinstance(c, dict) and c.get("score") is not None else np.nan
                          for c in cells])
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


def _mmlu_pro_files() -> tuple[tuple[str, str], ...]:
    prices = _mmlu_pro_prices()
    tiger = prices.loc[prices["source"].str.startswith("tiger"), "model"]
    files = [(_TIGER_URL.format(m=m), f"model_outputs_{m}_5shots.zip") for m in tiger]
    files.append((_CARROT_URL, "new_leaderboard_processed_20241205.pickle"))
    return tuple(files)


SOURCES: dict[str, Source] = {
    # mmlu-pro: one zip per priced model + CARROT's pickle, whose items map to the i-th smallest
    # question id of the zips (or mmlu_pro_item_to_question_id.csv when given); the MMLU-Pro
    # repository keeps a few models in other layouts, so a missing zip is skipped with a warning
    "mmlu-pro": Source("mmlu-pro", lambda: _mmlu_pro_files(), convert_mmlu_pro, skip_missing=True),
    "routerbench": Source("routerbench", lambda: ((_ROUTERBENCH_URL, "routerbench_0shot.pkl"),),
                          convert_routerbench),
    "embedllm": Source("embedllm", lambda: tuple((_EMBEDLLM_BASE + f, f) for f in (
        "model_order.csv", "question_order.csv", "train.csv", "val.csv", "test.csv")), convert_embedllm),
    "sprout": Source("sprout", lambda: tuple((_SPROUT_BASE + f"{s}-00000-of-00001.parquet", f"{s}.parquet")
                                            for s in ("train", "validation", "test")), convert_sprout),
}


def fetch(url: str, dest: Path, name: str, timeout: float = 30.0) -> Path:
    """Download ``url`` to ``dest`` (atomically). Network failures become one clear DownloadError."""
    hint = f"; to convert upstream files you already have, run `unirouter download {name} --from DIR`"
    try:
        req = urllib.request.Request(url, headers={"User-Agent": "unirouter"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            ctype = resp.headers.get("Content-Type", "")
            tmp = dest.with_suffix(dest.suffix + ".part")
            with open(tmp, "wb") as fh:
                shutil.copyfileobj(resp, fh, length=1 << 20)
    except urllib.error.HTTPError as e:
        cls = NotFound if e.code == 404 else DownloadError
        raise cls(f"cannot download {url} (HTTP {e.code}){hint}") from e
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise DownloadError(f"cannot reach {url} ({reason}){hint}") from e
    if "text/html" in ctype:
        tmp.unlink(missing_ok=True)
        raise DownloadError(f"{url} returned an HTML page instead of data{hint}")
    tmp.replace(dest)
    return dest


def convert_to_folder(name: str, src: Path, dest: Path) -> tuple[Path, dict]:
    """Convert upstream files in ``src`` into a validated dataset folder at ``dest`` (atomic swap)."""
    if name not in SOURCES:
        raise DownloadError(f"no downloader for {name!r}: expected one of {', '.join(sorted(SOURCES))}")
    if not src.is_dir():
        raise DownloadError(f"--from {src}: not a directory")
    card, prompts, outcomes, models = SOURCES[name].convert(src)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        write_folder(staging, card, prompts, outcomes, models)
        problems, _, _ = validate_folder(staging)
        if problems:
            raise DownloadError(f"converted {name} failed validation: {problems[0]}")
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            dest.replace(old)
            staging.replace(dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.replace(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    summary = {"prompts": int(len(prompts)), "models": int(len(models)), "outcomes": int(len(outcomes)),
               "excluded_models": card.get("excluded_models", [])}
    return dest, summary


def download(name: str, from_dir: Path | None = None, dest: Path | None = None,
             progress: Callable[[str], None] | None = None) -> tuple[Path, dict]:
    if name not in REGISTRY or name not in SOURCES:
        raise DownloadError(f"unknown dataset {name!r}: expected one of {', '.join(sorted(SOURCES))}")
    dest = dest or (unirouter_home() / "datasets" / name)
    if from_dir is not None:
        return convert_to_folder(name, Path(from_dir), dest)
    raw = unirouter_home() / "raw" / name
    raw.mkdir(parents=True, exist_ok=True)
    source = SOURCES[name]
    missing = []
    for url, fname in source.files():
        target = raw / fname
        if not target.exists():
            if progress:
                progress(f"fetching {url}")
            try:
                fetch(url, target, name)
            except NotFound:
                if not source.skip_missing:
                    raise
                missing.append(fname)
    folder, summary = convert_to_folder(name, raw, dest)
    summary["not_found"] = missing
    return folder, summary

