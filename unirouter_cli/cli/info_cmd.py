"""``unirouter routers``, ``unirouter probes``, ``unirouter encoders`` and ``unirouter embed``."""

from __future__ import annotations

import typer
from rich.table import Table

from .common import boundary, console, done


def _print_table(title: str, columns: tuple[str, ...], rows: object) -> None:
    t = Table(title=title)
    for col in columns:
        t.add_column(col, overflow="fold")
    for row in rows:
        t.add_row(*map(str, row))
    console.print(t)


def register(root: typer.Typer) -> None:
    @root.command("routers")
    @boundary
    def routers_cmd() -> None:
        """List the registered routers: kind, whether `unirouter fit` fits it by default, parameters.

        Example: unirouter routers
        """
        from ..routers import ROUTERS, load_plugins

        load_plugins()
        _print_table("routers (parameters: default, then what -p ROUTER.NAME=VALUE accepts)",
                     ("name", "kind", "fit", "parameters", "what it does"),
                     [(spec.name, spec.kind, "fit" if spec.fit_by_default else "",
                       "; ".join(f"{k}={p.default} ({p.describe()})" for k, p in spec.params.items()) or "none",
                       spec.help)
                      for spec in sorted(ROUTERS.values(), key=lambda s: s.order)])

    @root.command("probes")
    @boundary
    def probes_cmd() -> None:
        """List the probe strategies: how a new LLM's validation (probe) prompts are picked.

        Example: unirouter probes
        """
        from ..protocol.probes import STRATEGY_HELP

        _print_table("probe strategies (--probe-strategy / --probe-strategies)",
                     ("name", "how the probes are picked"), STRATEGY_HELP.items())

    @root.command("encoders")
    @boundary
    def encoders_cmd() -> None:
        """List the prompt encoders.

        Example: unirouter encoders
        """
        from ..embed.encoders import ENCODER_HELP

        _print_table("encoders", ("name", "what it is"), [
            *ENCODER_HELP.items(),
            ("st:<model>", "any sentence-transformers model (extra 'embed'; needs the model locally or a hub)"),
            ("precomputed", "embeddings/precomputed.npy inside the dataset folder (one row per prompt)")])

    @root.command("embed")
    @boundary
    def embed_cmd(
        dataset: str = typer.Option("mmlu-pro", "--dataset", "-d", help="Registered name or folder path."),
        encoder: str = typer.Option("tfidf", "--encoder", "-e", help="tfidf, minilm, st:<model>, precomputed."),
    ) -> None:
        """Compute (or find) a dataset's prompt embeddings and cache them.

        Example: unirouter embed --dataset routerbench-subset --encoder tfidf
        """
        from ..data.registry import load_dataset
        from ..embed.encoders import get_embeddings

        ds = load_dataset(dataset)
        X = get_embeddings(ds, encoder)
        done(f"ok: {ds.name}: {X.shape[0]} prompts x {X.shape[1]} dims ({encoder})")
