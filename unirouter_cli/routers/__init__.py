"""Routers, one module per family behind one interface and one registry.

* ``base``: FitData, Pool, the Router contract (a class: name, kind, declared ``Param``s, keyword ``__init__``),
  shared helpers;
* ``registry``: ``@register_router``, plug-ins from the ``unirouter.routers`` entry-point group, the default lists;
* ``clusters``: zero, uniroute-kmeans, uniroute-learnedmap;
* ``neighbours``: knn;
* ``factor`` (+ ``factor_model``): foldin (logistic factor model, new LLMs folded in from their validation answers);
* ``static``: retrained-mlp, clairvoyant-mlp, clairvoyant-matfac;
* ``oracle``: the oracle (a bound);
* ``optim``: masked log-loss and L-BFGS shared by the gradient-trained routers.
"""

from __future__ import annotations

from .base import FitData, Param, Pool, Router, masked_mean, overall_error, selection_area, selection_rows, subset
from .clusters import cluster_profile, kmeans, nearest, nested_kmeans
from .neighbours import knn_errors
from .registry import (
    ENTRY_POINT_GROUP,
    ROUTERS,
    RouterSpec,
    builtin_routers,
    check_params,
    check_routers,
    default_fit_routers,
    get_spec,
    load_plugins,
    make_router,
    register_router,
    resolve_params,
    unused_params,
)


def _import_router_modules() -> None:
    """Import every module of this package: a built-in router is one file here, registered by importing it."""
    import importlib
    import pkgutil

    for mod in sorted(m.name for m in pkgutil.iter_modules(__path__)):
        importlib.import_module(f"{__name__}.{mod}")


_import_router_modules()
DEFAULT_ROUTERS = builtin_routers()  # every built-in router, in display order (tables, figure styles)

__all__ = ["DEFAULT_ROUTERS", "ENTRY_POINT_GROUP", "ROUTERS", "FitData", "Param", "Pool", "Router", "RouterSpec",
           "builtin_routers", "default_fit_routers",
           "check_params", "check_routers", "cluster_profile", "get_spec", "kmeans", "knn_errors", "load_plugins",
           "make_router", "masked_mean", "nearest", "nested_kmeans", "overall_error", "register_router",
           "resolve_params", "selection_area", "selection_rows", "subset", "unused_params"]
