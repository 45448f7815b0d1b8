"""Exact memoisation of deterministic fits inside one process.

Several tasks of a run fit the same thing on the same data: in a sweep over validation sizes and probe strategies
every task of a trial has the same training prompts and LLMs, so the K-means clusterings of the training prompts
and foldin's cross-fold prompt sides (trained on training prompts only) repeat 5-15 times per trial. ``memoised``
wraps such a function: a call whose arguments equal an earlier call's (arrays compared by dtype, shape and bytes,
through a 128-bit BLAKE2b digest) returns a copy of the earlier result instead of computing it again. The functions
wrapped are deterministic (their seeds are arguments), so results are identical to computing them.

The store is per process (forked workers each keep their own), holds at most ``BUDGET_BYTES`` of results (oldest
dropped first), and skips calls whose array arguments are smaller than ``MIN_BYTES`` (recomputing them is cheaper
than hashing). ``UNIROUTER_MEMO=0`` turns it off (for timing the uncached code).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import os
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

BUDGET_BYTES = 256 * 2**20
MIN_BYTES = 256 * 2**10
_STORE: OrderedDict[tuple[str, bytes], tuple[Any, int]] = OrderedDict()
_SIZE = [0]
F = TypeVar("F", bound=Callable[..., Any])


def _feed(h: Any, x: object) -> int:
    """Feed ``x`` into the digest ``h``; returns the bytes of array data fed."""
    if isinstance(x, np.ndarray):
        h.update(f"a{x.dtype.str}{x.shape}".encode())
        h.update(np.ascontiguousarray(x).view(np.uint8).ravel().data)
        return int(x.nbytes)
    if isinstance(x, dict):
        h.update(b"d")
        return sum(_feed(h, k) + _feed(h, v) for k, v in sorted(x.items(), key=lambda kv: repr(kv[0])))
    if isinstance(x, (list, tuple)):
        h.update(f"l{len(x)}".encode())
        return sum(_feed(h, v) for v in x)
    if x is None or isinstance(x, (bool, int, float, str, np.integer, np.floating)):
        h.update(f"{type(x).__name__}:{x!r};".encode())
        return 0
    raise TypeError(f"cannot fingerprint a {type(x).__name__}")


def _nbytes(x: object) -> int:
    if isinstance(x, np.ndarray):
        return int(x.nbytes)
    if isinstance(x, dict):
        return sum(_nbytes(v) for v in x.values())
    if isinstance(x, (list, tuple)):
        return sum(_nbytes(v) for v in x)
    return 64


def memoised(fn: F) -> F:
    """``fn`` with exact per-process memoisation of its results (see the module's docstring)."""
    name = f"{fn.__module__}.{fn.__qualname__}"

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if os.environ.get("UNIROUTER_MEMO", "1") == "0":
            return fn(*args, **kwargs)
        h = hashlib.blake2b(digest_size=16)
        if _feed(h, [list(args), kwargs]) < MIN_BYTES:
            return fn(*args, **kwargs)
        key = (name, h.digest())
        if key in _STORE:
            _STORE.move_to_end(key)
            return copy.deepcopy(_STORE[key][0])
        out = fn(*args, **kwargs)
        size = _nbytes(out)
        if size <= BUDGET_BYTES // 4:
            _STORE[key] = (copy.deepcopy(out), size)
            _SIZE[0] += size
            while _SIZE[0] > BUDGET_BYTES:
                _, (_, dropped) = _STORE.popitem(last=False)
                _SIZE[0] -= dropped
        return out

    return wrapper  # type: ignore[return-value]


def clear() -> None:
    """Forget every stored result."""
    _STORE.clear()
    _SIZE[0] = 0
