"""Quotas: how many questions a student may ask per hour and per day, and how many answers one API
key may have in progress at once, from the course's `[quotas]` (ingest/course.py `Quotas`).

    book = QuotaBook(engine)                                        # the chat-log database (tutor/db)
    admission = book.admit("alice", "dl-intro", course.quotas, api_key_id=key.id)   # or QuotaExceeded
    try:
        ...answer...
    finally:
        admission.finish()

Counted in the database, not in memory, so every replica behind a load balancer agrees: an admitted
question is a row of `asked`, written in the same transaction that counts the rows before it. That
transaction holds the database's write lock on SQLite, and on PostgreSQL advisory locks on the student
and the key, so two replicas admitting at the same moment cannot both take the last place. A question
refused by a quota is not counted. The windows roll (the last 3600 s, the last 86400 s), so the time a
student may ask again is exact: when their oldest question in the window leaves it.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine, delete, func, select, text, update

from ingest.course import Quotas
from ingest.errors import TutorError
from tutor.db import write_transaction
from tutor.db.schema import asked

HOUR_S, DAY_S = 3600, 86400
# An answer that never said it finished (its replica died mid-answer) frees its key's slot after this.
STALE_ANSWER_S = 600
# Over the concurrency limit there is no time to promise: ask the client to retry shortly.
CONCURRENCY_RETRY_S = 1


class QuotaExceeded(TutorError):
    """A question over one of the course's quotas; `retry_at` (unix time) says when it would be admitted."""

    def __init__(self, message: str, retry_at: float, limit: str, now: float):
        super().__init__(message)
        self.retry_at = retry_at
        self.limit = limit                       # questions_per_hour | questions_per_day | concurrent_answers_per_key
        self.retry_after_s = max(1, math.ceil(retry_at - now))


@dataclass
class Admission:
    """An admitted question; `finish()` when its answer is done (frees its key's concurrency slot)."""

    engine: Engine | None = None
    row_id: int | None = None

    def finish(self) -> None:
        if self.engine is None or self.row_id is None:
            return
        with write_transaction(self.engine) as db:
            db.execute(update(asked).where(asked.c.id == self.row_id).values(finished=time.time()))
        self.row_id = None


class QuotaBook:
    def __init__(self, engine: Engine, clock: Callable[[], float] = time.time):
        self.engine = engine
        self.clock = clock

    def admit(self, student: str, course: str, quotas: Quotas, api_key_id: int | None = None) -> Admission:
        """Count one question of `student` on `course`, or raise `QuotaExceeded` (and count nothing)."""
        per_key = quotas.concurrent_answers_per_key if api_key_id is not None else 0
        if not (quotas.questions_per_hour or quotas.questions_per_day or per_key):
            return Admission()                    # no limits: nothing to count
        now = self.clock()
        with write_transaction(self.engine) as db:
            if db.dialect.name == "postgresql":
                db.execute(text("SELECT pg_advisory_xact_lock(1, hashtext(:who))"), {"who": f"{course}\n{student}"})
                if per_key:
                    db.execute(text("SELECT pg_advisory_xact_lock(2, :key)"), {"key": api_key_id})
            # Written first: on SQLite the insert takes the write lock, so the counts below are exact.
            row_id = db.execute(asked.insert().values(created=now, student=student, course=course,
                                                      api_key_id=api_key_id)).inserted_primary_key[0]
            mine = (asked.c.student == student) & (asked.c.course == course)
            db.execute(delete(asked).where(mine, asked.c.created < now - DAY_S - 60))
            window = DAY_S if quotas.questions_per_day else HOUR_S
            times = db.execute(select(asked.c.created).where(mine, asked.c.created > now - window)
                               .order_by(asked.c.created)).scalars().all()
            for limit, span, name, words in ((quotas.questions_per_hour, HOUR_S, "questions_per_hour", "hour"),
                                             (quotas.questions_per_day, DAY_S, "questions_per_day", "day")):
                inside = [t for t in times if t > now - span]
                if limit and len(inside) > limit:
                    retry_at = inside[len(inside) - limit - 1] + span
                    raise QuotaExceeded(f"You have asked {limit} questions in the last {words}, this course's "
                                        f"limit; you can ask again {when(retry_at, now)}.", retry_at, name, now)
            if per_key:
                running = db.execute(select(func.count()).select_from(asked).where(
                    asked.c.api_key_id == api_key_id, asked.c.finished.is_(None),
                    asked.c.created > now - STALE_ANSWER_S)).scalar()
                if running > per_key:
                    raise QuotaExceeded(f"This API key already has {per_key} answers in progress, this course's "
                                        "limit; ask again when one has finished.", now + CONCURRENCY_RETRY_S,
                                        "concurrent_answers_per_key", now)
        return Admission(self.engine, int(row_id))


def when(moment: float, now: float) -> str:
    """'at 14:05' (rounded up to the minute, local time), 'tomorrow at 09:30' past midnight."""
    at = dt.datetime.fromtimestamp(math.ceil(moment / 60) * 60)
    today = dt.datetime.fromtimestamp(now).date()
    return f"at {at:%H:%M}" if at.date() == today else f"tomorrow at {at:%H:%M}"
