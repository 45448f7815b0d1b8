"""Helpers shared by the source converters: the converted tuple, bounded zip reading, upstream tables."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pandas as pd

from ...errors import DownloadError

MAX_ZIP_MEMBER = 256 << 20  # bytes of one decompressed zip member (the MMLU-Pro outputs are ~15 MB)


# card, prompts, outcomes, models[, references (prompt_id, answer, rule) where the source has reference answers]
Converted = tuple[dict, pd.DataFrame, pd.DataFrame, pd.DataFrame] | tuple[dict, pd.DataFrame, pd.DataFrame,
                                                                        pd.DataFrame, pd.DataFrame]


def read_zip_member(path: Path, suffix: str, limit: int = MAX_ZIP_MEMBER) -> tuple[str, bytes]:
    """(name, bytes) of the first member of zip ``path`` ending in ``suffix``, streamed and capped.

    The member is decompressed in blocks and refused as soon as it passes ``limit`` bytes, so a
    small zip that inflates to gigabytes ("zip bomb") costs at most ``limit`` bytes of memory.
    """
    import zlib

    from ...io import check_regular

    check_regular(path, "zip file")  # a FIFO would block, /dev/zero never ends
    try:
        with zipfile.ZipFile(path) as zf:
            infos = [i for i in zf.infolist() if i.filename.endswith(suffix) and not i.is_dir()]
            if not infos:
                raise DownloadError(f"{path}: zip holds no {suffix} file")
            info = infos[0]
            if info.file_size > limit:
                raise DownloadError(f"{path}: {info.filename} inflates to {info.file_size:,} bytes, more than the "
                                    f"{limit:,}-byte limit for one member")
            chunks, total = [], 0
            with zf.open(info) as fh:
                while block := fh.read(1 << 20):
                    total += len(block)
                    if total > limit:
                        raise DownloadError(f"{path}: {info.filename} inflates to more than {limit:,} bytes "
                                            "(the limit for one member); refusing a zip bomb")
                    chunks.append(block)
            return info.filename, b"".join(chunks)
    except DownloadError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError,
            ValueError) as e:
        raise DownloadError(f"{path}: not a valid zip ({_short(e)}); truncated download or an error page?") from e


def _read_upstream_table(path: Path) -> pd.DataFrame:
    """A CSV, parquet or JSON-lines file from upstream; an unreadable one is one DownloadError."""
    from ...io import check_regular

    check_regular(path, "table")
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        if path.suffix == ".jsonl":
            return pd.read_json(path, lines=True)
        return pd.read_csv(path)
    except Exception as e:  # noqa: BLE001 - any parser failure of an upstream file is a download problem
        raise DownloadError(f"{path}: unreadable ({_short(e)}); truncated download or another format?") from e


def _short(e: BaseException) -> str:
    msg = " ".join(str(e).split())[:100]
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__
