"""Loaders on what real course files carry: each cleaning rule on a small generated file, then every
file of the third-party corpus in ../shared/dev/real-courses (skipped when that folder is absent).

The generated files are written here (tests/fixture_files.py); the corpus is only read, never copied.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from ingest.errors import LoaderError
from ingest.loaders import load_file
from ingest.loaders.clean import drop_glyph_runs
from ingest.model import LoadOptions, SourceFile
from fixture_files import (
    make_html, make_markdown, make_notebook, make_pdf, make_pptx, make_sbv, make_scanned_pdf,
)

REAL = Path(__file__).resolve().parents[2] / "shared" / "dev" / "real-courses"
NEEDS_REAL = pytest.mark.skipif(not REAL.is_dir(), reason=f"the real-course corpus is not present ({REAL})")
# What no cleaned section may still hold: equation-editor blobs, base64, Liquid, HTML, kramdown
# math delimiters, book directives, private-use glyphs, mathematical alphanumerics, ligatures.
DEBRIS = re.compile(
    r"latexit|[A-Za-z0-9+/]{80,}|\{%|\{\{|<(?:div|svg|span|img|center|iframe)\b|\\\\\(|data:image|"
    r":(?:label|eqref|cite|numref):`|[\x00\ue000-\uf8ff\U0001D400-\U0001D7FF\ufb00-\ufb06]|<!--"
)


def load(root: Path, path: Path, kind: str = "notes", **options):
    rel = path.relative_to(root).as_posix()
    return load_file(SourceFile(path=path, rel=rel, kind=kind, options=LoadOptions(**options)))


def load_error(root: Path, path: Path, **options) -> str:
    with pytest.raises(LoaderError) as caught:
        load(root, path, **options)
    assert "\n" not in str(caught.value)
    return str(caught.value)


# --- Unicode ---------------------------------------------------------------------------------


def test_math_alphanumerics_and_ligatures_become_plain_letters_but_superscripts_stay(tmp_path):
    path = make_markdown(tmp_path / "a.md", "# Weights\n\nThe weight 𝑤𝑘 is ﬁne-tuned; cost O(n²) ＡＢ.\n")
    text = load(tmp_path, path).sections[0].text
    assert text == "The weight wk is fine-tuned; cost O(n²) AB."


def test_pptx_text_is_normalised_too(tmp_path):
    path = make_pptx(tmp_path / "d.pptx", [("Eﬃcient 𝜎", "𝐱 ↦ 𝑓(𝐱)", "")])
    section = load(tmp_path, path).sections[0]
    assert (section.locator.section, section.text) == ("Efficient σ", "x ↦ f(x)")


# --- PDF: running lines, residue, reveals ----------------------------------------------------


def test_running_header_and_footer_lines_are_dropped_per_document(tmp_path):
    pages = [
        f"Jane Doe  Deep Learning  Spring 2024  {n}\n{title}\n{body}\nState University - CS 101\n{n} / 6"
        for n, (title, body) in enumerate([
            ("Gradients", "The slope of the loss."), ("Momentum", "A running average."),
            ("Adam", "Per-weight step sizes."), ("Dropout", "Random units are zeroed."),
            ("Batch norm", "Normalise each batch."), ("Summary", "What we covered."),
        ], start=1)
    ]
    pages[2] = "Part II\n" + pages[2]  # a line on two pages of six is content, not a running line
    pages[3] = "Part II\n" + pages[3]
    path = make_pdf(tmp_path / "lecture.pdf", pages)

    sections = load(tmp_path, path).sections

    assert [s.text for s in sections][:3] == [
        "Gradients\nThe slope of the loss.", "Momentum\nA running average.", "Part II\nAdam\nPer-weight step sizes.",
    ]
    assert [s.locator.section for s in sections][:2] == ["Gradients", "Momentum"]
    assert not any("Jane Doe" in s.text or "University" in s.text or " / 6" in s.text for s in sections)


def test_a_short_pdf_keeps_its_repeated_lines(tmp_path):
    path = make_pdf(tmp_path / "two.pdf", ["Same line\nOne", "Same line\nTwo"])
    assert [s.text for s in load(tmp_path, path).sections] == ["Same line\nOne", "Same line\nTwo"]


def test_latexit_blobs_and_glyph_runs_are_removed_from_pdf_text(tmp_path):
    blob = '<latexit sha1_base64="q8Zk3Yf0">AAAB7nicbVBNS8NAEJ3Ur1q/qh69LBbBU0mKoMeiF48V7Ae0oWy2m3bpZhN2J0IJ/RFe' \
           "PCji1d/jzX/jts1BWx8MPN6bYWZekEhh0HW/ncLG5tb2TnG3tLd/cHhUPj5pmTjVjDdZLGPdCaj</latexit>"
    pages = [f"Self-attention\nweights {blob} sum to one\nw k 2 2 s z 2 1\nso x = y + 1 holds", "Next slide"]
    path = make_pdf(tmp_path / "eq.pdf", pages)

    text = load(tmp_path, path).sections[0].text

    assert text == "Self-attention\nweights sum to one\nso x = y + 1 holds"


def test_glyph_runs_keep_words_expressions_and_blank_lines():
    assert drop_glyph_runs("a cat\n\n1 2 X k then\nx = y + 1") == "a cat\n\nthen\nx = y + 1"


def test_reveal_pages_collapse_to_the_fullest_keeping_its_page_number(tmp_path):
    pages = ["Plan\n- data", "Plan\n- data\n- model", "Plan\n- data\n- model\n- loss", "Data\nMNIST digits",
             "", "Data\nMNIST digits and labels"]
    path = make_pdf(tmp_path / "reveal.pdf", pages, page_labels_start=0)

    sections = load(tmp_path, path).sections

    assert [(s.locator.page, s.locator.page_label) for s in sections] == [(3, "3"), (6, "6")]
    assert sections[0].text == "Plan\n- data\n- model\n- loss"


def test_pptx_build_slides_collapse_to_the_fullest(tmp_path):
    slides = [("Plan", "Data", ""), ("Plan", "Data\nModel", ""), ("Plan", "Data\nModel", "Say why"), ("Next", "x", "")]
    path = make_pptx(tmp_path / "b.pptx", slides)
    assert [s.locator.slide for s in load(tmp_path, path).sections] == [3, 4]


# --- PDF without a text layer ----------------------------------------------------------------


def test_scanned_pdf_needs_ocr_and_says_how_to_turn_it_on(tmp_path):
    path = make_scanned_pdf(tmp_path / "scan.pdf", ["Gradient descent"])
    message = load_error(tmp_path, path)
    assert "needs OCR" in message and "ocr = true" in message and "TUTOR_OCR=1" in message


def test_scanned_pdf_with_a_markdown_source_beside_it_names_the_stand_in(tmp_path):
    path = make_scanned_pdf(tmp_path / "deck.pdf", ["Gradient descent"])
    make_markdown(tmp_path / "deck.md", "# Gradient descent\n\nSteps downhill.\n")
    message = load_error(tmp_path, path, ocr=True)
    assert "deck.md beside it stands in for it" in message


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="Debian's tesseract-ocr is not installed")
def test_scanned_pdf_is_read_with_ocr_when_it_is_on(tmp_path):
    path = make_scanned_pdf(tmp_path / "scan.pdf", ["Gradient descent\nTakes small steps downhill", "Momentum"])
    sections = load(tmp_path, path, ocr=True).sections
    assert [(s.locator.page, s.text) for s in sections] == [
        (1, "Gradient descent\nTakes small steps downhill"), (2, "Momentum"),
    ]


def test_a_pdf_with_some_text_loads_without_ocr(tmp_path):
    path = make_pdf(tmp_path / "sparse.pdf", ["Attention", "", "", "Transformer"])
    assert [s.locator.page for s in load(tmp_path, path).sections] == [1, 4]


# --- HTML slide decks ------------------------------------------------------------------------

REMARK = """<!DOCTYPE html><html><head><title>Lectures</title></head><body><textarea id="source">
layout: true
.footer[Course footer]
---
class: center, middle

# Backpropagation

Jane Doe

.affiliations[
  ![logo](images/logo.png)
]
---
# Chain rule

The derivative of a composition
--

is a product of derivatives
.center[<img src="images/chain.svg" />]

???
Draw the graph on the board first.
---
# Summary

- gradients flow backwards
</textarea><script src="remark.min.js"></script></body></html>
"""


def test_remark_deck_is_one_section_per_slide_with_notes(tmp_path):
    path = tmp_path / "slides" / "index.html"
    path.parent.mkdir()
    path.write_text(REMARK, encoding="utf-8")

    document = load(tmp_path, path, kind="slides")

    assert document.title == "Backpropagation"
    assert [(s.locator.slide, s.locator.section, s.locator.url) for s in document.sections] == [
        (1, "Backpropagation", "slides/index.html#1"),
        (3, "Chain rule", "slides/index.html#3"),  # the reveal step counts, as remark counts it
        (4, "Summary", "slides/index.html#4"),
    ]
    assert document.sections[0].text == "Jane Doe"
    assert document.sections[1].text == ("The derivative of a composition\n\nis a product of derivatives\n\n"
                                         "Notes: Draw the graph on the board first.")
    assert not any("footer" in s.text or "class:" in s.text for s in document.sections)


REVEAL = """
<div class="reveal"><div class="slides">
  <section><h1>Attention</h1><p>Queries, keys and values.</p><aside class="notes">Start slowly.</aside></section>
  <section>
    <section><h2>Heads</h2><ul><li>one</li><li>many</li></ul></section>
    <section data-markdown><textarea data-template>
## Masking
Hide the future.
Note: causal only
    </textarea></section>
  </section>
</div></div>
"""


def test_reveal_deck_is_one_section_per_slide_with_notes(tmp_path):
    path = make_html(tmp_path / "deck.html", REVEAL, title="Transformers")
    sections = load(tmp_path, path, kind="slides").sections
    assert [(s.locator.slide, s.locator.section, s.locator.url, s.text) for s in sections] == [
        (1, "Attention", "deck.html#/0", "Queries, keys and values.\n\nNotes: Start slowly."),
        (2, "Heads", "deck.html#/1/0", "one\nmany"),
        (3, "Masking", "deck.html#/1/1", "Hide the future.\n\nNotes: causal only"),
    ]


def test_jekyll_html_page_loses_its_front_matter_and_liquid(tmp_path):
    path = tmp_path / "index.html"
    path.write_text("---\nlayout: default\ntitle: Notes index\n---\n<p>Read {{ site.title }} first.</p>"
                    "{% for post in site.posts %}<p>Module one</p>{% endfor %}", encoding="utf-8")
    document = load(tmp_path, path)
    assert document.title == "Notes index"
    assert document.sections[0].text == "Read first.\nModule one"


# --- Markdown from sites and books -----------------------------------------------------------

JEKYLL = r"""---
layout: page
permalink: /backprop/
---
<a name='intro'></a>

## Introduction

We are given a function \\(f(x)\\) and want \\(\nabla f\\):

\\[
\frac{df}{dx} = \lim_{h \to 0} \frac{f(x+h) - f(x)}{h}
\\]

{% highlight python %}
x = -2; y = 5  # {{ not liquid inside code }}
{% endhighlight %}

<div class="fig figcenter">
  <svg viewbox="0 0 10 10"><text x="1" y="1">-4</text></svg>
  <img src="{{site.baseurl}}/assets/relu.jpeg" alt="relu plot">
  <div class="figcaption"><b>Left:</b> ReLU is zero when x &lt; 0.</div>
</div>

Here <img src="data:image/png;base64,iVBORw0KGgo" alt="x"> is the input ![plot](data:image/png;base64,iVBORw0KG).
Keep `<div>` and `{% raw %}` in inline code.
"""


def test_jekyll_markdown_is_cleaned_to_what_a_reader_sees(tmp_path):
    path = make_markdown(tmp_path / "backprop.md", JEKYLL)
    text = load(tmp_path, path).sections[0].text
    assert text == (
        "We are given a function $f(x)$ and want $\\nabla f$:\n\n"
        "$$\\frac{df}{dx} = \\lim_{h \\to 0} \\frac{f(x+h) - f(x)}{h}$$\n\n"
        "```python\nx = -2; y = 5  # {{ not liquid inside code }}\n```\n\n"
        "Left: ReLU is zero when x < 0.\n\n"
        "Here x is the input .\nKeep `<div>` and `{% raw %}` in inline code."
    )


BOOK = """# Linear regression
:label:`sec_linreg`

As :numref:`fig_line` shows, minimise (:eqref:`eq_loss`) as in :cite:`Legendre.1805`.

```{.python .input}
from mxnet import np
```

```{.python .input}
#@tab pytorch
import torch
```

```{.python .input}
#@tab tensorflow, jax
import tensorflow as tf
```

```{.python .input}
#@tab all
def loss(y_hat, y): return (y_hat - y) ** 2
```

:begin_tab:`pytorch`
PyTorch computes gradients with autograd.
:end_tab:

:begin_tab:`tensorflow`
TensorFlow records them on a tape.
:end_tab:

.. tab:: PyTorch

   Call backward().

.. tab:: TensorFlow

   Use GradientTape.

Framework-neutral closing text.
"""


@pytest.mark.parametrize("framework, kept, dropped", [
    ("pytorch", ["import torch", "autograd", "Call backward()."], ["tensorflow", "mxnet", "tape", "GradientTape"]),
    ("tensorflow", ["import tensorflow as tf", "on a tape", "Use GradientTape."], ["torch", "mxnet", "autograd"]),
    ("mxnet", ["from mxnet import np"], ["torch", "tensorflow"]),
])
def test_book_directives_go_and_code_tabs_keep_one_framework(tmp_path, framework, kept, dropped):
    path = make_markdown(tmp_path / "linreg.md", BOOK)
    text = load(tmp_path, path, code_framework=framework).sections[0].text
    assert "As shows, minimise () as in ." in text and ":label:" not in text
    assert "def loss(y_hat, y)" in text and text.endswith("Framework-neutral closing text.")
    assert all(piece in text for piece in kept), text
    assert not any(piece in text.lower() for piece in dropped), text


def test_an_unknown_code_framework_is_refused_by_name():
    with pytest.raises(ValueError, match="code_framework 'caffe' is not one of: pytorch, tensorflow"):
        LoadOptions(code_framework="caffe")


# --- Notebooks -------------------------------------------------------------------------------


def test_notebook_markdown_loses_embedded_images_and_other_frameworks_code(tmp_path):
    blob = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg" * 3
    cells = [
        ("markdown", f"# Tensors\n\nA tensor ![diagram](data:image/png;base64,{blob}) holds numbers."),
        ("markdown", "Shapes ![cell.png](attachment:cell.png) matter.\n\n<img src=\"data:image/png;base64,abc\">"),
        ("code", "#@tab pytorch\nx = torch.ones(3)"),
        ("code", "#@tab tensorflow\nx = tf.ones(3)"),
    ]
    path = make_notebook(tmp_path / "t.ipynb", cells)
    sections = load(tmp_path, path, kind="notebook").sections
    assert [(s.locator.cell, s.text) for s in sections] == [
        (0, "# Tensors\n\nA tensor holds numbers."), (1, "Shapes matter."), (2, "x = torch.ones(3)"),
    ]


# --- SBV transcripts -------------------------------------------------------------------------


def test_sbv_cues_are_grouped_with_their_start_times(tmp_path):
    cues = [(1.5, 20.0, "today we talk about"), (20.0, 50.0, "back prop"), (50.0, 70.0, "the chain rule"),
            (3700.25, 3710.0, "questions")]
    path = make_sbv(tmp_path / "lecture02.sbv", cues)
    sections = load(tmp_path, path, kind="transcript").sections
    assert [(s.locator.start_s, s.text, s.locator.url) for s in sections] == [
        (1.5, "today we talk about back prop", "lecture02.sbv#t=1"),
        (50.0, "the chain rule", "lecture02.sbv#t=50"),
        (3700.25, "questions", "lecture02.sbv#t=3700"),
    ]
    assert sections[2].locator.label() == "lecture02.sbv, at 61:40 § 1:01:40"


def test_malformed_sbv_is_refused_with_the_expected_layout(tmp_path):
    path = tmp_path / "bad.sbv"
    path.write_text("00:01 --> 00:02\nhello\n", encoding="utf-8")
    assert "h:mm:ss.mmm,h:mm:ss.mmm" in load_error(tmp_path, path)


# --- The real corpus -------------------------------------------------------------------------

REAL_FILES = sorted(
    p.relative_to(REAL).as_posix() for p in REAL.rglob("*")
    if p.is_file() and p.suffix in (".pdf", ".pptx", ".md", ".html", ".ipynb", ".sbv") and p.name != "SOURCES.md"
) if REAL.is_dir() else []


@NEEDS_REAL
@pytest.mark.parametrize("rel", REAL_FILES)
def test_every_real_file_loads_clean(rel):
    document = load(REAL, REAL / rel)
    assert document.sections
    for section in document.sections:
        assert section.text and section.text == section.text.strip()
        assert not DEBRIS.search(section.text), (section.locator.label(), DEBRIS.search(section.text))


@NEEDS_REAL
def test_real_corpus_holds_every_format_it_is_meant_to():
    assert {Path(rel).suffix for rel in REAL_FILES} == {".pdf", ".pptx", ".md", ".html", ".ipynb", ".sbv"}


@NEEDS_REAL
@pytest.mark.parametrize("rel, running", [
    ("rasbt-stat453-ss20/L09-regularization/L09_regularization__slides.pdf", "Sebastian Raschka STAT 453"),
    ("dlfc-beamer/pdf/ch08.pdf", "nonlineark@github Deep Learning"),
])
def test_real_running_headers_are_gone_and_page_titles_name_pages(rel, running):
    sections = load(REAL, REAL / rel).sections
    assert not any(running in " ".join(s.text.split()) for s in sections)
    assert not any(running in (s.locator.section or "") for s in sections)


@NEEDS_REAL
def test_real_beamer_overlays_collapse_to_their_fullest_pages():
    sections = load(REAL, REAL / "mlime-12amostra/presentation/src/pdf/PrimeirosPassosDL.pdf").sections
    pages = [s.locator.page for s in sections]
    assert 80 <= len(pages) < 135 and pages == sorted(pages)


@NEEDS_REAL
def test_real_remark_deck_has_slides_with_presenter_notes():
    sections = load(REAL, REAL / "m2ds-lectures-labs/slides/02_backprop/index.html").sections
    assert len(sections) >= 20
    assert sections[0].locator.section == "Neural networks and Backpropagation"
    assert sum("Notes: " in s.text for s in sections) >= 5


@NEEDS_REAL
def test_real_sbv_transcript_is_timed():
    sections = load(REAL, REAL / "nyu-dlsp20/docs/en/week02/lecture02.sbv").sections
    starts = [s.locator.start_s for s in sections]
    assert starts[0] == 0.0 and starts == sorted(starts) and starts[-1] > 3000
