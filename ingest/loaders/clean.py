"""Character-level clean-up of loaded text: what real course files carry that no reader should see.

`clean_text` runs on every section every loader produces (through `tidy_text`):

- Unicode is normalised with NFKC, so mathematical alphanumerics (`𝑤𝑘` -> `wk`), ligatures
  (`ﬁ` -> `fi`) and full-width forms read, search and quote as the plain letters they show.
  Superscripts and subscripts are the exception: `x²` is not `x2`, so they are kept.
- Equation-editor residue is removed: LaTeXiT `<latexit sha1_base64=…>…</latexit>` blobs that
  PowerPoint exports leave in a PDF's text layer, stray base64 runs, NUL and other control
  characters, and private-use glyphs (symbol-font bullets and bracket pieces with no meaning
  outside their font).

`drop_glyph_runs` is for PDF text only: a formula extracted from a PDF falls apart into one-glyph
tokens (`w k 2 2 σ ′ z 2 1`), but in Markdown or code `a b c` may be meant.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

_LATEXIT = re.compile(r"<latexit\b[^>]*>.*?(?:</latexit>|\Z)", re.DOTALL)
_LATEXIT_TAG = re.compile(r"</?latexit\b[^>]*>")
# Base64 of binary data: long, no spaces, and (unlike a hex digest or a word) mixing upper case,
# lower case and digits.
_BASE64_RUN = re.compile(r"(?<![\w+/=])[A-Za-z0-9+/]{64,}={0,2}(?![\w+/=])")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_PRIVATE_USE = re.compile(r"[\ue000-\uf8ff]")
_NOT_ASCII_RUN = re.compile(r"[^\x00-\x7f]+")
_GLYPH_OPERATORS = set("=+-−*/×·<>≤≥≈")


def clean_text(text: str) -> str:
    """`text` with its Unicode normalised and equation-editor residue removed (module docstring)."""
    return strip_residue(normalise_unicode(text))


def normalise_unicode(text: str) -> str:
    """NFKC, except that superscript and subscript characters keep their meaning."""
    if text.isascii():
        return text
    return unicodedata.normalize("NFC", _NOT_ASCII_RUN.sub(lambda run: _normalise_run(run.group()), text))


def _normalise_run(run: str) -> str:
    return "".join(_normalise_char(char) for char in run)


@lru_cache(maxsize=4096)
def _normalise_char(char: str) -> str:
    if unicodedata.decomposition(char).startswith(("<super>", "<sub>")):
        return char
    return unicodedata.normalize("NFKC", char)


def strip_residue(text: str) -> str:
    """Without LaTeXiT blobs, base64 runs, control characters (tabs and newlines stay) and
    private-use glyphs."""
    text = _LATEXIT_TAG.sub("", _LATEXIT.sub("", text))
    text = _BASE64_RUN.sub(lambda match: "" if _looks_like_base64(match.group()) else match.group(), text)
    return _PRIVATE_USE.sub("", _CONTROL.sub("", text))


def _looks_like_base64(token: str) -> bool:
    return any(c.isupper() for c in token) and any(c.islower() for c in token) and any(c.isdigit() for c in token)


def drop_glyph_runs(text: str, min_run: int = 3) -> str:
    """Without runs of `min_run` or more one-character tokens, across spaces and line breaks, that
    are formula debris (`1 2 X k`, `0 @ ? ? 1 A`). A run that reads as an expression, operands
    and operators taking turns (`x = y + 1`), is kept."""
    tokens = re.split(r"(\s+)", text)  # words at even positions, the whitespace between at odd ones
    words = tokens[0::2]
    drop = [False] * len(words)
    start = 0
    while start < len(words):
        end = start
        while end < len(words) and len(words[end]) == 1:
            end += 1
        if end - start >= min_run and not _is_expression(words[start:end]):
            drop[start:end] = [True] * (end - start)
        start = max(end, start + 1)
    pieces = []
    for index, word in enumerate(words):
        if not drop[index]:
            pieces.append(word)
        if index < len(words) - 1:
            pieces.append(tokens[2 * index + 1])
    kept = []
    for before, after in zip(text.split("\n"), "".join(pieces).split("\n")):  # whitespace was kept as is
        if after == before:
            kept.append(after)
        elif after.strip():
            kept.append(" ".join(after.split()))
    return "\n".join(kept)


def _is_expression(glyphs: list[str]) -> bool:
    operators = [glyph in _GLYPH_OPERATORS for glyph in glyphs]
    return all(operators[1::2]) and not any(operators[0::2])
