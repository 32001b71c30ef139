"""The chat log: every question and answer, the students' feedback on them, and what the instructor
reads out of both (questions per day, most-cited files, declined and low-confidence questions,
thumbs-down answers), plus export of chosen chats as eval cases.

    log = ChatLog(settings.data_dir / "chatlog.sqlite")
    chat_id = log.log_answer(session="abc", answer=answer)          # an `Answer` or its to_dict()
    log.record_feedback(chat_id, session="abc", rating=-1, category="wrong", comment="sign flipped")
    log.thumbs_down(course="dl-intro")                               # for the instructor tab
    log.export_eval_cases([chat_id], "cases.jsonl")                  # DESIGN.md eval format

SQLite in WAL mode, one short connection per call, so the Gradio worker threads can all log at
once. Sessions are opaque ids; feedback is accepted only from the session that asked the question.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ingest.errors import TutorError

FEEDBACK_CATEGORIES = ("wrong", "unclear", "bad source", "gave away homework")
# Answers whose best passage is this similar or less are "low confidence" for the instructor
# (the out-of-scope floor is 0.30: these cleared it, but not by much).
LOW_CONFIDENCE_SIMILARITY = 0.45

_SCHEMA = """
CREATE TABLE IF NOT EXISTS chats (
    id             INTEGER PRIMARY KEY,
    created        REAL NOT NULL,              -- unix time
    session        TEXT NOT NULL,
    course         TEXT NOT NULL,
    mode           TEXT NOT NULL DEFAULT 'explain',
    question       TEXT NOT NULL,
    answer         TEXT NOT NULL,
    citations      TEXT NOT NULL DEFAULT '[]', -- JSON: the Answer's citations
    demos          TEXT NOT NULL DEFAULT '[]', -- JSON
    refused        TEXT,                       -- NULL | out_of_scope | homework
    backend        TEXT NOT NULL DEFAULT '',
    model          TEXT NOT NULL DEFAULT '',
    timings        TEXT NOT NULL DEFAULT '{}', -- JSON: seconds per stage
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
# The latest rating of each chat: a student who changes their mind counts once, as they last said.
_LATEST_FEEDBACK = """
SELECT f.* FROM feedback f
WHERE f.id = (SELECT MAX(g.id) FROM feedback g WHERE g.chat_id = f.chat_id)
"""
_MARKER = re.compile(r"\s?\[\d+(?:\s*,\s*\d+)*\]")
_CODE_WORDS = re.compile(r"\b(?:code|python|pytorch|numpy|function|implement|error|bug)\b", re.I)


class ChatLogError(TutorError, ValueError):
    """A chat-log call was given something it cannot store; the message says what is accepted."""


class ChatLog:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30)
        db.row_factory = sqlite3.Row
        try:
            with db:  # commits, or rolls back on an exception
                yield db
        finally:
            db.close()

    # -- writing -----------------------------------------------------------------------------------

    def log_answer(self, session: str, answer: Any, created: float | None = None) -> int:
        """Store one question and its answer; returns the chat id that feedback refers to."""
        data = answer if isinstance(answer, dict) else answer.to_dict()
        with self._connect() as db:
            cursor = db.execute(
                "INSERT INTO chats (created, session, course, mode, question, answer, citations, demos, "
                "refused, backend, model, timings, top_similarity, notice) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (created or time.time(), session, data.get("course", ""), data.get("mode", "explain"),
                 data["question"], data["text"], json.dumps(data.get("citations", []), ensure_ascii=False),
                 json.dumps(data.get("demos", []), ensure_ascii=False), data.get("refused"),
                 data.get("backend", ""), data.get("model", ""), json.dumps(data.get("timings", {})),
                 data.get("top_similarity"), data.get("notice", "")),
            )
            return int(cursor.lastrowid)

    def record_feedback(self, chat_id: int, session: str, rating: int, category: str | None = None,
                        comment: str = "") -> int:
        """A thumbs up (1) or down (-1) on one answer, with an optional category and comment."""
        if rating not in (1, -1):
            raise ChatLogError(f"rating {rating!r} is not 1 (thumbs up) or -1 (thumbs down)")
        category = category or None
        if category is not None and category not in FEEDBACK_CATEGORIES:
            raise ChatLogError(f"feedback category {category!r} is unknown; accepted: {', '.join(FEEDBACK_CATEGORIES)}")
        with self._connect() as db:
            owner = db.execute("SELECT session FROM chats WHERE id = ?", (chat_id,)).fetchone()
            if owner is None or owner["session"] != session:
                raise ChatLogError(f"no answer {chat_id} in this conversation; rate an answer you were given")
            cursor = db.execute(
                "INSERT INTO feedback (chat_id, created, session, rating, category, comment) VALUES (?, ?, ?, ?, ?, ?)",
                (chat_id, time.time(), session, rating, category, (comment or "").strip()[:2000]),
            )
            return int(cursor.lastrowid)

    # -- reading -----------------------------------------------------------------------------------

    def chats(self, course: str | None = None, limit: int = 200, ids: list[int] | None = None) -> list[dict]:
        """Chats, newest first, each with its latest feedback (rating/category/comment or None)."""
        where, params = _course_filter(course)
        if ids is not None:
            where += f" AND c.id IN ({','.join('?' * len(ids))})"
            params += [int(i) for i in ids]
        rows = self._query(
            f"SELECT c.*, f.rating, f.category, f.comment FROM chats c "
            f"LEFT JOIN ({_LATEST_FEEDBACK}) f ON f.chat_id = c.id WHERE {where} "
            f"ORDER BY c.created DESC, c.id DESC LIMIT ?", [*params, limit])
        return [_decode(row) for row in rows]

    def feedback_rows(self, chat_id: int) -> list[dict]:
        return self._query("SELECT * FROM feedback WHERE chat_id = ? ORDER BY id", [chat_id])

    def questions_per_day(self, course: str | None = None, days: int = 30) -> list[tuple[str, int]]:
        """(YYYY-MM-DD, questions) for the last `days` days that had any, oldest first (local time)."""
        where, params = _course_filter(course)
        since = time.time() - days * 86400
        rows = self._query(
            f"SELECT date(c.created, 'unixepoch', 'localtime') AS day, COUNT(*) AS n FROM chats c "
            f"WHERE {where} AND c.created >= ? GROUP BY day ORDER BY day", [*params, since])
        return [(row["day"], row["n"]) for row in rows]

    def most_cited(self, course: str | None = None, limit: int = 10) -> list[tuple[str, int]]:
        """(file path, answers citing it), most cited first; a file cited twice in one answer counts once."""
        where, params = _course_filter(course)
        counts: Counter[str] = Counter()
        for row in self._query(f"SELECT c.citations FROM chats c WHERE {where}", params):
            counts.update({c["locator"]["path"] for c in json.loads(row["citations"]) if c.get("locator")})
        return sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:limit]

    def refused(self, course: str | None = None, limit: int = 50) -> list[dict]:
        """Questions the tutor declined (out of scope, or graded homework), newest first."""
        where, params = _course_filter(course)
        rows = self._query(f"SELECT c.* FROM chats c WHERE {where} AND c.refused IS NOT NULL "
                           f"ORDER BY c.created DESC, c.id DESC LIMIT ?", [*params, limit])
        return [_decode(row) for row in rows]

    def low_confidence(self, course: str | None = None, threshold: float = LOW_CONFIDENCE_SIMILARITY,
                       limit: int = 50) -> list[dict]:
        """Answered questions whose best passage was only weakly similar: likely gaps in the material."""
        where, params = _course_filter(course)
        rows = self._query(
            f"SELECT c.* FROM chats c WHERE {where} AND c.refused IS NULL AND c.top_similarity IS NOT NULL "
            f"AND c.top_similarity < ? ORDER BY c.top_similarity, c.id DESC LIMIT ?", [*params, threshold, limit])
        return [_decode(row) for row in rows]

    def thumbs_down(self, course: str | None = None, limit: int = 50) -> list[dict]:
        """Answers whose latest rating is a thumbs down, newest first, with category and comment."""
        where, params = _course_filter(course)
        rows = self._query(
            f"SELECT c.*, f.rating, f.category, f.comment FROM chats c JOIN ({_LATEST_FEEDBACK}) f "
            f"ON f.chat_id = c.id WHERE {where} AND f.rating = -1 ORDER BY f.created DESC, c.id DESC LIMIT ?",
            [*params, limit])
        return [_decode(row) for row in rows]

    def _query(self, sql: str, params: list) -> list[dict]:
        with self._connect() as db:
            return [dict(row) for row in db.execute(sql, params).fetchall()]

    # -- export ------------------------------------------------------------------------------------

    def eval_cases(self, chat_ids: list[int]) -> list[dict]:
        """The chosen chats as eval cases (DESIGN.md format), in the order asked for."""
        by_id = {c["id"]: c for c in self.chats(ids=list(chat_ids), limit=max(len(chat_ids), 1))}
        missing = [i for i in chat_ids if int(i) not in by_id]
        if missing:
            raise ChatLogError(f"no chat with id {', '.join(map(str, missing))}; pick ids from the chat list")
        return [eval_case(by_id[int(i)]) for i in chat_ids]

    def export_eval_cases(self, chat_ids: list[int], path: str | Path) -> Path:
        """Write the chosen chats as JSONL eval cases to `path`; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            for case in self.eval_cases(chat_ids):
                fh.write(json.dumps(case, ensure_ascii=False) + "\n")
        return path


def eval_case(chat: dict) -> dict:
    """One logged chat as an eval case. The tutor's answer becomes the draft reference answer (the
    instructor should correct it, above all for thumbs-down chats); its citations become the gold
    sources; the type comes from the refusal, else from what the question and answer contain."""
    gold, seen = [], set()
    for citation in chat["citations"]:
        key = (citation["locator"]["path"], citation.get("quote", ""))
        if key not in seen:
            seen.add(key)
            gold.append({"path": key[0], "quote": key[1]})
    case = {
        "id": f"chat-{chat['id']}", "question": chat["question"],
        "reference_answer": "" if chat["refused"] == "out_of_scope" else _MARKER.sub("", chat["answer"]).strip(),
        "gold_sources": [] if chat["refused"] == "out_of_scope" else gold,
        "type": chat["refused"] or guess_case_type(chat["question"], chat["answer"]),
        "difficulty": "medium",
        "origin": {"chat_id": chat["id"], "course": chat["course"], "rating": chat.get("rating"),
                   "category": chat.get("category"), "comment": chat.get("comment") or ""},
    }
    return case


def guess_case_type(question: str, answer: str) -> str:
    if "```" in answer or _CODE_WORDS.search(question):
        return "code"
    if "$" in answer or "\\(" in answer or "\\[" in answer:
        return "math"
    if re.match(r"\s*(why|how)\b", question, re.I):
        return "conceptual"
    return "factual"


def _course_filter(course: str | None) -> tuple[str, list]:
    return ("c.course = ?", [course]) if course else ("1 = 1", [])


def _decode(row: dict) -> dict:
    row = dict(row)
    for key in ("citations", "demos", "timings"):
        if key in row and isinstance(row[key], str):
            row[key] = json.loads(row[key])
    row["when"] = dt.datetime.fromtimestamp(row["created"]).strftime("%Y-%m-%d %H:%M")
    return row
