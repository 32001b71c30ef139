"""The chat log: every question and answer, the students' feedback on them, and what the instructor
reads out of both (questions per day, most-cited files, declined and low-confidence questions,
thumbs-down answers), plus export of chosen chats as eval cases.

    log = ChatLog.from_settings(settings)             # <data dir>/chatlog.sqlite, or database_url
    log = ChatLog("data/chatlog.sqlite")              # a SQLite file; or a URL, "postgresql://..."
    chat_id = log.log_answer(session="abc", answer=answer)          # an `Answer` or its to_dict()
    log.record_feedback(chat_id, session="abc", rating=-1, category="wrong", comment="sign flipped")
    log.thumbs_down(course="dl-intro")                               # for the instructor tab
    log.export_eval_cases([chat_id], "cases.jsonl")                  # DESIGN.md eval format

Through SQLAlchemy (`tutor/db/`): SQLite in WAL mode by default, PostgreSQL for a department; one
short transaction per call, so the Gradio worker threads can all log at once. The schema is
migrated on open. Sessions are opaque ids (an API question's is its key's owner); feedback is
accepted only from the session that asked the question.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, and_, func, select

from ingest.errors import TutorError
from tutor.db import database_url, open_database, sqlite_url, write_transaction
from tutor.db.schema import chats as chats_table
from tutor.db.schema import feedback as feedback_table

FEEDBACK_CATEGORIES = ("wrong", "unclear", "bad source", "gave away homework")
# Answers whose best passage is this similar or less are "low confidence" for the instructor
# (the out-of-scope floor is 0.30: these cleared it, but not by much).
LOW_CONFIDENCE_SIMILARITY = 0.45

_MARKER = re.compile(r"\s?\[\d+(?:\s*,\s*\d+)*\]")
_CODE_WORDS = re.compile(r"\b(?:code|python|pytorch|numpy|function|implement|error|bug)\b", re.I)


class ChatLogError(TutorError, ValueError):
    """A chat-log call was given something it cannot store; the message says what is accepted."""


def _latest_feedback():
    """The latest rating of each chat: a student who changes their mind counts once, as they last said."""
    f = feedback_table
    latest = select(func.max(f.c.id).label("id")).group_by(f.c.chat_id).subquery("latest")
    return select(f).join(latest, f.c.id == latest.c.id).subquery("f")


class ChatLog:
    def __init__(self, target: str | Path | Engine):
        """`target`: a SQLite file's path, a database URL, or an engine already opened by `open_database`."""
        if isinstance(target, Engine):
            self.engine = target
        else:
            is_url = isinstance(target, str) and "://" in target
            self.engine = open_database(target if is_url else sqlite_url(target))

    @classmethod
    def from_settings(cls, settings) -> ChatLog:
        return cls(database_url(settings))

    # -- writing -----------------------------------------------------------------------------------

    def log_answer(self, session: str, answer: Any, created: float | None = None,
                   api_key_id: int | None = None) -> int:
        """Store one question and its answer; returns the chat id that feedback refers to."""
        data = answer if isinstance(answer, dict) else answer.to_dict()
        row = {
            "created": created or time.time(), "session": session, "course": data.get("course", ""),
            "mode": data.get("mode", "explain"), "question": data["question"], "answer": data["text"],
            "citations": json.dumps(data.get("citations", []), ensure_ascii=False),
            "demos": json.dumps(data.get("demos", []), ensure_ascii=False), "refused": data.get("refused"),
            "backend": data.get("backend", ""), "model": data.get("model", ""),
            "timings": json.dumps(data.get("timings", {})), "top_similarity": data.get("top_similarity"),
            "notice": data.get("notice", ""), "api_key_id": api_key_id,
        }
        with write_transaction(self.engine) as db:
            return int(db.execute(chats_table.insert().values(row)).inserted_primary_key[0])

    def record_feedback(self, chat_id: int, session: str, rating: int, category: str | None = None,
                        comment: str = "") -> int:
        """A thumbs up (1) or down (-1) on one answer, with an optional category and comment."""
        if rating not in (1, -1):
            raise ChatLogError(f"rating {rating!r} is not 1 (thumbs up) or -1 (thumbs down)")
        category = category or None
        if category is not None and category not in FEEDBACK_CATEGORIES:
            raise ChatLogError(f"feedback category {category!r} is unknown; accepted: {', '.join(FEEDBACK_CATEGORIES)}")
        with write_transaction(self.engine) as db:
            owner = db.execute(select(chats_table.c.session).where(chats_table.c.id == int(chat_id))).scalar()
            if owner is None or owner != session:
                raise ChatLogError(f"no answer {chat_id} in this conversation; rate an answer you were given")
            inserted = db.execute(feedback_table.insert().values(
                chat_id=int(chat_id), created=time.time(), session=session, rating=rating, category=category,
                comment=(comment or "").strip()[:2000]))
            return int(inserted.inserted_primary_key[0])

    # -- reading -----------------------------------------------------------------------------------

    def chats(self, course: str | None = None, limit: int = 200, ids: list[int] | None = None) -> list[dict]:
        """Chats, newest first, each with its latest feedback (rating/category/comment or None)."""
        c, f = chats_table, _latest_feedback()
        query = select(c, f.c.rating, f.c.category, f.c.comment).select_from(c.outerjoin(f, f.c.chat_id == c.c.id))
        query = _for_course(query, course)
        if ids is not None:
            query = query.where(c.c.id.in_([int(i) for i in ids]))
        return [_decode(row) for row in self._rows(query.order_by(c.c.created.desc(), c.c.id.desc()).limit(limit))]

    def feedback_rows(self, chat_id: int) -> list[dict]:
        f = feedback_table
        return self._rows(select(f).where(f.c.chat_id == int(chat_id)).order_by(f.c.id))

    def questions_per_day(self, course: str | None = None, days: int = 30) -> list[tuple[str, int]]:
        """(YYYY-MM-DD, questions) for the last `days` days that had any, oldest first (local time)."""
        since = time.time() - days * 86400
        query = _for_course(select(chats_table.c.created), course).where(chats_table.c.created >= since)
        with self.engine.connect() as db:
            # Grouped here rather than in SQL: "local time" is this server's, whatever the database's is.
            counts = Counter(dt.date.fromtimestamp(created).isoformat() for created in db.execute(query).scalars())
        return sorted(counts.items())

    def most_cited(self, course: str | None = None, limit: int = 10) -> list[tuple[str, int]]:
        """(file path, answers citing it), most cited first; a file cited twice in one answer counts once."""
        counts: Counter[str] = Counter()
        with self.engine.connect() as db:
            for citations in db.execute(_for_course(select(chats_table.c.citations), course)).scalars():
                counts.update({c["locator"]["path"] for c in json.loads(citations) if c.get("locator")})
        return sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:limit]

    def refused(self, course: str | None = None, limit: int = 50) -> list[dict]:
        """Questions the tutor declined (out of scope, or graded homework), newest first."""
        c = chats_table
        query = _for_course(select(c), course).where(c.c.refused.is_not(None))
        return [_decode(row) for row in self._rows(query.order_by(c.c.created.desc(), c.c.id.desc()).limit(limit))]

    def low_confidence(self, course: str | None = None, threshold: float = LOW_CONFIDENCE_SIMILARITY,
                       limit: int = 50) -> list[dict]:
        """Answered questions whose best passage was only weakly similar: likely gaps in the material."""
        c = chats_table
        query = _for_course(select(c), course).where(
            c.c.refused.is_(None), c.c.top_similarity.is_not(None), c.c.top_similarity < threshold)
        return [_decode(row) for row in self._rows(query.order_by(c.c.top_similarity, c.c.id.desc()).limit(limit))]

    def thumbs_down(self, course: str | None = None, limit: int = 50) -> list[dict]:
        """Answers whose latest rating is a thumbs down, newest first, with category and comment."""
        c, f = chats_table, _latest_feedback()
        query = select(c, f.c.rating, f.c.category, f.c.comment).select_from(
            c.join(f, and_(f.c.chat_id == c.c.id, f.c.rating == -1)))
        query = _for_course(query, course).order_by(f.c.created.desc(), c.c.id.desc()).limit(limit)
        return [_decode(row) for row in self._rows(query)]

    def _rows(self, query) -> list[dict]:
        with self.engine.connect() as db:
            return [dict(row._mapping) for row in db.execute(query)]

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


def _for_course(query, course: str | None):
    return query.where(chats_table.c.course == course) if course else query


def _decode(row: dict) -> dict:
    row = dict(row)
    for key in ("citations", "demos", "timings"):
        if key in row and isinstance(row[key], str):
            row[key] = json.loads(row[key])
    row["when"] = dt.datetime.fromtimestamp(row["created"]).strftime("%Y-%m-%d %H:%M")
    return row
