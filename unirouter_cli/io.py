"""Atomic file writes, safe reads and small file helpers shared by every stage.

Every file unirouter writes goes through ``atomic_write``: the data lands in a temporary file in
the same directory, is flushed and fsynced, then renamed over the target. A process killed at any
point leaves either the old file or the new one, never a half-written one. The temporary file sits
in a private (mode 0700) directory made for it, so another user who can write the target's
directory (a shared run directory) cannot swap it for a symbolic link; the final rename replaces
a link at the target instead of following it.

Reading: ``load_yaml`` parses YAML without aliases (a 1 KB "billion laughs" file expands to
gigabytes) or repeated keys, with a size and a nesting limit; ``check_regular`` refuses FIFOs, devices and
directories where a data file is expected (reading a FIFO blocks forever); ``read_table`` reads a
run directory's CSV/parquet file and checks its columns, turning every failure into one line.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``.

    The temporary file is created (O_EXCL, never through a symbolic link) inside a fresh private
    directory beside ``path``, so nobody else can replace it between our writes and the rename.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with named_as(path, f".{path.name}."):  # errors name the target, not the temporary file
        tmp_dir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
        tmp_path = tmp_dir / path.name
        try:
            os.close(os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
            yield tmp_path
            fd = os.open(tmp_path, os.O_RDONLY | os.O_NOFOLLOW)
            try:
                os.fsync(fd)
                os.fchmod(fd, 0o666 & ~_umask())
            finally:
                os.close(fd)
            os.replace(tmp_path, path)
        finally:
            shutil.rmtree(tmp_dir, ignore_errors=True)


@contextlib.contextmanager
def named_as(path: str | Path, hidden: str) -> Iterator[None]:
    """An OSError about a hidden working path (one whose name holds ``hidden``: a temporary file or a staging
    directory) is re-raised naming ``path``, the file or directory the user knows."""
    try:
        yield
    except OSError as e:
        if e.filename is not None and hidden in str(e.filename) and e.errno is not None:
            raise OSError(e.errno, e.strerror, str(path)) from None
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, writer: Callable[[Path], Any]) -> Path:
    """Call ``writer(tmp_path)`` and move the result to ``path`` atomically."""
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def write_output(path: str | Path, writer: Callable[[Path], Any], inputs: tuple[Path, ...] = (),
                 inside: tuple[Path, ...] = ()) -> Path:
    """Write a file the user named (``--out``). Refused, with one line, when it is a directory, one of the
    command's ``inputs`` or inside one of the directories ``inside`` (a router directory the command reads).
    A device, FIFO or symbolic link there is written through, as a shell redirection does (``/dev/null``,
    ``/dev/stdout``, a link the user made), never replaced; anything else is written atomically."""
    from .errors import ConfigError

    p = Path(path)
    if p.is_dir():  # (an empty path is the current directory)
        raise ConfigError(f"--out {p}: is a directory; expected a file path")
    target = p.resolve()
    for f in inputs:
        if target == Path(f).resolve():
            raise ConfigError(f"--out {p}: is an input of this command ({f}); write to another file")
    for d in inside:
        if target.is_relative_to(Path(d).resolve()):
            raise ConfigError(f"--out {p}: inside the router directory {d}, whose files are the router's; write "
                              "elsewhere")
    if p.is_symlink() or (p.exists() and not p.is_file()):
        writer(p)
        return p
    return atomic_write(p, writer)


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def write_yaml(path: str | Path, obj: Any) -> Path:
    return write_text(path, yaml.safe_dump(obj, sort_keys=False, allow_unicode=True))


def write_npz(path: str | Path, **arrays: Any) -> Path:
    def _w(p: Path) -> None:
        with open(p, "wb") as fh:
            import numpy as np

            np.savez(fh, **arrays)

    return atomic_write(path, _w)


def write_npy(path: str | Path, array: Any) -> Path:
    def _w(p: Path) -> None:
        import numpy as np

        with open(p, "wb") as fh:
            np.save(fh, array)

    return atomic_write(path, _w)


def write_parquet(path: str | Path, df: Any) -> Path:
    return atomic_write(path, lambda p: df.to_parquet(p, index=False))


def write_csv(path: str | Path, df: Any) -> Path:
    return atomic_write(path, lambda p: df.to_csv(p, index=False, lineterminator="\n"))


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def check_regular(path: str | Path, what: str = "file") -> Path:
    """``path`` if it is a regular file (symbolic links followed); else an error naming it.

    Raises FileNotFoundError for a missing file (callers keep their own "missing" message) and
    UnirouterError subclass ``DataError`` for a FIFO, device, socket or directory.
    """
    from .errors import DataError

    path = Path(path)
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        kind = ("a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode)
                else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")
        raise DataError(f"{path}: is {kind}, expected a {what}")
    return path


class YAMLLimitError(yaml.YAMLError):
    """A YAML file that uses aliases, is too large, is nested too deeply or repeats a key."""


class _NoAliasLoader(yaml.SafeLoader):
    """PyYAML's safe loader without aliases (``*name``, merge keys): nothing can expand. A mapping
    that repeats a key is refused (PyYAML keeps the last value silently)."""

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: set = set()
            for key_node, _value in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    if key in seen:
                        raise YAMLLimitError(f"line {key_node.start_mark.line + 1}: key {key!r} appears twice")
                    seen.add(key)
                except TypeError:  # an unhashable key: PyYAML's own error follows
                    break
        return super().construct_mapping(node, deep=deep)

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            mark = event.start_mark
            raise YAMLLimitError(f"line {mark.line + 1}: YAML aliases (*{event.anchor}) are not allowed "
                                 "in unirouter files")
        return super().compose_node(parent, index)


YAML_MAX_BYTES = 4 << 20


def loads_yaml(text: str) -> Any:
    """Parse YAML text: safe types only, no aliases, at most ``YAML_MAX_BYTES`` characters."""
    if len(text) > YAML_MAX_BYTES:
        raise YAMLLimitError(f"{len(text):,} characters, more than the {YAML_MAX_BYTES:,} unirouter reads")
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except RecursionError:
        raise YAMLLimitError("nested too deeply") from None


def load_yaml(path: str | Path) -> Any:
    """Read and parse a YAML file a user or a run directory supplies (see ``loads_yaml``).

    Raises OSError (missing file), UnicodeDecodeError, ``DataError`` (a FIFO or directory) or
    ``yaml.YAMLError`` (including ``YAMLLimitError``), as ``yaml.safe_load(path.read_text())`` would.
    """
    path = check_regular(path, "YAML file")
    if path.stat().st_size > YAML_MAX_BYTES:
        raise YAMLLimitError(f"{path.stat().st_size:,} bytes, more than the {YAML_MAX_BYTES:,} unirouter reads")
    return loads_yaml(path.read_text(encoding="utf-8"))


def yaml_problem(e: BaseException) -> str:
    """A short description of a YAML failure: 'line N: what' where PyYAML gives a position."""
    from .errors import UnirouterError

    if isinstance(e, YAMLLimitError):
        return str(e)
    if isinstance(e, UnicodeDecodeError):
        return "not valid UTF-8 text"
    if isinstance(e, UnirouterError):  # "PATH: is a FIFO, expected ..." -> "is a FIFO, expected ..."
        return str(e).split(": ", 1)[-1]
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or type(e).__name__
    return f"line {mark.line + 1}: {problem}" if mark else str(problem)


def read_table(path: str | Path, required: tuple[str, ...] | list[str] = (), numeric: tuple[str, ...] = (),
               hint: str = "") -> Any:
    """Read a CSV or parquet file unirouter wrote into a run directory, checking its columns.

    Every failure (missing, empty, truncated, not a table, a missing column, a non-numeric value in
    a numeric column) is one ``RunDirError`` naming the file; ``hint`` says how to recreate it.
    """
    import pandas as pd

    from .errors import DataError, RunDirError

    path = Path(path)
    tail = f"; {hint}" if hint else ""
    try:
        check_regular(path, "table")
        if path.stat().st_size == 0:
            raise RunDirError(f"{path}: empty file{tail}")
        df = pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
    except FileNotFoundError:
        raise RunDirError(f"{path}: missing{tail}") from None
    except DataError as e:
        raise RunDirError(f"{e}{tail}") from None
    except RunDirError:
        raise
    except Exception as e:  # noqa: BLE001 - any parser failure: truncated, corrupt, not a table
        raise RunDirError(f"{path}: unreadable ({type(e).__name__}: {' '.join(str(e).split())[:80]}){tail}") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise RunDirError(f"{path}: missing column(s) {', '.join(missing)}{tail}")
    for c in numeric:
        if c in df.columns and not (pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c])):
            raise RunDirError(f"{path}: column {c} is not numeric{tail}")
    return df


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


MAX_NPZ_MEMBER = 4 << 30  # bytes one array of an .npz may inflate to (a 10 MB file could inflate to 10 GB)


def read_npz(path: str | Path) -> dict:
    """Every array of an .npz unirouter wrote (run directories, router directories): no pickles,
    each member at most ``MAX_NPZ_MEMBER`` bytes inflated. Raises ValueError (or OSError) otherwise."""
    import numpy as np

    with np.load(check_regular(path, ".npz file"), allow_pickle=False) as z:
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise ValueError("not an .npz archive")
        big = [i.filename for i in z.zip.infolist() if i.file_size > MAX_NPZ_MEMBER]
        if big:
            raise ValueError(f"member {big[0]} inflates to more than {MAX_NPZ_MEMBER:,} bytes")
        return {k: z[k] for k in z.files}


def load_yaml_mapping(path: str | Path, label: str) -> dict:
    """A YAML file that must hold a mapping (a preset, a --config file): one ConfigError line
    starting with ``label`` for a missing file, invalid YAML or another shape."""
    from .errors import ConfigError

    try:
        d = load_yaml(path)
    except FileNotFoundError as e:
        raise ConfigError(f"{label}: file not found") from e
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{label}: not valid YAML ({yaml_problem(e)})") from e
    if not isinstance(d, dict):
        raise ConfigError(f"{label}: expected a mapping of options")
    return d


# --------------------------------------------------------------------------------------------
# the one lock: a run directory's .lock file, a router directory's inode
# --------------------------------------------------------------------------------------------
def _open_lock_file(path: Path, error: type[Exception]) -> int:
    """Open (create) a lock file without following a symbolic link at ``path``. A link, a FIFO, a directory or a
    file with other hard links is refused: truncating it would write through to a file someone else chose."""
    import errno

    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise error(f"{path}: is a symbolic link; unirouter does not follow it (remove it if you did not put "
                        "it there)") from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        os.close(fd)
        what = "not a regular file" if not stat.S_ISREG(st.st_mode) else f"has {st.st_nlink} hard links"
        raise error(f"{path}: {what}; unirouter does not write through it (remove it if you did not put it there)")
    os.set_blocking(fd, True)
    return fd


@contextlib.contextmanager
def exclusive_lock(path: Path, error: type[Exception], busy: Callable[[str], str]) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (never waiting): a directory's inode, or else a lock file created
    there, which records the holder's pid while held. A second holder gets ``error(busy(holder))``; a directory
    replaced while it was being locked is refused too."""
    import fcntl

    is_dir = path.is_dir()
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC) if is_dir else _open_lock_file(path, error)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = "" if is_dir else os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
            raise error(busy(holder or "another process")) from None
        if is_dir and os.fstat(fd).st_ino != os.stat(path).st_ino:
            raise error(f"{path} was replaced by another process while locking; try again")
        if not is_dir:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"unirouter pid {os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            if not is_dir:
                os.ftruncate(fd, 0)
    finally:
        os.close(fd)

