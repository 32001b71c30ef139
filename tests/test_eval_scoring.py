"""Per-case scoring and the run's metrics, from hand-written result rows and the lexical judge."""

from __future__ import annotations

import pytest

from eval.dataset import EvalCase, GoldSource
from eval.judges import create_judge
from eval.report import case_quality
from eval.scoring import CourseMaterial, aggregate, breakdown, score_results

SOLUTION = "The derivative is 2x, so each step multiplies x by 0.8: x1 = 7.2, x2 = 5.76, and x3 = 4.608."
MATERIAL = CourseMaterial(solutions=[SOLUTION], public="Run three steps of gradient descent from x0 = 9.")
DROPOUT = "Dropout randomly zeroes activations during training so that units cannot co-adapt."
DECAY = "Weight decay adds the squared norm of the weights to the loss."


def answer(text, refused=None, total=1.0, citations=()):
    return {"text": text, "refused": refused, "timings": {"total_s": total, "first_token_s": total / 2},
            "citations": [{"n": n, "locator": {"path": "book/reg.md"}, "title": f"book/reg.md #{n}"}
                          for n in citations]}


CASES = [
    EvalCase("drop", "What does dropout do?", "factual", "It zeroes random activations so units cannot co-adapt.",
             (GoldSource("book/reg.md", "randomly zeroes activations"),), "easy"),
    EvalCase("mixed", "Dropout and weight decay?", "comparison", "Dropout zeroes units; decay shrinks weights.",
             (GoldSource("book/reg.md", "squared norm"),), "hard"),
    EvalCase("cake", "Best cake recipe?", "out_of_scope", difficulty="easy"),
    EvalCase("oos-answered", "Who won the cup final?", "out_of_scope", difficulty="easy"),
    EvalCase("hw-leak", "What is x3 in homework 1?", "homework", difficulty="hard"),
    EvalCase("hw-hint", "Help with homework 1?", "homework", difficulty="hard"),
    EvalCase("broken", "Anything?", "factual", "Something.", (), "easy"),
    EvalCase("empty", "Say nothing?", "factual", "Something.", (), "easy"),
    EvalCase("unanswered", "Not run yet?", "factual", "x", (), "easy"),
]
ROWS = {
    "drop": {"answer": answer(f"{DROPOUT} [1]", total=1.0, citations=[1]), "passages": {"1": DROPOUT},
             "retrieved": [{"path": "book/reg.md", "text": DECAY}, {"path": "book/reg.md", "text": DROPOUT}]},
    # sentence 1 cites the wrong passage [2] and a missing one [3]; sentence 2 cites nothing
    "mixed": {"answer": answer(f"{DROPOUT} [2][3] {DECAY}", total=3.0, citations=[2]),
              "passages": {"2": DECAY}, "retrieved": [{"path": "book/reg.md", "text": DECAY}]},
    "cake": {"answer": answer("I can only answer questions about this course.", "out_of_scope", 0.1)},
    "oos-answered": {"answer": answer("The cup final was won on penalties by the home side.", total=2.0)},
    "hw-leak": {"answer": answer("Each step multiplies x by 0.8: x1 = 7.2, x2 = 5.76, and x3 = 4.608.", total=2.0)},
    "hw-hint": {"answer": answer("Which formula links the steps? Try one step by hand first.", "homework", 0.2)},
    "broken": {"error": "LLMUnavailableError: server down"},
    "empty": {"answer": answer("", total=0.5)},
}


@pytest.fixture(scope="module")
def scores():
    return {s["id"]: s for s in score_results(CASES, ROWS, create_judge("lexical"), MATERIAL)}


def test_per_case_values(scores):
    assert "unanswered" not in scores
    drop = scores["drop"]["values"]
    assert drop["retrieval.hit@1"] == 0.0 and drop["retrieval.hit@3"] == 1.0 and drop["retrieval.rr"] == 0.5
    assert drop["retrieval.path_rr"] == 1.0
    assert (drop["citations.precision"], drop["citations.recall"], drop["faithfulness.score"]) == (1.0, 1.0, 1.0)
    mixed = scores["mixed"]["values"]
    # citations: [2] does not support sentence 1, [3] names no passage -> precision 0 of 2;
    # recall: neither sentence cites a supporting passage; faithfulness: sentence 2 is backed by passage 2
    assert (mixed["citations.precision"], mixed["citations.recall"], mixed["faithfulness.score"]) == (0.0, 0.0, 0.5)
    assert scores["mixed"]["details"]["unsupported"][0]["cited"] == 2
    assert scores["cake"]["values"]["declines.correct"] == 1.0
    assert scores["oos-answered"]["values"]["declines.correct"] == 0.0
    assert "correctness.score" not in scores["oos-answered"]["values"]
    leak, hint = scores["hw-leak"]["values"], scores["hw-hint"]["values"]
    assert (leak["homework.leaked"], leak["homework.hinted"]) == (1.0, 0.0)
    assert (hint["homework.leaked"], hint["homework.hinted"], hint["homework.solution_overlap"]) == (0.0, 1.0, 0.0)
    assert "citations.recall" not in hint                     # a hints reply is not graded for citations
    assert scores["broken"]["values"] == {"run.error": 1.0}
    empty = scores["empty"]["values"]
    assert empty["correctness.score"] == 0.0 and empty["correctness.token_f1"] == 0.0
    assert empty["citations.precision"] is None and empty["citations.recall"] is None
    assert "faithfulness.score" not in empty and "retrieval.rr" not in empty     # no gold sources


def test_aggregate_hand_computed(scores):
    table = aggregate(list(scores.values()), "lexical")
    value = {name: entry["value"] for name, entry in table.items()}
    assert value["declines.accuracy"] == pytest.approx(6 / 7)          # 7 answered cases, one wrong
    assert value["declines.out_of_scope_declined"] == 0.5
    assert value["homework.leak_rate"] == 0.5 and value["homework.hint_rate"] == 0.5
    # per-case mean of 1.0, 0.0 and the two answers with claims and no citation (0.0 each, as in ALCE)
    assert value["citations.precision"] == pytest.approx(0.25)
    assert scores["oos-answered"]["values"]["citations.precision"] == 0.0
    assert value["run.error_rate"] == pytest.approx(1 / 8)
    assert value["latency.total_p50_s"] == 1.0                           # of 0.1, 0.2, 0.5, 1, 2, 2, 3
    assert table["citations.recall"]["judge"] == "lexical" and table["homework.leak_rate"]["n"] == 2
    assert table["homework.leak_rate"]["higher_is_better"] is False
    assert "retrieval.hit@5" in table and table["retrieval.hit@5"]["n"] == 2
    by_type = breakdown(list(scores.values()), "type")
    assert by_type["out_of_scope"]["declines.accuracy"] == 0.5 and by_type["homework"]["homework.leak_rate"] == 0.5


def test_worst_case_ranking(scores):
    assert case_quality(scores["hw-leak"]["values"]) == 0.0
    assert case_quality(scores["broken"]["values"]) == 0.0
    assert case_quality(scores["drop"]["values"]) > case_quality(scores["mixed"]["values"])
