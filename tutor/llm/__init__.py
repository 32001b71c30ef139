"""LLM backends: one small interface, chosen by name.

A backend turns chat messages into a stream of text deltas:

    backend = create_backend("openai", BackendConfig(base_url="http://127.0.0.1:8000/v1", model="course/tiny"))
    for delta in backend.stream([{"role": "user", "content": "What is dropout?"}]):
        print(delta, end="")

The built-in backends (`openai`, `local`, `extractive`) register themselves with `@register_backend`
exactly as an addition would; their modules are imported on first lookup, so choosing one backend
never imports another's heavy dependencies (torch for `local`, the HTTP client for `openai`).

Failures use two errors the caller can act on: `LLMUnavailableError` (the model cannot be reached
now: fall back to `extractive`, retry later) and `LLMRequestError` (this request or setting is
wrong: fix it, retrying will not help). `LLMContextTooLongError`, a kind of `LLMRequestError`, says
the prompt did not fit the model's context window: a shorter one (fewer sources) may pass.

Most backends read the sources in the prompt. One that has no model to read a prompt with (the
`extractive` backend) sets `reads_sources = True` and is handed them, with what it needs to rank
their sentences, as a typed `Grounding`:

    backend.stream(messages, grounding=Grounding(question, sources, embed, question_vector, sentences))

A server that fails before its first token is marked down process-wide (see `tutor.llm.breaker`):
until a background probe finds it answering, its backends fail at once instead of waiting on it.
`llm_status()` lists each server's state and last error, for the instructor.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from ingest.errors import ConfigError, TutorError
from tutor.llm.breaker import llm_status

if TYPE_CHECKING:
    import numpy as np

    from ingest.sentences import SentenceVectors
    from tutor.prompt import Source

__all__ = [
    "BackendConfig",
    "ConfigError",
    "Grounding",
    "LLMBackend",
    "LLMContextTooLongError",
    "LLMRequestError",
    "LLMUnavailableError",
    "backend_names",
    "create_backend",
    "cut_at_stop",
    "llm_status",
    "register_backend",
]


class LLMUnavailableError(TutorError, ConnectionError):
    """The model cannot answer now: server down, refused, timed out, or failing with 5xx."""


class LLMRequestError(TutorError, ValueError):
    """The server rejected the request (4xx), e.g. an unknown model name; retrying will not help."""


class LLMContextTooLongError(LLMRequestError):
    """The prompt and answer do not fit the model's context window; a shorter prompt may."""


@dataclass
class BackendConfig:
    """What a backend needs to reach its model; the tutor's settings object fills it."""

    base_url: str = field(default="", metadata={"help": "OpenAI-compatible server URL, ending in /v1"})
    model: str = field(default="", metadata={"help": "served model name (a vLLM LoRA adapter name works too)"})
    api_key: str = field(default="", metadata={"help": "API key; local servers accept any value"})
    timeout_s: float = field(
        default=60.0, metadata={"help": "longest a whole answer may take; past it, the answer is cut off"})
    first_token_timeout_s: float = field(
        default=15.0, metadata={"help": "longest wait for the first text of an answer, and for each read after it"})
    connect_timeout_s: float = field(default=3.0, metadata={"help": "longest wait to open a connection"})
    max_retries: int = field(
        default=2, metadata={"help": "retries of a refused connection or HTTP 5xx, before the first token only"})
    retry_backoff_s: float = field(default=0.5, metadata={"help": "first retry delay; doubles each retry"})
    probe_interval_s: float = field(
        default=5.0, metadata={"help": "while the server is marked down, how often to check whether it is back"})
    model_path: str = field(default="", metadata={"help": "local backend: folder of a transformers model"})
    adapter_path: str = field(default="", metadata={"help": "local backend: folder of a PEFT adapter"})
    device: str = field(default="cpu", metadata={"help": "local backend: torch device, e.g. cpu or cuda"})

    def __post_init__(self) -> None:
        for name in ("timeout_s", "first_token_timeout_s", "connect_timeout_s", "probe_interval_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"LLM {name} must be a positive number of seconds, got {getattr(self, name)!r}")
        if self.max_retries < 0:
            raise ConfigError(f"LLM max_retries must be 0 or more, got {self.max_retries!r}")
        if self.retry_backoff_s < 0:
            raise ConfigError(f"LLM retry_backoff_s must be 0 or more, got {self.retry_backoff_s!r}")


@dataclass(frozen=True)
class Grounding:
    """What a backend that reads the sources itself answers from, instead of a prompt.

    `question` is the student's question with abbreviations spelled out; `sources` are the numbered
    passages the answer may cite; `sentences` holds the vectors ingest computed for their quotable
    sentences and `question_vector` the question's, so that normally nothing is embedded while a
    student waits; `embed` embeds whatever is missing."""

    question: str
    sources: list[Source]
    embed: Callable[[list[str]], np.ndarray]
    question_vector: np.ndarray | None = None
    sentences: SentenceVectors | None = None
    mode: str = "explain"


class LLMBackend(ABC):
    """Streams a chat answer as text deltas. Subclasses set `name` and `model` and write `stream`.

    A backend with `reads_sources = True` answers from the `grounding` it is given rather than from the
    prompt; the answer engine gives one to such backends only, so the others never see it."""

    name: str
    model: str
    reads_sources: ClassVar[bool] = False
    # Whether the text arrives over time (a model writing) or all at once (quoted sentences): the chat
    # shows a streaming answer's pieces as they come, a whole one in a single update.
    streams: ClassVar[bool] = True

    @abstractmethod
    def stream(
        self,
        messages: list[dict],
        *,
        max_tokens: int = 512,
        temperature: float = 0.2,
        stop: list[str] | None = None,
        grounding: Grounding | None = None,
        **opts,
    ) -> Iterator[str]:
        """Yield the answer to `messages` ({"role", "content"} dicts) piece by piece, as generated.

        `opts` are passed on to the model (server request fields, `generate` arguments)."""

    def complete(self, messages: list[dict], **opts) -> str:
        """The whole answer at once: `stream` joined, for callers that do not show progress."""
        return "".join(self.stream(messages, **opts))


def cut_at_stop(texts: Iterable[str], stop: list[str] | None) -> Iterator[str]:
    """Pass `texts` through up to the first stop string, which is left out (OpenAI's semantics).

    Servers differ (vLLM drops the stop string, `transformers serve` and `generate` keep it), so
    backends run their output through this to give every caller the same answer. Text that could be
    the start of a stop string is held back until the next piece decides it.
    """
    stop = [s for s in stop or [] if s]
    if not stop:
        yield from texts
        return
    hold = max(len(s) for s in stop) - 1
    pending = ""
    for text in texts:
        pending += text
        cuts = [pending.find(s) for s in stop if s in pending]
        if cuts:
            if min(cuts) > 0:
                yield pending[: min(cuts)]
            return
        if len(pending) > hold:
            ready, pending = pending[: len(pending) - hold], pending[len(pending) - hold :]
            yield ready
    if pending:
        yield pending


BackendFactory = Callable[[BackendConfig], LLMBackend]

_FACTORIES: dict[str, BackendFactory] = {}

# Built-in backends live in these modules and register on import; importing lazily keeps torch out
# of a process that only talks HTTP, and lets a module be added without touching this registry.
_BUILTIN_MODULES = {
    "openai": "tutor.llm.openai_backend",
    "local": "tutor.llm.local",
    "extractive": "tutor.llm.extractive",
}


def register_backend(name: str) -> Callable[[BackendFactory], BackendFactory]:
    """Decorator: make `factory(config) -> LLMBackend` available as `create_backend(name, config)`."""

    def decorator(factory: BackendFactory) -> BackendFactory:
        _FACTORIES[name] = factory
        return factory

    return decorator


def backend_names() -> list[str]:
    """Every name `create_backend` accepts: the built-ins and whatever else has registered."""
    return sorted(set(_FACTORIES) | set(_BUILTIN_MODULES))


def create_backend(name: str, config: BackendConfig | None = None) -> LLMBackend:
    """Build the backend registered as `name`; an unknown name is a `ConfigError` listing the known ones."""
    if name not in _FACTORIES and name in _BUILTIN_MODULES:
        importlib.import_module(_BUILTIN_MODULES[name])
    factory = _FACTORIES.get(name)
    if factory is None:
        raise ConfigError(
            f"unknown LLM backend {name!r}; choose one of: {', '.join(backend_names())} "
            "(set TUTOR_LLM_BACKEND, or llm_backend in tutor.toml)"
        )
    return factory(config if config is not None else BackendConfig())
