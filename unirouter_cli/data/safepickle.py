"""A restricted unpickler for the upstream pickles (RouterBench's DataFrame, CARROT's dict of arrays).

``pickle.load`` on a download can run arbitrary code, and even a pickle that names only "data"
classes can hand numpy, pandas or pyarrow forged buffers, offsets and shapes that their
reconstruction code trusts. ``safe_load`` therefore never lets a library rebuild an object from
pickle state. It reads the file in two passes:

1. a scan of the opcodes (``pickletools``): the file is at most ``MAX_BYTES`` and holds at most
   ``MAX_OPS`` opcodes, memo indices are sequential (a forged index cannot make the C unpickler
   allocate a huge memo), no out-of-band buffers or persistent ids;
2. the C unpickler, whose ``find_class`` resolves a short allow-list of names to *inert
   placeholders* that only record their arguments and state. No library code runs while the
   untrusted bytes are parsed.

The placeholders are then turned into real objects through public constructors, after checking
every field: numpy arrays (``_reconstruct`` + state, ``_frombuffer``, ``scalar``) of plain dtypes
(bool, integer, float, complex, bytes, unicode, object; byte order given; no structured, void or
sub-array dtypes) whose byte count equals shape x item size, at most ``MAX_ITEMS`` elements each;
pandas DataFrames (the pandas 1.5-3.x layout: ``BlockManager(blocks, axes)`` of 2-D numpy blocks
with slice or integer placements) rebuilt column by column after checking that every block has the index's
length and every column is placed exactly once; ``Index``/``RangeIndex`` of such arrays;
``slice`` of integers; ``bytearray`` of bytes (and ``_codecs.encode(str, 'latin1')``, protocol
2's spelling of bytes). Nothing else resolves: Arrow arrays
(``pyarrow.lib._restore_array``, pandas ``ArrowStringArray``) are refused because their buffers
and offsets cannot be checked before pyarrow uses them; so are builtins such as ``list``,
``range`` and ``functools.partial`` (``list(range(10**12))`` is 40 bytes of pickle), and
everything that runs code (``os.system``, ``eval``, ...). Each refusal is one ``DownloadError``.
"""

from __future__ import annotations

import _compat_pickle
import io
import pickle
import pickletools
from pathlib import Path
from typing import Any

from ..errors import DownloadError
from .unpickled import (
    _INDEX,
    _NDARRAY,
    _RANGE_INDEX,
    MAX_BYTES,
    MAX_COLLISIONS,
    MAX_OPS,
    _Array,
    _Block,
    _Builder,
    _DType,
    _Fn,
    _Frame,
    _FromBuffer,
    _Manager,
    _NewIndex,
    _Refused,
    _Scalar,
)


def _reconstruct(subtype: Any, shape: Any = (0,), typecode: Any = b"b") -> _Array:
    if subtype is not _NDARRAY:
        raise _Refused("numpy _reconstruct of something other than a plain ndarray")
    return _Array()


def _slice(*args: Any) -> slice:
    if len(args) > 3 or not all(a is None or type(a) is int for a in args):
        raise _Refused("slice() with arguments other than integers")
    return slice(*args)


def _bytearray(*args: Any) -> bytearray:
    if len(args) > 1 or (args and not isinstance(args[0], bytes)):
        raise _Refused("bytearray() with arguments other than bytes (bytearray(N) allocates N bytes)")
    return bytearray(*args)


def _encode(text: Any, encoding: Any = "utf-8") -> bytes:  # protocol 2 stores bytes as encode(str, 'latin1')
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _Refused("_codecs.encode other than of a string to latin1")
    return text.encode("latin1")


_NP = ("numpy.core", "numpy._core")
_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy", "dtype"): _DType,
    ("numpy", "ndarray"): _NDARRAY,
    **{(f"{p}.multiarray", "_reconstruct"): _Fn(_reconstruct) for p in _NP},
    **{(f"{p}.multiarray", "scalar"): _Scalar for p in _NP},
    **{(f"{p}.numeric", "_frombuffer"): _FromBuffer for p in _NP},
    ("builtins", "slice"): _Fn(_slice),
    ("builtins", "bytearray"): _Fn(_bytearray),
    ("_codecs", "encode"): _Fn(_encode),
    ("pandas", "DataFrame"): _Frame,
    ("pandas.core.frame", "DataFrame"): _Frame,
    ("pandas.core.internals.managers", "BlockManager"): _Manager,
    ("pandas._libs.internals", "_unpickle_block"): _Block,
    ("pandas.core.internals.blocks", "new_block"): _Block,  # pandas 1.x name
    ("pandas.core.indexes.base", "_new_Index"): _NewIndex,
    ("pandas", "Index"): _INDEX,
    ("pandas.core.indexes.base", "Index"): _INDEX,
    ("pandas.core.indexes.numeric", "Int64Index"): _INDEX,  # pandas 1.x
    ("pandas.core.indexes.numeric", "UInt64Index"): _INDEX,
    ("pandas.core.indexes.numeric", "Float64Index"): _INDEX,
    ("pandas", "RangeIndex"): _RANGE_INDEX,
    ("pandas.core.indexes.range", "RangeIndex"): _RANGE_INDEX,
}
ALLOWED: frozenset[tuple[str, str]] = frozenset(_ALLOWED)


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        # protocols 0-2 spell Python 3 names the Python 2 way (__builtin__.slice)
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            arrow = module.startswith("pyarrow") or "Arrow" in name
            why = ("Arrow arrays are rebuilt from unchecked buffers and offsets" if arrow
                   else "only plain data (arrays, tables) is allowed")
            raise DownloadError(f"refusing to unpickle {module}.{name}: {why}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise _Refused("persistent ids are not allowed")


# --------------------------------------------------------------------------------------------
# pass 1: the opcode scan
# --------------------------------------------------------------------------------------------
_PUT = {"PUT", "BINPUT", "LONG_BINPUT"}


def _scan(data: bytes) -> None:
    memo = 0
    seen: dict[int, tuple[object, int]] = {}  # hash -> (first number, distinct others with that hash)
    for n, (op, arg, _pos) in enumerate(pickletools.genops(io.BytesIO(data))):
        if n >= MAX_OPS:
            raise _Refused(f"more than {MAX_OPS:,} opcodes")
        if isinstance(arg, int | float) and not isinstance(arg, bool):
            first, others = seen.get(hash(arg), (arg, 0))
            if arg != first:
                others += 1
                if others > MAX_COLLISIONS:
                    raise _Refused(f"more than {MAX_COLLISIONS:,} numbers share one hash value (a hash-flooding "
                                   "payload)")
            seen[hash(arg)] = (first, others)
        if op.name in _PUT:
            if not isinstance(arg, int) or arg > memo:
                raise _Refused(f"memo index {arg} out of sequence (a forged index makes the unpickler allocate)")
            memo += arg == memo
        elif op.name == "MEMOIZE":
            memo += 1
        elif op.name in ("NEXT_BUFFER", "READONLY_BUFFER", "PERSID", "BINPERSID"):
            raise _Refused(f"opcode {op.name} (out-of-band data) is not allowed")


# --------------------------------------------------------------------------------------------
# the entry point
# --------------------------------------------------------------------------------------------
def safe_load(path: str | Path) -> Any:
    """Unpickle ``path`` allowing only checked plain data (see the module docstring)."""
    from ..io import check_regular

    path = check_regular(path, "pickle file")  # /dev/zero or a FIFO would be read forever
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise DownloadError(f"{path}: {size:,} bytes, larger than the {MAX_BYTES:,}-byte limit for a pickle")
    data = path.read_bytes()
    if data[:1] != b"\x80":
        head = data[:60].decode("utf-8", "replace").strip().replace("\n", " ")
        raise DownloadError(f"{path}: not a pickle (starts with {head!r}); an error page instead of data?")
    try:
        _scan(data)
        raw = _RestrictedUnpickler(io.BytesIO(data)).load()
        return _Builder()(raw)
    except DownloadError as e:
        msg = str(e)
        raise DownloadError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None
    except _Refused as e:
        raise DownloadError(f"{path}: refusing to unpickle: {e}") from None
    except RecursionError:
        raise DownloadError(f"{path}: refusing to unpickle: nested too deeply") from None
    except Exception as e:  # noqa: BLE001 - truncated or corrupted pickles
        raise DownloadError(f"{path}: cannot unpickle ({type(e).__name__}: {str(e)[:100]}); "
                            "truncated or corrupted download?") from None
