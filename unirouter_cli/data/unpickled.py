"""The checked reconstruction behind safepickle: limits, the inert placeholders the restricted unpickler builds,
and their conversion into numpy arrays and pandas frames through public constructors after checking every field."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

MAX_BYTES = 4 << 30  # a pickle larger than this is refused before it is read


MAX_OPS = 200_000_000  # opcodes in one pickle


MAX_ITEMS = 200_000_000  # elements in one array, rows or columns in one frame


MAX_DEPTH = 64  # nesting of containers


MAX_COLUMNS = 100_000  # columns of one DataFrame (a tiny pickle could otherwise ask for 10**8 empty ones)


MAX_COLLISIONS = 1_000  # distinct numbers sharing one hash (a dict of them is built in quadratic time)


class _Refused(Exception):
    """A field of the pickle failed a check (turned into a DownloadError naming the file)."""


# --------------------------------------------------------------------------------------------
# placeholders: what the unpickler builds; nothing here runs library code on pickle data
# --------------------------------------------------------------------------------------------
class _Placeholder:
    """Records constructor arguments and ``BUILD`` state; never interprets them."""

    args: tuple = ()  # NEWOBJ calls __new__ only
    state: Any = None

    def __init__(self, *args: Any) -> None:
        self.args = args
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _DType(_Placeholder):  # numpy.dtype(obj, align, copy) + state
    pass


class _Array(_Placeholder):  # numpy _reconstruct(ndarray, (0,), b'b') + state
    pass


class _FromBuffer(_Placeholder):  # numpy _frombuffer(buf, dtype, shape, order)
    pass


class _Scalar(_Placeholder):  # numpy scalar(dtype, data)
    pass


class _Frame(_Placeholder):  # pandas DataFrame: NEWOBJ + BUILD {'_mgr': ..., ...}
    pass


class _Manager(_Placeholder):  # pandas BlockManager(blocks, axes) or NEWOBJ + BUILD state
    pass


class _Block(_Placeholder):  # pandas _unpickle_block(values, placement, ndim)
    pass


class _NewIndex(_Placeholder):  # pandas _new_Index(cls, dict)
    pass


class _Marker:
    """A class name the pickle may pass as an argument (``numpy.ndarray``, an Index class).

    Shared by every load, so it takes no state: ``BUILD`` on it is refused (no ``__dict__``)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __setstate__(self, state: Any) -> None:
        raise _Refused(f"state for the class name {self.name}")


class _Fn:
    """An allow-listed function: callable, but shared and stateless like ``_Marker``."""

    __slots__ = ("fn",)

    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)

    def __setstate__(self, state: Any) -> None:
        raise _Refused("state for a function")


_NDARRAY = _Marker("ndarray")


_INDEX = _Marker("Index")


_RANGE_INDEX = _Marker("RangeIndex")


# --------------------------------------------------------------------------------------------
# pass 2b: placeholders -> checked real objects
# --------------------------------------------------------------------------------------------
_DTYPE_RE = re.compile(r"^([biufcOUS])(\d*)$")


def _int(x: Any, what: str, lo: int = 0, hi: int = MAX_ITEMS) -> int:
    if type(x) is not int or not lo <= x <= hi:
        raise _Refused(f"{what} must be an integer in [{lo}, {hi:,}], got {_short(x)}")
    return x


def _short(x: Any) -> str:
    s = repr(x) if isinstance(x, int | float | str | bytes | type(None)) else type(x).__name__
    return s[:40]


def _shape(x: Any) -> tuple[int, ...]:
    if not isinstance(x, tuple) or len(x) > 8:
        raise _Refused(f"array shape must be a tuple of at most 8 integers, got {_short(x)}")
    shape = tuple(_int(d, "array dimension") for d in x)
    if math.prod(shape) > MAX_ITEMS:
        raise _Refused(f"array of {math.prod(shape):,} elements (limit {MAX_ITEMS:,})")
    return shape


def _dtype(p: Any) -> np.dtype:
    if not isinstance(p, _DType) or len(p.args) < 1 or not isinstance(p.args[0], str):
        raise _Refused(f"array dtype must be a numpy dtype, got {_short(p)}")
    m = _DTYPE_RE.match(p.args[0])
    if not m:
        raise _Refused(f"dtype {p.args[0]!r} is not a plain dtype (bool, int, float, complex, bytes, str, object)")
    kind, size = m.groups()
    st = p.state
    if not isinstance(st, tuple) or len(st) != 8 or st[0] != 3:
        raise _Refused(f"dtype {p.args[0]!r} has an unexpected state")
    _version, order, subarray, names, fields, elsize, _align, _flags = st
    if subarray is not None or names is not None or fields is not None:
        raise _Refused("structured or sub-array dtypes are not allowed")
    if order not in ("<", ">", "|", "="):
        raise _Refused(f"dtype byte order {_short(order)}")
    if kind in "US":
        unit = 4 if kind == "U" else 1
        nbytes = _int(elsize, "string dtype size", 1, 1 << 24)
        if nbytes % unit:
            raise _Refused(f"unicode dtype of {nbytes} bytes (not a multiple of 4)")
        dt = np.dtype(f"{kind}{nbytes // unit}")
    else:
        if size and size not in ("1", "2", "4", "8", "16"):
            raise _Refused(f"dtype {p.args[0]!r} has an unexpected size")
        dt = np.dtype(p.args[0])
    if order in "<>" and dt.byteorder not in ("|",):
        dt = dt.newbyteorder(order)
    return dt


class _Builder:
    """Turns the unpickled placeholder graph into real objects; shared references stay shared."""

    def __init__(self) -> None:
        self.done: dict[int, Any] = {}
        self.busy: set[int] = set()

    def __call__(self, x: Any, depth: int = 0) -> Any:
        if x is None or isinstance(x, bool | int | float | complex | str | bytes):
            return x
        key = id(x)
        if key in self.done:
            return self.done[key]
        if key in self.busy:
            raise _Refused("a structure that contains itself")
        if depth > MAX_DEPTH:
            raise _Refused(f"containers nested deeper than {MAX_DEPTH} levels")
        self.busy.add(key)
        try:
            out = self._build(x, depth + 1)
        finally:
            self.busy.discard(key)
        self.done[key] = out
        return out

    def _build(self, x: Any, d: int) -> Any:
        if isinstance(x, bytearray):
            return x
        if isinstance(x, list):
            return [self(v, d) for v in x]
        if isinstance(x, tuple):
            return tuple(self(v, d) for v in x)
        if isinstance(x, dict):
            return {self(k, d): self(v, d) for k, v in x.items()}
        if isinstance(x, set | frozenset):
            return type(x)(self(v, d) for v in x)
        if isinstance(x, slice):
            return x
        if isinstance(x, _Array):
            return self._array(x, d)
        if isinstance(x, _FromBuffer):
            return self._frombuffer(x, d)
        if isinstance(x, _Scalar):
            return self._scalar(x, d)
        if isinstance(x, _DType):
            return _dtype(x)
        if isinstance(x, _Frame):
            return self._frame(x, d)
        if isinstance(x, _NewIndex):
            return self._index(x, d)
        raise _Refused(f"a {type(x).__name__.strip('_')} object where plain data was expected")

    # ---- numpy -------------------------------------------------------------------------
    def _array(self, x: _Array, d: int) -> np.ndarray:
        st = x.state
        if isinstance(st, tuple) and len(st) == 4:
            st = (1, *st)
        if not isinstance(st, tuple) or len(st) != 5:
            raise _Refused("ndarray state is not (version, shape, dtype, fortran, data)")
        _v, shape, dt, fortran, raw = st
        shape, dt = _shape(shape), _dtype(dt)
        n = math.prod(shape)
        order = "F" if fortran is True else "C"
        if dt.kind == "O":
            if not isinstance(raw, list) or len(raw) != n:
                raise _Refused(f"object array of shape {shape} needs a list of {n} items")
            flat = np.empty(n, dtype=object)
            for i, v in enumerate(raw):
                flat[i] = self(v, d)
            return flat.reshape(shape, order=order)
        return _from_bytes(raw, dt, shape, order)

    def _frombuffer(self, x: _FromBuffer, d: int) -> np.ndarray:
        if len(x.args) != 4:
            raise _Refused("numpy _frombuffer needs (buffer, dtype, shape, order)")
        buf, dt, shape, order = x.args
        dt = _dtype(dt)
        if dt.kind == "O":
            raise _Refused("object arrays cannot come from a raw buffer")
        if order not in ("C", "F"):
            raise _Refused(f"array order {_short(order)}")
        return _from_bytes(buf, dt, _shape(shape), order)

    def _scalar(self, x: _Scalar, d: int) -> Any:
        if len(x.args) not in (1, 2):
            raise _Refused("numpy scalar needs (dtype, data)")
        dt = _dtype(x.args[0])
        if dt.kind == "O":
            return self(x.args[1], d) if len(x.args) == 2 else None
        raw = x.args[1] if len(x.args) == 2 else b""
        return _from_bytes(raw, dt, (1,), "C")[0]

    # ---- pandas ------------------------------------------------------------------------
    def _index(self, x: _NewIndex, d: int) -> Any:
        import pandas as pd

        if len(x.args) != 2 or not isinstance(x.args[1], dict):
            raise _Refused("pandas _new_Index needs (class, dict)")
        cls, fields = x.args[0], self(x.args[1], d)
        name = fields.get("name")
        if not (name is None or isinstance(name, str | int | float)):
            raise _Refused("an index name that is not a string or number")
        if cls is _RANGE_INDEX:
            start, stop, step = (fields.get(k, dflt) for k, dflt in (("start", 0), ("stop", 0), ("step", 1)))
            for v in (start, stop, step):
                _int(v, "RangeIndex bound", -(1 << 62), 1 << 62)
            if step == 0:
                raise _Refused("RangeIndex with step 0")
            r = range(start, stop, step)
            _int(len(r), "RangeIndex length")
            return pd.RangeIndex(r, name=name)
        if cls is not _INDEX:
            raise _Refused("an index class other than Index or RangeIndex")
        data = fields.get("data")
        if not isinstance(data, np.ndarray) or data.ndim != 1:
            raise _Refused("index data must be a 1-D array")
        return pd.Index(data, dtype=data.dtype, name=name, copy=False)

    def _frame(self, x: _Frame, d: int) -> Any:
        import pandas as pd

        st = x.state
        if not isinstance(st, dict) or not isinstance(st.get("_mgr"), _Manager):
            raise _Refused("DataFrame state without a BlockManager")
        items, rows, blocks = self._manager(st["_mgr"], d)
        n_rows, n_cols = len(rows), len(items)
        _int(n_cols, "number of DataFrame columns", 0, MAX_COLUMNS)
        columns: list[np.ndarray | None] = [None] * n_cols
        for values, placement in blocks:
            if not isinstance(values, np.ndarray) or values.ndim != 2:
                raise _Refused("a DataFrame block that is not a 2-D numpy array (extension arrays are not allowed)")
            if values.shape[1] != n_rows:
                raise _Refused(f"a DataFrame block has {values.shape[1]} rows, the index has {n_rows}")
            locs = _placement(placement, n_cols)
            if len(locs) != values.shape[0]:
                raise _Refused(f"a DataFrame block of {values.shape[0]} columns is placed at {len(locs)} positions")
            for k, j in enumerate(locs):
                if columns[j] is not None:
                    raise _Refused(f"DataFrame column {j} is placed twice")
                columns[j] = values[k]
        if any(c is None for c in columns):
            raise _Refused("a DataFrame column has no block")
        df = pd.DataFrame({j: pd.Series(c, index=rows, dtype=c.dtype, copy=False)
                           for j, c in enumerate(columns)}, index=rows)
        df.columns = items
        return df

    def _manager(self, m: _Manager, d: int) -> tuple[Any, Any, list[tuple[Any, Any]]]:
        import pandas as pd

        # pandas 1.5-3.x pickle a BlockManager as BlockManager(blocks, axes), each block as
        # _unpickle_block(values, placement, ndim); older layouts are refused
        if not m.args or m.state is not None or len(m.args) < 2:
            raise _Refused("BlockManager in a layout other than pandas 1.5-3.x's (blocks, axes)")
        raw_blocks, axes = m.args[0], m.args[1]
        if not isinstance(raw_blocks, tuple | list) or not all(isinstance(b, _Block) for b in raw_blocks):
            raise _Refused("BlockManager blocks must be pandas blocks")
        blocks = []
        for b in raw_blocks:
            if len(b.args) < 2:
                raise _Refused("a pandas block needs (values, placement, ndim)")
            blocks.append((self(b.args[0], d), self(b.args[1], d)))
        axes = self(axes, d)
        if not isinstance(axes, list | tuple) or len(axes) != 2 or not all(isinstance(a, pd.Index) for a in axes):
            raise _Refused("a DataFrame needs two axes (columns, index)")
        return axes[0], axes[1], blocks


def _placement(p: Any, n: int) -> list[int]:
    if isinstance(p, slice):
        for v in (p.start, p.stop, p.step):
            if v is not None:
                _int(v, "block placement", -(1 << 62), 1 << 62)
        if p.step == 0:
            raise _Refused("block placement slice with step 0")
        start, stop, step = p.indices(n)
        if not (0 <= (p.start or 0) <= n and (p.stop is None or 0 <= p.stop <= n)):
            raise _Refused(f"block placement {p} outside the {n} columns")
        return list(range(start, stop, step))
    if isinstance(p, np.ndarray) and p.ndim == 1 and p.dtype.kind in "iu":
        if len(p) and (p.min() < 0 or p.max() >= n):
            raise _Refused(f"block placement outside the {n} columns")
        return [int(v) for v in p]
    raise _Refused("block placement must be a slice or an integer array")


def _from_bytes(raw: Any, dt: np.dtype, shape: tuple[int, ...], order: str) -> np.ndarray:
    if not isinstance(raw, bytes | bytearray):
        raise _Refused(f"array data must be bytes, got {_short(raw)}")
    n = math.prod(shape)
    if len(raw) != n * dt.itemsize:
        raise _Refused(f"array of shape {shape} and dtype {dt} needs {n * dt.itemsize:,} bytes, "
                       f"the pickle holds {len(raw):,}")
    arr = np.frombuffer(raw, dtype=dt) if isinstance(raw, bytearray) else np.frombuffer(raw, dtype=dt).copy()
    return arr.reshape(shape, order=order)
