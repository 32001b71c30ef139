"""A throwaway PostgreSQL server for the chat-log database tests (and benchmarks/chatlog_db.py).

    with throwaway_cluster() as server:          # initdb + pg_ctl in a temporary folder
        url = server.new_database()              # postgresql+psycopg://tutor@127.0.0.1:PORT/t_...

Debian's `postgresql` package (`/usr/lib/postgresql/<version>/bin`, or `pg_ctl` on PATH); `.ci/run`
installs it when missing. The cluster listens on a free loopback port only, trusts local connections
(it lives minutes, holds test rows), skips fsync, and is stopped and deleted at the end. PostgreSQL
refuses to run as root: as root the cluster belongs to, and runs as, `nobody`. Where it cannot start,
the fixtures skip with the reason.

Fixtures: `postgres_server` (one cluster per test session) and `postgres_url` (a fresh, empty database
on it per test).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

UNPRIVILEGED_USER = "nobody"


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL here, or it would not start; the message says why."""


@dataclass
class PostgresServer:
    port: int
    user: str = "tutor"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A new empty database; returns its SQLAlchemy URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user={self.user} dbname=postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def postgres_bin() -> Path:
    """The folder of initdb/pg_ctl: Debian's newest version, else whatever PATH has."""
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3]))
    found = versions[-1] if versions else shutil.which("pg_ctl")
    if not found or not Path(found).with_name("initdb").exists():
        raise PostgresUnavailable("PostgreSQL is not installed (Debian: apt-get install postgresql); "
                                  "the PostgreSQL tests need initdb and pg_ctl")
    return Path(found).parent


@contextlib.contextmanager
def throwaway_cluster(durable: bool = False) -> Iterator[PostgresServer]:
    """`durable`: keep PostgreSQL's fsync and synchronous commit (as a real server has them; benchmarks)."""
    bin_dir = postgres_bin()
    run_as: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="tutor-pg-"))
    if os.geteuid() == 0:
        try:
            account = pwd.getpwnam(UNPRIVILEGED_USER)
        except KeyError:
            raise PostgresUnavailable(f"running as root and there is no {UNPRIVILEGED_USER!r} user to run "
                                      "PostgreSQL as (it refuses root)") from None
        os.chown(folder, account.pw_uid, account.pw_gid)
        run_as = ["setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--clear-groups"]
    data, log = folder / "data", folder / "server.log"
    port = _free_port()

    def run(*command: str) -> None:
        done = subprocess.run([*run_as, *command], cwd=folder, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "LC_ALL": "C"})
        if done.returncode != 0:
            tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
            raise PostgresUnavailable(f"{Path(command[0]).name} failed ({done.returncode}): "
                                      f"{(done.stderr or done.stdout).strip()[-1500:]}\n{tail}")

    try:
        run(str(bin_dir / "initdb"), "-D", str(data), "-U", "tutor", "-A", "trust", "-E", "UTF8", "--no-sync")
        options = f"-h 127.0.0.1 -p {port} -k {folder} -c max_connections=200"
        if not durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start")
        try:
            yield PostgresServer(port)
        finally:
            with contextlib.suppress(Exception):
                run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    try:
        with throwaway_cluster() as server:
            yield server
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture
def postgres_url(postgres_server) -> str:
    return postgres_server.new_database()
