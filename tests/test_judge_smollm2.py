"""The `llm` judge with a real model: SmolLM2-135M-Instruct in-process (the `local` backend).

A 135M model is a weak judge, so these tests check the plumbing with real replies, not the model's
wisdom: the rubric prompt goes out through the tutor's backend, the reply is read into a verdict or
counted as unreadable (never guessed), and the verdict cache answers a repeated question without
asking the model again. The default suite runs one short verdict; the `slow` test grades a small
batch and records how many verdicts came back readable.

Needs the prepared model (`tutor model prepare smollm2`, which the Makefile runs); skipped without it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from eval.judge_base import JudgeConfig, Verdict
from eval.judge_llm import LLMJudge
from tutor.llm import BackendConfig, create_backend

MODEL = Path(__file__).resolve().parents[1] / "data" / "models" / "smollm2-135m-instruct"
PASSAGE = "Momentum keeps a running velocity of past gradients, which damps oscillation across a ravine."

pytestmark = pytest.mark.skipif(not (MODEL / "config.json").is_file(),
                                reason="SmolLM2 is not prepared; run `tutor model prepare smollm2`")


def smollm2_judge(tmp_path, max_tokens: int) -> LLMJudge:
    config = JudgeConfig(backend="local", model="smollm2", cache_path=tmp_path / "cache.sqlite", workers=1,
                         max_tokens=max_tokens)
    return LLMJudge(config, backend=create_backend("local", BackendConfig(model_path=str(MODEL))))


def check_verdict(verdict: Verdict) -> None:
    """A readable verdict has a 0/1 score matching `passed`; an unreadable one has no score and says so."""
    if verdict.score is None:
        assert verdict.passed is None and verdict.reason.startswith("unreadable judge reply")
    else:
        assert verdict.score in (0.0, 1.0) and verdict.passed is (verdict.score == 1.0)


def test_smollm2_support_verdict_is_read_and_cached(tmp_path):
    judge = smollm2_judge(tmp_path, max_tokens=24)
    pair = ("Momentum damps oscillation across a ravine.", PASSAGE)
    first = judge.support([pair])[0]
    check_verdict(first)
    assert judge.calls == 1
    again = smollm2_judge(tmp_path, max_tokens=24)  # a new judge on the same cache file: nothing is asked
    assert again.support([pair])[0] == first and again.calls == 0
    assert again.describe()["model"] == "smollm2-135m-instruct"  # the backend names the model by its folder


@pytest.mark.slow
def test_smollm2_grades_a_small_batch(tmp_path):
    judge = smollm2_judge(tmp_path, max_tokens=120)
    support = judge.support([
        ("Momentum damps oscillation across a ravine.", PASSAGE),
        ("Dropout zeroes activations at test time.", PASSAGE),
    ])
    correctness = judge.correctness([
        ("Why does momentum help?", "It keeps a velocity of past gradients, which damps oscillation.",
         "Momentum accumulates a velocity of past gradients; this damps oscillation and speeds progress."),
        ("Why does momentum help?", "Bread needs yeast.", "Momentum accumulates a velocity of past gradients."),
    ])
    for verdict in support + correctness:
        check_verdict(verdict)
    assert judge.calls == 4
    readable = sum(v.score is not None for v in support + correctness)
    print(f"SmolLM2 judge: {readable} of 4 verdicts readable: {[v.score for v in support + correctness]}")
