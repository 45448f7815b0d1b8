"""Downloads and converters: upstream samples and fixtures, safe unpickling, corrupt and offline sources."""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from unirouter_cli.data.download import convert_to_folder, fetch
from unirouter_cli.data.folder import load_folder
from unirouter_cli.data.safepickle import safe_load
from unirouter_cli.data.sources.embedllm import params_from_name
from unirouter_cli.errors import DownloadError

from .conftest import FIXTURES, SHARED, invoke, needs_shared


def upstream_frame(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with text in object columns, as pandas 2.x (which wrote the upstream pickles) stores it.

    pandas 3 stores text in Arrow-backed columns, which the restricted unpickler refuses."""
    out = df.astype({c: object for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])})
    out.columns = pd.Index(list(df.columns), dtype=object)
    if not pd.api.types.is_numeric_dtype(out.index):
        out.index = pd.Index(list(out.index), dtype=object)
    return out


def _tiger_accuracy(zpath: Path) -> tuple[int, float]:
    with zipfile.ZipFile(zpath) as z:
        rows = json.loads(z.read(z.namelist()[0]))
    return len(rows), float(np.mean([r["pred"] == r["answer"] for r in rows]))


@needs_shared
def test_download_mmlu_pro_from_shared_raw_sample(tmp_path, runner):
    src = SHARED / "raw-samples" / "tiger-mmlu-pro"
    res = invoke(runner, "download", "mmlu-pro", "--from", src, "--dest", tmp_path / "mmlu")
    assert res.exit_code == 0, res.output
    assert invoke(runner, "data", "validate", tmp_path / "mmlu").exit_code == 0
    ds = load_folder(tmp_path / "mmlu")
    assert ds.n_prompts == 12032 and sorted(ds.models) == ["Llama-2-7b-hf", "Phi-3-mini-4k-instruct"]
    for z in src.glob("*.zip"):
        n, acc = _tiger_accuracy(z)
        model = z.name[len("model_outputs_"):-len("_5shots.zip")]
        assert n == 12032
        assert np.nanmean(ds.scores[:, ds.models.index(model)]) == pytest.approx(acc)
    # the converted numbers equal the shared (and bundled) table's numbers for these two LLMs
    shared = load_folder(SHARED / "data" / "mmlu-pro")
    for model in ds.models:
        a = pd.Series(ds.scores[:, ds.models.index(model)], index=ds.prompt_ids)
        b = pd.Series(shared.scores[:, shared.models.index(model)], index=shared.prompt_ids)
        pd.testing.assert_series_equal(a.sort_index(), b.sort_index(), check_names=False)
    # same prompts and categories (texts come from the authors' eval outputs, which keep a few typos
    # that the cleaned question set in ../shared fixed, so they are not compared character by character)
    assert dict(zip(ds.prompt_ids, ds.categories, strict=True)) == dict(
        zip(shared.prompt_ids, shared.categories, strict=True))


@needs_shared
def test_download_routerbench_from_pickle_built_from_raw_sample(tmp_path, runner):
    df = pd.read_csv(SHARED / "raw-samples" / "routerbench" / "routerbench_0shot_rows.csv", index_col=0)
    src = tmp_path / "upstream"
    src.mkdir()
    upstream_frame(df).to_pickle(src / "routerbench_0shot.pkl")
    res = invoke(runner, "download", "routerbench", "--from", src, "--dest", tmp_path / "rb")
    assert res.exit_code == 0, res.output
    ds = load_folder(tmp_path / "rb")
    assert (ds.n_prompts, ds.n_models) == (300, 11)
    for m in ds.models:
        assert np.nanmean(ds.scores[:, ds.models.index(m)]) == pytest.approx(df[m].mean())
        assert np.nanmean(ds.query_cost[:, ds.models.index(m)]) == pytest.approx(df[f"{m}|total_cost"].mean())
    # rows shared with the routerbench subset have the same scores and costs
    sub = load_folder(SHARED / "data" / "routerbench-subset")
    common = sorted(set(ds.prompt_ids) & set(sub.prompt_ids))
    assert len(common) == 300
    i = pd.Index(ds.prompt_ids).get_indexer(common)
    k = pd.Index(sub.prompt_ids).get_indexer(common)
    cols = [sub.models.index(m) for m in ds.models]
    np.testing.assert_array_equal(ds.scores[i], sub.scores[np.ix_(k, cols)])
    np.testing.assert_allclose(ds.query_cost[i], sub.query_cost[np.ix_(k, cols)])


def test_mmlu_pro_fixture_with_carrot_pickle(tmp_path):
    dest, summary = convert_to_folder("mmlu-pro", FIXTURES / "tiger", tmp_path / "m")
    ds = load_folder(dest)
    assert summary["models"] == 5 and ds.n_prompts == 60
    assert ds.texts is not None and all(t.count("\n") >= 3 for t in ds.texts)
    carrot = safe_load(FIXTURES / "tiger" / "new_leaderboard_processed_20241205.pickle")["leaderboard_mmlu_pro"]
    for j, hub in enumerate(carrot["models"]):
        name = "openllm-v2:" + hub.split("/", 1)[1].removesuffix("-details").replace("__", "/", 1)
        assert np.nanmean(ds.scores[:, ds.models.index(name)]) == pytest.approx(carrot["correctness"][j].mean())
    n, acc = _tiger_accuracy(FIXTURES / "tiger" / "model_outputs_Llama-2-7b-hf_5shots.zip")
    assert np.nanmean(ds.scores[:, ds.models.index("Llama-2-7b-hf")]) == pytest.approx(acc)


def test_routerbench_fixture_rows(tmp_path):
    dest, summary = convert_to_folder("routerbench", FIXTURES / "routerbench", tmp_path / "rb")
    ds = load_folder(dest)
    assert (ds.n_prompts, ds.n_models) == (60, 11)
    assert sorted(set(ds.categories)) == ["arc-challenge", "mbpp", "winogrande"]
    assert ds.texts[0].startswith("George wants to warm his hands")


def test_embedllm_format(tmp_path):
    src = tmp_path / "embedllm"
    src.mkdir()
    models = ["meta-llama/Llama-2-7b-hf", "mistralai/Mixtral-8x7B-v0.1", "microsoft/phi-2", "some/unsized-model"]
    pd.DataFrame({"model_id": range(4), "model_name": models}).to_csv(src / "model_order.csv", index=False)
    pd.DataFrame({"prompt_id": range(5), "prompt": [f"question {i}?" for i in range(5)]}).to_csv(
        src / "question_order.csv", index=False)
    rng = np.random.default_rng(0)
    rows = [{"model_id": m, "prompt_id": p, "label": int(rng.random() < 0.5), "category": "mmlu"}
            for m in range(4) for p in range(5)]
    pd.DataFrame(rows[:12]).to_csv(src / "train.csv", index=False)
    pd.DataFrame(rows[12:]).to_csv(src / "test.csv", index=False)
    dest, summary = convert_to_folder("embedllm", src, tmp_path / "out")
    ds = load_folder(dest)
    assert ds.n_prompts == 5 and summary["excluded_models"] == ["some/unsized-model"]
    cost = dict(zip(ds.models, ds.model_cost, strict=True))
    assert cost == {"meta-llama/Llama-2-7b-hf": 7.0, "mistralai/Mixtral-8x7B-v0.1": 56.0, "microsoft/phi-2": 2.7}


def test_sprout_format(tmp_path):
    src = tmp_path / "sprout"
    src.mkdir()
    cell = lambda s, i, o: {"score": s, "num_input_tokens": i, "num_output_tokens": o, "response": "x"}  # noqa: E731
    df = pd.DataFrame({"key": ["a", "b", "c"], "dataset": ["gsm8k", "mmlu", "mmlu"],
                       "prompt": ["2+2?", "Capital of France?", "Largest planet?"],
                       "openai-gpt-4o": [cell(1.0, 10, 5), cell(1.0, 12, 4), cell(0.0, 9, 3)],
                       "llama-3-1-8b-instruct": [cell(0.0, 10, 7), cell(1.0, 12, 5), None]})
    df.to_json(src / "train.jsonl", orient="records", lines=True)
    dest, _ = convert_to_folder("sprout", src, tmp_path / "out")
    ds = load_folder(dest)
    assert ds.n_prompts == 3 and ds.n_models == 2
    j = ds.models.index("openai-gpt-4o")
    assert ds.query_cost[0, j] == pytest.approx((10 * 2.5 + 5 * 10.0) / 1e6)
    assert np.isnan(ds.scores[2, ds.models.index("llama-3-1-8b-instruct")])


def test_params_from_name():
    assert params_from_name("Qwen/Qwen2-72B-Instruct") == 72
    assert params_from_name("mistralai/Mixtral-8x22B-v0.1") == 176
    assert params_from_name("google/gemma-2b-it") == 2
    assert np.isnan(params_from_name("gpt2"))


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


def test_safe_unpickler_refuses_code(tmp_path):
    p = tmp_path / "routerbench_0shot.pkl"
    p.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(DownloadError, match="refusing to unpickle posix.system|refusing to unpickle os.system"):
        safe_load(p)
    with pytest.raises(DownloadError, match="refusing"):
        convert_to_folder("routerbench", tmp_path, tmp_path / "out")


def test_safe_unpickler_loads_dataframes_and_arrays(tmp_path):
    df = upstream_frame(pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"], "c": [1, 2]}, index=[3, 7]))
    p = tmp_path / "df.pkl"
    for protocol in (2, 4, 5):
        p.write_bytes(pickle.dumps(df, protocol=protocol))
        pd.testing.assert_frame_equal(safe_load(p), df)
    p2 = tmp_path / "arr.pkl"
    arrays = {"correctness": np.eye(3), "ints": np.arange(6, dtype=">i4").reshape(2, 3, order="F"),
              "text": np.array(["ab", "c"]), "flags": np.array([True, False]), "models": ["a", "b", "c"],
              "scalar": np.float32(1.5), "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3))}
    for protocol in (2, 4, 5):
        p2.write_bytes(pickle.dumps({"t": arrays}, protocol=protocol))
        got = safe_load(p2)["t"]
        for k, v in arrays.items():
            np.testing.assert_array_equal(got[k], v)
            assert np.asarray(got[k]).dtype == np.asarray(v).dtype, k


def test_safe_unpickler_reads_a_pandas_2_routerbench_pickle(tmp_path):
    """A pickle written by pandas 2.2.3 / numpy 1.26 (the upstream file's generation) converts."""
    src = FIXTURES / "routerbench-pickle"
    df = safe_load(src / "routerbench_0shot.pkl")
    rows = pd.read_csv(FIXTURES / "routerbench" / "routerbench_0shot_rows.csv", index_col=0).head(12)
    assert df.shape == rows.shape and list(df.columns) == list(rows.columns)
    assert list(df.index) == list(rows.index) and df["prompt"].tolist() == rows["prompt"].tolist()
    np.testing.assert_array_equal(df["gpt-4-1106-preview"].to_numpy(), rows["gpt-4-1106-preview"].to_numpy())
    dest, summary = convert_to_folder("routerbench", src, tmp_path / "rb")
    assert (summary["prompts"], summary["models"]) == (12, 11)


def test_safe_unpickler_reads_a_pandas_1_5_pickle():
    df = safe_load(FIXTURES / "routerbench-pickle" / "pandas-1.5.3-rows.pkl")
    rows = pd.read_csv(FIXTURES / "routerbench" / "routerbench_0shot_rows.csv", index_col=0).head(6)
    assert list(df.index) == list(rows.index) and df.shape == (6, 7)
    assert df["prompt"].tolist() == rows["prompt"].str.slice(0, 80).tolist()
    col = "claude-v2|total_cost"  # CSV parsing differs in the last bit between pandas versions
    np.testing.assert_allclose(df[col].to_numpy(), rows[col].to_numpy(), rtol=1e-12)


def test_safe_unpickler_refuses_arrow_backed_frames(tmp_path):
    """pandas 3 stores text in Arrow arrays, whose buffers and offsets pyarrow would trust: refused."""
    p = tmp_path / "routerbench_0shot.pkl"
    pd.DataFrame({"prompt": ["a", "b"], "x": [1.0, 0.0]}).to_pickle(p)
    with pytest.raises(DownloadError, match="refusing to unpickle .*Arrow"):
        safe_load(p)


def test_truncated_zip_and_html_page(tmp_path, runner):
    src = tmp_path / "bad"
    src.mkdir()
    data = (FIXTURES / "tiger" / "model_outputs_Llama-2-7b-hf_5shots.zip").read_bytes()
    (src / "model_outputs_Llama-2-7b-hf_5shots.zip").write_bytes(data[: len(data) // 2])
    res = invoke(runner, "download", "mmlu-pro", "--from", src, "--dest", tmp_path / "out")
    assert res.exit_code == 2 and "not a valid zip" in res.output and len(res.output.strip().splitlines()) == 1
    src2 = tmp_path / "html"
    src2.mkdir()
    (src2 / "routerbench_0shot.pkl").write_text("<!DOCTYPE html><html><body>404</body></html>")
    res = invoke(runner, "download", "routerbench", "--from", src2, "--dest", tmp_path / "out2")
    assert res.exit_code == 2 and "error page" in res.output
    assert not (tmp_path / "out").exists() and not (tmp_path / "out2").exists()


def test_failed_conversion_keeps_the_good_copy(tmp_path):
    dest, _ = convert_to_folder("routerbench", FIXTURES / "routerbench", tmp_path / "rb")
    before = (dest / "outcomes.parquet").read_bytes()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "routerbench_0shot.pkl").write_bytes(b"\x80\x04garbage")
    with pytest.raises(DownloadError):
        convert_to_folder("routerbench", bad, dest)
    assert (dest / "outcomes.parquet").read_bytes() == before


def test_unreachable_host_names_url_and_from(tmp_path, runner):
    with pytest.raises(DownloadError) as e:
        fetch("http://127.0.0.1:9/routerbench_0shot.pkl", tmp_path / "x.pkl", "routerbench", timeout=2)
    msg = str(e.value)
    assert "http://127.0.0.1:9/routerbench_0shot.pkl" in msg and "--from DIR" in msg


def test_download_cli_offline_is_one_line(runner, monkeypatch):
    import unirouter_cli.data.download as dl

    monkeypatch.setattr(dl, "_ROUTERBENCH_URL", "http://127.0.0.1:9/routerbench_0shot.pkl")
    res = invoke(runner, "download", "routerbench")
    assert res.exit_code == 2
    errors = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "127.0.0.1:9" in errors[0] and "--from" in errors[0]
    assert "Traceback" not in res.output


def test_cached_download_is_resolved_by_name(runner):
    res = invoke(runner, "download", "routerbench", "--from", FIXTURES / "routerbench")
    assert res.exit_code == 0
    res = invoke(runner, "data", "info", "routerbench")
    assert res.exit_code == 0 and "60 prompts, 11 LLMs" in res.output


def test_carrot_items_map_to_sorted_question_ids_without_the_csv(tmp_path):
    src = tmp_path / "nocsv"
    src.mkdir()
    for f in (FIXTURES / "tiger").iterdir():
        if f.name != "mmlu_pro_item_to_question_id.csv":
            (src / f.name).write_bytes(f.read_bytes())
    a = load_folder(convert_to_folder("mmlu-pro", FIXTURES / "tiger", tmp_path / "with")[0])
    b = load_folder(convert_to_folder("mmlu-pro", src, tmp_path / "without")[0])
    assert a.models == b.models and list(a.prompt_ids) == list(b.prompt_ids)
    np.testing.assert_array_equal(np.nan_to_num(a.scores, nan=-1), np.nan_to_num(b.scores, nan=-1))


def test_download_over_loopback_http(tmp_path, monkeypatch):
    """The real fetch code against a local HTTP server: files found, a 404 skipped, an HTML page refused."""
    import functools
    import http.server
    import threading

    import unirouter_cli.data.download as dl

    served = tmp_path / "served"
    served.mkdir()
    for f in ("model_outputs_Llama-2-7b-hf_5shots.zip", "new_leaderboard_processed_20241205.pickle"):
        (served / f).write_bytes((FIXTURES / "tiger" / f).read_bytes())
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        monkeypatch.setattr(dl, "_mmlu_pro_files", lambda: (
            (base + "model_outputs_Llama-2-7b-hf_5shots.zip", "model_outputs_Llama-2-7b-hf_5shots.zip"),
            (base + "model_outputs_Nope_5shots.zip", "model_outputs_Nope_5shots.zip"),
            (base + "new_leaderboard_processed_20241205.pickle", "new_leaderboard_processed_20241205.pickle")))
        with pytest.raises(DownloadError, match="fewer than the bundled copy"):
            dl.download("mmlu-pro")  # 60 prompts x 4 LLMs would hide the bundled 12,032 x 49 table
        assert not (dl.unirouter_home() / "datasets" / "mmlu-pro").exists()
        folder, summary = dl.download("mmlu-pro", replace_bundled=True)
        assert summary["not_found"] == ["model_outputs_Nope_5shots.zip"]
        ds = load_folder(folder)
        assert "Llama-2-7b-hf" in ds.models and len(ds.models) == 4 and ds.n_prompts == 60
        with pytest.raises(dl.NotFound, match="HTTP 404"):
            fetch(base + "page.html", tmp_path / "x.pkl", "routerbench")
        (served / "page.html").write_text("<html></html>")
        with pytest.raises(DownloadError, match="HTML page"):
            fetch(base + "page.html", tmp_path / "x.pkl", "routerbench")
        assert not (tmp_path / "x.pkl").exists()
    finally:
        server.shutdown()


def test_bundled_dataset_is_not_hidden_by_a_smaller_download_unless_asked(runner):
    """Two zips + CARROT give 60 prompts x 5 LLMs: refused over the bundled 12,032 x 49 table; with
    --replace-bundled it is used, `data list` shows what is really there, `data remove` restores the bundle."""
    from unirouter_cli.data.registry import resolve

    res = invoke(runner, "download", "mmlu-pro", "--from", FIXTURES / "tiger")
    assert res.exit_code == 2 and "--replace-bundled" in res.output
    assert resolve("mmlu-pro")[1].parent.name == "bundled"
    res = invoke(runner, "download", "mmlu-pro", "--from", FIXTURES / "tiger", "--replace-bundled")
    assert res.exit_code == 0, res.output
    assert resolve("mmlu-pro")[1].parent.name == "datasets"
    row = next(ln for ln in invoke(runner, "data", "list").output.splitlines() if "mmlu-pro" in ln)
    assert "60" in row and "12,032" not in row and "hides bundled" in row
    res = invoke(runner, "data", "remove", "mmlu-pro")
    assert res.exit_code == 0 and "bundled copy" in res.output
    assert resolve("mmlu-pro")[1].parent.name == "bundled"
    row = next(ln for ln in invoke(runner, "data", "list").output.splitlines() if "mmlu-pro" in ln)
    assert "12,032" in row and "bundled" in row
    res = invoke(runner, "data", "remove", "mmlu-pro")
    assert res.exit_code == 2 and "bundled" in res.output


def test_data_list_counts_come_from_the_folder_not_the_registry(runner):
    row = lambda: next(ln for ln in invoke(runner, "data", "list").output.splitlines()  # noqa: E731
                       if ln.split("│")[1:2] and ln.split("│")[1].strip() == "routerbench")
    assert "(36,497)" in row() and "downloadable" in row()
    assert invoke(runner, "download", "routerbench", "--from", FIXTURES / "routerbench").exit_code == 0
    assert " 60 " in row() and "36,497" not in row() and "downloaded" in row()


def test_data_list_keeps_numbers_whole_at_80_columns():
    import os
    import subprocess
    import sys

    env = {**os.environ, "COLUMNS": "80"}
    out = subprocess.run([sys.executable, "-m", "unirouter_cli", "data", "list"], capture_output=True, text=True,
                         env=env, check=True).stdout
    assert max(len(ln) for ln in out.splitlines()) <= 80
    assert "12,032" in out and "3,178" in out and "(36,497)" in out


def test_dest_replaces_only_a_dataset_folder(tmp_path, runner):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    res = invoke(runner, "download", "routerbench", "--from", FIXTURES / "routerbench", "--dest", mine)
    assert res.exit_code == 2 and (mine / "notes.txt").read_text() == "keep" and len(list(mine.iterdir())) == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    assert invoke(runner, "download", "routerbench", "--from", FIXTURES / "routerbench", "--dest", empty).exit_code == 0
    assert (empty / "dataset.yaml").exists()
    before = set(p.name for p in tmp_path.iterdir())
    assert invoke(runner, "download", "routerbench", "--from", FIXTURES / "routerbench", "--dest", empty).exit_code == 0
    assert set(p.name for p in tmp_path.iterdir()) == before  # no .old / staging folders left beside it


def test_data_validate_names_each_path_once(tmp_path, runner):
    res = invoke(runner, "data", "validate", tmp_path / "nope")
    first = res.output.splitlines()[0]
    assert res.exit_code == 2 and first.count(str(tmp_path / "nope")) == 1
    (tmp_path / "empty").mkdir()
    res = invoke(runner, "data", "validate", tmp_path / "empty")
    assert all(ln.count(str(tmp_path / "empty")) == 1 for ln in res.output.splitlines())
