"""The tutor's OpenAI-compatible API: any chat client (an LMS plugin, Open WebUI, a bot, the `llm`
command line, the `openai` library) asks a course through `/v1/chat/completions`.

    tutor keys create --owner alice --course dl-intro     # prints the key, once
    tutor chat                                             # the API beside the chat: http://127.0.0.1:7860/v1
    tutor api                                              # the API alone (tutor/cli/service.py)

    client = OpenAI(base_url="http://127.0.0.1:7860/v1", api_key="tutor-...")
    reply = client.chat.completions.create(model="dl-intro", messages=[{"role": "user", "content": "..."}])

Models: each indexed course is one (`dl-intro`, which explains) plus `dl-intro:socratic` (which
guides with questions); `/v1/models` lists those the key may use. The conversation is the messages:
each user message answered by an assistant message before the last user message is an earlier
exchange (system messages are ignored: the course's policy is the system prompt). The reply is the
tutor's answer with its `[n]` markers, then, for clients that show only text, a footer: the notice
if any, the numbered sources (place and deep link) and the demos. The same in structured form is the
`tutor` field of the response, and of the final chunk of a stream: the answer text without the
footer, citations (with `link`), demos, `refused`, `notice`, mode, backend, the chat-log id. A
stream's text is the answer as it was written (a draft withheld by the solution-leak check stays
in it, followed by a note, as it showed in the chat); `tutor.text` is the final text. The tutor
counts no tokens: `usage` is all zeros.

Errors are OpenAI's JSON body `{"error": {"message", "type", "param", "code"}}`: 400 a malformed
request, 401 no key or a revoked one, 404 an unknown model or one outside the key's course, 429 a
quota (with `Retry-After`, in seconds), 500 a bug (the traceback goes to the log only). A failure
after a stream has started ends it with an error event. Questions are logged in the chat log like
the chat's, under the key's owner, and counted against the course's quotas (`tutor/quotas.py`).
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from ingest.errors import TutorError
from ingest.model import Locator
from tutor.answer import final_answer
from tutor.app.chat import HISTORY_TURNS, MAX_QUESTION_CHARS
from tutor.app.files import course_file_url
from tutor.chatlog import ChatLog
from tutor.keys import ApiKey, ApiKeys
from tutor.quotas import Admission, QuotaBook, QuotaExceeded

log = logging.getLogger("tutor.api")

SOCRATIC = ":socratic"
# The tutor does not count tokens; zeros keep the clients that read `usage` working.
NO_USAGE = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
WITHHELD = "\n\n[The draft above was withheld: it broke the course's rules. The tutor's answer follows.]\n\n"
# Where the footer starts: stripped again when a client sends the reply back as history.
_FOOTER = re.compile(r"\n\n---\n(?:Note|Sources|Demos):.*\Z", re.S)


class ApiError(Exception):
    """An error response in OpenAI's shape; raised anywhere in a request, answered at the edge."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", code: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.headers = status, message, type_, code, headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": None, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


class _Part(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str = ""


class _Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[_Part] | None = None


class ChatRequest(BaseModel):
    """The fields of an OpenAI chat request the tutor reads; the others (temperature, ...) are accepted."""

    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[_Message]
    stream: bool = False
    stream_options: dict | None = None
    n: int = 1


@dataclass
class Question:
    """One admitted request: whose, which course and mode, the question and the conversation before it."""

    key: ApiKey
    model: str
    course: str
    mode: str
    question: str
    history: list[tuple[str, str]]
    admission: Admission
    usage_chunk: bool = False          # the client asked for stream_options.include_usage
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    created: int = field(default_factory=lambda: int(time.time()))


class TutorApi:
    """The routes over the shared course tutors (`tutor.app.server.CourseTutors`) and chat-log database."""

    def __init__(self, tutors, chatlog: ChatLog):
        self.tutors = tutors
        self.chatlog = chatlog
        self.keys = ApiKeys(chatlog.engine)
        self.quotas = QuotaBook(chatlog.engine)

    def router(self) -> APIRouter:
        router = APIRouter()

        @router.get("/v1/models")
        async def list_models(request: Request):
            return await _answered(self._models, request.headers.get("authorization"))

        @router.get("/v1/models/{model:path}")
        async def get_model(model: str, request: Request):
            return await _answered(self._model, request.headers.get("authorization"), model)

        @router.post("/v1/chat/completions")
        async def chat_completions(request: Request):
            prepared, error = await _guarded(self._admit, request.headers.get("authorization"), await request.body())
            if error is not None:
                return error
            question, stream = prepared
            base_url = str(request.base_url)
            if stream:
                return StreamingResponse(self._sse(question, base_url), media_type="text/event-stream",
                                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
            return await _answered(self._complete, question, base_url)

        @router.api_route("/v1/{rest:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
        async def unknown(rest: str):
            return ApiError(404, f"unknown endpoint /v1/{rest}; this server offers GET /v1/models and "
                                 "POST /v1/chat/completions", code="unknown_url").response()

        return router

    # -- the steps of a request (each runs in a worker thread: they touch the database) ------------

    def _key(self, authorization: str | None) -> ApiKey:
        scheme, _, secret = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise ApiError(401, "no API key; send `Authorization: Bearer tutor-...` (an instructor creates one "
                                "with `tutor keys create`)", code="invalid_api_key",
                           headers={"WWW-Authenticate": "Bearer"})
        key = self.keys.verify(secret.strip())
        if key is None:
            raise ApiError(401, "this API key is unknown or was revoked; ask the course staff for a new one",
                           code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
        return key

    def _model_ids(self, key: ApiKey) -> list[str]:
        return [name for course in self.tutors.courses() if key.allows(course) for name in (course, course + SOCRATIC)]

    def _models(self, authorization: str | None) -> dict:
        key = self._key(authorization)
        return {"object": "list", "data": [self._model_card(name) for name in self._model_ids(key)]}

    def _model(self, authorization: str | None, model: str) -> dict:
        key = self._key(authorization)
        self._course_and_mode(key, model)
        return self._model_card(model)

    def _model_card(self, name: str) -> dict:
        course = name.removesuffix(SOCRATIC)
        built = self.tutors.get(course).index.manifest.built_at
        return {"id": name, "object": "model", "created": int(built), "owned_by": f"course-tutor/{course}"}

    def _course_and_mode(self, key: ApiKey, model: str) -> tuple[str, str]:
        course = model.removesuffix(SOCRATIC)
        if course not in self.tutors.courses():
            known = ", ".join(self._model_ids(key)) or "none for this key"
            raise ApiError(404, f"the model {model!r} does not exist; models: {known}", code="model_not_found")
        if not key.allows(course):
            raise ApiError(404, f"the model {model!r} is not open to this key (its course is {key.course!r})",
                           code="model_not_found")
        return course, "socratic" if model.endswith(SOCRATIC) else "explain"

    def _admit(self, authorization: str | None, body: bytes) -> tuple[Question, bool]:
        """Check the key, the request and the quotas; the admitted question must be finished."""
        key = self._key(authorization)
        request = parse_request(body)
        course, mode = self._course_and_mode(key, request.model)
        question, history = conversation(request.messages)
        tutor = self.tutors.get(course)
        try:
            admission = self.quotas.admit(key.owner, course, tutor.index.course.quotas, api_key_id=key.id)
        except QuotaExceeded as exc:
            raise ApiError(429, str(exc), "rate_limit_error", exc.limit,
                           headers={"Retry-After": str(exc.retry_after_s)}) from None
        usage_chunk = bool((request.stream_options or {}).get("include_usage"))
        return Question(key, request.model, course, mode, question, history, admission, usage_chunk), request.stream

    def _events(self, q: Question) -> Iterator:
        tutor = self.tutors.get(q.course)
        return tutor.stream(q.question, history=q.history, mode=q.mode)

    def _finish(self, q: Question, answer, base_url: str) -> tuple[str, dict]:
        """Log the answer, free its quota slot; returns the footer and the `tutor` extension."""
        try:
            data = answer.to_dict()
            chat_id = self.chatlog.log_answer(q.key.owner, data, api_key_id=q.key.id)
        finally:
            q.admission.finish()
        return footer(data, base_url), extension(data, base_url, chat_id)

    def _complete(self, q: Question, base_url: str) -> dict:
        answer = None
        try:
            answer = final_answer(self._events(q))   # a withheld draft ("reset") is simply never shown
        except TutorError as exc:
            raise ApiError(503, f"the tutor could not answer: {exc}", "server_error", "tutor_error") from None
        finally:
            if answer is None:
                q.admission.finish()
        tail, tutor = self._finish(q, answer, base_url)
        message = {"role": "assistant", "content": answer.text + tail}
        return {"id": q.id, "object": "chat.completion", "created": q.created, "model": q.model,
                "choices": [{"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}],
                "usage": NO_USAGE, "tutor": tutor}

    async def _sse(self, q: Question, base_url: str) -> AsyncIterator[str]:
        def chunk(delta: dict, finish: str | None = None, **extra) -> str:
            body = {"id": q.id, "object": "chat.completion.chunk", "created": q.created, "model": q.model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}], **extra}
            return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

        answer = None
        try:
            yield chunk({"role": "assistant", "content": ""})
            async for event in iterate_in_threadpool(self._events(q)):
                if event.kind == "delta" and event.text:
                    yield chunk({"content": event.text})
                elif event.kind == "reset":
                    yield chunk({"content": WITHHELD})
                elif event.kind == "answer":
                    answer = event.answer
            tail, tutor = await run_in_threadpool(self._finish, q, answer, base_url)
            yield chunk({"content": tail})
            yield chunk({}, "stop", tutor=tutor)
            if q.usage_chunk:
                usage = {"id": q.id, "object": "chat.completion.chunk", "created": q.created, "model": q.model,
                         "choices": [], "usage": NO_USAGE}
                yield f"data: {json.dumps(usage)}\n\n"
        except Exception as exc:  # the status line has gone: the error travels in the stream
            error = ApiError(503, f"the tutor could not answer: {exc}", "server_error", "tutor_error") \
                if isinstance(exc, TutorError) else _server_error()
            if not isinstance(exc, TutorError):
                log.exception("streamed chat completion failed")
            yield f"data: {json.dumps(error.body())}\n\n"
        finally:
            if answer is None:               # failed, or the client went away mid-answer
                q.admission.finish()
        yield "data: [DONE]\n\n"


def parse_request(body: bytes) -> ChatRequest:
    try:
        request = ChatRequest.model_validate_json(body or b"{}")
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise ApiError(400, f"invalid request: {where}: {first['msg']} (send a JSON chat completion request: "
                            "model, messages)", code="invalid_request") from None
    if request.n != 1:
        raise ApiError(400, f"n = {request.n}: the tutor gives one answer per question; send n = 1 or leave it out",
                       code="unsupported_value")
    return request


def conversation(messages: list[_Message]) -> tuple[str, list[tuple[str, str]]]:
    """The last user message, and the (question, answer) pairs before it (the footer stripped)."""
    talk = [(m.role, _text(m)) for m in messages if m.role in ("user", "assistant")]
    if not talk or talk[-1][0] != "user":
        raise ApiError(400, "the last message must be the user's question", code="invalid_messages")
    question = talk[-1][1].strip()
    if not question:
        raise ApiError(400, "the question is empty", code="invalid_messages")
    if len(question) > MAX_QUESTION_CHARS:
        raise ApiError(400, f"the question is {len(question):,} characters long; keep it under "
                            f"{MAX_QUESTION_CHARS:,} (ask about one thing at a time)", code="question_too_long")
    history = [(asked, _FOOTER.sub("", answered)) for (role, asked), (next_role, answered) in zip(talk, talk[1:-1])
               if role == "user" and next_role == "assistant"]
    return question, history[-HISTORY_TURNS:]


def _text(message: _Message) -> str:
    if message.content is None or isinstance(message.content, str):
        return message.content or ""
    if any(part.type != "text" for part in message.content):
        raise ApiError(400, "only text content is accepted (no images, audio or files)", code="unsupported_content")
    return "".join(part.text for part in message.content)


def footer(answer: dict, base_url: str) -> str:
    """The notice, numbered sources and demos, as text after the answer (for clients that show only text)."""
    parts = []
    if answer.get("notice"):
        parts.append(f"Note: {answer['notice']}")
    if answer["citations"]:
        parts.append("Sources:\n" + "\n".join(f"- [{c['n']}] {Locator.from_dict(c['locator']).label()}: "
                                              f"{citation_link(answer['course'], c, base_url)}"
                                              for c in answer["citations"]))
    if answer["demos"]:
        parts.append("Demos:\n" + "\n".join(f"- {d['title']}: {demo_link(answer['course'], d, base_url)}"
                                            for d in answer["demos"]))
    return "\n\n---\n" + "\n\n".join(parts) if parts else ""


def extension(answer: dict, base_url: str, chat_id: int) -> dict[str, Any]:
    """The `tutor` field: the answer in structured form, links made absolute."""
    keys = ("text", "refused", "notice", "mode", "course", "backend", "model", "top_similarity")
    return {**{k: answer.get(k) for k in keys}, "chat_id": chat_id,
            "citations": [{**c, "link": citation_link(answer["course"], c, base_url)} for c in answer["citations"]],
            "demos": [{**d, "link": demo_link(answer["course"], d, base_url)} for d in answer["demos"]]}


def citation_link(course: str, citation: dict, base_url: str) -> str:
    return base_url.rstrip("/") + "/" + course_file_url(course, citation["url"])


def demo_link(course: str, demo: dict, base_url: str) -> str:
    if demo.get("url", "").startswith(("http://", "https://")):
        return demo["url"]
    return base_url.rstrip("/") + "/" + course_file_url(course, demo["path"])


def _server_error() -> ApiError:
    return ApiError(500, "the tutor failed on this request; the server log has the details", "server_error",
                    "internal_error")


async def _guarded(fn, *args) -> tuple[Any, JSONResponse | None]:
    """`fn(*args)` in a worker thread: (its result, None), or (None, the OpenAI-shaped error response)."""
    try:
        return await run_in_threadpool(fn, *args), None
    except ApiError as exc:
        return None, exc.response()
    except TutorError as exc:               # e.g. no course indexed yet
        return None, ApiError(503, str(exc), "server_error", "not_ready").response()
    except Exception:
        log.exception("API request failed")
        return None, _server_error().response()


async def _answered(fn, *args) -> JSONResponse:
    result, error = await _guarded(fn, *args)
    return error if error is not None else JSONResponse(result)

