"""vLLM on a GPU: one tiny base model, two LoRA adapters, each a `model` name the tutor can ask for.

Run with `pytest -m gpu tests/test_vllm_gpu.py` on a machine with an NVIDIA GPU and
`pip install 'course-tutor[serve]'`. It is never part of the default run, and this module imports
nothing from vLLM, so collecting it works everywhere. Without vLLM the test fails with the message
`tutor serve` gives, rather than skipping: asking for the gpu tests means wanting them to run.

The base is built here rather than taken from `tests/tiny_model.py`: vLLM's attention and LoRA
kernels want a head size of 64 and a vocabulary of at least 32000 rows, which the CPU fixture
(head size 12, ~500 tokens) does not have. Its weights are random; the test checks serving, names
and that the two adapters change the output differently, never wording.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from serving.hf_serve import find_free_port
from serving.serve import ServeRequest, serve_model
from serving.vllm_launch import check_adapter_for_vllm
from tutor.llm import BackendConfig, create_backend

pytestmark = pytest.mark.gpu

VLLM_VOCAB_ROWS = 32000


def build_vllm_tiny_model(out_dir: Path) -> Path:
    import torch
    from tiny_model import SEED, build_tiny_tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=VLLM_VOCAB_ROWS, hidden_size=512, intermediate_size=1024, num_hidden_layers=2,
        num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False, initializer_range=0.2)
    torch.manual_seed(SEED)
    LlamaForCausalLM(config).to(torch.float16).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def build_adapter(model_dir: Path, out_dir: Path, seed: int) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32),
                           LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "o_proj"]))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.5)
    model.save_pretrained(out_dir, save_embedding_layers=False)
    return out_dir


def test_vllm_serves_two_course_adapters(tmp_path):
    base = build_vllm_tiny_model(tmp_path / "base")
    adapters = {name: build_adapter(base, tmp_path / name, seed) for name, seed in (("dl-intro", 1), ("ml-101", 2))}
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
