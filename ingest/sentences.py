"""The sentences an extractive answer may quote, and their vectors, computed once at ingest.

An extractive answer quotes the sentences of the retrieved passages closest to the question. Which
sentences of a chunk can be quoted depends on the chunk alone, so ingest embeds them ahead of time
and a question costs one query embedding instead of embedding every sentence of every source.
Only sentences that can stand in an answer are offered (`candidate_sentences`): no exercise prompts,
questions, captions, headings, running footers, fragments or equation debris, which real decks and
notebooks are full of; under a logistics heading, a table row pairing an item with its figure
("Midterm Exam (Week 9): 30%") counts as a sentence.

    headed_sentences(chunk.text, chunk.heading)   # ["Momentum: Momentum keeps a running velocity ...", ...]
    table, embedded = embed_sentences(chunks, embedder, cache, previous=live.sentences)
    table.vectors_of(chunk.id, headed_sentences(chunk.text, chunk.heading))  # rows, or None

A sentence is embedded with its slide or section title ("headed"): "repeat: $$x_{t+1} = ...$$" alone
says little, under "Gradient descent: the update rule" it answers the question. The index build
stores the table as `sentences.npy` (float32, L2-normalised, one row a headed sentence) and
`sentences.json` (chunk id -> [start, end) rows, and the texts, so a reader can check that the rows
still are what it would quote).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ingest.chunk import text_hash
from ingest.embed import Embedder, EmbeddingCache, embed_with_cache
from ingest.model import Chunk

VECTORS_FILE = "sentences.npy"
ROWS_FILE = "sentences.json"

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z$\\(\[])|\n+")
# Markers written after the full stop ("... in training. [1]") belong to the sentence before them.
_MARKERS_AFTER_STOP = re.compile(r"([.!?])((?:\s*\[\d+(?:\s*,\s*\d+)*\])+)")
# Bullet glyphs, including those PDF fonts map to private-use code points, with or without a space.
_BULLET = re.compile(r"^\s*(?:(?:[-*]|\d+[.)])\s+|[•·▣▪◦■□➢►‣⁃●○\ue000-\uf8ff]+\s*)+")
_WRAPPED = re.compile(r"(?<=[a-z,;])\n(?=[a-z(])")  # a line break inside a sentence (PDF text wraps)
_EQUATION_LINE = re.compile(r"^\s*\$\$.*\$\$\s*$", re.S)
_NOTES = re.compile(r"^Notes:\s*")
_CODE_LINE = re.compile(
    r"^\s*(?:import |from \w+ import|def |class |for .* in .*:|print\(|return |#|[\"'])|^\s*[\w.\[\]]+\s*[+\-*/]?=\s*\S"
    r"|[;{}]\s*$|\)\s*,?\s*$")

# What reads as no answer, whatever it says: a caption, an exercise or instruction to the student,
# narration that only announces what follows, a running footer (author, course code, date, "9 / 63"),
# markup left in the text. The shipped course has none of these; real decks and notebooks have many.
_NOT_AN_ANSWER = re.compile(
    r"^(?:fig(?:ure)?\.?\s*\d*\s*[:.]|table\s*\d*\s*:|algorithm\s*\d*\s*:|(?:image |photo )?(?:source|credit)s?\s*:"
    r"|(?:exercise|question|problem|task|todo|hint|bonus|homework|assignment)\b\s*[\d:#(.-]|todo\b|(?:let'?s|let us)\s"
    r"|(?:show|prove|derive|verify|check|compare|implement|complete|fill|finish|modify|rewrite|extend|try|run"
    r"|execute|go through|plot|write|watch|read|open|download|install|experiment|play|answer|discuss|explain"
    r"|describe|sketch|draw|determine|estimate|solve|think|look|see|click|repeat)\b(?! (?:is|are|was|were)\b)"
    r"|\|)",
    re.I)
# Words of that list that lead into an explanation rather than set a task: "See how ...", "Think of
# it as ...".
_EXPLAINING_OPENER = re.compile(r"^(?:see|think|look)\b[^.]{0,12}\b(?:that|how|why|what|of it as)\b", re.I)
_FOOTER = re.compile(r"\b\d+\s*/\s*\d+\s*$|\S+@\S+|©|\(c\)\s*\d{4}|\bcopyright\b|\ball rights reserved\b", re.I)
_MARKUP = re.compile(r"<!--|-->|\?\?\?")  # an HTML comment, a remark.js presenter-notes marker
_TABLE_CELLS = re.compile(r"\t+|\s*\|\s*")
_LOGISTICS_HEADING = re.compile(
    r"\b(?:grades?|grading|exams?|midterms?|assessments?|logistics|office hours|syllabus|deadlines?|polic(?:y|ies)"
    r"|late (?:days|submissions?|work)|course (?:info|information|overview))\b", re.I)
_LATIN_WORD = re.compile(r"^[^\W\d_]{2,}$")
_LINK = re.compile(r"\[[^\]]*\]\([^)\s]*\)|https?://\S+")
# Longer than this is a transcript's unpunctuated run, not a sentence a student can read as an answer.
MAX_QUOTED_WORDS = 70
_MATH_SPAN = re.compile(r"\$\$[^$]{1,400}\$\$|\$[^$]{1,200}\$")
_INLINE_MATH = re.compile(r"\$\$.*?\$\$|\$[^$]*\$|\\+\(.*?\\+\)|\\+\[.*?\\+\]", re.S)


# Raised when the rules for which sentences may be quoted change: the index manifest records it, so the
# next ingest re-reads every file and the stored sentence table follows the new rules.
SENTENCE_RULES_VERSION = 4


def split_sentences(text: str) -> list[str]:
    # A line break inside math (a PDF wraps "$\\partial L / \\partial\n\\theta_i$") is no sentence end.
    text = _MATH_SPAN.sub(lambda m: m.group(0).replace("\n", " "), text)
    text = _MARKERS_AFTER_STOP.sub(r"\2\1", text)
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


def reads_as_prose(sentence: str) -> bool:
    """Whether `sentence` is running text rather than a title, a footer or equation debris.

    Prose has lower-case words between its names and symbols: at least two of every five words
    (tokens with a letter or digit) are lower-case words of two letters or more, and no run of four
    glyphs (tokens of up to three characters that are no word), three of them with a letter
    ("w w w w", "𝑤𝑘2 2 𝜎′ 𝑧2 1"), stands in it outside its `$...$` or `\\( ... \\)` math. Text in a
    script without case (Chinese, Japanese) is not judged."""
    text = _INLINE_MATH.sub(" x ", sentence)
    words = text.split()
    if not words:
        return False
    letters = [c for c in text if c.isalpha()]
    if letters and sum(c.islower() or c.isupper() for c in letters) < len(letters) / 2:
        return True  # a caseless script
    stripped = [w.strip(".,;:!?()\"'*_`") for w in words if any(c.isalnum() for c in w)]
    lower = sum(1 for w in stripped if _LATIN_WORD.match(w) and w.islower())
    if lower * 5 < len(stripped) * 2:
        return False
    run: list[str] = []
    for word in words:
        glyph = word.strip(".,;:()[]")
        run = run + [glyph] if len(glyph) <= 3 and not _LATIN_WORD.match(glyph) else []
        if len(run) >= 4 and sum(any(c.isalpha() for c in g) for g in run) >= 3:  # not "f(x) = x^2 + 1"
            return False
    return True


def answers_something(sentence: str) -> bool:
    """Whether a sentence can stand as part of an answer: prose that is not a question, a caption, an
    exercise for the student, narration of what comes next, a page footer or a lead-in to something
    not quoted (it ends in ':')."""
    text = sentence.strip()
    if text.endswith("?") or text.endswith(":") or _FOOTER.search(text) or _MARKUP.search(text):
        return False
    if _NOT_AN_ANSWER.match(text) and not _EXPLAINING_OPENER.match(text):
        return False
    return reads_as_prose(text)


def _table_row(line: str) -> str:
    """A logistics table row ("Midterm Exam (Week 9)<TAB>30%") as "Midterm Exam (Week 9): 30%", or ''.
    Only rows that pair a label with a figure: a grading table's header says nothing."""
    cells = [c.strip() for c in _TABLE_CELLS.split(line.strip().strip("|")) if c.strip()]
    if len(cells) != 2 or not re.search(r"\d", cells[1]) or not re.search(r"[^\W\d_]{3,}", cells[0]) \
            or cells[0].lower() in ("total", "sum", "overall"):
        return ""
    return f"{cells[0]}: {cells[1]}"


def logistics_heading(heading: str) -> bool:
    """Whether a slide or section title names course logistics ("Grading Breakdown", "Office Hours")."""
    return bool(_LOGISTICS_HEADING.search(heading.split(" > ")[-1]))


def candidate_sentences(text: str, heading: str = "") -> list[str]:
    """Sentences and bullet points of a passage that could answer something: a displayed equation is
    kept with its lead-in, while the heading, questions, exercises, captions, footers, fragments and
    equation debris go (`answers_something`). Under a logistics heading ("Grading", "Late policy"), a
    table row pairing an item with its figure is kept too: "Midterm Exam (Week 9): 30%" is the answer."""
    out: list[str] = []
    rows: set[str] = set()
    text = _WRAPPED.sub(" ", text.split("\nNotes:")[0])  # speaker notes help retrieval, read oddly as answers
    logistics = logistics_heading(heading)
    for raw in split_sentences(text):
        if logistics and (row := _table_row(raw)):
            out.append(row)
            rows.add(row)
            continue
        if _CODE_LINE.search(raw):
            continue
        sentence = _NOTES.sub("", _BULLET.sub("", raw)).strip()
        if not sentence:
            continue
        if out and _EQUATION_LINE.match(sentence):  # a displayed equation completes the sentence before it
            out[-1] = f"{out[-1]}\n\n{sentence}\n"
            continue
        out.append(sentence)
    title = heading.split(" > ")[-1].strip().rstrip(":").lower()
    return [s for s in out
            if s.strip().rstrip(":").lower() != title
            and _balanced_math(s) and _balanced_brackets(s) and _words(s) <= MAX_QUOTED_WORDS
            and not _mostly_link(s)
            and (s in rows or _EQUATION_LINE.match(s)
                 or ((_words(s) >= 6 or "$" in s) and answers_something(_lead_in(s))))]


def _balanced_brackets(sentence: str) -> bool:
    """Whether every '(' and '[' outside math closes: "Some architectures (Batch normalization, Skip" is a
    fragment cut from a slide's line."""
    text = _INLINE_MATH.sub(" ", sentence)
    return text.count("(") == text.count(")") and text.count("[") == text.count("]")


def _mostly_link(sentence: str) -> bool:
    """A pointer elsewhere ("see the discussion in [the library's docs](http://...)"), not an answer."""
    links = sum(len(m.group(0)) for m in _LINK.finditer(sentence))
    return links > 0.3 * len(sentence)


def _balanced_math(sentence: str) -> bool:
    """Whether every `$` of `sentence` is closed: a quote cut inside math would not render."""
    return sentence.replace("\\$", "").count("$") % 2 == 0


def _words(sentence: str) -> int:
    """How many tokens of `sentence` have a letter or digit ("+ + +positional" has one)."""
    return sum(1 for token in sentence.split() if any(c.isalnum() for c in token))


def _lead_in(sentence: str) -> str:
    """The words of a sentence before its displayed equation, whose ':' the equation completes."""
    lead, _, equation = sentence.partition("\n\n")
    return lead.rstrip().rstrip(":") if equation else lead


def headed(sentence: str, heading: str) -> str:
    """The text a candidate sentence is embedded as: its heading's last part, then the sentence."""
    return f"{heading.split(' > ')[-1]}: {sentence}"


def headed_sentences(text: str, heading: str = "") -> list[str]:
    return [headed(s, heading) for s in candidate_sentences(text, heading)]


@dataclass
class SentenceVectors:
    """Each chunk's headed candidate sentences and their vectors: chunk id -> rows [start, end)."""

    spans: dict[str, tuple[int, int]]
    texts: list[str]
    vectors: np.ndarray

    def vectors_of(self, chunk_id: str, texts: list[str]) -> np.ndarray | None:
        """The stored rows of `chunk_id`, if they are the vectors of exactly `texts`."""
        span = self.spans.get(chunk_id)
        if span is None or self.texts[span[0]:span[1]] != texts:
            return None
        return self.vectors[span[0]:span[1]]

    @classmethod
    def assemble(cls, parts: list[tuple[str, list[str], np.ndarray]], dimension: int) -> SentenceVectors:
        """A table from (chunk id, headed sentences, their vectors), rows in the order given."""
        spans: dict[str, tuple[int, int]] = {}
        texts: list[str] = []
        for chunk_id, chunk_texts, _ in parts:
            spans[chunk_id] = (len(texts), len(texts) + len(chunk_texts))
            texts.extend(chunk_texts)
        blocks = [vectors for _, chunk_texts, vectors in parts if chunk_texts]
        vectors = np.concatenate(blocks) if blocks else np.zeros((0, dimension), np.float32)
        return cls(spans, texts, np.ascontiguousarray(vectors, dtype=np.float32))

    def save(self, folder: Path) -> None:
        np.save(folder / VECTORS_FILE, self.vectors)
        rows = {"chunks": {cid: list(span) for cid, span in self.spans.items()}, "texts": self.texts}
        (folder / ROWS_FILE).write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> SentenceVectors | None:
        """The table stored in an index build, or None for a build made before sentences were stored."""
        if not (folder / ROWS_FILE).is_file():
            return None
        rows = json.loads((folder / ROWS_FILE).read_text(encoding="utf-8"))
        spans = {cid: (int(start), int(end)) for cid, (start, end) in rows["chunks"].items()}
        return cls(spans, rows["texts"], np.load(folder / VECTORS_FILE))


def embed_sentences(chunks: list[Chunk], embedder: Embedder, cache: EmbeddingCache | None,
                    previous: SentenceVectors | None = None) -> tuple[SentenceVectors, int]:
    """The sentence table of `chunks`, and how many sentences were newly embedded.

    A chunk whose sentences the previous build already holds keeps its rows; the rest go through the
    embedding cache by text hash, so only sentences never seen before cost a model call."""
    parts = [(c.id, headed_sentences(c.text, c.heading)) for c in chunks]
    stored = [previous.vectors_of(cid, texts) if previous else None for cid, texts in parts]
    # The same sentence often stands in two overlapping chunks: it is embedded once.
    missing = list(dict.fromkeys(t for (_, texts), rows in zip(parts, stored) if rows is None for t in texts))
    fresh, embedded = embed_with_cache(embedder, cache, missing, [text_hash(t) for t in missing])
    row_of = {text: i for i, text in enumerate(missing)}
    table = SentenceVectors.assemble(
        [(cid, texts, rows if rows is not None else fresh[[row_of[t] for t in texts]])
         for (cid, texts), rows in zip(parts, stored)], embedder.dimension)
    return table, embedded
