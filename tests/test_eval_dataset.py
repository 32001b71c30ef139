"""Eval datasets: valid cases load; malformed ones fail naming the file, the line and the fix."""

from __future__ import annotations

import json

import pytest

from eval.dataset import DatasetError, EvalCase, GoldSource, load_dataset, write_dataset
from eval.feedback import case_from_chat, merge_cases

GOOD = {"id": "m1", "question": "Why does momentum help?", "reference_answer": "It damps oscillation.",
        "gold_sources": [{"path": "book/optim.md", "quote": "damps oscillation"}], "type": "conceptual",
        "difficulty": "Hard"}


def write_lines(path, lines):
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n", encoding="utf-8")
    return path


def test_load_dataset_reads_cases_and_keeps_extra_keys(tmp_path):
    path = write_lines(tmp_path / "d.jsonl", [
        "// a comment line", GOOD, "",
        {"id": "oos", "question": "Best pizza in town?", "type": "out_of_scope", "note": "kept"},
    ])
    first, second = load_dataset(path)
    assert first == EvalCase("m1", "Why does momentum help?", "conceptual", "It damps oscillation.",
                             (GoldSource("book/optim.md", "damps oscillation"),), "hard")
    assert first.answerable and not second.answerable
    assert second.gold_sources == () and second.difficulty == "medium" and second.extra == {"note": "kept"}
    again = write_dataset(tmp_path / "copy.jsonl", [first, second])
    assert load_dataset(again) == [first, second]
    assert json.loads(again.read_text().splitlines()[1])["note"] == "kept"


@pytest.mark.parametrize("bad, message", [
    ('{"id": "x", "question": ', r"d\.jsonl:2: not valid JSON"),
    ({**GOOD, "id": "m2", "type": "trivia"}, r"d\.jsonl:2: type 'trivia' is unknown; accepted: factual"),
    ({**GOOD, "id": "m2", "question": "  "}, r"d\.jsonl:2: `question` must be a non-empty string"),
    ({**GOOD, "id": "m2", "difficulty": "brutal"}, r"difficulty 'brutal' is unknown; accepted: easy, medium, hard"),
    ({**GOOD, "id": "m2", "gold_sources": [{"quote": "no path"}]}, r"gold_sources\[0\] needs a non-empty `path`"),
    ({**GOOD, "id": "m2", "gold_sources": "book/optim.md"}, r"`gold_sources` must be a list"),
    (GOOD, r"d\.jsonl:2: id 'm1' is already used on line 1"),
    ([1, 2], r"a case must be a JSON object"),
])
def test_malformed_cases_name_their_line(tmp_path, bad, message):
    path = write_lines(tmp_path / "d.jsonl", [GOOD, bad])
    with pytest.raises(DatasetError, match=message):
        load_dataset(path)


def test_missing_and_empty_datasets(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        load_dataset(tmp_path / "none.jsonl")
    with pytest.raises(DatasetError, match="no cases"):
        load_dataset(write_lines(tmp_path / "empty.jsonl", ["", "// nothing"]))
    assert issubclass(DatasetError, ValueError)


def chat(chat_id, category, refused=None):
    """A chat-log row as `ChatLog.thumbs_down` returns it."""
    return {"id": chat_id, "course": "mini", "question": "How does momentum help?", "refused": refused,
            "answer": "Momentum damps oscillation [1].", "rating": -1, "category": category, "comment": "",
            "citations": [{"n": 1, "locator": {"path": "book/optim.md"}, "quote": "damps oscillation"}]}


def test_feedback_cases_trust_only_what_the_complaint_leaves_standing():
    unclear = case_from_chat(chat(1, "unclear"))
    assert unclear.id == "chat-1" and unclear.reference_answer == "Momentum damps oscillation."
    assert unclear.gold_sources == (GoldSource("book/optim.md", "damps oscillation"),)
    wrong = case_from_chat(chat(2, "wrong"))
    assert wrong.reference_answer == "" and wrong.extra["needs"] == ["reference_answer"]
    assert wrong.gold_sources                       # the sources may still be the right ones
    bad_source = case_from_chat(chat(3, "bad source"))
    assert bad_source.gold_sources == () and bad_source.extra["needs"] == ["gold_sources"]
    leaked = case_from_chat(chat(4, "gave away homework"))
    assert leaked.type == "homework" and leaked.reference_answer == ""
    assert [c.id for c in merge_cases([unclear, wrong], [wrong, leaked])] == ["chat-1", "chat-2", "chat-4"]


def test_from_feedback_cli_reads_the_chat_log(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from tutor.chatlog import ChatLog
    from tutor.cli import app

    monkeypatch.chdir(tmp_path)
    log = ChatLog(tmp_path / "data" / "chatlog.sqlite")
    answer = {"question": "What does dropout do?", "text": "It rescales the learning rate [1].", "course": "mini",
              "citations": [{"n": 1, "locator": {"path": "notes/dropout.md"}, "quote": "zeroes activations"}]}
    liked = log.log_answer("s1", {**answer, "question": "What is momentum?"})
    disliked = log.log_answer("s1", answer)
    log.record_feedback(liked, "s1", 1)
    log.record_feedback(disliked, "s1", -1, "wrong", "dropout does not touch the learning rate")
    out = tmp_path / "feedback.jsonl"
    runner = CliRunner()
    result = runner.invoke(app, ["eval", "from-feedback", "--out", str(out), "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 0, result.output
    assert "1 new cases (1 need a reference or sources filled in)" in result.output
    (case,) = load_dataset(out)
    assert case.id == f"chat-{disliked}" and case.question == "What does dropout do?"
    assert case.reference_answer == "" and case.extra["origin"]["comment"].startswith("dropout does not")
    again = runner.invoke(app, ["eval", "from-feedback", "--out", str(out), "--data-dir", str(tmp_path / "data")])
    assert "0 new cases" in again.output and len(load_dataset(out)) == 1
    missing = runner.invoke(app, ["eval", "from-feedback", "--out", str(out), "--data-dir", str(tmp_path / "none")])
    assert missing.exit_code == 2 and "no chat log" in missing.output
