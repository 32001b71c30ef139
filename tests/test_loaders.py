"""The format loaders: what each one finds in a small generated file, where it says it found it
(the locator and deep link), and the one-line reason it gives for a file it cannot read.

Every fixture is generated in the test (tests/fixture_files.py). The plain-text slide recovery is
also run on the real lecture exports in ../shared/dev/lectures when that folder is present.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from ingest.errors import LoaderError, TutorError
from ingest.loaders import load_file, supported_extensions
from ingest.loaders.subtitles import format_clock
from ingest.model import Demo, Locator, SourceFile
from fixture_files import (
    make_html, make_markdown, make_notebook, make_pdf, make_pptx, make_srt, make_vtt,
)

LECTURES = Path(__file__).resolve().parents[2] / "shared" / "dev" / "lectures"


def load(root: Path, path: Path, kind: str = "notes", demo_base: str = ""):
    return load_file(SourceFile(path=path, rel=path.relative_to(root).as_posix(), kind=kind, demo_base=demo_base))


def expect_error(root: Path, path: Path, *fragments: str) -> str:
    with pytest.raises(LoaderError) as caught:
        load(root, path)
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, message
    assert "\n" not in message
    return message


def test_every_format_is_registered():
    assert supported_extensions() == sorted(
        [".pdf", ".pptx", ".md", ".markdown", ".html", ".htm", ".txt", ".ipynb", ".vtt", ".srt", ".sbv"]
    )


def test_loader_error_is_a_tutor_error_and_a_value_error():
    assert issubclass(LoaderError, TutorError) and issubclass(LoaderError, ValueError)


# --- PDF -------------------------------------------------------------------------------------


def test_pdf_one_section_per_page_with_physical_page_and_printed_label(tmp_path):
    pages = ["Preface\nWhy this book", "Contents\n1 Gradients", "Gradients\nThe slope of the loss", "",
             "Momentum\nA running average of gradients"]
    path = make_pdf(tmp_path / "book" / "notes.pdf", pages, page_labels_start=2, title="Deep Learning Notes")

    document = load(tmp_path, path, kind="book")

    assert document.title == "Deep Learning Notes"
    assert [s.locator.page for s in document.sections] == [1, 2, 3, 5]  # the blank page 4 is dropped
    assert [s.locator.page_label for s in document.sections] == ["i", "ii", "1", "3"]
    assert document.sections[2].text == "Gradients\nThe slope of the loss"
    assert document.sections[3].locator == Locator(
        path="book/notes.pdf", kind="book", title="Deep Learning Notes", page=5, page_label="3",
        url="book/notes.pdf#page=5", section="Momentum",  # a heading-like first line names the page
    )


def test_pdf_title_falls_back_to_first_line_then_file_name(tmp_path):
    with_text = make_pdf(tmp_path / "a.pdf", ["  \nConvolutions in practice\nKernels and strides"])
    blank_first = make_pdf(tmp_path / "week-2.pdf", ["", "Second page"])

    assert load(tmp_path, with_text).title == "Convolutions in practice"
    assert load(tmp_path, blank_first).title == "week-2"


def test_pdf_without_page_labels_labels_pages_by_number(tmp_path):
    path = make_pdf(tmp_path / "a.pdf", ["One", "Two"])
    assert [s.locator.page_label for s in load(tmp_path, path).sections] == ["1", "2"]


def test_pdf_with_an_empty_user_password_is_read(tmp_path):
    path = make_pdf(tmp_path / "open.pdf", ["Readable after all"], encrypt=True, password="")
    assert load(tmp_path, path).sections[0].text == "Readable after all"


def test_password_protected_pdf_is_refused_with_the_fix(tmp_path):
    path = make_pdf(tmp_path / "locked.pdf", ["Secret"], encrypt=True, password="hunter2")
    expect_error(tmp_path, path, "password-protected", "qpdf --decrypt")


def test_random_bytes_are_not_a_readable_pdf(tmp_path):
    path = tmp_path / "noise.pdf"
    path.write_bytes(os.urandom(4096))
    expect_error(tmp_path, path, "not a readable PDF")


def test_truncated_pdf_is_not_readable(tmp_path):
    path = make_pdf(tmp_path / "cut.pdf", ["First page", "Second page"])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    expect_error(tmp_path, path, "not a readable PDF")


def test_pdf_without_a_text_layer_asks_for_ocr(tmp_path):
    path = make_pdf(tmp_path / "scan.pdf", ["", ""])
    expect_error(tmp_path, path, "no text layer", "OCR")


# --- PPTX ------------------------------------------------------------------------------------


def test_pptx_one_section_per_slide_with_body_tables_groups_and_notes(tmp_path):
    slides = [
        ("Welcome to Deep Learning", "Course goals\nHow grading works", "Introduce the teaching assistants"),
        ("Backpropagation", "The chain rule, layer by layer", ""),
        ("Part II", "", ""),
        ("Summary", "Gradients flow backwards", "Remind them about homework 1"),
    ]
    path = make_pptx(
        tmp_path / "slides" / "lecture01.pptx", slides,
        tables={1: [["Layer", "Units"], ["hidden", "128"]]}, groups={3: ["left box", "right box"]},
    )

    document = load(tmp_path, path, kind="slides")

    assert document.title == "Welcome to Deep Learning"
    assert [s.locator.slide for s in document.sections] == [1, 2, 3, 4]
    assert [s.locator.section for s in document.sections] == [
        "Welcome to Deep Learning", "Backpropagation", "Part II", "Summary",
    ]
    first, second, divider, last = document.sections
    assert divider.text == "Part II"  # a title alone is its own text, so the slide can be found
    assert first.text == "Course goals\nHow grading works\nNotes: Introduce the teaching assistants"
    assert second.text == "The chain rule, layer by layer\nLayer | Units\nhidden | 128"
    assert last.text == "Gradients flow backwards\nleft box\nright box\nNotes: Remind them about homework 1"
    assert last.locator == Locator(
        path="slides/lecture01.pptx", kind="slides", title="Welcome to Deep Learning", slide=4,
        section="Summary", url="slides/lecture01.pptx#slide=4",
    )


def test_pptx_title_falls_back_to_core_properties_then_file_name(tmp_path):
    titled = make_pptx(tmp_path / "a.pptx", [("", "Body text", "")], core_title="Week 3: CNNs")
    untitled = make_pptx(tmp_path / "week4.pptx", [("", "Body text", "")])

    assert load(tmp_path, titled).title == "Week 3: CNNs"
    assert load(tmp_path, untitled).title == "week4"
    assert load(tmp_path, untitled).sections[0].locator.section is None


def test_corrupt_pptx_is_refused(tmp_path):
    path = tmp_path / "broken.pptx"
    path.write_bytes(b"PK\x03\x04" + os.urandom(500))
    expect_error(tmp_path, path, "not a readable PowerPoint file", "re-save")


# --- Markdown --------------------------------------------------------------------------------

MARKDOWN = """\
---
title: "Optimisation notes"
author: Staff
---
Read this before lecture 3.

# Optimization

Minimise the loss $L(\\theta)$ over the parameters.

## Momentum

Keep a running average:

$$v_{t+1} = \\beta v_t + \\nabla L(\\theta_t)$$

```python
# not a heading: a comment in code
v = beta * v + grad
```

## Momentum

The same heading again.

### Nesterov & friends: a look-ahead

Evaluate the gradient ahead.

## Empty heading

## Example

Setext title
------------

Under a setext heading.
"""


def test_markdown_sections_follow_headings_with_paths_and_github_anchors(tmp_path):
    path = make_markdown(tmp_path / "book" / "ch3.md", MARKDOWN)

    document = load(tmp_path, path, kind="book")

    assert document.title == "Optimisation notes"
    assert [(s.locator.section, s.locator.anchor) for s in document.sections] == [
        ("Optimisation notes", None),
        ("Optimization", "optimization"),
        ("Optimization > Momentum", "momentum"),
        ("Optimization > Momentum", "momentum-1"),
        ("Optimization > Momentum > Nesterov & friends: a look-ahead", "nesterov--friends-a-look-ahead"),
        ("Optimization > Setext title", "setext-title"),
    ]
    assert document.sections[0].text == "Read this before lecture 3."
    assert document.sections[0].locator.url == "book/ch3.md"
    assert document.sections[2].locator == Locator(
        path="book/ch3.md", kind="book", title="Optimisation notes", section="Optimization > Momentum",
        anchor="momentum", url="book/ch3.md#momentum",
    )


def test_markdown_keeps_code_and_latex_verbatim(tmp_path):
    path = make_markdown(tmp_path / "ch3.md", MARKDOWN)
    momentum = load(tmp_path, path).sections[2].text

    assert "$$v_{t+1} = \\beta v_t + \\nabla L(\\theta_t)$$" in momentum
    assert "```python\n# not a heading: a comment in code\nv = beta * v + grad\n```" in momentum
    assert "$L(\\theta)$" in load(tmp_path, path).sections[1].text


def test_markdown_title_is_first_h1_then_file_name(tmp_path):
    with_h1 = make_markdown(tmp_path / "a.md", "Intro line\n\n## Early\n\ntext\n\n# The `real` title\n\nbody\n")
    without = make_markdown(tmp_path / "loss-functions.markdown", "## Only level two\n\nbody\n")

    assert load(tmp_path, with_h1).title == "The real title"
    assert load(tmp_path, without).title == "loss-functions"


# --- HTML ------------------------------------------------------------------------------------

HTML_BODY = """
<nav><a href="/">Home</a> <a href="/next">Next chapter</a></nav>
<script>var tracking = "should never be indexed";</script>
<style>h1 { color: red }</style>
<p>Preface paragraph.</p>
<h1>Convolutional   networks</h1>
<p>A <b>kernel</b> slides
   over the image.</p>
<h2 id="stride-and-padding">Stride &amp; padding</h2>
<pre>out = (n + 2*p - k) // s + 1
    # indentation kept</pre>
<h2>Pooling</h2>
<ul><li>max</li><li>average</li></ul>
<div><h3>Pooling</h3><p>Again, nested in a div.</p></div>
"""


def test_html_sections_follow_headings_with_ids_or_slugs(tmp_path):
    path = make_html(tmp_path / "web" / "cnn.html", HTML_BODY, title="CNN chapter")

    document = load(tmp_path, path, kind="web")

    assert document.title == "CNN chapter"
    assert [(s.locator.section, s.locator.anchor) for s in document.sections] == [
        ("CNN chapter", None),
        ("Convolutional networks", "convolutional-networks"),
        ("Convolutional networks > Stride & padding", "stride-and-padding"),
        ("Convolutional networks > Pooling", "pooling"),
        ("Convolutional networks > Pooling > Pooling", "pooling-1"),
    ]
    texts = [s.text for s in document.sections]
    assert texts[0] == "Preface paragraph."
    assert texts[1] == "A kernel slides over the image."
    assert texts[2] == "out = (n + 2*p - k) // s + 1\n    # indentation kept"
    assert texts[3] == "max\naverage"
    assert document.sections[2].locator.url == "web/cnn.html#stride-and-padding"
    assert not any("tracking" in t or "Next chapter" in t or "color" in t for t in texts)


def test_html_title_falls_back_to_first_h1(tmp_path):
    path = make_html(tmp_path / "page.htm", "<h2>Aside</h2><p>x</p><h1>Real title</h1><p>y</p>")
    assert load(tmp_path, path).title == "Real title"


# --- Notebooks -------------------------------------------------------------------------------


def test_notebook_one_section_per_cell_with_heading_output_and_demo(tmp_path):
    cells = [
        ("markdown", "# Gradient descent demo\nWe fit a line."),
        ("code", "import numpy as np"),
        ("markdown", "## Step size"),
        ("code", "lr = 0.1\nprint(lr)", "0.1\n"),
        ("code", "   "),
        ("code", "print('x' * 2000)", "x" * 2000),
        ("raw", "raw cells are not indexed"),
    ]
    path = make_notebook(tmp_path / "demos" / "gd.ipynb", cells)
    base = "https://colab.research.google.com/github/ORG/REPO/blob/main/corpus/dl-intro/"

    document = load(tmp_path, path, kind="notebook", demo_base=base)

    assert document.title == "Gradient descent demo"
    assert [s.locator.cell for s in document.sections] == [0, 1, 2, 3, 5]
    assert [s.locator.section for s in document.sections] == [
        "Gradient descent demo", "Gradient descent demo", "Step size", "Step size", "Step size",
    ]
    assert document.sections[3].text == "lr = 0.1\nprint(lr)\n\nOutput:\n0.1"
    assert document.sections[3].locator.url == "demos/gd.ipynb#cell=3"
    long_output = document.sections[4].text.split("Output:\n")[1]
    assert long_output == "x" * 500 + " …"
    assert document.demo == Demo(
        title="Gradient descent demo", path="demos/gd.ipynb", launch_url=base + "demos/gd.ipynb",
    )


def test_notebook_without_demo_base_or_heading(tmp_path):
    path = make_notebook(tmp_path / "scratch.ipynb", [("markdown", "Just notes"), ("code", "1 + 1")])
    document = load(tmp_path, path)

    assert document.title == "scratch"
    assert document.demo == Demo(title="scratch", path="scratch.ipynb", launch_url="")
    assert [s.locator.section for s in document.sections] == [None, None]


@pytest.mark.parametrize("content", ['{"cells": [', '{"nbformat": 4, "cells": "no"}', "[1, 2, 3]"])
def test_invalid_notebook_json_is_refused(tmp_path, content):
    path = tmp_path / "bad.ipynb"
    path.write_text(content, encoding="utf-8")
    expect_error(tmp_path, path, "invalid notebook JSON", "re-save")


# --- Subtitles -------------------------------------------------------------------------------


def test_vtt_cues_grouped_into_about_a_minute_never_splitting_a_cue(tmp_path):
    cues = [(10.0 * i + 0.5, 10.0 * i + 9.5, f"sentence {i}") for i in range(12)]
    cues.append((120.5, 190.0, "one very long cue"))
    cues.append((190.0, 195.0, "closing words"))
    path = make_vtt(tmp_path / "videos" / "lecture_03-backprop.vtt", cues)

    document = load(tmp_path, path, kind="transcript")

    assert document.title == "Lecture 03 backprop"
    assert [s.locator.start_s for s in document.sections] == [0.5, 50.5, 100.5, 190.0]
    assert [s.locator.section for s in document.sections] == ["00:00", "00:50", "01:40", "03:10"]
    assert document.sections[0].text == "sentence 0 sentence 1 sentence 2 sentence 3 sentence 4"
    assert document.sections[2].text == "sentence 10 sentence 11 one very long cue"
    assert document.sections[1].locator == Locator(
        path="videos/lecture_03-backprop.vtt", kind="transcript", title="Lecture 03 backprop",
        section="00:50", start_s=50.5, url="videos/lecture_03-backprop.vtt#t=50",
    )


def test_srt_is_read_and_repeated_rolling_lines_kept_once(tmp_path):
    cues = [(3661.25, 3663.0, "so the gradient"), (3663.0, 3665.0, "so the gradient\nflows backwards")]
    path = make_srt(tmp_path / "talk.srt", cues)

    [section] = load(tmp_path, path).sections

    assert section.text == "so the gradient flows backwards"
    assert section.locator.start_s == 3661.25
    assert section.locator.section == "1:01:01"
    assert section.locator.url == "talk.srt#t=3661"


def test_clock_format():
    assert [format_clock(s) for s in (0, 59.9, 83, 3599, 3725)] == ["00:00", "00:59", "01:23", "59:59", "1:02:05"]


@pytest.mark.parametrize("name, content", [
    ("no_header.vtt", "00:00:01.000 --> 00:00:02.000\nhello\n"),
    ("garbage.srt", "this is not\na subtitle file\n"),
])
def test_malformed_subtitles_are_refused(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    expect_error(tmp_path, path, "not a valid", "timestamp")


def test_subtitles_without_cues_are_refused(tmp_path):
    path = tmp_path / "empty.vtt"
    path.write_text("WEBVTT\n\n", encoding="utf-8")
    expect_error(tmp_path, path, "no subtitle cues")


# --- Plain-text slide exports ----------------------------------------------------------------

EXPORTED_DECK = """\


Neural Networks 101

Week 1

Introduction



Plan for Today

- Perceptrons
- Gradient descent

Perceptrons



Decision boundary

- A weighted sum and a threshold
- Learns linearly separable classes

Source: a textbook figure

Any Questions?

Gradient Descent

- Step against the gradient
- The learning rate sets the step size
"""


def test_text_export_recovers_titled_slides(tmp_path):
    path = tmp_path / "slides" / "week1.txt"
    path.parent.mkdir()
    path.write_text(EXPORTED_DECK, encoding="utf-8")

    document = load(tmp_path, path, kind="slides")

    assert document.title == "Neural Networks 101"
    assert [(s.locator.slide, s.locator.section) for s in document.sections] == [
        (1, "Neural Networks 101"), (2, "Plan for Today"), (3, "Perceptrons"), (4, "Any Questions?"),
        (5, "Gradient Descent"),
    ]
    assert document.sections[3].text == "Any Questions?"  # a title alone is its own text
    assert document.sections[0].text == "Week 1\n\nIntroduction"
    # the caption under the dropped picture stays on its slide, as does the source line
    assert document.sections[2].text == (
        "Decision boundary\n\n- A weighted sum and a threshold\n- Learns linearly separable classes"
        "\n\nSource: a textbook figure"
    )
    assert document.sections[4].locator.url == "slides/week1.txt#slide=5"


def test_text_export_with_printed_slide_numbers_and_markdown_headings(tmp_path):
    numbered = "Deep Learning Fundamentals\n\nLecture 1\n\nIntro\n\n2\n\n- one\n\nCaption Here\n\n"
    numbered += "".join(f"Topic {n}\n\n{n}\n\n- point {n}\n\nFigure Label\n\n" for n in range(3, 8))
    headed = "# Deck\n\n" + "".join(f"# Heading {n}\n\n- bullet {n}\n\nImage Caption\n\n" for n in range(1, 7))
    (tmp_path / "numbered.txt").write_text(numbered, encoding="utf-8")
    (tmp_path / "headed.txt").write_text(headed, encoding="utf-8")

    numbered_doc = load(tmp_path, tmp_path / "numbered.txt")
    headed_doc = load(tmp_path, tmp_path / "headed.txt")

    # short title-like lines without a printed number ("Caption Here", "Figure Label") open no slide
    assert [s.locator.section for s in numbered_doc.sections] == [
        "Deep Learning Fundamentals", "Intro", "Topic 3", "Topic 4", "Topic 5", "Topic 6", "Topic 7",
    ]
    assert numbered_doc.sections[0].text == "Lecture 1"
    assert numbered_doc.sections[1].text == "- one\n\nCaption Here"
    # in a deck titled with headings, only headings open slides
    assert headed_doc.title == "Deck"
    assert [s.locator.section for s in headed_doc.sections] == ["Deck"] + [f"Heading {n}" for n in range(1, 7)]
    assert headed_doc.sections[1].text == "- bullet 1\n\nImage Caption"


def test_text_export_long_slide_is_cut_below_the_limit_in_order(tmp_path):
    paragraphs = [f"Paragraph {n} keeps going for a while, sentence after sentence. " * 8 for n in range(12)]
    paragraphs.append("".join(f"word{n} " for n in range(1200)))  # one paragraph longer than the limit
    body = "\n\n".join(p.strip() for p in paragraphs)
    path = tmp_path / "long.txt"
    path.write_text("Notes\n\n" + body, encoding="utf-8")

    sections = load(tmp_path, path).sections

    assert len(sections) > 2
    assert all(len(s.text) <= 3000 for s in sections)
    assert {s.locator.slide for s in sections} == {1}
    assert "".join("".join(s.text.split()) for s in sections) == "".join(body.split())


def test_text_decodes_utf8_with_bom(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes("\ufeffDéjà vu\n\n- café".encode("utf-8"))
    document = load(tmp_path, path)
    assert document.title == "Déjà vu"


def test_non_utf8_text_is_refused_with_the_fix(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("Régression linéaire\n\n- pente".encode("latin-1"))
    expect_error(tmp_path, path, "not UTF-8 text", "re-save the file as UTF-8")


def test_whitespace_only_text_is_empty(tmp_path):
    path = tmp_path / "blank.txt"
    path.write_text("  \n\n\t\n", encoding="utf-8")
    expect_error(tmp_path, path, "file is empty")


# The five real lecture exports: (expected slide count range, titles that must be recovered).
REAL_DECKS = {
    "000_d64a457c812e6084.txt": ((40, 90), ["Plan for Today", "Universal Function Approximation",
                                           "Backpropagation", "Generative AI Assistance (GAIA) Policy"]),
    "001_afb8aacd465fd66c.txt": ((45, 100), ["Prediction Types", "Reinforcement learning",
                                            "Abbreviated History of NNs", "Possible Projects"]),
    "002_14926f5795f10ad8.txt": ((20, 40), ["Learning Objective", "Semester Project Timeline",
                                           "Essence of Deep Learning", "Google Colab"]),
    "003_fce303715d83a0f2.txt": ((30, 80), ["How can we train the deep neural network?", "Take-Away Messages"]),
    "004_353f000052f01e0e.txt": ((40, 75), ["Biological neural networks", "Course outline",
                                           "Derivatives", "Linear regression"]),
}


@pytest.mark.skipif(not LECTURES.is_dir(), reason="the shared dev lectures are not present")
@pytest.mark.parametrize("name", sorted(REAL_DECKS))
def test_real_lecture_exports_are_recovered_as_slides(name):
    (low, high), titles = REAL_DECKS[name]
    path = LECTURES / name

    document = load_file(SourceFile(path=path, rel=f"slides/{name}", kind="slides"))

    slides = [s.locator.slide for s in document.sections]
    assert low <= len(set(slides)) <= high
    assert slides == sorted(slides) and slides[0] == 1
    section_titles = {s.locator.section for s in document.sections}
    assert set(titles) <= section_titles
    assert document.title and "\n" not in document.title
    for section in document.sections:
        assert section.text and len(section.text) <= 4000
        assert section.locator.url == f"slides/{name}#slide={section.locator.slide}"
        assert "\n\n\n" not in section.text and section.text == section.text.strip()


@pytest.mark.skipif(not LECTURES.is_dir(), reason="the shared dev lectures are not present")
@pytest.mark.parametrize("name", sorted(REAL_DECKS))
def test_real_lecture_export_loses_no_line_but_printed_slide_numbers(name):
    path = LECTURES / name
    document = load_file(SourceFile(path=path, rel=name, kind="slides"))

    def bare(text: str) -> str:  # titles lose their Markdown marks and extra spaces
        return re.sub(r"[#*\s]", "", text)

    recovered = bare("".join([document.title] + [f"{s.locator.section}{s.text}" for s in document.sections]))
    lines = {line.strip() for line in path.read_text(encoding="utf-8").splitlines()}
    missing = [line for line in lines if line and not line.isdigit() and bare(line) not in recovered]
    assert missing == []


# --- Common bad input ------------------------------------------------------------------------


@pytest.mark.parametrize("extension", [".pdf", ".pptx", ".md", ".html", ".txt", ".ipynb", ".vtt", ".srt"])
def test_zero_byte_file_is_reported_empty(tmp_path, extension):
    path = tmp_path / f"empty{extension}"
    path.write_bytes(b"")
    expect_error(tmp_path, path, "file is empty (0 bytes)")


def test_notebook_json_with_bom_is_read(tmp_path):
    notebook = make_notebook(tmp_path / "a.ipynb", [("markdown", "# Title"), ("code", "x = 1")])
    notebook.write_bytes("\ufeff".encode() + notebook.read_bytes())
    assert json.loads(notebook.read_text(encoding="utf-8-sig"))["cells"]
    assert load(tmp_path, notebook).title == "Title"
