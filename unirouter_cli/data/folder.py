"""datasets: the folder format, validation, loading and the dataset registry.

A dataset folder holds ``dataset.yaml`` (the card), ``prompts.parquet`` (or ``.csv``),
``outcomes.parquet`` (or ``.csv``, long format, one row per evaluated (prompt, model) pair) and
``models.csv``. ``validate_folder`` lists *every* problem; ``load_dataset`` refuses a folder with
any problem and turns the long table into dense prompt x model matrices (NaN = not evaluated).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from ..errors import DataError
from .tables import (
    UNCLOSED_QUOTE,
    _check_parquet_size,
    first_invalid_utf8,
    read_csv_table,
    row_label,
    unclosed_quote_line,
)

CARD = "dataset.yaml"
REFERENCES = "references.csv"  # optional: prompt_id, answer, rule (graded by serving/grade.py)
PROMPT_COLUMNS = ("prompt_id", "text", "category")
OUTCOME_COLUMNS = ("prompt_id", "model", "score")
MODEL_COLUMNS = ("model", "cost")


# --------------------------------------------------------------------------------------------
# problems and validation
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Problem:
    file: str
    where: str
    message: str

    def __str__(self) -> str:
        loc = f" {self.where}:" if self.where else ":"
        return f"{self.file}{loc} {self.message}"


def _find_table(folder: Path, stem: str) -> Path | None:
    for ext in (".parquet", ".csv"):
        p = folder / f"{stem}{ext}"
        if p.exists():
            return p
    return None


def _read_table(path: Path, problems: list[Problem]) -> pd.DataFrame | None:
    from ..io import check_regular

    try:
        check_regular(path, "table")  # a FIFO would block the reader forever
        if path.suffix == ".csv":
            return read_csv_table(path)
        _check_parquet_size(path)
        return pd.read_parquet(path)
    except UnicodeDecodeError:
        problems.append(Problem(path.name, first_invalid_utf8(path), "is not valid UTF-8 text"))
    except pd.errors.EmptyDataError:
        problems.append(Problem(path.name, "", "is empty (expected a header and at least one row)"))
    except DataError as e:  # a FIFO, a directory, a device
        problems.append(Problem(path.name, "", str(e).split(": ", 1)[-1]))
    except Exception as e:  # noqa: BLE001 - any parser failure is a data problem
        message = " ".join(str(e).split())[:160]  # one line: a parser's message may end in a newline
        if path.suffix == ".csv" and "EOF inside string" in message:  # pandas names a record, not a line
            problems.append(Problem(path.name, f"line {unclosed_quote_line(path)}", UNCLOSED_QUOTE))
        else:
            problems.append(Problem(path.name, "", f"cannot be read ({type(e).__name__}: {message})"))
    return None


def _first_rows(mask: np.ndarray, limit: int = 3) -> list[int]:
    return [int(i) for i in np.flatnonzero(mask)[:limit]]


def _report_rows(problems: list[Problem], path: Path, mask: np.ndarray, what: str) -> None:
    n = int(mask.sum())
    if n == 0:
        return
    rows = _first_rows(mask)
    where = ", ".join(row_label(path, i) for i in rows) + (f" (+{n - len(rows)} more)" if n > len(rows) else "")
    problems.append(Problem(path.name, where, what))


def _check_columns(df: pd.DataFrame, path: Path, required: tuple[str, ...], problems: list[Problem]) -> bool:
    missing = [c for c in required if c not in df.columns]
    if missing:
        problems.append(Problem(path.name, "header", f"missing column(s) {', '.join(missing)}; "
                                f"expected at least {', '.join(required)}"))
        return False
    if len(df) == 0:
        problems.append(Problem(path.name, "", "has no rows (expected at least one)"))
        return False
    return True


def _not_of_kind(s: pd.Series, kinds: tuple[type, ...]) -> np.ndarray:
    """Rows whose value is present but not one of ``kinds`` (booleans are never numbers)."""
    if s.dtype.kind == "b":
        return np.ones(len(s), dtype=bool)
    if s.dtype.kind in "iuf":
        return np.zeros(len(s), dtype=bool) if float in kinds else s.notna().to_numpy()
    return np.array([v is not None and not (isinstance(v, float) and v != v)
                     and (isinstance(v, bool | np.bool_) or not isinstance(v, kinds)) for v in s], dtype=bool)


def _numeric(df: pd.DataFrame, col: str, path: Path, problems: list[Problem]) -> np.ndarray | None:
    typed = _not_of_kind(df[col], (int, float, np.integer, np.floating))
    if typed.any():
        _report_rows(problems, path, typed, f"column {col} holds true/false or text (expected a number)")
        return None
    values = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)
    bad = np.isnan(values) & df[col].notna().to_numpy()
    if bad.any():
        _report_rows(problems, path, bad, f"column {col} is not a number")
        return None
    return values


def read_card(folder: Path, problems: list[Problem]) -> dict:
    path = folder / CARD
    if not path.exists():
        problems.append(Problem(CARD, "", "missing (expected the dataset card)"))
        return {}
    from ..io import YAMLLimitError, load_yaml

    try:
        card = load_yaml(path)
    except UnicodeDecodeError:
        problems.append(Problem(CARD, "", "is not valid UTF-8 text"))
        return {}
    except DataError as e:  # a FIFO, a directory
        problems.append(Problem(CARD, "", str(e).split(": ", 1)[-1]))
        return {}
    except YAMLLimitError as e:
        problems.append(Problem(CARD, "", str(e)))
        return {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else ""
        problems.append(Problem(CARD, where, "is not valid YAML"))
        return {}
    if not isinstance(card, dict):
        problems.append(Problem(CARD, "", "must be a YAML mapping (name: ..., cost_unit: ...)"))
        return {}
    if not card.get("name"):
        problems.append(Problem(CARD, "key name", "missing (expected the dataset's name)"))
    elif not isinstance(card["name"], str):
        problems.append(Problem(CARD, "key name", f"{card['name']!r} is not a string (expected the dataset's name)"))
    return card


def validate_folder(folder: str | Path) -> tuple[list[Problem], dict[str, pd.DataFrame], dict]:
    """Check a dataset folder. Returns (problems, tables, card); tables are only complete if no problems."""
    folder = Path(folder)
    problems: list[Problem] = []
    if not folder.is_dir():
        return [Problem(str(folder), "", "is not a directory (expected a dataset folder)")], {}, {}
    card = read_card(folder, problems)
    texts_required = bool(card.get("texts_included", True))
    tables: dict[str, pd.DataFrame] = {}
    paths: dict[str, Path] = {}
    for stem in ("prompts", "outcomes"):
        p = _find_table(folder, stem)
        if p is None:
            problems.append(Problem(f"{stem}.parquet", "",
                                    f"missing (expected {stem}.parquet or {stem}.csv)"))
            continue
        if (folder / f"{stem}.parquet").exists() and (folder / f"{stem}.csv").exists():
            problems.append(Problem(f"{stem}.csv", "", f"{stem}.parquet is here too: keep one of the two (which "
                                    "table is meant is ambiguous)"))
            continue
        paths[stem] = p
    mp = folder / "models.csv"
    if mp.exists():
        paths["models"] = mp
    else:
        problems.append(Problem("models.csv", "", "missing (expected columns model, cost)"))
    for stem, p in paths.items():
        df = _read_table(p, problems)
        if df is not None:
            tables[stem] = df

    prompts, outcomes, models = tables.get("prompts"), tables.get("outcomes"), tables.get("models")
    prompt_set: set[str] | None = None
    model_set: set[str] | None = None
    if prompts is not None:
        p = paths["prompts"]
        req = ("prompt_id", "text") if texts_required else ("prompt_id",)
        if _check_columns(prompts, p, req, problems):
            ids = prompts["prompt_id"]
            _report_rows(problems, p, ids.isna().to_numpy(), "prompt_id is empty")
            _report_rows(problems, p, ids.duplicated(keep="first").to_numpy() & ids.notna().to_numpy(),
                         "duplicate prompt_id (each prompt must appear once)")
            for col in ("text", "category"):
                if col in prompts.columns:
                    _report_rows(problems, p, _not_of_kind(prompts[col], (str,)),
                                 f"{col} is not a string (expected text)")
            if "text" in prompts.columns:
                t = prompts["text"]
                empty = t.isna().to_numpy() | (t.astype(str).str.strip() == "").to_numpy()
                _report_rows(problems, p, empty, "prompt without text")
            if "category" in prompts.columns:
                c = prompts["category"]
                _report_rows(problems, p, (c.isna() | (c.astype(str).str.strip() == "")).to_numpy(),
                             "category is empty (give every prompt a category, or leave the column out)")
            prompt_set = set(ids.dropna().astype(str))
    if models is not None:
        p = paths["models"]
        if _check_columns(models, p, MODEL_COLUMNS, problems):
            names = models["model"]
            _report_rows(problems, p, names.isna().to_numpy(), "model name is empty")
            _report_rows(problems, p, names.duplicated().to_numpy() & names.notna().to_numpy(),
                         "duplicate model (each model must appear once)")
            cost = _numeric(models, "cost", p, problems)
            if cost is not None:
                _report_rows(problems, p, np.isnan(cost), "missing cost (expected a positive number)")
                _report_rows(problems, p, np.isinf(cost), "cost is infinite (expected a positive number)")
                _report_rows(problems, p, np.isfinite(cost) & (cost <= 0),
                             "non-positive cost (expected a positive number)")
            model_set = set(names.dropna().astype(str))
            if len(model_set) < 2:
                problems.append(Problem(p.name, "", f"lists {len(model_set)} model(s); routing needs at least 2"))
    if outcomes is not None:
        p = paths["outcomes"]
        if _check_columns(outcomes, p, OUTCOME_COLUMNS, problems):
            score = _numeric(outcomes, "score", p, problems)
            if score is not None:
                _report_rows(problems, p, np.isnan(score), "missing score (expected a number in [0, 1])")
                _report_rows(problems, p, np.isinf(score), "score is infinite (expected a number in [0, 1])")
                _report_rows(problems, p, np.isfinite(score) & ((score < 0) | (score > 1)),
                             "score outside [0, 1]")
            for col in ("prompt_id", "model"):
                _report_rows(problems, p, outcomes[col].isna().to_numpy(), f"{col} is empty")
            dup = outcomes.duplicated(subset=["prompt_id", "model"], keep="first").to_numpy()
            _report_rows(problems, p, dup, "duplicate (prompt_id, model) row")
            if "cost" in outcomes.columns:
                cost = _numeric(outcomes, "cost", p, problems)
                if cost is not None:
                    _report_rows(problems, p, np.isinf(cost), "cost is infinite (expected a positive number)")
                    _report_rows(problems, p, np.isfinite(cost) & (cost <= 0),
                                 "non-positive cost (expected a positive number or empty)")
            if model_set is not None:
                named = outcomes["model"].notna().to_numpy()
                unknown = named & ~outcomes["model"].astype(str).isin(model_set).to_numpy()
                if unknown.any():
                    names = sorted({str(x) for x in outcomes["model"][unknown]})[:3]
                    _report_rows(problems, p, unknown,
                                 f"model not listed in models.csv ({', '.join(names)})")
            if prompt_set is not None:
                unknown = outcomes["prompt_id"].notna().to_numpy() & ~outcomes["prompt_id"].astype(str).isin(
                    prompt_set).to_numpy()
                _report_rows(problems, p, unknown, "prompt_id not listed in prompts")
            if models is not None and model_set is not None:
                seen = set(outcomes["model"].astype(str).unique())  # (unique first: a set of every row is slow)
                silent = models["model"].notna().to_numpy() & ~models["model"].astype(str).isin(seen).to_numpy()
                if silent.any():
                    names = ", ".join(models["model"].astype(str)[silent].tolist()[:3])
                    _report_rows(problems, paths["models"], silent,
                                 f"model without any outcome row ({names}); every listed model needs at least "
                                 "one evaluated prompt (remove it from models.csv or add its outcomes)")
    return problems, tables, card


# --------------------------------------------------------------------------------------------
# the loaded dataset
# --------------------------------------------------------------------------------------------
@dataclass
class Dataset:
    """A routing table as dense matrices. ``scores[i, j]`` is NaN when model j did not see prompt i."""

    name: str
    path: Path
    card: dict
    prompt_ids: np.ndarray
    categories: np.ndarray
    texts: np.ndarray | None
    models: list[str]
    model_cost: np.ndarray  # (M,) per-query cost figure from models.csv
    model_source: np.ndarray  # (M,) models.csv "source" column ("" if absent)
    scores: np.ndarray  # (N, M) float32, NaN = not evaluated
    query_cost: np.ndarray | None  # (N, M) float64 per-query cost where the data has it, else None
    content_hash: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def n_prompts(self) -> int:
        return len(self.prompt_ids)

    @property
    def n_models(self) -> int:
        return len(self.models)

    def cost_matrix(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Per-query costs for the given prompts x models (per-model figure where none is recorded)."""
        base = np.broadcast_to(self.model_cost[cols][None, :], (len(rows), len(cols)))
        if self.query_cost is None:
            return base  # read-only view: per-LLM costs take no memory per prompt
        q = self.query_cost[np.ix_(rows, cols)]
        return np.where(np.isnan(q), base, q)

    def texts_hash(self) -> str:
        h = hashlib.sha256()
        h.update("\x1f".join(map(str, self.prompt_ids)).encode())
        if self.texts is not None:
            h.update(b"\x1e")
            h.update("\x1f".join(map(str, self.texts)).encode("utf-8", "surrogatepass"))
        return h.hexdigest()[:16]


def folder_hash(folder: Path) -> str:
    """Content hash of the dataset's card, table files and shipped embeddings (``embeddings/*``).

    Independent of mtimes; a changed embedding file changes the hash, so ``evaluate`` refuses a run
    fitted on other embeddings.
    """
    from ..io import sha256_file

    h = hashlib.sha256()
    for name in sorted(os.listdir(folder)):
        p = folder / name
        if p.is_file() and (name == CARD or name == "models.csv" or name.startswith(("prompts.", "outcomes."))):
            h.update(name.encode())
            h.update(sha256_file(p).encode())
    emb = folder / "embeddings"
    if emb.is_dir():
        for name in sorted(os.listdir(emb)):
            p = emb / name
            if p.is_file() and not name.startswith("."):
                h.update(f"embeddings/{name}".encode())
                h.update(sha256_file(p).encode())
    return h.hexdigest()[:16]


def load_folder(folder: str | Path, name: str | None = None) -> Dataset:
    folder = Path(folder)
    problems, tables, card = validate_folder(folder)
    if problems:
        more = (f" (and {len(problems) - 1} more problem(s); run `unirouter data validate {folder}`)"
                if len(problems) > 1 else "")
        raise DataError(f"{folder}: {problems[0]}{more}")
    prompts, outcomes, models = tables["prompts"], tables["outcomes"], tables["models"]
    prompt_ids = prompts["prompt_id"].astype(str).to_numpy()
    model_names = models["model"].astype(str).tolist()
    p_index = pd.Index(prompt_ids)
    m_index = pd.Index(model_names)
    rows = p_index.get_indexer(outcomes["prompt_id"].astype(str))
    cols = m_index.get_indexer(outcomes["model"].astype(str))
    n, m = len(prompt_ids), len(model_names)
    scores = np.full((n, m), np.nan, dtype=np.float32)
    scores[rows, cols] = pd.to_numeric(outcomes["score"]).to_numpy(dtype=np.float32)
    query_cost = None
    if "cost" in outcomes.columns and outcomes["cost"].notna().any():
        query_cost = np.full((n, m), np.nan, dtype=np.float64)
        query_cost[rows, cols] = pd.to_numeric(outcomes["cost"]).to_numpy(dtype=np.float64)
    texts = prompts["text"].astype(str).to_numpy() if "text" in prompts.columns else None
    cats = (prompts["category"].fillna("").astype(str).to_numpy() if "category" in prompts.columns
            else np.full(n, "", dtype=object))
    source = (models["source"].fillna("").astype(str).to_numpy() if "source" in models.columns
              else np.full(m, "", dtype=object))
    return Dataset(
        name=name or str(card.get("name") or folder.name),
        path=folder,
        card=card,
        prompt_ids=prompt_ids,
        categories=cats,
        texts=texts,
        models=model_names,
        model_cost=pd.to_numeric(models["cost"]).to_numpy(dtype=np.float64),
        model_source=source,
        scores=scores,
        query_cost=query_cost,
        content_hash=folder_hash(folder),
    )


def write_folder(folder: str | Path, card: dict, prompts: pd.DataFrame, outcomes: pd.DataFrame,
                 models: pd.DataFrame) -> Path:
    """Write the four files of a dataset folder atomically (parquet tables, CSV models)."""
    from ..io import write_csv, write_parquet, write_yaml

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    card = dict(card)
    card.setdefault("n_prompts", int(len(prompts)))
    card.setdefault("n_models", int(len(models)))
    card.setdefault("n_outcomes", int(len(outcomes)))
    write_parquet(folder / "prompts.parquet", prompts.reset_index(drop=True))
    write_parquet(folder / "outcomes.parquet", outcomes.reset_index(drop=True))
    write_csv(folder / "models.csv", models.reset_index(drop=True))
    write_yaml(folder / CARD, card)
    return folder


