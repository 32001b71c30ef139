"""Judges: reply parsing that survives sloppy models, the llm judge's cache (with a fake model
registered through the real `tutor.llm` registry), and the offline judges' verdicts."""

from __future__ import annotations

import re
import threading

import pytest
from course_fixtures import shared_embedder

from eval.judge_llm import (
    JudgeReplyError,
    LLMJudge,
    correctness_verdict,
    parse_judge_reply,
    support_verdict,
)
from eval.judges import JudgeConfig, create_judge, judge_names, resolve_judge_name
from ingest.errors import ConfigError
from tutor.llm import LLMBackend, register_backend


@pytest.mark.parametrize("reply, expected", [
    ('{"score": 4, "reasoning": "fine"}', {"score": 4, "reasoning": "fine"}),
    ('```json\n{"score": 3, "reasoning": "ok"}\n```', {"score": 3, "reasoning": "ok"}),
    ('Sure! Here is my verdict:\n{"supported": true, "reasoning": "the passage says so"}\nHope it helps {}',
     {"supported": True, "reasoning": "the passage says so"}),
    ("{'score': 5, 'reasoning': 'complete',}", {"score": 5, "reasoning": "complete"}),
    ('{"supported": True, "reasoning": None}', {"supported": True, "reasoning": None}),
    ('Reasoning first. {not json} then {"score": 2}', {"score": 2}),
    ('score: 4\nreasoning: "partly right", but verbose', {"score": 4.0, "reasoning": "partly right"}),
    ('{"score": 5, "reasoning": "cut off by max_tok', {"score": 5.0}),
    ("Supported: yes", {"supported": True}),
    ("{}{}", {}),
])
def test_parse_judge_reply_survives_malformed_json(reply, expected):
    assert parse_judge_reply(reply) == expected


@pytest.mark.parametrize("reply", ["", "I cannot judge this.", "[1, 2, 3]"])
def test_parse_judge_reply_without_a_verdict(reply):
    with pytest.raises(JudgeReplyError):
        parse_judge_reply(reply)


def test_verdicts_map_the_rubric_and_keep_unreadable_replies_unscored():
    assert correctness_verdict('{"score": 5}').score == 1.0
    assert correctness_verdict('{"score": 1}').score == 0.0
    assert correctness_verdict('{"score": 3, "reasoning": "half"}').score == 0.5
    assert correctness_verdict('{"score": 9}').score == 1.0          # clamped to the scale
    assert correctness_verdict("no idea").score is None
    assert correctness_verdict('{"reasoning": "no score"}').score is None
    assert support_verdict('{"supported": "no"}').passed is False
    assert support_verdict('{"supported": "yes"}').score == 1.0
    assert support_verdict("what?").passed is None


class RubricBackend(LLMBackend):
    """A stand-in judge model: supports a sentence when the passage holds all of its words, and
    grades an answer 5 when it contains the reference, 2 otherwise; replies in assorted sloppy
    formats, and unreadably for answers containing 'gibberish'."""

    name = "rubric-fake"
    model = "rubric-1"
    calls = 0
    lock = threading.Lock()

    def stream(self, messages, **opts):
        with RubricBackend.lock:
            RubricBackend.calls += 1
        prompt = messages[-1]["content"]
        if "Sentence:" in prompt:
            passage = prompt.split("Passage:\n", 1)[1].split("\n\nSentence:")[0]
            sentence = prompt.split("Sentence:\n", 1)[1].split("\n\n")[0]
            ok = set(re.findall(r"\w+", sentence.lower())) <= set(re.findall(r"\w+", passage.lower()))
            yield f'Verdict below.\n```json\n{{"supported": {str(ok).lower()}, "reasoning": "word check"}}\n```'
            return
        answer = prompt.split("Answer to grade:\n", 1)[1].split("\n\nScore on")[0]
        reference = prompt.split("Reference answer:\n", 1)[1].split("\n\nAnswer to grade")[0]
        if "gibberish" in answer:
            yield "I would rather not say."
        elif reference.lower() in answer.lower():
            yield "{'score': 5, 'reasoning': 'contains the reference',}"
        else:
            yield '{"score": 2, "reasoning": "misses the point"}'


register_backend("rubric-fake")(lambda config: RubricBackend())


@pytest.fixture
def judge_config(tmp_path):
    RubricBackend.calls = 0
    return JudgeConfig(backend="rubric-fake", cache_path=tmp_path / "judge-cache.sqlite", workers=3)


def test_llm_judge_verdicts_through_the_registry(judge_config):
    judge = create_judge("llm", judge_config)
    verdicts = judge.correctness([
        ("What is dropout?", "Dropout zeroes random units.", "zeroes random units"),
        ("What is dropout?", "A kind of pooling.", "zeroes random units"),
        ("What is dropout?", "gibberish", "zeroes random units"),
    ])
    assert [v.score for v in verdicts] == [1.0, 0.25, None]
    assert verdicts[0].reason == "contains the reference"
    support = judge.support([("momentum damps oscillation", "Momentum damps oscillation in ravines."),
                             ("momentum needs no learning rate", "Momentum damps oscillation in ravines.")])
    assert [v.passed for v in support] == [True, False]
    assert judge.calls == 5 and RubricBackend.calls == 5
    assert judge.describe()["model"] == "rubric-1"


def test_llm_judge_caches_replies_across_instances(judge_config):
    items = [("Q?", "an answer", "an answer"), ("Q2?", "other", "reference")]
    first = create_judge("llm", judge_config)
    scores = [v.score for v in first.correctness(items)]
    assert first.calls == 2
    again = create_judge("llm", judge_config)          # a resumed run: same cache file
    assert [v.score for v in again.correctness(items)] == scores
    assert again.calls == 0 and RubricBackend.calls == 2
    changed = again.correctness([("Q?", "an answer, reworded", "an answer")])
    assert again.calls == 1 and changed[0].score == 1.0


def test_llm_judge_without_a_server_says_how_to_configure_one():
    with pytest.raises(ConfigError, match="--judge-base-url"):
        LLMJudge(JudgeConfig())


def test_judge_registry_and_auto():
    assert {"embedding", "lexical", "llm"} <= set(judge_names())
    with pytest.raises(ConfigError, match="choose one of"):
        create_judge("psychic")
    assert resolve_judge_name("auto", JudgeConfig()) == "embedding"
    assert resolve_judge_name("auto", JudgeConfig(base_url="http://127.0.0.1:1/v1")) == "llm"
    assert resolve_judge_name("lexical", JudgeConfig(base_url="http://x/v1")) == "lexical"
    with pytest.raises(ConfigError, match="workers"):
        JudgeConfig(workers=0)


def test_lexical_judge():
    judge = create_judge("lexical")
    support = judge.support([
        ("Dropout zeroes activations at random.", "During training dropout zeroes random activations."),
        ("Momentum damps oscillation.", "During training dropout zeroes random activations."),
        ("", "anything"),
    ])
    assert [v.passed for v in support] == [True, False, False]
    assert judge.correctness([("q", "the cat sat", "the cat sat")])[0].score == 1.0


def test_embedding_judge_prefers_the_passage_that_says_it():
    judge = create_judge("embedding", embedder=shared_embedder())
    sentence = "Momentum keeps a running velocity of past gradients."
    on_topic = "Momentum accumulates a velocity from previous gradients, damping oscillation."
    off_topic = "Office hours are on Thursdays in room 204."
    support = judge.support([(sentence, on_topic), (sentence, off_topic), ("", on_topic)])
    assert support[0].passed and not support[1].passed
    assert support[0].score > support[1].score
    assert support[2].score == 0.0
    right, wrong = judge.correctness([("q", on_topic, sentence), ("q", off_topic, sentence)])
    assert right.score > wrong.score
    # a passage about several things supports a sentence restating one of them
    mixed = f"{off_topic} Convolutions share weights across positions. {sentence} Pooling keeps the maximum."
    (verdict,) = judge.support([(sentence, mixed)])
    assert verdict.passed and verdict.score == pytest.approx(1.0, abs=1e-5)
