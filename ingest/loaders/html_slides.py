"""HTML slide decks (remark.js, reveal.js): one section per slide, presenter notes included.

A deck is one HTML page, but a student thinks of it slide by slide. Two kinds are recognised:

- remark: the slides are Markdown inside `<textarea id="source">`, split by `---` lines; `--` lines
  reveal the rest of a slide step by step, and notes follow `???`. Slide properties (`class:`,
  `name:`, ...) and remark's `.class[ … ]` wrappers are dropped; a `layout: true` slide is a
  template, not a slide. Slides are numbered as remark numbers them, each step of a reveal counting
  (so `deck.html#7` opens the slide with everything revealed).
- reveal: each `<section>` inside `.reveal .slides` is a slide (a nested section a vertical slide),
  with notes in `<aside class="notes">`; a `data-markdown` section holds Markdown, notes after
  `Note:`. Links open `deck.html#/h` or `#/h/v`.

The slide's first heading is its section name; notes are added after "Notes: ", as the PowerPoint
loader does. Consecutive slides where one holds the other (copies made to reveal a step) keep only
the fullest (`ingest.loaders.pages.collapse_reveals`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bs4 import BeautifulSoup, Tag

from ingest.loaders import tidy_text
from ingest.loaders.markup import clean_markdown
from ingest.loaders.pages import collapse_reveals

_REMARK_PROPERTY = re.compile(r"^(name|class|layout|template|background-image|count|exclude|seq):.*$")
_REMARK_WRAPPER = re.compile(r"\.[\w-]+\[")
_MD_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)")
_MD_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")
_BLOCKS = ("p", "div", "li", "ul", "ol", "tr", "table", "pre", "br", "h1", "h2", "h3", "h4", "h5", "h6",
           "blockquote", "figure", "figcaption", "dt", "dd")


@dataclass
class Slide:
    """One slide: its number, title (maybe ""), text with notes, and the fragment that opens it."""

    number: int
    title: str
    text: str
    fragment: str


def find_slides(soup: BeautifulSoup, framework: str) -> list[Slide] | None:
    """The slides of a remark or reveal deck, or None when `soup` is an ordinary page."""
    source = soup.find("textarea", id="source")
    if source is not None and re.search(r"^---\s*$", source.get_text(), re.MULTILINE):
        return _keep_fullest(_remark_slides(source.get_text(), framework))
    deck = soup.select_one(".reveal .slides")
    if deck is not None and deck.find("section"):
        return _keep_fullest(_reveal_slides(deck, framework))
    return None


def _keep_fullest(slides: list[Slide]) -> list[Slide]:
    kept = collapse_reveals([f"{slide.title}\n{slide.text}" for slide in slides])
    return [slides[index] for index in kept if slides[index].text]


def _remark_slides(markdown: str, framework: str) -> list[Slide]:
    slides, shown = [], 0
    for raw in re.split(r"^---[ \t]*$", markdown, flags=re.MULTILINE):
        lines = raw.strip("\n").split("\n")
        properties = []
        while lines and _REMARK_PROPERTY.match(lines[0].strip()):
            properties.append(lines.pop(0).strip())
        if "layout: true" in properties or "exclude: true" in properties:
            continue
        body, _, notes = "\n".join(lines).partition("\n???")
        shown += 1 + len(re.findall(r"^--[ \t]*$", body, re.MULTILINE))
        body = re.sub(r"^--[ \t]*$", "", body, flags=re.MULTILINE)
        title, text = _split_title(_remark_markdown(body, framework))
        notes = _remark_markdown(notes, framework)
        slides.append(Slide(shown, title, _with_notes(text or title, notes), str(shown)))
    return slides


def _remark_markdown(markdown: str, framework: str) -> str:
    """Remark's Markdown without its wrappers (`.center[`, a lone `]`) and images (logos, figures)."""
    markdown = _REMARK_WRAPPER.sub("", _MD_IMAGE.sub("", markdown))
    markdown = re.sub(r"^\s*\]\s*$", "", markdown, flags=re.MULTILINE)
    return tidy_text(clean_markdown(markdown, framework))


def _reveal_slides(deck: Tag, framework: str) -> list[Slide]:
    slides = []
    for h, section in enumerate(deck.find_all("section", recursive=False)):
        inner = section.find_all("section", recursive=False)
        for v, slide in enumerate(inner or [section]):
            fragment = f"/{h}/{v}" if inner else f"/{h}"
            title, text, notes = _reveal_slide(slide, framework)
            slides.append(Slide(len(slides) + 1, title, _with_notes(text or title, notes), fragment))
    return slides


def _reveal_slide(section: Tag, framework: str) -> tuple[str, str, str]:
    """`(title, text, notes)` of one reveal.js slide."""
    template = section.find(["textarea", "script"]) if section.has_attr("data-markdown") else None
    if template is not None:
        body, _, notes = template.get_text().partition("\nNote:")
        title, text = _split_title(tidy_text(clean_markdown(body, framework)))
        return title, text, tidy_text(clean_markdown(notes, framework))
    for hidden in section.find_all(["script", "style", "svg", "template"]):
        hidden.decompose()
    notes = " ".join(aside.get_text(" ", strip=True) for aside in section.find_all("aside", class_="notes"))
    for aside in section.find_all("aside", class_="notes"):
        aside.decompose()
    heading = section.find(re.compile(r"^h[1-6]$"))
    title = " ".join(heading.get_text(" ").split()) if heading else ""
    if heading:
        heading.decompose()
    for block in section.find_all(_BLOCKS):
        block.insert_after("\n")
    lines = (" ".join(line.split()) for line in section.get_text().split("\n"))
    return title, tidy_text("\n".join(line for line in lines if line)), tidy_text(notes)


def _split_title(markdown: str) -> tuple[str, str]:
    """The first Markdown heading, and the text without it."""
    lines = markdown.split("\n")
    for index, line in enumerate(lines):
        if heading := _MD_HEADING.match(line.strip()):
            return heading.group(1), tidy_text("\n".join(lines[:index] + lines[index + 1:]))
    return "", markdown


def _with_notes(text: str, notes: str) -> str:
    return f"{text}\n\nNotes: {notes}" if notes else text
