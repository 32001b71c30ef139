"""The chat-log database through SQLAlchemy: the same rows on SQLite and on a real PostgreSQL server,
old chat logs adopted with their rows, a database at the previous revision upgraded with its rows."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest
from sqlalchemy import inspect, text

from tutor.chatlog import ChatLog
from tutor.db import DatabaseError, create_database_engine, current_revision, head_revision, sqlite_url, upgrade

# The schema the chat log had before SQLAlchemy and Alembic (tutor/chatlog.py, commit fae804e), verbatim.
OLD_SCHEMA = """
CREATE TABLE IF NOT EXISTS chats (
    id             INTEGER PRIMARY KEY,
    created        REAL NOT NULL,
    session        TEXT NOT NULL,
    course         TEXT NOT NULL,
    mode           TEXT NOT NULL DEFAULT 'explain',
    question       TEXT NOT NULL,
    answer         TEXT NOT NULL,
    citations      TEXT NOT NULL DEFAULT '[]',
    demos          TEXT NOT NULL DEFAULT '[]',
    refused        TEXT,
    backend        TEXT NOT NULL DEFAULT '',
    model          TEXT NOT NULL DEFAULT '',
    timings        TEXT NOT NULL DEFAULT '{}',
    top_similarity REAL,
    notice         TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS chats_course_created ON chats (course, created);
CREATE TABLE IF NOT EXISTS feedback (
    id       INTEGER PRIMARY KEY,
    chat_id  INTEGER NOT NULL REFERENCES chats (id),
    created  REAL NOT NULL,
    session  TEXT NOT NULL,
    rating   INTEGER NOT NULL CHECK (rating IN (-1, 1)),
    category TEXT,
    comment  TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS feedback_chat ON feedback (chat_id);
"""
CITATIONS = '[{"n": 1, "chunk_id": "c1", "locator": {"path": "book/04.md"}, "url": "book/04.md", "quote": "q"}]'


def answer(question: str, path: str = "book/01.md", refused=None, top=0.8, course="dl") -> dict:
    citation = {"n": 1, "chunk_id": "c", "locator": {"path": path, "kind": "book"}, "url": path, "quote": "q"}
    return {"question": question, "text": "An answer [1].", "citations": [citation], "demos": [],
            "refused": refused, "backend": "extractive", "model": "extractive", "timings": {"total_s": 0.1},
            "notice": "", "mode": "explain", "course": course, "top_similarity": top}


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path) -> str:
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "chatlog.sqlite")
    return request.getfixturevalue("postgres_url")


def test_the_chat_log_reads_back_what_it_stored_on_either_database(database):
    log = ChatLog(database)
    now = time.time()
    first = log.log_answer("s1", answer("q1", "book/01.md"), created=now - 86400 * 2)
    second = log.log_answer("s2", answer("q2", "book/02.md", top=0.35), created=now)
    declined = log.log_answer("s2", answer("far away", refused="out_of_scope", top=0.1), created=now)
    log.log_answer("s3", answer("elsewhere", course="ml"), created=now, api_key_id=7)
    log.record_feedback(first, "s1", -1, "wrong")
    log.record_feedback(first, "s1", 1)
    log.record_feedback(second, "s2", -1, "unclear", "  too short ")

    assert [c["id"] for c in log.chats("dl")] == [declined, second, first]
    assert log.chats("dl", ids=[first])[0]["rating"] == 1                      # the latest rating counts
    assert log.chats("ml")[0]["api_key_id"] == 7 and log.chats("ml")[0]["timings"] == {"total_s": 0.1}
    assert [r["id"] for r in log.thumbs_down("dl")] == [second]
    assert log.thumbs_down("dl")[0]["comment"] == "too short"
    assert [r["id"] for r in log.refused("dl")] == [declined]
    assert [r["id"] for r in log.low_confidence("dl")] == [second]
    assert log.most_cited("dl") == [("book/01.md", 2), ("book/02.md", 1)]
    import datetime as dt

    assert log.questions_per_day("dl") == [(dt.date.fromtimestamp(now - 86400 * 2).isoformat(), 1),
                                           (dt.date.fromtimestamp(now).isoformat(), 2)]
    assert [f["rating"] for f in log.feedback_rows(first)] == [-1, 1]


def test_concurrent_logging_loses_nothing_on_either_database(database):
    log = ChatLog(database)

    def student(n: int) -> None:
        for i in range(10):
            log.record_feedback(log.log_answer(f"s{n}", answer(f"q{n}-{i}")), f"s{n}", 1)

    threads = [threading.Thread(target=student, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    chats = log.chats("dl", limit=1000)
    assert len(chats) == 80 and {c["question"] for c in chats} == {f"q{n}-{i}" for n in range(8) for i in range(10)}
    assert all(c["rating"] == 1 for c in chats)


def test_a_chat_log_from_before_migrations_is_adopted_with_its_rows(tmp_path):
    path = tmp_path / "chatlog.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(OLD_SCHEMA)
        db.execute("INSERT INTO chats (created, session, course, question, answer, citations, top_similarity) "
                   "VALUES (?, 's1', 'dl', 'What is momentum?', 'It damps oscillation [1].', ?, 0.7)",
                   (time.time() - 60, CITATIONS))
        db.execute("INSERT INTO feedback (chat_id, created, session, rating, category) "
                   "VALUES (1, ?, 's1', -1, 'unclear')", (time.time(),))
    db.close()

    log = ChatLog(path)
    assert current_revision(log.engine) == head_revision()
    old, = log.chats("dl")
    assert (old["id"], old["question"], old["answer"], old["rating"], old["category"], old["api_key_id"]) == (
        1, "What is momentum?", "It damps oscillation [1].", -1, "unclear", None)
    assert log.most_cited("dl") == [("book/04.md", 1)]
    new = log.log_answer("s2", answer("q2"))
    assert new == 2 and log.record_feedback(new, "s2", 1) == 2
    assert ChatLog(path).chats("dl", limit=10)[-1]["question"] == "What is momentum?"   # reopening changes nothing


def test_a_database_at_the_previous_revision_is_upgraded_with_its_rows(database):
    engine = create_database_engine(database)
    upgrade(engine, "0001")
    assert current_revision(engine) == "0001"
    assert "api_keys" not in inspect(engine).get_table_names()
    with engine.begin() as db:
        for i in range(3):
            db.execute(text("INSERT INTO chats (created, session, course, question, answer, citations) "
                            "VALUES (:t, :s, 'dl', :q, 'a [1]', :c)"),
                       {"t": time.time() - 100 + i, "s": f"s{i}", "q": f"question {i}", "c": CITATIONS})
        db.execute(text("INSERT INTO feedback (chat_id, created, session, rating) VALUES (2, :t, 's1', 1)"),
                   {"t": time.time()})
    engine.dispose()

    log = ChatLog(database)
    assert current_revision(log.engine) == head_revision() != "0001"
    assert {"api_keys", "asked"} <= set(inspect(log.engine).get_table_names())
    assert [c["question"] for c in log.chats("dl")] == ["question 2", "question 1", "question 0"]
    assert [c["rating"] for c in log.chats("dl")] == [None, 1, None]
    assert log.log_answer("s9", answer("after"), api_key_id=3) == 4


def test_a_database_that_cannot_be_opened_says_which_and_what_to_check(tmp_path):
    with pytest.raises(DatabaseError, match="database_url nonsense:.*use postgresql:"):
        ChatLog("nonsense://")
    port = _closed_port()
    with pytest.raises(DatabaseError, match=rf"cannot open the chat-log database postgresql\+psycopg://tutor:\*\*\*@"
                                            rf"127.0.0.1:{port}/x.*check the database_url setting"):
        ChatLog(f"postgresql://tutor:secret@127.0.0.1:{port}/x")


def _closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_sqlite_writers_of_one_process_take_turns(tmp_path):
    from tutor.db import open_database, write_transaction

    engine = open_database(sqlite_url(tmp_path / "turns.sqlite"))
    seen: list[tuple[str, int]] = []

    def writer(n: int) -> None:
        with write_transaction(engine) as db:
            seen.append(("in", n))
            db.execute(text("UPDATE alembic_version SET version_num = version_num"))
            time.sleep(0.02)                       # a slow writer: any other would overlap it here
            seen.append(("out", n))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [kind for kind, _ in seen] == ["in", "out"] * 8                     # never two inside at once
    assert all(seen[i][1] == seen[i + 1][1] for i in range(0, 16, 2))


def test_forty_answers_logged_at_once_are_all_stored(tmp_path):
    log = ChatLog(tmp_path / "chatlog.sqlite")
    ids: list[int] = []

    def answer(n: int) -> None:
        ids.append(log.log_answer(f"s{n}", {"question": f"q{n}?", "text": "a", "course": "c"}))

    threads = [threading.Thread(target=answer, args=(n,)) for n in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(ids) == list(range(1, 41)) and len(log.chats(limit=100)) == 40
