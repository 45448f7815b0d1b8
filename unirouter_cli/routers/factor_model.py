"""The logistic factor model behind foldin (numpy only): training the prompt side on the training LLMs, the
Gaussian prior over LLM vectors (Ledoit-Wolf), folding in a new LLM from its answers, the neighbour mixture, and the
held-out losses that choose among candidates."""

from __future__ import annotations

import numpy as np

from .memo import memoised
from .optim import lbfgs


def sigmoid(S: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(S))
    return np.where(S >= 0, 1.0, e) / (1.0 + e)


@memoised
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
