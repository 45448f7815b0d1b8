"""Stage 3 - trials: a seed fixes the split of prompts (train / validation / test) and of LLMs
(training pool / unseen test pool).

Missing-pair policy (the real tables have some (prompt, LLM) pairs that were never evaluated):
* training and validation prompts keep every row; an unevaluated pair is masked (NaN) and simply
  left out of every mean and loss that would use it;
* a test prompt is scored for a pool only if *every* LLM of that pool was evaluated on it
  (``complete_rows``), so the deferral curve never needs a made-up answer. The number of test
  prompts kept is written to metrics.csv (``n_test``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from .data import Dataset
from .errors import ConfigError


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

    def check(self, ds: Dataset) -> None:
        fr = (self.train_frac, self.val_frac, self.test_frac)
        if any(not (0 <= f <= 1) for f in fr):
            raise ConfigError(f"split fractions must lie in [0, 1], got train/val/test = {fr}")
        if self.val_size is None and abs(sum(fr) - 1) > 1e-6:
            raise ConfigError(f"split fractions must sum to 1, got {self.train_frac} + {self.val_frac} + "
                              f"{self.test_frac} = {sum(fr):g}")
        n_test = int(round(self.test_frac * ds.n_prompts))
        n_val = self.val_size if self.val_size is not None else int(round(self.val_frac * ds.n_prompts))
        n_val = max(n_val, self.val_reserve or 0)
        if n_val < 1 or n_test < 1 or ds.n_prompts - n_test - n_val < 1:
            raise ConfigError(f"split leaves an empty part: {ds.n_prompts} prompts, {n_val} validation, "
                              f"{n_test} test (each of train/validation/test needs at least one prompt)")
        if self.unseen_models:
            unknown = [m for m in self.unseen_models if m not in ds.models]
            if unknown:
                raise ConfigError(f"--unseen model(s) not in dataset {ds.name}: {', '.join(unknown[:3])}")
            if len(self.unseen_models) >= ds.n_models:
                raise ConfigError(f"{len(self.unseen_models)} unseen LLMs requested but the dataset has "
                                  f"{ds.n_models}; at least one must stay in the training pool")
        elif self.unseen_source is not None:
            k = int((ds.model_source == self.unseen_source).sum())
            if k == 0 or k == ds.n_models:
                raise ConfigError(f"--unseen-source {self.unseen_source!r} selects {k} of {ds.n_models} LLMs; "
                                  "it must select some but not all (models.csv column source)")
        else:
            if not (0 < self.unseen_frac < 1):
                raise ConfigError(f"unseen fraction must lie in (0, 1), got {self.unseen_frac}")
            if ds.n_models < 2:
                raise ConfigError(f"dataset {ds.name} has {ds.n_models} LLM; splitting needs at least 2")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["unseen_models"] = list(self.unseen_models)
        return d


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

    def rng(self, salt: int = 0) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.index, salt])

    def router_seed(self, salt: int = 0) -> int:
        return int(self.rng(salt).integers(0, 2**31 - 1))


def make_trial(ds: Dataset, cfg: SplitConfig, seed: int, index: int) -> Trial:
    """Split prompts and LLMs for trial ``index``; identical (seed, index) -> identical split."""
    rng = np.random.default_rng([seed, index])
    n = ds.n_prompts
    perm = rng.permutation(n)
    n_test = int(round(cfg.test_frac * n))
    n_val = cfg.val_size if cfg.val_size is not None else int(round(cfg.val_frac * n))
    test = np.sort(perm[:n_test])
    val = np.sort(perm[n_test:n_test + n_val])
    rest = perm[n_test + max(n_val, cfg.val_reserve or 0):]
    if cfg.val_size is None and abs(cfg.train_frac + cfg.val_frac + cfg.test_frac - 1) < 1e-6:
        train = np.sort(rest)
    else:
        train = np.sort(rest[: max(1, int(round(cfg.train_frac * n)))])
    m = ds.n_models
    if cfg.unseen_models:
        is_test = np.isin(np.asarray(ds.models), list(cfg.unseen_models))
    elif cfg.unseen_source is not None:
        is_test = ds.model_source == cfg.unseen_source
    else:
        k = min(m - 1, max(1, int(round(cfg.unseen_frac * m))))
        is_test = np.zeros(m, dtype=bool)
        is_test[rng.permutation(m)[:k]] = True
    return Trial(index=index, seed=seed, train=train, val=val, test=test,
                 train_models=np.flatnonzero(~is_test), test_models=np.flatnonzero(is_test))


def complete_rows(scores: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """The subset of ``rows`` on which every model in ``cols`` was evaluated."""
    ok = ~np.isnan(scores[np.ix_(rows, cols)]).any(axis=1)
    return rows[ok]
