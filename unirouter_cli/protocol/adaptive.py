"""Adaptive probe selection: a new LLM's next probes are chosen from the answers it has already given.

The model is foldin's fold-in (routers/factor.py). Per ensemble member, a new LLM's vector ``t`` has the prior
N(mu, P0^-1) and answers candidate prompt i wrongly with probability sigmoid(f_i . t), f_i the candidate's prompt
features. Probes are asked in batches. Before each batch the Laplace posterior of every member is recomputed from
the answers so far (the MAP by ``fold_in``; precision P0 + sum over asked probes of p_i (1 - p_i) f_i f_i'), and the
batch is chosen greedily. The default criterion (``CRITERION = "v"``) is V-optimal for routing: each pick maximises
the expected reduction of the predictive variance of the LLM's error probability summed over every candidate,
sum_i w_i^2 (f_i' Sigma f_j)^2 w_j / (1 + w_j f_j' Sigma f_j) with w = p (1 - p) (the delta method), summed over the
members; it favours probes that inform many typical prompts over extreme-norm ones. The D-optimal criterion
log(1 + w_j f_j' Sigma f_j) (the log-determinant gain of the posterior precision), stays selectable
(``criterion="d"``). After each pick Sigma is updated by Sherman-Morrison before the next pick of the same batch
(the answers of a batch arrive together). The V-optimal sum costs one k x k matrix per member and batch
(sum_i w_i^2 f_i f_i'), so a pick costs O(n_cand k^2), as the D-optimal one does.

The design depends only on answers already given, so it is ignorable for likelihood-based inference: the fold-in of
the asked answers needs no weights. Plain means over the asked probes (K-means, K-NN, ZeroRouter) would be biased by
it; ``model_profile`` gives those routers a profile over every candidate instead: the answer where asked, foldin's
posterior predictive elsewhere (model-based, so their profiles inherit foldin's model).

Pure numpy. The answers come from a callback (``profile``, used by trials) or a user (``Session``, used by built
routers), so both run the same selection. No random draw: ties go to the lowest candidate position, so the same
answers give the same probes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from ..routers.factor_model import features, fold_in, prior_precision, sigmoid

BATCH = 10  # probes per batch unless told otherwise
CRITERIA = ("v", "d")  # V-optimal (the default) or D-optimal; see _gains
CRITERION = "v"


@dataclass(frozen=True)
class DesignModel:
    """What the selection needs from a fitted foldin: per ensemble member, the candidates' prompt features
    ``F`` (n_cand, k) and the prior mean and precision of a new LLM's vector."""

    F: tuple[np.ndarray, ...]
    mu: tuple[np.ndarray, ...]
    prec: tuple[np.ndarray, ...]

    @classmethod
    def from_foldin(cls, router: object, X_cand: np.ndarray) -> DesignModel:
        """The design model of a fitted ``FoldInRouter`` on the candidate prompts' embeddings ``X_cand``."""
        members = router.members_  # type: ignore[attr-defined]
        return cls(F=tuple(features(M, router.x_mean_, X_cand) for M, *_ in members),  # type: ignore[attr-defined]
                   mu=tuple(np.asarray(mu, dtype=np.float64) for _, mu, _, _ in members),
                   prec=tuple(prior_precision(np.array(cov, dtype=np.float64), router.tau_)  # type: ignore[attr-defined]
                              for _, _, cov, _ in members))

    @property
    def n_cand(self) -> int:
        return int(len(self.F[0]))


def posterior(model: DesignModel, E: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per member: the predicted error probabilities P (n_cand, c) at the MAP of each column of ``E`` (answers on
    the candidates, NaN = not asked) and the Laplace posterior covariances Sigma (c, k, k)."""
    ob = (~np.isnan(E)).astype(np.float64)
    out = []
    for F, mu, prec in zip(model.F, model.mu, model.prec, strict=True):
        T = fold_in(F, E, mu, prec)
        P = sigmoid(F @ T.T)
        n, k = F.shape
        outer = (F[:, :, None] * F[:, None, :]).reshape(n, k * k)
        H = ((ob * P * (1 - P)).T @ outer).reshape(-1, k, k) + prec
        out.append((P, np.linalg.inv(H)))
    return out


def _gains(F: np.ndarray, w: np.ndarray, S: np.ndarray, M: np.ndarray | None) -> np.ndarray:
    """One member's gain of each candidate: D-optimal log(1 + w f' S f) when ``M`` is None, else the V-optimal
    reduction of the summed predictive variance of the error probabilities, w (f' S M S f) / (1 + w f' S f) with
    M = sum_i w_i^2 f_i f_i' over every candidate (the delta method: var p_i ~ w_i^2 f_i' S f_i)."""
    FS = F @ S
    q = np.einsum("ik,ik->i", FS, F)
    if M is None:
        return np.log1p(w * q)
    return w * ((FS @ M) * FS).sum(axis=1) / (1 + w * q)


def next_batch(model: DesignModel, E: np.ndarray, b: int, criterion: str | None = None) -> list[np.ndarray]:
    """For each column of ``E`` (one LLM's answers on the candidates, NaN = not asked), the positions of its next
    ``b`` probes (fewer when fewer candidates are left), in the order picked, by ``criterion`` ("v" or "d", see
    ``_gains``; None: the module's ``CRITERION``)."""
    criterion = CRITERION if criterion is None else criterion
    if criterion not in CRITERIA:
        raise ConfigError(f"unknown adaptive criterion {criterion!r}; choose from {', '.join(CRITERIA)}")
    post = posterior(model, E)
    asked = ~np.isnan(E)
    out = []
    for j in range(E.shape[1]):
        taken = asked[:, j].copy()
        sig = [S[j].copy() for _, S in post]
        ws = [P[:, j] * (1 - P[:, j]) for P, _ in post]
        Ms = [(F * (w ** 2)[:, None]).T @ F if criterion == "v" else None for F, w in zip(model.F, ws, strict=True)]
        picks: list[int] = []
        for _ in range(min(b, int((~taken).sum()))):
            gain = np.zeros(model.n_cand)
            for F, w, S, M in zip(model.F, ws, sig, Ms, strict=True):
                gain += _gains(F, w, S, M)
            gain[taken] = -np.inf
            i = int(np.argmax(gain))  # (the first of equal gains)
            picks.append(i)
            taken[i] = True
            _update(model, ws, sig, i)
        out.append(np.asarray(picks, dtype=np.int64))
    return out


def _update(model: DesignModel, ws: list[np.ndarray], sig: list[np.ndarray], i: int) -> None:
    """Sherman-Morrison: every member's covariance after candidate ``i`` is asked (in place)."""
    for m, (F, w) in enumerate(zip(model.F, ws, strict=True)):
        Sf = sig[m] @ F[i]
        sig[m] = sig[m] - w[i] * np.outer(Sf, Sf) / (1 + w[i] * F[i] @ Sf)


def profile(model: DesignModel, answer: Callable[[int, np.ndarray], np.ndarray], n_llms: int, n: int,
            batch: int = BATCH) -> np.ndarray:
    """Profile ``n_llms`` LLMs adaptively with ``n`` probes each: ``answer(j, positions)`` returns LLM j's errors
    (0/1, or fractional) on the candidates at ``positions`` and is called only for probes the loop asks.
    Returns the answers (n_cand, n_llms), NaN where not asked."""
    if batch < 1:
        raise ConfigError(f"an adaptive batch needs at least one probe, got {batch}")
    E = np.full((model.n_cand, n_llms), np.nan)
    n = min(n, model.n_cand)
    for done in range(0, n, batch):
        for j, pos in enumerate(next_batch(model, E, min(batch, n - done))):
            E[pos, j] = np.asarray(answer(j, pos), dtype=np.float64)
    return E


def model_profile(router: object, X_cand: np.ndarray, E: np.ndarray) -> np.ndarray:
    """Errors on every candidate for plain-mean routers: the answer where asked, the fitted foldin ``router``'s
    posterior predictive (its gamma from the asked answers) elsewhere."""
    from ..routers.base import Pool

    G = np.asarray(router.predict(X_cand, Pool(models=[""] * E.shape[1], X_val=X_cand, E_val=E)),  # type: ignore[attr-defined]
                   dtype=np.float64)
    return np.where(np.isnan(E), G, E)


def profiles(design: object, X_cand: np.ndarray, answer: Callable[[int, np.ndarray], np.ndarray], n_llms: int,
             n: int, batch: int = BATCH) -> tuple[np.ndarray, np.ndarray]:
    """An adaptive profile of ``n_llms`` LLMs on the candidates, from the fitted foldin ``design``: (the answers
    asked, NaN elsewhere: what a likelihood-based router folds in; the model-based profile of ``model_profile``:
    what plain-mean routers average)."""
    E = profile(DesignModel.from_foldin(design, X_cand), answer, n_llms, n, batch)
    return E, model_profile(design, X_cand, E)


class Session:
    """One new LLM's adaptive profile, driven by its answers as they come. ``next(k)`` gives the positions of the
    next ``k`` probes (a function of the answers so far only: asking again before answering gives the same
    ones), ``answer(positions, errors)`` records answers, and ``errors`` holds them (NaN = not asked)."""

    def __init__(self, model: DesignModel) -> None:
        self.model = model
        self.errors = np.full(model.n_cand, np.nan)

    @property
    def asked(self) -> np.ndarray:
        """Positions answered so far."""
        return np.flatnonzero(~np.isnan(self.errors))

    def next(self, k: int = BATCH) -> np.ndarray:
        if k < 1:
            raise ConfigError(f"a batch needs at least one probe, got {k}")
        return next_batch(self.model, self.errors[:, None], k)[0]

    def answer(self, positions: np.ndarray, errors: np.ndarray) -> None:
        """Record errors (0/1 or fractional, in [0, 1]) at candidate ``positions`` not answered before."""
        pos = np.asarray(positions, dtype=np.int64).ravel()
        err = np.asarray(errors, dtype=np.float64).ravel()
        if len(pos) != len(err):
            raise ConfigError(f"{len(pos)} probe positions but {len(err)} answers")
        bad = pos[(pos < 0) | (pos >= self.model.n_cand)]
        if len(bad):
            raise ConfigError(f"probe position {int(bad[0])} is not a candidate (0..{self.model.n_cand - 1})")
        if len(np.unique(pos)) != len(pos) or (~np.isnan(self.errors[pos])).any():
            raise ConfigError("a probe was answered twice")
        if not np.all((err >= 0) & (err <= 1)):
            raise ConfigError("an answer is not an error in [0, 1] (1 = wrong, 0 = right)")
        self.errors[pos] = err
