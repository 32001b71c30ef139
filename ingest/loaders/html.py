"""HTML loader: one section per heading (h1-h6), located by heading path and anchor.

A heading's anchor is its `id` when it has one (that is where `page.html#id` really lands), else a
GitHub-style slug. Scripts, styles, navigation and comments are dropped. Inline markup is flattened
so a paragraph reads as one line, block elements end lines, and `<pre>` keeps its layout, so code
and LaTeX source survive as written. A Jekyll page's front matter and Liquid tags are removed first.

A remark or reveal.js slide deck is read one section per slide instead, with its presenter notes
(`ingest.loaders.html_slides`).
"""

from __future__ import annotations

import re

from bs4 import BeautifulSoup, NavigableString

from ingest.errors import LoaderError
from ingest.loaders import read_text, register_loader, tidy_text
from ingest.loaders.clean import clean_text
from ingest.loaders.html_slides import Slide, find_slides
from ingest.loaders.markdown import HeadingSlugger, split_front_matter
from ingest.loaders.markup import strip_liquid
from ingest.model import Document, Locator, Section, SourceFile

_DROPPED = ("script", "style", "nav", "noscript", "template", "svg")
_HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")
_BLOCKS = (
    "p", "div", "section", "article", "header", "footer", "main", "aside", "blockquote",
    "ul", "ol", "li", "dl", "dt", "dd", "table", "tr", "figure", "figcaption", "br", "hr",
)
_HEADING_MARK, _PRE_MARK = "\x00", "\x01"  # stand-ins, removed from the input first
_HEADING_SPLIT = re.compile(f"{_HEADING_MARK}(\\d+){_HEADING_MARK}")
_PRE_SPLIT = re.compile(f"{_PRE_MARK}(\\d+){_PRE_MARK}")
_LINE_INDENT = re.compile(r"^[ \t]+", re.MULTILINE)


@register_loader(".html", ".htm")
def load_html(source: SourceFile) -> Document:
    page = clean_text(read_text(source))  # also removes the control characters used as marks below
    front_matter_title, page = split_front_matter(page)
    soup = BeautifulSoup(strip_liquid(page), "html.parser")
    slides = find_slides(soup, source.options.code_framework)
    if slides is not None:
        return _slide_deck(source, soup, slides, front_matter_title)
    for tag in soup.find_all(_DROPPED):
        tag.decompose()
    page_title = soup.title.get_text(" ", strip=True) if soup.title else ""
    if soup.head:
        soup.head.decompose()
    preformatted = _replace_pre_with_marks(soup)
    _flatten_whitespace(soup)
    headings = _replace_headings_with_marks(soup)
    for block in soup.find_all(_BLOCKS):
        block.insert_after("\n")
    text = _LINE_INDENT.sub("", soup.get_text())
    text = _PRE_SPLIT.sub(lambda match: preformatted[int(match.group(1))], text)
    pieces = _HEADING_SPLIT.split(text)
    first_h1 = next((heading for level, heading, _ in headings if level == 1), "")
    title = front_matter_title or page_title or first_h1 or source.path.stem

    def locator(section: str, anchor: str | None) -> Locator:
        url = f"{source.rel}#{anchor}" if anchor else source.rel
        return Locator(path=source.rel, kind=source.kind, title=title, section=section, anchor=anchor, url=url)

    sections = [Section(tidy_text(pieces[0]), locator(title, None))]
    slugger = HeadingSlugger()
    for _, _, element_id in headings:
        if element_id:
            slugger.reserve(element_id)
    path: list[tuple[int, str]] = []
    for index, (level, heading, element_id) in enumerate(headings):
        while path and path[-1][0] >= level:
            path.pop()
        path.append((level, heading))
        body = pieces[2 + 2 * index]  # split() alternates text, mark number, text, ...
        anchor = element_id or slugger.slug(heading)
        sections.append(Section(tidy_text(body), locator(" > ".join(name for _, name in path), anchor)))
    sections = [section for section in sections if section.text]
    if not sections:
        raise LoaderError("HTML page has no visible text outside scripts, styles and navigation; nothing to index")
    return Document(title=title, sections=sections)


def _slide_deck(source: SourceFile, soup: BeautifulSoup, slides: list[Slide], front_matter_title: str) -> Document:
    page_title = soup.title.get_text(" ", strip=True) if soup.title else ""
    title = front_matter_title or next((slide.title for slide in slides if slide.title), "") or page_title \
        or source.path.stem
    if not slides:
        raise LoaderError("HTML slide deck has no slide with text; nothing to index")
    return Document(title=title, sections=[
        Section(slide.text, Locator(
            path=source.rel, kind=source.kind, title=title, slide=slide.number, section=slide.title or None,
            url=f"{source.rel}#{slide.fragment}",
        ))
        for slide in slides
    ])


def _replace_pre_with_marks(soup: BeautifulSoup) -> list[str]:
    """Swap each <pre> for a numbered mark, returning their texts, so their layout is left alone."""
    texts = []
    for number, tag in enumerate(soup.find_all("pre")):
        texts.append(tag.get_text())
        tag.replace_with(f"\n{_PRE_MARK}{number}{_PRE_MARK}\n")
    return texts


def _flatten_whitespace(soup: BeautifulSoup) -> None:
    """Any run of whitespace in a text node becomes one space, as a browser shows it."""
    for node in soup.find_all(string=True):
        if type(node) is NavigableString:
            node.replace_with(re.sub(r"\s+", " ", str(node)))


def _replace_headings_with_marks(soup: BeautifulSoup) -> list[tuple[int, str, str]]:
    """Swap each heading for a numbered mark, returning `(level, text, id)` in document order."""
    headings = []
    for number, tag in enumerate(soup.find_all(_HEADINGS)):
        element_id = str(tag.get("id") or "").strip()
        headings.append((int(tag.name[1]), " ".join(tag.get_text(" ").split()), element_id))
        tag.replace_with(f"\n{_HEADING_MARK}{number}{_HEADING_MARK}\n")
    return headings
