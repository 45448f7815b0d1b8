"""Shared set-up of the diagnostics: the protocol's trials of a bundled dataset (unseen pool, default split,
tfidf) and the Area of a router's estimates on one of them."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from unirouter_cli.data.folder import Dataset
from unirouter_cli.data.registry import load_dataset
from unirouter_cli.embed.encoders import get_embeddings
from unirouter_cli.protocol.metrics import curve_metrics, deferral_curve
from unirouter_cli.protocol.trial import errors, fit_data
from unirouter_cli.protocol.universe import SplitConfig, Trial, make_trial
from unirouter_cli.routers import FitData, Pool, Router


@dataclass
class TrialData:
    """One trial: what routers fit on (``data``), the unseen pool with its validation answers, the test
    prompts' embeddings and the pool's scores and costs there."""

    ds: Dataset
    X: np.ndarray
    trial: Trial
    data: FitData
    pool: Pool
    S: np.ndarray
    C: np.ndarray

    def area(self, router: Router, pool: Pool | None = None) -> float:
        """Area of ``router``'s deferral curve on the test prompts for ``pool`` (default: the trial's)."""
        g = np.asarray(router.predict(self.X[self.trial.test], pool or self.pool), dtype=np.float64)
        return float(curve_metrics(deferral_curve(g, self.S, self.C), self.S, self.C)["area"])


def arguments(description: str, seed: int, trials: int) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--dataset", default="mmlu-pro")
    ap.add_argument("--seed", type=int, default=seed)
    ap.add_argument("--trials", type=int, default=trials)
    return ap


def trials(dataset: str, seed: int, n: int, needs_all: bool = False) -> Iterator[TrialData]:
    """Trials 0..n-1 of ``seed`` on ``dataset`` (``needs_all``: FitData for the clairvoyant references too)."""
    ds = load_dataset(dataset)
    X = get_embeddings(ds, "tfidf")
    for t in range(n):
        tr = make_trial(ds, SplitConfig(), seed, t, X)
        cols = tr.test_models
        pool = Pool(models=[ds.models[j] for j in cols], X_val=X[tr.val], E_val=errors(ds, tr.val, cols))
        yield TrialData(ds, X, tr, fit_data(ds, X, tr, needs_all=needs_all), pool,
                        ds.scores[np.ix_(tr.test, cols)].astype(np.float64), ds.cost_matrix(tr.test, cols))
