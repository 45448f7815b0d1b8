"""Routers, one module per family behind one interface and one registry.

* ``base``: FitData, Pool, the Router interface, declared parameters (``Param``), the registry
  (``@register_router``, plug-ins from the ``unirouter.routers`` entry-point group), shared helpers;
* ``clusters``: zero, uniroute-kmeans, uniroute-learnedmap;
* ``neighbours``: knn;
* ``factor``: foldin (logistic factor model, new LLMs folded in from their validation answers);
* ``static``: retrained-mlp, clairvoyant-mlp, clairvoyant-matfac;
* ``oracle``: the oracle (a bound);
* ``optim``: masked log-loss and L-BFGS shared by the gradient-trained routers.
"""

from __future__ import annotations

from . import clusters, factor, neighbours, oracle, static  # noqa: F401 - importing registers the routers
from .base import (
    ENTRY_POINT_GROUP,
    ROUTERS,
    FitData,
    Param,
    Pool,
    Router,
    RouterSpec,
    check_params,
    check_routers,
    get_spec,
    load_plugins,
    make_router,
    masked_mean,
    overall_error,
    register_router,
    resolve_params,
    selection_area,
    selection_rows,
    subset,
    unused_params,
)
from .clusters import cluster_profile, kmeans, nearest, nested_kmeans
from .neighbours import knn_errors

DEFAULT_ROUTERS = ["zero", "knn", "uniroute-kmeans", "uniroute-learnedmap", "retrained-mlp",
                   "clairvoyant-mlp", "clairvoyant-matfac", "oracle", "foldin"]  # (plot styles follow this order)

__all__ = ["DEFAULT_ROUTERS", "ENTRY_POINT_GROUP", "ROUTERS", "FitData", "Param", "Pool", "Router", "RouterSpec",
           "check_params", "check_routers", "cluster_profile", "get_spec", "kmeans", "knn_errors", "load_plugins",
           "make_router", "masked_mean", "nearest", "nested_kmeans", "overall_error", "register_router",
           "resolve_params", "selection_area", "selection_rows", "subset", "unused_params"]
