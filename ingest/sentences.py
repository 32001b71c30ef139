"""The sentences an extractive answer may quote, and their vectors, computed once at ingest.

An extractive answer quotes the sentences of the retrieved passages closest to the question. Which
sentences of a chunk can be quoted depends on the chunk alone, so ingest embeds them ahead of time
and a question costs one query embedding instead of embedding every sentence of every source:

    headed_sentences(chunk.text, chunk.heading)   # ["Momentum: Momentum keeps a running velocity ...", ...]
    table, embedded = embed_sentences(chunks, embedder, cache, previous=live.sentences)
    table.vectors_of(chunk.id, headed_sentences(chunk.text, chunk.heading))  # rows, or None

A sentence is embedded with its slide or section title ("headed"): "repeat: $$x_{t+1} = ...$$" alone
says little, under "Gradient descent: the update rule" it answers the question. The index build
stores the table as `sentences.npy` (float32, L2-normalised, one row a headed sentence) and
`sentences.json` (chunk id -> [start, end) rows, and the texts, so a reader can check that the rows
still are what it would quote).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ingest.chunk import text_hash
from ingest.embed import Embedder, EmbeddingCache, embed_with_cache
from ingest.model import Chunk

VECTORS_FILE = "sentences.npy"
ROWS_FILE = "sentences.json"

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z$\\(\[])|\n+")
# Markers written after the full stop ("... in training. [1]") belong to the sentence before them.
_MARKERS_AFTER_STOP = re.compile(r"([.!?])((?:\s*\[\d+(?:\s*,\s*\d+)*\])+)")
_BULLET = re.compile(r"^\s*(?:[-*•·]|\d+[.)])\s+")
_WRAPPED = re.compile(r"(?<=[a-z,;])\n(?=[a-z(])")  # a line break inside a sentence (PDF text wraps)
_EQUATION_LINE = re.compile(r"^\s*\$\$.*\$\$\s*$", re.S)
_NOTES = re.compile(r"^Notes:\s*")
_CODE_LINE = re.compile(
    r"^\s*(?:import |from \w+ import|def |class |for .* in .*:|print\(|return |#|[\"'])|^\s*[\w.\[\]]+\s*[+\-*/]?=\s*\S"
    r"|[;{}]\s*$|\)\s*,?\s*$")


def split_sentences(text: str) -> list[str]:
    text = _MARKERS_AFTER_STOP.sub(r"\2\1", text)
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


def candidate_sentences(text: str, heading: str = "") -> list[str]:
    """Sentences and bullet points of a passage that could answer something: a displayed equation is
    kept with its lead-in, while the heading itself, exercise questions and speaker-note prefixes go."""
    out: list[str] = []
    text = _WRAPPED.sub(" ", text.split("\nNotes:")[0])  # speaker notes help retrieval, read oddly as answers
    for raw in split_sentences(text):
        if _CODE_LINE.search(raw):
            continue
        sentence = _NOTES.sub("", _BULLET.sub("", raw)).strip()
        if not sentence:
            continue
        if out and _EQUATION_LINE.match(sentence):  # a displayed equation completes the sentence before it
            out[-1] = f"{out[-1]}\n\n{sentence}\n"
            continue
        out.append(sentence)
    title = heading.split(" > ")[-1].strip().rstrip(":").lower()
    return [s for s in out
            if (len(s.split()) >= 6 or "$" in s) and not s.rstrip().endswith("?")
            and s.strip().rstrip(":").lower() != title]


def headed(sentence: str, heading: str) -> str:
    """The text a candidate sentence is embedded as: its heading's last part, then the sentence."""
    return f"{heading.split(' > ')[-1]}: {sentence}"


def headed_sentences(text: str, heading: str = "") -> list[str]:
    return [headed(s, heading) for s in candidate_sentences(text, heading)]


@dataclass
class SentenceVectors:
    """Each chunk's headed candidate sentences and their vectors: chunk id -> rows [start, end)."""

    spans: dict[str, tuple[int, int]]
    texts: list[str]
    vectors: np.ndarray

    def vectors_of(self, chunk_id: str, texts: list[str]) -> np.ndarray | None:
        """The stored rows of `chunk_id`, if they are the vectors of exactly `texts`."""
        span = self.spans.get(chunk_id)
        if span is None or self.texts[span[0]:span[1]] != texts:
            return None
        return self.vectors[span[0]:span[1]]

    @classmethod
    def assemble(cls, parts: list[tuple[str, list[str], np.ndarray]], dimension: int) -> SentenceVectors:
        """A table from (chunk id, headed sentences, their vectors), rows in the order given."""
        spans: dict[str, tuple[int, int]] = {}
        texts: list[str] = []
        for chunk_id, chunk_texts, _ in parts:
            spans[chunk_id] = (len(texts), len(texts) + len(chunk_texts))
            texts.extend(chunk_texts)
        blocks = [vectors for _, chunk_texts, vectors in parts if chunk_texts]
        vectors = np.concatenate(blocks) if blocks else np.zeros((0, dimension), np.float32)
        return cls(spans, texts, np.ascontiguousarray(vectors, dtype=np.float32))

    def save(self, folder: Path) -> None:
        np.save(folder / VECTORS_FILE, self.vectors)
        rows = {"chunks": {cid: list(span) for cid, span in self.spans.items()}, "texts": self.texts}
        (folder / ROWS_FILE).write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> SentenceVectors | None:
        """The table stored in an index build, or None for a build made before sentences were stored."""
        if not (folder / ROWS_FILE).is_file():
            return None
        rows = json.loads((folder / ROWS_FILE).read_text(encoding="utf-8"))
        spans = {cid: (int(start), int(end)) for cid, (start, end) in rows["chunks"].items()}
        return cls(spans, rows["texts"], np.load(folder / VECTORS_FILE))


def embed_sentences(chunks: list[Chunk], embedder: Embedder, cache: EmbeddingCache | None,
                    previous: SentenceVectors | None = None) -> tuple[SentenceVectors, int]:
    """The sentence table of `chunks`, and how many sentences were newly embedded.

    A chunk whose sentences the previous build already holds keeps its rows; the rest go through the
    embedding cache by text hash, so only sentences never seen before cost a model call."""
    parts = [(c.id, headed_sentences(c.text, c.heading)) for c in chunks]
    stored = [previous.vectors_of(cid, texts) if previous else None for cid, texts in parts]
    # The same sentence often stands in two overlapping chunks: it is embedded once.
    missing = list(dict.fromkeys(t for (_, texts), rows in zip(parts, stored) if rows is None for t in texts))
    fresh, embedded = embed_with_cache(embedder, cache, missing, [text_hash(t) for t in missing])
    row_of = {text: i for i, text in enumerate(missing)}
    table = SentenceVectors.assemble(
        [(cid, texts, rows if rows is not None else fresh[[row_of[t] for t in texts]])
         for (cid, texts), rows in zip(parts, stored)], embedder.dimension)
    return table, embedded
