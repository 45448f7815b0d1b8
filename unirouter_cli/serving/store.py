"""A router directory on disk: file names, ownership, the manifest, the card's and the state's checks, the lock,
the atomic swap and the content hash.

A router directory owns its card (``router.yaml``, marked ``format: unirouter-router``), the state files the
card lists and ``manifest.json`` (written last: each owned file's SHA-256 and the card's facts). Any other
file in the directory belongs to the user: updates carry it over, ``--force`` replaces only a directory that
is a router directory, and loading checks every owned file against the manifest.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..data.folder import REFERENCES
from ..errors import ConfigError, UnirouterError
from ..io import check_regular, exclusive_lock, load_yaml, write_json

FORMAT_VERSION = 2


CARD = "router.yaml"


FILES = ("router.yaml", "encoder.json", "encoder.npz", "router.json", "router.npz", "reserve.json", "reserve.npz",
         "profiles.npz")


FORMAT = "unirouter-router"  # the card's format marker
READ_VERSIONS = (2,)  # 1 (no manifest) is recognised as a router directory (--force replaces it), not loaded
MANIFEST = "manifest.json"
STATE_FILES = tuple(f for f in FILES if f != CARD)
OPTIONAL_FILES = (REFERENCES,)  # state files a router has when its table had them (reference answers)
MAX_CARD_BYTES = 1 << 20


class RouterDirError(UnirouterError):
    """A router directory is missing files, inconsistent, or being updated by another process."""


def _file_hash(p: Path) -> str | None:
    """SHA-256 of a regular file (a FIFO or device is not read), None when there is none."""
    try:
        with open(check_regular(p), "rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()
    except (OSError, UnirouterError):
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
    try:
        return json.loads(check_regular(p, "JSON file").read_text(encoding="utf-8"))
    except RecursionError as e:
        raise ValueError(f"{p.name} is nested too deeply") from e


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


_SECTIONS: dict[str, dict[str, type]] = {
    "dataset": {"name": str, "content_hash": str},
    "encoder": {"name": str, "dim": int},
    "router": {"name": str, "hyperparams": dict},
    "reserve": {"prompts": int, "training_prompts": int},
}
_WANT = {str: "text", int: "a positive integer", dict: "a mapping"}


def _check_card(card: Any, where: Path) -> None:
    """The card's structure: format marker and version, the sections every command reads (dataset, encoder,
    router, reserve, seed, cost unit) in their types, LLMs with unique names and positive costs."""
    if not isinstance(card, dict):
        raise RouterDirError(f"{where}: expected a mapping (the router card)")
    version = card.get("format_version")
    if version not in READ_VERSIONS or isinstance(version, bool):
        raise RouterDirError(f"{where}: format_version {version!r}; this unirouter reads "
                             f"{', '.join(map(str, READ_VERSIONS))} (rebuild the router with `unirouter router "
                             "build`)")
    if card.get("format") != FORMAT:
        raise RouterDirError(f"{where}: format = {card.get('format')!r}; expected {FORMAT}")
    for sec, keys in _SECTIONS.items():
        s = card.get(sec)
        if not isinstance(s, dict):
            raise RouterDirError(f"{where}: {sec} = {s!r:.60}; expected a mapping")
        for k, typ in keys.items():
            v = s.get(k)
            ok = isinstance(v, typ) and not isinstance(v, bool) and (
                (typ is not int or v >= 1) and (typ is not str or bool(v.strip())))
            if not ok:
                raise RouterDirError(f"{where}: {sec}.{k} = {v!r:.60}; expected {_WANT[typ]}")
    n_prompts, res = card["dataset"].get("n_prompts"), card["reserve"]
    if n_prompts is not None and n_prompts != res["prompts"] + res["training_prompts"]:
        raise RouterDirError(f"{where}: dataset.n_prompts = {n_prompts!r:.60}; expected reserve.prompts + "
                             f"reserve.training_prompts = {res['prompts'] + res['training_prompts']}")
    seed = card.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise RouterDirError(f"{where}: seed = {seed!r:.60}; expected an integer >= 0")
    if not isinstance(card.get("cost_unit"), str):
        raise RouterDirError(f"{where}: cost_unit = {card.get('cost_unit')!r:.60}; expected text")
    if not isinstance(card.get("llms"), list) or not card["llms"]:
        raise RouterDirError(f"{where}: expected a non-empty list 'llms'")
    seen = set()
    for i, m in enumerate(card["llms"]):
        if not isinstance(m, dict) or not isinstance(m.get("name"), str) or not m["name"].strip():
            raise RouterDirError(f"{where}: llms[{i}] needs a name")
        c = m.get("cost")
        if isinstance(c, bool) or not isinstance(c, int | float) or not math.isfinite(c) or c <= 0:
            raise RouterDirError(f"{where}: LLM {m['name']!r} has cost {c!r} (expected a positive number)")
        a = m.get("answers")
        if a is not None and (isinstance(a, bool) or not isinstance(a, int) or a < 0):
            raise RouterDirError(f"{where}: LLM {m['name']!r} has answers = {a!r}; expected a count")
        if m["name"] in seen:
            raise RouterDirError(f"{where}: LLM {m['name']!r} is listed twice")
        seen.add(m["name"])


def nonfinite(arrays: dict[str, np.ndarray]) -> str | None:
    """The first float array that holds NaN or infinity once cast to float32 (the dtype every state is
    computed in: a float64 1e300 becomes infinity), or a non-numeric array; None when all are finite."""
    for k, v in arrays.items():
        if v.dtype.kind in "fc":
            with np.errstate(over="ignore", invalid="ignore"):
                if not np.isfinite(v.astype(np.float32)).all():
                    return k
    return None


def check_state(d: Path, card: dict, enc_meta: Any, enc_arrays: dict, meta: dict, arrays: dict, reserve: Any,
                X: np.ndarray, prof: dict) -> tuple[list[str], list[str] | None, np.ndarray]:
    """The state agrees with the card and holds only values a build writes: finite arrays (as float32), a
    non-empty reserve of unique prompt ids, the card's encoder dimension, router, hyperparameters, reserve
    size, LLMs and answer counts. Returns the reserve ids, texts and the profiles' errors."""
    for name, arrs in (("encoder.npz", enc_arrays), ("router.npz", arrays), ("reserve.npz", {"X": X})):
        if (bad := nonfinite(arrs)) is not None:
            raise RouterDirError(f"{d / name}: array {bad!r} holds NaN or infinite values (as float32); "
                                 "rebuild the router")
    ids = reserve.get("prompt_ids") if isinstance(reserve, dict) else None
    texts = reserve.get("texts") if isinstance(reserve, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids) or not (
            texts is None or (isinstance(texts, list) and len(texts) == len(ids)
                              and all(isinstance(t, str) for t in texts))):
        raise RouterDirError(f"{d / 'reserve.json'}: expected {{prompt_ids: [str], texts: [str] or null}}")
    if not ids:
        raise RouterDirError(f"{d / 'reserve.json'}: the probe reserve is empty; rebuild the router")
    if len(set(ids)) != len(ids):
        dup = next(i for i, n in Counter(ids).items() if n > 1)
        raise RouterDirError(f"{d / 'reserve.json'}: prompt id {dup!r} is listed twice; rebuild the router")
    if card["reserve"]["prompts"] != len(ids):
        raise RouterDirError(f"{d / CARD}: reserve.prompts = {card['reserve']['prompts']} but reserve.json lists "
                             f"{len(ids)} probe prompts")
    E, models = prof["errors"], prof["models"]
    names = [m["name"] for m in card["llms"]]
    n = len(ids)
    if (X.ndim != 2 or len(X) != n or X.dtype.kind != "f" or E.shape != (n, len(names)) or E.dtype.kind != "f"
            or models.dtype.kind != "U"):
        raise RouterDirError(f"{d}: reserve has {n} prompts and {len(names)} LLMs, but embeddings are "
                             f"{X.shape} {X.dtype} and profiles {E.shape} {E.dtype}; rebuild the router")
    dim = card["encoder"]["dim"]
    if X.shape[1] != dim or not isinstance(enc_meta, dict) or enc_meta.get("dim", dim) != dim:
        raise RouterDirError(f"{d / CARD}: encoder.dim = {dim} but the reserve embeddings are {X.shape} and "
                             f"encoder.json gives dim {enc_meta.get('dim') if isinstance(enc_meta, dict) else '?'}")
    if meta.get("router") != card["router"]["name"]:
        raise RouterDirError(f"{d / 'router.json'}: holds the state of router {meta.get('router')!r:.60}; the card "
                             f"names {card['router']['name']!r}")
    if isinstance(meta.get("hyperparams"), dict) and meta["hyperparams"] != card["router"]["hyperparams"]:
        raise RouterDirError(f"{d / CARD}: router hyperparameters {card['router']['hyperparams']} differ from "
                             f"router.json's {meta['hyperparams']}")
    if list(models.astype(str)) != names:
        raise RouterDirError(f"{d}: profiles.npz lists other LLMs than {CARD}")
    with np.errstate(over="ignore", invalid="ignore"):
        E = E.astype(np.float32)
    if np.isinf(E).any() or np.any((E < 0) | (E > 1)):  # NaN compares False: not answered
        raise RouterDirError(f"{d / 'profiles.npz'}: errors outside [0, 1]; rebuild the router")
    answered = (~np.isnan(E)).sum(axis=0)
    for j, m in enumerate(card["llms"]):
        if answered[j] == 0:
            raise RouterDirError(f"{d / 'profiles.npz'}: LLM {m['name']!r} has no answered probe prompt; "
                                 "rebuild the router")
        if m.get("answers") is not None and m["answers"] != int(answered[j]):
            raise RouterDirError(f"{d / CARD}: LLM {m['name']!r} has answers = {m['answers']} but profiles.npz "
                                 f"holds {int(answered[j])}")
    return ids, texts, E


def dir_hash(path: str | Path) -> str:
    """Hash of every file (relative name + content) under a directory: equal iff nothing changed."""
    h = hashlib.sha256()
    root = Path(path)
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode())
            h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# ownership and the manifest
# ---------------------------------------------------------------------------------------------


def card_state_files(card: Any) -> tuple[str, ...]:
    """The state files a card lists (``files``); a version 1 card lists none and owns ``FILES``."""
    files = card.get("files") if isinstance(card, dict) else None
    allowed = STATE_FILES + OPTIONAL_FILES
    if isinstance(files, list) and files and all(isinstance(f, str) and f in allowed for f in files):
        return tuple(files)
    return STATE_FILES


def not_a_router(d: Path) -> str | None:
    """Why ``d`` is not a unirouter router directory (a card with the format marker and every state file it
    lists), or None when it is one."""
    if d.is_symlink():
        return "is a symbolic link"
    if not d.is_dir():
        return "is not a directory"
    card_p = d / CARD
    if card_p.is_symlink() or not card_p.is_file():
        return f"holds no {CARD}"
    if card_p.stat().st_size > MAX_CARD_BYTES:
        return f"{CARD} is larger than a router card"
    try:
        card = load_yaml(card_p)
    except (yaml.YAMLError, UnicodeDecodeError, UnirouterError, OSError):
        return f"{CARD} is not a router card"
    if not isinstance(card, dict) or not (card.get("format") == FORMAT or card.get("format_version") == 1):
        return f"{CARD} carries no 'format: {FORMAT}' marker"
    missing = [f for f in card_state_files(card) if (d / f).is_symlink() or not (d / f).is_file()]
    if missing:
        return f"lacks the router file(s) {', '.join(missing)} its {CARD} lists"
    return None


def check_replaceable(target: Path) -> None:
    """Refuse to replace ``target`` unless it is missing, an empty directory or a router directory."""
    if target.is_symlink():
        raise RouterDirError(f"{target} is a symbolic link; give the router directory itself")
    if not target.exists():
        return
    if target.is_dir() and not any(target.iterdir()):
        return
    why = not_a_router(target)
    if why:
        raise RouterDirError(f"{target} exists and is not a router directory ({why}); refusing to replace it")


def owned(card: Any) -> set[str]:
    """The names a router directory owns: the card, the manifest and the state files the card lists."""
    return {CARD, MANIFEST, *card_state_files(card)}


def carry_over(old: Path, staging: Path, mine: set[str]) -> None:
    """Every entry of ``old`` that the router does not own, hard-linked (else copied) into ``staging``: files,
    folders, symbolic links (as links) and FIFOs, sockets or devices (hard-linked; one that cannot be is refused
    before anything is replaced)."""
    for entry in old.iterdir():
        if entry.name in mine:
            continue
        dst = staging / entry.name
        if entry.is_symlink():
            os.symlink(os.readlink(entry), dst)
        elif entry.is_dir():
            shutil.copytree(entry, dst, symlinks=True, copy_function=_link_or_copy)
        elif entry.is_file():
            _link_or_copy(entry, dst)
        else:
            try:
                os.link(entry, dst)
            except OSError as e:
                raise RouterDirError(f"{entry}: not the router's and cannot be carried over to the updated "
                                     f"directory ({e.strerror}); move it out of {old} and retry") from None


def _link_or_copy(src: str | Path, dst: str | Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def manifest_facts(card: dict) -> dict:
    """The card's facts the manifest repeats: which table, router, encoder and LLMs the state belongs to."""
    return {"dataset_hash": card["dataset"]["content_hash"], "router": card["router"]["name"],
            "encoder": card["encoder"]["name"], "dim": card["encoder"]["dim"],
            "reserve": card["reserve"]["prompts"], "llms": [m["name"] for m in card["llms"]]}


def write_manifest(d: Path, card: dict) -> None:
    write_json(d / MANIFEST, {"format": FORMAT, "format_version": FORMAT_VERSION,
                              "files": {f: _file_hash(d / f) for f in (CARD, *card_state_files(card))},
                              "facts": manifest_facts(card)})


def check_manifest(d: Path, card: dict) -> None:
    """Every file the card lists has the hash the manifest gives, and the manifest
    repeats the card's facts (a file swapped in from another router, or edited, is refused)."""
    p = d / MANIFEST
    if p.is_symlink() or not p.is_file():
        raise RouterDirError(f"{p}: missing (it lists the router's files and their hashes); rebuild the router")
    if p.stat().st_size > MAX_CARD_BYTES:
        raise RouterDirError(f"{p}: larger than a manifest ({MAX_CARD_BYTES:,} bytes at most)")
    try:
        m = json.loads(p.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as e:
        raise RouterDirError(f"{p}: not valid JSON ({type(e).__name__}); rebuild the router") from e
    if not isinstance(m, dict) or m.get("format") != FORMAT or not isinstance(m.get("files"), dict):
        raise RouterDirError(f"{p}: expected {{format: {FORMAT}, files: {{name: sha256}}, facts}}")
    for f in (CARD, *card_state_files(card)):
        if (d / f).is_symlink():
            raise RouterDirError(f"{d / f}: is a symbolic link; a router directory holds its own files")
        if _file_hash(d / f) != m["files"].get(f):
            raise RouterDirError(f"{d / f}: does not match {MANIFEST} (changed or replaced after the router was "
                                 "written); rebuild the router or restore the file")
    if m.get("facts") != manifest_facts(card):
        raise RouterDirError(f"{p}: its facts disagree with {CARD}; rebuild the router")
