"""downloads: fetch public upstream files and convert them to the dataset folder format.

Each source has a converter ``convert_<name>(src_dir) -> (card, prompts, outcomes, models)`` that
reads upstream files already on disk; ``download`` fetches them first (plain HTTPS, no credentials)
unless ``--from DIR`` names a folder that holds them. The converted folder is validated, written
to a temporary folder and renamed into the cache, so a failed download never damages a good copy.

Upstream files are untrusted input: pickles go through ``safepickle.safe_load``; a zip member is
read as a stream and refused past ``MAX_ZIP_MEMBER`` bytes (whatever its header claims); every
record of a zip or pickle is checked, and a malformed one is one ``DownloadError`` naming the file
and the record. ``--dest`` replaces only a unirouter dataset folder (it has a ``dataset.yaml``) or
an empty folder, and a download never hides a bundled dataset behind a smaller table unless asked.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError, DownloadError
from ..io import write_csv
from .folder import CARD, REFERENCES, validate_folder, write_folder
from .registry import BUNDLED_DIR, REGISTRY, bundled_path, unirouter_home
from .sources.common import Converted, _short
from .sources.embedllm import _EMBEDLLM_BASE, convert_embedllm
from .sources.mmlu_pro import _mmlu_pro_files, convert_mmlu_pro
from .sources.routerbench import _ROUTERBENCH_URL, convert_routerbench
from .sources.sprout import _SPROUT_BASE, convert_sprout

MAX_DOWNLOAD = 16 << 30  # bytes of one fetched file


class NotFound(DownloadError):
    """The host answered, but has no such file (HTTP 404)."""


@dataclass(frozen=True)
class Source:
    name: str
    files: Callable[[], tuple[tuple[str, str], ...]]  # -> (url, local file name) pairs to fetch
    convert: Callable[[Path], Converted]
    skip_missing: bool = False  # a file the host does not have (HTTP 404) is skipped, not fatal


SOURCES: dict[str, Source] = {
    # mmlu-pro: one zip per priced model + CARROT's pickle, whose items map to the i-th smallest
    # question id of the zips (or mmlu_pro_item_to_question_id.csv when given); the MMLU-Pro
    # repository keeps a few models in other layouts, so a missing zip is skipped with a warning
    "mmlu-pro": Source("mmlu-pro", lambda: _mmlu_pro_files(), convert_mmlu_pro, skip_missing=True),
    "routerbench": Source("routerbench", lambda: ((_ROUTERBENCH_URL, "routerbench_0shot.pkl"),),
                          convert_routerbench),
    "embedllm": Source("embedllm", lambda: tuple((_EMBEDLLM_BASE + f, f) for f in (
        "model_order.csv", "question_order.csv", "train.csv", "val.csv", "test.csv")), convert_embedllm),
    "sprout": Source("sprout", lambda: tuple((_SPROUT_BASE + f"{s}-00000-of-00001.parquet", f"{s}.parquet")
                                            for s in ("train", "validation", "test")), convert_sprout),
}


def fetch(url: str, dest: Path, name: str, timeout: float = 30.0) -> Path:
    """Download ``url`` to ``dest`` (atomically). Network failures become one clear DownloadError."""
    from ..io import atomic_path

    hint = f"; to convert upstream files you already have, run `unirouter download {name} --from DIR`"
    try:
        req = urllib.request.Request(url, headers={"User-Agent": "unirouter"})
        with urllib.request.urlopen(req, timeout=timeout) as resp, atomic_path(dest) as tmp:
            if "text/html" in resp.headers.get("Content-Type", ""):
                raise DownloadError(f"{url} returned an HTML page instead of data{hint}")
            total = 0
            with open(tmp, "wb") as fh:
                while block := resp.read(1 << 20):
                    total += len(block)
                    if total > MAX_DOWNLOAD:
                        raise DownloadError(f"{url}: more than {MAX_DOWNLOAD:,} bytes; refusing to download further")
                    fh.write(block)
    except urllib.error.HTTPError as e:
        cls = NotFound if e.code == 404 else DownloadError
        raise cls(f"cannot download {url} (HTTP {e.code}){hint}") from e
    except DownloadError:
        raise
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise DownloadError(f"cannot reach {url} ({reason}){hint}") from e
    return dest


def check_dest(dest: Path, src: Path | None = None, label: str = "--dest") -> Path:
    """``dest`` as an absolute path if a download may write there, else one DownloadError (nothing touched).

    Allowed: a path that does not exist yet, an empty folder, or a unirouter dataset folder (it has a
    dataset.yaml), which is replaced. Refused: a symbolic link, a file, any other non-empty folder, the
    current folder or one of its parents, unirouter's bundled data, and a folder that holds ``--from``.
    """
    where = f"{label} {dest}"
    if dest.is_symlink():
        raise DownloadError(f"{where}: is a symbolic link; give the folder itself")
    target = Path(os.path.abspath(dest))
    real = target.resolve()
    cwd = Path.cwd().resolve()
    if real == cwd or real in cwd.parents:
        raise DownloadError(f"{where}: is the current folder or contains it; name a new folder, e.g. {dest / 'NAME'}")
    bundled = BUNDLED_DIR.resolve()
    if real == bundled or bundled in real.parents or real in bundled.parents:
        raise DownloadError(f"{where}: is inside unirouter's bundled data; name another folder")
    if src is not None:
        s = Path(src).resolve()
        if s == real or real in s.parents:
            raise DownloadError(f"{where}: holds the --from folder {src}; replacing it would delete the upstream files")
    if target.exists():
        if not target.is_dir():
            raise DownloadError(f"{where}: exists and is not a folder; nothing was changed")
        if not (target / CARD).is_file() and any(target.iterdir()):
            raise DownloadError(f"{where}: exists and is neither empty nor a unirouter dataset folder (no {CARD}); "
                                "nothing was changed. Name a new or empty folder")
    return target


def _bundled_guard(name: str, dest: Path, n_prompts: int, n_models: int, replace_bundled: bool) -> None:
    """Refuse a download that would hide a bundled dataset behind a smaller table (unless asked)."""
    from .registry import folder_counts

    bundled = bundled_path(name)
    default = Path(os.path.abspath(unirouter_home() / "datasets" / name))
    if bundled is None or replace_bundled or dest != default:
        return
    bp, bm = folder_counts(bundled)
    if n_prompts < bp or n_models < bm:
        raise DownloadError(f"the converted {name} has {n_prompts:,} prompts x {n_models} LLMs, fewer than the bundled "
                            f"copy ({bp:,} x {bm}); saved as the download it would hide the bundled table. Nothing "
                            "was changed: add --replace-bundled to use it anyway, or --dest DIR to keep it elsewhere")


def convert_to_folder(name: str, src: Path, dest: Path, replace_bundled: bool = False,
                      label: str = "--dest") -> tuple[Path, dict]:
    """Convert upstream files in ``src`` into a validated dataset folder at ``dest`` (atomic swap)."""
    if name not in SOURCES:
        raise DownloadError(f"no downloader for {name!r}: expected one of {', '.join(sorted(SOURCES))}")
    src = Path(src)
    if not src.is_dir():
        raise DownloadError(f"--from {src}: not a directory")
    dest = check_dest(Path(dest), src, label)
    try:
        converted = SOURCES[name].convert(src)
        card, prompts, outcomes, models = converted[:4]
        references = converted[4] if len(converted) > 4 else None
    except (DownloadError, DataError):
        raise
    except (KeyError, ValueError, TypeError, IndexError, AttributeError, OverflowError, RecursionError) as e:
        # a record the checks above did not anticipate: still the upstream files' fault, one line
        raise DownloadError(f"{src}: upstream files not in the expected {name} format ({_short(e)})") from e
    _bundled_guard(name, dest, len(prompts), len(models), replace_bundled)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        write_folder(staging, card, prompts, outcomes, models)
        if references is not None:
            write_csv(staging / REFERENCES, references)
        problems, _, _ = validate_folder(staging)
        if problems:
            raise DownloadError(f"converted {name} failed validation: {problems[0]}")
        if dest.exists():
            check_dest(dest, src, label)  # still a dataset folder or empty
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old.", dir=dest.parent))
            old.rmdir()
            dest.replace(old)
            staging.replace(dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.replace(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    summary = {"prompts": int(len(prompts)), "models": int(len(models)), "outcomes": int(len(outcomes)),
               "excluded_models": card.get("excluded_models", [])}
    return dest, summary


def download(name: str, from_dir: Path | None = None, dest: Path | None = None,
             progress: Callable[[str], None] | None = None, replace_bundled: bool = False) -> tuple[Path, dict]:
    if name not in REGISTRY or name not in SOURCES:
        raise DownloadError(f"unknown dataset {name!r}: expected one of {', '.join(sorted(SOURCES))}")
    label = "--dest" if dest else "download folder"
    dest = dest or (unirouter_home() / "datasets" / name)
    check_dest(Path(dest), from_dir, label)
    if from_dir is not None:
        return convert_to_folder(name, Path(from_dir), dest, replace_bundled, label)
    raw = unirouter_home() / "raw" / name
    raw.mkdir(parents=True, exist_ok=True)
    source = SOURCES[name]
    missing = []
    for url, fname in source.files():
        target = raw / fname
        if not target.exists():
            if progress:
                progress(f"fetching {url}")
            try:
                fetch(url, target, name)
            except NotFound:
                if not source.skip_missing:
                    raise
                missing.append(fname)
    folder, summary = convert_to_folder(name, raw, dest, replace_bundled, label)
    summary["not_found"] = missing
    return folder, summary


def remove_download(name: str) -> Path:
    """Delete the downloaded copy of registered dataset ``name`` from $UNIROUTER_HOME/datasets."""
    if name not in REGISTRY:
        raise DataError(f"unknown dataset {name!r}: expected one of {', '.join(sorted(REGISTRY))}")
    folder = unirouter_home() / "datasets" / name
    if folder.is_symlink():
        folder.unlink()  # the link only, never what it points to
        return folder
    if not folder.exists():
        if bundled_path(name):
            raise DataError(f"{name} is bundled with unirouter and has no downloaded copy in {folder.parent}; "
                            "bundled data cannot be removed")
        raise DataError(f"{name}: no downloaded copy in {folder.parent}")
    if not folder.is_dir() or not (folder / CARD).is_file():
        raise DataError(f"{folder}: not a unirouter dataset folder (no {CARD}); nothing was removed")
    shutil.rmtree(folder)
    return folder

