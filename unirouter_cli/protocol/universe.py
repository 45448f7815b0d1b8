"""the universe and the trials.

**The universe** (``universe``): the prompts and LLMs that trials draw from, fixed once per dataset
*before any split*, so a trial's test prompts are a seeded share of one fixed set - identical for
every router and every pool, whichever LLMs are unseen. Real tables are incomplete; no answer is
ever made up. Coverage policies (``--coverage``):

* ``block`` (default): the largest complete block of the table - the set of LLMs that maximises the
  number of (prompt, LLM) cells on prompts every one of them answered, with the prompts they all
  answered. Found deterministically: the best prefix of LLMs ordered by coverage (most prompts
  first, ties by name), then single-LLM additions and removals while they enlarge the block.
  LLMs outside the block are left out of every trial (listed with their coverage);
* ``all-llms``: every LLM; the prompts every LLM answered (refused if fewer than ``MIN_PROMPTS``).

Inside the universe every cell is evaluated, so the deferral curve never needs a made-up answer.
Each run says in one line what was left out and records it in config.yaml and the report.

**A trial** is a seed: a split of the universe's prompts into train / validation / test and of its
LLMs into a training pool and an unseen test pool. ``unseen_frac = 1`` puts every LLM in the unseen
pool (no training LLMs: routers that need them are skipped); ``unseen_strongest = k`` makes the universe's k most
accurate LLMs the unseen pool in every trial (routing must extrapolate beyond the training LLMs).
``train_categories`` takes training prompts only from those prompt categories; validation and test prompts then
come from the other categories, split in the ratio val_frac : test_frac (or ``val_size`` validation prompts).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ..data.folder import Dataset
from ..errors import ConfigError, DataError

COVERAGE_POLICIES = ("block", "all-llms")
MIN_PROMPTS = 10  # a universe needs at least this many prompts (and 2 LLMs)


# --------------------------------------------------------------------------------------------
# the universe
# --------------------------------------------------------------------------------------------
def fractions_off(fr: tuple | list, val_size: int | None, train_categories: tuple | list | None) -> bool:
    """True if train/val/test fractions must sum to 1 and do not (a fixed val_size or training categories
    set the validation and training parts by count or category instead)."""
    return val_size is None and not train_categories and abs(sum(fr) - 1) > 1e-6


@dataclass(frozen=True)
class Universe:
    policy: str
    prompts: np.ndarray  # sorted dataset row indices trials draw prompts from
    models: np.ndarray  # sorted dataset column indices trials draw LLMs from
    dropped: tuple[tuple[str, int], ...]  # (LLM, prompts it answered) left out
    n_prompts_total: int
    n_models_total: int

    @property
    def n_prompts_out(self) -> int:
        return self.n_prompts_total - len(self.prompts)

    def summary(self) -> dict:
        return {"coverage": self.policy, "n_prompts": int(len(self.prompts)), "n_models": int(len(self.models)),
                "n_prompts_total": self.n_prompts_total, "n_models_total": self.n_models_total,
                "prompts_left_out": int(self.n_prompts_out),
                "models_left_out": {name: int(n) for name, n in self.dropped}, "masked_cells": 0}


def unseen_count(unseen_frac: float, m: int) -> int:
    """LLMs of the unseen pool when ``unseen_frac`` of the universe's ``m`` LLMs are drawn for it (at least
    one, and one left for training unless the fraction is 1)."""
    return m if unseen_frac >= 1 else min(m - 1, max(1, int(round(unseen_frac * m))))


def pool_warning(cfg: SplitConfig, m: int) -> str | None:
    """A line when every trial's unseen pool holds a single LLM: routing then has nothing to choose."""
    if cfg.unseen_models or cfg.unseen_source is not None or cfg.unseen_strongest \
            or unseen_count(cfg.unseen_frac, m) != 1:
        return None
    return (f"warning: the unseen pool holds 1 of the universe's {m} LLMs (--unseen-frac {cfg.unseen_frac:g}): every "
            "router sends every prompt to it and all Areas are equal; raise --unseen-frac or use a larger table")


def universe_line(u: dict) -> str:
    """One line saying what a universe keeps and leaves out (from ``Universe.summary()``)."""
    s = (f"universe (--coverage {u.get('coverage')}): {u.get('n_models')} of {u.get('n_models_total')} LLMs, "
         f"{u.get('n_prompts', 0):,} of {u.get('n_prompts_total', 0):,} prompts")
    dropped = u.get("models_left_out") or {}
    if dropped:
        shown = ", ".join(f"{n} ({c:,} prompts answered)" for n, c in list(dropped.items())[:4])
        s += f"; left out {len(dropped)} LLM(s): {shown}" + (" ..." if len(dropped) > 4 else "")
    if u.get("prompts_left_out"):
        s += f"; left out {u['prompts_left_out']:,} prompts not answered by every kept LLM"
    return s + f"; {u.get('masked_cells', 0)} cells masked"


def _best_block(obs: np.ndarray, names: list[str]) -> np.ndarray:
    """Boolean mask of LLMs maximising (LLMs kept) x (prompts answered by all of them); see module doc."""
    n, m = obs.shape
    cover = obs.sum(axis=0)
    order = sorted(range(m), key=lambda j: (-int(cover[j]), names[j]))
    run = np.ones(n, dtype=bool)
    best_cells, best_k = -1, 0
    for k, j in enumerate(order, start=1):
        run &= obs[:, j]
        cells = k * int(run.sum())
        if k >= 2 and cells > best_cells:
            best_cells, best_k = cells, k
    keep = np.zeros(m, dtype=bool)
    keep[order[:best_k]] = True
    for _ in range(2 * m):  # local search: one addition or removal at a time while the block grows
        complete = obs[:, keep].all(axis=1)
        k, base = int(keep.sum()), int(complete.sum())
        best_move, best_val = None, k * base
        missing = (~obs[:, keep]).sum(axis=1)
        only = np.flatnonzero(missing == 1)
        if k > 2 and only.size:
            kept = np.flatnonzero(keep)
            lone = kept[np.argmin(obs[np.ix_(only, kept)], axis=1)]
            gain = np.bincount(lone, minlength=m)
            for j in kept:
                val = (k - 1) * (base + int(gain[j]))
                if val > best_val:
                    best_move, best_val = j, val
        for j in np.flatnonzero(~keep):
            val = (k + 1) * int((complete & obs[:, j]).sum())
            if val > best_val:
                best_move, best_val = j, val
        if best_move is None:
            break
        keep[best_move] = not keep[best_move]
    return keep


def universe(ds: Dataset, policy: str = "block") -> Universe:
    """The fixed set of prompts and LLMs that every trial of ``ds`` draws from (memoised on ``ds``)."""
    if policy not in COVERAGE_POLICIES:
        raise ConfigError(f"--coverage {policy!r}: expected one of {', '.join(COVERAGE_POLICIES)}")
    key = ("universe", policy)
    if key not in ds.extra:
        obs = ~np.isnan(ds.scores)
        keep = _best_block(obs, ds.models) if policy == "block" else np.ones(ds.n_models, dtype=bool)
        cover = obs.sum(axis=0)
        dropped = tuple(sorted(((ds.models[j], int(cover[j])) for j in np.flatnonzero(~keep)),
                               key=lambda t: (t[1], t[0])))
        ds.extra[key] = Universe(policy, np.flatnonzero(obs[:, keep].all(axis=1)), np.flatnonzero(keep), dropped,
                                 ds.n_prompts, ds.n_models)
    u = ds.extra[key]
    if len(u.models) < 2 or len(u.prompts) < MIN_PROMPTS:
        best = f"{len(u.models)} LLMs x {len(u.prompts)} prompts"
        raise DataError(f"{ds.path}: no complete block of at least 2 LLMs x {MIN_PROMPTS} prompts under "
                        f"--coverage {policy} (best: {best}); every trial needs test prompts that every pool LLM "
                        "answered - add outcomes, or try --coverage block (see `unirouter data info`)")
    return u


# --------------------------------------------------------------------------------------------
# trials
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SplitConfig:
    train_frac: float = 0.6
    val_frac: float = 0.1
    test_frac: float = 0.3
    val_size: int | None = None  # validation prompts (overrides val_frac; the rest of non-test is training)
    val_reserve: int | None = None  # prompts held back for validation (the largest size of a sweep)
    unseen_frac: float = 1 / 3
    unseen_models: tuple[str, ...] = ()  # explicit unseen pool (fixed across trials)
    unseen_source: str | None = None  # models whose models.csv source equals this are the unseen pool
    unseen_strongest: int | None = None  # the unseen pool is the universe's this many most accurate LLMs
    coverage: str = "block"  # how the universe is fixed (COVERAGE_POLICIES)
    train_categories: tuple[str, ...] = ()  # training prompts only from these categories
    probe_strategy: str = "random"  # how a new LLM's val_size probes are picked from the reserve (probes.py)
    probe_batch: int = 10  # probes per batch of the adaptive strategy (adaptive.py)

    def _sizes(self, n: int) -> tuple[int, int, int]:
        """(test, validation, validation reserve) prompt counts out of ``n`` candidates. The reserve is
        the val_frac share (at least val_size and val_reserve); a new LLM answers val_size probes of it."""
        if self.train_categories:  # everything outside the training categories is validation or test
            share = int(round(self.val_frac / (self.val_frac + self.test_frac) * n))
            reserve = max(share, self.val_size or 0, self.val_reserve or 0)
            return n - reserve, self.val_size or reserve, reserve
        reserve = max(int(round(self.val_frac * n)), self.val_size or 0, self.val_reserve or 0)
        return int(round(self.test_frac * n)), self.val_size or reserve, reserve

    def check(self, ds: Dataset) -> Universe:
        fr = (self.train_frac, self.val_frac, self.test_frac)
        if any(not (0 <= f <= 1) for f in fr):
            raise ConfigError(f"split fractions must lie in [0, 1], got train/val/test = {fr}")
        if fractions_off(fr, self.val_size, self.train_categories):
            raise ConfigError(f"split fractions must sum to 1, got {self.train_frac} + {self.val_frac} + "
                              f"{self.test_frac} = {sum(fr):g}")
        from .probes import check_strategy

        check_strategy(self.probe_strategy)
        u = universe(ds, self.coverage)
        names = [ds.models[j] for j in u.models]
        if self.train_categories:
            if self.val_frac + self.test_frac <= 0:
                raise ConfigError("--train-categories needs val_frac + test_frac > 0")
            cats = ds.categories[u.prompts]
            unknown = sorted(set(self.train_categories) - set(cats))
            if unknown:
                raise ConfigError(f"--train-categories {', '.join(unknown)}: not a prompt category of "
                                  f"{ds.name} (categories: {', '.join(sorted(set(cats)))})")
            n_train = int(np.isin(cats, self.train_categories).sum())
            n_other = len(cats) - n_train
        else:
            n_train, n_other = None, len(u.prompts)
        n_test, n_val, reserve = self._sizes(n_other)
        left = (n_train if n_train is not None else n_other - n_test - reserve)
        if self.val_size and n_test >= 1 and left < 1 and self.val_size == reserve:
            most = n_other - n_test - (0 if n_train is not None else 1)
            raise ConfigError(f"--val-size {self.val_size}: more validation prompts than the split leaves; "
                              f"{len(u.prompts)} prompts in the universe, {n_test} of them test, so at most "
                              f"{max(most, 0)} can be validation prompts")
        if n_val < 1 or n_test < 1 or left < 1:
            raise ConfigError(f"split leaves an empty part: {len(u.prompts)} prompts in the universe, {n_val} "
                              f"validation, {n_test} test (each of train/validation/test needs at least one prompt)")
        if self.unseen_models:
            unknown = [m for m in self.unseen_models if m not in ds.models]
            if unknown:
                raise ConfigError(f"--unseen model(s) not in dataset {ds.name}: {', '.join(unknown[:3])}")
            out = [m for m in self.unseen_models if m not in names]
            if out:
                raise ConfigError(f"--unseen model(s) left out of the universe (--coverage {self.coverage}): "
                                  f"{', '.join(out[:3])}; see `unirouter data info {ds.name}`")
        elif self.unseen_strongest is not None:
            if not 1 <= self.unseen_strongest < len(names):
                raise ConfigError(f"--unseen-strongest {self.unseen_strongest}: expected 1 to {len(names) - 1} (the "
                                  f"universe has {len(names)} LLMs and at least one must be a training LLM)")
        elif self.unseen_source is not None:
            k = int((ds.model_source[u.models] == self.unseen_source).sum())
            if k == 0:
                raise ConfigError(f"--unseen-source {self.unseen_source!r} selects none of the {len(names)} LLMs "
                                  "of the universe (models.csv column source)")
        elif not (0 < self.unseen_frac <= 1):
            raise ConfigError(f"unseen fraction must lie in (0, 1], got {self.unseen_frac} "
                              "(1 = every LLM unseen, no training LLMs)")
        return u

    def to_dict(self) -> dict:
        d = asdict(self)
        d["unseen_models"] = list(self.unseen_models)
        d["train_categories"] = list(self.train_categories)
        return d


def strongest(ds: Dataset, u: Universe, k: int) -> np.ndarray:
    """Dataset columns of the universe's ``k`` most accurate LLMs: mean score over the universe's prompts (complete
    there), ties by name. A property of the table, the same in every trial."""
    acc = ds.scores[np.ix_(u.prompts, u.models)].astype(np.float64).mean(axis=0)
    order = sorted(range(len(u.models)), key=lambda i: (-acc[i], ds.models[u.models[i]]))
    return np.sort(u.models[order[:k]])


@dataclass
class Trial:
    index: int
    seed: int
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    train_models: np.ndarray
    test_models: np.ndarray
    info: dict = field(default_factory=dict)
    reserve: np.ndarray | None = None  # the validation reserve (probe candidates) of an adaptive trial

    def rng(self, salt: int = 0) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.index, salt])

    def router_seed(self, salt: int = 0) -> int:
        return int(self.rng(salt).integers(0, 2**31 - 1))


def make_trial(ds: Dataset, cfg: SplitConfig, seed: int, index: int, X: np.ndarray | None = None) -> Trial:
    """Split the universe's prompts and LLMs for trial ``index``; identical (seed, index) -> identical split.

    The validation prompts are ``val_size`` probes picked from the trial's validation reserve by
    ``cfg.probe_strategy`` (probes.py), from the embeddings ``X`` and the *training* LLMs' answers on
    the reserve only; ``random`` takes a seeded prefix, so smaller sizes nest in larger ones. An ``adaptive``
    trial also keeps the whole reserve (``Trial.reserve``): each pool LLM's probes are chosen from it when the
    pool is profiled (trial.py), while the routers are fitted with ``random``'s probes.
    """
    from .probes import ADAPTIVE, ProbeContext, select_probes

    u = universe(ds, cfg.coverage)
    rng = np.random.default_rng([seed, index])
    P = u.prompts
    if cfg.train_categories:
        in_train = np.isin(ds.categories[P], cfg.train_categories)
        train, other = P[in_train], P[~in_train]
        perm = other[rng.permutation(len(other))]
        n_test, n_val, reserve = cfg._sizes(len(other))
    else:
        n = len(P)
        perm = P[rng.permutation(n)]
        n_test, n_val, reserve = cfg._sizes(n)
        rest = perm[n_test + reserve:]
        if cfg.val_size is None and abs(cfg.train_frac + cfg.val_frac + cfg.test_frac - 1) < 1e-6:
            train = rest
        else:
            train = rest[: max(1, int(round(cfg.train_frac * n)))]
    test = np.sort(perm[:n_test])
    cand = np.sort(perm[n_test:n_test + reserve])
    M = u.models
    m = len(M)
    names = np.asarray(ds.models)[M]
    if cfg.unseen_models:
        is_test = np.isin(names, list(cfg.unseen_models))
    elif cfg.unseen_strongest:
        is_test = np.isin(M, strongest(ds, u, cfg.unseen_strongest))
    elif cfg.unseen_source is not None:
        is_test = ds.model_source[M] == cfg.unseen_source
    else:
        k = unseen_count(cfg.unseen_frac, m)
        is_test = np.zeros(m, dtype=bool)
        is_test[rng.permutation(m)[:k]] = True
    train_models = M[~is_test]
    if n_val < len(cand):
        if cfg.probe_strategy != "random" and X is None:
            raise ValueError("make_trial needs the embeddings X for probe strategy " + cfg.probe_strategy)
        ctx = ProbeContext(X=None if X is None else X[cand],
                           E_train=1.0 - ds.scores[np.ix_(cand, train_models)].astype(np.float32),
                           seed=int(np.random.default_rng([seed, index, 3]).integers(2**31 - 1)))
        val = cand[select_probes(cfg.probe_strategy, n_val, ctx)]
    else:
        val = cand
    return Trial(index=index, seed=seed, train=np.sort(train), val=val, test=test, train_models=train_models,
                 test_models=M[is_test], info={"reserve": int(len(cand)), "probe_batch": cfg.probe_batch},
                 reserve=cand if cfg.probe_strategy == ADAPTIVE and n_val < len(cand) else None)
