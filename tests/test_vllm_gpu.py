"""vLLM on a GPU: one tiny base model, two LoRA adapters, each a `model` name the tutor can ask for.

Run with `pytest -m gpu tests/test_vllm_gpu.py` on a machine with an NVIDIA GPU and
`pip install 'course-tutor[serve]'`. It is never part of the default run, and this module imports
nothing from vLLM, so collecting it works everywhere. Without vLLM the test fails with the message
`tutor serve` gives, rather than skipping: asking for the gpu tests means wanting them to run.

The base is `tiny_model.build_vllm_tiny_model` (head size 64, 32000 rows: what vLLM's kernels
want), not the CPU fixture. Its weights are random; the test checks serving, names and that the two
adapters change the output differently, never wording.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from tiny_model import VLLM_LORA, build_tiny_lora_adapter, build_vllm_tiny_model

from serving.hf_serve import find_free_port
from serving.serve import ServeRequest, serve_model
from serving.vllm_launch import check_adapter_for_vllm
from tutor.llm import BackendConfig, create_backend

pytestmark = pytest.mark.gpu


def test_vllm_serves_two_course_adapters(tmp_path):
    base = build_vllm_tiny_model(tmp_path / "base")
    adapters = {name: build_tiny_lora_adapter(base, tmp_path / name, seed, **VLLM_LORA)
                for name, seed in (("dl-intro", 1), ("ml-101", 2))}
    for adapter in adapters.values():
        assert check_adapter_for_vllm(adapter, base, max_lora_rank=8) == []
    request = ServeRequest(engine="vllm", base=str(base), adapters={n: str(p) for n, p in adapters.items()},
                           port=find_free_port(), served_model_name="tiny-base", gpu_memory_utilization=0.3,
                           work_dir=tmp_path / "serve", startup_timeout_s=600,
                           extra_args=["--max-model-len", "512", "--enforce-eager"])
    with serve_model(request) as served:
        assert served.model == "dl-intro"
        with urllib.request.urlopen(served.base_url + "/models", timeout=10) as response:
            listed = {entry["id"] for entry in json.load(response)["data"]}
        assert listed >= {"tiny-base", "dl-intro", "ml-101"}
        question = [{"role": "user", "content": "What does the optimizer do?"}]
        replies = {}
        for name in ("tiny-base", "dl-intro", "ml-101"):
            backend = create_backend("openai", BackendConfig(base_url=served.base_url, model=name))
            replies[name] = backend.complete(question, max_tokens=16, temperature=0.0)
            assert replies[name], name
        assert len(set(replies.values())) == 3, replies  # each adapter changes the greedy output its own way
