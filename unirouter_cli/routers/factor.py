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
off): on development trials (seeds 3 and 4, never the README's) that raised mmlu-pro Area by .0008 on average
(34 wins, 16 losses of 50), where cross-folds that also add them chose lower ranks and gained less (seed 3).
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

from .base import FitData, Param, Pool, Router, candidates, masked_mean, register_router, subset
from .optim import lbfgs

RANK_GRID = [0, 1, 2, 4, 8, 16]
LAM_GRID = [2.0, 6.0, 20.0]
TAU_GRID = [0.03, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0]
MIX_WEIGHT_GRID = [0.0, 0.3, 0.5]  # 0: no neighbour mixture
MIX_TEMP_GRID = [0.1, 0.2, 0.5, 1.0]
CV_ROWS = 3_000  # training prompts the cross-fold selection uses (a seeded subset)


def sigmoid(S: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(S))
    return np.where(S >= 0, 1.0, e) / (1.0 + e)


def train_factors(X: np.ndarray, E: np.ndarray, rank: int, lam: float, seed: int, maxiter: int,
                  init: dict | None = None) -> dict[str, np.ndarray]:
    """Prompt map ``A`` (rank, D), training LLM vectors ``V`` (m, rank) and biases ``b`` (m,), ``x_mean``.

    Minimises the masked mean log-loss of ``sigmoid((X - x_mean) A' V' + b)`` against the errors ``E``
    plus ``lam / n_obs * (|A|^2 + |V|^2)``. Data in float32, parameters in float64.
    """
    X = np.asarray(X, dtype=np.float32)
    x_mean = X.mean(axis=0)
    Xc = X - x_mean
    obs = ~np.isnan(E)
    n_obs = max(int(obs.sum()), 1)
    w = obs.astype(np.float32) / n_obs
    wy = w * np.where(obs, E, 0.0).astype(np.float32)
    w_minus_wy = (w - wy).ravel()
    l2 = lam / n_obs
    m, D = E.shape[1], X.shape[1]
    if init is None:
        rng = np.random.default_rng(seed)
        p = np.clip(np.where(obs, E, 0.0).sum(0) / np.maximum(obs.sum(0), 1), 0.01, 0.99)
        init = {"A": rng.normal(0, 0.1, (rank, D)), "V": rng.normal(0, 0.1, (m, rank)), "b": np.log(p / (1 - p))}

    def loss_grad(q: dict) -> tuple[float, dict]:
        A, V = q["A"].astype(np.float32), q["V"].astype(np.float32)
        Z = Xc @ A.T
        S = Z @ V.T
        S += q["b"].astype(np.float32)
        np.clip(S, -30, 30, out=S)
        P = np.exp(-S)
        P += 1
        np.reciprocal(P, out=P)  # sigmoid(S)
        # softplus(S) - y S = (1 - y) S - log sigmoid(S)
        loss = float(w_minus_wy @ S.ravel()) - float(w.ravel() @ np.log(P).ravel())
        G = w * P
        G -= wy
        loss += l2 * float(np.sum(q["A"] ** 2) + np.sum(q["V"] ** 2))
        return loss, {"A": (G @ V).T @ Xc + 2 * l2 * q["A"], "V": G.T @ Z + 2 * l2 * q["V"],
                      "b": G.sum(axis=0, dtype=np.float64)}

    out = lbfgs(loss_grad, {k: np.asarray(v, dtype=np.float64) for k, v in init.items()}, maxiter)
    out["x_mean"] = x_mean.astype(np.float64)
    return out


def truncate(P: dict[str, np.ndarray], r: int) -> tuple[np.ndarray, np.ndarray]:
    """Rank-r truncation of ``A' V'``: the prompt map ``M`` (r', D) and the training LLMs' vectors
    ``T`` = [v, b] (m, r' + 1), r' = min(r, number of nonzero singular values)."""
    U, s, Vt = np.linalg.svd(P["A"].T @ P["V"].T, full_matrices=False)
    r = min(r, int((s > 1e-8 * max(float(s.max(initial=0.0)), 1e-300)).sum()))
    root = np.sqrt(s[:r])
    return (U[:, :r] * root).T, np.c_[Vt[:r].T * root, P["b"]]


BIAS_VAR_FLOOR = 0.25  # the prior never pins a new LLM's logit error rate closer than +-0.5 to the training mean


def ledoit_wolf(T: np.ndarray) -> np.ndarray:
    """Ledoit-Wolf shrunk covariance of the rows of ``T`` (m, k): the operations of scikit-learn 1.9's
    ``sklearn.covariance.ledoit_wolf`` for k < 1,000 (its block size), so the result is bit-identical
    (tested against it). Kept here because importing ``sklearn.covariance`` costs ~2 s per process (a
    worker of ``--jobs N`` pays it once), more than the fold-in's whole selection spends on covariances."""
    X = T - T.mean(axis=0)
    n, k = X.shape
    if k == 1:
        return np.atleast_2d((X**2).mean())
    X2 = X**2
    emp_cov_trace = np.sum(X2, axis=0) / n
    mu = np.sum(emp_cov_trace) / k
    sq = np.sum(np.dot(X.T, X) ** 2) / n**2  # sum of the squared coefficients of <X.T, X>, over n^2
    beta = 1.0 / (k * n) * (np.sum(np.dot(X2.T, X2)) / n - sq)
    delta = (sq - 2.0 * mu * emp_cov_trace.sum() + k * mu**2) / k
    beta = min(beta, delta)  # never shrink by more than 1
    shrinkage = 0 if beta == 0 else beta / delta
    emp_cov = np.dot(X.T, X) / n
    shrunk = (1.0 - shrinkage) * emp_cov
    shrunk.flat[:: k + 1] += shrinkage * (np.sum(np.trace(emp_cov)) / k)
    return shrunk


def gaussian_prior(T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of the LLM vectors ``T`` = [v, b] (m, k): Ledoit-Wolf (well conditioned even
    with fewer LLMs than dimensions); one LLM gives an identity covariance."""
    k = T.shape[1]
    cov = ledoit_wolf(T) if len(T) > 1 else np.eye(k)
    return T.mean(axis=0), cov + 1e-6 * max(float(np.trace(cov)) / k, 1e-12) * np.eye(k)


def prior_precision(cov: np.ndarray, tau: float) -> np.ndarray:
    """Precision of the prior N(mu, cov / tau), its bias variance at least ``BIAS_VAR_FLOOR``: a pool of
    near-identical training LLMs (or a large tau) cannot force its error rate on a new LLM."""
    c = cov / tau
    c[-1, -1] = max(c[-1, -1], BIAS_VAR_FLOOR)
    return np.linalg.inv(c)


def features(M: np.ndarray, x_mean: np.ndarray, X: np.ndarray) -> np.ndarray:
    """[(x - x_mean) M', 1]: the prompt features a new LLM's vector multiplies."""
    return np.c_[(np.asarray(X, dtype=np.float64) - x_mean) @ M.T, np.ones(len(X))]


def fold_in(F: np.ndarray, E: np.ndarray, mu: np.ndarray, prec: np.ndarray, T0: np.ndarray | None = None,
            iters: int = 30, tol: float = 1e-5) -> np.ndarray:
    """MAP vector per column of ``E`` (errors on the prompts of ``F``, NaN = missing): logistic regression
    on features ``F`` (n, k) with prior N(mu, prec^-1). Newton steps with backtracking, all columns at once;
    stops when no column's objective (summed over its answers) falls by ``tol`` or more."""
    obs = ~np.isnan(E)
    ob = obs.astype(np.float64)
    y = np.where(obs, E, 0.0)
    n, k = F.shape
    m = E.shape[1]
    T = np.tile(mu, (m, 1)) if T0 is None else T0.copy()

    def objective(T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        S = F @ T.T
        d = T - mu
        nll = np.maximum(S, 0) + np.log1p(np.exp(-np.abs(S))) - y * S
        return (ob * nll).sum(axis=0) + 0.5 * np.einsum("mi,ij,mj->m", d, prec, d), S

    outer = (F[:, :, None] * F[:, None, :]).reshape(n, k * k)  # F_i F_i', so a Hessian is one matrix product
    f, S = objective(T)
    for _ in range(iters):
        p = sigmoid(S)
        g = (F.T @ (ob * (p - y))).T + (T - mu) @ prec
        H = ((ob * p * (1 - p)).T @ outer).reshape(m, k, k)
        step = np.linalg.solve(H + prec, g[..., None])[..., 0]
        t = np.ones(m)
        for _ in range(30):  # halve the step of every column whose objective went up
            Tn = T - t[:, None] * step
            fn, Sn = objective(Tn)
            worse = fn > f + 1e-9 * np.abs(f)  # (a converged column's rounding noise is no reason to halve)
            if not worse.any():
                break
            t = np.where(worse, t / 2, t)
        gain = float(np.where(worse, 0.0, f - fn).max())
        T, f, S = np.where(worse[:, None], T, Tn), np.where(worse, f, fn), np.where(worse[None, :], S, Sn)
        if gain < tol:
            break
    return T


NEIGHBOURS = 32  # training LLMs, at most, in a new LLM's neighbour mixture (those of most weight)
BLOCK_CELLS = 20_000_000  # neighbour_fit works on (new LLMs, prompts, training LLMs) blocks of at most this size


def neighbour_fit(Sv: np.ndarray, E: np.ndarray, bias_var: float = BIAS_VAR_FLOOR) -> tuple[np.ndarray, np.ndarray]:
    """Each new LLM (column of ``E``, answers on the validation prompts) as each training LLM j with a bias of
    its own: ``Sv`` (n, m) holds the training LLMs' logits on the validation prompts; the shift d[c, j] is the
    MAP of a logistic regression on new LLM c's answers with offset Sv[:, j] and prior N(0, bias_var).
    Returns the shifts and the log-likelihoods there, both (c, m)."""
    obs = ~np.isnan(E)
    ob, y = obs.astype(np.float64), np.where(obs, E, 0.0)
    n, m = Sv.shape
    c = E.shape[1]
    d, ll = np.zeros((c, m)), np.zeros((c, m))
    block = max(1, BLOCK_CELLS // max(n * m, 1))  # new LLMs per block
    for lo in range(0, c, block):
        sl = slice(lo, lo + block)
        o, dd = ob[:, sl].T[:, None, :], d[sl]  # o: (block, 1, n), so sums over prompts are matrix products
        yo = (ob[:, sl] * y[:, sl]).sum(axis=0)[:, None]
        # safeguarded Newton (Newton inside a bracket, else bisection): the gradient is increasing in d and
        # sum o (p - y) lies in [-answers, answers], so the root lies within +-bias_var x answers; a plain
        # Newton step overshoots when a training LLM's logits are far from the new LLM's error rate
        hi = np.broadcast_to(bias_var * ob[:, sl].sum(axis=0)[:, None] + 1.0, dd.shape).copy()
        lo_ = -hi
        for _ in range(100):
            P = sigmoid(Sv[None] + dd[:, None, :])  # (block, n, m)
            g = np.matmul(o, P)[:, 0] - yo + dd / bias_var
            P -= P * P
            newton = g / (np.matmul(o, P)[:, 0] + 1 / bias_var)
            lo_, hi = np.where(g < 0, dd, lo_), np.where(g > 0, dd, hi)
            new = dd - newton
            # bisect when Newton leaves the bracket, unless the step is below rounding (it then lands on an end)
            new = np.where(((new <= lo_) | (new >= hi)) & (np.abs(newton) > 1e-8), 0.5 * (lo_ + hi), new)
            move, dd = new - dd, new
            if float(np.abs(move).max(initial=0.0)) < 1e-8:
                break
        Z = Sv[None] + dd[:, None, :]
        d[sl] = dd
        ll[sl] = np.matmul(y[:, sl].T[:, None, :], Z)[:, 0] - np.matmul(o, np.logaddexp(0, Z))[:, 0]
    return d, ll


def neighbour_weights(d: np.ndarray, ll: np.ndarray, temp: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The neighbour mixture of each new LLM: its ``NEIGHBOURS`` most likely training LLMs (indices), their
    shifts and weights, the softmax of ``temp`` x log-likelihood (a tempered posterior over "the new LLM
    behaves like training LLM j": ``temp`` < 1 because one LLM's answers are not independent evidence)."""
    idx = np.argsort(-ll, axis=1, kind="stable")[:, :NEIGHBOURS]
    le = temp * np.take_along_axis(ll, idx, axis=1)
    w = np.exp(le - le.max(axis=1, keepdims=True))
    return idx, np.take_along_axis(d, idx, axis=1), w / w.sum(axis=1, keepdims=True)


def blend(g0: np.ndarray, gm: np.ndarray, mix: float, E: np.ndarray) -> np.ndarray:
    """(1 - mix) x fold-in ``g0`` + mix x neighbour mixture ``gm``, per new LLM (column of the validation errors
    ``E``); the fold-in alone for an LLM with no validation answer (its mixture weights would be arbitrary)."""
    return np.where((~np.isnan(E)).any(axis=0), (1 - mix) * g0 + mix * gm, g0)


def neighbour_gamma(St: np.ndarray, idx: np.ndarray, d: np.ndarray, w: np.ndarray) -> np.ndarray:
    """sum_j w[c, j] sigmoid(St[:, idx[c, j]] + d[c, j]): the neighbour mixture's gamma (n, c) on prompts where
    the training LLMs' logits are ``St`` (n, m)."""
    G = np.empty((len(St), len(idx)))
    for c in range(len(idx)):
        G[:, c] = sigmoid(St[:, idx[c]] + d[c]) @ w[c]
    return G


def prompt_side_extra(data: FitData, none: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The validation prompts and the training LLMs' answers there: training data for the prompt side too
    (the new LLMs' answers on them are used only by the fold-in). Empty with no training LLMs (or ``none``)."""
    if none or data.pool_labels or data.X_val is None or not len(data.X_val):
        return np.zeros((0, data.X_train.shape[1]), dtype=data.X_train.dtype), np.zeros((0, data.n_train_models))
    return np.asarray(data.X_val), np.asarray(data.E_val, dtype=np.float64)


def heldout_logloss(G: np.ndarray, E: np.ndarray) -> np.ndarray:
    """Log-loss of gamma ``G`` on each observed cell of ``E`` (0 where E is NaN = not evaluated)."""
    obs = ~np.isnan(E)
    Gc = np.clip(G, 1e-6, 1 - 1e-6)
    e = np.where(obs, E, 0.0)
    return -np.where(obs, e * np.log(Gc) + (1 - e) * np.log1p(-Gc), 0.0)


class Losses:
    """Held-out log-loss of one candidate, summed per held-out prompt and per held-out LLM (every
    prompt and every training LLM is held out in exactly one fold)."""

    def __init__(self, n: int, m: int) -> None:
        self.prompts, self.llms = np.zeros(n), np.zeros(m)

    def add(self, rows: np.ndarray, cols: np.ndarray, cell_loss: np.ndarray) -> None:
        self.prompts[rows] = cell_loss.sum(axis=1)
        self.llms[cols] = cell_loss.sum(axis=0)

    @property
    def total(self) -> float:
        return float(self.prompts.sum())

    def within_one_se(self, best: Losses) -> bool:
        """Whether this candidate's mean loss is within one standard error of ``best``'s: the paired
        difference with a two-way cluster-robust variance (prompts and LLMs both share errors - an
        LLM's whole column moves with its folded-in vector), leaving out the cell term (conservative)."""
        dp, dl = self.prompts - best.prompts, self.llms - best.llms
        var = len(dp) * float(dp.var()) + len(dl) * float(dl.var())
        return self.total - best.total <= np.sqrt(var)


def choose(losses: dict[tuple, Losses]) -> tuple:
    """Stage 1 of the selection among candidates (lam, rank, tau), from their held-out losses.

    * Rank 0 (the LLM bias alone) if it is within one standard error of the best candidate: a factor
      has to earn its place.
    * Otherwise the candidate of largest capacity (rank, then weaker penalty) within one standard error
      of the best: the final prompt side is fitted on every training prompt and LLM, several times the
      cells of a cross-fold part, and a larger model gains more from more data.
    """
    best = min(losses, key=lambda k: (losses[k].total, k[1]))
    plain = [k for k in losses if k[1] == 0]
    if best[1] == 0 or not plain:
        return best
    zero = min(plain, key=lambda k: losses[k].total)
    if losses[zero].within_one_se(losses[best]):
        return zero
    near = [k for k in losses if k[1] > 0 and losses[k].within_one_se(losses[best])]
    return min(near, key=lambda k: (-k[1], k[0]))


def ensemble_ranks(losses: dict[tuple, Losses], lam: float, r: int) -> tuple[int, ...]:
    """The ranks averaged at the chosen penalty: every positive rank up to the chosen one whose held-out
    loss is within one standard error of the best candidate's (the cross-fold cannot tell them apart);
    averaging their gammas hedges the choice (measured on mmlu-pro: a small gain). Rank 0 stays alone."""
    if r == 0:
        return (0,)
    best = losses[min(losses, key=lambda k: losses[k].total)]
    return tuple(sorted({r} | {k[1] for k, v in losses.items() if k[0] == lam and 0 < k[1] <= r
                               and v.within_one_se(best)}))


@register_router("foldin", "dynamic",
                 "fold-in factor model: gamma = sigmoid(v_h . A x + b_h), A learned on the training LLMs, "
                 "(v_h, b_h) from the new LLM's validation answers",
                 params={"rank": Param(int, "auto", low=0, high=256, auto=True, grid=True,
                                       help="rank of the prompt map (0 = LLM bias only)"),
                         "lam": Param(float, "auto", low=0, high=1e6, auto=True, grid=True,
                                      help="factor penalty (prior strength, independent of the table's size)"),
                         "tau": Param(float, "auto", low=0, low_open=True, high=1e6, auto=True, grid=True,
                                      help="strength of the Gaussian prior on a new LLM's vector"),
                         "max_rank": Param(int, 16, low=1, high=256, help="rank of the trained prompt side"),
                         "folds": Param(int, 3, low=2, high=20, help="cross-fold parts (prompts and LLMs)"),
                         "maxiter": Param(int, 80, low=1, high=100_000, help="L-BFGS iterations"),
                         "val_prompts": Param(bool, True, help="the final prompt side also learns from the training "
                                              "LLMs' answers on the validation prompts"),
                         "mix": Param(float, 0.0, low=0, high=1, auto=True, grid=True,
                                      help="weight of the neighbour mixture in gamma (0 = fold-in alone, the "
                                           "default; auto = chosen in each trial)"),
                         "mix_temp": Param(float, "auto", low=0, low_open=True, high=1e6, auto=True, grid=True,
                                           help="temperature of the neighbour mixture's likelihood weights")})
class FoldInRouter(Router):
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
