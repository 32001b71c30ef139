"""Plain-text loader for slide decks exported as text: recovers the slides from the layout.

An export keeps each slide's text but not where one slide ends. What survives is the shape of the
text: paragraphs ("blocks") separated by blank lines (a run of them where a picture was dropped),
in which a slide usually opens with a short title-like line (capitalised, no final period, not a
bullet, link or "Source:" line), a bold line, or a Markdown heading (`# Title`), sometimes next to
the slide's printed number. Decks come in four layouts, told apart by counting those signs:

- headings: titles are Markdown headings, and only they open slides (other short lines are
  captions of the dropped pictures);
- numbered: titles stand next to printed slide numbers, and only those open slides;
- narrated: slides open with a paragraph of running text, with few or no titles; each paragraph
  that does not continue the previous one opens an untitled slide (headings still open slides);
- plain: every title-like line opens a slide, except a caption under a dropped picture on a slide
  with no text yet.

The first slide is the title slide: it keeps the names, dates and links after the document title
until a title followed by real content (bullets, a table, a paragraph). Slides are numbered 1, 2,
... (`deck.txt#slide=3`); the title is the section name and the rest the text (a slide that is a
title alone, its pictures dropped, has its title as text, so no line of the deck is lost). A slide
longer than `MAX_SLIDE_CHARS` is cut between paragraphs. The document title is the first line,
followed by the next title when the first line is short.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ingest.loaders import read_text, register_loader, tidy_text
from ingest.loaders.clean import clean_text
from ingest.model import Document, Locator, Section, SourceFile

MAX_SLIDE_CHARS = 3000
MAX_TITLE_CHARS = 90

_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*$")
_SLIDE_NUMBER = re.compile(r"^\d{1,3}$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_NOT_A_TITLE_START = re.compile(
    r"""^(
        [-*+•▣❑▪◦>|\[<$!(“"'`]                                  # bullets, quotes, links, tables, maths
        | \d+[.)]\s | [a-z]\)                                    # numbered items
        | (image\ |figure\ |fig\.\ ?|table\ )?sources?\b | figure\b | fig\.  # credits, captions
    )""",
    re.IGNORECASE | re.VERBOSE,
)
_BULLETS = set("-*+•▣❑▪◦") | set("0123456789")
_KEY_VALUE = re.compile(r"^\w+: ")
_WORD = re.compile(r"[A-Za-z]{3,}|[^\W\d_]{2,}")
_MARKUP = re.compile(r"\*\*|__|<u>|</u>")


@dataclass
class _Block:
    """Consecutive non-blank lines, with the number of blank lines before them (`gap`)."""

    lines: list[str]
    gap: int
    title: str = ""  # the slide title this block would be, if it looks like one
    heading: bool = False  # a Markdown heading
    numbered: bool = False  # a printed slide number stands right before or after it

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass
class _Slide:
    title: str | None
    blocks: list[str] = field(default_factory=list)


@register_loader(".txt")
def load_text(source: SourceFile) -> Document:
    blocks = _split_blocks(clean_text(read_text(source)))  # cleaned before titles are taken from it
    title = _document_title(blocks) or source.path.stem
    sections = []
    for number, slide in enumerate(_recover_slides(blocks, title), start=1):
        for text in _cut(tidy_text("\n\n".join(slide.blocks)) or slide.title or ""):
            sections.append(Section(
                text=text,
                locator=Locator(
                    path=source.rel, kind=source.kind, title=title, slide=number,
                    section=slide.title, url=f"{source.rel}#slide={number}",
                ),
            ))
    return Document(title=title, sections=sections)


def _split_blocks(text: str) -> list[_Block]:
    """Blocks of non-blank lines, printed slide numbers removed (they mark the titles next to
    them); a fenced code block stays one block, blank lines and all."""
    blocks: list[_Block] = []
    current: list[str] = []
    gap, fenced = 0, False
    for line in text.split("\n"):
        if _FENCE.match(line):
            fenced = not fenced
        if line.strip() or fenced:
            if not current:
                blocks.append(_Block(current, gap))
                gap = 0
            current.append(line.rstrip())
        else:
            current = []
            gap += 1
    kept: list[_Block] = []
    after_number = False
    for block in blocks:
        if len(block.lines) == 1 and _SLIDE_NUMBER.match(block.lines[0].strip()):
            if kept and kept[-1].title:
                kept[-1].numbered = True
            else:
                after_number = True  # a divider slide prints its number above the title
            continue
        block.heading = len(block.lines) == 1 and bool(_HEADING.match(block.lines[0].strip()))
        block.title = _title_of(block)
        block.numbered = after_number and bool(block.title)
        after_number = False
        kept.append(block)
    return kept


def _recover_slides(blocks: list[_Block], document_title: str) -> list[_Slide]:
    """Walk the blocks, opening a slide at each title the deck's layout allows."""
    layout = _layout(blocks)
    slides = [_Slide(document_title)]
    for index, block in enumerate(blocks):
        if index == 0 and block.title:
            continue  # the document title, already the first slide's name
        following = blocks[index + 1] if index + 1 < len(blocks) else None
        previous = blocks[index - 1] if index else None
        if layout == "narrated" and _opens_narrated_slide(block, previous, slides[-1]):
            slides.append(_Slide(None, [block.text]))
        elif block.title and _opens_slide(block, following, slides, layout):
            slides.append(_Slide(block.title))
        else:
            slides[-1].blocks.append(block.text)
    return slides


def _layout(blocks: list[_Block]) -> str:
    """Which of the four layouts (module docstring) the deck follows, by counting its signs."""
    titles = [block for block in blocks if block.title]
    headings = sum(block.heading for block in titles)
    if headings >= 5 and 2 * headings >= len(titles):
        return "headings"
    if sum(block.numbered for block in titles) >= 5:
        return "numbered"
    if sum(_is_prose(block) for block in blocks) > len(titles):
        return "narrated"
    return "plain"


def _opens_slide(block: _Block, following: _Block | None, slides: list[_Slide], layout: str) -> bool:
    if layout == "headings" or layout == "narrated":
        return block.heading
    if layout == "numbered":
        return block.heading or block.numbered
    if len(slides) == 1:  # still on the title slide: names, dates and links until real content
        return not _KEY_VALUE.match(block.title) and following is not None and _is_content(following)
    caption = block.gap >= 2 and not slides[-1].blocks  # text under a dropped image
    return not caption


def _opens_narrated_slide(block: _Block, previous: _Block | None, slide: _Slide) -> bool:
    """A paragraph of narration opens a slide, unless it continues the one just before it or
    is the first text under a heading."""
    continues = previous is not None and _is_prose(previous) and block.gap == 1
    return _is_prose(block) and not continues and bool(slide.blocks)


def _is_content(block: _Block) -> bool:
    """Slide body rather than another short line: bullets, a table, or a real paragraph."""
    first = block.lines[0].lstrip()
    return first[:1] in _BULLETS or "\t" in block.text or len(block.text) >= 80 or len(block.lines) >= 3


def _is_prose(block: _Block) -> bool:
    """A sentence or more of running text (what narrated decks open each slide with)."""
    text = block.text.strip()
    return len(text) >= 60 and text[0].isupper() and text[-1] in ".?!:" and not _NOT_A_TITLE_START.match(text)


def _title_of(block: _Block) -> str:
    """The slide title `block` would be: a heading, or one short capitalised line (maybe bold)."""
    joined = " ".join(line.strip() for line in block.lines)
    if block.heading:
        return _clean(_HEADING.match(joined).group(1))[:MAX_TITLE_CHARS]
    bold = joined.startswith("**") and joined.endswith("**") and len(block.lines) <= 2
    if len(block.lines) > 1 and not bold:
        return ""
    text = _clean(joined)
    looks_like_title = (
        0 < len(text) <= MAX_TITLE_CHARS
        and len(text.split()) <= 12
        and (text[0].isupper() or text[0].isdigit())
        and _WORD.search(text) is not None
        and text[-1] not in ".,;:–-=…"
        and not _NOT_A_TITLE_START.match(text)
        and "http" not in text and "www." not in text and "@" not in text and "\t" not in text
    )
    return text if looks_like_title else ""


def _clean(text: str) -> str:
    return " ".join(_MARKUP.sub("", text).split())


def _document_title(blocks: list[_Block]) -> str:
    """The first line; with the next block's title when the first line is short (a course code)."""
    first = _clean(_HEADING.sub(r"\1", blocks[0].lines[0].strip()))[:MAX_TITLE_CHARS] if blocks else ""
    if first and len(first) < 16 and len(blocks) > 1 and blocks[1].title and not blocks[1].heading:
        return f"{first}: {blocks[1].title}"
    return first


def _cut(text: str) -> list[str]:
    """`text` in pieces of at most MAX_SLIDE_CHARS, cut between paragraphs where possible."""
    if len(text) <= MAX_SLIDE_CHARS:
        return [text] if text else []
    pieces, current = [], ""
    for paragraph in text.split("\n\n"):
        if current and len(current) + 2 + len(paragraph) > MAX_SLIDE_CHARS:
            pieces.append(current)
            current = ""
        while len(paragraph) > MAX_SLIDE_CHARS:
            pieces.append(paragraph[:MAX_SLIDE_CHARS])
            paragraph = paragraph[MAX_SLIDE_CHARS:]
        current = f"{current}\n\n{paragraph}" if current else paragraph
    return [*pieces, current] if current else pieces
