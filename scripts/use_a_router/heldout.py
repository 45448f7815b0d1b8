"""Hold gpt-4-1106-preview and 300 prompts out of the bundled RouterBench subset (the "Use a router"
walk-through of README.md and docs/using-a-router.md). Writes, in the current folder: rb-table/ (the table
without them), new-prompts.jsonl (the held-out texts), gpt4-answers.parquet (stands in for running gpt-4) and
new-outcomes.parquet (every LLM's real outcomes on the held-out prompts, for scoring only)."""

import pathlib
import shutil

import numpy as np
import pandas as pd

from unirouter_cli.data.registry import BUNDLED_DIR

src, out, new = BUNDLED_DIR / "routerbench-subset", pathlib.Path("rb-table"), "gpt-4-1106-preview"
prompts, outcomes, models = (pd.read_parquet(src / "prompts.parquet"), pd.read_parquet(src / "outcomes.parquet"),
           pd.read_csv(src / "models.csv"))
held = np.random.default_rng(0).choice(prompts.prompt_id, 300, replace=False)
out.mkdir(exist_ok=True)
shutil.copy(src / "dataset.yaml", out)
prompts[~prompts.prompt_id.isin(held)].to_parquet(out / "prompts.parquet", index=False)
outcomes[~outcomes.prompt_id.isin(held) & (outcomes.model != new)].to_parquet(out / "outcomes.parquet", index=False)
models[models.model != new].to_csv(out / "models.csv", index=False)
prompts[prompts.prompt_id.isin(held)][["prompt_id", "text"]].to_json("new-prompts.jsonl", orient="records", lines=True)
outcomes[outcomes.prompt_id.isin(held)].to_parquet("new-outcomes.parquet", index=False)
outcomes[outcomes.model == new].to_parquet("gpt4-answers.parquet", index=False)
