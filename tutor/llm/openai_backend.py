"""The `openai` backend: any OpenAI-compatible chat server, streamed with the official client.

It speaks to vLLM in production (`model` is the base model or a LoRA adapter's served name), to
`transformers serve` on a CPU for development and tests, or to a hosted API.

Three limits keep a slow or hung server from stalling students: `connect_timeout_s` to open a
connection, `first_token_timeout_s` for the first text (and each read after it), and `timeout_s` for
the whole answer, past which the answer is cut off. A refused connection or an HTTP 5xx is retried
with exponential backoff within a few seconds, and only before the first text: once text has been
handed to the caller, a failure is reported, never papered over by a retry that would repeat the
answer. A timeout is never retried, since a hung server hangs again. Any failure before the first
text marks the server down (`tutor.llm.breaker`): later requests fail at once until a probe of its
/v1/models gets an answer.

    backend = create_backend("openai", BackendConfig(base_url="http://127.0.0.1:8000/v1", model="org/model"))
    print(backend.complete([{"role": "user", "content": "Hello"}]))
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections.abc import Iterator

import openai

from tutor.llm import (
    BackendConfig,
    ConfigError,
    LLMBackend,
    LLMContextTooLongError,
    LLMRequestError,
    LLMUnavailableError,
    cut_at_stop,
    register_backend,
)
from tutor.llm.breaker import breaker_for

# Sent when no key is configured: local servers ignore it, but the client refuses to run without one.
PLACEHOLDER_API_KEY = "EMPTY"
MAX_BACKOFF_S = 8.0
RETRY_WINDOW_S = 4.0  # no retry starts later than this after the first attempt
START_SERVER_HINT = "start it with `tutor serve` or set TUTOR_LLM_BASE_URL"
# How vLLM, OpenAI, TGI, llama.cpp and others word "the prompt does not fit the context window".
CONTEXT_TOO_LONG = re.compile(
    r"context[ _-]?(?:length|window|size)|maximum context|too many (?:input |prompt )?tokens|prompt is too long"
    r"|too long to fit|(?:tokens?|length|prompt|input)\b.{0,60}\bexceed|exceed.{0,60}\b(?:tokens?|context|limit)"
    r"|tokens?\b.{0,60}must be <=", re.I | re.S)


class _TooSlow(Exception):
    """The server sends, but too slowly: no text by the first-token limit, or not done by the deadline."""


@register_backend("openai")
def create_openai_backend(config: BackendConfig) -> OpenAIBackend:
    return OpenAIBackend(config)


class OpenAIBackend(LLMBackend):
    """Chat completions over HTTP, streamed; errors mapped to `LLMUnavailableError`/`LLMRequestError`."""

    name = "openai"

    def __init__(self, config: BackendConfig):
        if not config.base_url:
            raise ConfigError(
                "the openai LLM backend needs a server URL: set TUTOR_LLM_BASE_URL "
                "(e.g. http://127.0.0.1:8000/v1), or choose the extractive backend"
            )
        if not config.model:
            raise ConfigError(
                f"the openai LLM backend needs a model name for {config.base_url}: set TUTOR_LLM_MODEL "
                "to one of the names the server lists at /v1/models"
            )
        self.config = config
        self.base_url = config.base_url.rstrip("/")
        self.model = config.model
        self.client = openai.OpenAI(
            base_url=self.base_url,
            api_key=config.api_key or PLACEHOLDER_API_KEY,
            # one read may take as long as the first token; the whole answer is bounded in `stream`
            timeout=openai.Timeout(min(config.first_token_timeout_s, config.timeout_s),
                                   connect=config.connect_timeout_s),
            max_retries=0,  # retries are ours: the client's own would also retry mid-stream failures
        )
        self._usage = threading.local()
        breaker_for(self.base_url)  # listed in `llm_status()` from now on, before any question

    @property
    def last_completion_tokens(self) -> int | None:
        """Tokens the server says it generated for this thread's last finished stream (None: not reported)."""
        return getattr(self._usage, "completion_tokens", None)

    @property
    def last_first_text_s(self) -> float | None:
        """Seconds from sending this thread's last request to its first text: the server's own TTFT."""
        return getattr(self._usage, "first_text_s", None)

    def stream(
        self,
        messages: list[dict],
        *,
        max_tokens: int = 512,
        temperature: float = 0.2,
        stop: list[str] | None = None,
        **opts,
    ) -> Iterator[str]:
        request = {"model": self.model, "messages": messages, "max_tokens": max_tokens, "temperature": temperature,
                   # vLLM and hosted APIs then end the stream with the token counts; others ignore it
                   "stream_options": {"include_usage": True}}
        self._usage.completion_tokens = None
        self._usage.first_text_s = None
        if stop:
            request["stop"] = stop
        request.update(opts)

        breaker = breaker_for(self.base_url)
        if not breaker.allow():
            raise LLMUnavailableError(breaker.down_message())
        try:
            chunks, texts, first_text = self._open_stream(request)
        except LLMUnavailableError as error:
            breaker.record_failure(str(error), probe=self._probe, probe_interval_s=self.config.probe_interval_s)
            raise
        breaker.record_success()
        if first_text is None:
            return
        delivered = 0
        try:
            for text in cut_at_stop(itertools.chain([first_text], texts), stop):
                yield text
                delivered += len(text)
        except _TooSlow as error:
            raise LLMUnavailableError(
                f"LLM server at {self.base_url}: the answer was cut off after {delivered} characters, "
                f"having taken longer than {self.config.timeout_s:g}s; raise TUTOR_LLM_TIMEOUT_S or lower "
                "TUTOR_MAX_ANSWER_TOKENS"
            ) from error
        except (openai.OpenAIError, json.JSONDecodeError) as error:
            raise LLMUnavailableError(
                f"LLM server at {self.base_url} broke off the answer after {delivered} characters "
                f"({_reason(error, self.config)}); ask again"
            ) from error
        finally:
            chunks.close()

    def list_models(self) -> list[str]:
        """The model names the server accepts (its /v1/models), e.g. the base model and its adapters."""
        try:
            return self._fetch_model_ids()
        except openai.APIStatusError as error:
            raise LLMRequestError(
                f"LLM server at {self.base_url} would not list its models (HTTP {error.status_code}: "
                f"{_server_detail(error)}); check TUTOR_LLM_BASE_URL and TUTOR_LLM_API_KEY"
            ) from error
        except openai.APIConnectionError as error:
            raise self._unavailable(error, attempts=1) from error

    # ----- internals -----

    def _fetch_model_ids(self) -> list[str]:
        try:
            return [entry.id for entry in self.client.models.list()]
        except openai.APITimeoutError:
            raise
        except openai.APIConnectionError:
            # After an HTTP 500 some servers (uvicorn) close the kept-alive connection, and the
            # client's first reuse of it fails with a reset; a second try opens a fresh one.
            return [entry.id for entry in self.client.models.list()]

    def _probe(self) -> None:
        """Return if the server answers GET /v1/models at all (a 4xx counts: it is serving); raise if not."""
        try:
            self.client.models.list()
        except openai.APIStatusError as error:
            if error.status_code >= 500:
                raise LLMUnavailableError(f"{self.base_url}/models: {_reason(error, self.config)}") from error
        except openai.APIConnectionError as error:
            raise LLMUnavailableError(f"{self.base_url}/models: {_reason(error, self.config)}") from error

    def _open_stream(self, request: dict) -> tuple[openai.Stream, Iterator[str], str | None]:
        """Send the request and wait for the first text, retrying failures that may pass.

        Returns the open stream, its text iterator (already past the first text) and that text.
        """
        attempts = self.config.max_retries + 1
        started = time.monotonic()
        done_by = started + self.config.timeout_s
        for attempt in range(attempts):
            try:
                sent = time.perf_counter()
                chunks = self.client.chat.completions.create(stream=True, **request)
                first_text_by = min(time.monotonic() + self.config.first_token_timeout_s, done_by)
                texts = _texts(chunks, self._usage, first_text_by, done_by)
                try:
                    first = next(texts, None)
                    self._usage.first_text_s = time.perf_counter() - sent
                    return chunks, texts, first
                except BaseException:
                    chunks.close()
                    raise
            except (openai.APITimeoutError, _TooSlow) as error:
                # A server that hung once hangs again: a retry would only double the student's wait.
                raise self._unavailable(error, attempt + 1) from error
            except openai.APIStatusError as error:
                if not _is_transient(error):
                    raise self._rejected(error) from error
                self._raise_if_model_unknown(error)
                last_error: openai.OpenAIError = error
            except openai.APIConnectionError as error:
                last_error = error
            except (openai.APIError, json.JSONDecodeError) as error:
                # An error event (or garbage) inside the stream before any text: the server could
                # not generate, and would fail the same way again.
                if isinstance(error, openai.APIError):
                    detail = error.body if isinstance(error.body, str) and error.body else error.message
                else:
                    detail = f"malformed event: {error}"
                raise LLMUnavailableError(
                    f"LLM server at {self.base_url} failed before answering ({detail}); check the server's log"
                ) from error
            backoff = min(self.config.retry_backoff_s * 2**attempt, MAX_BACKOFF_S)
            if attempt + 1 == attempts or time.monotonic() + backoff - started > RETRY_WINDOW_S:
                break
            time.sleep(backoff)
        raise self._unavailable(last_error, attempt + 1) from last_error

    def _unavailable(self, error: BaseException, attempts: int) -> LLMUnavailableError:
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        if isinstance(error, (openai.APITimeoutError, _TooSlow)):
            return LLMUnavailableError(
                f"LLM server at {self.base_url} did not answer in time ({_reason(error, self.config)}); "
                "check that it is running and its log, or restart it with `tutor serve`"
            )
        return LLMUnavailableError(
            f"LLM server at {self.base_url} is not reachable ({_reason(error, self.config)}){tries}; "
            f"{START_SERVER_HINT}"
        )

    def _rejected(self, error: openai.APIStatusError) -> LLMRequestError:
        if error.status_code in (401, 403):
            return LLMRequestError(
                f"LLM server at {self.base_url} refused the API key (HTTP {error.status_code}: "
                f"{_server_detail(error)}); set TUTOR_LLM_API_KEY to a key it accepts"
            )
        if CONTEXT_TOO_LONG.search(_server_detail(error)):
            return LLMContextTooLongError(
                f"LLM server at {self.base_url}: the prompt does not fit model {self.model!r} (HTTP "
                f"{error.status_code}: {_server_detail(error)}); use fewer or shorter sources (TUTOR_TOP_K), "
                "a lower TUTOR_MAX_ANSWER_TOKENS, or serve the model with a longer context"
            )
        served = self._served_models()
        if served is not None and self.model not in served:
            return self._unknown_model(served, error)
        return LLMRequestError(
            f"LLM server at {self.base_url} rejected the request for model {self.model!r} "
            f"(HTTP {error.status_code}: {_server_detail(error)})"
        )

    def _raise_if_model_unknown(self, error: openai.APIStatusError) -> None:
        # Some servers answer an unknown model name with a 5xx (`transformers serve` without a pinned
        # model fails to load it and returns 500); retrying cannot make the model appear.
        served = self._served_models()
        if served is not None and self.model not in served:
            raise self._unknown_model(served, error) from error

    def _unknown_model(self, served: list[str], error: openai.APIStatusError) -> LLMRequestError:
        listed = ", ".join(served) if served else "none"
        return LLMRequestError(
            f"LLM server at {self.base_url} does not serve model {self.model!r}; it serves: {listed}. "
            f"Set TUTOR_LLM_MODEL to one of these (the server said HTTP {error.status_code}: "
            f"{_server_detail(error)})"
        )

    def _served_models(self) -> list[str] | None:
        """The server's model list, or None when it cannot be had (the check is best effort)."""
        try:
            return self.list_models()
        except (LLMRequestError, LLMUnavailableError):
            return None


def _texts(chunks: openai.Stream, usage: threading.local, first_text_by: float, done_by: float) -> Iterator[str]:
    """The non-empty content deltas of a chat completion stream; a usage chunk's count goes to `usage`.

    Raises `_TooSlow` when no text has come by `first_text_by`, or the stream is not over by `done_by`
    (monotonic times): each read has its own timeout, but a server can dribble forever within it.
    """
    seen_text = False
    for chunk in chunks:
        if getattr(chunk, "usage", None) is not None and chunk.usage.completion_tokens is not None:
            usage.completion_tokens = chunk.usage.completion_tokens
        for choice in chunk.choices:
            if choice.delta is not None and choice.delta.content:
                seen_text = True
                yield choice.delta.content
        now = time.monotonic()
        if now > done_by or (not seen_text and now > first_text_by):
            raise _TooSlow("not done in time" if seen_text else "no text in time")


def _is_transient(error: openai.APIStatusError) -> bool:
    return error.status_code >= 500 or error.status_code in (408, 429)


def _reason(error: BaseException, config: BackendConfig) -> str:
    """A short human reason: 'connection refused', 'no answer within 15s', 'HTTP 503: ...'."""
    if isinstance(error, (openai.APITimeoutError, _TooSlow)):
        waited = min(config.first_token_timeout_s, config.timeout_s)
        return f"no answer within {waited:g}s (connect timeout {config.connect_timeout_s:g}s)"
    if isinstance(error, openai.APIStatusError):
        return f"HTTP {error.status_code}: {_server_detail(error)}"
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if cause.__cause__ is None and cause.__context__ is None:
            return str(cause) or type(cause).__name__
        cause = cause.__cause__ or cause.__context__
    return str(error)


def _server_detail(error: openai.APIStatusError) -> str:
    """The server's own words from an error body: OpenAI's {"error": {"message"}}, FastAPI's {"detail"}."""
    body = error.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            for key in ("message", "detail"):
                if inner.get(key):
                    return str(inner[key])
        elif isinstance(inner, str):
            return inner
    text = error.response.text.strip() if error.response is not None else ""
    return text[:300] or error.message
