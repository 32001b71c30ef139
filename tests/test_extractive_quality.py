"""Extractive answers read as answers: what a passage offers to quote, and which sentence is preferred.

The lines below are the kinds real third-party material holds (Beamer footers, PDF equation residue,
exercise prompts, captions); each is checked against what a reader would accept as part of an answer.
"""

from __future__ import annotations

import numpy as np
import pytest
from course_fixtures import shared_embedder
from fixture_files import make_markdown

from ingest.model import Chunk, Locator
from ingest.pipeline import IngestOptions, ingest_course
from ingest.sentences import candidate_sentences, reads_as_prose
from tutor.answer import Tutor
from tutor.llm import create_backend
from tutor.llm.extractive import pick_sentences
from tutor.prompt import Source
from tutor.settings import load_settings

ANSWER = "Momentum keeps a running velocity of past gradients, which damps oscillation across a ravine."


@pytest.mark.parametrize("line", [
    "Show that momentum with coefficient 0.9 multiplies the effective step size by ten.",
    "Compare with plain gradient descent on the same ravine and report the number of steps.",
    "Exercise 3: compute the output size of the convolution for each of the layers.",
    "Why does momentum damp the oscillation across the ravine so well?",
    "Figure: Information flow in a multi-head attention layer of the network",
    "Algorithm 2: Multi-head attention for c ← 1 to C do",
    "nonlineark@github Deep Learning - Foundations and Concepts March 20, 2025 9 / 63",
    "Sebastian Raschka STAT 453: Intro to Deep Learning and Generative Models SS 2020 14",
    "𝑤𝑘2 2 𝜎′ 𝑧2 1 𝑤 𝑘 𝜎′ and so on",
    "Figure: An example of a recurrent network used for translation z0 w w w w w w w",
    "Dropout in a Nutshell: Dropping Nodes and Weights",
    "This computation can also be nicely visualized with a circuit diagram:",
    "Lets get an intuition for how this works by referring again to the example.",
    "+ + +positional encoding transformer layer",
    "<!-- The first way to do backpropagation is to backpropagate through a non linear function. -->",
    "| 29 | `lab1/Part1_TensorFlow.ipynb` | aamini/introtodeeplearning | MIT | notebook |",
])
def test_lines_that_are_no_answer_are_not_offered(line):
    assert candidate_sentences(f"{ANSWER}\n{line}", "Momentum") == [ANSWER]


@pytest.mark.parametrize("sentence", [
    "Gradient descent updates the parameters against the gradient of the loss.",
    "Note that since the receptive fields overlap, every number in the input may be duplicated.",
    "The second network has 4 + 4 + 1 = 9 neurons and 41 learnable parameters.",
    "We set f(x) = x^2 + 1, so the loss is a parabola with its minimum at zero.",
    "Use dropout when the model overfits, and drop it when it does not.",
    "其中 $h'(s)$ 是 $z$ 对 $s$ 的导数，也就是激活函数的斜率。",
    "Uma variação desse algoritmo é conhecida como descida do gradiente em lote.",
])
def test_explanations_stay_quotable(sentence):
    assert candidate_sentences(sentence, "Optimization") == [sentence]


def test_a_displayed_equation_keeps_its_lead_in():
    found = candidate_sentences("The update rule subtracts the scaled gradient:\n$$w \\leftarrow w - \\eta g$$", "GD")
    assert found == ["The update rule subtracts the scaled gradient:\n\n$$w \\leftarrow w - \\eta g$$\n"]


def test_logistics_table_rows_are_quotable_under_a_logistics_heading_only():
    table = "Assessment Tool (assignments)\t% of Grade\nMidterm Exam (Week 9)\t30%\nTOTAL\t100%"
    assert candidate_sentences(table, "Course > Grading Breakdown") == ["Midterm Exam (Week 9): 30%"]
    assert candidate_sentences("| Midterm exam | 30% |\n|---|---|", "Grades") == ["Midterm exam: 30%"]
    assert candidate_sentences("Canine\t130\nInstrument\t358", "ImageNet Categories") == []


def test_prose_test_on_its_own():
    assert reads_as_prose("Dropout randomly zeroes activations during training.")
    assert not reads_as_prose("−11y2H h1 − h1 H 21h1")
    assert not reads_as_prose("Deep Learning - Foundations and Concepts")


def source(n: int, text: str, heading: str = "Dropout") -> Source:
    chunk = Chunk(id=f"c{n}", text=text, locator=Locator(f"notes/{n}.md", "notes", "Notes", section=heading),
                  ordinal=0, text_hash=f"h{n}", heading=heading)
    return Source(n, chunk, text)


def test_a_sentence_that_says_what_was_asked_is_preferred():
    # Every vector the same: only the preference for a definition (and against "This ...") decides.
    same = lambda texts: np.ones((len(texts), 4), dtype=np.float32) / 2  # noqa: E731
    sources = [source(1, "This is why dropout helps large networks generalise so much better."),
               source(2, "Dropout is a regulariser that randomly zeroes activations while training.")]
    picked = pick_sentences("What is dropout?", sources, same, limit=1)
    assert picked == [(2, "Dropout is a regulariser that randomly zeroes activations while training.")]


def test_an_answer_on_messy_material_quotes_only_its_explanation(tmp_path):
    course = tmp_path / "course"
    make_markdown(course / "notes/momentum.md", f"""# Optimization

## Momentum

{ANSWER}
Show that momentum with coefficient 0.9 multiplies the effective step size by ten.
Exercise 3: compare momentum with plain gradient descent on the ravine function.
𝑤𝑘2 2 𝜎′ 𝑧2 1 𝑤 𝑘 𝜎′ 𝑧 1
Jane Doe, University of Somewhere, Deep Learning 2025, 3 / 20
""")
    ingest_course(course, IngestOptions(data_dir=tmp_path / "data"), embedder=shared_embedder())
    tutor = Tutor.from_settings(load_settings(data_dir=tmp_path / "data"), embedder=shared_embedder(),
                                backend=create_backend("extractive"))
    answer = tutor.ask("What does momentum do?")
    assert "running velocity" in answer.text and answer.citations
    for debris in ("Show that", "Exercise 3", "𝜎", "3 / 20", "University"):
        assert debris not in answer.text
    assert all(c.quote in tutor.index.chunks[tutor.index.row_of[c.chunk_id]].text for c in answer.citations)


def test_math_in_a_sentence_is_quoted_whole():
    """Display math inside a sentence is math, not equation debris; a line wrapped inside math (as PDF
    text is) does not end the sentence; a sentence cut inside math is never quoted (it cannot render)."""
    from ingest.sentences import candidate_sentences

    notation = (r"The four styles are inline $a^2 + b^2$, display $$c^2 = a^2 + b^2$$, parenthesised "
                r"\(e^{i\pi} = -1\) and bracketed \[\sum_{k=1}^{n} k\] in one sentence.")
    assert candidate_sentences(notation) == [notation]
    wrapped = ("The gradient $\\nabla L(\\theta)$ is the vector of partial derivatives $\\partial L / \\partial\n"
               "\\theta_i$ of the loss with respect to each parameter.")
    assert candidate_sentences(wrapped) == [wrapped.replace("\n", " ")]
    assert candidate_sentences("The update subtracts the scaled gradient $\\eta \\nabla L from the weights each step.") == []


@pytest.mark.parametrize("fragment", [
    "Some network architectures (Batch normalization, Skip / Residual",
    "For various types of normalizations, see the discussion in the library's "
    "[layer parameters](http://example.org/wiki/LayerParams#Local_response_normalization).",
    " ".join(["so what people do most of the time is that they compute the average of the gradient"] * 6),
])
def test_fragments_pointers_and_transcript_runs_are_not_quoted(fragment):
    """A line cut from a slide (an unclosed bracket), a sentence that is mostly a link elsewhere, and a
    transcript's unpunctuated run of a hundred words do not read as answers."""
    assert candidate_sentences(fragment) == []
