"""Fold-in factor router: a logistic factor model whose prompt side is learned from the training LLMs
and whose LLM side is fitted for each new LLM from its validation answers alone.

Model: ``logit P(h wrong on x) = v_h . A (x - x_mean) + b_h``, with a prompt map ``A`` (r x D).

* **Prompt side** (``fit``): ``A`` and the training LLMs' ``(v_h, b_h)`` minimise the masked mean
  log-loss over training LLMs x (training + validation prompts) plus ``lam / n_obs * (|A|^2 + |V|^2)``, by
  L-BFGS at rank ``max_rank`` (the penalty on both factors is a nuclear-norm penalty on ``A' V'``; dividing by
  the number of observed cells makes ``lam`` a prior strength that does not depend on the table's
  size). A rank-r candidate is the rank-r SVD truncation of ``A' V'``. Rank 0 is the LLM bias alone
  (ZeroRouter on the logit scale); rank 1 is one prompt "difficulty" direction with a per-LLM slope.
* **Fold-in** (``predict``): each new LLM's ``(v_h, b_h)`` is the MAP of a logistic regression on its
  validation answers (NaN = not evaluated, masked) with the prompt side frozen and a Gaussian prior
  ``N(mu, Sigma / tau)``: mean and Ledoit-Wolf covariance of the training LLMs' vectors (bias variance
  at least ``BIAS_VAR_FLOOR``). Newton's method, one small problem per LLM, so an LLM's gamma depends
  on its own answers only.

Hyperparameters (``rank``, ``lam``, ``tau``) set to ``"auto"`` are chosen inside each trial from training
and validation data only, by held-out log-loss in a cross-fold over *both* axes (on at most ``CV_ROWS``
training prompts): fold f trains the prompt side on the prompts outside prompt part f and the training
LLMs outside LLM part f, folds in the LLMs of part f on the validation prompts (as unseen LLMs are) and
scores them on the prompts of part f, which the prompt side never saw. Holding out LLMs alone would
score the prompt side on the very cells it was trained on. The log-loss of every held-out cell is used
rather than a deferral-curve Area: the model is probabilistic, the log-loss is a proper score, and the
Area of a fold's few held-out LLMs is noisy. ``lam`` and ``rank`` are chosen first (``tau`` = 1; see
``choose``: rank 0 unless a factor beats it by more than one standard error, then the largest capacity
within one standard error of the best), then ``tau`` by the lowest held-out loss at the chosen pair.
The cross-fold's prompt sides see training prompts only; the final one also learns from the training LLMs'
answers on the validation prompts (the prompts every new LLM is folded in on; ``val_prompts=False`` turns this
off; docs/method.md gives the measurement behind this choice).
gamma is the mean over an ensemble of truncation ranks of one prompt side (``ensemble_ranks``: the
positive ranks up to the chosen one that the cross-fold cannot tell from the best), each rank with its
own prior and fold-in; a single rank when only one qualifies.

**Neighbour mixture** (``mix``, ``mix_temp``; off by default, ``mix="auto"`` turns it on): a second
estimate of a new LLM's gamma that leans on the training LLMs' whole profiles rather than on one Gaussian:
"the new LLM answers like training LLM j, with a bias of its own" (one shift per pair, ``neighbour_fit``),
averaged over j with weights softmax(``mix_temp`` x log-likelihood of the new LLM's validation answers).
gamma = (1 - mix) x fold-in + mix x mixture. Stage 3 of the cross-fold chooses (mix, mix_temp) at the
chosen prompt side and tau; mix = 0 (fold-in alone) unless a mixture beats it by more than one standard
error, as a factor must beat rank 0.
"""

from __future__ import annotations

import numpy as np

from .base import FitData, Param, Pool, Router, candidates, masked_mean, subset
from .factor_model import (
    Losses,
    blend,
    choose,
    ensemble_ranks,
    features,
    fold_in,
    gaussian_prior,
    heldout_logloss,
    neighbour_fit,
    neighbour_gamma,
    neighbour_weights,
    prior_precision,
    sigmoid,
    train_factors,
    truncate,
)
from .registry import register_router

RANK_GRID = [0, 1, 2, 4, 8, 16]
LAM_GRID = [2.0, 6.0, 20.0]
TAU_GRID = [0.03, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0]
MIX_WEIGHT_GRID = [0.0, 0.3, 0.5]  # 0: no neighbour mixture
MIX_TEMP_GRID = [0.1, 0.2, 0.5, 1.0]
CV_ROWS = 3_000  # training prompts the cross-fold selection uses (a seeded subset)


def prompt_side_extra(data: FitData, none: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The validation prompts and the training LLMs' answers there: training data for the prompt side too
    (the new LLMs' answers on them are used only by the fold-in). Empty with no training LLMs (or ``none``)."""
    if none or data.pool_labels or data.X_val is None or not len(data.X_val):
        return np.zeros((0, data.X_train.shape[1]), dtype=data.X_train.dtype), np.zeros((0, data.n_train_models))
    return np.asarray(data.X_val), np.asarray(data.E_val, dtype=np.float64)


@register_router
class FoldInRouter(Router):
    name = "foldin"
    help = ("fold-in factor model: gamma = sigmoid(v_h . A x + b_h), A learned on the training LLMs, (v_h, b_h) from "
            "the new LLM's validation answers")
    parameters = {
        "rank": Param(int, low=0, high=256, auto=True, grid=True, help="rank of the prompt map (0 = LLM bias only)"),
        "lam": Param(float, low=0, high=1e6, auto=True, grid=True,
                     help="factor penalty (prior strength, independent of the table's size)"),
        "tau": Param(float, low=0, low_open=True, high=1e6, auto=True, grid=True,
                     help="strength of the Gaussian prior on a new LLM's vector"),
        "max_rank": Param(int, low=1, high=256, help="rank of the trained prompt side"),
        "folds": Param(int, low=2, high=20, help="cross-fold parts (prompts and LLMs)"),
        "maxiter": Param(int, low=1, high=100_000, help="L-BFGS iterations"),
        "val_prompts": Param(bool, help="the final prompt side also learns from the training LLMs' answers on the "
                             "validation prompts"),
        "mix": Param(float, low=0, high=1, auto=True, grid=True,
                     help="weight of the neighbour mixture in gamma (0 = fold-in alone, the default; auto = chosen "
                          "in each trial)"),
        "mix_temp": Param(float, low=0, low_open=True, high=1e6, auto=True, grid=True,
                          help="temperature of the neighbour mixture's likelihood weights"),
    }
    fit_by_default = True
    order = 8

    def __init__(self, rank: int | list[int] | str = "auto", lam: float | list[float] | str = "auto",
                 tau: float | list[float] | str = "auto", max_rank: int = 16, folds: int = 3, maxiter: int = 80,
                 val_prompts: bool = True, mix: float | list[float] | str = 0.0,
                 mix_temp: float | list[float] | str = "auto") -> None:
        super().__init__()
        self.rank = rank
        self.lam = lam
        self.tau = tau
        self.max_rank = max_rank
        self.folds = folds
        self.maxiter = maxiter
        self.val_prompts = val_prompts
        self.mix = mix
        self.mix_temp = mix_temp

    def _grids(self, data: FitData) -> tuple[list[int], list[float], list[float], list[float], list[float]]:
        ranks = [int(r) for r in candidates(self.params["rank"], RANK_GRID)]
        lams = [float(v) for v in candidates(self.params["lam"], LAM_GRID)]
        taus = [float(v) for v in candidates(self.params["tau"], TAU_GRID)]
        mixes = [float(v) for v in candidates(self.params["mix"], MIX_WEIGHT_GRID)]
        temps = [float(v) for v in candidates(self.params["mix_temp"], MIX_TEMP_GRID)]
        if data.n_train_models < 2:  # no LLM to hold out, nothing to check a factor or a prior strength on
            ranks, lams, taus = [0], lams[:1], [1.0 if self.params["tau"] == "auto" else taus[0]]
            mixes = [0.0 if self.params["mix"] == "auto" else mixes[0]]  # (nothing to choose it on)
        if mixes == [0.0] or data.n_train_models < 2:
            temps = temps[:1]  # no mixture (or nothing to choose it on): its temperature is not chosen
        return ranks, lams, taus, mixes, temps

    def _select(self, data: FitData, ranks: list[int], lams: list[float], taus: list[float], mixes: list[float],
                temps: list[float]) -> tuple[list[int], float, float, float, float, dict[str, float]]:
        rows = subset(len(data.X_train), CV_ROWS, data.seed)
        X, E = data.X_train[rows], data.E_train[rows]
        n, m = E.shape
        F = min(int(self.params["folds"]), m)
        rng = np.random.default_rng([data.seed, 11])
        prompt_part, llm_part = rng.permutation(n) % F, rng.permutation(m) % F
        rmax = max(int(self.params["max_rank"]), max(ranks))
        tau1 = 1.0 if 1.0 in taus else taus[len(taus) // 2]  # stage 1 prior strength
        losses: dict[tuple, Losses] = {}  # (lam, ranks, tau) -> held-out losses
        cells = 0.0
        fits: dict[tuple, tuple] = {}  # (fold, lam, rank) -> validation and held-out features, prior, LLM vectors
        last: dict[tuple, np.ndarray] = {}  # (fold, lam, rank) -> the latest fold-in, to start the next from
        held_gamma: dict[tuple, np.ndarray] = {}  # (fold, lam, rank, tau) -> gamma on the held-out cells

        def parts(f: int) -> tuple[np.ndarray, np.ndarray]:
            return np.flatnonzero(prompt_part == f), np.flatnonzero(llm_part == f)

        def gamma(lam: float, r: int, tau: float, f: int) -> np.ndarray:
            if (f, lam, r, tau) not in held_gamma:
                Fv, Fo, mu, cov, _ = fits[(f, lam, r)]
                T = last[(f, lam, r)] = fold_in(Fv, data.E_val[:, parts(f)[1]], mu, prior_precision(cov, tau),
                                                last.get((f, lam, r)))
                held_gamma[(f, lam, r, tau)] = sigmoid(Fo @ T.T)
            return held_gamma[(f, lam, r, tau)]

        def score(key: tuple, f: int, G: np.ndarray) -> None:
            po, lo = parts(f)
            losses.setdefault(key, Losses(n, m)).add(po, lo, heldout_logloss(G, E[np.ix_(po, lo)]))

        for f in range(F):
            pi, po = np.flatnonzero(prompt_part != f), np.flatnonzero(prompt_part == f)
            li, lo = np.flatnonzero(llm_part != f), np.flatnonzero(llm_part == f)
            cells += float((~np.isnan(E[np.ix_(po, lo)])).sum())
            init = None
            for lam in sorted(lams):  # warm start from the weakest penalty (a zero solution would stall the path)
                P = train_factors(X[pi], E[np.ix_(pi, li)], rmax, lam, data.seed, int(self.params["maxiter"]), init)
                init = {k: P[k] for k in ("A", "V", "b")}
                for r in ranks:
                    M, T = truncate(P, r)
                    fits[(f, lam, r)] = (features(M, P["x_mean"], data.X_val), features(M, P["x_mean"], X[po]),
                                         *gaussian_prior(T), T)
                    score((lam, (r,), tau1), f, gamma(lam, r, tau1, f))
        single = {(k[0], k[1][0], k[2]): v for k, v in losses.items()}
        lam, r, _ = choose(single)
        members = ensemble_ranks(single, lam, r)

        def plain(tau: float, f: int) -> np.ndarray:
            return np.mean([gamma(lam, r, tau, f) for r in members], axis=0)

        for tau in sorted(taus, key=lambda t: abs(np.log(t / tau1))):  # outward from tau1: warm starts
            if (lam, members, tau) not in losses:
                for f in range(F):
                    score((lam, members, tau), f, plain(tau, f))
        stage2 = {k[2]: v.total for k, v in losses.items() if k[:2] == (lam, members)}
        tau = min(stage2, key=lambda t: (stage2[t], abs(np.log(t))))

        def mixture_stage(tau: float) -> tuple[float, float]:
            """Stage 3: the neighbour mixture's (weight, temperature) at the chosen prompt side and tau, by
            held-out loss; weight 0 (the fold-in alone) unless a mixture beats it by more than one standard error."""
            key0 = (lam, members, tau)
            if mixes == [0.0]:
                return 0.0, temps[0]
            for f in range(F):
                g0, Ev = plain(tau, f), data.E_val[:, parts(f)[1]]
                gm = dict.fromkeys(temps, 0.0)
                for r in members:
                    Fv, Fo, _, _, T = fits[(f, lam, r)]
                    d, ll = neighbour_fit(Fv @ T.T, Ev)
                    for t in temps:
                        gm[t] = gm[t] + neighbour_gamma(Fo @ T.T, *neighbour_weights(d, ll, t)) / len(members)
                for a in (a for a in mixes if a > 0):
                    for t in temps:
                        score((*key0, a, t), f, blend(g0, gm[t], a, Ev))
            mixed = {k[3:]: v for k, v in losses.items() if len(k) == 5 and k[:3] == key0}
            if not mixed:
                return 0.0, temps[0]
            best = min(mixed, key=lambda o: (mixed[o].total, o[0], o[1]))
            if 0.0 in mixes and losses[key0].within_one_se(mixed[best]):  # like a factor, it must earn its place
                return 0.0, temps[0]
            return best

        mix, temp = mixture_stage(tau)
        return list(members), lam, tau, mix, temp, {
            f"lam={k[0]:g},rank={'+'.join(map(str, k[1]))},tau={k[2]:g}" + (f",mix={k[3]:g}@{k[4]:g}" if len(k) > 3
                                                                            else ""): v.total / max(cells, 1.0)
            for k, v in losses.items()}

    def fit(self, data: FitData) -> FoldInRouter:
        ranks, lams, taus, mixes, temps = self._grids(data)
        members, lam, tau, mix, temp, self.selection_ = ranks[:1], lams[0], taus[0], mixes[0], temps[0], {}
        if len(ranks) * len(lams) * len(taus) * len(mixes) * len(temps) > 1:
            members, lam, tau, mix, temp, self.selection_ = self._select(data, ranks, lams, taus, mixes, temps)
        self.x_mean_ = data.X_train.mean(axis=0).astype(np.float64)
        self.members_ = []  # (prompt map M, prior mean, prior covariance, training LLM vectors) per rank
        if max(members) > 0:
            Xv, Ev = prompt_side_extra(data, none=not self.params["val_prompts"])
            rank = max(int(self.params["max_rank"]), max(members))
            P = train_factors(np.r_[data.X_train, Xv], np.r_[data.E_train, Ev], rank, lam, data.seed,
                              int(self.params["maxiter"]))
            self.x_mean_ = P["x_mean"]
            for r in members:
                M, T = truncate(P, r)
                if all(len(M) != len(N) for N, *_ in self.members_):  # ranks capped alike are one member
                    self.members_.append((M, *gaussian_prior(T), T))
        else:  # rank 0: the training LLMs' logit biases only
            err = masked_mean(data.E_train, axis=0, fallback=0.5) if data.n_train_models else np.array([0.5])
            p = np.clip(err, 0.01, 0.99)
            T = np.log(p / (1 - p))[:, None]
            self.members_.append((np.zeros((0, data.X_train.shape[1])), *gaussian_prior(T), T))
        self.tau_, self.mix_ = float(tau), (float(mix), float(temp))
        ranks_used = [int(M.shape[0]) for M, *_ in self.members_]
        self.hyperparams_ = {"rank": max(ranks_used), "ensemble": "+".join(map(str, ranks_used)), "lam": float(lam),
                             "tau": self.tau_, "mix": self.mix_[0]}
        if self.mix_[0] > 0:  # (a temperature of no mixture is not a choice)
            self.hyperparams_["mix_temp"] = self.mix_[1]
        return self

    def llm_vectors(self, pool: Pool) -> list[np.ndarray]:
        """Each pool LLM's [v, b] per ensemble member, folded in from its validation answers alone."""
        E = np.asarray(pool.E_val, dtype=np.float64)
        return [fold_in(features(M, self.x_mean_, pool.X_val), E, mu, prior_precision(cov, self.tau_))
                for M, mu, cov, _ in self.members_]

    def predict(self, X: np.ndarray, pool: Pool) -> np.ndarray:
        """The mean, over the ensemble's ranks, of sigmoid(v_h . M (x - x_mean) + b_h); with the neighbour
        mixture on (weight ``mix``), each rank's gamma is (1 - mix) x that + mix x the mixture's gamma."""
        mix, temp = self.mix_
        E = np.asarray(pool.E_val, dtype=np.float64)
        G = []
        for (M, _, _, T_train), T in zip(self.members_, self.llm_vectors(pool), strict=True):
            Fx = features(M, self.x_mean_, X)
            g = sigmoid(Fx @ T.T)
            if mix > 0:
                d, ll = neighbour_fit(features(M, self.x_mean_, pool.X_val) @ T_train.T, E)
                g = blend(g, neighbour_gamma(Fx @ T_train.T, *neighbour_weights(d, ll, temp)), mix, E)
            G.append(g)
        return np.mean(G, axis=0)

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        meta, _ = super().state()
        meta["tau"], meta["mix"] = self.tau_, list(self.mix_)
        arrays = {"x_mean": self.x_mean_}
        for i, (M, mu, cov, T) in enumerate(self.members_):
            arrays.update({f"M{i}": M, f"mu{i}": mu, f"cov{i}": cov})
            if T is not None:  # (None: loaded from a router saved before the neighbour mixture)
                arrays[f"T{i}"] = T
        meta["members"] = len(self.members_)
        return meta, arrays

    def load_state(self, meta: dict, arrays: dict[str, np.ndarray]) -> FoldInRouter:
        super().load_state(meta, arrays)
        self.x_mean_ = arrays["x_mean"]
        self.members_ = [(arrays[f"M{i}"], arrays[f"mu{i}"], arrays[f"cov{i}"], arrays.get(f"T{i}"))
                         for i in range(int(meta["members"]))]
        mix = meta.get("mix", [0.0, 1.0])  # a router saved before the neighbour mixture existed: fold-in alone
        self.tau_, self.mix_ = float(meta["tau"]), (float(mix[0]), float(mix[1]))
        return self
