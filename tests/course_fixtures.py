"""Small generated courses and one shared embedder for the ingest, retrieval and answer tests.

The embedder is loaded once per test process (a few seconds) and shared; tests that count embedding
work read its counters before and after.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from fixture_files import make_html, make_markdown, make_notebook, make_pdf, make_pptx, make_vtt

from ingest.embed import Embedder


@lru_cache(maxsize=1)
def shared_embedder() -> Embedder:
    return Embedder()


def write_small_course(root: Path) -> Path:
    """A course with one file of each format, a course.toml with a schedule, and a solution."""
    make_markdown(root / "book/optimization.md", """# Optimization

## Gradient descent

Gradient descent updates the parameters against the gradient: $\\theta_{t+1} = \\theta_t - \\eta \\nabla L(\\theta_t)$.
The learning rate $\\eta$ sets the step size. Too large a rate makes the loss diverge.

## Momentum

Momentum keeps a running velocity of past gradients, which damps oscillation across a ravine and
speeds progress along its floor.
""")
    make_pptx(root / "slides/lecture2.pptx", [
        ("Convolutional networks", "Filters slide over the image\nParameter sharing cuts the weight count",
         "Stress weight sharing."),
        ("Pooling", "Max pooling keeps the largest activation in each window", ""),
    ])
    make_pdf(root / "notes/dropout.pdf", [
        "Front matter of the dropout notes",
        "Dropout randomly zeroes activations during training so units cannot co-adapt.",
        "At test time inverted dropout needs no rescaling because training already scaled by 1/(1-p).",
    ], page_labels_start=1)
    make_notebook(root / "notebooks/gd_demo.ipynb", [
        ("markdown", "# Gradient descent demo"),
        ("code", "x = 9.0\nfor step in range(3):\n    x = x - 0.1 * 2 * x\n    print(x)", "7.2\n5.76\n4.608\n"),
    ])
    make_vtt(root / "transcripts/lecture1.vtt", [
        (0.0, 6.0, "Welcome to the course on deep learning."),
        (6.0, 14.0, "Today we talk about supervised learning and loss functions."),
        (70.0, 80.0, "Cross entropy is the loss we use for classification."),
    ])
    make_html(root / "web/faq.html", "<h1>FAQ</h1><h2 id='office-hours'>Office hours</h2>"
              "<p>Office hours are on Thursdays in room 204.</p>", title="Course FAQ")
    make_markdown(root / "assignments/hw1.md", "# Homework 1\n\n## Problem 1\n\nRun three steps of "
                  "gradient descent on f(x) = x^2 from x0 = 9 with learning rate 0.1 and report x3.\n")
    make_markdown(root / "solutions/hw1.md", "# Homework 1 solution\n\n## Problem 1\n\nThe derivative is "
                  "2x, so each step multiplies x by 0.8: x1 = 7.2, x2 = 5.76, and the final answer "
                  "is x3 = 4.608.\n")
    (root / "course.toml").write_text("""
id = "small"
title = "Small Test Course"
demo_base = "https://colab.example/github/org/repo/blob/main/"
policy = "Use the tutor to learn; no full homework solutions."

[[schedule]]
date = 2026-09-01
lecture = 1
topic = "Optimization"
sources = ["book/optimization*", "notebooks/gd_*", "transcripts/lecture1*"]

[[schedule]]
date = 2026-10-01
lecture = 2
topic = "Convolutional networks"
sources = ["slides/lecture2*"]

[[assignments]]
id = "hw1"
title = "Homework 1: gradient descent by hand"
path = "assignments/hw1.md"
solution = "solutions/hw1.md"
due = 2026-09-15
""", encoding="utf-8")
    return root


def ingest_small_course(root: Path) -> Path:
    """Write the small course under `root/course`, ingest it into `root/data`, return the data dir."""
    from ingest.pipeline import IngestOptions, ingest_course

    ingest_course(write_small_course(root / "course"), IngestOptions(data_dir=root / "data"),
                  embedder=shared_embedder())
    return root / "data"
