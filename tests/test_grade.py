"""Grading raw responses into 0/1 answers: the rules' extractors, the table checks, and agreement with the
letters the MMLU-Pro authors extracted from real Llama-2-13b responses."""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from unirouter_cli.cli import app
from unirouter_cli.data.registry import BUNDLED_DIR
from unirouter_cli.errors import DataError
from unirouter_cli.serving.grade import (
    Rule,
    extract_choice,
    extract_number,
    final_answer,
    grade,
    grade_one,
    normalise,
    parse_numbers,
    parse_rule,
    read_references,
    read_responses,
    rule_spelling,
)
from unirouter_cli.serving.router import load_router
from unirouter_cli.serving.store import RouterDirError

from .conftest import FIXTURES, SHARED, needs_shared

FIXTURE = FIXTURES / "grade" / "llama-2-13b-responses.jsonl"
BUNDLED_REFS = BUNDLED_DIR / "mmlu-pro" / "references.csv"


def _letters(values) -> list[str | None]:
    return [None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v) for v in values]


def _upstream_chain(text: str) -> str | None:
    """The three regexes of the MMLU-Pro authors' evaluate_from_local.py, written out literally."""
    if m := re.search(r"answer is \(?([A-J])\)?", text):
        return m.group(1)
    if m := re.search(r".*[aA]nswer:\s*([A-J])", text):
        return m.group(1)
    m = re.search(r"\b[A-J]\b(?!.*\b[A-J]\b)", text, re.DOTALL)
    return m.group(0) if m else None


# ---- choice ----------------------------------------------------------------------------------------
def test_choice_takes_the_first_answer_is_letter():
    assert extract_choice("so the answer is (C). Later the answer is (D).") == "C"
    assert extract_choice("the answer is B") == "B"
    assert extract_choice("The Answer is (C)") is None  # case-sensitive, as the authors' regex
    assert extract_choice("Answer: C") is None  # only the chain's second step reads this
    assert extract_choice("answer is (K)") is None


def test_choice_letters_restrict_the_options():
    rule = parse_rule("choice:A-D")
    assert rule == Rule("choice", "ABCD")
    assert grade_one("the answer is (E)", "D", rule) == (0, None)
    assert grade_one("the answer is (D)", "D", rule) == (1, "D")
    assert parse_rule("choice:XYZ").letters == "XYZ"


def test_choice_chain_steps():
    assert extract_choice("no marker here\nAnswer: B and Answer: C\nAnswer: D", chain=True) == "C"
    assert extract_choice("I pick option G, not H.", chain=True) == "H"
    assert extract_choice("nothing to pick", chain=True) is None


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(list("ABCJKab \n().:") + ["answer is ", "Answer:", "nswer: ", "x"]), max_size=30))
def test_choice_chain_equals_the_upstream_regexes(pieces):
    text = "".join(pieces)
    assert extract_choice(text, chain=True) == _upstream_chain(text)


# ---- exact and numeric ----------------------------------------------------------------------------
def test_final_answer_prefers_boxed_then_marker_then_last_line():
    assert final_answer(r"x \boxed{\frac{1}{2}} then the answer is 3") == (r"\frac{1}{2}", True)
    assert final_answer("work\nThe answer is: Paris.\nthanks") == ("Paris.", True)
    assert final_answer("work\n\n  42 apples \n") == ("42 apples", False)


def test_exact_rule_normalises_case_space_and_punctuation():
    rule = parse_rule("exact")
    assert grade_one("The answer is  New   York.", "new york", rule) == (1, "new york")
    assert grade_one("Therefore the answer is **Paris**", "Paris", rule)[0] == 1
    assert grade_one("The answer is Lyon.", "Paris", rule) == (0, "lyon")
    assert grade_one("", "Paris", rule) == (0, None)
    assert normalise("\uff21nswer") == "answer"  # NFKC folds full-width letters


@pytest.mark.parametrize(("text", "expected"), [
    ("1,000", [1000.0]), ("1e3", [1000.0]), ("-2.5e-1", [-0.25]), ("3/4", [0.75]), (r"\frac{3}{4}", [0.75]),
    (r"\dfrac{-1}{8}", [-0.125]), ("50%", [50.0]), (".5", [0.5]), ("x = 12 and y = -3", [12.0, -3.0]),
    ("1,2,3", [1.0, 2.0, 3.0]), ("\u22127", [-7.0]), ("1/0", []), ("none", []),
])
def test_parse_numbers(text, expected):
    assert parse_numbers(text) == pytest.approx(expected)


@settings(max_examples=200, deadline=None)
@given(st.integers(-10**9, 10**9))
def test_thousands_separated_integers_parse_back(n):
    assert parse_numbers(f"the total is {n:,} units") == [float(n)]


@settings(max_examples=200, deadline=None)
@given(st.floats(-1e12, 1e12, allow_nan=False, allow_infinity=False))
def test_floats_parse_back(x):
    assert parse_numbers(f"value {x!r}") == pytest.approx([x], rel=1e-12, abs=1e-300)


@settings(max_examples=200, deadline=None)
@given(st.integers(-999, 999), st.integers(1, 999))
def test_fractions_parse_back(a, b):
    assert parse_numbers(f"{a}/{b}") == pytest.approx([a / b])
    assert parse_numbers(rf"\frac{{{a}}}{{{b}}}") == pytest.approx([a / b])


def test_numeric_rule_and_tolerance():
    assert extract_number("first 3 then 4, the answer is 1,000 (about 1e3)") == 1000.0
    assert extract_number("we get 3 and finally 7") == 7.0  # no marker: the last number
    default, loose = parse_rule("numeric"), parse_rule("numeric:0.01")
    assert grade_one("The answer is 1e3.", "1,000", default) == (1, "1000.0")
    assert grade_one(r"so \boxed{3.14}", "3.14159", default)[0] == 0
    assert grade_one(r"so \boxed{3.14}", "3.14159", loose)[0] == 1
    assert grade_one("no number", "3", default) == (0, None)
    assert rule_spelling(loose) == "numeric:0.01" and rule_spelling(default) == "numeric"


@pytest.mark.parametrize("bad", ["multiple", "exact:x", "numeric:-1", "numeric:abc", "choice:A-", "choice:AA"])
def test_unknown_or_malformed_rules_are_refused(bad):
    with pytest.raises(ValueError, match="rule|letters"):
        parse_rule(bad)


def test_the_shared_tables_rule_description_reads_as_choice():
    text = "multiple-choice letter (A-J): the response's final chosen option letter must equal answer"
    assert parse_rule(text) == Rule("choice", "ABCDEFGHIJ")
    assert rule_spelling(parse_rule(text)) == "choice"


# ---- tables and errors -----------------------------------------------------------------------------
REFS = pd.DataFrame({"prompt_id": ["a", "b", "c"], "answer": ["B", "1/2", "Paris"],
                     "rule": ["choice", "numeric", "exact"]})


def test_grade_mixes_rules_and_keeps_the_responses_order():
    responses = pd.DataFrame({"prompt_id": ["c", "a", "b"],
                              "response": ["The answer is Paris.", "the answer is (C)", "the answer is 0.5"]})
    g = grade(responses, REFS)
    assert list(g.columns) == ["prompt_id", "score", "extracted"]
    assert g["prompt_id"].tolist() == ["c", "a", "b"]
    assert g["score"].tolist() == [1.0, 0.0, 1.0]
    assert g["extracted"].tolist() == ["paris", "C", "0.5"]


def test_missing_response_scores_zero():
    g = grade(pd.DataFrame({"prompt_id": ["a", "b"], "response": [None, float("nan")]}), REFS)
    assert g["score"].tolist() == [0.0, 0.0] and g["extracted"].isna().all()


@pytest.mark.parametrize(("responses", "message"), [
    (pd.DataFrame({"prompt_id": ["a"], "text": ["x"]}), r"responses: expected columns prompt_id, response"),
    (pd.DataFrame({"prompt_id": ["a", "zz"], "response": ["x", "y"]}), r"row 1: prompt_id 'zz' has no reference"),
    (pd.DataFrame({"prompt_id": ["a", "a"], "response": ["x", "y"]}), r"row 1: duplicate prompt_id 'a'"),
])
def test_grade_errors_are_one_line(responses, message):
    with pytest.raises(DataError, match=message) as e:
        grade(responses, REFS)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(("rows", "message"), [
    ("a,B,choice\nb,K,choice\n", r"line 3 \(b\): answer 'K' is not one of the letters ABCDEFGHIJ"),
    ("a,B,choice\nb,C,multiple\n", r"line 3 \(b\): unknown rule 'multiple'"),
    ("a,B,choice\nb,,exact\n", r"line 3 \(b\): answer is empty"),
    ("a,B,choice\nb,many,numeric\n", r"line 3 \(b\): answer 'many' is not a number"),
    ("a,B,choice\na,C,choice\n", r"line 3: duplicate prompt_id 'a'"),
    ("a,B\n", r"missing column\(s\) rule"),
])
def test_references_file_errors_name_file_and_line(tmp_path, rows, message):
    p = tmp_path / "references.csv"
    header = "prompt_id,answer\n" if rows == "a,B\n" else "prompt_id,answer,rule\n"
    p.write_text(header + rows)
    with pytest.raises(DataError, match=message) as e:
        read_references(p)
    assert str(e.value).startswith(str(p)) and "\n" not in str(e.value)


def test_responses_file_errors_name_file_and_line(tmp_path):
    p = tmp_path / "responses.csv"
    pd.DataFrame({"prompt_id": ["a", "zz"], "response": ["the answer is (B)", "y"]}).to_csv(p, index=False)
    with pytest.raises(DataError, match=rf"{re.escape(str(p))}: line 3: prompt_id 'zz' has no reference"):
        grade(read_responses(p), REFS, where=str(p))
    q = tmp_path / "answers.csv"
    q.write_text("prompt_id,text\na,x\n")
    with pytest.raises(DataError, match="missing column"):
        read_responses(q)


@pytest.mark.parametrize(("body", "message"), [
    ('{"prompt_id": "a", "response": "(B)"}\n{"prompt_id": "b", "response": 5}\n',
     "line 2: response = 5; expected text"),
    ('{"prompt_id": "a", "response": ["A"]}\n', "line 1: response = ['A']; expected text"),
    ("\n", "is empty (expected one JSON object per line)"),
])
def test_responses_that_are_not_text_or_an_empty_file_are_refused(tmp_path, body, message):
    p = tmp_path / "responses.jsonl"
    p.write_text(body)
    with pytest.raises(DataError, match=re.escape(f"{p}: {message}")):
        read_responses(p)


def test_exact_answers_stay_text(tmp_path):
    p = tmp_path / "references.csv"
    p.write_text("prompt_id,answer,rule\n1,007,exact\n2,NA,exact\n")
    refs = read_references(p)
    assert refs["answer"].tolist() == ["007", "NA"] and refs["prompt_id"].tolist() == ["1", "2"]


# ---- real responses --------------------------------------------------------------------------------
def test_bundled_references_cover_the_bundled_prompts():
    refs = read_references(BUNDLED_REFS)
    prompts = pd.read_parquet(BUNDLED_DIR / "mmlu-pro" / "prompts.parquet")
    assert set(refs["prompt_id"]) == set(prompts["prompt_id"].astype(str))
    assert set(refs["rule"]) == {"choice"} and set(refs["answer"]) == set("ABCDEFGHIJ")


def test_fixture_responses_graded_as_the_mmlu_pro_authors_did():
    g = grade(read_responses(FIXTURE), read_references(BUNDLED_REFS), where=str(FIXTURE))
    rows = pd.read_json(FIXTURE, lines=True, dtype={"prompt_id": str, "extracted_by_authors": str})
    assert g["prompt_id"].tolist() == rows["prompt_id"].tolist()
    assert _letters(g["extracted"]) == _letters(rows["extracted_by_authors"])
    assert g["score"].tolist() == rows["table_score"].tolist()
    assert rows["extracted_by_authors"].isna().sum() == 15  # rows without a letter are in the sample


def test_fixture_choice_chain_follows_the_upstream_chain():
    responses = read_responses(FIXTURE)
    refs = read_references(BUNDLED_REFS).assign(rule="choice-chain")
    g = grade(responses[["prompt_id", "response"]], refs)
    assert _letters(g["extracted"]) == [_upstream_chain(t) for t in responses["response"]]


def _agreement(path: Path, refs: pd.DataFrame) -> tuple[pd.DataFrame, float]:
    raw = pd.read_parquet(path)
    g = grade(raw[["prompt_id", "response"]], refs, where=str(path))
    same = [a == b for a, b in zip(_letters(g["extracted"]), _letters(raw["extracted_by_authors"]), strict=True)]
    return g, sum(same) / len(same)


@needs_shared
def test_whole_raw_sample_agrees_with_the_authors_and_the_table():
    refs = read_references(SHARED / "data" / "mmlu-pro" / "references.csv")
    g, agreement = _agreement(SHARED / "raw-samples" / "mmlu-pro-llama-2-13b-responses.parquet", refs)
    assert len(g) == 3000 and agreement >= 0.99
    out = pd.read_parquet(SHARED / "data" / "mmlu-pro" / "outcomes.parquet", columns=["prompt_id", "model", "score"])
    table = out[out["model"] == "Llama-2-13b-hf"].set_index("prompt_id")["score"].reindex(g["prompt_id"])
    assert table.notna().all()
    assert (table.to_numpy() == g["score"].to_numpy()).mean() >= 0.99


# ---- the router: build keeps the reserve's references, probes list them, `router grade` -----------------
def run(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def mmlu_router(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("grade-router") / "mp"
    res = run("router", "build", "--dataset", "mmlu-pro", "--router", "knn", "--out", out)
    assert res.exit_code == 0, res.output
    return out


def test_build_keeps_the_reserves_references_and_probes_list_them(mmlu_router, tmp_path):
    r = load_router(mmlu_router)
    assert r.card["references"] == "references.csv"
    bundled = read_references(BUNDLED_REFS).set_index("prompt_id")
    stored = read_references(mmlu_router / "references.csv")
    assert stored["prompt_id"].tolist() == r.reserve_ids.tolist()
    assert (stored["answer"].to_numpy() == bundled.loc[stored["prompt_id"], "answer"].to_numpy()).all()
    res = run("router", "probes", mmlu_router, "-n", 30, "--out", tmp_path / "p.csv")
    assert res.exit_code == 0, res.output
    assert "no reference answers" not in res.stderr
    probes = pd.read_csv(tmp_path / "p.csv", dtype=str, keep_default_na=False)
    assert list(probes.columns) == ["prompt_id", "text", "answer", "rule"] and len(probes) == 30
    assert (probes["answer"].to_numpy() == bundled.loc[probes["prompt_id"], "answer"].to_numpy()).all()
    assert set(probes["rule"]) == {"choice"}


def test_router_grade_writes_answers_that_add_llm_takes(mmlu_router, tmp_path):
    """Responses built from the probes' gold letters (right, wrong, no letter in turn) grade to the expected
    scores through the CLI and the Python method alike, and add-llm takes the written file."""
    probes = load_router(mmlu_router).probes(45, seed=3)
    wrong = {g: "ABCDEFGHIJ"[("ABCDEFGHIJ".index(g) + 1) % 10] for g in "ABCDEFGHIJ"}
    texts = [f"Let's think step by step. The answer is ({g})." if i % 3 == 0 else
             f"Step by step: the answer is {wrong[g]}" if i % 3 == 1 else "I cannot tell which option."
             for i, g in enumerate(probes["answer"])]
    responses = pd.DataFrame({"prompt_id": probes["prompt_id"], "response": texts})
    responses.to_json(tmp_path / "r.jsonl", orient="records", lines=True)
    res = run("router", "grade", mmlu_router, "--responses", tmp_path / "r.jsonl", "--out", tmp_path / "a.csv")
    assert res.exit_code == 0, res.output
    assert "graded 45 responses" in res.stderr and "15 without an extracted answer" in res.stderr
    got = pd.read_csv(tmp_path / "a.csv", dtype={"prompt_id": str})
    assert got["score"].tolist() == [1.0 if i % 3 == 0 else 0.0 for i in range(45)]
    responses.rename(columns={"response": "output"}).to_csv(tmp_path / "o.csv", index=False)
    res = run("router", "grade", mmlu_router, "--responses", tmp_path / "o.csv", "--response-column", "output")
    assert res.exit_code == 0, res.output
    assert res.stdout == (tmp_path / "a.csv").read_text()
    via_python = load_router(mmlu_router).grade(responses)
    assert via_python["score"].tolist() == got["score"].tolist()
    assert _letters(via_python["extracted"]) == _letters(got["extracted"])
    copy = tmp_path / "copy"
    shutil.copytree(mmlu_router, copy)
    res = run("router", "add-llm", copy, "--model", "graded-llm", "--cost", 0.5, "--answers", tmp_path / "a.csv")
    assert res.exit_code == 0, res.output
    info = load_router(copy).info()
    added = next(m for m in info["llms"] if m["name"] == "graded-llm")
    assert added["answers"] == 45 and added["accuracy_on_answers"] == pytest.approx(1 / 3, abs=1e-4)
    assert read_references(copy / "references.csv").equals(read_references(mmlu_router / "references.csv"))


def test_router_grade_refusals_are_one_line(mmlu_router, tmp_path, small_dataset):
    (tmp_path / "r.csv").write_text("prompt_id,response\nnot-a-probe,the answer is (A)\n")
    for args, message in (
            ((mmlu_router, "--responses", tmp_path / "r.csv"), "line 2: prompt_id 'not-a-probe' has no reference"),
            (("--responses", tmp_path / "r.csv"), "exactly one of the two"),
            ((mmlu_router, "--references", "mmlu-pro", "--responses", tmp_path / "r.csv"), "exactly one of the two"),
            ((mmlu_router, "--responses", tmp_path / "missing.csv"), "file not found")):
        res = run("router", "grade", *args)
        assert res.exit_code == 2 and message in res.stderr, res.output
        assert len(res.stderr.strip().splitlines()) == 1
    out = tmp_path / "rb"
    assert run("router", "build", "--dataset", small_dataset, "--router", "knn", "--out", out).exit_code == 0
    assert load_router(out).references is None and not (out / "references.csv").exists()
    res = run("router", "probes", out, "-n", 5)
    assert res.exit_code == 0 and "small-rb has no reference answers" in res.stderr
    res = run("router", "grade", out, "--responses", tmp_path / "r.csv")
    assert res.exit_code == 2 and "small-rb has no reference answers" in res.stderr


def test_damaged_references_in_a_router_directory_are_refused(mmlu_router, tmp_path):
    """An edited references.csv is refused by the manifest; one written with a consistent manifest is still
    checked (letters, the card's file name)."""
    import yaml

    from unirouter_cli.serving.store import write_manifest

    d = shutil.copytree(mmlu_router, tmp_path / "d")
    refs = read_references(d / "references.csv")
    refs.loc[0, "answer"] = "Z"
    refs.to_csv(d / "references.csv", index=False)
    with pytest.raises(RouterDirError, match=r"references.csv: does not match manifest.json"):
        load_router(d)
    card = yaml.safe_load((d / "router.yaml").read_text())
    write_manifest(d, card)
    with pytest.raises(RouterDirError, match=r"references.csv: line 2 .*answer 'Z' is not one of the letters"):
        load_router(d)
    e = shutil.copytree(mmlu_router, tmp_path / "e")
    card = yaml.safe_load((e / "router.yaml").read_text())
    card["references"] = "../elsewhere.csv"
    (e / "router.yaml").write_text(yaml.safe_dump(card, sort_keys=False))
    write_manifest(e, card)
    with pytest.raises(RouterDirError, match="expected references.csv or null"):
        load_router(e)


@needs_shared
def test_router_grade_cli_on_the_whole_raw_sample(tmp_path):
    raw_path = SHARED / "raw-samples" / "mmlu-pro-llama-2-13b-responses.parquet"
    res = run("router", "grade", "--references", SHARED / "data" / "mmlu-pro", "--responses", raw_path,
              "--out", tmp_path / "a.csv")
    assert res.exit_code == 0, res.output
    got = pd.read_csv(tmp_path / "a.csv", dtype={"prompt_id": str, "extracted": str})
    raw = pd.read_parquet(raw_path)
    assert got["prompt_id"].tolist() == raw["prompt_id"].tolist()
    same = [a == b for a, b in zip(_letters(got["extracted"]), _letters(raw["extracted_by_authors"]), strict=True)]
    assert sum(same) / len(same) >= 0.99


def test_downloaded_mmlu_pro_carries_references_and_grades_the_upstream_outputs(tmp_path):
    """`unirouter download mmlu-pro` (here from the upstream-format fixtures) writes references.csv; a router
    built on it lists probe texts with their answers, and grading the upstream zip's own responses gives back
    the letters the authors extracted (pred)."""
    import json
    import zipfile

    from unirouter_cli.data.download import convert_to_folder

    folder, _ = convert_to_folder("mmlu-pro", FIXTURES / "tiger", tmp_path / "m")
    refs = read_references(folder / "references.csv")
    bundled = read_references(BUNDLED_REFS).set_index("prompt_id")
    assert len(refs) == 60 and (refs["answer"].to_numpy() == bundled.loc[refs["prompt_id"], "answer"].to_numpy()).all()
    out = tmp_path / "r"
    res = run("router", "build", "--dataset", folder, "--router", "knn", "--probe-reserve", 30, "--out", out)
    assert res.exit_code == 0, res.output
    res = run("router", "probes", out, "-n", 30, "--out", tmp_path / "p.csv")
    assert res.exit_code == 0, res.output
    probes = pd.read_csv(tmp_path / "p.csv", dtype=str, keep_default_na=False)
    assert probes["text"].str.len().gt(0).all() and (probes["rule"] == "choice").all()
    with zipfile.ZipFile(FIXTURES / "tiger" / "model_outputs_Llama-2-7b-hf_5shots.zip") as z:
        rows = {f"mmlu-pro/{r['question_id']}": r for r in json.loads(z.read(z.namelist()[0]))}
    responses = pd.DataFrame({"prompt_id": probes["prompt_id"],
                              "response": [rows[p]["generated_text"] for p in probes["prompt_id"]]})
    g = load_router(out).grade(responses)
    assert _letters(g["extracted"]) == _letters(rows[p]["pred"] for p in probes["prompt_id"])
    assert g["score"].tolist() == [float(rows[p]["pred"] == rows[p]["answer"]) for p in probes["prompt_id"]]
