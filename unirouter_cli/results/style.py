"""Figure set-up shared by every figure: router styles and colours, figure help texts, matplotlib (Agg) and saving."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#  colour, line style, marker: pairwise distinct colours and (line style, marker) pairs
STYLE_TABLE = [
    ("#000000", ":", "o"),
    ("#D55E00", "--", "s"),
    ("#0072B2", "-", "^"),
    ("#009E73", "-.", "D"),
    ("#E69F00", (0, (3, 1, 1, 1, 1, 1)), "v"),
    ("#CC79A7", "--", "P"),
    ("#882255", ":", "X"),
    ("#666666", "-", "*"),
    ("#332288", "-", "h"),
    ("#999933", "-.", "<"),
    ("#56B4E9", "--", ">"),
    ("#117733", (0, (5, 1)), "p"),
]


MARK_EVERY = 25


FRONTIER_STYLE = {"color": "#9a9a9a", "lw": 4.0, "alpha": 0.7, "solid_capstyle": "butt"}


FIGURE_HELP = {
    "curves": "left: deferral curves minus each trial's best single test LLM, with the single-LLM frontier, "
              "averaged over the same trials; right: per-cost paired difference to the reference "
              "(mean, 95% interval)",
    "metrics": "Area and QNC per trial (box, trials as markers, mean with 95% interval; x = QNC never reached)",
    "paired": "per-trial Area and QNC differences to the reference router, with wins/losses",
    "by-category": "Area difference to the reference per prompt category (mean over trials, wins/losses)",
    "valsize": "Area against the number of validation prompts (two-sigma bands) and its paired difference to the "
               "reference (95% intervals)",
    "probes": "the profiling-cost curve: Area against the probes each new LLM answers, per probe strategy (95% "
              "bands), and the paired difference to random probes at the same count",
}


@dataclass(frozen=True)
class Style:
    colour: str
    linestyle: object
    marker: str
    slot: int

    def line(self) -> dict:
        return {"color": self.colour, "ls": self.linestyle, "marker": self.marker, "lw": 1.8, "ms": 5.5,
                "markevery": ((3 * self.slot) % MARK_EVERY, MARK_EVERY)}


def router_styles(names: list[str]) -> dict[str, Style]:
    """Fixed style per router name: the default routers first, then the registry, then other names."""
    from ..routers import DEFAULT_ROUTERS, ROUTERS

    known = list(dict.fromkeys([*DEFAULT_ROUTERS, *ROUTERS]))
    unknown = sorted(n for n in set(names) if n not in known)
    out = {}
    for n in names:
        i = known.index(n) if n in known else len(known) + unknown.index(n)
        c, ls, mk = STYLE_TABLE[i % len(STYLE_TABLE)]
        if i >= len(STYLE_TABLE):  # past the table: shift the line style so the triple stays new
            ls = [s for _, s, _ in STYLE_TABLE][(i + i // len(STYLE_TABLE)) % len(STYLE_TABLE)]
        out[n] = Style(c, ls, mk, i)
    return out


def router_colours(names: list[str]) -> dict[str, str]:
    return {n: s.colour for n, s in router_styles(names).items()}


def figure_help(filename: str) -> str:
    for key in sorted(FIGURE_HELP, key=len, reverse=True):
        if filename.startswith(key + "-"):
            return FIGURE_HELP[key]
    return ""


# ------------------------------------------------------------------------------------------------
# figures (each returns a matplotlib Figure; plot_* save it)
# ------------------------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, out: Path) -> Path:  # noqa: ANN001 - matplotlib objects
    """Write the figure atomically (a killed plot never leaves a truncated image) and close it."""
    from ..io import atomic_path

    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=150, format=out.suffix.lstrip("."), bbox_inches="tight", pad_inches=0.15)
    plt.close(fig)
    return out


def _label(router: str, kinds: dict[str, str]) -> str:
    k = kinds.get(router, "dynamic")
    return router if k == "dynamic" else f"{router} ({k})"


CAPTION_PT = 8


def _caption(fig, text: str) -> float:  # noqa: ANN001
    """Write ``text`` wrapped along the figure's bottom edge; returns the height it takes (figure fraction), so a
    legend or the axes can start above it."""
    import textwrap

    width = int(fig.get_figwidth() * 15)  # characters of 8-point text per line
    lines = textwrap.wrap(text, width)
    fig.text(0.01, 0.005, "\n".join(lines), ha="left", va="bottom", fontsize=CAPTION_PT, color="#222222")
    return 0.005 + len(lines) * CAPTION_PT * 1.25 / 72 / fig.get_figheight()
