"""Stage 0 - downloads: fetch public upstream files and convert them to the dataset folder format.

Each source has a converter ``convert_<name>(src_dir) -> (card, prompts, outcomes, models)`` that
reads upstream files already on disk; ``download`` fetches them first (plain HTTPS, no credentials)
unless ``--from DIR`` names a folder that holds them. The converted folder is validated, written
to a temporary folder and renamed into the cache, so a failed download never damages a good copy.

Upstream files are untrusted input: pickles go through ``safepickle.safe_load``; a zip member is
read as a stream and refused past ``MAX_ZIP_MEMBER`` bytes (whatever its header claims); every
record of a zip or pickle is checked, and a malformed one is one ``DownloadError`` naming the file
and the record. ``--dest`` replaces only a unirouter dataset folder (it has a ``dataset.yaml``) or
an empty folder, and a download never hides a bundled dataset behind a smaller table unless asked.
"""

from __future__ import annotations

import ast
import json
import os
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

from .data import BUNDLED_DIR, CARD, REGISTRY, bundled_path, unirouter_home, validate_folder, write_folder
from .errors import DataError, DownloadError
from .safepickle import safe_load

MAX_ZIP_MEMBER = 256 << 20  # bytes of one decompressed zip member (the MMLU-Pro outputs are ~15 MB)
MAX_DOWNLOAD = 16 << 30  # bytes of one fetched file

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


def read_zip_member(path: Path, suffix: str, limit: int = MAX_ZIP_MEMBER) -> tuple[str, bytes]:
    """(name, bytes) of the first member of zip ``path`` ending in ``suffix``, streamed and capped.

    The member is decompressed in blocks and refused as soon as it passes ``limit`` bytes, so a
    small zip that inflates to gigabytes ("zip bomb") costs at most ``limit`` bytes of memory.
    """
    import zlib

    from .io import check_regular

    check_regular(path, "zip file")  # a FIFO would block, /dev/zero never ends
    try:
        with zipfile.ZipFile(path) as zf:
            infos = [i for i in zf.infolist() if i.filename.endswith(suffix) and not i.is_dir()]
            if not infos:
                raise DownloadError(f"{path}: zip holds no {suffix} file")
            info = infos[0]
            if info.file_size > limit:
                raise DownloadError(f"{path}: {info.filename} inflates to {info.file_size:,} bytes, more than the "
                                    f"{limit:,}-byte limit for one member")
            chunks, total = [], 0
            with zf.open(info) as fh:
                while block := fh.read(1 << 20):
                    total += len(block)
                    if total > limit:
                        raise DownloadError(f"{path}: {info.filename} inflates to more than {limit:,} bytes "
                                            "(the limit for one member); refusing a zip bomb")
                    chunks.append(block)
            return info.filename, b"".join(chunks)
    except DownloadError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError,
            ValueError) as e:
        raise DownloadError(f"{path}: not a valid zip ({_short(e)}); truncated download or an error page?") from e


def _read_upstream_table(path: Path) -> pd.DataFrame:
    """A CSV, parquet or JSON-lines file from upstream; an unreadable one is one DownloadError."""
    from .io import check_regular

    check_regular(path, "table")
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        if path.suffix == ".jsonl":
            return pd.read_json(path, lines=True)
        return pd.read_csv(path)
    except Exception as e:  # noqa: BLE001 - any parser failure of an upstream file is a download problem
        raise DownloadError(f"{path}: unreadable ({_short(e)}); truncated download or another format?") from e


def _short(e: BaseException) -> str:
    msg = " ".join(str(e).split())[:100]
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


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
    from .io import check_regular

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
            from .io import check_regular

            df = pd.read_csv(check_regular(csvs[0], "CSV file"), index_col=0)
        except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as e:
            raise DownloadError(f"{csvs[0]}: unreadable ({_short(e)})") from e
        return routerbench_frame_to_folder(df, str(csvs[0]))
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
    from .io import atomic_path

    hint = f"; to convert upstream files you already have, run `unirouter download {name} --from DIR`"
    try:
        req = urllib.request.Request(url, headers={"User-Agent": "unirouter"})
        with urllib.request.urlopen(req, timeout=timeout) as resp, atomic_path(dest) as tmp:
            if "text/html" in resp.headers.get("Content-Type", ""):
                raise DownloadError(f"{url} returned an HTML page instead of data{hint}")
            total = 0
            with open(tmp, "wb") as fh:
                while block := resp.read(1 << 20):
                    total += len(block)
                    if total > MAX_DOWNLOAD:
                        raise DownloadError(f"{url}: more than {MAX_DOWNLOAD:,} bytes; refusing to download further")
                    fh.write(block)
    except urllib.error.HTTPError as e:
        cls = NotFound if e.code == 404 else DownloadError
        raise cls(f"cannot download {url} (HTTP {e.code}){hint}") from e
    except DownloadError:
        raise
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise DownloadError(f"cannot reach {url} ({reason}){hint}") from e
    return dest


def check_dest(dest: Path, src: Path | None = None, label: str = "--dest") -> Path:
    """``dest`` as an absolute path if a download may write there, else one DownloadError (nothing touched).

    Allowed: a path that does not exist yet, an empty folder, or a unirouter dataset folder (it has a
    dataset.yaml), which is replaced. Refused: a symbolic link, a file, any other non-empty folder, the
    current folder or one of its parents, unirouter's bundled data, and a folder that holds ``--from``.
    """
    where = f"{label} {dest}"
    if dest.is_symlink():
        raise DownloadError(f"{where}: is a symbolic link; give the folder itself")
    target = Path(os.path.abspath(dest))
    real = target.resolve()
    cwd = Path.cwd().resolve()
    if real == cwd or real in cwd.parents:
        raise DownloadError(f"{where}: is the current folder or contains it; name a new folder, e.g. {dest / 'NAME'}")
    bundled = BUNDLED_DIR.resolve()
    if real == bundled or bundled in real.parents or real in bundled.parents:
        raise DownloadError(f"{where}: is inside unirouter's bundled data; name another folder")
    if src is not None:
        s = Path(src).resolve()
        if s == real or real in s.parents:
            raise DownloadError(f"{where}: holds the --from folder {src}; replacing it would delete the upstream files")
    if target.exists():
        if not target.is_dir():
            raise DownloadError(f"{where}: exists and is not a folder; nothing was changed")
        if not (target / CARD).is_file() and any(target.iterdir()):
            raise DownloadError(f"{where}: exists and is neither empty nor a unirouter dataset folder (no {CARD}); "
                                "nothing was changed. Name a new or empty folder")
    return target


def _bundled_guard(name: str, dest: Path, n_prompts: int, n_models: int, replace_bundled: bool) -> None:
    """Refuse a download that would hide a bundled dataset behind a smaller table (unless asked)."""
    from .data import folder_counts

    bundled = bundled_path(name)
    default = Path(os.path.abspath(unirouter_home() / "datasets" / name))
    if bundled is None or replace_bundled or dest != default:
        return
    bp, bm = folder_counts(bundled)
    if n_prompts < bp or n_models < bm:
        raise DownloadError(f"the converted {name} has {n_prompts:,} prompts x {n_models} LLMs, fewer than the bundled "
                            f"copy ({bp:,} x {bm}); saved as the download it would hide the bundled table. Nothing "
                            "was changed: add --replace-bundled to use it anyway, or --dest DIR to keep it elsewhere")


def convert_to_folder(name: str, src: Path, dest: Path, replace_bundled: bool = False,
                      label: str = "--dest") -> tuple[Path, dict]:
    """Convert upstream files in ``src`` into a validated dataset folder at ``dest`` (atomic swap)."""
    if name not in SOURCES:
        raise DownloadError(f"no downloader for {name!r}: expected one of {', '.join(sorted(SOURCES))}")
    src = Path(src)
    if not src.is_dir():
        raise DownloadError(f"--from {src}: not a directory")
    dest = check_dest(Path(dest), src, label)
    try:
        card, prompts, outcomes, models = SOURCES[name].convert(src)
    except (DownloadError, DataError):
        raise
    except (KeyError, ValueError, TypeError, IndexError, AttributeError, OverflowError, RecursionError) as e:
        # a record the checks above did not anticipate: still the upstream files' fault, one line
        raise DownloadError(f"{src}: upstream files not in the expected {name} format ({_short(e)})") from e
    _bundled_guard(name, dest, len(prompts), len(models), replace_bundled)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        write_folder(staging, card, prompts, outcomes, models)
        problems, _, _ = validate_folder(staging)
        if problems:
            raise DownloadError(f"converted {name} failed validation: {problems[0]}")
        if dest.exists():
            check_dest(dest, src, label)  # still a dataset folder or empty
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old.", dir=dest.parent))
            old.rmdir()
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
             progress: Callable[[str], None] | None = None, replace_bundled: bool = False) -> tuple[Path, dict]:
    if name not in REGISTRY or name not in SOURCES:
        raise DownloadError(f"unknown dataset {name!r}: expected one of {', '.join(sorted(SOURCES))}")
    label = "--dest" if dest else "download folder"
    dest = dest or (unirouter_home() / "datasets" / name)
    check_dest(Path(dest), from_dir, label)
    if from_dir is not None:
        return convert_to_folder(name, Path(from_dir), dest, replace_bundled, label)
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
    folder, summary = convert_to_folder(name, raw, dest, replace_bundled, label)
    summary["not_found"] = missing
    return folder, summary


def remove_download(name: str) -> Path:
    """Delete the downloaded copy of registered dataset ``name`` from $UNIROUTER_HOME/datasets."""
    if name not in REGISTRY:
        raise DataError(f"unknown dataset {name!r}: expected one of {', '.join(sorted(REGISTRY))}")
    folder = unirouter_home() / "datasets" / name
    if folder.is_symlink():
        folder.unlink()  # the link only, never what it points to
        return folder
    if not folder.exists():
        if bundled_path(name):
            raise DataError(f"{name} is bundled with unirouter and has no downloaded copy in {folder.parent}; "
                            "bundled data cannot be removed")
        raise DataError(f"{name}: no downloaded copy in {folder.parent}")
    if not folder.is_dir() or not (folder / CARD).is_file():
        raise DataError(f"{folder}: not a unirouter dataset folder (no {CARD}); nothing was removed")
    shutil.rmtree(folder)
    return folder

