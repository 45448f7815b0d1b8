"""Dataset folder format: validation of real and malformed folders, loading, the registry."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from unirouter_cli.data.folder import load_folder, validate_folder
from unirouter_cli.data.registry import BUNDLED_DIR, load_dataset, resolve
from unirouter_cli.errors import DataError

from .conftest import SHARED, invoke, needs_shared, write_dataset


def test_bundled_mmlu_pro_loads_with_real_counts():
    ds = load_dataset("mmlu-pro")
    assert ds.n_prompts == 12032 and ds.n_models == 49
    assert int((~np.isnan(ds.scores)).sum()) == 587687
    assert ds.texts is None  # texts are not shipped; download brings them
    j = ds.models.index("Llama-2-7b-hf")
    assert np.nanmean(ds.scores[:, j]) == pytest.approx(0.18342752659574468)


def test_bundled_routerbench_subset_has_per_query_costs():
    ds = load_dataset("routerbench-subset")
    assert (ds.n_prompts, ds.n_models) == (3178, 11)
    assert ds.query_cost is not None
    assert int(np.isnan(ds.scores).sum()) == 3178 * 11 - 34804


@needs_shared
def test_shared_routerbench_subset_validates(runner):
    res = invoke(runner, "data", "validate", SHARED / "data" / "routerbench-subset")
    assert res.exit_code == 0, res.output
    assert "3178 prompts, 11 models, 34804 outcomes" in res.output


@needs_shared
def test_shared_mmlu_pro_matches_bundled_numbers():
    shared = load_folder(SHARED / "data" / "mmlu-pro")
    bundled = load_dataset("mmlu-pro")
    assert shared.models == bundled.models
    np.testing.assert_array_equal(np.isnan(shared.scores), np.isnan(bundled.scores))
    np.testing.assert_allclose(np.nan_to_num(shared.scores), np.nan_to_num(bundled.scores))


def test_csv_tables_are_accepted(tmp_path, small_tables):
    p, o, m = small_tables
    folder = write_dataset(tmp_path / "csv-ds", p, o, m, fmt="csv")
    ds = load_folder(folder)
    assert ds.n_prompts == len(p) and ds.n_models == 11


def test_missing_pairs_are_nan(tmp_path, small_tables):
    p, o, m = small_tables
    o = o.iloc[1:]  # drop one evaluated pair
    ds = load_folder(write_dataset(tmp_path / "d", p, o, m))
    assert np.isnan(ds.scores).sum() >= 1


def _bad(kind: str, p: pd.DataFrame, o: pd.DataFrame, m: pd.DataFrame):
    p, o, m = p.copy(), o.copy(), m.copy()
    card = None
    if kind == "missing-score-column":
        o = o.drop(columns="score")
    elif kind == "duplicate-pair":
        o = pd.concat([o, o.iloc[:1]])
    elif kind == "score-above-one":
        o.loc[o.index[3], "score"] = 1.5
    elif kind == "score-nan":
        o.loc[o.index[3], "score"] = np.nan
    elif kind == "score-inf":
        o.loc[o.index[3], "score"] = np.inf
    elif kind == "score-not-number":
        o["score"] = o["score"].astype(object)
        o.loc[o.index[3], "score"] = "yes"
    elif kind == "negative-model-cost":
        m.loc[0, "cost"] = -1.0
    elif kind == "zero-model-cost":
        m.loc[0, "cost"] = 0.0
    elif kind == "missing-model-cost":
        m.loc[0, "cost"] = np.nan
    elif kind == "unknown-model":
        o.loc[o.index[0], "model"] = "not-a-model"
    elif kind == "empty-model":
        o.loc[o.index[0], "model"] = np.nan
    elif kind == "empty-outcome-prompt-id":
        o.loc[o.index[0], "prompt_id"] = np.nan
    elif kind == "unknown-prompt":
        o.loc[o.index[0], "prompt_id"] = "nowhere/1"
    elif kind == "empty-text":
        p.loc[0, "text"] = "  "
    elif kind == "duplicate-prompt-id":
        p.loc[1, "prompt_id"] = p.loc[0, "prompt_id"]
    elif kind == "empty-outcomes":
        o = o.iloc[:0]
    elif kind == "single-llm":
        m = m.iloc[:1]
        o = o[o["model"] == m["model"].iloc[0]]
    elif kind == "negative-query-cost":
        o.loc[o.index[5], "cost"] = -0.01
    elif kind == "card-not-mapping":
        card = ["not", "a", "mapping"]
    return p, o, m, card


BAD_KINDS = ["missing-score-column", "duplicate-pair", "score-above-one", "score-nan", "score-inf",
             "score-not-number", "negative-model-cost", "zero-model-cost", "missing-model-cost", "unknown-model",
             "unknown-prompt", "empty-text", "duplicate-prompt-id", "empty-outcomes", "single-llm",
             "negative-query-cost", "card-not-mapping", "empty-model", "empty-outcome-prompt-id"]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_malformed_folder_gives_one_line_and_exit_2(tmp_path, small_tables, runner, kind):
    p, o, m, card = _bad(kind, *small_tables)
    csv = kind in ("score-not-number", "empty-model", "empty-outcome-prompt-id")
    folder = write_dataset(tmp_path / kind, p, o, m, card, fmt="csv" if csv else "parquet")
    if card is not None:
        import yaml

        (folder / "dataset.yaml").write_text(yaml.safe_dump(card))
    res = invoke(runner, "data", "validate", folder)
    assert res.exit_code == 2
    problems, _, _ = validate_folder(folder)
    assert problems, kind
    # loading through any command: one line naming the folder and file, exit 2, no traceback
    res = invoke(runner, "data", "info", folder)
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(folder) in lines[0]
    assert "Traceback" not in res.output


def test_problem_names_file_row_and_expectation(tmp_path, small_tables):
    p, o, m, _ = _bad("score-above-one", *small_tables)
    folder = write_dataset(tmp_path / "d", p, o, m, fmt="csv")
    problems, _, _ = validate_folder(folder)
    text = str(problems[0])
    assert "outcomes.csv" in text and "line 5" in text and "[0, 1]" in text


def test_missing_files_and_non_utf8(tmp_path, small_tables, runner):
    p, o, m = small_tables
    folder = write_dataset(tmp_path / "d", p, o, m, fmt="csv")
    (folder / "prompts.csv").write_bytes(b"prompt_id,text,category\nx,\xff\xfe bad,c\n")
    problems, _, _ = validate_folder(folder)
    assert any("UTF-8" in str(pr) for pr in problems)
    (folder / "models.csv").unlink()
    problems, _, _ = validate_folder(folder)
    assert any("models.csv" in str(pr) and "missing" in str(pr) for pr in problems)
    res = invoke(runner, "data", "validate", tmp_path / "nope")
    assert res.exit_code == 2


def test_resolve_names_and_paths(tmp_path):
    name, folder = resolve("mmlu-pro")
    assert name == "mmlu-pro" and folder == BUNDLED_DIR / "mmlu-pro"
    with pytest.raises(DataError, match="unknown dataset"):
        resolve("no-such-dataset")
    with pytest.raises(DataError, match="unirouter download routerbench"):
        resolve("routerbench")


def test_data_list_shows_status(runner):
    res = invoke(runner, "data", "list")
    assert res.exit_code == 0
    for name in ("mmlu-pro", "routerbench", "embedllm", "sprout"):
        assert name in res.output
    assert "bundled" in res.output


def test_model_without_outcomes_is_refused(tmp_path, small_tables, runner):
    p, o, m = small_tables
    m = pd.concat([m, pd.DataFrame({"model": ["ghost-llm"], "cost": [1.0]})], ignore_index=True)
    folder = write_dataset(tmp_path / "ghost", p, o, m)
    for cmd in (("data", "info", folder), ("data", "validate", folder),
                ("fit", "--dataset", folder, "--run-dir", tmp_path / "run")):  # validate and fit agree
        res = invoke(runner, *cmd)
        assert res.exit_code == 2 and "ghost-llm" in res.output and "without any outcome row" in res.output
        assert "line 13" in res.output  # models.csv: header + 11 models + the ghost


def test_na_like_ids_and_names_in_csv_stay_strings(tmp_path, small_tables):
    """A model called "NA" or a prompt id "None" is a name, not a missing value; in the numeric columns the
    same spellings still mean missing."""
    p, o, m = (df.copy() for df in small_tables)
    ren_m = {m["model"].iloc[0]: "NA", m["model"].iloc[1]: "null"}
    ren_p = {p["prompt_id"].iloc[0]: "None", p["prompt_id"].iloc[1]: "nan"}
    m["model"] = m["model"].replace(ren_m)
    o["model"] = o["model"].replace(ren_m)
    p["prompt_id"] = p["prompt_id"].replace(ren_p)
    o["prompt_id"] = o["prompt_id"].replace(ren_p)
    d = write_dataset(tmp_path / "d", p, o, m, fmt="csv")
    assert validate_folder(d)[0] == []
    ds = load_folder(d)
    assert {"NA", "null"} <= set(ds.models) and {"None", "nan"} <= set(ds.prompt_ids)
    m.loc[2, "cost"] = np.nan  # written as an empty cell: still a missing cost
    write_dataset(tmp_path / "e", p, o, m, fmt="csv")
    assert any("missing cost" in str(x) for x in validate_folder(tmp_path / "e")[0])


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_empty_category_is_refused_with_its_row(tmp_path, small_tables, runner, fmt):
    p, o, m = (df.copy() for df in small_tables)
    if "category" not in p.columns:
        p["category"] = "a"
    p["category"] = p["category"].astype(object)
    p.loc[3, "category"] = None
    d = write_dataset(tmp_path / fmt, p, o, m, fmt=fmt)
    res = invoke(runner, "data", "validate", str(d))
    assert res.exit_code == 2 and "category is empty" in res.output
    assert ("line 5" if fmt == "csv" else "row 3") in res.output


def test_a_bad_byte_deep_in_a_csv_is_located_in_the_file(tmp_path, small_tables):
    """pandas decodes in blocks and reports the offset inside its block: the error names the file's own
    line and byte instead."""
    p, o, m = small_tables
    folder = write_dataset(tmp_path / "d", p, o, m, fmt="csv")
    raw = (folder / "outcomes.csv").read_bytes()
    lines = raw.split(b"\n")
    assert len(lines) > 300
    lines[299] = lines[299].replace(b",", b",\xff", 1)  # file line 300
    bad = b"\n".join(lines)
    (folder / "outcomes.csv").write_bytes(bad)
    problems, _, _ = validate_folder(folder)
    text = " ".join(str(pr) for pr in problems)
    where = bad.index(bytes([0xFF]))
    assert "outcomes.csv" in text and f"line 300 (byte {where})" in text, text


def test_a_parser_error_stays_on_one_line(tmp_path, small_tables):
    p, o, m = small_tables
    folder = write_dataset(tmp_path / "d", p, o, m, fmt="csv")
    lines = (folder / "outcomes.csv").read_text().split("\n")
    lines[199] += ",extra,fields"
    (folder / "outcomes.csv").write_text("\n".join(lines))
    problems, _, _ = validate_folder(folder)
    text = [str(pr) for pr in problems if "outcomes.csv" in str(pr)]
    assert text and all("\n" not in t for t in text) and "cannot be read" in text[0], text


def test_an_unclosed_quote_is_located_by_its_file_line(tmp_path, small_tables):
    """pandas says 'EOF inside string starting at row N' (a record, not a line): the error names the file line
    where the quote opens, counting the line breaks of quoted texts before it."""
    p, o, m = small_tables
    p = p.copy()
    p["text"] = [f"prompt {i}" for i in range(len(p))]
    p.loc[0, "text"] = "a text\nover\nthree lines"  # quoted in the file: records and lines part ways
    folder = write_dataset(tmp_path / "d", p, o, m, fmt="csv")
    lines = (folder / "prompts.csv").read_text().split("\n")
    target = 10  # file line 10 (1-based): header, the 3-line record, then single-line records
    assert lines[target - 1].count(",") >= 1 and '"' not in lines[target - 1]
    first, rest = lines[target - 1].split(",", 1)
    lines[target - 1] = f'{first},"{rest}'
    (folder / "prompts.csv").write_text("\n".join(lines))
    problems, _, _ = validate_folder(folder)
    text = [str(pr) for pr in problems if "prompts.csv" in str(pr)]
    assert text and f"line {target}" in text[0] and "never closed" in text[0], text


@pytest.mark.parametrize("case", ["duplicate-column", "name-not-a-string"])
def test_repeated_csv_column_and_non_string_name_are_refused(tmp_path, small_tables, runner, case):
    p, o, m = small_tables
    folder = write_dataset(tmp_path / case, p, o, m, fmt="csv")
    if case == "duplicate-column":
        lines = (folder / "outcomes.csv").read_text().splitlines()
        lines = [lines[0] + ",score"] + [ln + ",1" for ln in lines[1:]]
        (folder / "outcomes.csv").write_text("\n".join(lines) + "\n")
        want = "outcomes.csv: line 1: column 'score' appears twice in the header"
    else:
        (folder / "dataset.yaml").write_text("name: [a, b]\ncost_unit: USD\n")
        want = "name: ['a', 'b'] is not a string"
    res = invoke(runner, "data", "validate", folder)
    assert res.exit_code == 2 and want in res.output, res.output
