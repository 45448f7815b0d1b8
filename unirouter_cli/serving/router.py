"""a built router outside the trial loop: build, add or remove LLMs, route new prompts.

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
    references.csv               where the table has reference answers: the reserve's (prompt_id, answer,
                                 rule), listed in the card as ``references`` (serving/grade.py)

JSON + npz only (npz read with ``allow_pickle=False``). ``build`` splits the table's prompts (seeded)
into training prompts and the probe reserve, fits the router exactly as a trial does
(``evaluate.fit_trial``: every table LLM is a training LLM, the reserve is the validation set, so
hyperparameters are chosen from training + reserve data), and profiles every LLM on the reserve.
A new LLM joins by answering probe prompts (at least ``MIN_ANSWERS``); nothing is retrained.

Routing: ``argmin_h gamma(x, h) + lambda * c(h)`` with each LLM's cost from the card (a table's
per-query costs are not known before answering, so they are not used); ties go to the cheaper LLM.
``max_cost`` caps each prompt's LLM cost (only LLMs that cost at most that are considered);
``mean_cost`` / ``min_quality`` pick lambda on the reserve: the exact deferral curve (metrics.py) of
the router's own estimates there, i.e. expected mean cost vs estimated quality = mean of
1 - gamma of the chosen LLMs, over lambda (routing.py). (These are in-sample for the reserve: k-NN counts a reserve
prompt among its own neighbours, so its estimates there lean optimistic.) The expected cost uses
the card's per-LLM costs; where real costs vary per prompt (RouterBench), realised costs can differ.

Every save writes a complete new directory beside the target and swaps it in (rename the old one
away, rename the new one in, delete the old one), so a refused or interrupted update leaves the
directory as it was; if a crash hits between the two renames, the old copy is ``.<name>.old-<pid>``.
"""

from __future__ import annotations

import math
import os
import shutil
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import yaml

from ..data.tables import _answers_frame, row_label
from ..embed.encoders import Encoder, encoder_from_state
from ..errors import ConfigError, DataError, UnirouterError
from ..io import load_yaml, named_as, read_npz, yaml_problem
from ..protocol.probes import ADAPTIVE, ProbeContext, check_strategy, select_probes
from .grade import REFERENCES, grade_responses, router_references, with_references
from .routing import CLI_NAMES, Routing
from .store import (
    CARD,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    STATE_FILES,
    RouterDirError,
    _check_card,
    _check_meta,
    _file_hash,
    _json,
    _lock,
    _swap_in,
    carry_over,
    check_manifest,
    check_replaceable,
    check_state,
    owned,
    write_manifest,
)

if TYPE_CHECKING:
    from .profile import ProfileSession

MIN_ANSWERS = 20  # a new LLM's profile from fewer answers has a standard error above 0.11 on its accuracy


# --------------------------------------------------------------------------------------------
# tables the user gives: prompts to route, answers of a new LLM
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# the router directory
# --------------------------------------------------------------------------------------------
MAX_NAME = 200  # characters of an LLM name


@dataclass
class DeployedRouter(Routing):
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
    references: pd.DataFrame | None = None  # the reserve's reference answers (prompt_id, answer, rule)
    _cache: dict = field(default_factory=dict, repr=False, compare=False)  # reserve estimates per pool

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

    def _pool_cols(self, pool: list[str] | None, names: dict[str, str] = CLI_NAMES) -> np.ndarray:
        if not pool:
            return np.arange(len(self.models))
        pool = [str(m).strip() for m in pool if str(m).strip()]
        unknown = [m for m in pool if m not in self.models]
        if unknown:
            raise ConfigError(f"{names['pool']}: unknown LLM(s) {', '.join(unknown[:3])}; this router has "
                              f"{', '.join(self.models)}")
        if len(set(pool)) != len(pool):
            raise ConfigError(f"{names['pool']} lists an LLM twice: {', '.join(pool)}")
        return np.array([self.models.index(m) for m in pool], dtype=np.int64)

    def _pool(self, cols: np.ndarray):
        """The routers' view of the pool ``cols`` (cached until the profiles change)."""
        from ..routers import Pool

        key = ("pool", *map(int, cols))
        hit = self._cache.get(key)
        if hit is None:
            models = self.models
            hit = self._remember(key, Pool(models=[models[j] for j in cols], X_val=self.X_reserve,
                                           E_val=self.errors[:, cols]))
        return hit

    # ---- probes and the pool ------------------------------------------------------------------
    def probes(self, n: int, strategy: str = "random", seed: int = 0, answers_of: str | None = None) -> pd.DataFrame:
        """The n reserve prompts (prompt_id, text) a new LLM should answer; text is empty when the
        table shipped no texts. Where the table has reference answers, ``answer`` and ``rule`` columns follow.
        ``answers_of`` adds a ``score`` column with that LLM's known answers (probes it did not answer are left
        out), e.g. to copy an LLM into another router."""
        check_strategy(strategy)
        if strategy == ADAPTIVE:
            raise ConfigError("adaptive probes depend on the new LLM's answers: use `router probes --adaptive` "
                              "(one batch at a time) or router.profile(name, cost) in Python")
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
        if self.references is not None:
            df = with_references(df, self.references)
        if j is not None:
            df["score"] = 1.0 - self.errors[idx, j].astype(np.float64)
            df = df[df["score"].notna()].reset_index(drop=True)
        return df

    def grade(self, responses: str | Path | pd.DataFrame) -> pd.DataFrame:
        """A new LLM's raw responses (prompt_id, response; a file or a DataFrame) graded against the probe
        reserve's reference answers: DataFrame[prompt_id, score, extracted], ready for ``add_llm``."""
        return grade_responses(responses, self.references, self.card["dataset"]["name"])

    def check_new_llm(self, name: str, cost: float) -> tuple[str, float]:
        """(name, cost) of an LLM about to join, refused if the name is empty or taken or the cost not positive."""
        name = str(name).strip()
        if not name or not name.isprintable() or len(name) > MAX_NAME:
            raise ConfigError(f"--model {name[:80]!r}: expected a non-empty LLM name of at most {MAX_NAME} "
                              "characters without control characters (line breaks, terminal escapes)")
        if name in self.models:
            raise ConfigError(f"LLM {name!r} is already in this router (remove-llm it first to replace its answers)")
        try:
            cost = float(cost)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"--cost {cost!r}: expected a positive number ({self.cost_unit})") from e
        if not (math.isfinite(cost) and cost > 0):
            raise ConfigError(f"--cost {cost:g}: expected a positive number ({self.cost_unit})")
        return name, cost

    def profile(self, name: str, cost: float) -> ProfileSession:
        """An adaptive profile of a new LLM (serving/profile.py): ``next(n)`` lists probes chosen from its answers
        so far, ``answer(...)`` records scores, ``done()`` adds it; a foldin router only."""
        from .profile import ProfileSession

        return ProfileSession(self, name, cost)

    def add_llm(self, name: str, cost: float, answers: str | Path | pd.DataFrame | Mapping[str, float]) -> dict:
        """Profile a new LLM from its scores in [0, 1] on probe prompts; nothing is retrained.

        Refuses (``DataError`` / ``ConfigError``, the router unchanged) a duplicate or empty name, a
        cost that is not a positive number, unreadable answers, unknown or repeated prompt ids, scores
        outside [0, 1], and fewer than ``MIN_ANSWERS`` answers.
        """
        name, cost = self.check_new_llm(name, cost)
        df, where = _answers_frame(answers, len(self.reserve_ids))
        score = pd.to_numeric(df["score"], errors="coerce").to_numpy(dtype=np.float64)
        for bad, what in ((np.isnan(score) & df["score"].notna().to_numpy(), "score is not a number"),
                          (np.isnan(score), "score is missing (expected a number in [0, 1])"),
                          (~np.isnan(score) & ((score < 0) | (score > 1)), "score outside [0, 1]")):
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                got = df["score"].iloc[i]
                got = got.item() if isinstance(got, np.generic) else got
                raise DataError(f"{where}: {row_label(where, i)}: {what} (got {got!r})")
        ids = df["prompt_id"].astype(str).to_numpy()
        if len(np.unique(ids)) != len(ids):
            i = int(np.flatnonzero(pd.Series(ids).duplicated().to_numpy())[0])
            raise DataError(f"{where}: {row_label(where, i)}: duplicate prompt_id {ids[i]!r}")
        pos = pd.Index(self.reserve_ids.astype(str)).get_indexer(ids)
        if (pos < 0).any():
            i = int(np.flatnonzero(pos < 0)[0])
            raise DataError(f"{where}: {row_label(where, i)}: prompt_id {ids[i]!r} is not a probe prompt of this "
                            f"router ({int((pos < 0).sum())} unknown); answer prompts listed by `unirouter router "
                            "probes`")
        if len(ids) < MIN_ANSWERS:
            raise DataError(f"{where}: {len(ids)} answers; a new LLM needs at least {MIN_ANSWERS} answered probe "
                            "prompts (`unirouter router probes DIR -n 100`)")
        col = np.full((len(self.reserve_ids), 1), np.nan, dtype=np.float32)
        col[pos, 0] = 1.0 - score
        self.errors = np.concatenate([self.errors, col], axis=1)
        self._cache.clear()
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
        self._cache.clear()
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
        it is a router directory (``overwrite``); a non-empty other directory is refused. Files the router does
        not own are carried over. When saving over the directory it was loaded from, a concurrent change made
        since loading is refused.
        """
        target = Path(path or self.path or "")
        if not str(target):
            raise ConfigError("save: no directory given")
        target = target.expanduser().absolute()
        with _lock(target):
            check_replaceable(target)
            if target.exists():
                if (target / CARD).exists() and not overwrite:
                    raise RouterDirError(f"{target} already holds a router; pass --force to replace it")
                writes = {CARD, MANIFEST, *self._state_files()}
                theirs = sorted(n for n in writes - owned(_old_card(target))
                                if (target / n).exists() or (target / n).is_symlink())
                if theirs:  # a name this router writes, held by a file its current card does not list: the user's
                    raise RouterDirError(f"{target / theirs[0]}: not the router's (its card does not list it) and "
                                         "the updated router writes that name; move it away and retry")
                if self.path is not None and target == Path(self.path).absolute() and self._loaded_card_hash:
                    if _file_hash(target / CARD) != self._loaded_card_hash:
                        raise RouterDirError(f"{target} was changed by another process since it was loaded; "
                                             "load it again and retry")
            staging = target.parent / f".{target.name}.new-{os.getpid()}"
            with named_as(target, str(staging)):  # errors name the router directory, not the staging one
                if staging.exists():
                    shutil.rmtree(staging)
                staging.mkdir(parents=True)
                try:
                    self._write(staging)
                    if target.exists():
                        carry_over(target, staging, owned(self.card) | owned(_old_card(target)))
                    _swap_in(staging, target)
                finally:
                    if staging.exists():
                        shutil.rmtree(staging, ignore_errors=True)
        self.path = target
        self._loaded_card_hash = _file_hash(target / CARD)
        return target

    def _state_files(self) -> list[str]:
        """The state files this router writes (its card's ``files``)."""
        return list(STATE_FILES) + ([REFERENCES] if self.references is not None else [])

    def _write(self, d: Path) -> None:
        from ..io import write_csv, write_json, write_npz, write_yaml

        self.card["llms"] = [{**e, "answers": int((~np.isnan(self.errors[:, j])).sum())}
                             for j, e in enumerate(self.card["llms"])]
        rest = {k: v for k, v in self.card.items() if k not in ("format", "format_version", "files")}
        self.card = {"format": FORMAT, "format_version": FORMAT_VERSION, **rest,
                     "files": self._state_files()}
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
        if self.references is not None:
            write_csv(d / REFERENCES, self.references)
        write_yaml(d / CARD, self.card)  # a directory without a card is not a router
        write_manifest(d, self.card)  # last: every file above with its hash


def _old_card(d: Path) -> Any:
    """The card of the directory being replaced (the names it owns), or None when it cannot be read."""
    try:
        return load_yaml(d / CARD)
    except (OSError, yaml.YAMLError, UnicodeDecodeError, UnirouterError):
        return None


def load_router(path: str | Path) -> DeployedRouter:
    """Load a router directory written by ``unirouter router build`` (or ``DeployedRouter.save``)."""
    from ..routers import get_spec, make_router

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
    check_manifest(d, card)
    try:
        enc_meta, enc_arrays = _json(d / "encoder.json"), read_npz(d / "encoder.npz")
        name = card["router"]["name"]
        get_spec(name)  # an unknown router (e.g. a plug-in that is not installed) is refused by name
        arrays = read_npz(d / "router.npz")
        meta = _json(d / "router.json")
        _check_meta(name, meta, d / "router.json")
        reserve = _json(d / "reserve.json")
        X = read_npz(d / "reserve.npz")["X"]
        ids, texts, E = check_state(d, card, enc_meta, enc_arrays, meta, arrays, reserve, X,
                                    read_npz(d / "profiles.npz"))
        enc = encoder_from_state(enc_meta, enc_arrays)
        router = make_router(name).load_state(meta, arrays)
    except RouterDirError:
        raise
    except (OSError, ValueError, KeyError, TypeError, AttributeError, EOFError, UnirouterError, zipfile.BadZipFile,
            zlib.error) as e:
        raise RouterDirError(f"{d}: missing or unreadable router file ({type(e).__name__}: "
                             f"{' '.join(str(e).split())[:100]}); rebuild the router") from e
    dr = DeployedRouter(card=card, encoder=enc, router=router, reserve_ids=np.asarray(ids, dtype=str),
                        reserve_texts=texts, X_reserve=np.asarray(X, dtype=np.float32),
                        errors=np.asarray(E, dtype=np.float32), path=d.absolute(), _loaded_card_hash=card_hash,
                        references=router_references(d, card, ids))
    _self_check(dr, d)
    return dr


def _self_check(dr: DeployedRouter, d: Path, rows: int = 32) -> None:
    """Estimate the errors of the first ``rows`` reserve prompts once: a router state that does not fit the
    card and the reserve (arrays of the wrong shape, NaN) is refused here in one line, not mid-route."""
    from ..routers.base import STATE_ERRORS, check_prediction

    try:
        check_prediction(dr.router, dr.X_reserve[:rows], dr._pool(np.arange(len(dr.models))))
    except STATE_ERRORS as e:
        raise RouterDirError(f"{d / 'router.npz'}: the router state does not fit the reserve and LLMs of the card "
                             f"({type(e).__name__}: {' '.join(str(e).split())[:100]}); rebuild the router") from e


