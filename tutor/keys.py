"""API keys of the tutor's OpenAI-compatible API: created and revoked with `tutor keys`, stored hashed.

    keys = ApiKeys(engine)                                         # the chat-log database (tutor/db)
    key, secret = keys.create(owner="alice", course="dl-intro")   # the secret is shown once, never stored
    keys.verify(secret)                                            # the ApiKey, or None (unknown or revoked)
    keys.revoke(key.id)

A key is `tutor-` and 32 random bytes (URL-safe base64). The database keeps its SHA-256 (a slow
password hash buys nothing for a random 256-bit secret) and its first characters, so a listing shows
which key is which. Each key has an owner, the student id its questions are logged and counted under,
and a course scope: one course id, or `*` for every course. Nothing is cached: a revoked key is
refused by every replica from its next request on.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import asdict, dataclass

from sqlalchemy import Engine, select, update

from ingest.errors import TutorError
from tutor.db import write_transaction
from tutor.db.schema import api_keys

ALL_COURSES = "*"
KEY_PREFIX = "tutor-"
SHOWN_CHARS = 12           # how much of a key a listing shows: "tutor-AbCdEf"


class ApiKeyError(TutorError, ValueError):
    """A key cannot be created or revoked as asked; the message says what to give instead."""


@dataclass(frozen=True)
class ApiKey:
    id: int
    prefix: str
    owner: str
    course: str              # a course id, or ALL_COURSES
    created: float
    revoked: float | None = None

    def allows(self, course: str) -> bool:
        return self.course in (ALL_COURSES, course)

    def to_dict(self) -> dict:
        return asdict(self)


class ApiKeys:
    def __init__(self, engine: Engine):
        self.engine = engine

    def create(self, owner: str, course: str) -> tuple[ApiKey, str]:
        """A new key for `owner` on `course` (or "*"); returns it and its secret, which only this call sees."""
        owner, course = (owner or "").strip(), (course or "").strip()
        if not owner or len(owner) > 200:
            raise ApiKeyError("give the key an owner (--owner), e.g. a student id or 'discord-bot', "
                              "at most 200 characters")
        if not course:
            raise ApiKeyError(f"give the key a course (--course COURSE_ID, or '{ALL_COURSES}' for every course)")
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        row = {"digest": _digest(secret), "prefix": secret[:SHOWN_CHARS], "owner": owner, "course": course,
               "created": time.time(), "revoked": None}
        with write_transaction(self.engine) as db:
            key_id = db.execute(api_keys.insert().values(row)).inserted_primary_key[0]
        return ApiKey(id=int(key_id), **{k: v for k, v in row.items() if k != "digest"}), secret

    def list(self) -> list[ApiKey]:
        """Every key, revoked ones included, oldest first."""
        with self.engine.connect() as db:
            return [_key(row) for row in db.execute(select(api_keys).order_by(api_keys.c.id))]

    def revoke(self, key_id: int) -> ApiKey:
        """Revoke a key (again is harmless); its requests get 401 from now on."""
        with write_transaction(self.engine) as db:
            db.execute(update(api_keys).where(api_keys.c.id == int(key_id), api_keys.c.revoked.is_(None))
                       .values(revoked=time.time()))
            row = db.execute(select(api_keys).where(api_keys.c.id == int(key_id))).first()
        if row is None:
            raise ApiKeyError(f"no API key with id {key_id}; `tutor keys list` shows the ids")
        return _key(row)

    def verify(self, secret: str) -> ApiKey | None:
        """The live key whose secret this is, or None."""
        if not secret or not secret.startswith(KEY_PREFIX):
            return None
        with self.engine.connect() as db:
            row = db.execute(select(api_keys).where(api_keys.c.digest == _digest(secret))).first()
        if row is None or row.revoked is not None:
            return None
        return _key(row)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _key(row) -> ApiKey:
    data = row._mapping
    return ApiKey(id=data["id"], prefix=data["prefix"], owner=data["owner"], course=data["course"],
                  created=data["created"], revoked=data["revoked"])
