"""The answer engine: question -> retrieval -> policy -> prompt -> streamed LLM -> checked answer.

    tutor = Tutor.from_settings(load_settings())
    for event in tutor.stream("Why does momentum help SGD?"):
        if event.kind == "delta":
            print(event.text, end="")
    answer = event.answer            # the last event carries the Answer (DESIGN.md contract)

The LLM backend is chosen by name from the settings; if it is unreachable or rejects the request
before its first token, the answer falls back to `extractive` with a plain notice, so a student
always gets an answer (the technical reason goes to the `tutor.llm` log). A prompt too long for the
model's context is first tried once more with half the sources.

Nothing heavy happens at question time: the question is embedded once, together with the questions
other students ask in the same few milliseconds (`ingest/query_batch.py`), and that vector serves
the retrieval and the extractive answer, whose sentences were embedded at ingest.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import itertools
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ingest.embed import Embedder
from ingest.query_batch import QueryBatcher
from ingest.store import CourseIndex, list_courses, load_index
from tutor import policy
from tutor.citations import Citation, CitationStream, resolve_citations
from tutor.errors import CourseNotFoundError
from tutor.llm import (
    BackendConfig,
    LLMBackend,
    LLMContextTooLongError,
    LLMRequestError,
    LLMUnavailableError,
    create_backend,
)
from tutor.prompt import Source, build_messages
from tutor.retrieve import Hit, Retriever, expand_abbreviations
from tutor.models import resolve_model_path
from tutor.settings import Settings

log = logging.getLogger("tutor.llm")

_TEACHING_KINDS = ("slides", "book", "notes", "notebook", "transcript", "web")
# What students read when the model failed; the reason (URLs, errors, fixes) is for the log only.
MODEL_DOWN_NOTICE = ("The course's AI model is not reachable right now, so this answer quotes the course "
                     "material directly.")
MODEL_REFUSED_NOTICE = ("The course's AI model could not take this question, so this answer quotes the course "
                        "material directly.")
CUT_SHORT_NOTICE = "The course's AI model stopped partway through, so this answer may be incomplete."
_FOLLOW_UP = re.compile(
    r"^\s*(?:and|but|so|what about|how about|why|then|also)\b|\b(?:it|its|it's|this|that|these|those|they|"
    r"them|their|the same|the previous|above)\b", re.I)


@dataclass
class DemoLink:
    title: str
    url: str
    path: str
    cell: int | None = None

    def to_dict(self) -> dict:
        return {"title": self.title, "url": self.url, "path": self.path, "cell": self.cell}


@dataclass
class Answer:
    question: str
    text: str
    citations: list[Citation] = field(default_factory=list)
    demos: list[DemoLink] = field(default_factory=list)
    refused: str | None = None          # None | "out_of_scope" | "homework"
    backend: str = ""
    model: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    notice: str = ""                    # e.g. the LLM server was down and this is the fallback
    mode: str = "explain"
    course: str = ""
    top_similarity: float | None = None

    def to_dict(self) -> dict:
        return {
            "question": self.question, "text": self.text,
            "citations": [c.to_dict() for c in self.citations],
            "demos": [d.to_dict() for d in self.demos], "refused": self.refused,
            "backend": self.backend, "model": self.model, "timings": self.timings,
            "notice": self.notice, "mode": self.mode, "course": self.course,
            "top_similarity": self.top_similarity,
        }


@dataclass
class AnswerEvent:
    kind: str                  # "delta" (more text), "reset" (discard streamed text), "answer" (final)
    text: str = ""
    answer: Answer | None = None


def retrieval_query(question: str, history: list[tuple[str, str]]) -> str:
    """A follow-up ("what about its derivative?") is searched together with the previous question."""
    if history and (_FOLLOW_UP.search(question) or len(question.split()) <= 4):
        question = f"{history[-1][0]} {question}"
    return expand_abbreviations(question)


class Tutor:
    def __init__(self, index: CourseIndex, embedder: Embedder, backend: LLMBackend, settings: Settings,
                 fallback: LLMBackend | None = None):
        self.index = index
        self.embedder = embedder
        self.backend = backend
        self.fallback = fallback or create_backend("extractive")
        self.settings = settings
        self.queries = QueryBatcher(embedder)
        self.retriever = Retriever(index, embedder, fusion=settings.fusion, reranker_model=settings.reranker_model)
        threshold = settings.min_relevance
        self.min_relevance = policy.OUT_OF_SCOPE_SIMILARITY if threshold < 0 else threshold

    @classmethod
    def from_settings(cls, settings: Settings, course: str | None = None, embedder: Embedder | None = None,
                      backend: LLMBackend | None = None) -> Tutor:
        index = load_index(settings.index_root(), resolve_course(settings.index_root(), course or settings.course))
        embedder = embedder or Embedder(settings.embedding_model)
        return cls(index, embedder, backend or backend_from_settings(settings), settings)

    @property
    def course(self) -> dict:
        return self.index.course

    def reload_if_changed(self) -> bool:
        """Serve a newer build of the index (after an ingest) without a restart."""
        live = (self.settings.index_root() / self.index.course_id).resolve()
        if live == self.index.path:
            return False
        self.index = load_index(self.settings.index_root(), self.index.course_id)
        self.retriever = Retriever(self.index, self.embedder, fusion=self.settings.fusion,
                                   reranker_model=self.settings.reranker_model)
        return True

    def ask(self, question: str, **kwargs) -> Answer:
        answer = None
        for event in self.stream(question, **kwargs):
            if event.kind == "answer":
                answer = event.answer
        assert answer is not None
        return answer

    def stream(self, question: str, history: list[tuple[str, str]] | None = None, mode: str | None = None,
               taught_until: dt.date | None = None) -> Iterator[AnswerEvent]:
        history = history or []
        mode = mode or self.settings.mode
        timings: dict[str, float] = {}
        started = time.perf_counter()
        query = retrieval_query(question, history)
        qvec = self.queries.encode_query(query)
        hits = self.retriever.search(query, k=self.settings.top_k, taught_until=taught_until, query_vector=qvec)
        top = max((h.dense for h in hits), default=None)
        graded = self.retriever.search(query, k=3, kinds=["assignment", "solution"], query_vector=qvec)
        # An attempt to talk the tutor out of its rules gets the stricter homework match.
        strict = policy.looks_like_injection(question)
        homework = policy.match_assignment(
            question, self.course.get("assignments", []), [(h.chunk, h.dense) for h in graded],
            threshold=policy.INJECTION_HOMEWORK_SIMILARITY if strict else policy.HOMEWORK_SIMILARITY,
            teaching_similarity=top if top is not None else 1.0)
        timings["retrieve_s"] = time.perf_counter() - started
        answer = Answer(question=question, text="", mode=mode, course=self.index.course_id,
                        backend=self.backend.name, model=self.backend.model, top_similarity=top)

        if homework is None and policy.out_of_scope(top, self.min_relevance):
            answer.refused = "out_of_scope"
            answer.text = policy.decline_text(self.course)
            yield from self._finish(answer, [], timings, started)
            return

        sources = self._sources(hits)
        if homework is not None and self.backend.name == "extractive":
            yield from self._homework(answer, homework, question, sources, timings, started)
            return

        # The extractive answer compares sentences with the question alone: a follow-up's search vector
        # (previous question included) is not the question's.
        question_vector = qvec if query == expand_abbreviations(question) else None
        deltas, drawn = self._generate(answer, question, sources, history, mode,
                                       homework.title if homework else "", timings, started, question_vector)
        text = ""
        renumber = CitationStream({s.n for s in drawn})  # only the sources the answer's prompt numbered
        for delta in deltas:
            delta = renumber.feed(delta)
            if delta:
                text += delta
                yield AnswerEvent("delta", delta)
        if tail := renumber.flush():
            text += tail
            yield AnswerEvent("delta", tail)
        # A model may still drift into a solution or follow an injected instruction: check the draft.
        leak = self._leak(text, question)
        if leak or (homework is not None and answer.backend == "extractive"):
            if leak:
                answer.notice = f"The draft answer was withheld: it {leak}."
            yield AnswerEvent("reset")
            match = homework or policy.AssignmentMatch("", "a graded assignment", "", "", leak)
            yield from self._homework(answer, match, question, sources, timings, started)
            return
        by_old = {s.n: s for s in drawn}
        used = [Source(new, by_old[old].chunk, by_old[old].context) for old, new in renumber.numbers.items()]
        answer.text, answer.citations = resolve_citations(text, used)
        answer.refused = "homework" if homework else None
        answer.demos = self._demos(answer.citations)
        yield from self._finish(answer, answer.citations, timings, started, streamed=True)

    def _generate(self, answer: Answer, question: str, sources: list[Source], history: list[tuple[str, str]],
                  mode: str, homework_title: str, timings: dict, started: float,
                  question_vector: np.ndarray | None = None) -> tuple[Iterator[str], list[Source]]:
        """Start the answer on the course's model, or on the extractive fallback if the model fails first.

        Returns the answer's pieces, the first one already produced (every fallback is decided before a
        student sees a word), and the sources the answering prompt numbered, which its [n] markers name:
        a prompt too long for the model is tried once more with the first half of the sources.
        """
        extractive_opts = {"question": expand_abbreviations(question), "sources": sources,
                           "embed": self.embedder.encode, "mode": mode, "question_vector": question_vector,
                           "sentences": self.index.sentences}
        reads_sources = getattr(self.backend, "reads_sources", False)
        tries = [sources, sources[: len(sources) // 2]] if len(sources) > 1 else [sources]
        failure: Exception | None = None
        for drawn in tries:
            messages = build_messages(question, drawn, self.course, mode, history, homework_title=homework_title)
            timings.setdefault("prompt_s", time.perf_counter() - started)
            opts = {**extractive_opts, "sources": drawn} if reads_sources else {}
            try:
                pieces = self.backend.stream(messages, max_tokens=self.settings.max_answer_tokens, **opts)
                first = next(pieces, None)
            except LLMContextTooLongError as exc:
                log.warning("course model: prompt with %d sources too long: %s", len(drawn), exc)
                failure = exc
                continue
            except (LLMUnavailableError, LLMRequestError) as exc:
                failure = exc
                break
            timings["first_token_s"] = time.perf_counter() - started
            return self._until_cut_short(answer, first, pieces), drawn
        log.warning("course model failed before answering, quoting the course material instead: %s", failure)
        answer.notice = MODEL_DOWN_NOTICE if isinstance(failure, LLMUnavailableError) else MODEL_REFUSED_NOTICE
        answer.backend, answer.model = self.fallback.name, self.fallback.model
        pieces = self.fallback.stream(build_messages(question, sources, self.course, mode, history,
                                                     homework_title=homework_title), **extractive_opts)
        first = next(pieces, None)
        timings["first_token_s"] = time.perf_counter() - started
        return itertools.chain([first] if first is not None else [], pieces), sources

    def _until_cut_short(self, answer: Answer, first: str | None, pieces: Iterator[str]) -> Iterator[str]:
        """`first` then the rest of `pieces`; a failure after the first piece ends the answer with a notice."""
        if first is None:
            return
        yield first
        try:
            yield from pieces
        except LLMUnavailableError as exc:
            log.warning("course model stopped mid-answer: %s", exc)
            answer.notice = CUT_SHORT_NOTICE

    def _homework(self, answer: Answer, match: policy.AssignmentMatch, question: str, sources: list[Source],
                  timings: dict, started: float) -> Iterator[AnswerEvent]:
        """Hints only: point at the lecture material that teaches what the assignment problem needs."""
        answer.refused = "homework"
        problem = self._assignment_problem(match, question)
        teaching = [s for s in sources if s.chunk.locator.kind not in ("assignment", "solution")]
        if problem is not None:
            hits = self.retriever.search(problem.text, k=3, kinds=list(_TEACHING_KINDS))
            teaching = [Source(n, h.chunk, h.chunk.text) for n, h in enumerate(hits, start=1)]
        pointers = [(s.n, s.chunk.locator.label()) for s in teaching[:3]]
        heading = problem.heading.split(" > ")[-1] if problem is not None else ""
        name = re.match(r"(?:problem|question|exercise)\s*\d+", heading, re.I)
        text = policy.homework_text(match, pointers, problem=name.group(0) if name else "")
        answer.text, answer.citations = resolve_citations(text, teaching[:3])
        answer.demos = self._demos(answer.citations)
        yield from self._finish(answer, answer.citations, timings, started)

    def _assignment_problem(self, match: policy.AssignmentMatch, question: str):
        """The assignment chunk the question is about: the problem it names, else the most similar."""
        chunks = [c for c in self.index.chunks if c.locator.path == match.path and match.path]
        if not chunks:
            return None
        named = re.search(r"\b(?:problem|question|exercise|part)\s*#?\s*(\d+)", question, re.I)
        if named:
            for chunk in chunks:
                if re.search(rf"\b(?:problem|question|exercise)\s*{named.group(1)}\b", chunk.heading, re.I):
                    return chunk
        rows = [self.index.row_of[c.id] for c in chunks]
        similarity = self.index.vectors[rows] @ self.queries.encode_query(question)
        return chunks[int(similarity.argmax())]

    def _finish(self, answer: Answer, citations: list[Citation], timings: dict, started: float,
                streamed: bool = False) -> Iterator[AnswerEvent]:
        if not streamed:
            timings.setdefault("first_token_s", time.perf_counter() - started)
            yield AnswerEvent("delta", answer.text)
        timings["total_s"] = time.perf_counter() - started
        answer.timings = {k: round(v, 4) for k, v in timings.items()}
        yield AnswerEvent("answer", answer=answer)

    def _sources(self, hits: list[Hit]) -> list[Source]:
        sources = []
        for n, hit in enumerate(hits, start=1):
            context = "\n".join(c.text for c in self.retriever.neighbours(hit))
            sources.append(Source(n=n, chunk=hit.chunk, context=context or hit.chunk.text))
        return sources

    def _leak(self, text: str, question: str) -> str:
        if not text.strip():
            return ""
        solutions = self.retriever.search(question + "\n" + text[:2000], k=3, kinds=["solution"])
        public = question + "\n" + "\n".join(
            c.text for c in self.index.chunks if c.locator.kind == "assignment")
        return policy.solution_leak(text, [h.chunk for h in solutions], public)

    def _demos(self, citations: list[Citation], limit: int = 3) -> list[DemoLink]:
        """Notebooks cited directly (at their cell), then those of the cited lectures."""
        demos_by_path: dict = self.course.get("demos", {})
        found: dict[str, DemoLink] = {}
        for citation in citations:
            path = citation.locator["path"]
            if path in demos_by_path and path not in found:
                demo = demos_by_path[path]
                found[path] = DemoLink(demo["title"], demo.get("launch_url", ""), path, citation.locator.get("cell"))
        for citation in citations:
            for lecture in self.course.get("schedule", []):
                if any(fnmatch.fnmatchcase(citation.locator["path"], g) for g in lecture.get("sources", [])):
                    for path, demo in demos_by_path.items():
                        if path not in found and any(fnmatch.fnmatchcase(path, g) for g in lecture["sources"]):
                            found[path] = DemoLink(demo["title"], demo.get("launch_url", ""), path)
        return list(found.values())[:limit]


def resolve_course(index_root: Path, course: str) -> str:
    if course:
        return course
    known = list_courses(index_root)
    if not known:
        raise CourseNotFoundError(
            f"no course is indexed under {index_root}; run `tutor ingest COURSE_DIR` (or `make run`) first")
    return known[0]


def backend_from_settings(settings: Settings) -> LLMBackend:
    config = BackendConfig(
        base_url=settings.llm_base_url, model=settings.llm_model,
        api_key=settings.llm_api_key.get_secret_value(), timeout_s=settings.llm_timeout_s,
        first_token_timeout_s=settings.llm_first_token_timeout_s, connect_timeout_s=settings.llm_connect_timeout_s,
        probe_interval_s=settings.llm_probe_interval_s, max_retries=settings.llm_max_retries,
        model_path=resolve_model_path(settings.llm_model_path, settings.data_dir) if settings.llm_model_path else "",
        adapter_path=settings.llm_adapter_path,
    )
    return create_backend(settings.resolved_backend(), config)
