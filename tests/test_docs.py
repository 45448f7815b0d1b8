"""README.md and docs/: length, links, no project history, and the README's quick start and Python
example run as written (on the bundled data, in a temporary folder)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, ROOT / "CHANGELOG.md", *DOCS]
HISTORY = re.compile(r"issue [0-9]+|development trials|dev seeds", re.IGNORECASE)
FENCE = re.compile(r"^```([\w-]*)\n(.*?)^```\n", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _section(text: str, heading: str) -> str:
    """The text under the level-2 heading that starts with ``heading``, up to the next level-2 heading."""
    m = re.search(rf"^## {re.escape(heading)}.*?$(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert m, f"README.md has no '## {heading}' section"
    return m.group(1)


def _fences(text: str, lang: str | None = None) -> list[str]:
    return [body for info, body in FENCE.findall(text) if lang is None or info == lang]


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return {_anchor(h) for h in re.findall(r"^#+ (.+)$", text, re.MULTILINE)}


def _cli() -> list[str]:
    exe = Path(sys.executable).with_name("unirouter")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "unirouter_cli"]


def test_readme_is_at_most_300_lines():
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= 300, f"README.md has {n} lines; move detail to docs/"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(page: Path):
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    links = [u for u in LINK.findall(text) if not re.match(r"[a-z]+:", u)]
    if page == README:
        assert len(links) >= 10, links
    for url in links:
        path, _, frag = url.partition("#")
        target = (page.parent / path).resolve() if path else page
        assert target.is_file(), f"{page.name}: link {url} -> {target} is not a file"
        if frag and target.suffix == ".md":
            assert frag in _anchors(target), f"{page.name}: link {url}: no heading with anchor #{frag}"


def test_every_docs_page_is_linked_from_the_readme():
    links = {u.partition("#")[0] for u in LINK.findall(README.read_text(encoding="utf-8"))}
    for page in DOCS:
        assert f"docs/{page.name}" in links, f"README.md does not link docs/{page.name}"


def test_no_project_history_in_readme_docs_and_scripts():
    files = [*PAGES, *(p for p in (ROOT / "scripts").rglob("*") if p.suffix in {".py", ".sh", ".md"})]
    hits = [f"{p.relative_to(ROOT)}:{i}: {ln.strip()}" for p in files
            for i, ln in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if HISTORY.search(ln)]
    assert not hits, "\n".join(hits)


def test_setup_commands_are_make_targets_that_do_what_the_readme_says():
    setup = _section(README.read_text(encoding="utf-8"), "Set-up")
    block = _fences(setup)[0]
    targets = re.findall(r"^make (\w+)", block, re.MULTILINE)
    assert targets == ["install", "test"]
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for t in targets:
        assert re.search(rf"^{t}:", makefile, re.MULTILINE), f"Makefile has no target {t}"
    assert "$(BIN)/python -m pytest -q" in makefile and ".venv/bin/python -m pytest -q" in block
    assert "pip install --quiet -c constraints.txt -e '.[dev]'" in makefile
    assert "pip install -c constraints.txt -e '.[dev]'" in block
    assert "source .venv/bin/activate" in setup


@pytest.mark.slow
def test_quick_start_runs_as_written(tmp_path: Path):
    """The fenced block under "Quick start", command by command, with --trials 2 instead of 3 to keep the
    test short; then every runs/quick/... file the section names exists."""
    section = _section(README.read_text(encoding="utf-8"), "Quick start")
    block = _fences(section)[0]
    commands = [ln.split("#")[0].strip() for ln in block.splitlines() if ln.strip()]
    assert commands[0] == "source .venv/bin/activate"
    commands = commands[1:]
    assert [c.split()[1] for c in commands] == ["fit", "evaluate", "report", "plot"]
    assert "--trials 3" in commands[0]
    for cmd in commands:
        args = cmd.replace("--trials 3", "--trials 2").split()
        assert args[0] == "unirouter"
        p = subprocess.run([*_cli(), *args[1:]], cwd=tmp_path, capture_output=True, text=True)
        assert p.returncode == 0, f"{cmd}\n{p.stdout}\n{p.stderr}"
        assert "Traceback" not in p.stderr
    named = set(re.findall(r"runs/quick/[\w./-]*\w", section))
    named |= {f"runs/quick/plots/{f}" for f in re.findall(r"`([\w-]+-unseen\.png)`", section)}
    assert len(named) >= 8
    for f in sorted(named):
        assert (tmp_path / f).exists(), f"the quick start says {f} appears; it does not"


@pytest.mark.slow
def test_python_example_runs_as_written(tmp_path: Path, capsys: pytest.CaptureFixture):
    """The README's Python block, on a router built from the bundled RouterBench subset."""
    section = _section(README.read_text(encoding="utf-8"), "Use a router")
    code = _fences(section, "python")[0]
    assert "from unirouter_cli import load_router" in code and 'load_router("my-router")' in code
    p = subprocess.run([*_cli(), "-q", "router", "build", "--dataset", "routerbench-subset", "--router",
                        "uniroute-kmeans", "--seed", "0", "--out", "my-router"], cwd=tmp_path,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    ns: dict = {}
    cwd = Path.cwd()
    try:
        import os

        os.chdir(tmp_path)
        exec(compile(code, "README.md", "exec"), ns)
    finally:
        os.chdir(cwd)
    out = capsys.readouterr().out.splitlines()
    models = set(ns["router"].models)
    assert len(out) == 2 and all(ln.split()[0] in models for ln in out), out
    assert len(ns["routes"]) == 2 and len(ns["probes"]) == 100
    assert list(ns["probes"].columns[:2]) == ["prompt_id", "text"]
    shutil.rmtree(tmp_path / "my-router")
