"""Reading tables: CSV cells as text, parquet size limits, and the one reader of user tables
(prompts to route, a new LLM's answers) with errors located by file line."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError
from ..io import check_regular


def row_label(path: Path | str, i: int) -> str:
    """Where row ``i`` (0-based, after the header) of a table file is: a CSV's file line (the header is line 1),
    a JSONL's line, a parquet file's 0-based row."""
    suffix = Path(str(path)).suffix
    if suffix == ".csv":
        return f"line {i + 2}"
    if suffix == ".jsonl":
        return f"line {i + 1}"
    return f"row {i}"



NA_STRINGS = ["", "NA", "N/A", "n/a", "NaN", "nan", "-NaN", "-nan", "NULL", "null", "None", "#N/A", "<NA>"]


NUMERIC_COLUMNS = ("score", "cost", "params_b", "output_chars")
MAX_COLUMNS = 1_000  # columns of a CSV table
MAX_HEADER_CHARS = 100_000
MAX_TEXT_CHARS = 1_000_000  # characters of one prompt to route


def read_csv_table(path: Path) -> pd.DataFrame:
    """A CSV table with every column but the numeric ones read as text: a prompt id, model name, text or
    category such as ``NA``, ``None`` or ``null`` stays that string (only an empty cell is missing); in the
    numeric columns those spellings mean a missing value, as pandas reads them by default."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        first = fh.readline(MAX_HEADER_CHARS + 1)
    if len(first) > MAX_HEADER_CHARS or first.count(",") >= MAX_COLUMNS:
        raise DataError(f"{path}: the header holds more than {MAX_COLUMNS:,} columns or {MAX_HEADER_CHARS:,} "
                        "characters; a routing table has a few named columns")
    import csv
    from collections import Counter

    names = Counter(c.strip() for c in next(csv.reader([first.lstrip("\ufeff")]), []) if c.strip())
    if twice := sorted(c for c, n in names.items() if n > 1):
        raise DataError(f"{path}: line 1: column {twice[0]!r} appears twice in the header; expected each column "
                        "once")
    header = pd.read_csv(path, nrows=0, encoding="utf-8").columns
    text = [c for c in header if c not in NUMERIC_COLUMNS]
    df = pd.read_csv(path, dtype=dict.fromkeys(text, str), keep_default_na=False, encoding="utf-8",
                     na_values={c: NA_STRINGS for c in NUMERIC_COLUMNS})
    for c in text:
        df[c] = df[c].mask(df[c].str.strip() == "")
    return df


PARQUET_MAX_ROWS = 50_000_000


PARQUET_MAX_BYTES = 4 << 30  # uncompressed, as the file's metadata declares it


def _check_parquet_size(path: Path) -> None:
    """Refuse, from the footer alone, a parquet file that declares more rows or more uncompressed bytes than a
    correctness table needs (a small, highly compressed file must not be inflated into all of memory)."""
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata
    if meta.num_rows > PARQUET_MAX_ROWS:
        raise DataError(f"declares {meta.num_rows:,} rows, more than the {PARQUET_MAX_ROWS:,} unirouter reads")
    size = sum(max(meta.row_group(i).total_byte_size,
                   sum(meta.row_group(i).column(j).total_uncompressed_size for j in range(meta.num_columns)))
               for i in range(meta.num_row_groups))
    if size > PARQUET_MAX_BYTES:
        raise DataError(f"declares {size:,} bytes uncompressed, more than the {PARQUET_MAX_BYTES:,} unirouter reads")


UNCLOSED_QUOTE = 'a quoted field opens (") and is never closed: the rest of the file would be one value'


def unclosed_quote_line(path: Path) -> int:
    """The file line where the record holding an unclosed quote starts: the last record the csv module reads
    (the quote swallows the rest of the file), counted in lines, so quoted line breaks before it are no trouble."""
    import csv

    start = last = 1
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.reader(f)
        for _ in reader:
            last, start = start, reader.line_num + 1
    return last


def first_invalid_utf8(path: Path) -> str:
    """Where the first byte that is not UTF-8 is, in the file (the reader's own offset counts from the start of
    the block it was decoding): "line N (byte B)"."""
    raw = path.read_bytes()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        return f"line {line} (byte {e.start})"
    return ""


MAX_ROWS = 1_000_000  # rows of a user table (prompts to route)
MAX_ROWS_ENV = "UNIROUTER_MAX_ROWS"


def max_rows_limit() -> int:
    try:
        return max(1, int(os.environ.get(MAX_ROWS_ENV, MAX_ROWS)))
    except ValueError as e:
        raise DataError(f"{MAX_ROWS_ENV}={os.environ[MAX_ROWS_ENV]!r}: expected a number of rows") from e


def declared_rows(path: Path, cap: int) -> int:
    """The rows a table file declares (parquet: its footer; CSV/JSONL: its lines), counted up to ``cap`` + 1."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            _check_parquet_size(path)
            return int(pq.ParquetFile(path).metadata.num_rows)
        except DataError as e:
            raise DataError(f"{path}: {e}") from e
        except Exception:  # noqa: BLE001 - a corrupt footer: the reader says so in its own words
            return 0
    lines = 0
    with open(path, "rb") as fh:
        while lines <= cap + 1 and (block := fh.read(1 << 20)):
            lines += block.count(b"\n")
    if path.suffix != ".csv" or lines - 1 <= cap:
        return lines - (path.suffix == ".csv")
    import csv  # a quoted CSV field may span lines: count records, streaming, up to the cap

    records = -1
    try:
        with open(path, newline="", encoding="utf-8", errors="replace") as fh:
            for records, _ in enumerate(csv.reader(fh)):
                if records > cap:
                    break
    except csv.Error:  # a field longer than the csv module reads: the line count stands
        return lines - 1
    return records


def read_jsonl(path: Path) -> pd.DataFrame:
    """One JSON object per line (blank lines at the end are ignored), errors located by line."""
    rows: list[dict] = []
    with open(path, encoding="utf-8") as fh:
        lines = fh.read().rstrip("\n\r\t ").split("\n")
    if lines == [""]:
        raise DataError(f"{path}: is empty (expected one JSON object per line)")
    for i, line in enumerate(lines):
        try:
            row = json.loads(line)
        except RecursionError as e:
            raise DataError(f"{path}: line {i + 1}: nested too deeply") from e
        except ValueError as e:
            raise DataError(f"{path}: line {i + 1}: not valid JSON ({e.args[0] if e.args else e})") from e
        if not isinstance(row, dict):
            raise DataError(f"{path}: line {i + 1}: expected a JSON object, got {type(row).__name__}")
        rows.append(row)
    return pd.DataFrame(rows)


_KINDS = {"id": "a prompt id (text or an integer)", "text": "text (a string)",
          "number": "a number (not true/false or text)"}


def _cell_ok(v: Any, want: str) -> bool:
    if v is None or (isinstance(v, float) and v != v):
        return True  # missing: the caller says what a missing value means
    if isinstance(v, bool | np.bool_):
        return False
    if want == "number":
        return isinstance(v, int | float | np.integer | np.floating)
    if want == "id":
        return isinstance(v, str | int | np.integer)
    return isinstance(v, str)


def check_cells(df: pd.DataFrame, path: Path | str, col: str, want: str) -> None:
    """Every value of ``df[col]`` is of kind ``want`` (id, text or number); else one line naming the first
    cell that is not (booleans are neither numbers nor ids)."""
    s = df[col]
    kind = s.dtype.kind
    if (want == "number" and kind in "iuf") or (want == "id" and kind in "iu"):
        return
    values = s.tolist() if kind in "OUSb" or str(s.dtype) in ("string", "str") else None
    if values is None:
        raise DataError(f"{path}: column {col} holds {s.dtype} values; expected {_KINDS[want]}")
    text_file = want == "number" and Path(str(path)).suffix == ".csv"  # CSV cells are text: parsed later
    for i, v in enumerate(values):
        if not (_cell_ok(v, want) or (text_file and isinstance(v, str))):
            raise DataError(f"{path}: {row_label(path, i)}: {col} = {v!r:.40}; expected {_KINDS[want]}")


def read_user_table(path: str | Path, columns: tuple[str, ...], what: str, max_rows: int | None = None,
                    limit: str = "") -> pd.DataFrame:
    """Read a .csv / .jsonl / .parquet table with the given columns (prompt_id read as text).

    A file declaring more than ``max_rows`` rows (``max_rows_limit()`` by default) is refused before it is
    read, with ``limit`` saying where the limit comes from."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found (expected {what})")
    check_regular(path, f"file ({what})")
    if path.suffix not in (".csv", ".jsonl", ".parquet"):
        raise DataError(f"{path}: unknown format {path.suffix or '(none)'} (expected .csv, .jsonl or .parquet)")
    if max_rows is None:
        max_rows, limit = max_rows_limit(), f"set {MAX_ROWS_ENV} to raise it, or split the file"
    n = declared_rows(path, max_rows)
    if n > max_rows:
        raise DataError(f"{path}: holds more than {max_rows:,} rows, the limit here ({limit})")

    try:
        if path.suffix == ".csv":
            df = read_csv_table(path)
        elif path.suffix == ".jsonl":
            df = read_jsonl(path)
        else:
            df = pd.read_parquet(path)
    except DataError:
        raise
    except UnicodeDecodeError as e:  # (the reader's offset counts from its decoding block: located in the file)
        raise DataError(f"{path}: {first_invalid_utf8(path)}: is not valid UTF-8 text") from e
    except pd.errors.EmptyDataError as e:
        raise DataError(f"{path}: is empty (expected a header and at least one row: {', '.join(columns)})") from e
    except (ValueError, pd.errors.ParserError, OSError) as e:
        if path.suffix == ".csv" and "EOF inside string" in str(e):  # pandas names a record, not a line
            raise DataError(f"{path}: line {unclosed_quote_line(path)}: {UNCLOSED_QUOTE}") from e
        raise DataError(f"{path}: cannot be read as {path.suffix[1:]} ({' '.join(str(e).split())[:120]})") from e
    except Exception as e:  # noqa: BLE001 - pyarrow raises its own types for corrupt parquet
        raise DataError(f"{path}: cannot be read ({type(e).__name__})") from e
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)} (expected {', '.join(columns)})")
    if len(df) == 0:
        raise DataError(f"{path}: has no rows (expected {what})")
    check_cells(df, path, "prompt_id", "id")
    ids = df["prompt_id"]
    bad = ids.isna().to_numpy() | (ids.astype(str).str.strip() == "").to_numpy()
    if bad.any():
        raise DataError(f"{path}: {row_label(path, int(np.flatnonzero(bad)[0]))}: prompt_id is empty")
    df = df.assign(prompt_id=ids.astype(str))
    dup = df["prompt_id"].duplicated().to_numpy()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise DataError(f"{path}: {row_label(path, i)}: duplicate prompt_id {df['prompt_id'].iloc[i]!r} "
                        "(each prompt must appear once)")
    return df


def read_prompts(path: str | Path) -> tuple[list[str], list[str]]:
    """(prompt ids, texts) of a prompts file to route."""
    df = read_user_table(path, ("prompt_id", "text"), "prompts to route: columns prompt_id, text")
    check_cells(df, path, "text", "text")
    t = df["text"]
    long = t.str.len().to_numpy(dtype=float, na_value=0) > MAX_TEXT_CHARS
    if long.any():
        raise DataError(f"{path}: {row_label(path, int(np.flatnonzero(long)[0]))}: a prompt of more than "
                        f"{MAX_TEXT_CHARS:,} characters")
    empty = t.isna().to_numpy() | (t.astype(str).str.strip() == "").to_numpy()
    if empty.any():
        raise DataError(f"{path}: {row_label(path, int(np.flatnonzero(empty)[0]))}: prompt without text")
    return df["prompt_id"].tolist(), t.astype(str).tolist()


def _answers_frame(answers: str | Path | pd.DataFrame | Mapping[str, float],
                   max_rows: int | None = None) -> tuple[pd.DataFrame, str]:
    """(prompt_id, score) rows of a new LLM's answers and where they came from; scores are numbers, not
    booleans or text; a file is refused before reading when it holds more than ``max_rows`` rows."""
    if isinstance(answers, pd.DataFrame):
        for c in ("prompt_id", "score"):
            if c not in answers.columns:
                raise DataError(f"answers: missing column {c} (expected prompt_id, score)")
        df, where = answers.assign(prompt_id=answers["prompt_id"].astype(str)).reset_index(drop=True), "answers"
    elif isinstance(answers, Mapping):
        df = pd.DataFrame({"prompt_id": [str(k) for k in answers], "score": list(answers.values())})
        where = "answers"
    else:
        where = str(answers)
        df = read_user_table(answers, ("prompt_id", "score"), "answers: columns prompt_id, score in [0, 1]",
                             max_rows, "a new LLM answers this router's probe prompts, one row each")
    check_cells(df, where, "score", "number")
    return df, where
