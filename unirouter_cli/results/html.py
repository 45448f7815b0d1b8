"""report.html: report.md as one self-contained HTML file with the run's figures embedded (base64).

Only the Markdown subset ``report.render_markdown`` writes is converted (headings, bullet lists,
pipe tables, paragraphs, inline code and bold); no scripts, no external resources.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path


def _inline(text: str) -> str:
    s = html.escape(text, quote=False)
    s = re.sub(r"`([^`]+)`", r"<code>\1</code>", s)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", s)


def markdown_to_html(md: str) -> str:
    """The Markdown subset report.md uses: headings, bullet lists, pipe tables, paragraphs, code, bold."""
    out: list[str] = []
    lines = md.splitlines()
    i = 0
    while i < len(lines):
        ln = lines[i]
        if not ln.strip():
            i += 1
        elif h := re.match(r"^(#{1,4}) (.*)$", ln):
            out.append(f"<h{len(h.group(1))}>{_inline(h.group(2))}</h{len(h.group(1))}>")
            i += 1
        elif ln.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{_inline(lines[i][2:])}</li>")
                i += 1
            out.append("<ul>" + "".join(items) + "</ul>")
        elif ln.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                rows.append([c.strip() for c in lines[i].strip().strip("|").split("|")])
                i += 1
            body = [r for r in rows[1:] if not all(set(c) <= set("-: ") for c in r)]
            head = "".join(f"<th>{_inline(c)}</th>" for c in rows[0])
            trs = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in body)
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{trs}</tbody></table>")
        else:
            para = []
            while i < len(lines) and lines[i].strip() and not re.match(r"^(#{1,4} |- |\|)", lines[i]):
                para.append(lines[i])
                i += 1
            out.append(f"<p>{_inline(' '.join(para))}</p>")
    return "\n".join(out)


HTML_STYLE = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#111}"
              "table{border-collapse:collapse;margin:1em 0;font-size:0.9em}"
              "th,td{border:1px solid #bbb;padding:3px 7px;text-align:left}th{background:#eee}"
              "code{background:#f3f3f3;padding:0 3px}figure{margin:1.5em 0}img{max-width:100%}"
              "figcaption{color:#333;font-size:0.9em}")
IMAGE_TYPES = {".png": "image/png", ".svg": "image/svg+xml"}


def _figure_order(f: Path) -> tuple[int, str]:
    from .style import FIGURE_HELP

    kinds = [k for k in FIGURE_HELP if f.name.startswith(k + "-")]
    return (list(FIGURE_HELP).index(kinds[0]) if kinds else len(FIGURE_HELP), f.name)


def render_html(md: str, figures: list[Path], title: str) -> str:
    from .style import figure_help

    figs = []
    for f in figures:
        data = base64.b64encode(f.read_bytes()).decode("ascii")
        figs.append(f'<figure><img alt="{html.escape(f.name)}" src="data:{IMAGE_TYPES[f.suffix]};base64,{data}">'
                    f"<figcaption><code>plots/{html.escape(f.name)}</code>: {html.escape(figure_help(f.name))}"
                    "</figcaption></figure>")
    if not figs:
        figs.append("<p>No figures yet: run <code>unirouter plot</code> and then <code>unirouter report</code> "
                    "again to embed them.</p>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{HTML_STYLE}</style></head><body>\n{markdown_to_html(md)}\n<h2>Figures</h2>\n"
            + "\n".join(figs) + "\n</body></html>\n")


def run_figures(run_dir: Path) -> list[Path]:
    """The figures in DIR/plots/, in the order of ``plot.FIGURE_HELP``."""
    plots = run_dir / "plots"
    if not plots.is_dir():
        return []
    return sorted((f for f in plots.iterdir() if f.suffix in IMAGE_TYPES), key=_figure_order)
