"""``unirouter router build``: fit an encoder and a router on a table and write a router directory."""

from __future__ import annotations

import math

import numpy as np

from .. import __version__
from ..embed.encoders import fitted_encoder, make_encoder
from ..errors import ConfigError
from .grade import REFERENCES, dataset_references
from .router import DeployedRouter
from .store import FORMAT_VERSION

DEFAULT_RESERVE = 0.1  # share of the table's prompts kept as the probe reserve (the trials' validation share)


DEFAULT_ROUTER = "uniroute-kmeans"


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
    from ..data.registry import load_dataset
    from ..protocol.trial import errors, fit_trial
    from ..protocol.universe import Trial
    from ..routers import ROUTERS, check_params, get_spec

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
    refs = dataset_references(ds.path, ds.prompt_ids[res])
    card["references"] = REFERENCES if refs is not None and len(refs) else None
    return DeployedRouter(card=card, encoder=enc, router=r, reserve_ids=ds.prompt_ids[res].astype(str),
                          reserve_texts=texts, X_reserve=X[res], errors=E.astype(np.float32),
                          references=refs if card["references"] else None)
