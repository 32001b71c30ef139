"""The lexical (BM25) side of the index: one tokenizer shared by indexing and querying.

Tokens are lower-cased words and numbers with English stop words removed and a light plural
strip, so "gradients" matches "gradient". Scoring is bm25s (numpy, no Java, no nltk data).

bm25s imports JAX when it is installed and runs one JAX op at import time. On a GPU machine that
makes JAX claim 75% of the GPU's memory, which starves a vLLM server on the same GPU (seen on an
H100: vLLM then found 18.7 of 79 GiB free). The tutor never needs JAX on the GPU, so unless the
environment says otherwise, JAX is kept on the CPU before bm25s is imported.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import bm25s  # noqa: E402
import numpy as np  # noqa: E402
from bm25s.stopwords import STOPWORDS_EN  # noqa: E402

_WORD = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")
_STOP = frozenset(STOPWORDS_EN)


def lexical_tokens(text: str) -> list[str]:
    tokens = []
    for word in _WORD.findall(text.lower()):
        if word in _STOP:
            continue
        if len(word) > 4 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        tokens.append(word)
    return tokens


RECENT_QUERIES = 256  # queries whose scores are kept (a few hundred KB for a course)


class LexicalIndex:
    """BM25 over a list of texts; `scores(query)` gives one score per text, in order."""

    def __init__(self, bm25: bm25s.BM25 | None, size: int):
        self._bm25 = bm25
        self.size = size
        self._recent: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    @classmethod
    def build(cls, texts: list[str]) -> LexicalIndex:
        if not texts:
            return cls(None, 0)
        bm25 = bm25s.BM25()
        bm25.index([lexical_tokens(t) or [""] for t in texts], show_progress=False)
        return cls(bm25, len(texts))

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        if self._bm25 is not None:
            self._bm25.save(str(directory), show_progress=False)

    @classmethod
    def load(cls, directory: Path, size: int) -> LexicalIndex:
        if size == 0:
            return cls(None, 0)
        return cls(bm25s.BM25.load(str(directory), show_progress=False), size)

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every document for `query` (read-only: the array is shared). An answer searches
        the same query more than once (the sources, then the graded-work check), so the last few
        queries' scores are kept."""
        with self._lock:
            cached = self._recent.get(query)
        if cached is not None:
            return cached
        if self._bm25 is None:
            found = np.zeros(0, dtype=np.float32)
        else:
            ids = self._bm25.get_tokens_ids(lexical_tokens(query))
            found = (np.asarray(self._bm25.get_scores_from_ids(ids), dtype=np.float32) if ids
                     else np.zeros(self.size, dtype=np.float32))
        found.setflags(write=False)
        with self._lock:
            self._recent[query] = found
            while len(self._recent) > RECENT_QUERIES:
                self._recent.pop(next(iter(self._recent)))
        return found
