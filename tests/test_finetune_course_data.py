"""Course-derived fine-tuning examples and the eval set held out of them.

Oracles: a `course` example's reply is made of sentences that occur in the passage its `[n]` names,
among the sources of its own prompt; an example paraphrasing an eval question, or citing a passage
that holds an eval gold quote, is not trained on, and the manifest names the eval file by its sha256.
"""

from __future__ import annotations

import hashlib
import json
import re

import pytest
from course_fixtures import shared_embedder, write_small_course

from ingest.pipeline import IngestOptions, ingest_course
from ingest.store import load_index
from serving.course_examples import cite_sentence, course_question, prose_sentences
from serving.finetune_data import DataOptions, build_finetune_data
from serving.holdout import EvalHoldout

REGULARIZATION = """# Regularization

## Weight decay

**Weight decay** is a penalty on the squared size of the weights, added to the training loss.
It pulls every weight a little towards zero at each step, so large weights must earn their keep.
Typical strengths are between one ten-thousandth and one hundredth of the loss scale.

## Early stopping

Early stopping ends training when the validation loss has not improved for several epochs.
It keeps the parameters from the best epoch rather than the last one, which acts as a regularizer.
"""


def markers(text: str) -> list[int]:
    return [int(n) for group in re.findall(r"\[(\d+(?:\s*,\s*\d+)*)\]", text) for n in group.split(",")]


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    root = tmp_path_factory.mktemp("course-data")
    course_dir = write_small_course(root / "course")
    (course_dir / "book" / "regularization.md").write_text(REGULARIZATION, encoding="utf-8")
    ingest_course(course_dir, IngestOptions(data_dir=root / "data"), embedder=shared_embedder())
    return {"root": root, "index": load_index(root / "data" / "index", "small")}


@pytest.fixture(scope="module")
def data(course):
    return build_finetune_data(course["index"], shared_embedder(), options=DataOptions(top_k=3))


def test_course_examples_quote_the_passage_their_marker_names(data, course):
    chunks = {c.id: c for c in course["index"].chunks}
    examples = [e for e in data.train + data.validation if e.origin == "course"]
    assert {e.question for e in examples} >= {"What is weight decay?", "Can you explain early stopping?"}
    for example in examples:
        numbers = markers(example.reply)
        assert numbers and len(set(numbers)) == 1, example.reply
        passage = chunks[example.sources[numbers[0] - 1]].text
        for sentence in re.split(r"(?<=\.)\s+", example.reply):
            plain = re.sub(r"\s\[\d+\](?=\.$)", "", sentence)
            assert " ".join(plain.split()) in " ".join(passage.split()), (plain, passage)
    weight_decay = next(e for e in examples if e.question == "What is weight decay?")
    assert weight_decay.reply.startswith("**Weight decay** is a penalty")
    assert data.counts["course"] == len(examples) and data.holdout == {}


def test_eval_questions_and_gold_passages_are_kept_out_and_recorded(course, data, tmp_path):
    dataset = tmp_path / "eval.jsonl"
    cases = [
        {"id": "c1", "question": "What's weight decay?", "reference_answer": "A penalty.",
         "gold_sources": [], "type": "factual", "difficulty": "easy"},
        {"id": "c2", "question": "Why stop training before the last epoch?", "reference_answer": "...",
         "gold_sources": [{"path": "book/regularization.md",
                           "quote": "Early stopping ends training when the validation loss has not improved"}],
         "type": "conceptual", "difficulty": "easy"},
    ]
    dataset.write_text("".join(json.dumps(c) + "\n" for c in cases), encoding="utf-8")
    holdout = EvalHoldout.from_dataset(dataset, shared_embedder())
    held = build_finetune_data(course["index"], shared_embedder(), options=DataOptions(top_k=3), holdout=holdout)
    questions = {e.question for e in held.train + held.validation}
    before = {e.question for e in data.train + data.validation}
    assert before - questions == {"What is weight decay?", "Can you explain early stopping?"}
    assert held.holdout == {"path": str(dataset), "sha256": hashlib.sha256(dataset.read_bytes()).hexdigest(),
                            "cases": 2, "question_similarity": 0.8,
                            "excluded": {"question": 1, "source": 1, "total": 2}}
    assert held.manifest()["holdout"] == held.holdout and held.sha256 != data.sha256


@pytest.mark.parametrize("heading, text, question", [
    ("Regularization > Weight decay", "**Weight decay** is a penalty on the weights.", "What is weight decay?"),
    ("Chapter 10: Attention > Why divide by the square root of d_k?", "x", "Why divide by the square root of d_k?"),
    ("Worked example: a 3x3 filter on a 4x4 input", "x", "Can you walk me through the worked example on a 3x3 "
                                                         "filter on a 4x4 input?"),
    ("Chapter 4 > Common mistakes", "x", None),
    ("Chapter 4 > The update", "x", None),
    ("Slides > Why divide by $\\sqrt{d_k}$?", "x", None),
])
def test_course_question_from_heading_or_definition(heading, text, question):
    assert course_question(heading, text, "seed") == question


def test_course_question_keeps_acronyms_and_inner_capitals():
    asked = course_question("Recurrent networks > LSTM and GRU cells", "x", "seed")
    assert asked.endswith("LSTM and GRU cells?")
    assert course_question("LoRA > LoRA parameter count: a worked example", "x", "s").endswith("LoRA parameter count?")


def test_prose_sentences_skip_code_tables_formulas_and_lead_ins():
    text = ("Dropout zeroes each activation with probability p during training.\n"
            "x = torch.rand(n)  # a code line that ends with a stop.\n"
            "| a | b |\n"
            "The loss is:\n"
            "$$L = \\sum_i \\ell_i$$\n"
            "$a$ $b$ $c$ $d$ $e$ $f$ are all symbols here.\n"
            "At test time inverted dropout needs no rescaling at\nall, because training already rescaled.")
    assert prose_sentences(text) == [
        "Dropout zeroes each activation with probability p during training.",
        "At test time inverted dropout needs no rescaling at all, because training already rescaled."]
    assert cite_sentence("The gap shows overfitting.", 2) == "The gap shows overfitting [2]."
    assert cite_sentence("No stop at the end", 1) == "No stop at the end [1]."
