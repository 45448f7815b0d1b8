"""Stage 8 - a built router outside the trial loop: build, add or remove LLMs, route new prompts.

A dynamic router knows a pool only through the pool's errors on probe prompts
(``router.predict(X, Pool(models, X_probe, E_probe))``). A *router directory* therefore holds::

    router.yaml                  the card: unirouter version, dataset name + content hash, encoder,
                                 router + chosen hyperparameters, seed, reserve size, and the LLMs
                                 (name, cost, where their answers came from) with the cost unit
    encoder.json, encoder.npz    the fitted encoder (embeds new texts offline; embed.py)
    router.json, router.npz      the fitted router (``Router.state()``)
    reserve.json                 the probe reserve: prompt ids, and texts where the table has them
    reserve.npz                  X: the reserve's embeddings (n_reserve, D), float32
    profiles.npz                 errors: every LLM's errors (1 - score) on the reserve, NaN = not
                                 answered (n_reserve, M), in the card's LLM order; models: their names

JSON + npz only (npz read with ``allow_pickle=False``). ``build`` splits the table's prompts (seeded)
into training prompts and the probe reserve, fits the router exactly as a trial does
(``evaluate.fit_trial``: every table LLM is a training LLM, the reserve is the validation set, so
hyperparameters are chosen from training + reserve data), and profiles every LLM on the reserve.
A new LLM joins by answering probe prompts (at least ``MIN_ANSWERS``); nothing is retrained.

Routing: ``argmin_h gamma(x, h) + lambda * c(h)`` with each LLM's cost from the card (a table's
per-query costs are not known before answering, so they are not used); ties go to the cheaper LLM.
``max_cost`` / ``min_quality`` pick lambda on the reserve: the exact deferral curve (metrics.py) of
the router's own estimates there, i.e. expected mean cost vs estimated quality = mean of
1 - gamma of the chosen LLMs, over lambda. (These are in-sample for the reserve: k-NN counts a reserve
prompt among its own neighbours, so its estimates there lean optimistic.) The expected cost uses
the card's per-LLM costs; where real costs vary per prompt (RouterBench), realised costs can differ.

Every save writes a complete new directory beside the target and swaps it in (rename the old one
away, rename the new one in, delete the old one), so a refused or interrupted update leaves the
directory as it was; if a crash hits between the two renames, the old copy is ``.<name>.old-<pid>``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import shutil
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from . import __version__
from .embed import Encoder, encoder_from_state, fitted_encoder, make_encoder
from .errors import ConfigError, DataError, UnirouterError
from .io import check_regular, load_yaml, read_npz, yaml_problem
from .metrics import Curve, deferral_curve
from .probes import ProbeContext, check_strategy, select_probes

FORMAT_VERSION = 1
CARD = "router.yaml"
FILES = ("router.yaml", "encoder.json", "encoder.npz", "router.json", "router.npz", "reserve.json", "reserve.npz",
         "profiles.npz")
MIN_ANSWERS = 20  # a new LLM's profile from fewer answers has a standard error above 0.11 on its accuracy
DEFAULT_RESERVE = 0.1  # share of the table's prompts kept as the probe reserve (the trials' validation share)
DEFAULT_ROUTER = "uniroute-kmeans"


class RouterDirError(UnirouterError):
    """A router directory is missing files, inconsistent, or being updated by another process."""


# --------------------------------------------------------------------------------------------
# tables the user gives: prompts to route, answers of a new LLM
# --------------------------------------------------------------------------------------------
def _row_label(path: Path | str, i: int) -> str:
    suffix = Path(str(path)).suffix
    if suffix == ".csv":
        return f"line {i + 2}"  # the header is line 1
    if suffix == ".jsonl":
        return f"line {i + 1}"
    return f"row {i}"


def read_user_table(path: str | Path, columns: tuple[str, ...], what: str) -> pd.DataFrame:
    """Read a .csv / .jsonl / .parquet table with the given columns (prompt_id read as text)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found (expected {what})")
    check_regular(path, f"file ({what})")
    if path.suffix not in (".csv", ".jsonl", ".parquet"):
        raise DataError(f"{path}: unknown format {path.suffix or '(none)'} (expected .csv, .jsonl or .parquet)")
    from .data import UNCLOSED_QUOTE, first_invalid_utf8, read_csv_table, unclosed_quote_line

    try:
        if path.suffix == ".csv":
            df = read_csv_table(path)
        elif path.suffix == ".jsonl":
            df = pd.read_json(path, lines=True, dtype={"prompt_id": str}, encoding="utf-8")
        else:
            df = pd.read_parquet(path)
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
    ids = df["prompt_id"]
    bad = ids.isna().to_numpy() | (ids.astype(str).str.strip() == "").to_numpy()
    if bad.any():
        raise DataError(f"{path}: {_row_label(path, int(np.flatnonzero(bad)[0]))}: prompt_id is empty")
    df = df.assign(prompt_id=ids.astype(str))
    dup = df["prompt_id"].duplicated().to_numpy()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise DataError(f"{path}: {_row_label(path, i)}: duplicate prompt_id {df['prompt_id'].iloc[i]!r} "
                        "(each prompt must appear once)")
    return df


def read_prompts(path: str | Path) -> tuple[list[str], list[str]]:
    """(prompt ids, texts) of a prompts file to route."""
    df = read_user_table(path, ("prompt_id", "text"), "prompts to route: columns prompt_id, text")
    t = df["text"]
    empty = t.isna().to_numpy() | (t.astype(str).str.strip() == "").to_numpy()
    if empty.any():
        raise DataError(f"{path}: {_row_label(path, int(np.flatnonzero(empty)[0]))}: prompt without text")
    return df["prompt_id"].tolist(), t.astype(str).tolist()


def _answers_frame(answers: str | Path | pd.DataFrame | Mapping[str, float]) -> tuple[pd.DataFrame, str]:
    if isinstance(answers, pd.DataFrame):
        for c in ("prompt_id", "score"):
            if c not in answers.columns:
                raise DataError(f"answers: missing column {c} (expected prompt_id, score)")
        return answers.assign(prompt_id=answers["prompt_id"].astype(str)).reset_index(drop=True), "answers"
    if isinstance(answers, Mapping):
        return pd.DataFrame({"prompt_id": [str(k) for k in answers], "score": list(answers.values())}), "answers"
    return read_user_table(answers, ("prompt_id", "score"), "answers: columns prompt_id, score in [0, 1]"), str(answers)


# --------------------------------------------------------------------------------------------
# the router directory
# --------------------------------------------------------------------------------------------
@dataclass
class DeployedRouter:
    """A fitted encoder + router, its probe reserve, and the pool's profiles on that reserve."""

    card: dict
    encoder: Encoder
    router: Any  # a fitted unirouter_cli.routers.Router
    reserve_ids: np.ndarray  # (n_reserve,) str
    reserve_texts: list[str] | None
    X_reserve: np.ndarray  # (n_reserve, D) float32
    errors: np.ndarray  # (n_reserve, M) float32, NaN = not answered; columns = self.models
    path: Path | None = None
    _loaded_card_hash: str | None = None

    # ---- the pool ---------------------------------------------------------------------------
    @property
    def llms(self) -> list[dict]:
        return self.card["llms"]

    @property
    def models(self) -> list[str]:
        return [d["name"] for d in self.llms]

    @property
    def costs(self) -> np.ndarray:
        return np.array([float(d["cost"]) for d in self.llms], dtype=np.float64)

    @property
    def cost_unit(self) -> str:
        return str(self.card.get("cost_unit") or "?")

    def parse_pool(self, spec: str) -> list[str]:
        """LLM names from a comma-separated ``--pool``. A name that itself holds commas is recognised: at each
        position the longest run of comma-separated pieces that is one of this router's LLMs is taken."""
        pieces, known, out, i = spec.split(","), set(self.models), [], 0
        while i < len(pieces):
            j = next((j for j in range(len(pieces), i + 1, -1) if ",".join(pieces[i:j]).strip() in known), i + 1)
            if name := ",".join(pieces[i:j]).strip():
                out.append(name)
            i = j
        if not out:
            raise ConfigError(f"--pool {spec!r}: expected LLM names separated by commas")
        return out

    def _pool_cols(self, pool: list[str] | None) -> np.ndarray:
        if not pool:
            return np.arange(len(self.models))
        pool = [str(m).strip() for m in pool if str(m).strip()]
        unknown = [m for m in pool if m not in self.models]
        if unknown:
            raise ConfigError(f"--pool: unknown LLM(s) {', '.join(unknown[:3])}; this router has "
                              f"{', '.join(self.models)}")
        if len(set(pool)) != len(pool):
            raise ConfigError(f"--pool lists an LLM twice: {', '.join(pool)}")
        return np.array([self.models.index(m) for m in pool], dtype=np.int64)

    def _pool(self, cols: np.ndarray):
        from .routers import Pool

        return Pool(models=[self.models[j] for j in cols], X_val=self.X_reserve, E_val=self.errors[:, cols])

    # ---- routing ----------------------------------------------------------------------------
    def estimate(self, X: np.ndarray, pool: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(gamma (n, m) estimated errors of the pool's LLMs, pool column indices) for embeddings X."""
        cols = self._pool_cols(pool)
        gamma = np.asarray(self.router.predict(np.asarray(X, dtype=np.float32), self._pool(cols)), dtype=np.float64)
        return np.clip(gamma, 0.0, 1.0), cols

    def lambda_curve(self, pool: list[str] | None = None) -> Curve:
        """Exact deferral curve on the probe reserve of the router's own estimates.

        ``cost`` is the expected mean cost per prompt in the card's unit (not normalised), ``quality``
        the estimated accuracy (mean 1 - gamma of the chosen LLMs), ``lambdas`` where each point starts.
        """
        gamma, cols = self.estimate(self.X_reserve, pool)
        norm = float(self.costs[cols].max())  # the curve works in costs scaled to the pool's largest
        curve = deferral_curve(gamma, 1.0 - gamma, np.broadcast_to(self.costs[cols][None, :] / norm, gamma.shape))
        return Curve(curve.cost * norm, curve.quality, curve.lambdas / norm)

    def choose_lambda(self, lam: float | None = None, max_cost: float | None = None,
                      min_quality: float | None = None, pool: list[str] | None = None) -> float:
        """lambda from exactly one of: lambda itself, a budget (expected mean cost <= max_cost on the
        reserve, the most accurate such point) or a quality floor (the cheapest point whose estimated
        quality on the reserve is >= min_quality). Inside a curve segment the midpoint lambda is used."""
        given = [v is not None for v in (lam, max_cost, min_quality)]
        if sum(given) != 1:
            raise ConfigError("give exactly one of --lambda, --max-cost, --min-quality")
        if lam is not None:
            if not (math.isfinite(lam) and lam >= 0):
                raise ConfigError(f"--lambda {lam}: expected a number >= 0 (0 = always the lowest estimated error)")
            return float(lam)
        curve = self.lambda_curve(pool)
        if max_cost is not None:
            if not (math.isfinite(max_cost) and max_cost > 0):
                raise ConfigError(f"--max-cost {max_cost}: expected a positive number ({self.cost_unit})")
            ok = np.flatnonzero(curve.cost <= max_cost * (1 + 1e-9))
            if ok.size == 0:
                raise ConfigError(f"--max-cost {max_cost:g} is below the cheapest LLM's cost {curve.cost[0]:.4g} "
                                  f"({self.cost_unit})")
            i = int(ok[-1])
        else:
            assert min_quality is not None
            if not (math.isfinite(min_quality) and 0 <= min_quality <= 1):
                raise ConfigError(f"--min-quality {min_quality}: expected a number in [0, 1]")
            ok = np.flatnonzero(curve.quality >= min_quality - 1e-12)
            if ok.size == 0:
                raise ConfigError(f"--min-quality {min_quality:g} is above the best estimated quality on the probe "
                                  f"prompts ({curve.quality.max():.4f}, at lambda 0)")
            i = int(ok[0])
        lams = curve.lambdas
        if i == len(lams) - 1:
            return 0.0
        hi, lo = lams[i], lams[i + 1]
        return float(2 * lo if not np.isfinite(hi) else (hi + lo) / 2)

    def route_embeddings(self, X: np.ndarray, lam: float, pool: list[str] | None = None
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(chosen LLM index into self.models, estimated P(correct), cost) per row of X at lambda."""
        gamma, cols = self.estimate(X, pool)
        c = self.costs[cols]
        order = np.argsort(c, kind="stable")  # ties go to the cheaper LLM (the first minimum)
        pick = order[np.argmin(gamma[:, order] + lam * c[order][None, :], axis=1)]
        return cols[pick], 1.0 - gamma[np.arange(len(gamma)), pick], c[pick]

    def route(self, texts: list[str], prompt_ids: list[str] | None = None, lam: float | None = None,
              max_cost: float | None = None, min_quality: float | None = None,
              pool: list[str] | None = None) -> list[dict]:
        """One dict per text: prompt_id, model, p_correct (estimated), cost (card unit), lambda."""
        texts = [str(t) for t in texts]
        ids = [str(i) for i in (prompt_ids if prompt_ids is not None else range(len(texts)))]
        if len(ids) != len(texts):
            raise ConfigError(f"{len(ids)} prompt ids for {len(texts)} texts")
        if not self.encoder.can_embed:
            self.encoder.transform(texts)  # raises the encoder's one-line explanation
        value = self.choose_lambda(lam, max_cost, min_quality, pool)
        if not texts:
            return []
        model, p, cost = self.route_embeddings(self.encoder.transform(texts), value, pool)
        names = self.models
        return [{"prompt_id": i, "model": names[m], "p_correct": round(float(q), 6), "cost": float(c),
                 "lambda": value} for i, m, q, c in zip(ids, model.tolist(), p.tolist(), cost.tolist(), strict=True)]

    # ---- probes and the pool ------------------------------------------------------------------
    def probes(self, n: int, strategy: str = "random", seed: int = 0, answers_of: str | None = None) -> pd.DataFrame:
        """The n reserve prompts (prompt_id, text) a new LLM should answer; text is empty when the
        table shipped no texts. ``answers_of`` adds a ``score`` column with that LLM's known answers
        (probes it did not answer are left out), e.g. to copy an LLM into another router."""
        check_strategy(strategy)
        n_res = len(self.reserve_ids)
        if not 1 <= int(n) <= n_res:
            raise ConfigError(f"-n {n}: expected between 1 and the {n_res} candidate probe prompts of this router")
        j = None
        if answers_of is not None:
            if answers_of not in self.models:
                raise ConfigError(f"--answers-of: LLM {answers_of!r} is not in this router "
                                  f"(it has {', '.join(self.models)})")
            j = self.models.index(answers_of)
        table = np.array([d.get("origin") == "table" for d in self.llms])
        ctx = ProbeContext(X=self.X_reserve, E_train=self.errors[:, table], seed=int(seed))
        idx = select_probes(strategy, int(n), ctx)
        texts = [self.reserve_texts[i] for i in idx] if self.reserve_texts is not None else [""] * len(idx)
        df = pd.DataFrame({"prompt_id": self.reserve_ids[idx].astype(str), "text": texts})
        if j is not None:
            df["score"] = 1.0 - self.errors[idx, j].astype(np.float64)
            df = df[df["score"].notna()].reset_index(drop=True)
        return df

    def add_llm(self, name: str, cost: float, answers: str | Path | pd.DataFrame | Mapping[str, float]) -> dict:
        """Profile a new LLM from its scores in [0, 1] on probe prompts; nothing is retrained.

        Refuses (``DataError`` / ``ConfigError``, the router unchanged) a duplicate or empty name, a
        cost that is not a positive number, unreadable answers, unknown or repeated prompt ids, scores
        outside [0, 1], and fewer than ``MIN_ANSWERS`` answers.
        """
        name = str(name).strip()
        if not name or any(ch in name for ch in "\n\r"):
            raise ConfigError(f"--model {name!r}: expected a non-empty LLM name without line breaks")
        if name in self.models:
            raise ConfigError(f"LLM {name!r} is already in this router (remove-llm it first to replace its answers)")
        try:
            cost = float(cost)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"--cost {cost!r}: expected a positive number ({self.cost_unit})") from e
        if not (math.isfinite(cost) and cost > 0):
            raise ConfigError(f"--cost {cost:g}: expected a positive number ({self.cost_unit})")
        df, where = _answers_frame(answers)
        score = pd.to_numeric(df["score"], errors="coerce").to_numpy(dtype=np.float64)
        for bad, what in ((np.isnan(score) & df["score"].notna().to_numpy(), "score is not a number"),
                          (np.isnan(score), "score is missing (expected a number in [0, 1])"),
                          (~np.isnan(score) & ((score < 0) | (score > 1)), "score outside [0, 1]")):
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                got = df["score"].iloc[i]
                got = got.item() if isinstance(got, np.generic) else got
                raise DataError(f"{where}: {_row_label(where, i)}: {what} (got {got!r})")
        ids = df["prompt_id"].astype(str).to_numpy()
        if len(np.unique(ids)) != len(ids):
            i = int(np.flatnonzero(pd.Series(ids).duplicated().to_numpy())[0])
            raise DataError(f"{where}: {_row_label(where, i)}: duplicate prompt_id {ids[i]!r}")
        pos = pd.Index(self.reserve_ids.astype(str)).get_indexer(ids)
        if (pos < 0).any():
            i = int(np.flatnonzero(pos < 0)[0])
            raise DataError(f"{where}: {_row_label(where, i)}: prompt_id {ids[i]!r} is not a probe prompt of this "
                            f"router ({int((pos < 0).sum())} unknown); answer prompts listed by `unirouter router "
                            "probes`")
        if len(ids) < MIN_ANSWERS:
            raise DataError(f"{where}: {len(ids)} answers; a new LLM needs at least {MIN_ANSWERS} answered probe "
                            "prompts (`unirouter router probes DIR -n 100`)")
        col = np.full((len(self.reserve_ids), 1), np.nan, dtype=np.float32)
        col[pos, 0] = 1.0 - score
        self.errors = np.concatenate([self.errors, col], axis=1)
        entry = {"name": name, "cost": cost, "origin": "added", "answers": int(len(ids))}
        self.card["llms"].append(entry)
        return entry

    def remove_llm(self, name: str) -> None:
        name = str(name).strip()
        if name not in self.models:
            raise ConfigError(f"LLM {name!r} is not in this router (it has {', '.join(self.models)})")
        if len(self.models) == 1:
            raise ConfigError(f"LLM {name!r} is the router's only LLM; at least one must remain")
        j = self.models.index(name)
        self.errors = np.delete(self.errors, j, axis=1)
        del self.card["llms"][j]

    # ---- summary ------------------------------------------------------------------------------
    def info(self) -> dict:
        """The card's settings, each LLM's answered probes and accuracy on them, and the ends of the
        estimated cost/quality curve on the reserve (lambda -> infinity and lambda = 0)."""
        curve = self.lambda_curve()
        answered = ~np.isnan(self.errors)
        cnt = answered.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            acc = 1.0 - np.where(answered, self.errors, 0.0).sum(axis=0) / cnt
        return {
            "path": str(self.path) if self.path else None,
            **{k: self.card.get(k) for k in ("unirouter_version", "dataset", "encoder", "router", "seed", "reserve",
                                             "cost_unit")},
            "llms": [{**d, "answers": int(cnt[j]), "accuracy_on_answers": round(float(acc[j]), 4) if cnt[j] else None}
                     for j, d in enumerate(self.llms)],
            "curve": {"points": int(len(curve.cost)),
                      "cheapest": {"cost": float(curve.cost[0]), "quality": float(curve.quality[0])},
                      "lambda_0": {"cost": float(curve.cost[-1]), "quality": float(curve.quality[-1])}},
        }

    # ---- persistence --------------------------------------------------------------------------
    def save(self, path: str | Path | None = None, overwrite: bool = True) -> Path:
        """Write the router directory atomically (complete new directory, then a swap).

        ``path`` defaults to the directory it was loaded from. An existing directory is replaced only if
        it is a router directory (``overwrite``); a non-empty other directory is refused. When saving
        over the directory it was loaded from, a concurrent change made since loading is refused.
        """
        target = Path(path or self.path or "")
        if not str(target):
            raise ConfigError("save: no directory given")
        target = target.expanduser().absolute()
        with _lock(target):
            if target.exists():
                if not target.is_dir() or (any(target.iterdir()) and not (target / CARD).exists()):
                    raise RouterDirError(f"{target} exists and is not a router directory; refusing to replace it")
                if (target / CARD).exists() and not overwrite:
                    raise RouterDirError(f"{target} already holds a router; pass --force to replace it")
                if self.path is not None and target == Path(self.path).absolute() and self._loaded_card_hash:
                    if _file_hash(target / CARD) != self._loaded_card_hash:
                        raise RouterDirError(f"{target} was changed by another process since it was loaded; "
                                             "load it again and retry")
            staging = target.parent / f".{target.name}.new-{os.getpid()}"
            if staging.exists():
                shutil.rmtree(staging)
            staging.mkdir(parents=True)
            try:
                self._write(staging)
                _swap_in(staging, target)
            finally:
                if staging.exists():
                    shutil.rmtree(staging, ignore_errors=True)
        self.path = target
        self._loaded_card_hash = _file_hash(target / CARD)
        return target

    def _write(self, d: Path) -> None:
        from .io import write_json, write_npz, write_yaml

        self.card["llms"] = [{**e, "answers": int((~np.isnan(self.errors[:, j])).sum())}
                             for j, e in enumerate(self.card["llms"])]
        meta, arrays = self.encoder.state()
        write_json(d / "encoder.json", meta)
        write_npz(d / "encoder.npz", **arrays)
        rmeta, rarrays = self.router.state()
        write_json(d / "router.json", {"router": self.card["router"]["name"], **rmeta})
        write_npz(d / "router.npz", **rarrays)
        write_json(d / "reserve.json", {"prompt_ids": self.reserve_ids.astype(str).tolist(),
                                        "texts": self.reserve_texts})
        write_npz(d / "reserve.npz", X=np.asarray(self.X_reserve, dtype=np.float32))
        write_npz(d / "profiles.npz", errors=np.asarray(self.errors, dtype=np.float32),
                  models=np.array(self.models, dtype=str))
        write_yaml(d / CARD, self.card)  # last: a directory without a card is not a router


def _file_hash(p: Path) -> str | None:
    try:
        return hashlib.sha256(p.read_bytes()).hexdigest()
    except OSError:
        return None


@contextlib.contextmanager
def _lock(target: Path) -> Iterator[None]:
    """Exclusive lock on the existing directory (fcntl on its inode), refusing a second writer."""
    if not target.is_dir():
        yield
        return
    fd = os.open(target, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            raise RouterDirError(f"{target} is being updated by another process; try again") from e
        if os.fstat(fd).st_ino != os.stat(target).st_ino:
            raise RouterDirError(f"{target} was replaced by another process while locking; try again")
        yield
    finally:
        os.close(fd)


def _fsync_dir(d: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _swap_in(staging: Path, target: Path) -> None:
    _fsync_dir(staging)
    if target.exists():
        old = target.parent / f".{target.name}.old-{os.getpid()}"
        os.rename(target, old)
        os.rename(staging, target)
        _fsync_dir(target.parent)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(staging, target)
        _fsync_dir(target.parent)


# --------------------------------------------------------------------------------------------
# build and load
# --------------------------------------------------------------------------------------------
def reserve_size(spec: float | int | str | None, n_prompts: int) -> int:
    """Probe reserve size from a count (>= 1) or a fraction in (0, 1); default 10% of the prompts."""
    if spec is None:
        spec = DEFAULT_RESERVE
    try:
        v = float(spec)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"--probe-reserve {spec!r}: expected a number of prompts or a fraction in (0, 1)") from e
    if not math.isfinite(v) or v <= 0 or (v >= 1 and v != int(v)):
        raise ConfigError(f"--probe-reserve {spec}: expected a number of prompts or a fraction in (0, 1)")
    n = int(round(v * n_prompts)) if v < 1 else int(v)
    if n < 1 or n > n_prompts - 2:
        raise ConfigError(f"--probe-reserve {spec} gives {n} of {n_prompts} prompts; the reserve and the training "
                          "prompts each need at least 2")
    return n


def build(dataset: str, router: str = DEFAULT_ROUTER, encoder: str = "tfidf", seed: int = 0,
          reserve: float | int | str | None = None, params: dict | None = None) -> DeployedRouter:
    """Fit encoder and router on a whole table (every LLM a training LLM) and profile every LLM on the
    probe reserve, exactly as a trial fits its routers (``evaluate.fit_trial``)."""
    from .data import load_dataset
    from .evaluate import errors, fit_trial
    from .routers import ROUTERS, check_params, get_spec
    from .split import Trial

    spec = get_spec(router)
    if spec.kind != "dynamic":
        dyn = ", ".join(n for n, s in ROUTERS.items() if s.kind == "dynamic")
        raise ConfigError(f"router {router} is a {spec.kind} router (it needs the pool's test labels); "
                          f"a built router must be dynamic: {dyn}")
    params = check_params(router, dict(params or {}))
    make_encoder(encoder)  # checks the name before the dataset loads
    ds = load_dataset(dataset)
    n_res = reserve_size(reserve, ds.n_prompts)
    enc, X = fitted_encoder(ds, encoder)
    X = np.ascontiguousarray(X, dtype=np.float32)
    perm = np.random.default_rng([seed, 0xB01D]).permutation(ds.n_prompts)
    res, train = np.sort(perm[:n_res]), np.sort(perm[n_res:])
    all_models = np.arange(ds.n_models)
    trial = Trial(index=0, seed=seed, train=train, val=res, test=np.empty(0, dtype=np.int64),
                  train_models=all_models, test_models=np.empty(0, dtype=np.int64), info={"kind": "router build"})
    fitted, seconds = fit_trial(ds, X, trial, [router], {router: params})
    r = fitted[router]
    E = errors(ds, res, all_models)
    card = {
        "format_version": FORMAT_VERSION,
        "unirouter_version": __version__,
        "dataset": {"name": ds.name, "path": str(ds.path), "content_hash": ds.content_hash,
                    "n_prompts": int(ds.n_prompts), "texts_included": ds.texts is not None},
        "encoder": {"name": encoder, "dim": int(X.shape[1])},
        "router": {"name": router, "kind": spec.kind, "params": {**spec.defaults, **params},
                   "hyperparams": r.hyperparams_, "fit_seconds": round(seconds[router], 3)},
        "seed": int(seed),
        "reserve": {"prompts": int(n_res), "training_prompts": int(len(train)),
                    "requested": DEFAULT_RESERVE if reserve is None else float(reserve)},
        "cost_unit": str(ds.card.get("cost_unit") or "?"),
        "costs_note": ("each LLM's cost is its models.csv figure (per-query costs in the table are not known "
                       "before answering and are not used for routing)" if ds.query_cost is not None else
                       "each LLM's cost is its models.csv figure"),
        "llms": [{"name": m, "cost": float(ds.model_cost[j]), "origin": "table",
                  "answers": int((~np.isnan(E[:, j])).sum())} for j, m in enumerate(ds.models)],
    }
    texts = [str(t) for t in ds.texts[res]] if ds.texts is not None else None
    return DeployedRouter(card=card, encoder=enc, router=r, reserve_ids=ds.prompt_ids[res].astype(str),
                          reserve_texts=texts, X_reserve=X[res], errors=E.astype(np.float32))


def _json(p: Path) -> Any:
    return json.loads(check_regular(p, "JSON file").read_text(encoding="utf-8"))


def load_router(path: str | Path) -> DeployedRouter:
    """Load a router directory written by ``unirouter router build`` (or ``DeployedRouter.save``)."""
    from .routers import get_spec, make_router
    from .routers.base import nonfinite_array

    d = Path(path).expanduser()
    if not (d / CARD).is_file():
        olds = sorted(d.parent.glob(f".{d.name}.old-*")) if d.parent.is_dir() else []
        if not d.exists() and olds:
            raise RouterDirError(f"{d} is missing but an interrupted update left {olds[0]}: rename it to {d}")
        raise RouterDirError(f"{d}: not a router directory (no {CARD}; make one with `unirouter router build`)")
    card_hash = _file_hash(d / CARD)
    try:
        card = load_yaml(d / CARD)
    except (yaml.YAMLError, UnicodeDecodeError, DataError) as e:
        raise RouterDirError(f"{d / CARD}: not a valid router card ({yaml_problem(e)})") from e
    _check_card(card, d / CARD)
    try:
        enc = encoder_from_state(_json(d / "encoder.json"), read_npz(d / "encoder.npz"))
        name = card["router"]["name"]
        get_spec(name)  # an unknown router (e.g. a plug-in that is not installed) is refused by name
        arrays = read_npz(d / "router.npz")
        if (bad := nonfinite_array(arrays)) is not None:
            raise RouterDirError(f"{d / 'router.npz'}: array {bad!r} holds NaN or infinite values (a router "
                                 "state is finite); rebuild the router")
        meta = _json(d / "router.json")
        _check_meta(name, meta, d / "router.json")
        router = make_router(name).load_state(meta, arrays)
        reserve = _json(d / "reserve.json")
        X = read_npz(d / "reserve.npz")["X"]
        prof = read_npz(d / "profiles.npz")
        E, models = prof["errors"], prof["models"]
    except RouterDirError:
        raise
    except (OSError, ValueError, KeyError, TypeError, AttributeError, EOFError, UnirouterError, zipfile.BadZipFile,
            zlib.error) as e:
        raise RouterDirError(f"{d}: missing or unreadable router file ({type(e).__name__}: "
                             f"{' '.join(str(e).split())[:100]}); rebuild the router") from e
    ids, texts = reserve.get("prompt_ids") if isinstance(reserve, dict) else None, None
    if isinstance(reserve, dict):
        texts = reserve.get("texts")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids) or not (
            texts is None or (isinstance(texts, list) and len(texts) == len(ids)
                              and all(isinstance(t, str) for t in texts))):
        raise RouterDirError(f"{d / 'reserve.json'}: expected {{prompt_ids: [str], texts: [str] or null}}")
    names = [m["name"] for m in card["llms"]]
    n = len(ids)
    if (X.ndim != 2 or len(X) != n or X.dtype.kind != "f" or not np.isfinite(X).all()
            or E.shape != (n, len(names)) or E.dtype.kind != "f" or models.dtype.kind != "U"):
        raise RouterDirError(f"{d}: reserve has {n} prompts and {len(names)} LLMs, but embeddings are "
                             f"{X.shape} {X.dtype} and profiles {E.shape} {E.dtype}; rebuild the router")
    if list(models.astype(str)) != names:
        raise RouterDirError(f"{d}: profiles.npz lists other LLMs than {CARD}")
    if np.any((E < 0) | (E > 1)):  # NaN compares False: not answered
        raise RouterDirError(f"{d / 'profiles.npz'}: errors outside [0, 1]; rebuild the router")
    dr = DeployedRouter(card=card, encoder=enc, router=router, reserve_ids=np.asarray(ids, dtype=str),
                        reserve_texts=texts, X_reserve=np.asarray(X, dtype=np.float32),
                        errors=np.asarray(E, dtype=np.float32), path=d.absolute(), _loaded_card_hash=card_hash)
    _self_check(dr, d)
    return dr


def _check_meta(name: str, meta: Any, where: Path) -> None:
    """router.json: a mapping whose declared parameters (as given, as chosen, and at the top level where a
    router keeps them) are in their declared types and ranges."""
    from .routers import check_params, get_spec

    if not isinstance(meta, dict):
        raise RouterDirError(f"{where}: expected a JSON object (the router's parameters and state)")
    declared = get_spec(name).params
    for part in (meta.get("params", {}), meta.get("hyperparams", {}), meta):
        if not isinstance(part, dict):
            raise RouterDirError(f"{where}: expected 'params' and 'hyperparams' to be objects")
        values = {k: v for k, v in part.items() if k in declared and not (v == "auto" and part is not meta)}
        try:
            check_params(name, values)
        except ConfigError as e:
            raise RouterDirError(f"{where}: {e}; rebuild the router") from None


def _self_check(dr: DeployedRouter, d: Path, rows: int = 32) -> None:
    """Estimate the errors of the first ``rows`` reserve prompts once: a router state that does not fit the
    card and the reserve (arrays of the wrong shape, NaN) is refused here in one line, not mid-route."""
    from .routers.base import STATE_ERRORS, check_prediction

    try:
        check_prediction(dr.router, dr.X_reserve[:rows], dr._pool(np.arange(len(dr.models))))
    except STATE_ERRORS as e:
        raise RouterDirError(f"{d / 'router.npz'}: the router state does not fit the reserve and LLMs of the card "
                             f"({type(e).__name__}: {' '.join(str(e).split())[:100]}); rebuild the router") from e


def _check_card(card: Any, where: Path) -> None:
    """The card's structure: format version, router name, LLMs with unique names and positive costs."""
    if not isinstance(card, dict) or not isinstance(card.get("llms"), list) or not card["llms"]:
        raise RouterDirError(f"{where}: expected a mapping with a non-empty list 'llms'")
    if card.get("format_version") != FORMAT_VERSION:
        raise RouterDirError(f"{where}: format_version {card.get('format_version')!r}; this unirouter reads "
                             f"{FORMAT_VERSION} (rebuild the router)")
    if not isinstance(card.get("router"), dict) or not isinstance(card["router"].get("name"), str):
        raise RouterDirError(f"{where}: expected router: {{name: ...}}")
    seen = set()
    for i, m in enumerate(card["llms"]):
        if not isinstance(m, dict) or not isinstance(m.get("name"), str) or not m["name"].strip():
            raise RouterDirError(f"{where}: llms[{i}] needs a name")
        c = m.get("cost")
        if isinstance(c, bool) or not isinstance(c, int | float) or not math.isfinite(c) or c <= 0:
            raise RouterDirError(f"{where}: LLM {m['name']!r} has cost {c!r} (expected a positive number)")
        if m["name"] in seen:
            raise RouterDirError(f"{where}: LLM {m['name']!r} is listed twice")
        seen.add(m["name"])


def dir_hash(path: str | Path) -> str:
    """Hash of every file (relative name + content) under a directory: equal iff nothing changed."""
    h = hashlib.sha256()
    root = Path(path)
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode())
            h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()
