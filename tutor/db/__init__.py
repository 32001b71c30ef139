"""The chat-log database: chats, feedback, API keys and quota counts, in one place every replica shares.

    engine = open_database(database_url(settings))     # migrated to the newest schema on open

A SQLite file in the data folder (`<data dir>/chatlog.sqlite`) by default, PostgreSQL when the
`database_url` setting names one (`postgresql://user@host/tutor`). The schema is `schema.py`; it
changes only through the Alembic migrations in `migrations/versions/`, which `open_database` runs, so
users never call Alembic themselves. The first migration adopts a chat log written before migrations
existed: its tables are kept as they are, rows included.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

from ingest.errors import TutorError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# A number every tutor process takes as a PostgreSQL advisory lock while it migrates, so replicas that
# start together upgrade one after another.
_MIGRATION_LOCK = 0x7475746F72  # "tutor"


class DatabaseError(TutorError, ConnectionError):
    """The chat-log database cannot be opened; the message names it (without its password)."""


def database_url(settings) -> str:
    """The `database_url` setting, or the SQLite file in the data folder when it is empty."""
    return settings.database_url or sqlite_url(settings.chatlog_path())


def sqlite_url(path: str | Path) -> str:
    return f"sqlite:///{Path(path).expanduser().resolve()}"


def open_database(url: str) -> Engine:
    """An engine on `url`, its schema upgraded to the newest revision."""
    engine = create_database_engine(url)
    try:
        upgrade(engine)
    except OperationalError as exc:
        engine.dispose()
        reason = " ".join(str(exc.orig).split())
        raise DatabaseError(f"cannot open the chat-log database {_shown(engine.url)}: {reason}; check the "
                            "database_url setting (and that the server is running)") from None
    return engine


def create_database_engine(url: str) -> Engine:
    """An engine with the settings the tutor's many short transactions want (no schema changes)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseError(f"database_url {url!r} is not a database URL; give e.g. "
                            "postgresql://user@host/tutor, or leave it empty for SQLite") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")     # the driver this project installs
    try:
        parsed.get_dialect()
    except (NoSuchModuleError, ImportError) as exc:
        raise DatabaseError(f"database_url {_shown(parsed)}: {exc}; use postgresql://user@host/tutor, or leave "
                            "it empty for SQLite") from None
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"timeout": 30}, pool_size=10, max_overflow=40)
        event.listen(engine, "connect", _sqlite_wal)
        return engine
    return create_engine(parsed, pool_pre_ping=True, pool_size=10, max_overflow=40)


# One writer at a time per SQLite engine, queued on a lock in this process. SQLite admits one writer
# anyway; left to itself, a writer that finds the file locked sleeps and retries (1, 2, 5 ... 100 ms),
# and 40 answers logged at once spent more time in those sleeps, and in opening overflow connections,
# than in writing. PostgreSQL takes concurrent writers itself.
_SQLITE_WRITERS: weakref.WeakKeyDictionary[Engine, threading.RLock] = weakref.WeakKeyDictionary()
_SQLITE_WRITERS_LOCK = threading.Lock()


@contextlib.contextmanager
def write_transaction(engine: Engine) -> Iterator:
    """`engine.begin()` for a transaction that writes: on SQLite, after the other writers of this process."""
    if engine.dialect.name != "sqlite":
        with engine.begin() as connection:
            yield connection
        return
    with _SQLITE_WRITERS_LOCK:
        lock = _SQLITE_WRITERS.setdefault(engine, threading.RLock())
    with lock, engine.begin() as connection:
        yield connection


def _sqlite_wal(dbapi_connection, _record) -> None:
    # WAL lets readers and the one writer proceed together (the Gradio worker threads all log at once).
    dbapi_connection.execute("PRAGMA journal_mode=WAL")


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Run the migrations up to `revision` (what `open_database` does; tests pick older revisions)."""
    from alembic import command

    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        config = _alembic_config(connection)
        command.upgrade(config, revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config(None)).get_current_head()


def _alembic_config(connection):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def _shown(url) -> str:
    return url.render_as_string(hide_password=True)
