"""The records that flow through ingest: where a piece of text came from, and the text itself.

A loader turns one file into a `Document` (its `Section`s, each with a `Locator`); the chunker turns
sections into `Chunk`s that keep the locator; the store writes chunks to disk. Everything here is a
plain dataclass that round-trips through JSON (`to_dict` / `from_dict`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KINDS = (
    "slides", "book", "notes", "notebook", "transcript",
    "assignment", "solution", "syllabus", "web",
)


@dataclass(frozen=True)
class Locator:
    """Where a piece of text lives, precisely enough for a person to open it there.

    `path` is relative to the course folder (POSIX separators). Exactly one of the position fields is
    usually set: `page` (1-based physical PDF page; `page_label` is the number printed on it),
    `slide` (1-based), `section` (heading path, with `anchor` the heading's slug), `cell` (0-based
    notebook cell index) or `start_s` (seconds into a transcript). `url` is a deep link relative to
    the course folder: `file.pdf#page=3`, `deck.pptx#slide=4`, `ch1.md#anchor`, `nb.ipynb#cell=5`,
    `talk.vtt#t=83`.
    """

    path: str
    kind: str
    title: str
    page: int | None = None
    page_label: str | None = None
    slide: int | None = None
    section: str | None = None
    anchor: str | None = None
    cell: int | None = None
    start_s: float | None = None
    url: str = ""

    def label(self) -> str:
        """A short human-readable place, e.g. `lecture03.pptx, slide 4` or `ch2.md § Momentum`."""
        where = ""
        if self.slide is not None:
            where = f"slide {self.slide}"
        elif self.page is not None:
            where = f"page {self.page_label or self.page}"
        elif self.cell is not None:
            where = f"cell {self.cell}"
        elif self.start_s is not None:
            minutes, seconds = divmod(int(self.start_s), 60)
            where = f"at {minutes}:{seconds:02d}"
        if self.section:
            where = f"{where} § {self.section}" if where else f"§ {self.section}"
        return f"{self.path}, {where}" if where else self.path

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Locator:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class Section:
    """A stretch of text that must not be split across chunks' boundaries: a page, a slide, a cell,
    the body under one heading, or one transcript cue group."""

    text: str
    locator: Locator


@dataclass(frozen=True)
class Demo:
    """A runnable demo (a notebook): its title, where it lives, and a launch URL (e.g. Colab)."""

    title: str
    path: str
    launch_url: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Document:
    """What a loader returns for one file."""

    title: str
    sections: list[Section]
    demo: Demo | None = None


CODE_FRAMEWORKS = ("pytorch", "tensorflow", "jax", "mxnet")


@dataclass(frozen=True)
class LoadOptions:
    """How loaders read files, for choices that belong to the course rather than to the file."""

    ocr: bool = False
    """Read PDF pages that have (almost) no text layer with Tesseract OCR; off, such a PDF needs a
    same-named Markdown/HTML source beside it or is skipped with "needs OCR"."""
    code_framework: str = "pytorch"
    """The one framework kept from multi-framework code tabs (d2l `#@tab`, `:begin_tab:`, `.. tab::`)."""

    def __post_init__(self) -> None:
        if self.code_framework not in CODE_FRAMEWORKS:
            raise ValueError(
                f"code_framework '{self.code_framework}' is not one of: {', '.join(CODE_FRAMEWORKS)}"
            )


@dataclass(frozen=True)
class SourceFile:
    """A file handed to a loader: its absolute path, its path inside the course, its kind, the
    course's demo link base (a URL prefix that a notebook's relative path is appended to), and the
    course's `LoadOptions`."""

    path: Path
    rel: str
    kind: str
    demo_base: str = ""
    options: LoadOptions = field(default_factory=LoadOptions)


@dataclass
class Chunk:
    """A retrievable unit: text that fits the embedder's window, with the locator of its section.

    `id` is stable for the same file, position and text; `ordinal` is the chunk's position within its
    file, so neighbours can be found for context expansion.
    """

    id: str
    text: str
    locator: Locator
    ordinal: int
    text_hash: str
    heading: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def embed_text(self) -> str:
        """The text the embedder and lexical index see: the heading gives a short slide its topic."""
        return f"{self.heading}\n{self.text}" if self.heading else self.text

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "text": self.text, "locator": self.locator.to_dict(),
            "ordinal": self.ordinal, "text_hash": self.text_hash, "heading": self.heading,
            "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Chunk:
        return cls(
            id=data["id"], text=data["text"], locator=Locator.from_dict(data["locator"]),
            ordinal=data["ordinal"], text_hash=data["text_hash"], heading=data.get("heading", ""),
            extra=data.get("extra", {}),
        )
