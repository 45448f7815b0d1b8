"""routers: the interface, declared parameters, the registry and shared helpers.

Every router estimates ``gamma(x, h)`` = P(LLM h answers prompt x wrongly) for a pool of LLMs it may
never have seen, known only through their errors on the validation prompts (``Pool.E_val``):

* ``fit(FitData)`` sees training prompts, validation prompts and the *training* LLMs' errors on
  both (reference routers also see every LLM's errors on the training prompts);
* ``predict(X, Pool)`` returns gamma for prompts ``X`` (n, D) and the pool's LLMs (n, m);
* ``state()`` / ``load_state()`` round-trip through JSON + numpy arrays (no pickle).

Parameters are *declared* (``Param``: type, range, whether ``"auto"`` or a list of candidates is
allowed) and checked once, when a run's config is built, with one message naming the router, the
parameter and the expected range. ``"auto"`` hyperparameters are chosen inside each trial from
training and validation data only. A parameter may be ``shared`` between routers (the K of
UniRoute's K-means and LearnedMap): a value fixed for one applies to the others unless they fix
their own. Router kinds: ``dynamic`` (the fair comparison), ``reference`` (clairvoyant: trained on
the test LLMs' labels on the training prompts) and ``bound`` (the oracle, which reads test labels).
``needs_training_llms`` marks routers that cannot be fitted without training LLMs.

Third-party routers register through the entry-point group ``unirouter.routers`` (each entry point
names a module or object to import; importing it runs ``@register_router``); they are loaded in
every process that builds routers, so they work with ``--jobs N`` and Dask workers.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..errors import ConfigError
from ..protocol.metrics import area, deferral_curve


# --------------------------------------------------------------------------------------------
# data handed to routers
# --------------------------------------------------------------------------------------------
@dataclass
class FitData:
    X_train: np.ndarray  # (n_tr, D)
    E_train: np.ndarray  # (n_tr, m_tr) errors of the training LLMs, NaN = not evaluated
    C_train: np.ndarray  # (n_tr, m_tr) per-query costs of the training LLMs
    X_val: np.ndarray  # (n_val, D)
    E_val: np.ndarray  # (n_val, m_tr); with no training LLMs: the pool's validation errors (see pool_labels)
    train_models: list[str]
    seed: int
    C_val: np.ndarray | None = None  # (n_val, m) per-query costs of the E_val columns
    E_train_all: np.ndarray | None = None  # (n_tr, M): every LLM, for reference routers only
    all_models: list[str] = field(default_factory=list)
    cache: dict = field(default_factory=dict)  # results shared by routers of one trial (e.g. K-means)

    @property
    def n_train_models(self) -> int:
        return int(self.E_train.shape[1])

    @property
    def pool_labels(self) -> bool:
        """True when there are no training LLMs: E_val then holds the pool's validation errors, and
        hyperparameters are chosen by two-fold cross-validation over the validation prompts."""
        return self.n_train_models == 0


@dataclass
class Pool:
    models: list[str]
    X_val: np.ndarray
    E_val: np.ndarray  # (n_val, m) validation errors: all a dynamic router knows about the pool
    truth: np.ndarray | None = None  # (n_test, m) test errors, given to the oracle only


# --------------------------------------------------------------------------------------------
# declared parameters
# --------------------------------------------------------------------------------------------
NO_DEFAULT = None  # a Param declared without a default takes __init__'s


@dataclass(frozen=True)
class Param:
    """One router parameter: its type and range, and whether "auto" / a candidate list is allowed."""

    type: type  # int, float, bool or str
    default: Any = None  # filled in from the router's __init__ signature when it registers (see registry)
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # low is exclusive
    auto: bool = False  # "auto": chosen inside each trial
    grid: bool = False  # a list of candidates (chosen among inside each trial)
    choices: tuple = ()
    shared: str | None = None  # routers declaring the same key take a value fixed for any of them
    help: str = ""

    def describe(self) -> str:
        if self.choices:
            base = "one of " + ", ".join(map(str, self.choices))
        else:
            base = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}[self.type]
            if self.low is not None and self.high is not None:
                lo = "(" if self.low_open else "["
                base += f" in {lo}{self.low:g}, {self.high:g}]"
            elif self.low is not None:
                base += f" {'>' if self.low_open else '>='} {self.low:g}"
        extras = (["'auto'"] if self.auto else []) + (["a list of such values"] if self.grid else [])
        return base + (", " + " or ".join(extras) if extras else "")

    def _scalar(self, v: Any) -> Any:
        if self.type is bool:
            if isinstance(v, bool):
                return v
            raise ValueError
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise ValueError
        if self.type is int:
            if float(v) != int(v):
                raise ValueError
            v = int(v)
        else:
            v = float(v)
            if not np.isfinite(v):
                raise ValueError
        if self.low is not None and (v <= self.low if self.low_open else v < self.low):
            raise ValueError
        if self.high is not None and v > self.high:
            raise ValueError
        if self.choices and v not in self.choices:
            raise ValueError
        return v

    def check(self, router: str, name: str, value: Any) -> Any:
        """The validated value (ints as int, numbers as float); ConfigError naming router and parameter."""
        try:
            if isinstance(value, str) and self.type is not str:
                if self.auto and value == "auto":
                    return value
                raise ValueError
            if self.type is str:
                if not isinstance(value, str) or (self.choices and value not in self.choices):
                    raise ValueError
                return value
            if isinstance(value, list | tuple):
                if not self.grid or not value:
                    raise ValueError
                out = sorted({self._scalar(v) for v in value})
                return out if len(out) > 1 else out[0]
            return self._scalar(value)
        except (ValueError, OverflowError, TypeError):
            raise ConfigError(f"router {router}: parameter {name} = {value!r}; expected {self.describe()}") from None


class Router:
    """Base class of every router, following scikit-learn's estimator contract.

    A router class states what it is as class attributes (``name``, ``kind``, ``help``, ``parameters``: the
    declared ``Param``s, ``needs_training_llms``, ``fit_by_default``, ``order``) and takes its parameters as
    explicit keyword arguments of ``__init__``, whose defaults are the parameters' defaults. The constructor only
    stores them as attributes of the same names; all work and validation happen in ``fit``; learned state ends
    in ``_``. ``get_params()`` returns the declared parameters. ``@register_router`` registers the class.
    """

    name: ClassVar[str] = ""
    kind: ClassVar[str] = "dynamic"  # dynamic (the fair comparison), reference (clairvoyant) or bound (oracle)
    help: ClassVar[str] = ""
    parameters: ClassVar[dict[str, Param]] = {}
    needs_training_llms: ClassVar[bool] = True  # False: can be fitted with no training LLMs
    fit_by_default: ClassVar[bool] = False  # fitted by ``unirouter fit`` when no -r is given
    order: ClassVar[int] = 1000  # position in tables and figure styles among the built-in routers

    def __init__(self) -> None:
        self.hyperparams_: dict[str, Any] = {}

    def get_params(self) -> dict[str, Any]:
        """The declared parameters' current values."""
        return {k: getattr(self, k) for k in self.parameters}

    @property
    def params(self) -> dict[str, Any]:
        return self.get_params()

    def set_params(self, **params: Any) -> Router:
        for k, v in params.items():
            if k not in self.parameters:
                raise ConfigError(f"router {self.name}: unknown parameter {k}; expected "
                                  f"{', '.join(self.parameters) or 'none'}")
            setattr(self, k, v)
        return self

    def fit(self, data: FitData) -> Router:
        return self

    def predict(self, X: np.ndarray, pool: Pool) -> np.ndarray:
        raise NotImplementedError

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """(JSON-able metadata, named numpy arrays). Float arrays must be finite: a built router whose state
        holds NaN or infinity is refused when loaded."""
        return {"params": self.get_params(), "hyperparams": self.hyperparams_}, {}

    def load_state(self, meta: dict, arrays: dict[str, np.ndarray]) -> Router:
        saved = meta.get("params") or {}
        self.set_params(**{k: v for k, v in saved.items() if k in self.parameters})
        self.hyperparams_ = meta.get("hyperparams", {})
        return self


# --------------------------------------------------------------------------------------------
# shared pieces
# --------------------------------------------------------------------------------------------
def masked_mean(E: np.ndarray, axis: int = 0, fallback: float | np.ndarray = 0.5) -> np.ndarray:
    obs = ~np.isnan(E)
    cnt = obs.sum(axis=axis)
    tot = np.where(obs, E, 0.0).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = tot / cnt
    return np.where(cnt > 0, out, fallback)


def overall_error(E_val: np.ndarray) -> np.ndarray:
    """Each LLM's mean validation error (0.5 if it has no validation label at all)."""
    return masked_mean(E_val, axis=0, fallback=0.5)


SELECTION_ROWS = 20_000  # at most this many training prompts score hyperparameter candidates ...
SELECTION_CELLS = 4_000_000  # ... and at most this many (prompt, LLM) cells (fewer prompts for huge pools)


def subset(n: int, limit: int, seed: int) -> np.ndarray:
    """All row indices if n <= limit, else a seeded random subset of ``limit`` rows (sorted)."""
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))


def selection_rows(n: int, m: int, seed: int) -> np.ndarray:
    return subset(n, int(min(SELECTION_ROWS, max(2_000, SELECTION_CELLS // max(m, 1)))), seed)


def selection_area(gamma: np.ndarray, E: np.ndarray, C: np.ndarray) -> float:
    """Area of the deferral curve on the rows where every LLM has a label (selection criterion)."""
    ok = ~np.isnan(E).any(axis=1)
    if ok.sum() == 0:
        return float("nan")
    return area(deferral_curve(gamma[ok], 1.0 - E[ok], C[ok]))


def validation_folds(n_val: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Two seeded halves of the validation prompts as (profile, score) pairs, each way round."""
    perm = np.random.default_rng([seed, 7]).permutation(n_val)
    a, b = np.sort(perm[: n_val // 2]), np.sort(perm[n_val // 2:])
    return [(a, b), (b, a)]


def nonfinite_array(arrays: dict[str, np.ndarray]) -> str | None:
    """The name of the first float array of a router state that holds NaN or infinity (a state is finite)."""
    return next((k for k, v in arrays.items() if v.dtype.kind in "fc" and not np.isfinite(v).all()), None)


STATE_ERRORS = (ValueError, IndexError, TypeError, KeyError, AttributeError)  # what a misfit loaded state raises


def check_prediction(router: Router, X: np.ndarray, pool: Pool) -> None:
    """Predict ``X`` for ``pool`` once and raise ValueError unless the estimates are finite and of shape
    (prompts, pool LLMs): a loaded state that does not fit (arrays of the wrong shape) fails here, at load,
    rather than in the middle of an evaluation or a route. Errors of the prediction itself propagate
    (``STATE_ERRORS``)."""
    with np.errstate(all="ignore"):
        g = np.asarray(router.predict(X, pool), dtype=np.float64)
    want = (len(X), len(pool.models))
    if g.shape != want or not np.isfinite(g).all():
        raise ValueError(f"estimates of shape {g.shape} ({'finite' if np.isfinite(g).all() else 'not finite'}) "
                         f"for {want[0]} prompts x {want[1]} LLMs")


def capped_candidates(value: Any, grid: list[int], cap: int, hard_cap: int) -> list[int]:
    """Candidates of a size hyperparameter (K clusters, k neighbours). Grid values ("auto") above ``cap`` are
    dropped (each cluster or neighbourhood needs validation labels; 1 always stays); values the user fixed are
    kept, clipped only to ``hard_cap`` (the validation prompts there are)."""
    if value == "auto" or value is None:
        return [v for v in grid if v == 1 or v <= max(1, cap)] or [1]
    return sorted({max(1, min(int(v), hard_cap)) for v in candidates(value, grid)})


def candidates(value: Any, default: list) -> list:
    """The candidate values of a hyperparameter: the default grid for "auto", else the given value(s)."""
    if value == "auto" or value is None:
        return list(default)
    if isinstance(value, list | tuple):
        return list(value)
    return [value]
