"""Hybrid retrieval: dense (FAISS) and lexical (BM25) rankings, fused, filtered, optionally reranked.

    retriever = Retriever(index, embedder)
    hits = retriever.search("why does momentum help?", k=5, taught_until=date(2026, 10, 1))

Filters run before fusion: `solution` chunks are excluded unless asked for by kind (the homework
guardrail does that), `kinds` keeps only some kinds, and `taught_until` drops material of lectures
scheduled after that date (material tied to no lecture, like the syllabus, always stays).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ingest import defaults
from ingest.embed import Embedder
from ingest.model import Chunk
from ingest.store import CourseIndex
from ingest.vector_index import search_index

Fusion = Literal["rrf", "weighted"]
DEFAULT_FUSION: Fusion = defaults.FUSION  # the settings' default too: training data retrieves as answers do
Mode = Literal["hybrid", "dense", "lexical"]
RRF_K = 60
DENSE_WEIGHT = 0.8  # tuned on the shipped question set (benchmarks/retrieval_quality.py)
LEXICAL_RRF_WEIGHT = 1.0


# Students' shorthand for course logistics, which course material spells out ("Teaching assistant
# office hours: ..."). The embedding model does not know "TA" means "teaching assistant", so
# "When can I meet the TA?" scored 0.36 against that line and was declined as out of scope; with
# the expansion it scores 0.51. Case matters where a lower-case word would be something else.
_ABBREVIATIONS = [
    (re.compile(r"\bTAs?\b"), "teaching assistant"),
    (re.compile(r"\bOH\b"), "office hours"),
    (re.compile(r"\b(?:HW|hw|Hw)(?=\d*\b)"), "homework"),
    (re.compile(r"\bpsets?\b", re.I), "problem set"),
    (re.compile(r"\bprof\b", re.I), "instructor"),
    (re.compile(r"\blecs?\b", re.I), "lecture"),
]


def expand_abbreviations(query: str) -> str:
    """`query` with each known abbreviation followed by its meaning, once: "the TA (teaching assistant)".

    A meaning the query already contains is not added again, so expanding twice changes nothing.
    """
    for pattern, meaning in _ABBREVIATIONS:
        if meaning in query.lower():
            continue
        match = pattern.search(query)
        if match:
            end = match.end() + len(re.match(r"\d*", query[match.end():]).group(0))
            query = f"{query[:end]} ({meaning}){query[end:]}"
    return query


@dataclass
class Hit:
    chunk: Chunk
    score: float
    dense: float      # cosine similarity of the query and the chunk
    lexical: float    # BM25 score (0 when no query word occurs)
    row: int


def fuse_rankings(rankings: list[list[int]], k: int = RRF_K, weights: list[float] | None = None
                  ) -> dict[int, float]:
    """Reciprocal rank fusion: each item scores sum(w / (k + rank)), rank counted from 1."""
    fused: dict[int, float] = {}
    for ranking, weight in zip(rankings, weights or [1.0] * len(rankings)):
        for rank, item in enumerate(ranking, start=1):
            fused[item] = fused.get(item, 0.0) + weight / (k + rank)
    return fused


def fuse_scores(dense: dict[int, float], lexical: dict[int, float], dense_weight: float = DENSE_WEIGHT
                ) -> dict[int, float]:
    """Weighted fusion of min-max normalised scores (an item missing from one side scores 0 there)."""

    def normalise(scores: dict[int, float]) -> dict[int, float]:
        if not scores:
            return {}
        low, high = min(scores.values()), max(scores.values())
        span = high - low
        return {i: ((s - low) / span if span > 0 else 1.0) for i, s in scores.items()}

    d, lx = normalise(dense), normalise(lexical)
    return {i: dense_weight * d.get(i, 0.0) + (1 - dense_weight) * lx.get(i, 0.0) for i in set(d) | set(lx)}


class Retriever:
    def __init__(self, index: CourseIndex, embedder: Embedder, fusion: Fusion = DEFAULT_FUSION,
                 reranker_model: str = "", candidates: int = 40, dense_weight: float = DENSE_WEIGHT,
                 lexical_rrf_weight: float = LEXICAL_RRF_WEIGHT):
        self.index = index
        self.dense_weight = dense_weight
        self.lexical_rrf_weight = lexical_rrf_weight
        self.embedder = embedder
        self.fusion = fusion
        self.candidates = candidates
        self._reranker_model = reranker_model
        self._reranker = None
        self._kinds = np.array([c.locator.kind for c in index.chunks])
        self._lecture_date = self._lecture_dates()

    def _lecture_dates(self) -> np.ndarray:
        """Per chunk, the ordinal of the date its lecture is scheduled (a large number if none)."""
        never = dt.date.max.toordinal()
        by_path: dict[str, int] = {}
        for chunk in self.index.chunks:
            path = chunk.locator.path
            if path not in by_path:
                lecture = self.index.course.lecture_of(path)
                by_path[path] = lecture.date.toordinal() if lecture else never
        return np.array([by_path[c.locator.path] for c in self.index.chunks], dtype=np.int64)

    def allowed_rows(self, kinds: list[str] | None = None, taught_until: dt.date | None = None) -> np.ndarray:
        mask = np.isin(self._kinds, kinds) if kinds else self._kinds != "solution"
        if taught_until is not None:
            unscheduled = self._lecture_date == dt.date.max.toordinal()
            mask &= unscheduled | (self._lecture_date <= taught_until.toordinal())
        return mask

    def search(self, query: str, k: int = 5, kinds: list[str] | None = None,
               taught_until: dt.date | None = None, mode: Mode = "hybrid",
               query_vector: np.ndarray | None = None) -> list[Hit]:
        if not self.index.chunks or not query.strip():
            return []
        query = expand_abbreviations(query)
        allowed = self.allowed_rows(kinds, taught_until)
        if not allowed.any():
            return []
        qvec = self.embedder.encode_query(query) if query_vector is None else query_vector
        n = self.candidates
        dense_rank = self.dense_ranking(qvec, allowed, n) if mode != "lexical" else []
        lexical_all = self.index.lexical.scores(query)
        lexical_rank = [i for i in _top(lexical_all, allowed, n) if lexical_all[i] > 0] if mode != "dense" else []
        rows = sorted(set(dense_rank) | set(lexical_rank))
        dense = dict(zip(rows, (self.index.vectors[rows] @ qvec).tolist())) if rows else {}
        lexical = {i: float(lexical_all[i]) for i in rows}
        if mode == "dense":
            fused = {i: dense[i] for i in dense_rank}
        elif mode == "lexical":
            fused = {i: lexical[i] for i in lexical_rank}
        elif self.fusion == "rrf":
            fused = fuse_rankings([dense_rank, lexical_rank], weights=[1.0, self.lexical_rrf_weight])
        else:
            fused = fuse_scores({i: dense[i] for i in dense_rank}, {i: lexical[i] for i in lexical_rank},
                                dense_weight=self.dense_weight)
        order = sorted(fused, key=lambda i: (-fused[i], i))
        hits = [Hit(self.index.chunks[i], fused[i], dense[i], lexical[i], i)
                for i in order[: max(k, n) if self._reranker_model else k]]
        if self._reranker_model and hits:
            hits = self._rerank(query, hits)[:k]
        return hits

    def dense_ranking(self, qvec: np.ndarray, allowed: np.ndarray, n: int) -> list[int]:
        """FAISS inner-product top-`n` among the allowed rows, best first."""
        n = min(n, int(allowed.sum()))
        if n <= 0:
            return []
        _, ids = search_index(self.index.faiss_index, qvec, n, allowed)
        return [int(i) for i in ids[0] if i >= 0]

    def _rerank(self, query: str, hits: list[Hit]) -> list[Hit]:
        if self._reranker is None:
            from sentence_transformers import CrossEncoder

            self._reranker = CrossEncoder(self._reranker_model, device="cpu", local_files_only=True)
        scores = self._reranker.predict([(query, h.chunk.embed_text()) for h in hits], show_progress_bar=False)
        for hit, score in zip(hits, scores):
            hit.score = float(score)
        return sorted(hits, key=lambda h: -h.score)

    def neighbours(self, hit: Hit, span: int = 1) -> list[Chunk]:
        """The chunks just before and after `hit` in the same file (for context), in file order."""
        out = []
        for row in range(hit.row - span, hit.row + span + 1):
            if 0 <= row < len(self.index.chunks):
                chunk = self.index.chunks[row]
                if chunk.locator.path == hit.chunk.locator.path and chunk.locator.kind != "solution":
                    out.append(chunk)
        return out


def _top(scores: np.ndarray, allowed: np.ndarray, n: int) -> list[int]:
    """Indices of the `n` highest allowed scores, best first (ties by index, for determinism)."""
    masked = np.where(allowed, scores, -np.inf)
    n = min(n, int(allowed.sum()))
    if n <= 0:
        return []
    part = np.argpartition(-masked, n - 1)[:n]
    return sorted(part.tolist(), key=lambda i: (-masked[i], i))
