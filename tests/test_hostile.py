"""Hostile input: generated attack files run through the real CLI.

Every attack is built in code inside ``tmp_path`` (dataset folders, run directories, configs,
upstream pickles and zips, embedding files), then one command runs through the Typer app. Each
case asserts: exit code 0 or 2 (never a crash), no traceback, exactly one ``error:`` line when
refused (plus the expected reason where there is one), and that nothing outside the run directory
or ``--dest`` changed (a sentinel tree, the bundled data and ``$UNIROUTER_HOME/datasets`` are
snapshotted before and after). A SIGALRM turns a hang into a failure instead of a stuck suite.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import signal
import stat
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from unirouter_cli.cli import app
from unirouter_cli.data.registry import BUNDLED_DIR

from .conftest import FIXTURES, write_dataset

SECONDS = 30  # a single attack taking longer than this counts as a hang


# --------------------------------------------------------------------------------------------
# the harness
# --------------------------------------------------------------------------------------------
class _Hang(BaseException):
    """Raised by SIGALRM; a BaseException so the CLI boundary cannot turn it into an exit code."""


def _snapshot(root: Path, skip: list[Path]) -> dict[str, str]:
    """Type + content (regular files), link target (symlinks) of everything under ``root``."""
    out: dict[str, str] = {}
    if not root.exists():
        return out
    skip_s = [str(s) for s in skip]
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        if any(dirpath == s or dirpath.startswith(s + os.sep) for s in skip_s):
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            if any(p == s or p.startswith(s + os.sep) for s in skip_s):
                continue
            st = os.lstat(p)
            rel = os.path.relpath(p, root)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = "link:" + os.readlink(p)
            elif stat.S_ISREG(st.st_mode):
                with open(p, "rb") as fh:
                    out[rel] = f"file:{st.st_nlink}:" + hashlib.sha256(fh.read()).hexdigest()
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = "dir"
            else:
                out[rel] = f"special:{stat.S_IFMT(st.st_mode)}"
    return out


def _bundled_state() -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in BUNDLED_DIR.rglob("*") if p.is_file()}


@dataclass
class Attack:
    """An attack: ``build(tmp_path)`` lays out files and returns the CLI arguments."""

    name: str
    build: Callable[[Path], list[str]]
    expect: str | None = None  # substring of the error line (None: any one-line error, or success)
    codes: tuple[int, ...] = (2,)
    may_change: list[str] = field(default_factory=lambda: ["run", "out"])  # under tmp_path
    setup: Callable[[pytest.MonkeyPatch, Path], None] | None = None
    home_may_change: bool = False  # $UNIROUTER_HOME/datasets is the target (data remove)


def run_attack(attack: Attack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir(exist_ok=True)
    (sentinel / "precious.txt").write_text("do not touch\n")
    args = attack.build(tmp_path)
    if attack.setup:
        attack.setup(monkeypatch, tmp_path)
    home = Path(os.environ["UNIROUTER_HOME"])
    skip = [tmp_path / m for m in attack.may_change]
    before = (_snapshot(tmp_path, skip), _snapshot(home / "datasets", []), _bundled_state())

    def on_alarm(signum: int, frame: object) -> None:
        raise _Hang(f"{attack.name}: no answer within {SECONDS} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(SECONDS)
    try:
        res = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    out = res.output
    print(f"[{attack.name}] exit {res.exit_code}: {out.strip()}")  # shown with pytest -rP
    assert res.exit_code in attack.codes, f"{attack.name}: exit {res.exit_code}\n{out}"
    assert "Traceback" not in out and "internal error" not in out, f"{attack.name}:\n{out}"
    errors = [ln for ln in out.splitlines() if ln.startswith("error:")]
    if res.exit_code == 2 and args[:2] != ["data", "validate"]:
        assert len(errors) == 1, f"{attack.name}: expected one error line\n{out}"
    if attack.expect is not None:
        assert attack.expect in out, f"{attack.name}: expected {attack.expect!r} in\n{out}"
    after = (_snapshot(tmp_path, skip), _snapshot(home / "datasets", []), _bundled_state())
    assert after[0] == before[0], f"{attack.name}: files outside the run directory / --dest changed"
    assert attack.home_may_change or after[1] == before[1], f"{attack.name}: $UNIROUTER_HOME/datasets changed"
    assert after[2] == before[2], f"{attack.name}: the bundled data changed"
    assert (sentinel / "precious.txt").read_text() == "do not touch\n"
    assert not (sentinel / "pwned").exists(), f"{attack.name}: a payload ran"
    return out


# --------------------------------------------------------------------------------------------
# shared material: a small dataset and a fitted + evaluated run directory
# --------------------------------------------------------------------------------------------
N_PROMPTS, N_MODELS = 160, 4


def _tables() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(0)
    topics = ["algebra", "biology", "history", "poetry", "chemistry", "physics", "law", "music"]
    texts = [f"question {i} about {topics[i % 8]} and {topics[(i * 3) % 8]} with detail {i % 11}"
             for i in range(N_PROMPTS)]
    prompts = pd.DataFrame({"prompt_id": [f"p{i}" for i in range(N_PROMPTS)], "text": texts,
                            "category": [topics[i % 8] for i in range(N_PROMPTS)]})
    skill = np.array([0.3, 0.5, 0.7, 0.9])
    rows = [{"prompt_id": f"p{i}", "model": f"m{j}", "score": float(rng.random() < skill[j])}
            for i in range(N_PROMPTS) for j in range(N_MODELS)]
    models = pd.DataFrame({"model": [f"m{j}" for j in range(N_MODELS)], "cost": [1.0, 2.0, 4.0, 8.0]})
    return prompts, pd.DataFrame(rows), models


def make_dataset(folder: Path, embeddings: bool = False) -> Path:
    p, o, m = _tables()
    write_dataset(folder, p, o, m, {"name": folder.name, "cost_unit": "USD"})
    if embeddings:
        (folder / "embeddings").mkdir()
        z = np.random.default_rng(1).normal(size=(N_PROMPTS, 8)).astype(np.float32)
        np.save(folder / "embeddings" / "precomputed.npy", z / np.linalg.norm(z, axis=1, keepdims=True))
    return folder


FIT = ["--trials", "2", "-r", "zero", "-r", "knn", "--seed", "0"]


_FITTED: list[Path] = []


@pytest.fixture(scope="session")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fitted and evaluated run (2 trials, zero + knn) on a small dataset; copied per attack."""
    base = tmp_path_factory.mktemp("hostile-base")
    ds = make_dataset(base / "ds", embeddings=True)
    run = base / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UNIROUTER_HOME", str(base / "home"))
        runner = CliRunner()
        for args in (["fit", "--dataset", ds, "--encoder", "precomputed", "--run-dir", run, *FIT],
                     ["evaluate", "--run-dir", run], ["report", "--run-dir", run, "--reference", "zero"]):
            res = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
            assert res.exit_code == 0, res.output
    _FITTED[:] = [run]
    return run


def run_copy(tmp_path: Path) -> Path:
    """A private copy of the session's fitted run at ``tmp_path/run``."""
    shutil.copytree(_FITTED[0], tmp_path / "run", symlinks=True)
    (tmp_path / "run" / ".lock").unlink(missing_ok=True)
    return tmp_path / "run"


# --------------------------------------------------------------------------------------------
# generated payloads
# --------------------------------------------------------------------------------------------
ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8))
DEEP_YAML = "a: " + "[" * 5000 + "]" * 5000 + "\n"
PY_TAG = "!!python/object/apply:os.system ['touch {sentinel}/pwned']\n"


class R:
    """Pickles as ``fn(*args)`` (+ BUILD ``state``): a way to write any reduce payload."""

    def __init__(self, fn: object, args: tuple, state: object = None) -> None:
        self.fn, self.args, self.state = fn, args, state

    def __reduce__(self) -> tuple:
        return (self.fn, self.args) if self.state is None else (self.fn, self.args, self.state)


def _np_fn(name: str) -> object:
    import numpy._core.multiarray as ma
    import numpy._core.numeric as nu

    return {"_reconstruct": ma._reconstruct, "_frombuffer": nu._frombuffer}[name]


def _frame_pickle(block_values: np.ndarray, placement: object, items: list[str], n_rows: int) -> bytes:
    from pandas._libs.internals import _unpickle_block
    from pandas.core.internals.managers import BlockManager

    blk = R(_unpickle_block, (block_values, placement, 2))
    mgr = R(BlockManager, ((blk,), [pd.Index(items, dtype=object), pd.RangeIndex(n_rows)]))
    df = R(pd.DataFrame, (), {"_mgr": mgr, "_typ": "dataframe", "_metadata": [], "attrs": {},
                                                 "_flags": {}})
    return pickle.dumps(df, protocol=4)


def _wide_frame_pickle(n_cols: int) -> bytes:
    """A few hundred bytes asking for a frame of ``n_cols`` empty columns."""
    from pandas._libs.internals import _unpickle_block
    from pandas.core.internals.managers import BlockManager

    values = R(_np_fn("_frombuffer"), (bytearray(), np.dtype("f8"), (n_cols, 0), "C"))
    blk = R(_unpickle_block, (values, slice(0, n_cols, 1), 2))
    mgr = R(BlockManager, ((blk,), [pd.RangeIndex(n_cols), pd.RangeIndex(0)]))
    return pickle.dumps(R(pd.DataFrame, (), {"_mgr": mgr}), protocol=5)


def _rb_frame() -> pd.DataFrame:
    """A small RouterBench-format frame with text in object columns (what upstream pickles hold)."""
    df = pd.read_csv(FIXTURES / "routerbench" / "routerbench_0shot_rows.csv", index_col=0).head(20)
    df = df.astype({c: object for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])})
    df.columns = pd.Index(list(df.columns), dtype=object)
    return df


def _carrot(correctness: object, models: object) -> bytes:
    return pickle.dumps({"leaderboard_mmlu_pro": {"correctness": correctness, "models": models}}, protocol=5)


def _op_pickle(body: bytes) -> bytes:
    return b"\x80\x04" + body + b"."


def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _zip_bomb(member: str, size: int = 1 << 30) -> bytes:
    """A ~1 MB zip whose one member inflates to ``size`` bytes of zeros (built without compressing them)."""
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = comp.compress(b"\0" * (16 << 20)) + comp.flush(zlib.Z_FULL_FLUSH)
    data = block * (size // (16 << 20)) + zlib.compressobj(9, zlib.DEFLATED, -15).flush()
    name = member.encode()
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 33, 0, len(data), size, len(name), 0) + name
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 33, 0, len(data), size, len(name),
                          0, 0, 0, 0, 0, 0) + name
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), len(local) + len(data), 0)
    return local + data + central + end


def _tiger_rows() -> list[dict]:
    with zipfile.ZipFile(FIXTURES / "tiger" / "model_outputs_Llama-2-7b-hf_5shots.zip") as z:
        return json.loads(z.read(z.namelist()[0]))


def _tiger_zip(folder: Path, rows: object, raw: bytes | None = None, member: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    z = folder / "model_outputs_Evil-7b_5shots.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(member or "model_outputs_Evil-7b_5shots.json", raw if raw is not None else json.dumps(rows))
    return z


def _mutated_rows(fn: Callable[[list[dict]], object]) -> Callable[[Path], list[str]]:
    def build(t: Path) -> list[str]:
        rows = _tiger_rows()
        out = fn(rows)
        _tiger_zip(t / "src", rows if out is None else out)
        return ["download", "mmlu-pro", "--from", t / "src", "--dest", t / "out"]

    return build


def _pickle_src(name: str, data: bytes | Callable[[Path], bytes]) -> Callable[[Path], list[str]]:
    """routerbench --from a folder holding ``data`` as routerbench_0shot.pkl."""
    def build(t: Path) -> list[str]:
        (t / "src").mkdir()
        (t / "src" / "routerbench_0shot.pkl").write_bytes(data(t) if callable(data) else data)
        return ["download", "routerbench", "--from", t / "src", "--dest", t / "out"]

    return build


def _pickle_dev_zero(t: Path) -> list[str]:
    """routerbench_0shot.pkl is a link to /dev/zero: reading it would never end."""
    (t / "src").mkdir()
    (t / "src" / "routerbench_0shot.pkl").symlink_to("/dev/zero")
    return ["download", "routerbench", "--from", t / "src", "--dest", t / "out"]


def _carrot_src(data: bytes) -> Callable[[Path], list[str]]:
    def build(t: Path) -> list[str]:
        shutil.copytree(FIXTURES / "tiger", t / "src")
        (t / "src" / "new_leaderboard_processed_20241205.pickle").write_bytes(data)
        return ["download", "mmlu-pro", "--from", t / "src", "--dest", t / "out"]

    return build


# --------------------------------------------------------------------------------------------
# dataset folders
# --------------------------------------------------------------------------------------------
def _ds(mutate: Callable[[Path], None], cmd: str = "info", embeddings: bool = False,
        extra: tuple[str, ...] = ()) -> Callable[[Path], list[str]]:
    def build(t: Path) -> list[str]:
        ds = make_dataset(t / "ds", embeddings=embeddings)
        mutate(ds)
        if cmd == "fit":
            return ["fit", "--dataset", ds, "--run-dir", t / "run", *FIT, *extra]
        return ["data", cmd, ds]

    return build


def _write(rel: str, data: bytes | str) -> Callable[[Path], None]:
    def mutate(ds: Path) -> None:
        p = ds / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.unlink(missing_ok=True)
        p.write_bytes(data.encode() if isinstance(data, str) else data)

    return mutate


def _fifo(rel: str) -> Callable[[Path], None]:
    def mutate(ds: Path) -> None:
        p = ds / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.unlink(missing_ok=True)
        os.mkfifo(p)

    return mutate


def _symlink(rel: str, target: str) -> Callable[[Path], None]:
    def mutate(ds: Path) -> None:
        p = ds / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.unlink(missing_ok=True)
        p.symlink_to(target)

    return mutate


def _npy(rel: str, arr: np.ndarray, allow_pickle: bool = False) -> Callable[[Path], None]:
    def mutate(ds: Path) -> None:
        (ds / rel).parent.mkdir(parents=True, exist_ok=True)
        np.save(ds / rel, arr, allow_pickle=allow_pickle)

    return mutate


def _truncate(rel: str, keep: float = 0.5) -> Callable[[Path], None]:
    def mutate(ds: Path) -> None:
        data = (ds / rel).read_bytes()
        (ds / rel).write_bytes(data[: int(len(data) * keep)])

    return mutate


_EMB = "embeddings/precomputed.npy"
_OBJ = np.empty((N_PROMPTS, 8), dtype=object)
_NAN = np.full((N_PROMPTS, 8), np.nan, dtype=np.float32)

DATASET_ATTACKS = [
    Attack("card-alias-bomb-info", _ds(_write("dataset.yaml", ALIAS_BOMB)), "aliases"),
    Attack("card-alias-bomb-validate", _ds(_write("dataset.yaml", ALIAS_BOMB), "validate"), "aliases"),
    Attack("card-deep-nesting", _ds(_write("dataset.yaml", DEEP_YAML)), "nested too deeply"),
    Attack("card-fifo", _ds(_fifo("dataset.yaml")), "FIFO"),
    Attack("card-directory", _ds(lambda d: ((d / "dataset.yaml").unlink(), (d / "dataset.yaml").mkdir()))),
    Attack("card-dev-zero", _ds(_symlink("dataset.yaml", "/dev/zero")), "device"),
    Attack("card-too-large", _ds(_write("dataset.yaml", "name: x\nd: '" + "y" * (5 << 20) + "'\n")), "more than"),
    Attack("card-binary", _ds(_write("dataset.yaml", bytes(range(256)) * 4)), "UTF-8"),
    Attack("card-python-tag", lambda t: _ds(_write("dataset.yaml", PY_TAG.format(sentinel=t / "sentinel")))(t)),
    Attack("card-a-list", _ds(_write("dataset.yaml", "- 1\n- 2\n")), "mapping"),
    Attack("prompts-truncated", _ds(_truncate("prompts.parquet"), "validate")),
    Attack("prompts-fifo", _ds(_fifo("prompts.parquet"), "validate"), "FIFO"),
    Attack("prompts-csv-beside-parquet", _ds(_write("prompts.csv", "prompt_id,text,category\nq1,hi,x\n"), "validate"),
           "keep one of the two"),
    Attack("outcomes-binary-csv", _ds(lambda d: ((d / "outcomes.parquet").unlink(),
                                                 (d / "outcomes.csv").write_bytes(b"\x00\xff" * 500)))),
    Attack("models-dev-zero", _ds(_symlink("models.csv", "/dev/zero")), "device"),
    Attack("embeddings-object-array", _ds(_npy(_EMB, _OBJ, True), "fit", True, ("--encoder", "precomputed")),
           "precomputed.npy"),
    Attack("embeddings-nan", _ds(_npy(_EMB, _NAN), "fit", True, ("--encoder", "precomputed")), "NaN"),
    Attack("embeddings-truncated", _ds(_truncate(_EMB), "fit", True, ("--encoder", "precomputed")),
           "precomputed.npy"),
    Attack("embeddings-text", _ds(_write(_EMB, "0.1 0.2\n0.3 0.4\n"), "fit", True, ("--encoder", "precomputed")),
           "precomputed.npy"),
    Attack("embeddings-wrong-rows", _ds(_npy(_EMB, np.ones((3, 8), np.float32)), "fit", True,
                                        ("--encoder", "precomputed")), "shape"),
    Attack("embeddings-strings", _ds(_npy(_EMB, np.full((N_PROMPTS, 2), "a")), "fit", True,
                                     ("--encoder", "precomputed")), "float array"),
    Attack("embeddings-fifo", _ds(_fifo(_EMB), "fit", True, ("--encoder", "precomputed")), "FIFO"),
    Attack("embeddings-dev-zero", _ds(_symlink(_EMB, "/dev/zero"), "fit", True, ("--encoder", "precomputed")),
           "device"),
    Attack("embeddings-index-alias-bomb", _ds(_write("embeddings/index.yaml", ALIAS_BOMB), "fit", True,
                                              ("--encoder", "precomputed")), "aliases"),
    Attack("embeddings-index-a-list", _ds(_write("embeddings/index.yaml", "- a\n"), "fit", True,
                                          ("--encoder", "precomputed")), "index.yaml"),
]


def _corrupt_cache(t: Path) -> list[str]:
    ds = make_dataset(t / "ds")
    res = CliRunner().invoke(app, ["fit", "--dataset", str(ds), "--run-dir", str(t / "first"), *FIT])
    assert res.exit_code == 0, res.output
    cached = list(Path(os.environ["UNIROUTER_HOME"]).glob("embeddings/*/tfidf.npy"))
    assert len(cached) == 1
    cached[0].write_bytes(cached[0].read_bytes()[:100])
    return ["fit", "--dataset", ds, "--run-dir", t / "run", *FIT]


def _changed_embeddings(t: Path) -> list[str]:
    ds = make_dataset(t / "ds", embeddings=True)
    res = CliRunner().invoke(app, ["fit", "--dataset", str(ds), "--encoder", "precomputed", "--run-dir",
                                   str(t / "run"), *FIT])
    assert res.exit_code == 0, res.output
    z = np.load(ds / _EMB)
    np.save(ds / _EMB, z[::-1].copy())  # same shape and dtype, other numbers
    return ["evaluate", "--run-dir", t / "run"]


DATASET_ATTACKS += [
    Attack("embedding-cache-truncated", _corrupt_cache, "tfidf.npy", may_change=["run", "first"]),
    Attack("embeddings-changed-after-fit", _changed_embeddings, "changed since the run was fitted",
           may_change=["run", "ds"]),
]


# --------------------------------------------------------------------------------------------
# run directories
# --------------------------------------------------------------------------------------------
def _rd(mutate: Callable[[Path, Path], None], cmd: str = "evaluate", fresh_eval: bool = False,
        ) -> Callable[[Path], list[str]]:
    """Copy the fitted run, ``mutate(run, tmp_path)``, run ``cmd`` on it."""
    def build(t: Path) -> list[str]:
        run = run_copy(t)
        if fresh_eval:
            shutil.rmtree(run / "eval")
        mutate(run, t)
        extra = ["--reference", "zero"] if cmd in ("report", "plot") else []
        return [cmd, "--run-dir", run, *extra]

    return build


_T0 = "trials/trial-0000"
_E0 = "eval/unseen/trial-0000.parquet"


def _rw(rel: str, data: bytes | str) -> Callable[[Path, Path], None]:
    return lambda run, t: _write(rel, data)(run)


def _rtrunc(rel: str, keep: float = 0.5) -> Callable[[Path, Path], None]:
    return lambda run, t: _truncate(rel, keep)(run)


def _lock_symlink(run: Path, t: Path) -> None:
    (run / ".lock").symlink_to(t / "sentinel" / "precious.txt")


def _lock_hardlink(run: Path, t: Path) -> None:
    os.link(t / "sentinel" / "precious.txt", run / ".lock")


def _npz_pickled(run: Path, t: Path) -> None:
    with open(run / _T0 / "knn.npz", "wb") as fh:
        np.savez(fh, x=np.array([{"a": 1}], dtype=object))


def _router_nan(run: Path, t: Path) -> None:
    with np.load(run / _T0 / "zero.npz") as z:
        arrays = {k: np.full_like(z[k], np.nan) if z[k].dtype.kind == "f" else z[k] for k in z.files}
    np.savez(run / _T0 / "zero.npz", **arrays)


def _router_wrong_shape(run: Path, t: Path) -> None:
    """A finite state of the wrong shape (centroids with half the embedding's columns): refused by name at
    load, not an internal error inside the evaluation."""
    with np.load(run / _T0 / "zero.npz") as z:
        arrays = {k: z[k][..., : max(1, z[k].shape[-1] // 2)] if z[k].ndim == 2 else z[k] for k in z.files}
    np.savez(run / _T0 / "zero.npz", **arrays)


def _split_missing_key(run: Path, t: Path) -> None:
    with np.load(run / _T0 / "split.npz") as z:
        arrays = {k: z[k] for k in z.files if k != "test"}
    np.savez(run / _T0 / "split.npz", **arrays)


def _eval_wrong_columns(run: Path, t: Path) -> None:
    pd.DataFrame({"x": [1, 2], "part": ["metrics", "curve"]}).to_parquet(run / _E0)


def _eval_other_trial(run: Path, t: Path) -> None:
    shutil.copy(run / _E0, run / "eval/unseen/trial-0001.parquet")


def _eval_drop_router(run: Path, t: Path) -> None:
    df = pd.read_parquet(run / _E0)
    df[~((df["part"] == "metrics") & (df["router"] == "knn"))].to_parquet(run / _E0)


def _eval_string_area(run: Path, t: Path) -> None:
    df = pd.read_parquet(run / _E0)
    df["area"] = "high"
    df.to_parquet(run / _E0)


def _metrics_string_area(run: Path, t: Path) -> None:
    df = pd.read_csv(run / "metrics.csv")
    df["area"] = "high"
    df.to_csv(run / "metrics.csv", index=False)


def _metrics_cell(col: str, value: object) -> Callable[[Path, Path], None]:
    """metrics.csv with the first row's ``col`` set to ``value``."""
    def mutate(run: Path, t: Path) -> None:
        df = pd.read_csv(run / "metrics.csv")
        df[col] = df[col].astype(object)
        df.loc[0, col] = value
        df.to_csv(run / "metrics.csv", index=False)

    return mutate


def _metrics_wrong_columns(run: Path, t: Path) -> None:
    pd.DataFrame({"a": [1]}).to_csv(run / "metrics.csv", index=False)


def _rfifo(rel: str) -> Callable[[Path, Path], None]:
    return lambda run, t: _fifo(rel)(run)


def _cfg(edit: Callable[[dict], None]) -> Callable[[Path, Path], None]:
    import yaml

    def mutate(run: Path, t: Path) -> None:
        d = yaml.safe_load((run / "config.yaml").read_text())
        edit(d)
        (run / "config.yaml").write_text(yaml.safe_dump(d))

    return mutate


RUNDIR_ATTACKS = [
    Attack("lock-symlink-to-user-file", _rd(_lock_symlink), "symbolic link"),
    Attack("lock-hardlink-to-user-file", _rd(_lock_hardlink), "hard links"),
    Attack("lock-fifo", _rd(_rfifo(".lock")), "not a regular file"),
    Attack("config-alias-bomb", _rd(_rw("config.yaml", ALIAS_BOMB)), "aliases"),
    Attack("config-empty", _rd(_rw("config.yaml", "")), "config.yaml"),
    Attack("config-binary", _rd(_rw("config.yaml", b"\xff\xfe\x00" * 100)), "config.yaml"),
    Attack("config-python-tag", lambda t: _rd(_rw("config.yaml", PY_TAG.format(sentinel=t / "sentinel")))(t),
           "config.yaml"),
    Attack("config-split-not-a-mapping", _rd(_cfg(lambda d: d.update(split=5))), "config.yaml"),
    Attack("config-routers-not-a-list", _rd(_cfg(lambda d: d.update(routers=5))), "config.yaml"),
    Attack("config-trials-a-list", _rd(_cfg(lambda d: d.update(trials=[1, 2]))), "config.yaml"),
    Attack("config-dev-zero", _rd(lambda run, t: _symlink("config.yaml", "/dev/zero")(run)), "device"),
    Attack("config-alias-bomb-plot", _rd(_rw("config.yaml", ALIAS_BOMB), "plot"), "aliases"),
    Attack("router-npz-truncated", _rd(_rtrunc(f"{_T0}/knn.npz"), fresh_eval=True), "knn.npz"),
    Attack("router-npz-pickled-object", _rd(_npz_pickled, fresh_eval=True), "knn.npz"),
    Attack("router-npz-nan", _rd(_router_nan, fresh_eval=True), "NaN or infinite"),
    Attack("router-npz-wrong-shape", _rd(_router_wrong_shape, fresh_eval=True), "does not fit zero"),
    Attack("router-npz-directory", _rd(lambda run, t: ((run / _T0 / "knn.npz").unlink(),
                                                       (run / _T0 / "knn.npz").mkdir()), fresh_eval=True), "knn.npz"),
    Attack("router-npz-fifo", _rd(_rfifo(f"{_T0}/knn.npz"), fresh_eval=True), "FIFO"),
    Attack("router-json-garbage", _rd(_rw(f"{_T0}/knn.json", "{not json"), fresh_eval=True), "knn.json"),
    Attack("router-json-a-list", _rd(_rw(f"{_T0}/knn.json", "[]"), fresh_eval=True), "knn.json"),
    Attack("router-json-empty-object", _rd(_rw(f"{_T0}/knn.json", "{}"), fresh_eval=True), "knn"),
    Attack("split-npz-truncated", _rd(_rtrunc(f"{_T0}/split.npz"), fresh_eval=True), "split.npz"),
    Attack("split-npz-missing-array", _rd(_split_missing_key, fresh_eval=True), "split.npz"),
    Attack("fit-json-a-list", _rd(_rw(f"{_T0}/fit.json", "[]"), fresh_eval=True), "not fitted"),
    Attack("fit-json-garbage", _rd(_rw(f"{_T0}/fit.json", "\x00\x01"), fresh_eval=True), "not fitted"),
    Attack("eval-parquet-corrupt", _rd(_rw(_E0, b"PAR1" + b"\x00" * 64)), "trial-0000.parquet"),
    Attack("eval-parquet-empty", _rd(_rw(_E0, b"")), "trial-0000.parquet"),
    Attack("eval-parquet-wrong-columns", _rd(_eval_wrong_columns), "missing column"),
    Attack("eval-parquet-other-trial", _rd(_eval_other_trial), "another task"),
    Attack("eval-parquet-router-dropped", _rd(_eval_drop_router), "trial-0000.parquet"),
    Attack("eval-parquet-string-metric", _rd(_eval_string_area), "not numeric"),
    Attack("metrics-empty-report", _rd(_rw("metrics.csv", ""), "report"), "metrics.csv"),
    Attack("metrics-empty-plot", _rd(_rw("metrics.csv", ""), "plot"), "metrics.csv"),
    Attack("metrics-binary-report", _rd(_rw("metrics.csv", bytes(range(256)) * 8), "report"), "metrics.csv"),
    Attack("metrics-wrong-columns-plot", _rd(_metrics_wrong_columns, "plot"), "missing column"),
    Attack("metrics-string-area-report", _rd(_metrics_string_area, "report"), "not numeric"),
    Attack("metrics-fifo-report", _rd(_rfifo("metrics.csv"), "report"), "FIFO"),
    Attack("metrics-inf-area-report", _rd(_metrics_cell("area", "inf"), "report"), "line 2: area = inf"),
    Attack("metrics-bool-area-report", _rd(_metrics_cell("area", True), "report"), "area"),
    Attack("metrics-negative-trial-plot", _rd(_metrics_cell("trial", -3), "plot"), "line 2: trial = -3"),
    Attack("metrics-escape-router-report", _rd(_metrics_cell("router", "kn\x1b[2Jn"), "report"), "printable text"),
    Attack("metrics-unknown-kind-report", _rd(_metrics_cell("kind", "magic"), "report"), "one of dynamic"),
    Attack("metrics-reached-text-report", _rd(_metrics_cell("qnc_reached", 2), "report"), "qnc_reached"),
    Attack("curves-corrupt-plot", _rd(_rw("curves.parquet", b"PAR1garbagePAR1"), "plot"), "curves.parquet"),
    Attack("curves-empty-plot", _rd(_rw("curves.parquet", b""), "plot"), "curves.parquet"),
    Attack("singles-wrong-columns-plot", _rd(lambda run, t: pd.DataFrame({"a": [1]}).to_parquet(
        run / "singles.parquet"), "plot"), "missing column"),
    Attack("trials-dir-symlink", _rd(lambda run, t: (shutil.rmtree(run / "trials"),
                                                      (run / "trials").symlink_to(t / "sentinel"))), "symbolic link"),
    Attack("plots-dir-symlink", _rd(lambda run, t: (run / "plots").symlink_to(t / "sentinel"), "plot"),
           "symbolic link"),
    Attack("router-npz-inflates-past-cap", _rd(lambda run, t: None, fresh_eval=True), "inflates",
           setup=lambda mp, t: mp.setattr("unirouter_cli.io.MAX_NPZ_MEMBER", 64)),
    Attack("config-trials-infinite", _rd(_cfg(lambda d: d.update(trials=float("inf")))), "config.yaml"),
    Attack("hyperparams-corrupt-report", _rd(_rw("hyperparams.csv", b"\x00\xff\x00"), "report"), "hyperparams.csv"),
]


# --------------------------------------------------------------------------------------------
# configs and options
# --------------------------------------------------------------------------------------------
def _config_file(text: str | None = None, fifo: bool = False, cmd: str = "fit") -> Callable[[Path], list[str]]:
    def build(t: Path) -> list[str]:
        f = t / "cfg.yaml"
        if fifo:
            os.mkfifo(f)
        else:
            f.write_text(text.format(sentinel=t / "sentinel") if text else "")
        if cmd == "reproduce":
            return ["reproduce", "--config", f, "--out", t / "run"]
        return ["fit", "--config", f, "--run-dir", t / "run"]

    return build


CONFIG_ATTACKS = [
    Attack("config-file-alias-bomb", _config_file(ALIAS_BOMB), "aliases"),
    Attack("config-file-fifo", _config_file(fifo=True), "FIFO"),
    Attack("config-file-a-list", _config_file("- 1\n"), "mapping"),
    Attack("config-file-python-tag", _config_file(PY_TAG), "not valid YAML"),
    Attack("config-file-deep", _config_file(DEEP_YAML), "nested too deeply"),
    Attack("preset-alias-bomb", _config_file(ALIAS_BOMB, cmd="reproduce"), "aliases"),
    Attack("param-alias-bomb", lambda t: ["fit", "--dataset", make_dataset(t / "ds"), "--run-dir", t / "run",
                                          "-p", "knn.k=[&a [1], *a, *a]", *FIT], "aliases"),
    Attack("param-bad-yaml", lambda t: ["fit", "--dataset", make_dataset(t / "ds"), "--run-dir", t / "run",
                                        "-p", "knn.k=[", *FIT], "--param"),
]
OPTION_ATTACKS = [  # typed router parameters and bounded options
    Attack("param-K-float", lambda t: ["fit", "--dataset", make_dataset(t / "ds"), "--run-dir", t / "run",
                                       "-r", "uniroute-kmeans", "-p", "uniroute-kmeans.K=1.5", "--trials", "1"]),
    Attack("param-k-negative", lambda t: ["fit", "--dataset", make_dataset(t / "ds"), "--run-dir", t / "run",
                                          "-r", "knn", "-p", "knn.k=-5", "--trials", "1"]),
    Attack("seed-negative", lambda t: ["fit", "--dataset", make_dataset(t / "ds"), "--run-dir", t / "run",
                                       "--seed", "-1", *FIT[:-2]]),
    Attack("config-file-trials-infinite", _config_file("dataset: mmlu-pro\ntrials: .inf\n"), "trials"),
    Attack("val-sizes-garbage", lambda t: ["fit", "--dataset", make_dataset(t / "ds"), "--run-dir", t / "run",
                                           "--val-sizes", "0,abc", *FIT]),
]


# --------------------------------------------------------------------------------------------
# downloads: pickles, zips, --dest
# --------------------------------------------------------------------------------------------
def _evil(t: Path) -> bytes:
    return pickle.dumps(R(os.system, (f"touch {t / 'sentinel' / 'pwned'}",)))


def _evil_eval(t: Path) -> bytes:
    return pickle.dumps(R(eval, (f"__import__('os').system('touch {t / 'sentinel' / 'pwned'}')",)))


def _deep_list_pickle() -> bytes:
    n = 100_000
    return _op_pickle(b"]" * n + b"a" * (n - 1))


def _self_list_pickle() -> bytes:
    x: list = []
    x.append(x)
    return pickle.dumps(x, protocol=4)


def _rb_pickle(edit: Callable[[pd.DataFrame], pd.DataFrame | None]) -> bytes:
    df = _rb_frame()
    out = edit(df)
    return pickle.dumps(df if out is None else out, protocol=5)


def _set(col: str, row: int, value: object) -> Callable[[pd.DataFrame], None]:
    def edit(df: pd.DataFrame) -> None:
        df[col] = df[col].astype(object)
        df.iloc[row, df.columns.get_loc(col)] = value

    return edit


_F8 = np.dtype("f8")
PICKLE_ATTACKS = [
    Attack("pickle-os-system", _pickle_src("x", _evil), "refusing to unpickle"),
    Attack("pickle-eval", _pickle_src("x", _evil_eval), "refusing to unpickle"),
    Attack("pickle-list-range-huge", _pickle_src("x", _op_pickle(
        _global("builtins", "list") + b"(" + _global("builtins", "range") + b"(L1000000000000\ntRtR")),
        "refusing to unpickle builtins."),
    Attack("pickle-bytearray-huge", _pickle_src("x", _op_pickle(
        _global("builtins", "bytearray") + b"(L1000000000000\ntR")), "bytearray"),
    Attack("pickle-memo-index-huge", _pickle_src("x", _op_pickle(b"N" + b"r" + struct.pack("<I", 2**31 - 1))),
           "memo index"),
    Attack("pickle-ndarray-forged-shape", _pickle_src("x", pickle.dumps(R(
        _np_fn("_reconstruct"), (np.ndarray, (0,), b"b"), (1, (10**5, 10**5), _F8, False, b"\0" * 8)))),
        "elements"),
    Attack("pickle-ndarray-short-data", _pickle_src("x", pickle.dumps(R(
        _np_fn("_reconstruct"), (np.ndarray, (0,), b"b"), (1, (1000,), _F8, False, b"\0" * 8)))), "needs 8,000 bytes"),
    Attack("pickle-frombuffer-forged-shape", _pickle_src("x", pickle.dumps(R(
        _np_fn("_frombuffer"), (bytearray(16), _F8, (10**6,), "C")), protocol=5)), "bytes"),
    Attack("pickle-frombuffer-object-dtype", _pickle_src("x", pickle.dumps(R(
        _np_fn("_frombuffer"), (bytearray(16), np.dtype("O"), (2,), "C")), protocol=5)), "object arrays"),
    Attack("pickle-structured-dtype", _pickle_src("x", pickle.dumps(R(
        _np_fn("_frombuffer"), (bytearray(16), np.dtype([("a", "f8")]), (2,), "C")), protocol=5)), "dtype"),
    Attack("pickle-frame-placement-out-of-range", _pickle_src("x", _frame_pickle(
        np.ones((1, 2)), slice(5, 6, 1), ["a"], 2)), "placement"),
    Attack("pickle-frame-block-rows-mismatch", _pickle_src("x", _frame_pickle(
        np.ones((1, 50)), slice(0, 1, 1), ["a"], 2)), "rows"),
    Attack("pickle-frame-placement-array-negative", _pickle_src("x", _frame_pickle(
        np.ones((1, 2)), np.array([-3]), ["a"], 2)), "placement"),
    Attack("pickle-arrow-backed-frame", _pickle_src("x", lambda t: pickle.dumps(
        pd.DataFrame({"prompt": ["a", "b"], "x": [1.0, 0.0]}))), "Arrow"),
    Attack("pickle-pyarrow-restore-array", _pickle_src("x", lambda t: pickle.dumps(
        R(__import__("pyarrow").lib._restore_array, (("x",),)))), "Arrow"),
    Attack("pickle-deep-nesting", _pickle_src("x", _deep_list_pickle()), "nested"),
    Attack("pickle-self-reference", _pickle_src("x", _self_list_pickle()), "contains itself"),
    Attack("pickle-truncated", _pickle_src("x", lambda t: _rb_pickle(lambda d: None)[:5000]), "cannot unpickle"),
    Attack("pickle-html-page", _pickle_src("x", b"<!DOCTYPE html><html>Rate limited</html>"), "not a pickle"),
    Attack("pickle-empty", _pickle_src("x", b""), "not a pickle"),
    Attack("pickle-persistent-id", _pickle_src("x", _op_pickle(b"N" + b"Q")), "not allowed"),
    Attack("pickle-not-a-frame", _pickle_src("x", pickle.dumps([1, 2, 3])), "expected a pandas DataFrame"),
    Attack("rb-string-correctness", _pickle_src("x", lambda t: _rb_pickle(_set("claude-v2", 3, "yes"))), "row 3"),
    Attack("rb-score-out-of-range", _pickle_src("x", lambda t: _rb_pickle(_set("claude-v2", 4, 5.0))), "row 4"),
    Attack("rb-prompt-not-text", _pickle_src("x", lambda t: _rb_pickle(_set("prompt", 2, 12345))), "row 2"),
    Attack("rb-cost-not-a-number", _pickle_src("x", lambda t: _rb_pickle(_set("claude-v2|total_cost", 1, "$$"))),
           "row 1"),
    Attack("rb-duplicate-index", _pickle_src("x", lambda t: _rb_pickle(
        lambda d: d.set_axis([0] * len(d), axis=0))), "appears twice"),
    Attack("rb-no-model-columns", _pickle_src("x", lambda t: _rb_pickle(lambda d: d[["prompt", "eval_name"]])),
           "2+ models"),
    Attack("pickle-state-on-allowed-function", _pickle_src("x", _op_pickle(
        _global("builtins", "slice") + b"}(X\x01\x00\x00\x00aK\x01ub")), "state for a function"),
    Attack("pickle-state-on-class-name", _pickle_src("x", _op_pickle(
        _global("numpy", "ndarray") + b"}(X\x01\x00\x00\x00aK\x01ub")), "state for the class name"),
    Attack("pickle-hash-flood", _pickle_src("x", pickle.dumps({k * (2**61 - 1): 0 for k in range(1, 1500)})),
           "hash-flooding"),
    Attack("pickle-million-empty-columns", _pickle_src("x", lambda t: _wide_frame_pickle(10**6)), "columns"),
    Attack("pickle-dev-zero", _pickle_dev_zero, "device"),
    Attack("carrot-string-correctness", _carrot_src(_carrot(np.array([["1"] * 60] * 3), ["a/b", "c/d", "e/f"])),
           "numeric array"),
    Attack("carrot-correctness-out-of-range", _carrot_src(_carrot(np.full((3, 60), 2.0), ["a/b", "c/d", "e/f"])),
           "expected a number in [0, 1]"),
    Attack("carrot-wrong-shape", _carrot_src(_carrot(np.ones((3, 7)), ["a/b", "c/d", "e/f"])), "shape"),
    Attack("carrot-models-not-names", _carrot_src(_carrot(np.ones((3, 60)), [1, 2, 3])), "model names"),
    Attack("carrot-not-a-dict", _carrot_src(pickle.dumps([1, 2])), "leaderboard_mmlu_pro"),
]


def _zip_src(fn: Callable[[Path], None]) -> Callable[[Path], list[str]]:
    def build(t: Path) -> list[str]:
        (t / "src").mkdir()
        fn(t / "src")
        return ["download", "mmlu-pro", "--from", t / "src", "--dest", t / "out"]

    return build


def _drop(key: str, i: int = 7) -> Callable[[list[dict]], None]:
    def edit(rows: list[dict]) -> None:
        del rows[i][key]

    return edit


def _put(key: str, value: object, i: int = 5) -> Callable[[list[dict]], None]:
    def edit(rows: list[dict]) -> None:
        rows[i][key] = value

    return edit


ZIP_ATTACKS = [
    Attack("zip-bomb-1GiB", _zip_src(lambda s: (s / "model_outputs_Bomb_5shots.zip").write_bytes(
        _zip_bomb("model_outputs_Bomb_5shots.json"))), "limit"),
    Attack("zip-fifo", _zip_src(lambda s: os.mkfifo(s / "model_outputs_F_5shots.zip")), "FIFO"),
    Attack("zip-member-name-terminal-escape", _zip_src(lambda s: _tiger_zip(s, None, b"[1]",
                                                                            member="\x1b[2J\x1b[31mok.json")),
           "\\x1b[2J"),
    Attack("zip-truncated", _zip_src(lambda s: (s / "model_outputs_T_5shots.zip").write_bytes(
        (FIXTURES / "tiger" / "model_outputs_Llama-2-7b-hf_5shots.zip").read_bytes()[:4000])), "not a valid zip"),
    Attack("zip-garbage", _zip_src(lambda s: (s / "model_outputs_G_5shots.zip").write_bytes(b"PK" + os.urandom(300))),
           "not a valid zip"),
    Attack("zip-no-json-member", _zip_src(lambda s: _tiger_zip(s, None, b"hello", member="readme.txt")), "no .json"),
    Attack("zip-path-traversal-member", _zip_src(lambda s: _tiger_zip(s, None, b"[1]", member="../../../evil.json")),
           "record 0"),
    Attack("zip-json-malformed", _zip_src(lambda s: _tiger_zip(s, None, b"[{\"question_id\": ")), "malformed"),
    Attack("zip-json-deep", _zip_src(lambda s: _tiger_zip(s, None, b"[" * 200000 + b"]" * 200000)), "malformed"),
    Attack("zip-json-not-a-list", _zip_src(lambda s: _tiger_zip(s, {"a": 1})), "JSON list"),
    Attack("zip-row-missing-pred", _mutated_rows(_drop("pred")), "record 7: lacks key(s) pred"),
    Attack("zip-row-17-options", _mutated_rows(_put("options", [f"o{i}" for i in range(17)])), "record 5"),
    Attack("zip-row-options-a-dict", _mutated_rows(_put("options", {"a": 1})), "record 5"),
    Attack("zip-row-question-id-text", _mutated_rows(_put("question_id", "abc")), "record 5"),
    Attack("zip-row-duplicate-question-id", _mutated_rows(
        lambda rows: rows[9].__setitem__("question_id", rows[3]["question_id"])), "appears twice"),
    Attack("zip-row-not-an-object", _mutated_rows(lambda rows: rows.__setitem__(4, 42)), "record 4"),
    Attack("zip-row-pred-a-list", _mutated_rows(_put("pred", ["A"])), "record 5"),
    Attack("zip-row-question-null", _mutated_rows(_put("question", None)), "record 5"),
]


def _dest(setup: Callable[[Path], Path | str]) -> Callable[[Path], list[str]]:
    def build(t: Path) -> list[str]:
        dest = setup(t)
        return ["download", "routerbench", "--from", FIXTURES / "routerbench", "--dest", dest]

    return build


def _nonempty(t: Path) -> Path:
    (t / "mine").mkdir()
    (t / "mine" / "thesis.tex").write_text("years of work")
    return t / "mine"


def _dest_file(t: Path) -> Path:
    (t / "notes.txt").write_text("keep")
    return t / "notes.txt"


def _dest_link(t: Path) -> Path:
    (t / "real").mkdir()
    (t / "link").symlink_to(t / "real")
    return t / "link"


def _dest_holds_from(t: Path) -> list[str]:
    shutil.copytree(FIXTURES / "routerbench", t / "up" / "raw")
    return ["download", "routerbench", "--from", t / "up" / "raw", "--dest", t / "up"]


def _dest_dataset(t: Path) -> Path:
    make_dataset(t / "out")
    return t / "out"


def _chdir(mp: pytest.MonkeyPatch, t: Path) -> None:
    mp.chdir(t)


def _remove_link(t: Path) -> list[str]:
    home = Path(os.environ["UNIROUTER_HOME"])
    (home / "datasets").mkdir(parents=True)
    target = make_dataset(t / "sentinel" / "ds")
    (home / "datasets" / "routerbench").symlink_to(target)
    return ["data", "remove", "routerbench"]


def _home_dataset(mutate: Callable[[Path], None], args: list[str]) -> Callable[[Path], list[str]]:
    """Lay out $UNIROUTER_HOME/datasets/routerbench with ``mutate`` and run ``args``."""
    def build(t: Path) -> list[str]:
        folder = Path(os.environ["UNIROUTER_HOME"]) / "datasets" / "routerbench"
        folder.mkdir(parents=True)
        mutate(folder)
        return args

    return build


def _cached_fifo(folder: Path) -> None:
    make_dataset(folder.parent / "tmp")
    for f in (folder.parent / "tmp").iterdir():
        f.rename(folder / f.name)
    (folder.parent / "tmp").rmdir()
    (folder / "prompts.parquet").unlink()
    os.mkfifo(folder / "prompts.parquet")


DOWNLOAD_ATTACKS = [
    Attack("dest-dot", _dest(lambda t: "."), "current folder", setup=_chdir),
    Attack("dest-non-dataset-folder", _dest(_nonempty), "neither empty nor a unirouter dataset folder"),
    Attack("dest-a-file", _dest(_dest_file), "not a folder"),
    Attack("dest-a-symlink", _dest(_dest_link), "symbolic link"),
    Attack("dest-holds-from", _dest_holds_from, "--from"),
    Attack("dest-root", _dest(lambda t: "/"), "current folder", setup=_chdir),
    Attack("dest-bundled-data", _dest(lambda t: BUNDLED_DIR / "mmlu-pro"), "bundled"),
    Attack("dest-dataset-replaced", _dest(_dest_dataset), "ok:", codes=(0,)),
    Attack("download-would-hide-bundled", lambda t: ["download", "mmlu-pro", "--from", FIXTURES / "tiger"],
           "--replace-bundled"),
    Attack("download-over-non-dataset-cache", _home_dataset(lambda f: (f / "notes.txt").write_text("mine"), [
        "download", "routerbench", "--from", FIXTURES / "routerbench"]), "download folder"),
    Attack("data-list-with-fifo-in-cache", _home_dataset(_cached_fifo, ["data", "list"]), "?", codes=(0,)),
    Attack("remove-path-traversal", lambda t: ["data", "remove", "../../sentinel"], "unknown dataset"),
    Attack("remove-bundled", lambda t: ["data", "remove", "mmlu-pro"], "bundled"),
    Attack("remove-symlinked-copy", _remove_link, "removed", codes=(0,), home_may_change=True),
]

ALL = (DATASET_ATTACKS + RUNDIR_ATTACKS + CONFIG_ATTACKS + OPTION_ATTACKS + PICKLE_ATTACKS + ZIP_ATTACKS
       + DOWNLOAD_ATTACKS)


@pytest.mark.parametrize("attack", [pytest.param(a, id=a.name) for a in ALL])
def test_attack(attack: Attack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fitted: Path) -> None:
    run_attack(attack, tmp_path, monkeypatch)
    if attack.name == "remove-symlinked-copy":  # the link went; what it pointed to stayed (snapshot)
        assert not (Path(os.environ["UNIROUTER_HOME"]) / "datasets" / "routerbench").is_symlink()


def test_there_are_at_least_60_attacks() -> None:
    assert len(ALL) >= 60
    assert len({a.name for a in ALL}) == len(ALL)


def test_lock_symlink_target_is_untouched(tmp_path: Path, fitted: Path) -> None:
    """The run's lock file, planted as a link to a user's file: refused, the file keeps its bytes."""
    run = run_copy(tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_text("important\n")
    (run / ".lock").symlink_to(victim)
    res = CliRunner().invoke(app, ["evaluate", "--run-dir", str(run)])
    assert res.exit_code == 2 and "symbolic link" in res.output
    assert victim.read_text() == "important\n" and (run / ".lock").is_symlink()


def test_internal_error_is_one_line_with_a_saved_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug (an unexpected exception) is one line naming a traceback file, exit 1; UNIROUTER_DEBUG re-raises."""
    import unirouter_cli.data.registry as data

    def boom(spec: str) -> None:
        raise ZeroDivisionError("simulated bug")

    monkeypatch.setattr(data, "load_dataset", boom)
    res = CliRunner().invoke(app, ["data", "info", "mmlu-pro"])
    assert res.exit_code == 1
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: internal error (this is a bug): ZeroDivisionError")
    saved = Path(lines[0].rsplit("traceback written to ", 1)[1].split(" ")[0])
    assert saved.is_file() and "ZeroDivisionError: simulated bug" in saved.read_text()
    assert "Traceback" not in res.output
    monkeypatch.setenv("UNIROUTER_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        CliRunner().invoke(app, ["data", "info", "mmlu-pro"], catch_exceptions=False)


def test_zip_member_is_streamed_with_a_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A member over the cap is refused from its header without inflating a byte; one within it is read
    in 1 MiB blocks (never ``read()`` of the whole member); a header that under-states the size is
    caught by the size/CRC check instead of being trusted."""
    import unirouter_cli.data.sources.common as dl

    z = tmp_path / "big.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.json", b" " * (3 << 20))
    reads: list[int] = []
    real_open = zipfile.ZipFile.open

    def spy(self: zipfile.ZipFile, *a: object, **k: object) -> object:
        fh = real_open(self, *a, **k)
        orig = fh.read
        fh.read = lambda n=-1: (reads.append(n), orig(n))[1]
        return fh

    monkeypatch.setattr(zipfile.ZipFile, "open", spy)
    with pytest.raises(dl.DownloadError, match="more than the 1,048,576-byte limit"):
        dl.read_zip_member(z, ".json", limit=1 << 20)
    assert reads == []
    name, data = dl.read_zip_member(z, ".json", limit=4 << 20)
    assert len(data) == 3 << 20 and reads and all(n == 1 << 20 for n in reads)
    real_infolist = zipfile.ZipFile.infolist

    def lying(self: zipfile.ZipFile) -> list:
        infos = real_infolist(self)
        for i in infos:
            i.file_size = 100
        return infos

    monkeypatch.setattr(zipfile.ZipFile, "infolist", lying)
    with pytest.raises(dl.DownloadError, match="not a valid zip"):
        dl.read_zip_member(z, ".json", limit=1 << 20)


def test_attack_harness_notices_damage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The snapshot really sees a changed file outside the allowed folders (the harness is not blind)."""
    def build(t: Path) -> list[str]:
        (t / "sentinel").mkdir(exist_ok=True)
        (t / "sentinel" / "other.txt").write_text("a")
        return ["data", "list"]

    def tamper(mp: pytest.MonkeyPatch, t: Path) -> None:
        import unirouter_cli.data.registry as dc  # data list imports availability from here when it runs

        real = dc.availability
        mp.setattr(dc, "availability", lambda n: ((t / "sentinel" / "other.txt").write_text("b"), real(n))[1])

    with pytest.raises(AssertionError, match="changed"):
        run_attack(Attack("tamper", build, codes=(0,), setup=tamper), tmp_path, monkeypatch)


def test_yaml_loader_is_used_for_every_user_yaml() -> None:
    """No module parses YAML from a file with yaml.safe_load/yaml.load except through io.load_yaml."""
    src = Path(__file__).resolve().parents[1] / "unirouter_cli"
    offenders = [str(p.relative_to(src)) for p in src.rglob("*.py")
                 if p.name != "io.py" and ("yaml.safe_load(" in p.read_text() or "yaml.load(" in p.read_text())]
    assert offenders == []


def test_pickle_memo_scan_keeps_real_pickles(tmp_path: Path) -> None:
    """The opcode scan accepts what pickle itself writes (memo indices in sequence, every protocol)."""
    from unirouter_cli.data.safepickle import safe_load

    obj = {"a": [np.arange(5.0), np.arange(5.0)], "b": ("x", "x", 3), "c": _rb_frame()}
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        p = tmp_path / f"p{protocol}.pkl"
        p.write_bytes(pickle.dumps(obj, protocol=protocol))
        got = safe_load(p)
        pd.testing.assert_frame_equal(got["c"], obj["c"])
        assert got["b"] == obj["b"]



def test_atomic_write_replaces_a_planted_link_instead_of_following_it(tmp_path: Path) -> None:
    """A run-directory file that someone replaced by a link to a user's file: the write replaces the
    link, the user's file keeps its bytes; the temporary file lives in a private (0700) folder."""
    from unirouter_cli.io import atomic_path, write_text

    victim = tmp_path / "victim.txt"
    victim.write_text("important\n")
    target = tmp_path / "run" / "metrics.csv"
    target.parent.mkdir()
    target.symlink_to(victim)
    write_text(target, "trial,area\n")
    assert victim.read_text() == "important\n"
    assert not target.is_symlink() and target.read_text() == "trial,area\n"
    with atomic_path(tmp_path / "run" / "x.csv") as tmp:
        assert stat.S_IMODE(tmp.parent.stat().st_mode) == 0o700 and tmp.parent.parent == tmp_path / "run"
        tmp.write_text("x")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["metrics.csv", "x.csv"]  # no leftovers


def test_parquet_that_would_inflate_past_the_caps_is_refused_from_its_footer(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A 60M-row outcomes.parquet that compresses to a few hundred kB is refused from its metadata, in one line,
    before pandas inflates it; the byte cap is checked the same way (lowered here to a size a test can write)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    import unirouter_cli.data.tables as data

    ds = make_dataset(tmp_path / "ds")
    n = 60_000_000
    pq.write_table(pa.table({"prompt_id": pa.DictionaryArray.from_arrays(np.zeros(n, dtype=np.int8), ["p0"]),
                             "score": np.zeros(n, dtype=np.int8)}), ds / "outcomes.parquet", compression="zstd")
    assert (ds / "outcomes.parquet").stat().st_size < 5 << 20
    res = CliRunner().invoke(app, ["data", "validate", str(ds)])
    assert res.exit_code == 2 and "outcomes.parquet" in res.output and "declares 60,000,000 rows" in res.output
    assert "Traceback" not in res.output
    ds2 = make_dataset(tmp_path / "ds2")
    monkeypatch.setattr(data, "PARQUET_MAX_BYTES", 1000)
    pq.write_table(pq.read_table(ds2 / "outcomes.parquet"), ds2 / "outcomes.parquet", compression="zstd")
    res = CliRunner().invoke(app, ["data", "validate", str(ds2)])
    assert res.exit_code == 2 and "bytes uncompressed, more than the 1,000" in res.output


def test_a_failed_atomic_write_names_the_target_not_its_temporary_file(tmp_path: Path) -> None:
    from unirouter_cli.io import write_csv

    class Unwritable:
        def to_csv(self, p: Path, **_: object) -> None:
            open(p.parent / "gone" / p.name, "w")  # an OSError about a path inside the temporary folder

    target = tmp_path / "metrics.csv"
    with pytest.raises(OSError) as e:
        write_csv(target, Unwritable())
    assert e.value.filename == str(target) and e.value.strerror
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing left behind
