"""Shared pytest fixtures: the tiny chat model, its LoRA adapter, and a real server hosting it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

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
