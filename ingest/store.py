"""The index on disk: written whole into a new folder, then swapped in with one atomic rename.

    <data dir>/index/<course>            symlink -> .builds/<course>-<stamp>
    <data dir>/index/.builds/<course>-<stamp>/
        manifest.json    format version, course, embedder, chunker, per-file hash -> chunk ids
        chunks.jsonl     one chunk a line; line i is row i of the vectors and of FAISS
        vectors.npy      float32, L2-normalised
        faiss.index      exact IndexFlatIP over the vectors, or HNSW past `hnsw_threshold` chunks (vector_index.py)
        lexical/         BM25 (bm25s)
        sentences.npy    float32, one row per sentence an extractive answer may quote (ingest/sentences.py)
        sentences.json   chunk id -> [start, end) rows of sentences.npy, and the sentence texts
        course.json      the course (`CourseConfig.to_dict`): title, policy, schedule, assignments, demos

A reader follows the symlink once and sees a complete build; a writer killed at any point leaves
the symlink (and so the serving index) untouched. The previous build is kept one generation so a
reader that opened it just before the swap can finish.

Format 2 added the sentence files. A format-1 build still loads (its `sentences` is None and
extractive answers embed sentences at question time); the next ingest adds them.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from ingest.course import CourseConfig
from ingest.errors import CourseNotFoundError, IndexMismatchError, TutorError
from ingest.lexical import LexicalIndex
from ingest.model import Chunk
from ingest.sentences import SentenceVectors
from ingest.vector_index import DEFAULT_HNSW_THRESHOLD, build_vector_index

FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
BUILDS = ".builds"


@dataclass
class IndexManifest:
    course: str
    embedder: dict[str, Any]
    chunker: dict[str, Any]
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)
    built_at: float = 0.0
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version, "course": self.course, "embedder": self.embedder,
            "chunker": self.chunker, "built_at": self.built_at, "files": self.files, "skipped": self.skipped,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IndexManifest:
        return cls(
            course=data["course"], embedder=data["embedder"], chunker=data["chunker"],
            files=data.get("files", {}), skipped=data.get("skipped", []),
            built_at=data.get("built_at", 0.0), format_version=data.get("format_version", 0),
        )


@dataclass
class CourseIndex:
    """A loaded build: chunks, their vectors, FAISS, BM25, the manifest, the course (read back typed) and
    the vectors of the sentences extractive answers quote (None in a build older than format 2)."""

    path: Path
    manifest: IndexManifest
    chunks: list[Chunk]
    vectors: np.ndarray
    faiss_index: Any
    lexical: LexicalIndex
    course: CourseConfig
    sentences: SentenceVectors | None = None

    def __post_init__(self) -> None:
        self.row_of = {c.id: i for i, c in enumerate(self.chunks)}

    @property
    def course_id(self) -> str:
        return self.manifest.course


def write_index(index_root: Path, manifest: IndexManifest, chunks: list[Chunk], vectors: np.ndarray,
                course: CourseConfig, sentences: SentenceVectors,
                hnsw_threshold: int = DEFAULT_HNSW_THRESHOLD) -> Path:
    """Write a complete build beside the live one, then point `<index_root>/<course>` at it."""
    assert len(chunks) == len(vectors), "one vector per chunk"
    assert set(sentences.spans) == {c.id for c in chunks}, "sentence rows for every chunk, no other"
    builds = index_root / BUILDS
    builds.mkdir(parents=True, exist_ok=True)
    stamp = f"{time.strftime('%Y%m%dT%H%M%S')}-{time.time_ns() % 10**9:09d}"
    final = builds / f"{manifest.course}-{stamp}"
    partial = builds / f".{final.name}.partial"
    partial.mkdir()

    manifest.built_at = time.time()
    with open(partial / "chunks.jsonl", "w", encoding="utf-8") as fh:
        for chunk in chunks:
            fh.write(json.dumps(chunk.to_dict(), ensure_ascii=False) + "\n")
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    np.save(partial / "vectors.npy", vectors)
    vector_index = build_vector_index(vectors, int(manifest.embedder["dimension"]), hnsw_threshold)
    faiss.write_index(vector_index, str(partial / "faiss.index"))
    LexicalIndex.build([c.embed_text() for c in chunks]).save(partial / "lexical")
    sentences.save(partial)
    _write_json(partial / "course.json", course.to_dict())
    _write_json(partial / "manifest.json", manifest.to_dict())  # written last: its presence marks a whole build
    _fsync_tree(partial)
    os.rename(partial, final)

    link = index_root / manifest.course
    tmp_link = index_root / f".{manifest.course}.swap"
    if tmp_link.is_symlink() or tmp_link.exists():
        tmp_link.unlink()
    tmp_link.symlink_to(Path(BUILDS) / final.name)
    if link.exists() and not link.is_symlink():
        raise TutorError(f"{link} is a folder, not an index link; move it away and ingest again")
    os.replace(tmp_link, link)
    _collect_old_builds(index_root, manifest.course, keep={final.name})
    return final


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False, default=str), encoding="utf-8")


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())


def _collect_old_builds(index_root: Path, course: str, keep: set[str]) -> None:
    """Delete builds of `course` older than the previous one, and partial builds left by crashes."""
    builds = index_root / BUILDS
    mine = sorted(p for p in builds.iterdir() if p.name.startswith(f"{course}-") and p.name not in keep)
    for old in mine[:-1]:
        shutil.rmtree(old, ignore_errors=True)
    for partial in builds.glob(f".{course}-*.partial"):
        shutil.rmtree(partial, ignore_errors=True)


def index_root_of(data_dir: str | Path) -> Path:
    """Where a data folder keeps its course indexes (`Settings.index_root()` is this for the settings)."""
    return Path(data_dir) / "index"


def index_path(index_root: Path, course: str) -> Path:
    return index_root / course


def read_manifest(index_root: Path, course: str) -> IndexManifest | None:
    path = index_root / course / "manifest.json"
    if not path.is_file():
        return None
    return IndexManifest.from_dict(json.loads(path.read_text(encoding="utf-8")))


def read_chunks(folder: Path) -> list[Chunk]:
    with open(folder / "chunks.jsonl", encoding="utf-8") as fh:
        return [Chunk.from_dict(json.loads(line)) for line in fh if line.strip()]


def list_courses(index_root: Path) -> list[str]:
    if not index_root.is_dir():
        return []
    return sorted(p.name for p in index_root.iterdir()
                  if not p.name.startswith(".") and (p / "manifest.json").is_file())


def check_embedder(index: CourseIndex, fingerprint: str) -> None:
    """Questions must be embedded as the index's chunks were: same model, same backend. A mismatch
    (e.g. `embedding_backend` changed since the last ingest) fails with the fix, not with bad answers."""
    built = index.manifest.embedder.get("fingerprint")
    if built and built != fingerprint:
        raise IndexMismatchError(
            f"course '{index.course_id}' was indexed with embedder {index.manifest.embedder.get('name')} "
            f"({index.manifest.embedder.get('backend', 'torch')}), not the one configured now; run "
            "`tutor ingest COURSE_DIR` again to re-embed it, or set embedding_model/embedding_backend back")


def resolve_course(index_root: Path, course: str = "") -> str:
    """The one default-course rule: `course` if it is indexed, else the only (or first, by name) indexed
    course. Fails with what is indexed and how to fix it."""
    known = list_courses(index_root)
    if not known:
        raise CourseNotFoundError(
            f"no course is indexed under {index_root}; run `tutor ingest COURSE_DIR` (or `make run`) first")
    if course and course not in known:
        raise CourseNotFoundError(f"course '{course}' is not indexed under {index_root} (indexed: "
                                  f"{', '.join(known)}); ingest it or pick another with --course")
    return course or known[0]


def open_index(index_root: Path, course: str = "") -> CourseIndex:
    """The live index of `course`, or of the default course when `course` is empty (`resolve_course`)."""
    return load_index(index_root, resolve_course(index_root, course))


def load_index(index_root: Path, course: str) -> CourseIndex:
    """Open the live build of `course` (following the link once, so a concurrent swap is harmless)."""
    link = index_root / course
    if not (link / "manifest.json").is_file():
        known = list_courses(index_root)
        hint = f"indexed courses: {', '.join(known)}" if known else "no course is indexed yet"
        raise CourseNotFoundError(
            f"no index for course '{course}' under {index_root} ({hint}); run `tutor ingest COURSE_DIR` first"
        )
    folder = link.resolve()
    manifest = IndexManifest.from_dict(json.loads((folder / "manifest.json").read_text(encoding="utf-8")))
    if manifest.format_version not in READABLE_FORMATS:
        raise IndexMismatchError(
            f"index for '{course}' has format {manifest.format_version}, this version reads formats "
            f"{', '.join(map(str, READABLE_FORMATS))}; re-run `tutor ingest COURSE_DIR --rebuild`"
        )
    chunks = read_chunks(folder)
    vectors = np.load(folder / "vectors.npy")
    return CourseIndex(
        path=folder, manifest=manifest, chunks=chunks, vectors=vectors,
        faiss_index=faiss.read_index(str(folder / "faiss.index")),
        lexical=LexicalIndex.load(folder / "lexical", len(chunks)),
        course=CourseConfig.from_dict(json.loads((folder / "course.json").read_text(encoding="utf-8"))),
        sentences=SentenceVectors.load(folder),
    )
