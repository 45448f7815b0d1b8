"""Every data file the package reads at run time is declared as package data (a wheel carries it)."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_all_package_files_are_shipped():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = cfg["tool"]["setuptools"]["package-data"]["unirouter_cli"]
    pkg = ROOT / "unirouter_cli"
    data_files = [p.relative_to(pkg).as_posix() for p in pkg.rglob("*")
                  if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts]
    assert data_files, "expected bundled data"
    missing = [f for f in data_files if not any(fnmatch.fnmatch(f, g) and f.count("/") == g.count("/") for g in globs)]
    assert not missing, f"not declared as package data: {missing}"
