"""Generators for small course files of every supported format, written in-process for tests.

Each `make_*` function writes one file at `path` (creating its folders) and returns the path, so a
test can build a whole course folder in a few lines:

    make_pdf(course / "notes/ch1.pdf", ["Intro page", "Second page"], page_labels_start=1)
    make_pptx(course / "slides/l01.pptx", [("Welcome", "Goals\\nPlan", "Say hello")])
    make_notebook(course / "demos/sgd.ipynb", [("markdown", "# SGD"), ("code", "print(1)")])

PDF text is written with fpdf2's core Helvetica font, so it must be Latin-1 text.
"""

from __future__ import annotations

import io
from pathlib import Path

import nbformat
from fpdf import FPDF
from pptx import Presentation
from pptx.util import Inches
from pypdf import PdfReader, PdfWriter

_TITLE_AND_CONTENT = 1  # python-pptx's default template: layout 1 has a title and a body placeholder


def _ready(path: Path | str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def make_pdf(
    path: Path | str,
    pages: list[str],
    page_labels_start: int | None = None,
    encrypt: bool = False,
    *,
    title: str | None = None,
    password: str = "secret",
) -> Path:
    """A PDF with one page per string (an empty string gives a page with no text layer).

    `page_labels_start` is the 0-based index of the page labelled "1": the pages before it are
    labelled i, ii, iii, ... (front matter). With None the PDF defines no page labels. `encrypt`
    protects the file with `password` (RC4, which pypdf handles without extra packages). `title`
    goes into the document metadata.
    """
    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    if title is not None:
        pdf.set_title(title)
    for text in pages:
        pdf.add_page()
        if text:
            pdf.multi_cell(0, 8, text)
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(bytes(pdf.output()))))
    if page_labels_start is not None:
        last = len(pages) - 1
        if page_labels_start > 0:
            writer.set_page_label(0, page_labels_start - 1, style="/r", start=1)
        writer.set_page_label(page_labels_start, last, style="/D", start=1)
    if encrypt:
        writer.encrypt(user_password=password, owner_password=password, algorithm="RC4-128")
    path = _ready(path)
    with path.open("wb") as out:
        writer.write(out)
    return path


def make_pptx(
    path: Path | str,
    slides: list[tuple[str, str, str]],
    *,
    tables: dict[int, list[list[str]]] | None = None,
    groups: dict[int, list[str]] | None = None,
    core_title: str = "",
) -> Path:
    """A deck with one "Title and Content" slide per `(title, body, notes)`.

    `body` lines become the body placeholder's paragraphs; empty `notes` adds no notes page.
    `tables` and `groups` map a 0-based slide index to a table (rows of cells) or to the texts of a
    group of text boxes added to that slide. `core_title` sets the file's core-properties title.
    """
    deck = Presentation()
    layout = deck.slide_layouts[_TITLE_AND_CONTENT]
    for index, (title, body, notes) in enumerate(slides):
        slide = deck.slides.add_slide(layout)
        slide.shapes.title.text = title
        slide.placeholders[1].text_frame.text = body
        if notes:
            slide.notes_slide.notes_text_frame.text = notes
        if rows := (tables or {}).get(index):
            _add_table(slide, rows)
        if texts := (groups or {}).get(index):
            _add_group(slide, texts)
    deck.core_properties.title = core_title
    path = _ready(path)
    deck.save(str(path))
    return path


def _add_table(slide, rows: list[list[str]]) -> None:
    shape = slide.shapes.add_table(len(rows), len(rows[0]), Inches(1), Inches(5), Inches(6), Inches(1))
    for r, row in enumerate(rows):
        for c, text in enumerate(row):
            shape.table.cell(r, c).text = text


def _add_group(slide, texts: list[str]) -> None:
    group = slide.shapes.add_group_shape()
    for n, text in enumerate(texts):
        box = group.shapes.add_textbox(Inches(1 + 2 * n), Inches(6.5), Inches(2), Inches(0.5))
        box.text_frame.text = text


def make_notebook(path: Path | str, cells: list[tuple[str, ...]]) -> Path:
    """A v4 notebook from `(kind, source)` or `(kind, source, stdout)` tuples.

    `kind` is "markdown", "code" or "raw"; the optional third item gives a code cell a stream
    output, as if it had been run.
    """
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for kind, source, *rest in cells:
        if kind == "markdown":
            notebook.cells.append(nbformat.v4.new_markdown_cell(source))
        elif kind == "raw":
            notebook.cells.append(nbformat.v4.new_raw_cell(source))
        else:
            outputs = [nbformat.v4.new_output("stream", name="stdout", text=rest[0])] if rest else []
            notebook.cells.append(nbformat.v4.new_code_cell(source, outputs=outputs))
    path = _ready(path)
    nbformat.write(notebook, str(path))
    return path


def make_markdown(path: Path | str, text: str) -> Path:
    """A Markdown file holding `text` (UTF-8)."""
    path = _ready(path)
    path.write_text(text, encoding="utf-8")
    return path


def make_html(path: Path | str, body: str, title: str | None = None) -> Path:
    """An HTML page with `body` as the inside of <body> and an optional <title>."""
    head = f"<title>{title}</title>" if title is not None else ""
    page = f'<!DOCTYPE html>\n<html>\n<head><meta charset="utf-8">{head}</head>\n<body>\n{body}\n</body>\n</html>\n'
    path = _ready(path)
    path.write_text(page, encoding="utf-8")
    return path


def _timestamp(seconds: float, decimal_mark: str) -> str:
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal_mark}{millis:03d}"


def make_vtt(path: Path | str, cues: list[tuple[float, float, str]]) -> Path:
    """A WebVTT transcript from `(start_s, end_s, text)` cues."""
    blocks = ["WEBVTT"]
    for start, end, text in cues:
        blocks.append(f"{_timestamp(start, '.')} --> {_timestamp(end, '.')}\n{text}")
    path = _ready(path)
    path.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    return path


def make_srt(path: Path | str, cues: list[tuple[float, float, str]]) -> Path:
    """A SubRip transcript from `(start_s, end_s, text)` cues."""
    blocks = [
        f"{n}\n{_timestamp(start, ',')} --> {_timestamp(end, ',')}\n{text}"
        for n, (start, end, text) in enumerate(cues, start=1)
    ]
    path = _ready(path)
    path.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    return path


def make_sbv(path: Path | str, cues: list[tuple[float, float, str]]) -> Path:
    """A YouTube SubViewer transcript from `(start_s, end_s, text)` cues (`0:00:01.500,0:00:04.000`)."""

    def clock(seconds: float) -> str:
        millis = round(seconds * 1000)
        hours, millis = divmod(millis, 3_600_000)
        minutes, millis = divmod(millis, 60_000)
        return f"{hours}:{minutes:02d}:{millis // 1000:02d}.{millis % 1000:03d}"

    blocks = [f"{clock(start)},{clock(end)}\n{text}" for start, end, text in cues]
    path = _ready(path)
    path.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    return path


def make_scanned_pdf(path: Path | str, pages: list[str]) -> Path:
    """A PDF whose pages are pictures of `pages`' text (large black type on white), with no text
    layer: what a scanner produces. Needs Pillow with FreeType for the scalable default font."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=48)
    pdf = FPDF(unit="pt", format=(1200, 400))
    for text in pages:
        picture = Image.new("RGB", (1200, 400), "white")
        ImageDraw.Draw(picture).multiline_text((40, 40), text, fill="black", font=font, spacing=20)
        pdf.add_page()
        pdf.image(picture, x=0, y=0, w=1200, h=400)
    path = _ready(path)
    path.write_bytes(bytes(pdf.output()))
    return path
