"""Split sections into chunks that fit the embedder's window, never across a section boundary.

A section is one page, slide, cell, heading body or transcript stretch, so a chunk never straddles
two of them and always keeps its section's locator. Long sections are split by
`RecursiveCharacterTextSplitter` measured in the embedder's own tokens (no tiktoken), with a small
overlap; short ones stay whole.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from langchain_text_splitters import RecursiveCharacterTextSplitter

from ingest import defaults
from ingest.model import Chunk, Document


@dataclass(frozen=True)
class ChunkerSettings:
    """What the manifest records: change any of these and the index must be rebuilt."""

    chunk_tokens: int = defaults.CHUNK_TOKENS
    chunk_overlap: int = defaults.CHUNK_OVERLAP
    tokenizer: str = ""

    def __post_init__(self) -> None:
        if self.chunk_overlap >= self.chunk_tokens:
            raise ValueError(
                f"chunk_overlap ({self.chunk_overlap}) must be smaller than chunk_tokens ({self.chunk_tokens})"
            )

    def to_dict(self) -> dict:
        return {"chunk_tokens": self.chunk_tokens, "chunk_overlap": self.chunk_overlap, "tokenizer": self.tokenizer}


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Chunker:
    """Turns a `Document` into `Chunk`s using a Hugging Face tokenizer to count tokens."""

    def __init__(self, tokenizer, settings: ChunkerSettings):
        self.settings = settings
        self.tokenizer = tokenizer
        self._splitter = RecursiveCharacterTextSplitter.from_huggingface_tokenizer(
            tokenizer,
            chunk_size=settings.chunk_tokens,
            chunk_overlap=settings.chunk_overlap,
            separators=["\n\n", "\n", ". ", "; ", ", ", " ", ""],
            keep_separator="end",
        )

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def split_document(self, document: Document) -> list[Chunk]:
        chunks: list[Chunk] = []
        for section in document.sections:
            heading = section.locator.section or document.title
            for piece in self._split_text(section.text):
                ordinal = len(chunks)
                body_hash = text_hash(f"{heading}\n{piece}")
                chunk_id = text_hash(f"{section.locator.path}|{ordinal}|{body_hash}")[:16]
                chunks.append(
                    Chunk(id=chunk_id, text=piece, locator=section.locator, ordinal=ordinal,
                          text_hash=body_hash, heading=heading)
                )
        return chunks

    def _split_text(self, text: str) -> list[str]:
        text = text.strip()
        if not text:
            return []
        if self.count_tokens(text) <= self.settings.chunk_tokens:
            return [text]
        return [piece.strip() for piece in self._splitter.split_text(text) if piece.strip()]
