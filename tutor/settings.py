"""The one typed settings object: defaults < `tutor.toml` < `TUTOR_*` environment < CLI flags.

    settings = load_settings(llm_backend="openai")      # flags win over everything
    settings = load_settings()                          # tutor.toml in the working directory, env

Every field carries its help text; a bad value is rejected with the field's name and the accepted
values. `TUTOR_CONFIG` names another TOML file than `./tutor.toml`.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from ingest import defaults
from ingest.errors import ConfigError



def backend_choices() -> list[str]:
    """`auto` and every registered LLM backend (tutor.llm's registry, so an added backend can be chosen)."""
    from tutor.llm import backend_names

    return ["auto", *backend_names()]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TUTOR_", extra="forbid", validate_default=True)

    data_dir: Path = Field(Path("data"), description="Where indexes, caches and the chat log live.")
    course: str = Field("", description="Default course id; empty means the only (or first) indexed course.")
    embedding_model: str = Field(
        "", description="Path of a sentence-transformers model; empty means the bundled all-MiniLM-L6-v2."
    )
    chunk_tokens: int = Field(defaults.CHUNK_TOKENS, ge=32, le=512, description="Largest chunk, in embedder tokens.")
    chunk_overlap: int = Field(defaults.CHUNK_OVERLAP, ge=0, le=128, description="Tokens shared by consecutive chunks of a long section.")
    max_file_mb: float = Field(defaults.MAX_FILE_MB, gt=0, description="Files larger than this are skipped at ingest.")
    ocr: bool = Field(
        False, description="Read PDFs that have almost no text layer with Tesseract OCR (Debian's tesseract-ocr); "
        "off, such a PDF uses a same-named Markdown/HTML source beside it or is skipped with \"needs OCR\"."
    )
    code_framework: Literal["pytorch", "tensorflow", "jax", "mxnet"] = Field(
        defaults.CODE_FRAMEWORK, description="Which framework's code to keep from multi-framework code tabs in book chapters "
        "(pytorch | tensorflow | jax | mxnet)."
    )
    embedding_backend: Literal["torch", "onnx", "onnx-int8"] = Field(
        defaults.EMBEDDING_BACKEND, description="How the embedding model runs: torch, onnx (about 1.8x faster on CPU) or onnx-int8 "
        "(about 2.5x faster, slightly lower recall). Changing it re-embeds the course at the next ingest."
    )
    embedding_process: bool = Field(
        True, description="The chat server runs the embedding model in a child process of its own (same vectors), so "
        "a lecture hall's questions do not slow it down by contending with the server's threads; false keeps it in "
        "the server's process (less memory, about 300 MB)."
    )
    hnsw_threshold: int = Field(
        defaults.HNSW_THRESHOLD, ge=0, description="Courses with more chunks than this get an approximate (HNSW) vector index "
        "instead of an exact one; 0 always uses HNSW."
    )
    database_url: str = Field(
        "", description="SQLAlchemy URL of the chat-log database (e.g. postgresql+psycopg://user@host/tutor); "
        "empty means a SQLite file in the data folder."
    )

    llm_backend: str = Field(
        "auto", description="extractive | openai | local | auto (openai if a base URL is set, local if a "
        "model path is set, else extractive)."
    )
    llm_base_url: str = Field("", description="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1 (vLLM).")
    llm_model: str = Field("", description="Served model name: the base model or a LoRA adapter's name.")
    llm_api_key: SecretStr = Field(SecretStr(""), description="API key for the server, if it wants one.")
    llm_timeout_s: float = Field(
        60.0, gt=0, description="Longest a whole answer may take, in seconds; past it the answer is cut off."
    )
    llm_first_token_timeout_s: float = Field(
        15.0, gt=0, description="Longest wait for the model's first text (and each read after it); a server "
        "this slow is marked down and questions are answered from the course material meanwhile."
    )
    llm_connect_timeout_s: float = Field(3.0, gt=0, description="Longest wait to connect to the LLM server.")
    llm_probe_interval_s: float = Field(
        5.0, gt=0, description="While the LLM server is marked down, seconds between checks that it is back."
    )
    llm_max_retries: int = Field(
        2, ge=0, le=10, description="Retries (with backoff, within a few seconds) of a refused connection or "
        "server error before the first token."
    )
    llm_model_path: str = Field("", description="Local transformers model folder for the `local` backend.")
    llm_adapter_path: str = Field("", description="Optional PEFT (LoRA) adapter folder for the `local` backend.")
    max_answer_tokens: int = Field(512, ge=16, le=8192, description="Longest answer the LLM may write.")

    top_k: int = Field(5, ge=1, le=50, description="Sources handed to the answer.")
    fusion: Literal["rrf", "weighted"] = Field(defaults.FUSION, description="How dense and lexical rankings are fused.")
    reranker_model: str = Field("", description="Optional cross-encoder folder to rerank the fused candidates.")
    min_relevance: float = Field(
        -1.0, description="Dense-similarity floor below which a question is out of scope; -1 uses the "
        "built-in floor (tutor/policy.py OUT_OF_SCOPE_SIMILARITY, measured on the shipped course)."
    )
    mode: Literal["explain", "socratic"] = Field("explain", description="Default answering style.")

    judge_base_url: str = Field("", description="OpenAI-compatible server of the `tutor eval` llm judge.")
    judge_model: str = Field("", description="Model name of the llm judge.")
    judge_api_key: SecretStr = Field(SecretStr(""), description="API key of the judge server, if it wants one.")

    host: str = Field("127.0.0.1", description="Address the chat listens on; 0.0.0.0 exposes it to the network.")
    port: int = Field(7860, ge=1, le=65535, description="Port the chat listens on.")
    instructor_password: SecretStr = Field(
        SecretStr(""), description="Password of the instructor tab; empty hides the tab."
    )
    max_upload_mb: float = Field(100.0, gt=0, description="Largest file an instructor may upload.")

    @field_validator("llm_backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        accepted = backend_choices()
        if value not in accepted:
            raise ValueError(f"unknown LLM backend {value!r}; accepted: {', '.join(accepted)}")
        return value

    @model_validator(mode="after")
    def _overlap_within_chunk(self) -> Settings:
        if self.chunk_overlap >= self.chunk_tokens:
            raise ValueError(f"chunk_overlap ({self.chunk_overlap}) must be smaller than chunk_tokens "
                             f"({self.chunk_tokens}); lower the overlap or raise the chunk size")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = Path(os.environ.get("TUTOR_CONFIG", "tutor.toml"))
        return init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=toml_file)

    def resolved_backend(self) -> str:
        """The backend `auto` stands for with these settings."""
        if self.llm_backend != "auto":
            return self.llm_backend
        if self.llm_base_url:
            return "openai"
        if self.llm_model_path:
            return "local"
        return "extractive"

    # The data folder's layout: every path under data_dir is built here and nowhere else.
    def index_root(self) -> Path:
        from ingest.store import index_root_of

        return index_root_of(self.data_dir)

    def chatlog_path(self) -> Path:
        return self.data_dir / "chatlog.sqlite"

    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    def models_dir(self) -> Path:
        return self.data_dir / "models"

    def adapters_dir(self, course: str = "") -> Path:
        return self.data_dir / "adapters" / course if course else self.data_dir / "adapters"

    def onnx_dir(self) -> Path:
        return self.data_dir / "cache" / "onnx"

    def default_course(self) -> str:
        """The course a command means without --course (`ingest.store.resolve_course`, the one rule)."""
        from ingest.store import resolve_course

        return resolve_course(self.index_root(), self.course)

    def open_index(self, course: str | None = None):
        """The live index of `course`, else of the default course: the one way to open a course."""
        from ingest.store import open_index

        return open_index(self.index_root(), course or self.course)

    # Each part's config, built from these settings in one place.
    def embedder(self):
        from ingest.embed import Embedder

        return Embedder(self.embedding_model, backend=self.embedding_backend, onnx_dir=self.onnx_dir())

    def backend_config(self, course: str = "", **overrides):
        """The LLM backend's `BackendConfig`; `overrides` (e.g. base_url, model) replace fields. Without an
        `llm_adapter_path`, the `local` backend loads `course`'s promoted adapter (`tutor adapters promote`)."""
        from tutor.llm import BackendConfig
        from tutor.models import promoted_adapter, resolve_model_path

        config = BackendConfig(
            base_url=self.llm_base_url, model=self.llm_model, api_key=self.llm_api_key.get_secret_value(),
            timeout_s=self.llm_timeout_s, first_token_timeout_s=self.llm_first_token_timeout_s,
            connect_timeout_s=self.llm_connect_timeout_s, probe_interval_s=self.llm_probe_interval_s,
            max_retries=self.llm_max_retries,
            model_path=resolve_model_path(self.llm_model_path, self.data_dir) if self.llm_model_path else "",
            adapter_path=self.llm_adapter_path or (
                promoted_adapter(self.adapters_dir(), course) if course and self.resolved_backend() == "local" else ""),
        )
        return dataclasses.replace(config, **overrides) if overrides else config

    def backend(self, course: str = ""):
        """The answering backend these settings name (`auto` resolved), for `course`."""
        from tutor.llm import create_backend

        return create_backend(self.resolved_backend(), self.backend_config(course))

    def retriever(self, index, embedder):
        from tutor.retrieve import Retriever

        return Retriever(index, embedder, fusion=self.fusion, reranker_model=self.reranker_model)

    def ingest_options(self, rebuild: bool = False):
        """These settings as the ingest pipeline's `IngestOptions` (the one place that copies them)."""
        from ingest.pipeline import IngestOptions

        return IngestOptions(data_dir=self.data_dir, embedding_model=self.embedding_model,
                             chunk_tokens=self.chunk_tokens, chunk_overlap=self.chunk_overlap,
                             max_file_mb=self.max_file_mb, rebuild=rebuild,
                             embedding_backend=self.embedding_backend, hnsw_threshold=self.hnsw_threshold,
                             ocr=self.ocr, code_framework=self.code_framework)


def load_settings(**flags: Any) -> Settings:
    """Settings from every layer; `flags` (None values ignored) win. Errors become `ConfigError`."""
    given = {k: v for k, v in flags.items() if v is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(
            f"invalid settings ({problems}); check tutor.toml, TUTOR_* variables and flags"
        ) from None
