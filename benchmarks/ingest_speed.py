"""Ingest speed: a full ingest, then an incremental one after one file changed, in the same process.

    .venv/bin/python benchmarks/ingest_speed.py [COURSE_DIR ...]

Default courses: the dev lectures in ../shared/dev/lectures (if present) and the shipped course
corpus/dl-intro (its decks built first with `make corpus`). Each course is copied to a temporary
folder and ingested into a fresh data dir with a fresh embedding cache, so the full ingest really
embeds everything. The embedding model is loaded once before timing (it is shared by both runs).
Prints chunks per second and the incremental/full time ratio (target: under 5%).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ingest.embed import Embedder  # noqa: E402
from ingest.pipeline import IngestOptions, ingest_course  # noqa: E402


def measure(course: Path, embedder: Embedder) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / course.name
        shutil.copytree(course, copy, symlinks=True)
        options = IngestOptions(data_dir=Path(tmp) / "data")
        started = time.perf_counter()
        full = ingest_course(copy, options, embedder=embedder)
        full_s = time.perf_counter() - started

        target = _file_to_change(copy)
        with open(target, "a", encoding="utf-8") as fh:
            fh.write("\n\nAn added paragraph: the benchmark changed this file to time an incremental ingest.\n")
        started = time.perf_counter()
        incremental = ingest_course(copy, options, embedder=embedder)
        incremental_s = time.perf_counter() - started
    files = len(full.added) + len(full.skipped)
    return {
        "course": course.name, "files": files, "chunks": full.chunks, "full_s": full_s,
        "chunks_per_s": full.chunks / full_s, "changed": incremental.changed, "incremental_s": incremental_s,
        "re_embedded": incremental.embedded, "ratio": incremental_s / full_s,
    }


def _file_to_change(course: Path) -> Path:
    for pattern in ("book/*.md", "*.md", "*.txt", "**/*.md"):
        found = sorted(course.glob(pattern))
        if found:
            return found[0]
    raise SystemExit(f"no text file to change in {course}")


def main(argv: list[str]) -> None:
    courses = [Path(a) for a in argv]
    if not courses:
        dev = ROOT.parent / "shared/dev/lectures"
        courses = [p for p in (dev, ROOT / "corpus/dl-intro") if p.is_dir()]
    embedder = Embedder()
    embedder.encode(["warm up the model"])
    print(f"{'course':<14} {'files':>5} {'chunks':>6} {'full s':>7} {'chunks/s':>8} "
          f"{'incr s':>7} {'re-embedded':>11} {'incr/full':>9}")
    for course in courses:
        r = measure(course, embedder)
        print(f"{r['course']:<14} {r['files']:>5} {r['chunks']:>6} {r['full_s']:>7.2f} {r['chunks_per_s']:>8.1f} "
              f"{r['incremental_s']:>7.2f} {r['re_embedded']:>11} {r['ratio']:>9.1%}")


if __name__ == "__main__":
    main(sys.argv[1:])
