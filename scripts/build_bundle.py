"""Build the bundled ``mmlu-pro`` folder from ../shared/data/mmlu-pro (maintainers only).

Ships the numbers (outcomes, model costs, prompt ids, categories) and precomputed embeddings made
with unirouter's own encoders, not the question texts (``unirouter download mmlu-pro`` has those).
For tfidf it also ships the fitted encoder (``embeddings/tfidf.state.json`` + ``.state.npz``:
vocabulary, idf, SVD components), capped at 10,000 terms with float16 components to keep the wheel
small, and the shipped rows are exactly ``transform(texts)`` with that state, so `unirouter router`
embeds new texts like the bundled prompts without the texts.
``references.csv`` (each prompt's gold answer and grading rule), where the source has one, is shipped with the
rules in their short spelling (``choice``); ``--only-references`` writes just that file.
Usage: python scripts/build_bundle.py ../shared/data/mmlu-pro [--encoders tfidf,minilm] [--only-embeddings]
       [--only-references]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from unirouter_cli.data.folder import load_folder
from unirouter_cli.data.registry import BUNDLED_DIR
from unirouter_cli.embed.encoders import TfidfEncoder, ids_hash, make_encoder, save_encoder, state_files
from unirouter_cli.io import write_csv, write_npy, write_parquet, write_yaml
from unirouter_cli.serving.grade import parse_rule, read_references, rule_spelling

BUNDLE_TFIDF_MAX_FEATURES = 10_000  # 21,933 terms uncapped; the cap changed no Area measurably (12 trials)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("src", type=Path)
    ap.add_argument("--encoders", default="tfidf,minilm")
    ap.add_argument("--only-embeddings", action="store_true")
    ap.add_argument("--only-references", action="store_true")
    args = ap.parse_args()
    src: Path = args.src
    dest = BUNDLED_DIR / "mmlu-pro"
    if args.only_references:
        write_references(src, dest)
        return 0
    ds = load_folder(src)
    if not args.only_embeddings:
        card = yaml.safe_load((src / "dataset.yaml").read_text())
        card["texts_included"] = False
        card["bundled_note"] = ("Bundled with unirouter without question texts; `unirouter download mmlu-pro` "
                                "fetches them. Embeddings in embeddings/ were computed from the texts by "
                                "unirouter's own encoders.")
        prompts = pd.read_parquet(src / "prompts.parquet")[["prompt_id", "category"]]
        outcomes = pd.read_parquet(src / "outcomes.parquet")[["prompt_id", "model", "score"]]
        outcomes["score"] = outcomes["score"].astype("float32")
        write_parquet(dest / "prompts.parquet", prompts)
        write_parquet(dest / "outcomes.parquet", outcomes)
        write_csv(dest / "models.csv", pd.read_csv(src / "models.csv"))
        write_yaml(dest / "dataset.yaml", card)
        write_references(src, dest)
    index_path = dest / "embeddings" / "index.yaml"
    index = yaml.safe_load(index_path.read_text()) if index_path.exists() else {}
    texts = [str(t) for t in ds.texts]
    for enc in args.encoders.split(","):
        entry = {"made_from": "../shared/data/mmlu-pro prompts.parquet text"}
        if enc == "tfidf":
            encoder = TfidfEncoder(max_features=BUNDLE_TFIDF_MAX_FEATURES, component_dtype="float16").fit(texts)
            js, npz = state_files(dest / "embeddings", enc)
            save_encoder(encoder, js, npz)
            entry.update({"state": js.name, "max_features": BUNDLE_TFIDF_MAX_FEATURES,
                          "n_terms": len(encoder.vocabulary_)})
        else:
            encoder = make_encoder(enc)
        z = encoder.transform(texts)
        write_npy(dest / "embeddings" / f"{enc}.npy", z.astype(np.float16))
        index[enc] = {"dim": int(z.shape[1]), "dtype": "float16", "prompt_ids_sha256": ids_hash(ds.prompt_ids),
                      **entry}
        print(f"{enc}: {z.shape}", file=sys.stderr)
    write_yaml(index_path, index)
    return 0


def write_references(src: Path, dest: Path) -> None:
    """``src/references.csv`` (validated) as ``dest/references.csv``, only the bundled prompts' rows."""
    if not (src / "references.csv").exists():
        return
    refs = read_references(src / "references.csv")
    keep = set(pd.read_parquet(dest / "prompts.parquet")["prompt_id"].astype(str))
    refs = refs[refs["prompt_id"].isin(keep)].reset_index(drop=True)
    refs["rule"] = refs["rule"].map(lambda s: rule_spelling(parse_rule(s)))
    write_csv(dest / "references.csv", refs)
    print(f"references: {len(refs)} rows", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
