"""A router directory on disk: file names, the card's checks, the lock, the atomic swap and the content hash."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import ConfigError, UnirouterError
from ..io import check_regular, exclusive_lock

FORMAT_VERSION = 1


CARD = "router.yaml"


FILES = ("router.yaml", "encoder.json", "encoder.npz", "router.json", "router.npz", "reserve.json", "reserve.npz",
         "profiles.npz")


class RouterDirError(UnirouterError):
    """A router directory is missing files, inconsistent, or being updated by another process."""


def _file_hash(p: Path) -> str | None:
    try:
        return hashlib.sha256(p.read_bytes()).hexdigest()
    except OSError:
        return None


@contextlib.contextmanager
def _lock(target: Path) -> Iterator[None]:
    """Exclusive lock on an existing router directory (its inode), refusing a second writer."""
    if not target.is_dir():
        yield
        return
    with exclusive_lock(target, RouterDirError, lambda _: f"{target} is being updated by another process; try again"):
        yield


def _fsync_dir(d: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _swap_in(staging: Path, target: Path) -> None:
    _fsync_dir(staging)
    if target.exists():
        old = target.parent / f".{target.name}.old-{os.getpid()}"
        os.rename(target, old)
        os.rename(staging, target)
        _fsync_dir(target.parent)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(staging, target)
        _fsync_dir(target.parent)


def _json(p: Path) -> Any:
    return json.loads(check_regular(p, "JSON file").read_text(encoding="utf-8"))


def _check_meta(name: str, meta: Any, where: Path) -> None:
    """router.json: a mapping whose declared parameters (as given, as chosen, and at the top level where a
    router keeps them) are in their declared types and ranges."""
    from ..routers import check_params, get_spec

    if not isinstance(meta, dict):
        raise RouterDirError(f"{where}: expected a JSON object (the router's parameters and state)")
    declared = get_spec(name).params
    for part in (meta.get("params", {}), meta.get("hyperparams", {}), meta):
        if not isinstance(part, dict):
            raise RouterDirError(f"{where}: expected 'params' and 'hyperparams' to be objects")
        values = {k: v for k, v in part.items() if k in declared and not (v == "auto" and part is not meta)}
        try:
            check_params(name, values)
        except ConfigError as e:
            raise RouterDirError(f"{where}: {e}; rebuild the router") from None


def _check_card(card: Any, where: Path) -> None:
    """The card's structure: format version, router name, LLMs with unique names and positive costs."""
    if not isinstance(card, dict) or not isinstance(card.get("llms"), list) or not card["llms"]:
        raise RouterDirError(f"{where}: expected a mapping with a non-empty list 'llms'")
    if card.get("format_version") != FORMAT_VERSION:
        raise RouterDirError(f"{where}: format_version {card.get('format_version')!r}; this unirouter reads "
                             f"{FORMAT_VERSION} (rebuild the router)")
    if not isinstance(card.get("router"), dict) or not isinstance(card["router"].get("name"), str):
        raise RouterDirError(f"{where}: expected router: {{name: ...}}")
    seen = set()
    for i, m in enumerate(card["llms"]):
        if not isinstance(m, dict) or not isinstance(m.get("name"), str) or not m["name"].strip():
            raise RouterDirError(f"{where}: llms[{i}] needs a name")
        c = m.get("cost")
        if isinstance(c, bool) or not isinstance(c, int | float) or not math.isfinite(c) or c <= 0:
            raise RouterDirError(f"{where}: LLM {m['name']!r} has cost {c!r} (expected a positive number)")
        if m["name"] in seen:
            raise RouterDirError(f"{where}: LLM {m['name']!r} is listed twice")
        seen.add(m["name"])


def dir_hash(path: str | Path) -> str:
    """Hash of every file (relative name + content) under a directory: equal iff nothing changed."""
    h = hashlib.sha256()
    root = Path(path)
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode())
            h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()
