"""PowerPoint loader: one section per slide, its title as the section and its speaker notes kept.

A slide's text is everything a reader could see on it, in shape order: text boxes and placeholders,
table cells (one row a line, cells joined by " | "), and the shapes inside groups. The speaker notes
follow, after "Notes: ", because lecturers often put the explanation there rather than on the slide.
The slide title is the section name (the chunker puts it in front of each chunk), not part of the
text, except on a slide that has nothing but its title (a divider): there it is the text as well,
so the slide can still be found. Slides with no text at all are dropped; numbers stay physical.
Consecutive slides where one holds the other (a build copied onto new slides) keep only the fullest
(`ingest.loaders.pages.collapse_reveals`).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator

from pptx import Presentation

from ingest.errors import LoaderError
from ingest.loaders import read_bytes, register_loader, tidy_text
from ingest.loaders.clean import clean_text
from ingest.loaders.pages import collapse_reveals
from ingest.model import Document, Locator, Section, SourceFile


@register_loader(".pptx")
def load_pptx(source: SourceFile) -> Document:
    data = read_bytes(source)
    try:
        deck = Presentation(io.BytesIO(data))
        slides = [_read_slide(slide) for slide in deck.slides]
        core_title = (deck.core_properties.title or "").strip()
    except Exception as err:  # zipfile, lxml and python-pptx all raise their own types on damage
        raise LoaderError(
            f"not a readable PowerPoint file ({str(err).strip() or type(err).__name__}); "
            "re-save it from PowerPoint or LibreOffice as .pptx and re-ingest"
        ) from None
    first_title = slides[0][0] if slides else ""
    title = first_title or core_title or source.path.stem
    sections = [
        Section(
            text=slides[index][1],
            locator=Locator(
                path=source.rel, kind=source.kind, title=title, slide=index + 1,
                section=slides[index][0] or None, url=f"{source.rel}#slide={index + 1}",
            ),
        )
        for index in collapse_reveals([text and f"{slide_title}\n{text}" for slide_title, text in slides])
    ]
    if not sections:
        raise LoaderError(f"presentation has no text on any of its {len(slides)} slides; nothing to index")
    return Document(title=title, sections=sections)


def _read_slide(slide) -> tuple[str, str]:
    """`(title, text)` of one slide: the title placeholder's text, then body and notes."""
    title_shape = slide.shapes.title
    title = _one_line(title_shape.text_frame.text) if title_shape is not None else ""
    title_id = title_shape.shape_id if title_shape is not None else None
    parts = [text for shape in slide.shapes if shape.shape_id != title_id for text in _shape_texts(shape)]
    if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
        notes = slide.notes_slide.notes_text_frame.text.strip()
        if notes:
            parts.append(f"Notes: {notes}")
    return title, tidy_text("\n".join(part for part in parts if part.strip())) or title


def _shape_texts(shape) -> Iterator[str]:
    """The visible text of a shape, looking inside groups and tables."""
    if hasattr(shape, "shapes"):  # a group: its members, in order
        yield from _texts(shape.shapes)
    elif shape.has_table:
        for row in shape.table.rows:
            cells = [cell.text.strip() for cell in row.cells]
            if any(cells):
                yield " | ".join(cells)
    elif shape.has_text_frame:
        yield shape.text_frame.text


def _texts(shapes: Iterable) -> Iterator[str]:
    for shape in shapes:
        yield from _shape_texts(shape)


def _one_line(text: str) -> str:
    """Titles broken over lines (vertical tab or newline in the frame) read as one line."""
    return " ".join(clean_text(text.replace("\v", " ")).split())
