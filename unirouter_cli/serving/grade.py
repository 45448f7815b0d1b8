"""Grading raw LLM responses into 0/1 answers against reference answers (rules in full: docs/grading.md).

``references.csv`` (prompt_id, answer, rule) in a dataset folder or a router directory names each prompt's
rule: ``choice`` (the MMLU-Pro authors' extraction, first ``answer is \\(?([A-J])\\)?``; ``choice:ABCD`` sets the
letters), ``choice-chain`` (their later three-step chain), ``exact`` (normalised final answer) or ``numeric``
(``numeric:TOL``: numbers equal within a tolerance). ``multiple-choice letter (A-J): ...`` reads as ``choice``.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.folder import REFERENCES
from ..data.tables import check_cells, read_user_table, row_label
from ..errors import ConfigError, DataError

RULES = ("choice", "choice-chain", "exact", "numeric")
DEFAULT_LETTERS = "ABCDEFGHIJ"
DEFAULT_TOLERANCE = 1e-6
REFERENCE_COLUMNS = ("prompt_id", "answer", "rule")


@dataclass(frozen=True)
class Rule:
    """A parsed grading rule: its name, the option letters (choice rules) and the tolerance (numeric)."""

    name: str
    letters: str = DEFAULT_LETTERS
    tolerance: float = DEFAULT_TOLERANCE


_MC_DESCRIPTION = re.compile(r"multiple-choice letter \(([A-Z])-([A-Z])\)")


def _letter_span(spec: str) -> str:
    spec = spec.strip().upper()
    if re.fullmatch(r"[A-Z]-[A-Z]", spec) and spec[0] <= spec[2]:
        return "".join(chr(c) for c in range(ord(spec[0]), ord(spec[2]) + 1))
    if re.fullmatch(r"[A-Z]+", spec) and len(set(spec)) == len(spec):
        return spec
    raise ValueError(f"letters {spec!r}: expected a span such as A-D or distinct capital letters such as ABCD")


def parse_rule(text: str) -> Rule:
    """A rule from its spelling in references.csv; ``ValueError`` names what was expected."""
    text = str(text).strip()
    if m := _MC_DESCRIPTION.match(text):
        return Rule("choice", _letter_span(f"{m.group(1)}-{m.group(2)}"))
    name, _, arg = text.partition(":")
    name = name.strip().lower()
    if name in ("choice", "choice-chain"):
        return Rule(name, _letter_span(arg) if arg.strip() else DEFAULT_LETTERS)
    if name == "exact" and not arg.strip():
        return Rule("exact")
    if name == "numeric":
        if not arg.strip():
            return Rule("numeric")
        try:
            tol = float(arg)
        except ValueError:
            tol = -1.0
        if not (math.isfinite(tol) and tol >= 0):
            raise ValueError(f"rule {text!r}: expected numeric:TOLERANCE with a number >= 0 (e.g. numeric:0.01)")
        return Rule("numeric", tolerance=tol)
    raise ValueError(f"unknown rule {text!r} (expected one of {', '.join(RULES)}; choice:ABCD, numeric:0.01)")


def rule_spelling(rule: Rule) -> str:
    """The short spelling of a rule (``choice``, ``choice:ABCD``, ``exact``, ``numeric:0.01``)."""
    if rule.name.startswith("choice"):
        return rule.name if rule.letters == DEFAULT_LETTERS else f"{rule.name}:{rule.letters}"
    if rule.name == "numeric" and rule.tolerance != DEFAULT_TOLERANCE:
        return f"numeric:{rule.tolerance:g}"
    return rule.name


# ---- extractors ------------------------------------------------------------------------------------
def extract_choice(text: str, letters: str = DEFAULT_LETTERS, chain: bool = False) -> str | None:
    """The option letter of a response (``choice``; ``chain=True``: ``choice-chain``), or None."""
    cls = "[" + re.escape(letters) + "]"
    if m := re.search(r"answer is \(?(" + cls + r")\)?", text):
        return m.group(1)
    if not chain:
        return None
    if re.search(r"[aA]nswer:\s*" + cls, text):  # cheap test first: the next regex is slow where it fails
        return re.search(r".*[aA]nswer:\s*(" + cls + ")", text).group(1)
    # the last standalone letter: what ``\b[A-J]\b(?!.*\b[A-J]\b)`` (DOTALL) finds, in linear time
    found = re.findall(r"\b" + cls + r"\b", text)
    return found[-1] if found else None


_BOXED = re.compile(r"\\boxed\s*\{")
_MARKER = re.compile(r"answer(?:\s+is\s*:?|\s*:)\s*", re.IGNORECASE)


def _boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (braces balanced), or None."""
    starts = [m.end() for m in _BOXED.finditer(text)]
    if not starts:
        return None
    depth, i = 1, starts[-1]
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j]
    return None


def final_answer(text: str) -> tuple[str, bool]:
    """(final answer text, whether a marker located it): the last ``\\boxed{...}``; else the rest of the line
    after the last ``answer is``, ``answer is:`` or ``answer:`` (any case); else the last non-empty line."""
    if (b := _boxed(text)) is not None:
        return b.strip(), True
    marks = list(_MARKER.finditer(text))
    if marks:
        return text[marks[-1].end():].split("\n", 1)[0].strip(), True
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return (lines[-1] if lines else ""), False


_STRIP = " \t\n.,;:!?'\"`*$()[]{}"


def normalise(text: str) -> str:
    """NFKC, case-folded, whitespace collapsed, surrounding punctuation/quotes/brackets/``$``/``*`` removed."""
    return " ".join(unicodedata.normalize("NFKC", str(text)).casefold().split()).strip(_STRIP)


_NUMBER = re.compile(
    r"\\[dt]?frac\s*\{\s*(-?\d+)\s*\}\s*\{\s*(-?\d+)\s*\}"  # \frac{a}{b}
    r"|(-?\d+)\s*/\s*(\d+)(?![\d.])"  # a/b
    r"|(-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|-?\.\d+(?:[eE][-+]?\d+)?)")  # 1,000.5 1e3 .5


def parse_numbers(text: str) -> list[float]:
    """Every number in ``text``, in order: fractions (``3/4``, ``\\frac{3}{4}``), thousands separators
    (``1,000``), decimals and exponents (``1e3``); a minus sign directly before a number belongs to it."""
    out = []
    for m in _NUMBER.finditer(text.replace("\u2212", "-")):
        a, b = (m.group(1), m.group(2)) if m.group(1) is not None else (m.group(3), m.group(4))
        if a is not None:
            out.append(float(Fraction(int(a), int(b))) if int(b) != 0 else math.nan)
        else:
            out.append(float(m.group(5).replace(",", "")))
    return [x for x in out if math.isfinite(x)]


def extract_number(text: str) -> float | None:
    """The first number of the final answer when a marker located it, else the response's last number."""
    answer, marked = final_answer(text)
    nums = parse_numbers(answer) if marked else parse_numbers(text)
    if not nums:
        return None
    return nums[0] if marked else nums[-1]


def grade_one(response: str, answer: str, rule: Rule) -> tuple[int, str | None]:
    """(score 0/1, extracted answer or None) of one response."""
    if rule.name in ("choice", "choice-chain"):
        got = extract_choice(response, rule.letters, chain=rule.name == "choice-chain")
        return int(got is not None and got == str(answer).strip()), got
    if rule.name == "exact":
        got = normalise(final_answer(response)[0])
        return int(got != "" and got == normalise(answer)), got or None
    x = extract_number(response)
    ref = parse_numbers(str(answer))
    ok = x is not None and bool(ref) and math.isclose(x, ref[0], rel_tol=rule.tolerance, abs_tol=rule.tolerance)
    return int(ok), None if x is None else repr(x)


# ---- tables ----------------------------------------------------------------------------------------
def check_references(df: pd.DataFrame, where: str = "references") -> pd.DataFrame:
    """Validate a references table (prompt_id, answer, rule): known rules, a non-empty answer, letters for
    choice rules and a number for numeric ones; returns it with text columns."""
    missing = [c for c in REFERENCE_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{where}: missing column(s) {', '.join(missing)} (expected {', '.join(REFERENCE_COLUMNS)})")
    df = df[list(REFERENCE_COLUMNS)].reset_index(drop=True)
    ids = df["prompt_id"].astype(str)
    if (dup := ids.duplicated().to_numpy()).any():
        i = int(np.flatnonzero(dup)[0])
        raise DataError(f"{where}: {row_label(where, i)}: duplicate prompt_id {ids.iloc[i]!r}")
    rules: dict[str, Rule] = {}
    for i, (pid, ans, spelling) in enumerate(zip(ids, df["answer"], df["rule"], strict=True)):
        at = f"{where}: {row_label(where, i)} ({pid})"
        if pd.isna(ans) or not str(ans).strip():
            raise DataError(f"{at}: answer is empty")
        if pd.isna(spelling):
            raise DataError(f"{at}: rule is empty (expected one of {', '.join(RULES)})")
        if spelling not in rules:
            try:
                rules[spelling] = parse_rule(spelling)
            except ValueError as e:
                raise DataError(f"{at}: {e}") from None
        rule = rules[spelling]
        if rule.name.startswith("choice") and str(ans).strip() not in rule.letters:
            raise DataError(f"{at}: answer {ans!r} is not one of the letters {rule.letters}")
        if rule.name == "numeric" and not parse_numbers(str(ans)):
            raise DataError(f"{at}: answer {ans!r} is not a number (rule numeric)")
    return df.assign(prompt_id=ids, answer=df["answer"].astype(str).str.strip(), rule=df["rule"].astype(str))


def read_references(path: str | Path) -> pd.DataFrame:
    """Read and validate a ``references.csv`` (or .jsonl / .parquet): columns prompt_id, answer, rule."""
    df = read_user_table(path, REFERENCE_COLUMNS, "reference answers: columns prompt_id, answer, rule")
    return check_references(df, str(path))


def read_responses(path: str | Path, column: str = "response") -> pd.DataFrame:
    """Read a responses table (.csv / .jsonl / .parquet): columns prompt_id and ``column`` (returned as
    ``response``)."""
    df = read_user_table(path, ("prompt_id", column), f"responses: columns prompt_id, {column}")
    check_cells(df, path, column, "text")  # a number, list or true/false is not an LLM's text
    return df[["prompt_id", column]].rename(columns={column: "response"})


def grade(responses: pd.DataFrame, references: pd.DataFrame, where: str = "responses",
          unknown_hint: str = "") -> pd.DataFrame:
    """Grade each response against its prompt's reference: DataFrame[prompt_id, score, extracted] in the
    responses' order. An empty or missing response scores 0. ``where`` names the responses in errors
    (a file path gives line numbers); ``unknown_hint`` ends the error about a prompt without a reference."""
    if "prompt_id" not in responses.columns or "response" not in responses.columns:
        got = ", ".join(map(str, responses.columns)) or "none"
        raise DataError(f"{where}: expected columns prompt_id, response (got {got})")
    refs = check_references(references)
    ids = responses["prompt_id"].astype(str).reset_index(drop=True)
    if (dup := ids.duplicated().to_numpy()).any():
        i = int(np.flatnonzero(dup)[0])
        raise DataError(f"{where}: {row_label(where, i)}: duplicate prompt_id {ids.iloc[i]!r}")
    pos = pd.Index(refs["prompt_id"]).get_indexer(ids)
    if (pos < 0).any():
        i = int(np.flatnonzero(pos < 0)[0])
        raise DataError(f"{where}: {row_label(where, i)}: prompt_id {ids.iloc[i]!r} has no reference answer "
                        f"({int((pos < 0).sum())} such rows){unknown_hint}")
    parsed = {s: parse_rule(s) for s in refs["rule"].unique()}
    answers, rules = refs["answer"].to_numpy()[pos], refs["rule"].to_numpy()[pos]
    scores, extracted = [], []
    for text, ans, rule in zip(responses["response"].tolist(), answers, rules, strict=True):
        s, e = (0, None) if text is None or (isinstance(text, float) and math.isnan(text)) else \
            grade_one(str(text), ans, parsed[rule])
        scores.append(s)
        extracted.append(e)
    return pd.DataFrame({"prompt_id": ids, "score": np.array(scores, dtype=np.float64),
                         "extracted": pd.Series(extracted, dtype=object)})


# ---- datasets and routers --------------------------------------------------------------------------
def dataset_references(folder: str | Path, prompt_ids) -> pd.DataFrame | None:
    """The rows of ``folder/references.csv`` for ``prompt_ids`` (in that order; prompts without a row are left
    out), or None when the folder has no references.csv."""
    path = Path(folder) / REFERENCES
    if not path.exists():
        return None
    refs = read_references(path).set_index("prompt_id")
    keep = [str(i) for i in prompt_ids if str(i) in refs.index]
    return refs.loc[keep].reset_index()


def with_references(probes: pd.DataFrame, references: pd.DataFrame) -> pd.DataFrame:
    """``probes`` with each prompt's ``answer`` and ``rule`` columns added (empty where it has none)."""
    refs = references.set_index("prompt_id")
    ids = probes["prompt_id"].astype(str)
    return probes.assign(answer=ids.map(refs["answer"]).fillna("").to_numpy(),
                         rule=ids.map(refs["rule"]).fillna("").to_numpy())


def router_references(d: Path, card: dict, reserve_ids) -> pd.DataFrame | None:
    """The references a router directory's card lists (``references: references.csv``), checked against the
    probe reserve; None when the card lists none."""
    from .store import RouterDirError

    name = card.get("references")
    if name is None:
        return None
    if name != REFERENCES:
        raise RouterDirError(f"{d / 'router.yaml'}: references: {name!r} (expected {REFERENCES} or null)")
    try:
        refs = read_references(d / REFERENCES)
    except DataError as e:
        raise RouterDirError(f"{e}; rebuild the router") from None
    unknown = ~refs["prompt_id"].isin(set(map(str, reserve_ids)))
    if unknown.any():
        raise RouterDirError(f"{d / REFERENCES}: prompt_id {refs['prompt_id'][unknown].iloc[0]!r} is not a probe "
                             "prompt of this router; rebuild the router")
    return refs


def no_references(dataset: str) -> str:
    """The one line saying a dataset has no reference answers."""
    return (f"{dataset} has no reference answers (no {REFERENCES}): score the new LLM's responses yourself and "
            "give prompt_id,score to `router add-llm --answers`")


PROBES_HINT = "; answer prompts listed by `unirouter router probes`"


def grade_responses(responses: str | Path | pd.DataFrame, references: pd.DataFrame | None,
                    dataset: str, unknown_hint: str = PROBES_HINT, column: str = "response") -> pd.DataFrame:
    """Grade a responses file or DataFrame (prompt_id and ``column``) against a router's or a dataset's
    references."""
    if references is None:
        raise ConfigError(no_references(dataset))
    if isinstance(responses, pd.DataFrame):
        df, where = responses.rename(columns={column: "response"}) if column != "response" else responses, "responses"
    else:
        df, where = read_responses(responses, column), str(responses)
    return grade(df, references, where, unknown_hint=unknown_hint)


def references_of(spec: str) -> tuple[pd.DataFrame | None, str]:
    """(references, label) from a references file, or from a dataset (registered name or folder) that may
    carry references.csv (None when it does not)."""
    p = Path(spec).expanduser()
    if p.is_file():
        return read_references(p), str(p)
    from ..data.registry import resolve

    name, folder = resolve(spec)
    return (read_references(folder / REFERENCES) if (folder / REFERENCES).exists() else None), name
