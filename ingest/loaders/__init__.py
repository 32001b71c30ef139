"""Loaders: one per file format, registered by extension.

A loader is a function `(SourceFile) -> Document`. It raises `LoaderError` with a one-line reason
(the ingest summary shows it) when the file cannot be read: corrupt, encrypted, empty, bad encoding.
Built-in loaders register through `register_loader` exactly as an addition would:

    @register_loader(".rst")
    def load_rst(source: SourceFile) -> Document: ...

Every loader follows the same small contract, helped by `read_bytes`, `read_text` and `tidy_text`
below: a zero-byte or blank file is an error, text files must be UTF-8 (a BOM is fine), section
text is cleaned (`ingest.loaders.clean`: NFKC, equation-editor residue), has its blank-line runs
collapsed and is stripped, and a section left with no text is dropped.

A loader that needs a course-wide choice reads it from `source.options` (`LoadOptions`: OCR on or
off, the code framework kept from multi-framework tabs).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable

from ingest.errors import LoaderError
from ingest.loaders.clean import clean_text
from ingest.model import Document, SourceFile

Loader = Callable[[SourceFile], Document]

# Raised when the loaders read the same bytes into different text (new clean-up rules): the manifest
# records it, so the next ingest reads every file again instead of keeping the old text.
LOADERS_VERSION = 2

_LOADERS: dict[str, Loader] = {}
_BUILTIN_MODULES = ("pdf", "pptx", "markdown", "html", "text", "notebook", "subtitles")
_builtins_loaded = False
_BLANK_RUN = re.compile(r"\n{3,}")


def read_bytes(source: SourceFile) -> bytes:
    """The file's bytes; a zero-byte file is a `LoaderError`, since there is nothing to index."""
    data = source.path.read_bytes()
    if not data:
        raise LoaderError("file is empty (0 bytes); add content to it or remove it from the course folder")
    return data


def read_text(source: SourceFile) -> str:
    """The file decoded as UTF-8 (with or without a BOM), line endings normalised to `\\n`."""
    data = read_bytes(source)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise LoaderError(
            f"not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start}); re-save the file as UTF-8"
        ) from None
    if not text.strip():
        raise LoaderError("file is empty (only whitespace); add content to it or remove it from the course folder")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def tidy_text(text: str) -> str:
    """Cleaned (`clean_text`), trailing spaces removed from each line, runs of blank lines collapsed
    to one, ends stripped."""
    lines = [line.rstrip() for line in clean_text(text.replace("\r\n", "\n")).split("\n")]
    return _BLANK_RUN.sub("\n\n", "\n".join(lines)).strip()


def register_loader(*extensions: str) -> Callable[[Loader], Loader]:
    """Register `fn` as the loader for each extension (lower case, with the dot)."""

    def decorate(fn: Loader) -> Loader:
        for ext in extensions:
            _LOADERS[ext.lower()] = fn
        return fn

    return decorate


def _load_builtins() -> None:
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True
        for name in _BUILTIN_MODULES:
            importlib.import_module(f"ingest.loaders.{name}")


def supported_extensions() -> list[str]:
    _load_builtins()
    return sorted(_LOADERS)


def loader_for(suffix: str) -> Loader | None:
    _load_builtins()
    return _LOADERS.get(suffix.lower())


def load_file(source: SourceFile) -> Document:
    """Read one file with the loader registered for its extension."""
    loader = loader_for(source.path.suffix)
    if loader is None:
        raise LoaderError(
            f"unsupported file type '{source.path.suffix or '(none)'}'; "
            f"supported: {', '.join(supported_extensions())}"
        )
    return loader(source)
