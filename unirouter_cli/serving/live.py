"""The router a server serves, reloaded when its directory changes.

A router directory is only ever replaced whole (``DeployedRouter.save`` writes a new directory and renames it
into place), so a change shows as a new inode of the directory or a new card. ``LiveRouter.check`` compares
that signature with the one loaded; on a change it loads the directory and keeps the result only when the
signature is the same before and after loading (no swap happened during the load) and the checks the server
was started with pass. Otherwise the router served so far stays in service, and the next check retries.
Requests read ``LiveRouter.current`` once, so each request sees one complete router.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UnirouterError

CARD = "router.yaml"


@dataclass(frozen=True)
class Served:
    """One loaded router and where it came from."""

    router: Any  # DeployedRouter
    version: str  # first 12 hex digits of the card's sha256
    signature: tuple
    loaded_at: float


def signature(path: Path) -> tuple | None:
    try:
        d, c = os.stat(path), os.stat(path / CARD)
    except OSError:
        return None
    return d.st_ino, d.st_mtime_ns, c.st_ino, c.st_mtime_ns, c.st_size


class LiveRouter:
    """Holds the served router; ``check()`` reloads it when the directory changed."""

    def __init__(self, path: str | Path, load: Callable[[Path], Any], accept: Callable[[Any], None]) -> None:
        self.path = Path(path).expanduser().absolute()
        self._load, self._accept = load, accept
        self._lock = threading.Lock()
        self.reloads = 0
        self.last_error: str | None = None
        served = self._try_load()
        if served is None:
            raise UnirouterError(f"{self.path}: changed while it was being loaded; start again")
        self.current: Served = served

    def _try_load(self) -> Served | None:
        before = signature(self.path)
        router = self._load(self.path)  # raises the loader's one-line error
        if before is None or signature(self.path) != before:
            return None
        self._accept(router)
        card_hash = getattr(router, "_loaded_card_hash", None) or hashlib.sha256(
            (self.path / CARD).read_bytes()).hexdigest()
        return Served(router, card_hash[:12], before, time.time())

    def check(self, force: bool = False) -> str:
        """'unchanged', 'reloaded', 'retry' (changed during the load) or 'refused' (``last_error`` says why)."""
        with self._lock:
            now = signature(self.path)
            if not force and (now is None or now == self.current.signature):
                return "unchanged"
            try:
                served = self._try_load()
            except UnirouterError as e:
                self.last_error = " ".join(str(e).split())
                return "refused"
            if served is None:
                return "retry"
            self.current, self.last_error = served, None
            self.reloads += 1
            return "reloaded"
