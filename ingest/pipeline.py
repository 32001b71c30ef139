"""Course folder -> index, incrementally: `ingest_course` is what `tutor ingest` runs.

Unchanged files (same size and mtime, or same content hash) are neither re-read nor re-embedded:
their chunks and vectors come from the live build. Changed files are re-loaded and re-chunked, and
only chunk texts the embedding cache has never seen are embedded; so are the sentences extractive
answers may quote (`ingest/sentences.py`), one vector each, so that answering costs no embedding
beyond the question's. A file that cannot be read is skipped with its reason; if an earlier version
of it was indexed, that version keeps serving. Nothing is written unless something changed (or the
live build is of an older format), and then the whole build is swapped in atomically.

A symlink is judged by where it really leads, not by its name: one that leads to a solution (or a
folder holding one), out of the course folder, or into a folder the course leaves out is skipped with
its reason, so a solution is only ever indexed once, as a solution, under its own path. A link to an
ordinary course file is indexed under the link's name, with the kind of the file it leads to.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ingest import defaults
from ingest.chunk import Chunker, ChunkerSettings
from ingest.course import CourseConfig, left_out, load_course, walk_course
from ingest.embed import Embedder, EmbeddingCache, embed_with_cache
from ingest.errors import LoaderError
from ingest.loaders import LOADERS_VERSION, load_file, loader_for
from ingest.model import Chunk, LoadOptions, SourceFile
from ingest.sentences import SENTENCE_RULES_VERSION, SentenceVectors, embed_sentences
from ingest.store import FORMAT_VERSION, IndexManifest, index_root_of, load_index, read_manifest, write_index

Progress = Callable[[float, str], None]
logging.getLogger("pypdf").setLevel(logging.ERROR)  # a damaged PDF gets one reason in the report, not log noise


@dataclass
class IngestReport:
    course: str
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    chunks: int = 0
    embedded: int = 0                 # chunk texts newly embedded
    sentences_embedded: int = 0       # quotable sentences newly embedded
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    index_path: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        lines = [
            f"course {self.course}: {len(self.added)} added, {len(self.changed)} changed, "
            f"{len(self.removed)} removed, {len(self.unchanged)} unchanged, {len(self.skipped)} skipped",
            f"{self.chunks} chunks, {self.embedded} newly embedded ({self.sentences_embedded} sentences), "
            f"{self.seconds:.1f} s",
        ]
        lines += [f"  skipped {s['path']}: {s['reason']}" for s in self.skipped]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


@dataclass(frozen=True)
class IngestOptions:
    data_dir: Path
    embedding_model: str = ""
    chunk_tokens: int = defaults.CHUNK_TOKENS
    chunk_overlap: int = defaults.CHUNK_OVERLAP
    max_file_mb: float = defaults.MAX_FILE_MB
    rebuild: bool = False
    embedding_backend: str = defaults.EMBEDDING_BACKEND
    hnsw_threshold: int = defaults.HNSW_THRESHOLD
    ocr: bool = False                 # OCR PDFs without a text layer (ingest.model.LoadOptions)
    code_framework: str = defaults.CODE_FRAMEWORK   # the framework kept from multi-framework code tabs


def ingest_course(course_dir: str | Path, options: IngestOptions, embedder: Embedder | None = None,
                  progress: Progress | None = None) -> IngestReport:
    started = time.perf_counter()
    course = load_course(course_dir)
    embedder = embedder or Embedder(options.embedding_model, backend=options.embedding_backend,
                                    onnx_dir=Path(options.data_dir) / "cache" / "onnx")
    index_root = index_root_of(options.data_dir)
    index_root.mkdir(parents=True, exist_ok=True)
    with _course_lock(index_root, course.id):
        report = _ingest_locked(course, options, embedder, index_root, progress)
    report.seconds = round(time.perf_counter() - started, 3)
    return report


class _course_lock:
    """One ingest per course at a time (a second one waits), across processes."""

    def __init__(self, index_root: Path, course: str):
        self.path = index_root / f".{course}.lock"

    def __enter__(self):
        self.fh = open(self.path, "w")
        fcntl.flock(self.fh, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()


def _ingest_locked(course: CourseConfig, options: IngestOptions, embedder: Embedder, index_root: Path,
                   progress: Progress | None) -> IngestReport:
    report = IngestReport(course=course.id)
    chunker_settings = ChunkerSettings(options.chunk_tokens, options.chunk_overlap, embedder.name)
    # What the text of a file depends on besides its bytes: a change re-reads every file.
    reading = {**chunker_settings.to_dict(), "loaders": LOADERS_VERSION, "sentences": SENTENCE_RULES_VERSION,
               "ocr": options.ocr, "code_framework": options.code_framework}
    embedder_info = {"name": embedder.name, "backend": embedder.backend, "dimension": embedder.dimension,
                     "fingerprint": embedder.fingerprint}
    previous = read_manifest(index_root, course.id)
    previous_chunks: dict[str, Chunk] = {}
    previous_vectors: np.ndarray | None = None
    previous_row: dict[str, int] = {}
    previous_files: dict[str, dict] = {}
    previous_sentences: SentenceVectors | None = None
    rebuilding = False
    if previous is not None:
        reason = _rebuild_reason(previous, embedder_info, reading)
        if reason or options.rebuild:
            rebuilding = True
            report.notes.append(f"rebuilt every file: {reason or 'asked with --rebuild'}")
        else:
            live = load_index(index_root, course.id)
            previous_chunks = {c.id: c for c in live.chunks}
            previous_vectors = live.vectors
            previous_row = live.row_of
            previous_files = previous.files
            previous_sentences = live.sentences
            if previous.format_version < FORMAT_VERSION:
                report.notes.append(f"index format {previous.format_version} -> {FORMAT_VERSION}: added the "
                                    "sentence vectors extractive answers quote from")

    candidates = _candidate_files(course, options, report)
    chunker = Chunker(embedder.tokenizer, chunker_settings)
    files: dict[str, dict] = {}
    kept: list[Chunk] = []            # chunks carried over from the live build
    kept_rows: list[int] = []
    fresh: list[Chunk] = []           # chunks of added/changed files
    demos: dict[str, dict] = {}
    bar = _progress_bar(len(candidates))
    for done, (path, rel, kind) in enumerate(candidates):
        if progress:
            progress(done / max(len(candidates), 1), rel)
        bar.update(1)
        stat = path.stat()
        old = previous_files.get(rel)
        digest = None
        if old and old["size"] == stat.st_size and old["mtime_ns"] == stat.st_mtime_ns and old["kind"] == kind:
            digest = old["sha256"]
        else:
            digest = _sha256(path)
        if old and old["sha256"] == digest and old["kind"] == kind:
            files[rel] = {**old, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
            for cid in old["chunk_ids"]:
                kept.append(previous_chunks[cid])
                kept_rows.append(previous_row[cid])
            if old.get("demo"):
                demos[rel] = old["demo"]
            report.unchanged.append(rel)
            continue
        try:
            document = load_file(SourceFile(path=path, rel=rel, kind=kind, demo_base=course.demo_base,
                                            options=LoadOptions(options.ocr, options.code_framework)))
            chunks = chunker.split_document(document)
            if not chunks:
                raise LoaderError("no text found in the file; add text or remove it from the course")
        except LoaderError as exc:
            reason = str(exc)
            if old:
                reason += " (the previously indexed version is kept)"
                files[rel] = old
                for cid in old["chunk_ids"]:
                    kept.append(previous_chunks[cid])
                    kept_rows.append(previous_row[cid])
            report.skipped.append({"path": rel, "reason": reason})
            continue
        files[rel] = {
            "sha256": digest, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "kind": kind,
            "title": document.title, "chunk_ids": [c.id for c in chunks],
        }
        if document.demo:
            files[rel]["demo"] = demos[rel] = document.demo.to_dict()
        fresh.extend(chunks)
        (report.changed if old else report.added).append(rel)
    bar.close()

    # A file skipped before loading (now empty, too big, a link to a solution) leaves the index too.
    report.removed = sorted(set(previous_files) - set(files))
    report.chunks = len(kept) + len(fresh)
    live_link = index_root / course.id
    if previous is not None and not rebuilding and previous.format_version == FORMAT_VERSION \
            and not (report.added or report.changed or report.removed):
        report.index_path = str(live_link.resolve())
        return report  # nothing to do: the live build already is this build

    cache = EmbeddingCache(Path(options.data_dir) / "cache" / f"embeddings-{embedder.fingerprint}.sqlite",
                           embedder.dimension)
    try:
        if progress:
            progress(0.95, f"embedding {len(fresh)} chunks")
        fresh_vectors, report.embedded = embed_with_cache(
            embedder, cache, [c.embed_text() for c in fresh], [c.text_hash for c in fresh])
        if progress:
            progress(0.97, "embedding the sentences answers may quote")
        sentences, report.sentences_embedded = embed_sentences(kept + fresh, embedder, cache, previous_sentences)
    finally:
        cache.close()
    kept_vectors = previous_vectors[kept_rows] if kept_rows else np.zeros((0, embedder.dimension), np.float32)
    vectors = np.concatenate([kept_vectors, fresh_vectors]) if len(fresh) else kept_vectors
    manifest = IndexManifest(course=course.id, embedder=embedder_info, chunker=reading,
                             files=files, skipped=report.skipped)
    course.demos = demos
    final = write_index(index_root, manifest, kept + fresh, vectors, course, sentences,
                        hnsw_threshold=options.hnsw_threshold)
    report.index_path = str(final)
    if progress:
        progress(1.0, "done")
    return report


def _rebuild_reason(previous: IndexManifest, embedder: dict, chunker: dict) -> str:
    if previous.embedder.get("fingerprint") != embedder["fingerprint"] or \
            previous.embedder.get("dimension") != embedder["dimension"]:
        return (f"the embedding model changed ({previous.embedder.get('name')} -> {embedder['name']}), "
                "so every chunk was embedded again")
    if previous.chunker != chunker:
        changed = sorted(k for k in set(previous.chunker) | set(chunker) if previous.chunker.get(k) != chunker.get(k))
        return ("how files are read or chunked changed (" + ", ".join(
            f"{k}: {previous.chunker.get(k)} -> {chunker.get(k)}" for k in changed) + "), so every file was read again")
    return ""


def _candidate_files(course: CourseConfig, options: IngestOptions,
                     report: IngestReport) -> list[tuple[Path, str, str]]:
    """(path, rel, kind) of each file to index; what is refused goes to `report.skipped`."""
    root = course.root
    cap = int(options.max_file_mb * 1024 * 1024)
    found = []
    rels = []
    for path in walk_course(root):
        rel = path.relative_to(root).as_posix()
        rels.append(rel)
        kind = course.kind_for(rel)
        if kind is None:
            continue  # not part of the course per course.toml's sources
        real_rel, reason = _through_link(course, path)
        if reason:
            report.skipped.append({"path": rel, "reason": reason})
            continue
        if real_rel:
            kind = course.kind_for(real_rel) or kind
        if loader_for(path.suffix) is None:
            report.skipped.append({"path": rel, "reason": f"unsupported file type '{path.suffix or '(none)'}'"})
            continue
        size = path.stat().st_size
        if size == 0:
            report.skipped.append({"path": rel, "reason": "file is empty (0 bytes)"})
            continue
        if size > cap:
            report.skipped.append({"path": rel, "reason": f"file is {size / 2**20:.1f} MB, over the "
                                   f"{options.max_file_mb:g} MB cap (raise max_file_mb to include it)"})
            continue
        found.append((path, rel, kind))
    for glob in course.unmatched_globs(rels):
        report.notes.append(f"no file matches the course.toml source '{glob}' (a build step such as "
                            "`make corpus` may not have run)")
    return found


_NEVER_TAUGHT = "solutions are never teaching material, so a solution is indexed only under its own path"


def _through_link(course: CourseConfig, path: Path) -> tuple[str, str]:
    """(where `path` really leads, relative to the course, or '' when no symlink is involved; why it is
    not indexed, or '' when it is no link or a link to an ordinary file of the course).

    The link may be `path` itself or any folder above it."""
    try:
        real = path.resolve()
    except (OSError, RuntimeError):  # RuntimeError: a loop of links, before Python 3.13
        return "", "symlink loop; fix or remove the link"
    if real == path:
        return "", ""
    if not real.is_relative_to(course.root):
        return "", "symlink points outside the course folder; copy the file into the folder instead"
    real_rel = real.relative_to(course.root).as_posix()
    if real.is_dir():
        inside = [p.relative_to(course.root).as_posix() for p in walk_course(real)]
        if any(course.kind_for(r) == "solution" for r in inside):
            return real_rel, f"links to a folder of solutions ({real_rel}); {_NEVER_TAUGHT}"
        return real_rel, (f"links to a folder ({real_rel}); folder links are not followed, and the files in "
                          "it are indexed under their own paths")
    if not real.is_file():
        return real_rel, "broken symlink (its target does not exist); fix or remove the link"
    if course.kind_for(real_rel) == "solution":
        return real_rel, f"links to a solution file ({real_rel}); {_NEVER_TAUGHT}"
    if left_out(real_rel):
        return real_rel, (f"links to {real_rel}, which the course leaves out (a hidden file or folder, "
                          "or a build cache)")
    return real_rel, ""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _progress_bar(total: int):
    from tqdm import tqdm

    return tqdm(total=total, unit="file", desc="ingest", disable=not sys.stderr.isatty(), leave=False)
