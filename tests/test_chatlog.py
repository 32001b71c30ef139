"""The chat log: answers and feedback stored, the instructor's statistics, eval-case export."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import threading
import time

import pytest

from eval.dataset import load_dataset
from tutor.chatlog import ChatLog, ChatLogError, eval_case


def answer(question: str, text: str = "An answer [1].", paths=("book/01.md",), refused=None, top=0.8,
           course: str = "dl") -> dict:
    citations = [{"n": i + 1, "chunk_id": f"c{i}", "locator": {"path": p, "kind": "book", "title": p},
                  "url": p, "quote": f"quote from {p}", "title": p} for i, p in enumerate(paths)]
    return {"question": question, "text": text, "citations": citations, "demos": [], "refused": refused,
            "backend": "extractive", "model": "extractive", "timings": {"total_s": 0.25}, "notice": "",
            "mode": "explain", "course": course, "top_similarity": top}


@pytest.fixture
def log(tmp_path) -> ChatLog:
    return ChatLog(tmp_path / "logs" / "chatlog.sqlite")


def test_answer_and_feedback_rows_hold_what_the_instructor_needs(log, tmp_path):
    chat_id = log.log_answer("s1", answer("What is momentum?", paths=("book/04.md", "slides/04.pdf")))
    feedback_id = log.record_feedback(chat_id, "s1", -1, "wrong", "  sign is flipped  ")

    db = sqlite3.connect(tmp_path / "logs" / "chatlog.sqlite")
    row = db.execute("SELECT session, course, question, answer, citations, backend, timings, top_similarity "
                     "FROM chats WHERE id = ?", (chat_id,)).fetchone()
    assert row[:4] == ("s1", "dl", "What is momentum?", "An answer [1].")
    assert [c["locator"]["path"] for c in json.loads(row[4])] == ["book/04.md", "slides/04.pdf"]
    assert row[5] == "extractive" and json.loads(row[6]) == {"total_s": 0.25} and row[7] == pytest.approx(0.8)
    fb = db.execute("SELECT chat_id, session, rating, category, comment, created FROM feedback WHERE id = ?",
                    (feedback_id,)).fetchone()
    assert fb[:5] == (chat_id, "s1", -1, "wrong", "sign is flipped")
    assert abs(fb[5] - time.time()) < 60


def test_feedback_is_refused_from_another_session_or_with_bad_values(log):
    chat_id = log.log_answer("s1", answer("q"))
    with pytest.raises(ChatLogError, match="no answer"):
        log.record_feedback(chat_id, "someone-else", 1)
    with pytest.raises(ChatLogError, match="no answer"):
        log.record_feedback(chat_id + 100, "s1", 1)
    with pytest.raises(ValueError, match="rating"):
        log.record_feedback(chat_id, "s1", 0)
    with pytest.raises(ValueError, match="accepted: wrong, unclear"):
        log.record_feedback(chat_id, "s1", -1, "rude")
    assert log.feedback_rows(chat_id) == []


def test_statistics_count_what_was_logged(log):
    day = 86400
    now = time.time()
    a = log.log_answer("s1", answer("q1", paths=("book/01.md", "book/02.md")), created=now - 2 * day)
    b = log.log_answer("s2", answer("q2", paths=("book/01.md",), top=0.35), created=now - 2 * day)
    c = log.log_answer("s2", answer("capital of France?", text="Out of scope.", paths=(), refused="out_of_scope",
                                    top=0.1), created=now)
    d = log.log_answer("s3", answer("q4", paths=("book/01.md", "book/01.md")), created=now)
    log.log_answer("s9", answer("q5", paths=("x.md",)), created=now)
    log.log_answer("s9", answer("other course", paths=("x.md",), course="ml"), created=now)

    log.record_feedback(a, "s1", -1, "unclear")
    log.record_feedback(a, "s1", 1)                  # changed their mind: the latest rating counts
    log.record_feedback(b, "s2", -1, "bad source", "cites the wrong chapter")
    log.record_feedback(d, "s3", -1)

    days = log.questions_per_day("dl")
    expected = [(dt.date.fromtimestamp(now - 2 * day).isoformat(), 2), (dt.date.fromtimestamp(now).isoformat(), 3)]
    assert days == expected
    assert log.most_cited("dl") == [("book/01.md", 3), ("book/02.md", 1), ("x.md", 1)]
    assert [r["id"] for r in log.refused("dl")] == [c]
    assert [r["id"] for r in log.low_confidence("dl")] == [b]          # c is refused, the rest are confident
    down = log.thumbs_down("dl")
    assert [r["id"] for r in down] == [d, b]
    assert down[1]["category"] == "bad source" and down[1]["comment"] == "cites the wrong chapter"
    assert down[1]["citations"][0]["locator"]["path"] == "book/01.md"
    assert {r["course"] for r in log.chats(limit=10)} == {"dl", "ml"}
    assert [r["id"] for r in log.chats("dl", ids=[a, c])] == [c, a]


def test_export_writes_eval_cases_the_eval_loader_accepts(log, tmp_path):
    math = log.log_answer("s1", answer("What is the update rule?", text="It is $w - \\eta g$ [1][2].",
                                       paths=("book/04.md", "slides/04.pdf")))
    out = log.log_answer("s1", answer("Best pizza in town?", text="Not covered.", paths=(),
                                      refused="out_of_scope", top=0.05))
    why = log.log_answer("s1", answer("Why does dropout help?", text="It prevents co-adaptation [1].",
                                      paths=("book/06.md",)))
    path = log.export_eval_cases([math, out, why], tmp_path / "export" / "cases.jsonl")

    cases = load_dataset(path)                        # the eval package's own validation
    assert [c.id for c in cases] == [f"chat-{math}", f"chat-{out}", f"chat-{why}"]
    assert cases[0].type == "math" and cases[0].reference_answer == "It is $w - \\eta g$."
    assert [(g.path, g.quote) for g in cases[0].gold_sources] == [
        ("book/04.md", "quote from book/04.md"), ("slides/04.pdf", "quote from slides/04.pdf")]
    assert cases[1].type == "out_of_scope" and cases[1].gold_sources == () and cases[1].reference_answer == ""
    assert cases[2].type == "conceptual" and cases[2].difficulty == "medium"
    with pytest.raises(ChatLogError, match="no chat with id 999"):
        log.export_eval_cases([math, 999], tmp_path / "bad.jsonl")


def test_eval_case_guesses_code_questions():
    chat = {"id": 7, "question": "How do I implement this in PyTorch?", "answer": "```python\nx.backward()\n```",
            "citations": [], "refused": None, "course": "dl"}
    assert eval_case(chat)["type"] == "code"
    homework = {**chat, "refused": "homework"}
    assert eval_case(homework)["type"] == "homework"


def test_concurrent_logging_loses_nothing(log):
    def student(n: int) -> None:
        for i in range(10):
            chat_id = log.log_answer(f"s{n}", answer(f"q{n}-{i}"))
            log.record_feedback(chat_id, f"s{n}", 1)

    threads = [threading.Thread(target=student, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(log.chats("dl", limit=1000)) == 80
    assert all(r["rating"] == 1 for r in log.chats("dl", limit=1000))


def test_tutor_report_prints_what_students_ask(tmp_path):
    from typer.testing import CliRunner

    from tutor.cli import app

    log = ChatLog(tmp_path / "chatlog.sqlite")
    chat = log.log_answer("s1", answer("What is dropout?", paths=("book/06.md",)))
    log.log_answer("s2", answer("Best pizza in town?", paths=(), refused="out_of_scope", top=0.1))
    log.record_feedback(chat, "s1", -1, "unclear", "too short")
    done = CliRunner().invoke(app, ["report", "--data-dir", str(tmp_path), "--course", "dl", "--json"])
    assert done.exit_code == 0, done.output
    data = json.loads(done.output)
    assert data["most_cited"] == [["book/06.md", 1]]
    assert data["declined"] == [{"question": "Best pizza in town?", "reason": "out_of_scope"}]
    assert data["thumbs_down"] == [{"question": "What is dropout?", "category": "unclear", "comment": "too short"}]
    text = CliRunner().invoke(app, ["report", "--data-dir", str(tmp_path)]).output
    assert "book/06.md" in text and "[out_of_scope] Best pizza in town?" in text
    missing = CliRunner().invoke(app, ["report", "--data-dir", str(tmp_path / "none")])
    assert missing.exit_code == 2 and "no chat log" in missing.output
