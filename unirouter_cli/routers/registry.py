"""The router registry: one spec per router class, plug-ins from the ``unirouter.routers`` entry-point group.

A router is one class (see ``base.Router``): its name, kind, help, declared parameters and flags are class
attributes, and ``@register_router`` above it puts it in ``ROUTERS``. A second class under a name already taken
(a built-in or another plug-in) is refused, naming both. ``DEFAULT_ROUTERS`` (every built-in router, in display
order) and ``default_fit_routers()`` (what ``unirouter fit`` fits when no ``-r`` is given) are read off the specs.
"""

from __future__ import annotations

import inspect
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from ..errors import ConfigError, printable
from .base import NO_DEFAULT, Param, Router


@dataclass(frozen=True)
class RouterSpec:
    name: str
    factory: Callable[..., Router]  # the router class
    kind: str
    help: str
    params: dict[str, Param]
    needs_training_llms: bool = True
    fit_by_default: bool = False
    order: int = 1000
    source: str = ""  # module.Class, to name both sides of a clash

    @property
    def defaults(self) -> dict[str, Any]:
        return {k: p.default for k, p in self.params.items()}


ROUTERS: dict[str, RouterSpec] = {}


KINDS = ("dynamic", "reference", "bound")


ENTRY_POINT_GROUP = "unirouter.routers"


_plugins_loaded = False


def _declared(cls: type[Router]) -> dict[str, Param]:
    """The class's declared parameters with their defaults read off ``__init__`` (one place states a default)."""
    sig = inspect.signature(cls.__init__)
    out = {}
    for k, prm in cls.parameters.items():
        arg = sig.parameters.get(k)
        if arg is None or arg.kind is not inspect.Parameter.KEYWORD_ONLY and arg.kind is not \
                inspect.Parameter.POSITIONAL_OR_KEYWORD:
            raise TypeError(f"{cls.__qualname__}.__init__ has no keyword argument {k!r} for its declared parameter")
        if arg.default is inspect.Parameter.empty:
            raise TypeError(f"{cls.__qualname__}.__init__: parameter {k!r} needs a default")
        if prm.default is not NO_DEFAULT and prm.default != arg.default:
            raise TypeError(f"{cls.__qualname__}: parameter {k!r} declares default {prm.default!r} but __init__ "
                            f"has {arg.default!r}")
        out[k] = replace(prm, default=arg.default)
    return out


def register_router(cls: type[Router]) -> type[Router]:
    """Class decorator: put a ``Router`` subclass in the registry under its ``name``.

    The class states ``name``, ``kind`` (dynamic, reference or bound), ``help``, ``parameters`` (declared
    ``Param``s, defaults in ``__init__``'s signature) and the flags ``needs_training_llms``, ``fit_by_default``
    and ``order``. A name already registered by another class is refused, naming both classes.
    """
    if not (isinstance(cls, type) and issubclass(cls, Router)):
        raise TypeError("@register_router decorates a unirouter_cli.routers.Router subclass")
    name = cls.name
    if not isinstance(name, str) or not name.strip() or name != name.strip() or "," in name or "=" in name:
        raise TypeError(f"{cls.__qualname__}: router name {name!r} must be a non-empty string without spaces at "
                        "either end, commas or '='")
    if cls.kind not in KINDS:
        raise TypeError(f"{cls.__qualname__}: router kind must be one of {KINDS}, got {cls.kind!r}")
    source = f"{cls.__module__}.{cls.__qualname__}"
    have = ROUTERS.get(name)
    if have is not None and have.source != source:
        raise ConfigError(f"router name {name!r} is registered twice: by {have.source} and by {source}")
    ROUTERS[name] = RouterSpec(name, cls, cls.kind, cls.help, _declared(cls), cls.needs_training_llms,
                               cls.fit_by_default, cls.order, source)
    return cls


def builtin_routers() -> list[str]:
    """Every router unirouter itself registers, in display order (tables, figure styles)."""
    specs = [s for s in ROUTERS.values() if s.source.startswith("unirouter_cli.")]
    return [s.name for s in sorted(specs, key=lambda s: s.order)]


def default_fit_routers() -> list[str]:
    """What ``unirouter fit`` fits when no ``-r`` is given, in display order."""
    return [n for n in builtin_routers() if ROUTERS[n].fit_by_default]


PLUGIN_TIMEOUT_ENV = "UNIROUTER_PLUGIN_TIMEOUT"
PLUGIN_TIMEOUT = 10.0  # seconds one plug-in may take to import


def _plugin_timeout() -> float:
    try:
        return max(0.1, float(os.environ.get(PLUGIN_TIMEOUT_ENV, PLUGIN_TIMEOUT)))
    except ValueError:
        return PLUGIN_TIMEOUT


def _import_plugin(ep: Any) -> str | None:
    """Import one entry point in a helper thread: None, or the problem in one line. ``SystemExit`` and
    ``KeyboardInterrupt`` raised by the plug-in's import are problems like any other; an import that has not
    finished after the timeout is abandoned (the thread is a daemon)."""
    box: dict[str, BaseException] = {}

    def run() -> None:
        try:
            ep.load()
        except BaseException as e:  # noqa: BLE001 - a plug-in must not end the command
            box["e"] = e

    t = threading.Thread(target=run, name=f"unirouter-plugin-{ep.name}", daemon=True)
    t.start()
    t.join(_plugin_timeout())
    if t.is_alive():
        return f"did not finish importing within {_plugin_timeout():g} s (set {PLUGIN_TIMEOUT_ENV} to wait longer)"
    e = box.get("e")
    return None if e is None else f"failed to import: {type(e).__name__}: {' '.join(str(e).split())[:160]}"


def load_plugins() -> None:
    """Import the routers other packages declare in the ``unirouter.routers`` entry-point group (once).

    A plug-in that fails (a name clash included), exits or hangs at import is skipped with one warning line
    on stderr; the built-in routers and the other plug-ins stay usable."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        problem = _import_plugin(ep)
        if problem:
            print(printable(f"warning: router plug-in {ep.name} ({ep.value}) skipped: {problem}", keep=""),
                  file=sys.stderr)


def get_spec(name: str) -> RouterSpec:
    load_plugins()
    if name not in ROUTERS:
        raise ConfigError(f"unknown router {name!r}: expected one of {', '.join(ROUTERS)}")
    return ROUTERS[name]


def check_params(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """Validate a router's explicit parameters (a mapping of declared names to values)."""
    spec = get_spec(name)
    if not isinstance(params, dict):
        raise ConfigError(f"router {name}: parameters must be a mapping NAME: VALUE, got {params!r}")
    unknown = sorted(set(params) - set(spec.params))
    if unknown:
        raise ConfigError(f"router {name}: unknown parameter(s) {', '.join(map(str, unknown))}; "
                          f"expected {', '.join(spec.params) or 'none'}")
    return {k: spec.params[k].check(name, k, v) for k, v in params.items()}


def resolve_params(router_params: dict[str, dict], routers: list[str] | None = None) -> dict[str, dict]:
    """Check every router's parameters and spread values of shared parameters (see ``Param.shared``)
    to the other routers of ``routers`` (default: every registered router) that do not fix their own."""
    if not isinstance(router_params, dict):
        raise ConfigError(f"router_params must be a mapping ROUTER: {{NAME: VALUE}}, got {router_params!r}")
    out = {name: check_params(name, p if p is not None else {}) for name, p in router_params.items()}
    given: dict[str, Any] = {}
    for name, p in out.items():
        for k, v in p.items():
            key = ROUTERS[name].params[k].shared
            if key and key not in given:
                given[key] = v
    if given:
        for spec in (get_spec(r) for r in (routers if routers is not None else list(ROUTERS))):
            for k, prm in spec.params.items():
                if prm.shared in given and k not in out.get(spec.name, {}):
                    out.setdefault(spec.name, {})[k] = given[prm.shared]
    return {k: v for k, v in out.items() if v}


def unused_params(router_params: dict[str, dict], routers: list[str]) -> list[str]:
    """``ROUTER.NAME=VALUE`` of each parameter that no router of ``routers`` uses: set for a router that is not
    fitted, and not shared with one that is (``-p uniroute-kmeans.K=4`` with ``-r knn`` alone)."""
    shared = {prm.shared for r in routers for prm in get_spec(r).params.values() if prm.shared}
    return [f"{name}.{k}={v}" for name, p in router_params.items() if name not in routers
            for k, v in p.items() if get_spec(name).params[k].shared not in shared]  # (None is never in it)


def make_router(name: str, **overrides: Any) -> Router:
    spec = get_spec(name)
    explicit = check_params(name, {k: v for k, v in overrides.items() if v is not None})
    return spec.factory(**{**spec.defaults, **explicit})


def check_routers(names: list[str]) -> list[str]:
    for n in names:
        get_spec(n)
    if len(set(names)) != len(names):
        raise ConfigError(f"router listed twice in {', '.join(names)}")
    return names
