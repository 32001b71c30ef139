"""Shared pytest fixtures: the tiny chat model, its LoRA adapter, and a real server hosting it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from postgres import postgres_server, postgres_url  # noqa: E402,F401  (a throwaway PostgreSQL server)

# The name the tiny model is served under by `transformers serve` (a hub-style id in a private cache).
TINY_SERVED_ID = "course/tiny"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A random-weight two-layer Llama with a locally trained tokenizer and a chat template."""
    from tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def tiny_adapter_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """A rank-4 LoRA adapter for the tiny model whose weights change its output."""
    from tiny_model import build_tiny_lora_adapter

    return build_tiny_lora_adapter(tiny_model_dir, tmp_path_factory.mktemp("tiny-adapter"))


@pytest.fixture(scope="session")
def tiny_server(tiny_model_dir, tmp_path_factory):
    """`transformers serve` on a free local port, serving the tiny model as `course/tiny`.

    Yields a `serving.hf_serve.ServeProcess` (`.base_url` ends in /v1, `.model` is the name to ask for).
    """
    from serving.hf_serve import serve_with_transformers

    cache_dir = tmp_path_factory.mktemp("hf-cache")
    with serve_with_transformers(tiny_model_dir, TINY_SERVED_ID, cache_dir=cache_dir) as server:
        yield server


@pytest.fixture(scope="session")
def shipped_course(tmp_path_factory):
    """The shipped course with its decks built, ingested once per test session into a temporary
    data dir (the slowest fixture: about a minute of embedding). Returns (data_dir, IngestReport)."""
    import importlib.util

    from course_fixtures import shared_embedder

    from ingest.pipeline import IngestOptions, ingest_course

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("build_decks", root / "corpus/build_decks.py")
    build_decks = importlib.util.module_from_spec(spec)
    sys.modules["build_decks"] = build_decks  # dataclasses look their module up while it loads
    spec.loader.exec_module(build_decks)
    build_decks.build_course_decks(root / "corpus/dl-intro")
    data_dir = tmp_path_factory.mktemp("shipped-data")
    report = ingest_course(root / "corpus/dl-intro", IngestOptions(data_dir=data_dir), embedder=shared_embedder())
    return data_dir, report


@pytest.fixture(autouse=True)
def fresh_llm_breakers():
    """Each test starts with every LLM server trusted: a breaker opened by one test's dead server
    (and its background probe) must not make another test's server on a reused port look down."""
    from tutor.llm.breaker import reset_breakers

    reset_breakers()
    yield
    reset_breakers()
