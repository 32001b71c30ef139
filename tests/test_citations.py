"""Citation handling on crafted model outputs: unknown markers, repeats, order, none, code, streaming."""

from __future__ import annotations

import pytest

from ingest.model import Chunk, Locator
from tutor.citations import CitationStream, best_quote, resolve_citations
from tutor.prompt import Source


def source(n: int, text: str) -> Source:
    locator = Locator(path=f"book/ch{n}.md", kind="book", title=f"Chapter {n}", section=f"S{n}",
                      anchor=f"s{n}", url=f"book/ch{n}.md#s{n}")
    return Source(n, Chunk(id=f"c{n}", text=text, locator=locator, ordinal=0, text_hash=f"h{n}"), text)


SOURCES = [
    source(1, "Momentum keeps a velocity of past gradients. It damps oscillations."),
    source(2, "Adam adapts a step size for every parameter. It uses two moment estimates."),
    source(3, "Dropout zeroes random units during training."),
]


@pytest.mark.parametrize(("text", "expected_text", "expected_chunks"), [
    # out of order: renumbered by first use
    ("Adam adapts steps [2]. Momentum damps [1].", "Adam adapts steps [1]. Momentum damps [2].", ["c2", "c1"]),
    # unknown marker removed, unused source dropped
    ("Dropout zeroes units [3]. Something else [7].", "Dropout zeroes units [1]. Something else.", ["c3"]),
    # repeated and grouped markers
    ("Momentum [1][1] and Adam [2, 1].", "Momentum [1] and Adam [2][1].", ["c1", "c2"]),
    # no markers at all: no citations
    ("I am not sure.", "I am not sure.", []),
    # brackets inside code and math are not citations
    ("Index `x[2]` and $a_{[3]}$ then momentum [1].", "Index `x[2]` and $a_{[3]}$ then momentum [1].", ["c1"]),
    ("", "", []),
])
def test_resolve_citations(text, expected_text, expected_chunks):
    cleaned, citations = resolve_citations(text, SOURCES)
    assert cleaned == expected_text
    assert [c.chunk_id for c in citations] == expected_chunks
    assert [c.n for c in citations] == list(range(1, len(expected_chunks) + 1))


def test_every_marker_in_the_text_resolves_to_a_citation():
    cleaned, citations = resolve_citations("A [3]. B [2]. C [9]. D [3].", SOURCES)
    numbers = {c.n for c in citations}
    import re

    assert {int(m) for m in re.findall(r"\[(\d+)\]", cleaned)} == numbers == {1, 2}


def test_quote_is_the_sentence_that_supports_the_claim():
    _, citations = resolve_citations("Adam keeps two moment estimates [2].", SOURCES)
    assert citations[0].quote == "It uses two moment estimates."
    assert best_quote("First sentence here. Second one.", "nothing shared") == "First sentence here."
    assert citations[0].url == "book/ch2.md#s2" and citations[0].locator["anchor"] == "s2"


def test_unicode_survives():
    cleaned, citations = resolve_citations("Die Lernrate η steuert die Schrittweite [1] — ok.", SOURCES)
    assert cleaned == "Die Lernrate η steuert die Schrittweite [1] — ok." and len(citations) == 1


@pytest.mark.parametrize("pieces", [
    ["Adam [2] then momentum [1] and [9]."],
    ["Adam [", "2] then momentum [", "1", "] and [9", "]."],
    list("Adam [2] then momentum [1] and [9]."),
])
def test_streaming_renumbering_gives_the_same_text_however_it_is_split(pieces):
    stream = CitationStream({1, 2, 3})
    out = "".join(stream.feed(p) for p in pieces) + stream.flush()
    assert out == "Adam [1] then momentum [2] and ."
    assert stream.numbers == {2: 1, 1: 2}


def test_a_marker_after_the_full_stop_still_belongs_to_its_sentence():
    passage = source(1, "Typical rates are 0.1 to 0.5. Dropout is used less in convolutional layers.")
    _, citations = resolve_citations("- Dropout is used less in convolutional layers. [1]\n- Other text.", [passage])
    assert citations[0].quote == "Dropout is used less in convolutional layers."
    assert citations[0].supports == ["- Dropout is used less in convolutional layers."]
