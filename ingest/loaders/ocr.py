"""OCR of PDF pages that have no text layer: Tesseract through pytesseract, behind the `ocr` setting.

A page is rendered with poppler's `pdftoppm` when it is installed, which draws everything on the
page. Without it, the images embedded in the page are read instead, which is all a scanned page
holds. Either way Tesseract (Debian's `tesseract-ocr`) reads the picture; when it is missing the
loader says how to install it instead of indexing nothing.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
from pathlib import Path

from ingest.errors import LoaderError

RENDER_DPI = 200
_INSTALL = "install it (apt-get install tesseract-ocr; pip install pytesseract) or turn OCR off"


def check_ocr() -> None:
    """Raise `LoaderError` saying what to install when Tesseract cannot run."""
    try:
        import pytesseract
    except ImportError:
        raise LoaderError(f"OCR is on but the pytesseract package is missing; {_INSTALL}") from None
    try:
        pytesseract.get_tesseract_version()
    except Exception:  # TesseractNotFoundError, or a broken binary
        raise LoaderError(f"OCR is on but the tesseract program was not found; {_INSTALL}") from None


def ocr_page(pdf_path: Path, page, number: int) -> str:
    """The text Tesseract reads on physical page `number` (1-based) of `pdf_path`; `page` is pypdf's
    page object, whose images are read when poppler is not installed."""
    import pytesseract

    return "\n".join(pytesseract.image_to_string(image) for image in _page_images(pdf_path, page, number))


def _page_images(pdf_path: Path, page, number: int) -> list:
    from PIL import Image

    if shutil.which("pdftoppm"):
        with tempfile.TemporaryDirectory() as folder:
            prefix = Path(folder) / "page"
            subprocess.run(
                ["pdftoppm", "-r", str(RENDER_DPI), "-f", str(number), "-l", str(number), "-png",
                 "-singlefile", str(pdf_path), str(prefix)],
                check=True, capture_output=True, timeout=120,
            )
            with Image.open(f"{prefix}.png") as rendered:
                return [rendered.copy()]
    images = []
    for embedded in page.images:  # needs Pillow, which pytesseract depends on anyway
        try:
            images.append(Image.open(io.BytesIO(embedded.data)).convert("RGB"))
        except Exception:  # an image format Pillow cannot decode: nothing to read on it
            continue
    return images
