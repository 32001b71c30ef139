"""PDF loader: one section per page, located by physical page number and printed page label.

The physical number (1-based) is what `file.pdf#page=N` opens in a browser; the label is what the
page itself shows (front matter numbered i, ii, ... and the body from 1), which is what a student
sees when they look for "page 3". Text comes from pypdf's text layer: a scanned PDF without one is
reported, not silently indexed as nothing.
"""

from __future__ import annotations

import io

from pypdf import PdfReader
from pypdf.errors import DependencyError

from ingest.errors import LoaderError
from ingest.loaders import read_bytes, register_loader, tidy_text
from ingest.model import Document, Locator, Section, SourceFile

_MAX_TITLE_CHARS = 120


@register_loader(".pdf")
def load_pdf(source: SourceFile) -> Document:
    reader = _open(read_bytes(source))
    try:
        labels = reader.page_labels
        texts = [tidy_text(page.extract_text() or "") for page in reader.pages]
        metadata_title = (reader.metadata.title or "").strip() if reader.metadata else ""
    except Exception as err:  # pypdf raises many types on damaged files; all mean the same here
        raise LoaderError(f"not a readable PDF ({_describe(err)}); re-export or re-download it") from None
    if not any(texts):
        raise LoaderError(
            f"PDF has no text layer ({len(texts)} pages, probably scanned images); "
            "run OCR on it (e.g. ocrmypdf) and re-ingest"
        )
    title = metadata_title or _first_line(texts[0]) or source.path.stem
    sections = [
        Section(
            text=text,
            locator=Locator(
                path=source.rel, kind=source.kind, title=title, page=number,
                page_label=labels[number - 1], url=f"{source.rel}#page={number}",
                section=_page_heading(text),
            ),
        )
        for number, text in enumerate(texts, start=1)
        if text
    ]
    return Document(title=title, sections=sections)


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
