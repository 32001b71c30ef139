"""Markdown loader: one section per heading, located by heading path and GitHub-style anchor.

markdown-it finds the real headings (not a `#` comment inside a code block, and setext `Title` /
`===` headings too); the text under each heading is then cut from the source lines, so code blocks
and LaTeX (`$...$`, `$$...$$`) reach the index exactly as written. Text before the first heading
is a section of its own, named after the document. YAML front matter is skipped, and its `title:`
names the document. What published sites and books add to Markdown (Liquid tags, kramdown MathJax,
inline SVG, HTML figures, book directives, multi-framework code tabs) is cleaned first
(`ingest.loaders.markup`).

`HeadingSlugger`, `find_headings` and `split_front_matter` are shared with the HTML and notebook
loaders.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from markdown_it import MarkdownIt

from ingest.errors import LoaderError
from ingest.loaders import read_text, register_loader, tidy_text
from ingest.loaders.markup import clean_markdown
from ingest.model import Document, Locator, Section, SourceFile

_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?\n)(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL)
_FRONT_MATTER_TITLE = re.compile(r"^title:[ \t]*(.+?)[ \t]*$", re.MULTILINE)
_NOT_SLUG = re.compile(r"[^\w\- ]")  # GitHub keeps letters, digits, '_', '-' and spaces


@dataclass(frozen=True)
class Heading:
    """A heading found in Markdown source: its level, plain text and line span (0-based)."""

    level: int
    text: str
    line: int
    body_line: int


class HeadingSlugger:
    """Anchors as GitHub makes them: lowercase, punctuation dropped, spaces to '-', and a repeated
    heading gets '-1', '-2', ... in order of appearance."""

    def __init__(self) -> None:
        self._taken: set[str] = set()

    def reserve(self, anchor: str) -> None:
        """Mark an anchor as used (e.g. an explicit HTML id) so no slug collides with it."""
        self._taken.add(anchor)

    def slug(self, heading: str) -> str:
        base = _NOT_SLUG.sub("", heading.strip().lower()).replace(" ", "-")
        anchor, n = base, 0
        while anchor in self._taken:
            n += 1
            anchor = f"{base}-{n}"
        self._taken.add(anchor)
        return anchor


def find_headings(markdown: str) -> list[Heading]:
    """The top-level headings of `markdown`, in order."""
    tokens = MarkdownIt("commonmark").enable("table").parse(markdown)
    headings = []
    for opening, inline in zip(tokens, tokens[1:]):
        if opening.type == "heading_open" and opening.level == 0 and opening.map:
            level = int(opening.tag[1])
            headings.append(Heading(level, heading_plain_text(inline), opening.map[0], opening.map[1]))
    return headings


@register_loader(".md", ".markdown")
def load_markdown(source: SourceFile) -> Document:
    text = read_text(source)
    front_matter_title, text = split_front_matter(text)
    text = clean_markdown(text, source.options.code_framework)
    lines = text.split("\n")
    headings = find_headings(text)
    title = front_matter_title or next((h.text for h in headings if h.level == 1), "") or source.path.stem

    def locator(section: str, anchor: str | None) -> Locator:
        url = f"{source.rel}#{anchor}" if anchor else source.rel
        return Locator(path=source.rel, kind=source.kind, title=title, section=section, anchor=anchor, url=url)

    first_line = headings[0].line if headings else len(lines)
    sections = [Section(tidy_text("\n".join(lines[:first_line])), locator(title, None))]
    slugger = HeadingSlugger()
    path: list[Heading] = []
    for heading, following in zip(headings, [*headings[1:], None]):
        while path and path[-1].level >= heading.level:
            path.pop()
        path.append(heading)
        body = lines[heading.body_line:following.line if following else len(lines)]
        section_name = " > ".join(h.text for h in path)
        sections.append(Section(tidy_text("\n".join(body)), locator(section_name, slugger.slug(heading.text))))
    sections = [section for section in sections if section.text]
    if not sections:
        raise LoaderError("Markdown file has headings but no text under them; add content or remove it")
    return Document(title=title, sections=sections)


def split_front_matter(text: str) -> tuple[str, str]:
    """`(title from the front matter or "", text without the front matter)`."""
    match = _FRONT_MATTER.match(text)
    if not match:
        return "", text
    title = _FRONT_MATTER_TITLE.search(match.group(1))
    return (title.group(1).strip("'\"") if title else ""), text[match.end():]


def heading_plain_text(inline) -> str:
    """A heading's words without markup: text, inline code and link text, spacing normalised."""
    parts = []
    for child in inline.children or []:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
    return " ".join("".join(parts).split())
