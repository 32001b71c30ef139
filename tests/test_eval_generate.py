"""Synthetic question sets: only cases whose quote really is in the chunk survive, near-duplicate
questions are dropped, and the result is a valid dataset. The model is a fake registered through the
real `tutor.llm` registry; the course is the mini course of `test_eval_run`."""

from __future__ import annotations

import json

import pytest
from course_fixtures import shared_embedder
from test_eval_run import write_mini_course

from eval.dataset import load_dataset, write_dataset
from eval.generate import generate_cases
from eval.judge_llm import LLMJudge
from eval.judges import JudgeConfig
from ingest.errors import ConfigError
from ingest.pipeline import IngestOptions, ingest_course
from ingest.store import load_index
from tutor.llm import LLMBackend, register_backend

REPLIES = {
    # a faithful reply, its quote re-spaced and re-cased (still the chunk's words)
    "Gradient descent updates": {"question": "What happens when the learning rate is too large?",
                                 "answer": "The loss diverges.", "type": "conceptual",
                                 "quote": "too large a learning rate\n makes the LOSS diverge"},
    # a "quote" the passage does not contain
    "Momentum keeps": {"question": "What does momentum do?", "answer": "It averages gradients.",
                       "quote": "Momentum averages the recent gradients", "type": "factual"},
    # nearly the same question as the first one, from another chunk
    "Weight decay adds": {"question": "What happens if the learning rate is too large?",
                          "answer": "Divergence.", "quote": "squared norm of the weights", "type": "trivia"},
}


class QuestionWriter(LLMBackend):
    name = "question-writer"
    model = "qw-1"

    def stream(self, messages, **opts):
        prompt = messages[-1]["content"]
        for start, reply in REPLIES.items():
            if start in prompt:
                yield "Here you go:\n```json\n" + json.dumps(reply) + "\n```"
                return
        yield "Sorry, I cannot write a question about this."    # the dropout chunk


register_backend("question-writer")(lambda config: QuestionWriter())


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    root = tmp_path_factory.mktemp("generate")
    ingest_course(write_mini_course(root / "course"), IngestOptions(data_dir=root / "data"),
                  embedder=shared_embedder())
    return load_index(root / "data" / "index", "mini")


def test_generate_keeps_verbatim_quotes_and_drops_near_duplicates(index, tmp_path):
    judge = LLMJudge(JudgeConfig(backend="question-writer"))
    report = generate_cases(index, judge, shared_embedder(), count=3, seed=0)
    # four lecture chunks were asked (never the assignment or its solution)
    assert (report.asked, report.quote_not_found, report.unreadable, report.duplicates) == (4, 1, 1, 1)
    (case,) = report.cases
    assert case.question in (REPLIES["Gradient descent updates"]["question"],
                             REPLIES["Weight decay adds"]["question"])
    source = case.gold_sources[0]
    chunk_text = next(c.text for c in index.chunks if c.locator.path == source.path and
                      source.quote.split()[-1] in c.text)
    assert source.path.startswith("book/") and chunk_text
    # an unknown type ("trivia") becomes factual
    from_gd = case.question == REPLIES["Gradient descent updates"]["question"]
    assert case.type == ("conceptual" if from_gd else "factual") and case.id.startswith("gen-")
    assert "cases kept from 4 chunks asked" in report.summary()
    assert load_dataset(write_dataset(tmp_path / "gen.jsonl", report.cases)) == report.cases


def test_generate_needs_a_positive_count(index):
    with pytest.raises(ConfigError, match="--count"):
        generate_cases(index, LLMJudge(JudgeConfig(backend="question-writer")), shared_embedder(), count=0)
