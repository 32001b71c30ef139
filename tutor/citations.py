"""Make an answer's `[n]` markers honest: every marker resolves to a source that was given.

`resolve_citations` removes markers naming no source, renumbers the rest in order of first use
(so the reader sees [1], [2], ... ), drops sources the text never uses, and picks for each citation
the sentence of its passage that best supports the sentence citing it (the quote a UI highlights).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ingest.lexical import lexical_tokens
from ingest.sentences import split_sentences
from tutor.prompt import Source

MARKER = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")
# Code and math are left alone: `x[1]` in a code block is an index, not a citation.
_PROTECTED = re.compile(r"```.*?(?:```|$)|`[^`\n]*`|\$\$.*?\$\$|\$[^$\n]+\$", re.S)


@dataclass
class Citation:
    n: int
    chunk_id: str
    locator: dict
    url: str
    quote: str
    title: str = ""
    supports: list[str] = field(default_factory=list)   # the answer sentences that cite it

    def to_dict(self) -> dict:
        return {"n": self.n, "chunk_id": self.chunk_id, "locator": self.locator, "url": self.url,
                "quote": self.quote, "title": self.title}


def best_quote(passage: str, claim: str) -> str:
    """The sentence of `passage` sharing most words with `claim` (the passage's first if none)."""
    sentences = split_sentences(passage) or [passage.strip()]
    claim_words = set(lexical_tokens(claim))
    scored = [(len(claim_words & set(lexical_tokens(s))), -i, s) for i, s in enumerate(sentences)]
    return max(scored)[2] if scored else ""


def resolve_citations(text: str, sources: list[Source]) -> tuple[str, list[Citation]]:
    by_n = {s.n: s for s in sources}
    new_number: dict[int, int] = {}

    def renumber(match: re.Match) -> str:
        kept = []
        for raw in match.group(1).split(","):
            old = int(raw)
            if old not in by_n:
                continue
            new_number.setdefault(old, len(new_number) + 1)
            if new_number[old] not in kept:
                kept.append(new_number[old])
        return "".join(f"[{n}]" for n in kept)

    pieces, last = [], 0
    for protected in _PROTECTED.finditer(text):
        pieces.append(MARKER.sub(renumber, text[last:protected.start()]))
        pieces.append(protected.group(0))
        last = protected.end()
    pieces.append(MARKER.sub(renumber, text[last:]))
    cleaned = re.sub(r"(\[\d+\])(?:\s*\1)+", r"\1", "".join(pieces))
    cleaned = re.sub(r"[ \t]+([.,;:!?])", r"\1", cleaned)
    cleaned = re.sub(r"[ \t]{2,}", " ", cleaned).strip()

    citing: dict[int, list[str]] = {}
    for sentence in split_sentences(_PROTECTED.sub(" ", cleaned)):
        for match in MARKER.finditer(sentence):
            for raw in match.group(1).split(","):
                claim = re.sub(r"\s+([.,;:!?])", r"\1", MARKER.sub("", sentence)).strip()
                if claim not in citing.setdefault(int(raw), []):
                    citing[int(raw)].append(claim)

    citations = []
    for old, new in sorted(new_number.items(), key=lambda item: item[1]):
        source = by_n[old]
        claims = citing.get(new, [])
        locator = source.chunk.locator
        citations.append(Citation(
            n=new, chunk_id=source.chunk.id, locator=locator.to_dict(), url=locator.url,
            quote=best_quote(source.chunk.text, " ".join(claims)), title=locator.label(), supports=claims,
        ))
    return cleaned, citations


class CitationStream:
    """Renumbers `[n]` markers while the answer streams, so the streamed text already reads [1], [2],
    ... in order of use and never shows a marker that names no source. Code and math pass through
    untouched. `resolve_citations` on the joined output then changes no number."""

    def __init__(self, valid: set[int]):
        self.valid = valid
        self.numbers: dict[int, int] = {}
        self._pending = ""
        self._fence = False       # inside ``` ... ```
        self._inline = ""         # inside ` ... ` or $ ... $: the closing delimiter
        self._last_marker = None  # the marker just written, to drop an immediate repeat

    def feed(self, delta: str) -> str:
        out = []
        text = self._pending + delta
        self._pending = ""
        i = 0
        while i < len(text):
            if text.startswith("```", i):
                self._fence = not self._fence
                out.append("```")
                i += 3
                continue
            ch = text[i]
            if self._fence:
                out.append(ch)
                i += 1
                continue
            if self._inline:
                if ch == self._inline:
                    self._inline = ""
                out.append(ch)
                i += 1
                continue
            if ch in "`$":
                if text.endswith("`", i) and i + 1 == len(text) and ch == "`":
                    self._pending = text[i:]  # may be the start of a ``` fence
                    break
                self._inline = ch
                out.append(ch)
                i += 1
                continue
            if ch == "[":
                match = MARKER.match(text, i)
                if match is None:
                    rest = text[i:]
                    if re.fullmatch(r"\[[\d,\s]*", rest):
                        self._pending = rest  # a marker still arriving
                        break
                    out.append(ch)
                    self._last_marker = None
                    i += 1
                    continue
                out.append(self._renumber(match.group(1)))
                i = match.end()
                continue
            if not ch.isspace():
                self._last_marker = None
            out.append(ch)
            i += 1
        return "".join(out)

    def _renumber(self, numbers: str) -> str:
        written = []
        for raw in numbers.split(","):
            old = int(raw)
            if old not in self.valid:
                continue
            self.numbers.setdefault(old, len(self.numbers) + 1)
            marker = f"[{self.numbers[old]}]"
            if marker != self._last_marker and marker not in written:
                written.append(marker)
        if written:
            self._last_marker = written[-1]
        return "".join(written)

    def flush(self) -> str:
        rest, self._pending = self._pending, ""
        return rest
