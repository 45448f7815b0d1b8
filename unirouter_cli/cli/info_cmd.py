"""``unirouter routers``, ``unirouter probes``, ``unirouter encoders`` and ``unirouter embed``."""

from __future__ import annotations

import typer
from rich.table import Table

from .common import boundary, console


def register(root: typer.Typer) -> None:
    @root.command("routers")
    @boundary
    def routers_cmd() -> None:
        """List the registered routers, their kind and default hyperparameters.

        Example: unirouter routers
        """
        from ..routers import ROUTERS, load_plugins

        load_plugins()
        t = Table(title="routers")
        for col in ("name", "kind", "defaults", "what it does"):
            t.add_column(col, overflow="fold")
        for spec in ROUTERS.values():
            t.add_row(spec.name, spec.kind, ", ".join(f"{k}={v}" for k, v in spec.defaults.items()), spec.help)
        console.print(t)

    @root.command("probes")
    @boundary
    def probes_cmd() -> None:
        """List the probe strategies: how a new LLM's validation (probe) prompts are picked.

        Example: unirouter probes
        """
        from ..probes import STRATEGY_HELP

        t = Table(title="probe strategies (--probe-strategy / --probe-strategies)")
        t.add_column("name")
        t.add_column("how the probes are picked", overflow="fold")
        for k, v in STRATEGY_HELP.items():
            t.add_row(k, v)
        console.print(t)

    @root.command("encoders")
    @boundary
    def encoders_cmd() -> None:
        """List the prompt encoders.

        Example: unirouter encoders
        """
        from ..embed import ENCODER_HELP

        t = Table(title="encoders")
        t.add_column("name")
        t.add_column("what it is")
        for k, v in ENCODER_HELP.items():
            t.add_row(k, v)
        t.add_row("st:<model>", "any sentence-transformers model (extra 'embed'; needs the model locally or a hub)")
        t.add_row("precomputed", "embeddings/precomputed.npy inside the dataset folder (one row per prompt)")
        console.print(t)

    @root.command("embed")
    @boundary
    def embed_cmd(
        dataset: str = typer.Option("mmlu-pro", "--dataset", "-d", help="Registered name or folder path."),
        encoder: str = typer.Option("tfidf", "--encoder", "-e", help="tfidf, minilm, st:<model>, precomputed."),
    ) -> None:
        """Compute (or find) a dataset's prompt embeddings and cache them.

        Example: unirouter embed --dataset routerbench-subset --encoder tfidf
        """
        from ..data import load_dataset
        from ..embed import get_embeddings

        ds = load_dataset(dataset)
        X = get_embeddings(ds, encoder)
        typer.echo(f"ok: {ds.name}: {X.shape[0]} prompts x {X.shape[1]} dims ({encoder})")
