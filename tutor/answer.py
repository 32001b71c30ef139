"""The answer engine: question -> retrieval -> policy -> prompt -> streamed LLM -> checked answer.

    tutor = Tutor.from_settings(load_settings())
    answer = final_answer(tutor.stream("Why does momentum help SGD?"), on_delta=print)

`Tutor.stream` yields events: "delta" (more text), "reset" (discard the text streamed so far: a draft
was withheld) and, last, "answer" carrying the `Answer` (DESIGN.md contract); `final_answer` drains
them. The LLM backend is chosen by name from the settings; if it is unreachable or rejects the
request before its first token, the answer falls back to `extractive` with a plain notice, so a
student always gets an answer (the technical reason goes to the `tutor.llm` log). A prompt too long
for the model's context is first tried once more with half the sources.

The course's rules come first (`tutor/integrity.py`, texts in `tutor/policy.py`): a question about
other people's grades or data is declined (`refused="private"`); a request for graded work gets
hints and pointers only (`refused="homework"`), whether or not course.toml lists the assignment; a
question unlike anything in the course is declined (`refused="out_of_scope"`) unless it is about
course logistics that the syllabus answers; a draft that gives a solution away is withheld.

Nothing heavy happens at question time: the question is embedded once, together with the questions
other students ask in the same few milliseconds (`ingest/query_batch.py`), and that vector serves
the retrieval, the homework checks and the extractive answer, whose sentences were embedded at ingest.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ingest.embed import Embedder
from ingest.errors import TutorError
from ingest.query_batch import QueryBatcher
from ingest.course import CourseConfig
from ingest.store import CourseIndex, check_embedder, load_index
from tutor import policy
from tutor.citations import Citation, CitationStream, resolve_citations
from tutor.errors import CourseNotFoundError
from tutor.integrity import IntegrityChecks, asks_for_private_data
from tutor.llm import (
    BackendConfig,
    Grounding,
    LLMBackend,
    LLMContextTooLongError,
    LLMRequestError,
    LLMUnavailableError,
    create_backend,
)
from tutor.models import resolve_model_path
from tutor.prompt import Source, build_messages
from tutor.retrieve import Hit, Retriever, expand_abbreviations
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


class AnswerMissingError(TutorError, RuntimeError):
    """An answer's events ended without the answer (the stream was cut off); ask again."""


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
    refused: str | None = None          # None | "out_of_scope" | "homework" | "private"
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


def final_answer(events: Iterable[AnswerEvent], on_delta: Callable[[str], None] | None = None,
                 on_reset: Callable[[], None] | None = None) -> Answer:
    """The `Answer` an answer's events end with; `on_delta(text)` sees each piece of text as it
    streams, `on_reset()` each time the text streamed so far is withdrawn (a draft withheld)."""
    for event in events:
        if event.kind == "delta":
            if on_delta is not None:
                on_delta(event.text)
        elif event.kind == "reset":
            if on_reset is not None:
                on_reset()
        elif event.kind == "answer" and event.answer is not None:
            return event.answer
    raise AnswerMissingError("the tutor stopped without an answer; please ask again")


def _asked_and_searched(question: str, history: list[tuple[str, str]]) -> tuple[str, str]:
    """The question with abbreviations spelled out, and what to search for it: a follow-up ("what
    about its derivative?") is searched together with the previous question."""
    asked = expand_abbreviations(question)
    if history and (_FOLLOW_UP.search(question) or len(question.split()) <= 4):
        return asked, expand_abbreviations(f"{history[-1][0]} {question}")
    return asked, asked


def retrieval_query(question: str, history: list[tuple[str, str]]) -> str:
    """What is searched for `question` after `history`: a follow-up with the previous question."""
    return _asked_and_searched(question, history)[1]


def _stream_from(backend: LLMBackend, messages: list[dict], grounding: Grounding, **options) -> Iterator[str]:
    """`backend.stream`, handed the sources as a `Grounding` if it reads them itself."""
    if backend.reads_sources:
        return backend.stream(messages, grounding=grounding, **options)
    return backend.stream(messages, **options)


class Tutor:
    def __init__(self, index: CourseIndex, embedder: Embedder, backend: LLMBackend, settings: Settings,
                 fallback: LLMBackend | None = None):
        self.index = index
        self.embedder = embedder
        self.backend = backend
        self.fallback = fallback or create_backend("extractive")
        self.settings = settings
        self.queries = QueryBatcher(embedder)
        self.retriever = settings.retriever(index, embedder)
        self.checks = IntegrityChecks(index, self.retriever)
        threshold = settings.min_relevance
        self.min_relevance = policy.OUT_OF_SCOPE_SIMILARITY if threshold < 0 else threshold

    @classmethod
    def from_settings(cls, settings: Settings, course: str | None = None, embedder: Embedder | None = None,
                      backend: LLMBackend | None = None) -> Tutor:
        index = settings.open_index(course)
        embedder = embedder or settings.embedder()
        check_embedder(index, embedder.fingerprint)
        return cls(index, embedder, backend or settings.backend(index.course_id), settings)

    @property
    def course(self) -> CourseConfig:
        return self.index.course

    def reload_if_changed(self) -> bool:
        """Serve a newer build of the index (after an ingest) without a restart."""
        link = self.settings.index_root() / self.index.course_id
        try:  # one readlink, not a resolve: this runs on every question
            live = Path(os.readlink(link)).name
        except OSError:  # not a link (yet): the full resolve
            live = link.resolve().name
        if live == self.index.path.name:
            return False
        self.index = load_index(self.settings.index_root(), self.index.course_id)
        check_embedder(self.index, self.embedder.fingerprint)
        self.retriever = self.settings.retriever(self.index, self.embedder)
        self.checks = IntegrityChecks(self.index, self.retriever)
        return True

    def ask(self, question: str, **kwargs) -> Answer:
        return final_answer(self.stream(question, **kwargs))

    def stream(self, question: str, history: list[tuple[str, str]] | None = None, mode: str | None = None,
               taught_until: dt.date | None = None) -> Iterator[AnswerEvent]:
        history = history or []
        mode = mode or self.settings.mode
        timings: dict[str, float] = {}
        started = time.perf_counter()
        asked, query = _asked_and_searched(question, history)
        qvec = self.queries.encode_query(query)
        hits = self.retriever.search(query, k=self.settings.top_k, taught_until=taught_until, query_vector=qvec)
        top = max((h.dense for h in hits), default=None)
        answer = Answer(question=question, text="", mode=mode, course=self.index.course_id,
                        backend=self.backend.name, model=self.backend.model, top_similarity=top)
        if asks_for_private_data(question):
            timings["retrieve_s"] = time.perf_counter() - started
            answer.refused, answer.text = "private", policy.private_text(self.course)
            yield from self._finish(answer, timings, started)
            return
        homework = self.checks.homework(question, query, qvec, top)
        timings["retrieve_s"] = time.perf_counter() - started

        if homework is None and policy.out_of_scope(top, self.min_relevance):
            hits = self.checks.logistics(query, qvec)
            if not hits:
                answer.refused, answer.text = "out_of_scope", policy.decline_text(self.course)
                yield from self._finish(answer, timings, started)
                return

        sources = self._sources(hits)
        if homework is not None and self.backend.reads_sources:  # quoting the material is no hint
            yield from self._homework(answer, homework, question, qvec, sources, timings, started)
            return

        # The extractive answer compares sentences with the question alone: a follow-up's search vector
        # (previous question included) is not the question's.
        grounding = Grounding(asked, sources, self.embedder.encode, qvec if query == asked else None,
                              self.index.sentences, mode)
        deltas, drawn, answered_by = self._generate(answer, question, grounding, history, mode,
                                                    homework.title if homework else "", timings, started)
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
        leak = self.checks.leak(text, question)
        if leak or (homework is not None and answered_by.reads_sources):
            if leak:
                answer.notice = f"The draft answer was withheld: it {leak}."
            yield AnswerEvent("reset")
            match = homework or policy.AssignmentMatch("", "a graded assignment", "", "", leak)
            yield from self._homework(answer, match, question, qvec, sources, timings, started)
            return
        by_old = {s.n: s for s in drawn}
        used = [Source(new, by_old[old].chunk, by_old[old].context) for old, new in renumber.numbers.items()]
        answer.text, answer.citations = resolve_citations(text, used)
        answer.refused = "homework" if homework else None
        answer.demos = self._demos(answer.citations)
        yield from self._finish(answer, timings, started, streamed=True)

    def _generate(self, answer: Answer, question: str, grounding: Grounding, history: list[tuple[str, str]],
                  mode: str, homework_title: str, timings: dict, started: float
                  ) -> tuple[Iterator[str], list[Source], LLMBackend]:
        """Start the answer on the course's model, or on the extractive fallback if the model fails first.

        Returns the answer's pieces, the first one already produced (every fallback is decided before a
        student sees a word), the sources the answering prompt numbered, which its [n] markers name (a
        prompt too long for the model is tried once more with the first half of the sources), and the
        backend that answered.
        """
        sources = grounding.sources
        tries = [sources, sources[: len(sources) // 2]] if len(sources) > 1 else [sources]
        failure: Exception | None = None
        for drawn in tries:
            messages = build_messages(question, drawn, self.course, mode, history, homework_title=homework_title)
            timings.setdefault("prompt_s", time.perf_counter() - started)
            try:
                pieces = _stream_from(self.backend, messages, replace(grounding, sources=drawn),
                                      max_tokens=self.settings.max_answer_tokens)
                first = next(pieces, None)
            except LLMContextTooLongError as exc:
                log.warning("course model: prompt with %d sources too long: %s", len(drawn), exc)
                failure = exc
                continue
            except (LLMUnavailableError, LLMRequestError) as exc:
                failure = exc
                break
            timings["first_token_s"] = time.perf_counter() - started
            return self._until_cut_short(answer, first, pieces), drawn, self.backend
        log.warning("course model failed before answering, quoting the course material instead: %s", failure)
        answer.notice = MODEL_DOWN_NOTICE if isinstance(failure, LLMUnavailableError) else MODEL_REFUSED_NOTICE
        answer.backend, answer.model = self.fallback.name, self.fallback.model
        messages = build_messages(question, sources, self.course, mode, history, homework_title=homework_title)
        pieces = _stream_from(self.fallback, messages, grounding)
        first = next(pieces, None)
        timings["first_token_s"] = time.perf_counter() - started
        return itertools.chain([first] if first is not None else [], pieces), sources, self.fallback

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

    def _homework(self, answer: Answer, match: policy.AssignmentMatch, question: str, question_vector: np.ndarray,
                  sources: list[Source], timings: dict, started: float) -> Iterator[AnswerEvent]:
        """Hints only: point at the lecture material that teaches what the assignment problem needs."""
        answer.refused = "homework"
        problem = self.checks.assignment_problem(match, question, question_vector)
        teaching = [s for s in sources if s.chunk.locator.kind not in ("assignment", "solution")]
        if problem is not None:
            hits = self.retriever.search(problem.text, k=3, kinds=list(_TEACHING_KINDS))
            teaching = [Source(n, h.chunk, h.chunk.text) for n, h in enumerate(hits, start=1)]
        by_label: dict[str, Source] = {}
        for source in teaching:  # two chunks of one page or section make one pointer
            by_label.setdefault(source.chunk.locator.label(), source)
        teaching = list(by_label.values())
        pointers = [(s.n, s.chunk.locator.label()) for s in teaching[:3]]
        heading = problem.heading.split(" > ")[-1] if problem is not None else ""
        name = re.match(r"(?:problem|question|exercise)\s*\d+", heading, re.I)
        text = policy.homework_text(match, pointers, problem=name.group(0) if name else "")
        answer.text, answer.citations = resolve_citations(text, teaching[:3])
        answer.demos = self._demos(answer.citations)
        yield from self._finish(answer, timings, started)

    def _finish(self, answer: Answer, timings: dict, started: float, streamed: bool = False) -> Iterator[AnswerEvent]:
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

    def _demos(self, citations: list[Citation], limit: int = 3) -> list[DemoLink]:
        """Notebooks cited directly (at their cell), then those of the cited lectures."""
        demos = self.course.demos
        found: dict[str, DemoLink] = {}
        for citation in citations:
            path = citation.locator["path"]
            if path in demos and path not in found:
                found[path] = DemoLink(demos[path]["title"], demos[path].get("launch_url", ""), path,
                                       citation.locator.get("cell"))
        for citation in citations:
            for lecture in self.course.lectures_of(citation.locator["path"]):
                for path in self.course.demos_of_lecture(lecture):
                    if path not in found:
                        found[path] = DemoLink(demos[path]["title"], demos[path].get("launch_url", ""), path)
        return list(found.values())[:limit]
