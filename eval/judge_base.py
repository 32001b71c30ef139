"""What every judge is: the `Judge` interface, its `Verdict`, the `llm` judge's settings, and the
registry that `eval.judges.create_judge` looks names up in.

Kept apart from the judges themselves so that `eval.judges` (the offline judges and `create_judge`)
and `eval.judge_llm` (the model judge) both import this module and neither imports the other back.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ingest.errors import ConfigError


@dataclass
class Verdict:
    """A judge's decision: `score` in [0, 1] (None when it could not decide), `passed` for a yes/no
    question (does the passage support the sentence?), and its reasoning in words."""

    score: float | None
    passed: bool | None = None
    reason: str = ""


@dataclass
class JudgeConfig:
    """Settings of the `llm` judge (the offline judges need none)."""

    backend: str = field(default="openai", metadata={"help": "tutor.llm backend that reaches the judge model"})
    base_url: str = field(default="", metadata={"help": "OpenAI-compatible server URL of the judge model"})
    model: str = field(default="", metadata={"help": "served name of the judge model"})
    api_key: str = field(default="", metadata={"help": "API key of the judge server, if it wants one"})
    timeout_s: float = field(default=120.0, metadata={"help": "longest wait for one verdict"})
    cache_path: Path | None = field(default=None, metadata={"help": "SQLite file of cached verdicts"})
    workers: int = field(default=4, metadata={"help": "verdicts requested at once"})
    max_tokens: int = field(default=300, metadata={"help": "longest verdict the judge may write"})

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ConfigError(f"judge workers must be 1 or more, got {self.workers!r}")

    @classmethod
    def from_settings(cls, settings, cache_path: Path | None = None) -> JudgeConfig:
        """The judge the settings name (`judge_base_url`, `judge_model`, `judge_api_key`: tutor.toml,
        `TUTOR_JUDGE_*` or the `--judge-*` flags)."""
        return cls(base_url=settings.judge_base_url, model=settings.judge_model,
                   api_key=settings.judge_api_key.get_secret_value(), cache_path=cache_path)
        if self.max_tokens < 8:
            raise ConfigError(f"judge max_tokens must be 8 or more (a JSON verdict), got {self.max_tokens!r}")

    def describe(self) -> dict:
        """The settings worth recording with a run (never the API key)."""
        return {"backend": self.backend, "base_url": self.base_url, "model": self.model}


class Judge(ABC):
    """Scores correctness against a reference and support of a sentence by a passage, in batches."""

    name: str

    @abstractmethod
    def correctness(self, items: list[tuple[str, str, str]]) -> list[Verdict]:
        """One verdict per (question, answer, reference): how well the answer matches the reference."""

    @abstractmethod
    def support(self, pairs: list[tuple[str, str]]) -> list[Verdict]:
        """One verdict per (sentence, passage): does the passage support the sentence?"""

    def describe(self) -> dict:
        return {"name": self.name}


JudgeFactory = Callable[[JudgeConfig, object], Judge]
_FACTORIES: dict[str, JudgeFactory] = {}


def register_judge(name: str) -> Callable[[JudgeFactory], JudgeFactory]:
    """Decorator: make `factory(config, embedder) -> Judge` available as `create_judge(name)`."""

    def decorator(factory: JudgeFactory) -> JudgeFactory:
        _FACTORIES[name] = factory
        return factory

    return decorator


def registered_judges() -> dict[str, JudgeFactory]:
    """Judge name -> factory, for every judge registered so far."""
    return dict(_FACTORIES)
