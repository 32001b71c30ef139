"""Build lecture decks (PPTX, and PDF where asked) from the course's Markdown deck sources.

    python corpus/build_decks.py corpus/dl-intro [--force]

reads `lectures/NN-stem.md` and writes `slides/NN-stem.pptx` for every lecture, plus
`slides/NN-stem.pdf` for the lectures whose front matter says `pdf: true`. A deck newer than its
source (and than this script) is skipped, make-style, unless `--force`. Output is byte-for-byte
deterministic, so rebuilding an unchanged source gives the same files.

Deck source format:

    ---
    title: Optimization                       # lecture title (required)
    lecture: 4                                # lecture number (required)
    course: Introduction to Deep Learning     # shown on the title slide
    pdf: true                                 # also build a PDF handout
    ---
    Notes: speaker notes for the title slide (optional).

    ## Gradient descent                       # every "## " heading starts a slide
    A paragraph: consecutive lines are joined into one paragraph.
    - a bullet
      - a sub-bullet (indented two spaces)
    $$x_{t+1} = x_t - \\eta f'(x_t)$$          # a display equation on its own line
    Notes: speaker notes, up to the next heading; they become the PPTX notes.

Equations stay LaTeX source (`$...$` inline, `$$...$$` display) in both outputs, so the text a
search index sees is the text a student reads. The title slide is made from the front matter. The
PDF prints no number on it and labels it "i", then prints 1, 2, ... on the slides that follow, and
its page labels say the same, so a citation's page label is the number a reader sees.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import math
import os
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from fpdf import FPDF
from pptx import Presentation
from pptx.enum.text import MSO_AUTO_SIZE, PP_ALIGN
from pptx.oxml.ns import qn
from pptx.util import Inches, Pt
from pypdf import PdfReader, PdfWriter

SLIDE_WIDTH, BODY_HEIGHT_IN = Inches(13.333), 5.6  # 16:9 slides; the body box's height in inches
FIXED_TIME = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)  # written into every file's metadata
PDF_TEXT_REPLACEMENTS = {
    "\u2013": "-", "\u2014": " - ", "\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"',
    "\u2192": "->", "\u2190": "<-", "\u2264": "<=", "\u2265": ">=", "\u2248": "~", "\u2260": "!=",
    "\u2026": "...", "\u2022": "\u00b7", "\u2212": "-", "\u221a": "sqrt", "\u2207": "grad ",
}


@dataclass
class Line:
    kind: str  # "para", "bullet", "sub" or "math"
    text: str


@dataclass
class Slide:
    title: str
    lines: list[Line] = field(default_factory=list)
    notes: str = ""


@dataclass
class Deck:
    stem: str
    title: str
    lecture: int
    course: str
    pdf: bool
    title_notes: str
    slides: list[Slide]

    @property
    def heading(self) -> str:
        return f"Lecture {self.lecture}: {self.title}"


class DeckSourceError(ValueError):
    """A deck source breaks the format in this module's docstring; the message says where."""


def parse_deck(path: Path) -> Deck:
    """Read one deck source (the format in this module's docstring)."""
    text = path.read_text(encoding="utf-8")
    meta: dict[str, str] = {}
    if text.startswith("---\n"):
        head, sep, text = text[4:].partition("\n---\n")
        if not sep:
            raise DeckSourceError(f"{path}: front matter opened with '---' is never closed")
        for key, _, value in (line.partition(":") for line in head.splitlines() if line.strip()):
            meta[key.strip()] = value.strip()
    for key in ("title", "lecture"):
        if key not in meta:
            raise DeckSourceError(f"{path}: front matter needs a '{key}:' line")
    preamble, *blocks = ("\n" + text).split("\n## ")
    if not blocks:
        raise DeckSourceError(f"{path}: no slides; start each slide with a '## Title' line")
    return Deck(
        stem=path.stem, title=meta["title"], lecture=int(meta["lecture"]),
        course=meta.get("course", ""), pdf=meta.get("pdf", "false").lower() == "true",
        title_notes=_join(preamble.partition("Notes:")[2]), slides=[_parse_slide(b) for b in blocks],
    )


def _parse_slide(block: str) -> Slide:
    title, _, body = block.partition("\n")
    body, _, notes = ("\n" + body).partition("\nNotes:")
    slide = Slide(title=title.strip(), notes=_join(notes))
    paragraph: list[str] = []
    for raw in body.splitlines() + [""]:
        stripped = raw.strip()
        kind = ("sub" if raw.startswith("  - ") else "bullet" if raw.startswith("- ")
                else "math" if stripped.startswith("$$") else "para" if stripped else "blank")
        if kind != "para" and paragraph:
            slide.lines.append(Line("para", _join("\n".join(paragraph))))
            paragraph = []
        if kind == "para":
            paragraph.append(stripped)
        elif kind != "blank":
            slide.lines.append(Line(kind, stripped if kind == "math" else stripped[2:].strip()))
    return slide


def _join(text: str) -> str:
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


# --- PPTX -------------------------------------------------------------------------------------


def render_pptx(deck: Deck) -> bytes:
    prs = Presentation()
    prs.slide_width, prs.slide_height = SLIDE_WIDTH, Inches(7.5)  # the layouts are 4:3: place boxes
    cover = prs.slides.add_slide(prs.slide_layouts[0])
    _place(cover.shapes.title, 0.6, 2.2, 12.13, 1.6)
    _place(cover.placeholders[1], 1.5, 4.0, 10.33, 1.5)
    cover.shapes.title.text = deck.heading
    cover.placeholders[1].text = deck.course
    cover.notes_slide.notes_text_frame.text = deck.title_notes
    for spec in deck.slides:
        slide = prs.slides.add_slide(prs.slide_layouts[1])
        _place(slide.shapes.title, 0.6, 0.3, 12.13, 1.1)
        _place(slide.placeholders[1], 0.6, 1.5, 12.13, BODY_HEIGHT_IN)
        slide.shapes.title.text = spec.title
        slide.shapes.title.text_frame.paragraphs[0].runs[0].font.size = Pt(34)
        frame = slide.placeholders[1].text_frame
        frame.word_wrap = True
        frame.auto_size = MSO_AUTO_SIZE.TEXT_TO_FIT_SHAPE  # a safety net for renderers that honour it
        room = BODY_HEIGHT_IN * 72 - 10
        size = next((s for s in (22, 20, 18, 16, 14) if _pptx_body_height(spec.lines, s) <= room), 12)
        for i, line in enumerate(spec.lines):
            para = frame.paragraphs[0] if i == 0 else frame.add_paragraph()
            run = para.add_run()
            run.text = line.text
            run.font.size = Pt(size - 2 if line.kind == "sub" else size)
            para.level = 1 if line.kind == "sub" else 0
            if line.kind in ("para", "math"):  # no bullet, no hanging indent
                ppr = para._p.get_or_add_pPr()
                ppr.insert(0, para._p.makeelement(qn("a:buNone"), {}))
                ppr.set("indent", "0")
                ppr.set("marL", "0")
            if line.kind == "math":
                para.alignment = PP_ALIGN.CENTER
        slide.notes_slide.notes_text_frame.text = spec.notes
    props = prs.core_properties
    props.title, props.author, props.revision = deck.heading, deck.course or "course staff", 1
    props.created = props.modified = props.last_printed = FIXED_TIME.replace(tzinfo=None)
    buffer = io.BytesIO()
    prs.save(buffer)
    return _normalise_zip(buffer.getvalue())


def _place(shape, left: float, top: float, width: float, height: float) -> None:
    shape.left, shape.top, shape.width, shape.height = (Inches(v) for v in (left, top, width, height))


def _pptx_body_height(lines: list[Line], size: int) -> float:
    """Estimated height in points of a slide body at `size` points (average glyph ~0.5 em wide)."""
    text_width, height = SLIDE_WIDTH.pt - 2 * 0.6 * 72 - 14, 0.0
    for line in lines:
        points = size - 2 if line.kind == "sub" else size
        indent = {"bullet": 27, "sub": 54}.get(line.kind, 0)
        per_line = max(1, int((text_width - indent) / (0.5 * points)))
        height += math.ceil(len(line.text) / per_line) * points * 1.2 + points * 0.2
    return height


def _normalise_zip(data: bytes) -> bytes:
    """python-pptx stamps each zip entry with the current time; rewrite them with a fixed one."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            fixed = zipfile.ZipInfo(info.filename, date_time=FIXED_TIME.timetuple()[:6])
            fixed.compress_type = zipfile.ZIP_DEFLATED
            dst.writestr(fixed, src.read(info.filename))
    return out.getvalue()


# --- PDF --------------------------------------------------------------------------------------


class _SlidePDF(FPDF):
    def __init__(self, deck: Deck):
        super().__init__(orientation="L", unit="mm", format=(167.06, 297))  # 16:9, like the PPTX
        self.deck = deck
        self.set_auto_page_break(False)
        self.set_margins(18, 14, 18)

    def footer(self) -> None:
        if self.page_no() == 1:  # the title page carries no printed number (its label is "i")
            return
        self.set_y(-13)
        self.set_font("Helvetica", size=9)
        self.set_text_color(110, 110, 110)
        self.cell(0, 6, pdf_text(f"{self.deck.course} - {self.deck.heading}"), align="L")
        self.set_x(self.l_margin)
        self.cell(0, 6, str(self.page_no() - 1), align="R")  # drawn last: the page's last word


def pdf_text(text: str) -> str:
    """Text that fpdf2's core (Latin-1) fonts can encode: common symbols spelled in ASCII."""
    for char, plain in PDF_TEXT_REPLACEMENTS.items():
        text = text.replace(char, plain)
    return text.encode("latin-1", "replace").decode("latin-1")


def render_pdf(deck: Deck) -> bytes:
    pdf = _SlidePDF(deck)
    pdf.set_creation_date(FIXED_TIME)
    pdf.set_title(deck.heading)
    pdf.add_page()
    pdf.set_y(55)
    pdf.set_font("Helvetica", "B", 30)
    pdf.multi_cell(0, 14, pdf_text(deck.heading), align="C")
    pdf.ln(6)
    pdf.set_font("Helvetica", size=18)
    pdf.multi_cell(0, 10, pdf_text(deck.course), align="C")
    for spec in deck.slides:
        pdf.add_page()
        pdf.set_font("Helvetica", "B", 22)
        pdf.multi_cell(0, 11, pdf_text(spec.title))
        pdf.set_draw_color(40, 90, 160)
        pdf.line(pdf.l_margin, pdf.get_y() + 1, pdf.w - pdf.r_margin, pdf.get_y() + 1)
        top = pdf.get_y() + 5
        sizes = (18, 17, 16, 15, 14, 13, 12, 11, 10)
        size = next((s for s in sizes if _pdf_body(pdf, spec, top, s, True) <= pdf.h - 20 - top), 10)
        _pdf_body(pdf, spec, top, size, False)
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(bytes(pdf.output()))))
    writer.set_page_label(0, 0, style="/r", start=1)
    writer.set_page_label(1, len(writer.pages) - 1, style="/D", start=1)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _pdf_body(pdf: FPDF, spec: Slide, top: float, size: int, dry_run: bool) -> float:
    """Lay out a slide's body at `size` points from `top`; return its height (draw unless dry_run)."""
    height, width, line_h = 0.0, pdf.w - pdf.l_margin - pdf.r_margin, size * 0.5
    for line in spec.lines:
        indent = {"bullet": 6, "sub": 14}.get(line.kind, 0)
        pdf.set_font("Courier" if line.kind == "math" else "Helvetica", size=size - (line.kind in ("math", "sub")))
        text, align = pdf_text(line.text), "C" if line.kind == "math" else "L"
        if dry_run:
            height += pdf.multi_cell(width - indent, line_h, text, align=align, dry_run=True, output="HEIGHT")
        else:
            if indent:
                pdf.set_xy(pdf.l_margin + indent - 4, top + height)
                pdf.cell(4, line_h, "-" if line.kind == "sub" else "\u00b7")
            pdf.set_xy(pdf.l_margin + indent, top + height)
            pdf.multi_cell(width - indent, line_h, text, align=align)
            height = pdf.get_y() - top
        height += line_h * 0.45
    return height


# --- driver -----------------------------------------------------------------------------------


def _is_fresh(out: Path, *inputs: Path) -> bool:
    return out.exists() and all(out.stat().st_mtime >= path.stat().st_mtime for path in inputs)


def build_course_decks(course_dir: Path, force: bool = False) -> list[Path]:
    """Build every deck under `course_dir/lectures/` into `course_dir/slides/`.

    Returns the files written by this call; decks already newer than their source are skipped
    unless `force`, so a second call with nothing changed returns [].
    """
    course_dir = Path(course_dir)
    sources = sorted((course_dir / "lectures").glob("*.md"))
    if not sources:
        raise FileNotFoundError(f"no deck sources in {course_dir / 'lectures'}; add NN-topic.md files there")
    out_dir = course_dir / "slides"
    out_dir.mkdir(exist_ok=True)
    written = []
    for source in sources:
        deck = parse_deck(source)
        targets = [(out_dir / f"{deck.stem}.pptx", render_pptx)]
        if deck.pdf:
            targets.append((out_dir / f"{deck.stem}.pdf", render_pdf))
        for out, render in targets:
            if force or not _is_fresh(out, source, Path(__file__)):
                partial = out.with_name(f"{out.name}.{os.getpid()}.partial")  # never a "fresh" half file
                partial.write_bytes(render(deck))
                partial.replace(out)
                written.append(out)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("course_dir", type=Path, help="course folder holding lectures/*.md")
    parser.add_argument("--force", action="store_true", help="rebuild decks even if up to date")
    args = parser.parse_args(argv)
    try:
        written = build_course_decks(args.course_dir, force=args.force)
    except (FileNotFoundError, DeckSourceError) as exc:
        print(f"build_decks: {exc}", file=sys.stderr)
        return 1
    print("".join(f"wrote {path}\n" for path in written), end="")
    print(f"{len(written)} file(s) written to {args.course_dir / 'slides'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
