"""API keys (stored hashed, revoked at once) and quotas (per student per hour and day, concurrent
answers per key), on SQLite and on a real PostgreSQL server; the `[quotas]` table of course.toml;
the `tutor keys` commands."""

from __future__ import annotations

import datetime as dt
import json
import threading
from pathlib import Path

import pytest
from sqlalchemy import text

from ingest.course import Quotas, _parse
from ingest.errors import ConfigError
from tutor.chatlog import ChatLog
from tutor.db import sqlite_url
from tutor.keys import ApiKeyError, ApiKeys
from tutor.quotas import DAY_S, HOUR_S, STALE_ANSWER_S, QuotaBook, QuotaExceeded, when

T0 = 1_800_000_000.0


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path):
    url = sqlite_url(tmp_path / "chatlog.sqlite") if request.param == "sqlite" else \
        request.getfixturevalue("postgres_url")
    return ChatLog(url).engine


class Clock:
    def __init__(self, now: float = T0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_keys_are_stored_hashed_and_refused_once_revoked(engine):
    keys = ApiKeys(engine)
    alice, secret = keys.create("alice", "dl-intro")
    bot, bot_secret = keys.create(" discord-bot ", "*")
    assert secret.startswith("tutor-") and len(secret) > 40 and secret != bot_secret
    assert keys.verify(secret) == alice and alice.prefix == secret[:12] and bot.owner == "discord-bot"
    assert alice.allows("dl-intro") and not alice.allows("astro") and bot.allows("astro")
    with engine.connect() as db:
        stored = " ".join(str(v) for row in db.execute(text("SELECT * FROM api_keys")) for v in row)
    assert secret not in stored and secret[12:] not in stored           # only a digest and a prefix

    assert keys.revoke(alice.id).revoked is not None
    assert keys.verify(secret) is None and keys.verify(bot_secret) == bot
    assert keys.revoke(alice.id).revoked == keys.list()[0].revoked        # revoking again changes nothing
    assert keys.verify("tutor-" + "x" * 43) is None and keys.verify("") is None
    with pytest.raises(ApiKeyError, match="no API key with id 999"):
        keys.revoke(999)
    with pytest.raises(ApiKeyError, match="give the key an owner"):
        keys.create("  ", "dl-intro")


def test_hourly_and_daily_quotas_roll_and_say_when_to_ask_again(engine):
    clock = Clock()
    book = QuotaBook(engine, clock)
    quotas = Quotas(questions_per_hour=3, questions_per_day=5)
    asked_at = []
    for minute in (0, 10, 20):
        clock.now = T0 + minute * 60
        book.admit("alice", "dl", quotas).finish()
        asked_at.append(clock.now)
    clock.now = T0 + 30 * 60
    with pytest.raises(QuotaExceeded) as refused:
        book.admit("alice", "dl", quotas)
    assert refused.value.limit == "questions_per_hour"
    assert refused.value.retry_at == asked_at[0] + HOUR_S and refused.value.retry_after_s == 30 * 60
    assert f"you can ask again {when(asked_at[0] + HOUR_S, clock.now)}." in str(refused.value)
    book.admit("bob", "dl", quotas)                    # another student, another count
    book.admit("alice", "ml", quotas)                  # another course, another count

    clock.now = T0 + HOUR_S + 1                        # the first question has left the hour
    book.admit("alice", "dl", quotas)
    clock.now = T0 + HOUR_S + 11 * 60                  # so has the second: 4 in the day so far
    book.admit("alice", "dl", quotas)
    clock.now = T0 + 2 * HOUR_S + 30 * 60
    with pytest.raises(QuotaExceeded) as daily:
        book.admit("alice", "dl", quotas)
    assert daily.value.limit == "questions_per_day" and daily.value.retry_at == asked_at[0] + DAY_S
    clock.now = T0 + DAY_S + 1
    book.admit("alice", "dl", quotas)


def test_concurrent_answers_are_limited_per_key_until_finished_or_stale(engine):
    clock = Clock()
    book = QuotaBook(engine, clock)
    quotas = Quotas(concurrent_answers_per_key=2)
    first, second = book.admit("alice", "dl", quotas, api_key_id=1), book.admit("bob", "dl", quotas, api_key_id=1)
    with pytest.raises(QuotaExceeded) as busy:
        book.admit("carol", "dl", quotas, api_key_id=1)
    assert busy.value.limit == "concurrent_answers_per_key" and busy.value.retry_after_s == 1
    book.admit("alice", "dl", quotas, api_key_id=2).finish()           # another key has its own slots
    book.admit("alice", "dl", quotas)                                  # the chat page has no key: no limit
    first.finish()
    book.admit("carol", "dl", quotas, api_key_id=1)
    clock.now = T0 + STALE_ANSWER_S + 1                                # a replica died mid-answer
    book.admit("dave", "dl", quotas, api_key_id=1)
    second.finish()


def test_simultaneous_questions_never_pass_the_limit(engine):
    """20 questions of one student at once against a limit of 5: exactly 5 are admitted."""
    book = QuotaBook(engine)
    quotas = Quotas(questions_per_hour=5)
    admitted, refused, go = [], [], threading.Barrier(20)

    def ask() -> None:
        go.wait()
        try:
            book.admit("alice", "dl", quotas)
            admitted.append(1)
        except QuotaExceeded:
            refused.append(1)

    threads = [threading.Thread(target=ask) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (len(admitted), len(refused)) == (5, 15)


def test_no_quotas_means_nothing_is_counted(engine):
    book = QuotaBook(engine)
    for _ in range(50):
        book.admit("alice", "dl", Quotas(), api_key_id=1).finish()
    with engine.connect() as db:
        assert db.execute(text("SELECT COUNT(*) FROM asked")).scalar() == 0


@pytest.mark.parametrize("table, expected", [
    ({}, Quotas()),
    ({"questions_per_hour": 20}, Quotas(questions_per_hour=20)),
    ({"questions_per_hour": 20, "questions_per_day": 100, "concurrent_answers_per_key": 4}, Quotas(20, 100, 4)),
    ({"questions_per_hour": 0}, Quotas()),
    ({"per_hour": 20}, "unknown key 'per_hour'; accepted: questions_per_hour, questions_per_day, "
                       "concurrent_answers_per_key"),
    ({"questions_per_day": -1}, "questions_per_day = -1: give a whole number, 0 for no limit"),
    ({"questions_per_day": 2.5}, "questions_per_day = 2.5"),
    ({"concurrent_answers_per_key": True}, "concurrent_answers_per_key = True"),
])
def test_course_toml_quotas(table, expected, tmp_path):
    if isinstance(expected, Quotas):
        course = _parse(tmp_path, {"quotas": table} if table else {})
        assert course.quotas == expected
        assert type(course).from_dict(course.to_dict()).quotas == expected      # through the index's course.json
    else:
        with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace(")", r"\)")):
            _parse(tmp_path, {"quotas": table})


def test_when_names_the_minute_and_the_day():
    now = dt.datetime(2026, 3, 2, 14, 0, 30).timestamp()
    assert when(now + 4 * 60 + 1, now) == "at 14:05"           # rounded up: never earlier than allowed
    assert when(now + 11 * HOUR_S, now) == "tomorrow at 01:01"


def test_tutor_keys_create_list_revoke(tmp_path):
    from typer.testing import CliRunner

    from tutor.cli import app

    cli = CliRunner()
    data = ["--data-dir", str(tmp_path)]
    made = cli.invoke(app, ["keys", "create", "--owner", "alice", "--course", "dl-intro", "--json", *data])
    assert made.exit_code == 0, made.output
    key = json.loads(made.output)
    assert key["owner"] == "alice" and key["course"] == "dl-intro" and key["key"].startswith(key["prefix"])
    shown = cli.invoke(app, ["keys", "create", "--owner", "bot", "--course", "*", *data]).output
    assert "Keep it now: it is not shown again" in shown and "tutor-" in shown

    listed = cli.invoke(app, ["keys", "list", *data]).output.splitlines()
    assert [line.split()[2:4] for line in listed] == [["alice", "dl-intro"], ["bot", "*"]]
    assert all(line.endswith("active") for line in listed) and key["key"] not in "\n".join(listed)
    revoked = cli.invoke(app, ["keys", "revoke", str(key["id"]), *data])
    assert revoked.exit_code == 0 and f"revoked API key {key['id']}" in revoked.output
    assert json.loads(cli.invoke(app, ["keys", "list", "--json", *data]).output)[0]["revoked"] is not None
    missing = cli.invoke(app, ["keys", "revoke", "42", *data])
    assert missing.exit_code == 2 and "no API key with id 42" in missing.output
    assert ApiKeys(ChatLog(Path(tmp_path) / "chatlog.sqlite").engine).verify(key["key"]) is None
