"""PDF loader: one section per page, located by physical page number and printed page label.

The physical number (1-based) is what `file.pdf#page=N` opens in a browser; the label is what the
page itself shows (front matter numbered i, ii, ... and the body from 1), which is what a student
sees when they look for "page 3". Text comes from pypdf's text layer, cleaned of what real exports
put there (`ingest.loaders.clean`: ligatures, LaTeXiT blobs, formulas fallen apart into glyphs),
then compared across pages (`ingest.loaders.pages`): running headers and footers are dropped, and a
step-by-step reveal keeps only its fullest page.

A PDF with almost no text layer (scanned, or slides exported as pictures) is not silently indexed
as nothing. When a Markdown or HTML file with the same name lies beside it (`deck.md` next to
`deck.pdf`), the PDF is skipped with a reason naming that file: it holds the same material as text
and is indexed on its own, so loading both would index the slides twice. Otherwise, with the `ocr`
setting on, its pages are read with Tesseract (`ingest.loaders.ocr`); with it off, the PDF is
skipped with "needs OCR" and how to turn OCR on.
"""

from __future__ import annotations

import io
import re

from pypdf import PdfReader
from pypdf.errors import DependencyError

from ingest.errors import LoaderError
from ingest.loaders import read_bytes, register_loader, tidy_text
from ingest.loaders.clean import clean_text, drop_glyph_runs
from ingest.loaders.ocr import check_ocr, ocr_page
from ingest.loaders.pages import collapse_reveals, drop_running_lines
from ingest.model import Document, Locator, Section, SourceFile

_MAX_TITLE_CHARS = 120
TEXT_PAGE_SHARE = 0.1  # below this share of pages with words, a PDF has "almost no text layer"
STAND_IN_SUFFIXES = (".md", ".markdown", ".html", ".htm")
_WORD = re.compile(r"[^\W\d_]{3,}")
_INNER_SPACES = re.compile(r"(?<=\S)[ \t]{2,}(?=\S)")


@register_loader(".pdf")
def load_pdf(source: SourceFile) -> Document:
    reader = _open(read_bytes(source))
    try:
        labels = reader.page_labels
        texts = [_clean_page(page.extract_text() or "") for page in reader.pages]
        metadata_title = (reader.metadata.title or "").strip() if reader.metadata else ""
    except Exception as err:  # pypdf raises many types on damaged files; all mean the same here
        raise LoaderError(f"not a readable PDF ({_describe(err)}); re-export or re-download it") from None
    texts = drop_running_lines(texts)
    if _almost_no_text(texts):
        texts = _texts_without_a_text_layer(source, reader, texts)
    title = metadata_title or _first_line(texts[0]) or source.path.stem
    sections = [
        Section(
            text=texts[index],
            locator=Locator(
                path=source.rel, kind=source.kind, title=title, page=index + 1,
                page_label=labels[index], url=f"{source.rel}#page={index + 1}",
                section=_page_heading(texts[index]),
            ),
        )
        for index in collapse_reveals(texts)
    ]
    return Document(title=title, sections=sections)


def _clean_page(text: str) -> str:
    text = drop_glyph_runs(clean_text(text))  # before tidy_text (which cleans too): glyphs must go first
    return tidy_text(_INNER_SPACES.sub(" ", text))  # spaces PDF layout (or removed residue) left


def _almost_no_text(texts: list[str]) -> bool:
    """Words (three letters or more) on fewer than TEXT_PAGE_SHARE of the pages: page numbers and
    stray glyphs are not a text layer."""
    with_words = sum(1 for text in texts if _WORD.search(text))
    return with_words == 0 or with_words < TEXT_PAGE_SHARE * len(texts)


def _texts_without_a_text_layer(source: SourceFile, reader: PdfReader, texts: list[str]) -> list[str]:
    """The page texts OCR reads, or the `LoaderError` that says why there are none (module docstring)."""
    pages = len(texts)
    stand_in = next((source.path.with_suffix(suffix) for suffix in STAND_IN_SUFFIXES
                     if source.path.with_suffix(suffix).is_file()), None)
    if stand_in is not None:
        raise LoaderError(
            f"PDF has almost no text layer ({pages} pages), so {stand_in.name} beside it stands in for it: "
            "that file holds the same material as text and is indexed on its own "
            "(make sure course.toml's sources include it)"
        )
    if not source.options.ocr:
        raise LoaderError(
            f"PDF has no text layer on almost all of its {pages} pages (probably scanned images), so it "
            "needs OCR: set `ocr = true` in tutor.toml or TUTOR_OCR=1 (with Debian's tesseract-ocr "
            f"installed), or put its Markdown/HTML source beside it as {source.path.stem}.md"
        )
    check_ocr()
    try:
        read = [text if _WORD.search(text) else _clean_page(ocr_page(source.path, page, number))
                for number, (page, text) in enumerate(zip(reader.pages, texts), start=1)]
    except LoaderError:
        raise
    except Exception as err:  # pdftoppm, Pillow and Tesseract each fail in their own way
        raise LoaderError(f"OCR failed ({_describe(err)}); check the PDF opens, or turn OCR off") from None
    read = drop_running_lines(read)
    if _almost_no_text(read):
        raise LoaderError(f"OCR found no text on the {pages} pages of this PDF; nothing to index")
    return read


def _open(data: bytes) -> PdfReader:
    """A reader for `data`, decrypted when the PDF only has an empty user password."""
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise LoaderError("PDF is password-protected; remove the password (e.g. qpdf --decrypt) and re-ingest")
    except LoaderError:
        raise
    except DependencyError:
        raise LoaderError(
            "PDF is AES-encrypted and reading it needs the 'cryptography' package; "
            "pip install cryptography, or remove the encryption (qpdf --decrypt) and re-ingest"
        ) from None
    except Exception as err:  # see load_pdf
        raise LoaderError(f"not a readable PDF ({_describe(err)}); re-export or re-download it") from None
    return reader


def _describe(err: Exception) -> str:
    return str(err).strip() or type(err).__name__


def _page_heading(text: str) -> str | None:
    """A page's first line when it reads like a heading (a slide title): short, not a number or a
    sentence. It names the page in citations and gives its chunks their topic."""
    first = _first_line(text)
    if 3 <= len(first) <= 80 and not first.rstrip().endswith((".", ",", ";")) and not first.isdigit():
        return first
    return None


def _first_line(text: str) -> str:
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return first[:_MAX_TITLE_CHARS]
