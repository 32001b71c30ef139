"""What PostgreSQL costs against SQLite per logged answer: the chat-log writes of one API answer.

    .venv/bin/python benchmarks/chatlog_db.py [--answers 300] [--threads 8] [--postgres-url URL]

Per answer the API does: check the key (`ApiKeys.verify`), count the question against the course's
quotas (`QuotaBook.admit`, with limits set, so the row is written), log the answer
(`ChatLog.log_answer`, an answer of the shipped course's size: five citations) and free the
key's slot (`Admission.finish`). This times `log_answer` alone and that whole sequence, one client
after another and `--threads` at once, on a SQLite file in a temporary folder and on PostgreSQL:
`--postgres-url`, or else a throwaway local server (tests/postgres.py) with fsync and synchronous
commit on, as a real one has them. Both on this machine, over loopback for PostgreSQL.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from ingest.course import Quotas  # noqa: E402
from tutor.chatlog import ChatLog  # noqa: E402
from tutor.db import sqlite_url  # noqa: E402
from tutor.keys import ApiKeys  # noqa: E402
from tutor.quotas import QuotaBook  # noqa: E402

QUOTAS = Quotas(questions_per_hour=1_000_000, questions_per_day=1_000_000, concurrent_answers_per_key=1_000)


def an_answer(n: int) -> dict:
    citations = [{"n": i, "chunk_id": f"book/0{i}.md#{n}", "url": f"book/0{i}.md#section-{i}",
                  "locator": {"path": f"book/0{i}.md", "kind": "book", "title": f"Chapter {i}", "section": "Momentum"},
                  "quote": "Momentum keeps a running average of past gradients, which damps the oscillation.",
                  "title": f"Chapter {i}"} for i in range(1, 6)]
    return {"question": f"Why does momentum help SGD? ({n})", "text": "Momentum averages gradients [1][2]. " * 8,
            "citations": citations, "demos": [], "refused": None, "backend": "extractive", "model": "extractive",
            "timings": {"retrieve_s": 0.01, "total_s": 0.07}, "notice": "", "mode": "explain",
            "course": "dl-intro", "top_similarity": 0.71}


def measure(url: str, answers: int, threads: int) -> dict:
    log = ChatLog(url)
    keys, book = ApiKeys(log.engine), QuotaBook(log.engine)
    key, secret = keys.create("bench", "*")
    counter = iter(range(10**9))

    def log_only() -> None:
        log.log_answer("bench", an_answer(next(counter)), api_key_id=key.id)

    def whole_answer() -> None:
        n = next(counter)
        asker = keys.verify(secret)
        admission = book.admit(f"student{n % 50}", "dl-intro", QUOTAS, api_key_id=asker.id)
        log.log_answer(asker.owner, an_answer(n), api_key_id=asker.id)
        admission.finish()

    figures = {}
    for name, step in (("log_answer", log_only), ("whole API answer", whole_answer)):
        for _ in range(20):                                    # warm the pool and the caches
            step()
        samples = []
        for _ in range(answers):
            started = time.perf_counter()
            step()
            samples.append(time.perf_counter() - started)
        figures[f"{name}, one client"] = summary(samples, sum(samples))
        samples, lock = [], threading.Lock()

        def client(count: int) -> None:
            for _ in range(count):
                started = time.perf_counter()
                step()
                with lock:
                    samples.append(time.perf_counter() - started)

        workers = [threading.Thread(target=client, args=(answers // threads,)) for _ in range(threads)]
        started = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        figures[f"{name}, {threads} at once"] = summary(samples, time.perf_counter() - started)
    log.engine.dispose()
    return figures


def summary(samples: list[float], wall_s: float) -> dict:
    ordered = sorted(samples)
    return {"p50_ms": 1000 * statistics.median(ordered), "p95_ms": 1000 * ordered[int(0.95 * (len(ordered) - 1))],
            "per_s": len(samples) / wall_s}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=int, default=300, help="answers logged per measurement")
    parser.add_argument("--threads", type=int, default=8, help="clients at once in the concurrent measurement")
    parser.add_argument("--postgres-url", default="", help="a PostgreSQL database to use (default: a throwaway one)")
    args = parser.parse_args(argv)
    results = {}
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tutor-chatlog-bench-")))
        results["sqlite"] = measure(sqlite_url(folder / "chatlog.sqlite"), args.answers, args.threads)
        url = args.postgres_url
        if not url:
            from postgres import throwaway_cluster

            url = stack.enter_context(throwaway_cluster(durable=True)).new_database()
        results["postgresql"] = measure(url, args.answers, args.threads)
    print(f"{'measurement':<32} {'SQLite p50':>10} {'p95':>7} {'per s':>7}   {'PostgreSQL p50':>14} {'p95':>7} "
          f"{'per s':>7}   {'PG - SQLite p50':>15}")
    for name in results["sqlite"]:
        lite, pg = results["sqlite"][name], results["postgresql"][name]
        print(f"{name:<32} {lite['p50_ms']:>8.2f}ms {lite['p95_ms']:>5.2f}ms {lite['per_s']:>7.0f}   "
              f"{pg['p50_ms']:>12.2f}ms {pg['p95_ms']:>5.2f}ms {pg['per_s']:>7.0f}   "
              f"{pg['p50_ms'] - lite['p50_ms']:>+13.2f}ms")
    return results


if __name__ == "__main__":
    main()
