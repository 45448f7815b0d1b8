"""Agreement of the choice rules with the letters the MMLU-Pro authors extracted (docs/grading.md).

Reads ../shared: the 3,000 raw Llama-2-13b-hf responses (raw-samples/mmlu-pro-llama-2-13b-responses.parquet,
column extracted_by_authors) and, for each upstream zip in raw-samples/tiger-mmlu-pro, every response
(generated_text) with the authors' letter (pred). Prints, per rule, how many extracted letters equal the
authors' (both "no letter" counts as equal) and, for the Llama-2-13b sample, how many 0/1 scores equal the
table's Llama-2-13b-hf outcomes.
Usage: python scripts/diagnostics/grade_agreement.py [../shared]
"""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

import pandas as pd

from unirouter_cli.serving.grade import grade, read_references


def _same(a, b) -> int:
    def letter(v):
        return v if isinstance(v, str) else None

    return sum(letter(x) == letter(y) for x, y in zip(a, b, strict=True))


def main() -> int:
    shared = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared")
    refs = read_references(shared / "data" / "mmlu-pro" / "references.csv")
    raw = pd.read_parquet(shared / "raw-samples" / "mmlu-pro-llama-2-13b-responses.parquet")
    out = pd.read_parquet(shared / "data" / "mmlu-pro" / "outcomes.parquet", columns=["prompt_id", "model", "score"])
    table = out[out["model"] == "Llama-2-13b-hf"].set_index("prompt_id")["score"].reindex(raw["prompt_id"])
    samples = [("Llama-2-13b-hf sample", raw[["prompt_id", "response"]], raw["extracted_by_authors"].tolist())]
    for z in sorted((shared / "raw-samples" / "tiger-mmlu-pro").glob("model_outputs_*_5shots.zip")):
        with zipfile.ZipFile(z) as f:
            rows = json.loads(f.read(f.namelist()[0]))
        resp = pd.DataFrame({"prompt_id": [f"mmlu-pro/{r['question_id']}" for r in rows],
                             "response": [r["generated_text"] for r in rows]})
        samples.append((z.name.removeprefix("model_outputs_").removesuffix("_5shots.zip"), resp,
                        [r["pred"] for r in rows]))
    for name, responses, authors in samples:
        for rule in ("choice", "choice-chain"):
            g = grade(responses, refs.assign(rule=rule))
            n, k = len(g), _same(g["extracted"], authors)
            line = f"{name:28s} {rule:13s} letters equal {k:6d}/{n} ({k / n:.2%}); accuracy {g['score'].mean():.4f}"
            if name.endswith("sample"):
                s = int((g["score"].to_numpy() == table.to_numpy()).sum())
                line += f"; scores equal to the table {s}/{n} ({s / n:.2%})"
            print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
