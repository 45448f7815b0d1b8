"""gpt-4's real answers on the probes the router asked for (probes.csv -> answers.csv)."""

import pandas as pd

p = pd.read_csv("probes.csv", dtype={"prompt_id": str})
a = pd.read_parquet("gpt4-answers.parquet")
a[a.prompt_id.isin(p.prompt_id)][["prompt_id", "score"]].to_csv("answers.csv", index=False)
