"""The shipped course (corpus/dl-intro): its decks build from their sources, its course.toml points at
files that exist, its worked examples and homework answers are arithmetically right, and the
ingest loaders read the built decks with the slide numbers and page labels a student sees.

The decks are built into the real corpus/dl-intro/slides/ (a gitignored build folder that the
ingest tests and `make run` use too); the build is make-like, so this costs nothing when they are
already up to date.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import importlib.util
import math
import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import webvtt
from pptx import Presentation
from pypdf import PdfReader

from ingest.course import load_course, walk_course
from ingest.loaders import load_file
from ingest.model import SourceFile

REPO = Path(__file__).resolve().parents[1]
COURSE = REPO / "corpus" / "dl-intro"
STEMS = [
    "01-supervised-learning", "02-perceptron", "03-multilayer-networks", "04-optimization",
    "05-backpropagation", "06-regularization", "07-convolutional-networks",
    "08-residual-networks-normalization", "09-recurrent-networks", "10-attention-transformers",
    "11-lora-and-rag",
]
PDF_STEMS = {"01-supervised-learning", "04-optimization", "07-convolutional-networks", "10-attention-transformers"}


def _import_build_decks():
    spec = importlib.util.spec_from_file_location("build_decks", REPO / "corpus" / "build_decks.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


build_decks = _import_build_decks()


@pytest.fixture(scope="session")
def slides_dir() -> Path:
    build_decks.build_course_decks(COURSE)
    return COURSE / "slides"


def headings(stem: str) -> list[str]:
    """The slide titles a deck source declares, read straight from its '## ' lines."""
    text = (COURSE / "lectures" / f"{stem}.md").read_text(encoding="utf-8")
    return [line[3:].strip() for line in text.splitlines() if line.startswith("## ")]


def deck_text(stem: str) -> str:
    prs = Presentation(COURSE / "slides" / f"{stem}.pptx")
    return "\n".join(shape.text_frame.text for s in prs.slides for shape in s.shapes if shape.has_text_frame)


def test_the_sources_are_exactly_the_eleven_lectures():
    assert sorted(p.stem for p in (COURSE / "lectures").glob("*.md")) == STEMS


@pytest.mark.parametrize("stem", STEMS)
def test_every_lecture_builds_a_pptx_with_one_slide_per_heading_and_notes(slides_dir, stem):
    prs = Presentation(slides_dir / f"{stem}.pptx")
    slides = list(prs.slides)
    titles = headings(stem)
    assert len(slides) == len(titles) + 1, "a title slide, then one slide per '## ' heading"
    assert 12 <= len(slides) <= 20
    number = int(stem[:2])
    assert slides[0].shapes.title.text.startswith(f"Lecture {number}: ")
    assert "Introduction to Deep Learning" in slides[0].placeholders[1].text_frame.text
    assert [s.shapes.title.text for s in slides[1:]] == titles
    for slide in slides:
        assert slide.has_notes_slide and len(slide.notes_slide.notes_text_frame.text) > 40
    last = "\n".join(shape.text_frame.text for shape in slides[-1].shapes if shape.has_text_frame)
    assert f"book/{stem}.md" in last and f"notebooks/{stem}.ipynb" in last


def test_pdfs_exist_for_the_four_chosen_lectures_only(slides_dir):
    assert {p.stem for p in slides_dir.glob("*.pdf")} == PDF_STEMS


@pytest.mark.parametrize("stem", sorted(PDF_STEMS))
def test_pdf_page_labels_match_the_printed_page_numbers(slides_dir, stem):
    reader = PdfReader(slides_dir / f"{stem}.pdf")
    assert len(reader.pages) == len(headings(stem)) + 1, "one slide per page"
    assert all(page.mediabox.width > page.mediabox.height for page in reader.pages), "landscape"
    labels = reader.page_labels
    assert labels == ["i"] + [str(n) for n in range(1, len(reader.pages))]
    title_words = reader.pages[0].extract_text().split()
    assert not title_words[-1].isdigit(), "the title page carries no printed number"
    for page, label in zip(reader.pages[1:], labels[1:]):
        assert page.extract_text().split()[-1] == label, "the footer's number is the page's last word"


def test_build_is_make_like_deterministic_and_forceable(tmp_path):
    course = tmp_path / "course"
    (course / "lectures").mkdir(parents=True)
    for stem in ("02-perceptron", "04-optimization"):
        shutil.copy(COURSE / "lectures" / f"{stem}.md", course / "lectures")
    first = build_decks.build_course_decks(course)
    assert sorted(p.name for p in first) == ["02-perceptron.pptx", "04-optimization.pdf", "04-optimization.pptx"]
    snapshot = {p.name: p.read_bytes() for p in first}
    assert build_decks.build_course_decks(course) == [], "nothing changed, nothing rebuilt"
    source = course / "lectures" / "02-perceptron.md"
    later = (course / "slides" / "02-perceptron.pptx").stat().st_mtime + 10
    os.utime(source, (later, later))
    assert [p.name for p in build_decks.build_course_decks(course)] == ["02-perceptron.pptx"]
    forced = build_decks.build_course_decks(course, force=True)
    assert {p.name: p.read_bytes() for p in forced} == snapshot, "same source, same bytes"
    assert not list((course / "slides").glob("*.partial"))


def test_deck_source_format(tmp_path):
    source = tmp_path / "03-demo.md"
    source.write_text(
        "---\ntitle: Demo\nlecture: 3\ncourse: A Course\npdf: true\n---\nNotes: opening words.\n\n"
        "## First\nTwo lines\njoined into one.\n- a bullet\n  - a sub-bullet\n$$a = b$$\n"
        "Notes: said aloud,\nover two lines.\n\n## Second\n- only a bullet\n",
        encoding="utf-8",
    )
    deck = build_decks.parse_deck(source)
    assert (deck.title, deck.lecture, deck.course, deck.pdf, deck.heading) == ("Demo", 3, "A Course", True, "Lecture 3: Demo")
    assert deck.title_notes == "opening words."
    first, second = deck.slides
    assert [(line.kind, line.text) for line in first.lines] == [
        ("para", "Two lines joined into one."), ("bullet", "a bullet"), ("sub", "a sub-bullet"), ("math", "$$a = b$$"),
    ]
    assert first.notes == "said aloud, over two lines."
    assert (second.title, second.notes, [line.text for line in second.lines]) == ("Second", "", ["only a bullet"])


def test_a_broken_source_is_reported_with_its_path(tmp_path):
    (tmp_path / "lectures").mkdir()
    (tmp_path / "lectures" / "01-x.md").write_text("---\ntitle: X\n---\n## A slide\n- point\n")
    with pytest.raises(build_decks.DeckSourceError, match=r"01-x\.md.*lecture:"):
        build_decks.build_course_decks(tmp_path)
    assert build_decks.main([str(tmp_path / "missing")]) == 1


def test_pdf_text_replaces_what_core_fonts_cannot_encode():
    assert build_decks.pdf_text("\u03b7 \u2192 0 \u2264 x \u2014 caf\u00e9") == "? -> 0 <= x  -  caf\u00e9"


# --- the numbers students are taught ---------------------------------------------------------


def test_gradient_descent_worked_example_matches_the_update_rule(slides_dir):
    text = deck_text("04-optimization")
    assert r"x_{t+1} = x_t - \eta f'(x_t)" in text
    x, eta = 9.0, 0.1
    for step in range(1, 4):
        grad = 2 * x
        new = x - eta * grad
        assert f"x_{step} = {x:g} - 0.1 \\cdot {grad:g} = {x:g} - {eta * grad:.4g} = {new:.4g}$" in text
        x = new
    assert round(x, 6) == 4.608


def test_output_size_examples_match_a_count_of_filter_positions(slides_dir):
    pattern = r"\$W = (\d+)\$, \$K = (\d+)\$, \$P = (\d+)\$, \$S = (\d+)\$: \$O = [^$]*= (\d+)\$"
    examples = re.findall(pattern, deck_text("07-convolutional-networks"))
    assert len(examples) == 5
    for width, kernel, pad, stride, claimed in (map(int, e) for e in examples):
        positions = len(range(0, width + 2 * pad - kernel + 1, stride))  # left edges that fit
        assert positions == claimed, (width, kernel, pad, stride)


def test_convolution_and_attention_worked_examples(slides_dir):
    image = np.array([[1, 2, 0, 1], [0, 1, 3, 1], [2, 1, 0, 0], [1, 0, 1, 2]])
    kernel = np.array([[1, 0, -1]] * 3)
    out = [[int((image[i:i + 3, j:j + 3] * kernel).sum()) for j in range(2)] for i in range(2)]
    assert "rows $(0, 2)$ and $(-1, -1)$" in deck_text("07-convolutional-networks")
    assert out == [[0, 2], [-1, -1]]

    q, keys = np.array([1.0, 0.0]), np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    values = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]])
    scores = keys @ q / math.sqrt(2)
    weights = np.exp(scores) / np.exp(scores).sum()
    text = deck_text("10-attention-transformers")
    assert "Attention weights: $(%.3f, %.3f, %.3f)$" % tuple(weights) in text
    assert "\\approx (%.3f, %.3f)$" % tuple(weights @ values) in text


def test_lora_parameter_count_example(slides_dir):
    d = k = 4096
    rank = 8
    lora = rank * (d + k)
    text = deck_text("11-lora-and-rag")
    assert f"= {lora:,}$ parameters" in text
    assert f"{2 * 32 * lora:,}$ trainable parameters" in text
    assert f"{d * k:,}$ parameters" in text


def test_homework_two_network_answers_agree_with_pytorch():
    torch = pytest.importorskip("torch")
    nn = torch.nn
    net = nn.Sequential(
        nn.Conv2d(3, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2, 2),
        nn.Conv2d(32, 64, 3, padding=1, stride=2), nn.ReLU(),
        nn.Conv2d(64, 64, 3), nn.ReLU(), nn.MaxPool2d(2, 2), nn.Flatten(),
    )
    flat = net(torch.zeros(1, 3, 96, 96)).shape[1]
    total = sum(p.numel() for p in net.parameters()) + flat * 10 + 10
    solution = (COURSE / "solutions" / "hw2.md").read_text(encoding="utf-8")
    assert f"{flat:,}" in solution and f"= {total:,}$" in solution
    for width, kernel, pad, stride, claimed in [(64, 5, 2, 1, 64), (64, 3, 0, 2, 31), (100, 7, 3, 2, 50)]:
        out = nn.Conv2d(1, 1, kernel, stride=stride, padding=pad)(torch.zeros(1, 1, width, width))
        assert out.shape[-1] == claimed and f"Output ${claimed} \\times {claimed}$" in solution


def test_homework_one_answers_agree_with_a_direct_computation():
    solution = (COURSE / "solutions" / "hw1.md").read_text(encoding="utf-8")
    x = 0.0
    for _ in range(3):
        x -= 0.25 * 2 * (x - 3)
    assert x == 2.625 and "$x_3 = 2.625$" in solution
    xs, ys = np.array([0.0, 1, 2, 3]), np.array([1.0, 3, 5, 7])
    w = b = 0.0
    for step in range(1, 101):
        r = w * xs + b - ys
        w, b = w - 0.05 * 2 * np.mean(r * xs), b - 0.05 * 2 * np.mean(r)
        if step == 1:
            assert f"$w = {w:g}$, $b = {b:g}$" in solution
    assert f"$w \\approx {w:.4f}$, $b \\approx {b:.4f}$" in solution


# --- course.toml and the files it names ------------------------------------------------------


def test_course_toml_parses_and_every_path_it_names_exists(slides_dir):
    course = load_course(COURSE)
    assert (course.id, course.title) == ("dl-intro", "Introduction to Deep Learning")
    assert course.demo_base.endswith("/corpus/dl-intro/")
    assert "full solutions" in course.policy and "say so" in course.policy, "no solutions; credit AI help"
    rels = [p.relative_to(COURSE).as_posix() for p in walk_course(COURSE)]
    assert course.unmatched_globs(rels) == [], "every source rule matches a file"
    assert [lecture.lecture for lecture in course.schedule] == list(range(1, 12))
    for i, lecture in enumerate(course.schedule):
        assert lecture.date == dt.date(2026, 9, 8) + dt.timedelta(weeks=i)
        assert lecture.date.weekday() == 1, "Tuesdays"
        for pattern in lecture.sources:
            assert any(fnmatch.fnmatchcase(rel, pattern) for rel in rels), f"{pattern} matches no file"
        assert course.lecture_of(f"slides/{STEMS[i]}.pptx") == lecture
    dates = {lecture.lecture: lecture.date for lecture in course.schedule}
    hw = {a.id: a for a in course.assignments}
    assert sorted(hw) == ["hw1", "hw2"]
    assert dates[5] < hw["hw1"].due < dates[6] and dates[8] < hw["hw2"].due < dates[9]
    for assignment in hw.values():
        assert (COURSE / assignment.path).is_file() and (COURSE / assignment.solution).is_file()


def test_deck_sources_are_not_indexed_but_everything_else_is():
    course = load_course(COURSE)
    assert course.kind_for("lectures/04-optimization.md") is None
    expected = {
        "slides/04-optimization.pptx": "slides", "slides/04-optimization.pdf": "slides",
        "syllabus.md": "syllabus", "assignments/hw1.md": "assignment", "solutions/hw2.md": "solution",
        "transcripts/04-optimization.vtt": "transcript",
    }
    assert {rel: course.kind_for(rel) for rel in expected} == expected


def test_no_placeholder_text_in_the_written_material():
    files = [*(COURSE / "lectures").glob("*.md"), *(COURSE / "book").glob("*.md"), COURSE / "syllabus.md",
             *(COURSE / "assignments").glob("*.md"), *(COURSE / "solutions").glob("*.md")]
    for path in files:
        text = path.read_text(encoding="utf-8")
        found = re.findall(r"\b(?:TODO|FIXME|TBD|XXX)\b|lorem ipsum|\[insert", text, flags=re.IGNORECASE)
        assert not found, f"{path.relative_to(COURSE)}: {found}"


def test_transcript_is_a_five_minute_excerpt_of_lecture_four():
    captions = webvtt.read(str(COURSE / "transcripts" / "04-optimization.vtt")).captions
    assert 40 <= len(captions) <= 60
    starts = [c.start_in_seconds for c in captions]
    assert starts == sorted(starts) and all(c.end_in_seconds > c.start_in_seconds for c in captions)
    assert 4 * 60 <= captions[-1].end_in_seconds - starts[0] <= 7 * 60
    spoken = " ".join(c.text for c in captions)
    assert "seven point two" in spoken and "four point six zero eight" in spoken


# --- the ingest loaders on the built decks ---------------------------------------------------


@pytest.mark.parametrize("stem", STEMS)
def test_pptx_loader_reads_each_slide_with_its_number_title_and_notes(slides_dir, stem):
    rel = f"slides/{stem}.pptx"
    doc = load_file(SourceFile(path=COURSE / rel, rel=rel, kind="slides"))
    titles = headings(stem)
    assert [s.locator.slide for s in doc.sections] == list(range(1, len(titles) + 2))
    assert [s.locator.section for s in doc.sections[1:]] == titles
    assert doc.sections[0].locator.section.startswith(f"Lecture {int(stem[:2])}: ")
    assert all("Notes: " in s.text for s in doc.sections)
    assert doc.sections[3].locator.url == f"{rel}#slide=4"


@pytest.mark.parametrize("stem", sorted(PDF_STEMS))
def test_pdf_loader_reports_the_printed_page_number_as_page_label(slides_dir, stem):
    rel = f"slides/{stem}.pdf"
    doc = load_file(SourceFile(path=COURSE / rel, rel=rel, kind="slides"))
    assert [s.locator.page for s in doc.sections] == list(range(1, len(headings(stem)) + 2))
    assert doc.sections[0].locator.page_label == "i"
    for section in doc.sections[1:]:
        assert section.locator.page_label == str(section.locator.page - 1)
        # The printed page counter is a running footer (on every page, counting up): the loader drops it
        # from the text and keeps it as the label.
        assert section.text.split()[-1] != section.locator.page_label
        assert section.locator.url == f"{rel}#page={section.locator.page}"
