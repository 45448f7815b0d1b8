"""A restricted unpickler for the upstream pickles (RouterBench's DataFrame, CARROT's dict of arrays).

``pickle.load`` on a download can run arbitrary code. ``safe_load`` resolves only an allow-list of
plain-data constructors (numpy arrays and dtypes, pandas frames/indexes/blocks, pyarrow buffers,
builtins such as ``slice``) and refuses everything else with a ``DownloadError`` naming the global.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

from .errors import DownloadError

ALLOWED: frozenset[tuple[str, str]] = frozenset({
    ("builtins", "slice"), ("builtins", "bytearray"), ("builtins", "complex"), ("builtins", "set"),
    ("builtins", "frozenset"), ("builtins", "range"), ("builtins", "dict"), ("builtins", "list"),
    ("builtins", "tuple"), ("collections", "OrderedDict"), ("functools", "partial"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("pandas", "DataFrame"), ("pandas", "Series"), ("pandas", "Index"), ("pandas", "RangeIndex"),
    ("pandas", "StringDtype"), ("pandas.arrays", "ArrowStringArray"), ("pandas.arrays", "StringArray"),
    ("pandas.core.frame", "DataFrame"), ("pandas.core.series", "Series"),
    ("pandas.core.internals.managers", "BlockManager"),
    ("pandas.core.internals.managers", "SingleBlockManager"),
    ("pandas.core.internals.blocks", "new_block"), ("pandas.core.internals.blocks", "Block"),
    ("pandas.core.internals.blocks", "ObjectBlock"), ("pandas.core.internals.blocks", "FloatBlock"),
    ("pandas.core.internals.blocks", "IntBlock"), ("pandas.core.internals.blocks", "NumpyBlock"),
    ("pandas._libs.internals", "_unpickle_block"), ("pandas._libs.internals", "BlockPlacement"),
    ("pandas.core.indexes.base", "_new_Index"), ("pandas.core.indexes.base", "Index"),
    ("pandas.core.indexes.range", "RangeIndex"), ("pandas.core.indexes.numeric", "Int64Index"),
    ("pandas.core.indexes.numeric", "Float64Index"),
    ("pandas.core.arrays.string_", "StringDtype"), ("pandas.core.arrays.string_", "StringArray"),
    ("pandas.core.arrays.string_arrow", "ArrowStringArray"),
    ("pyarrow.lib", "type_for_alias"), ("pyarrow.lib", "py_buffer"), ("pyarrow.lib", "_restore_array"),
})


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED or (module == "numpy.dtypes" and name.endswith("DType")):
            return super().find_class(module, name)
        raise DownloadError(f"refusing to unpickle {module}.{name}: only plain data (arrays, tables) is allowed")


def safe_load(path: str | Path) -> Any:
    """Unpickle ``path`` allowing only plain-data constructors."""
    path = Path(path)
    data = path.read_bytes()
    if data[:1] != b"\x80":
        head = data[:60].decode("utf-8", "replace").strip().replace("\n", " ")
        raise DownloadError(f"{path}: not a pickle (starts with {head!r}); an error page instead of data?")
    try:
        return _RestrictedUnpickler(io.BytesIO(data)).load()
    except DownloadError:
        raise
    except Exception as e:  # noqa: BLE001 - truncated or corrupted pickles
        raise DownloadError(f"{path}: cannot unpickle ({type(e).__name__}: {str(e)[:100]}); "
                            "truncated or corrupted download?") from e
