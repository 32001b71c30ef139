"""The eval's pure measures against small hand-computed cases."""

from __future__ import annotations

import pytest

from eval.dataset import GoldSource
from eval.metrics import (
    Claim,
    answer_claims,
    citation_precision_recall,
    is_factual,
    matches_gold,
    mean,
    normalise_text,
    percentile,
    retrieval_scores,
    solution_overlap,
    token_f1,
)

MOMENTUM = GoldSource("book/optim.md", "damps   Oscillation")
DROPOUT = GoldSource("notes/dropout.md", "zeroes activations")


def test_normalise_text_folds_case_width_quotes_dashes_and_whitespace():
    assert normalise_text("  The \u201cLearning\u201d\n\tRATE \u2014 ﬁne ") == 'the "learning" rate - fine'
    assert normalise_text("**bold** `code`") == "bold code"
    assert normalise_text("Straße") == "strasse"


def test_gold_match_needs_path_and_quote_unless_path_only():
    assert matches_gold("book/optim.md", "Momentum damps\noscillation across a ravine.", MOMENTUM)
    assert not matches_gold("book/optim.md", "Momentum speeds progress.", MOMENTUM)
    assert matches_gold("book/optim.md", "Momentum speeds progress.", MOMENTUM, path_only=True)
    assert not matches_gold("book/other.md", "damps oscillation", MOMENTUM, path_only=True)
    assert matches_gold("book/optim.md", "anything", GoldSource("book/optim.md", ""))


def test_retrieval_scores_hand_computed():
    retrieved = [
        ("book/optim.md", "Gradient descent steps downhill."),       # rank 1: right file, no quote
        ("notes/dropout.md", "Dropout zeroes activations."),         # rank 2: DROPOUT
        ("book/optim.md", "Momentum damps oscillation."),            # rank 3: MOMENTUM
    ]
    scores = retrieval_scores(retrieved, [MOMENTUM, DROPOUT], ks=(1, 2, 3))
    assert scores == {"rr": 0.5, "hit@1": 0.0, "recall@1": 0.0, "hit@2": 1.0, "recall@2": 0.5,
                      "hit@3": 1.0, "recall@3": 1.0}
    loose = retrieval_scores(retrieved, [MOMENTUM, DROPOUT], ks=(1, 2), path_only=True)
    assert loose == {"rr": 1.0, "hit@1": 1.0, "recall@1": 0.5, "hit@2": 1.0, "recall@2": 1.0}


def test_retrieval_scores_edge_cases():
    assert retrieval_scores([("a.md", "x")], []) == {}
    missed = retrieval_scores([], [MOMENTUM], ks=(5,))
    assert missed == {"rr": 0.0, "hit@5": 0.0, "recall@5": 0.0}
    # the same gold source listed twice counts once
    twice = retrieval_scores([("book/optim.md", "damps oscillation")], [MOMENTUM, MOMENTUM], ks=(1,))
    assert twice["recall@1"] == 1.0


def test_answer_claims_attach_markers_after_the_full_stop_and_skip_non_factual_sentences():
    text = ("Great question! Here is what the course says:\n\n"
            "- Momentum keeps a velocity of past gradients. [1]\n"
            "- It damps oscillation across a ravine [2][2], and speeds progress along its floor.\n"
            "## Summary\n"
            "Why not try a larger learning rate?\n"
            "Weight decay shrinks every weight towards zero [1, 3].\n"
            "```python\nx = w[1] * 2  # not a citation\n```\n")
    assert answer_claims(text) == [
        Claim("Momentum keeps a velocity of past gradients.", (1,)),
        Claim("It damps oscillation across a ravine, and speeds progress along its floor.", (2,)),
        Claim("Weight decay shrinks every weight towards zero.", (1, 3)),
    ]


def test_answer_claims_keep_a_displayed_equation_with_its_lead_in():
    text = "- Momentum accumulates past gradients:\n\n$$v_{t+1} = \\beta v_t + g_t$$ [1]\n- Short. [2]"
    assert answer_claims(text) == [
        Claim("Momentum accumulates past gradients: $$v_{t+1} = \\beta v_t + g_t$$", (1,))]


def test_answer_claims_of_empty_and_uncited_answers():
    assert answer_claims("") == []
    assert answer_claims("Dropout zeroes random activations while training.") == [
        Claim("Dropout zeroes random activations while training.", ())]


def test_is_factual_unicode_sentence():
    assert is_factual("Die Lernrate bestimmt die Schrittweite.")
    assert is_factual("学習率 は 更新 の 大きさ を 決める")
    assert not is_factual("Thanks, hope this helps.")
    assert not is_factual("**Key idea**")


def test_citation_precision_recall_hand_computed():
    claims = [Claim("a b c d", (1, 2)), Claim("e f g h", (3,)), Claim("i j k l", ())]
    supported = {(0, 1): True, (0, 2): False, (1, 3): True}
    precision, recall = citation_precision_recall(claims, supported)
    assert precision == pytest.approx(2 / 3)      # 2 of the 3 citations support their sentence
    assert recall == pytest.approx(2 / 3)         # sentences 0 and 1 cite a supporting passage


def test_citation_precision_recall_edge_cases():
    assert citation_precision_recall([], {}) == (None, None)
    uncited = [Claim("a b c d", ())]
    assert citation_precision_recall(uncited, {}) == (0.0, 0.0)        # claims without any citation: 0, as ALCE
    # a marker naming no passage has no verdict and counts as unsupported
    assert citation_precision_recall([Claim("a b c d", (9,))], {}) == (0.0, 0.0)


def test_token_f1_hand_computed():
    # prediction: the cat sat (3); reference: the cat sat down (4); common 3 -> P 1, R 3/4
    assert token_f1("The cat sat.", "the cat sat down") == pytest.approx(2 * 1 * 0.75 / 1.75)
    assert token_f1("", "") == 1.0
    assert token_f1("", "something") == 0.0
    assert token_f1("nothing shared", "at all") == 0.0
    assert token_f1("Größe der Schritte", "grösse der schritte") == 1.0   # case-folded: ß is ss
    assert token_f1("Größe der Schritte", "grosse der schritte") == pytest.approx(2 / 3)  # ö is not o
    assert token_f1("a a b", "a b b") == pytest.approx(2 / 3)   # counts are clipped


def test_solution_overlap_ignores_public_text_and_counts_result_numbers():
    solution = "Each step multiplies x by 0.8 so x1 = 7.2, x2 = 5.76 and finally x3 = 4.608 is the answer."
    public = "Run three steps of gradient descent from x0 = 9 with learning rate 0.1."
    leak = "Each step multiplies x by 0.8 so x1 = 7.2, x2 = 5.76 and finally x3 = 4.608."
    share, numbers = solution_overlap(leak, [solution], public)
    assert share > 0.5 and numbers == {"0.8", "7.2", "5.76", "4.608"}
    hint = "Run three steps of gradient descent from x0 = 9 with learning rate 0.1 and check each step."
    share, numbers = solution_overlap(hint, [solution], public)
    assert share == 0.0 and numbers == set()
    assert solution_overlap("", [solution], public) == (0.0, set())
    # numbers a lecture's worked example also shows are public: stating them gives nothing away
    lecture = public + " In the lecture's example x1 = 7.2 and x2 = 5.76."
    assert solution_overlap(leak, [solution], lecture)[1] == {"0.8", "4.608"}


def test_mean_and_percentile_skip_missing_values():
    assert mean([1.0, None, 0.0]) == 0.5
    assert mean([None]) is None
    assert percentile([1.0, 2.0, 3.0, 4.0, None], 50) == 2.5
    assert percentile([], 95) is None
