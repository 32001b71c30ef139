"""The `local` backend: a transformers model in this process, with an optional PEFT adapter.

For a laptop or a single machine without a model server: the model is read from a local folder
(never downloaded), the tokenizer's own chat template formats the conversation, and generation runs
in a background thread whose tokens reach the caller through `TextIteratorStreamer`.

    backend = create_backend("local", BackendConfig(model_path="models/base", adapter_path="models/course-lora"))
    for delta in backend.stream([{"role": "user", "content": "What is a residual block?"}]):
        print(delta, end="")

A model is loaded once per (model_path, adapter_path, device) and shared by every backend object
that asks for it, so building a backend per request costs nothing after the first.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tutor.llm import BackendConfig, ConfigError, LLMBackend, cut_at_stop, register_backend

_loaded: dict[tuple[str, str, str], tuple[Any, Any]] = {}
_loading_lock = threading.Lock()


@register_backend("local")
def create_local_backend(config: BackendConfig) -> LocalBackend:
    return LocalBackend(config)


class LocalBackend(LLMBackend):
    """Streams from an in-process `AutoModelForCausalLM` (plus a PEFT adapter when one is given)."""

    name = "local"

    def __init__(self, config: BackendConfig):
        self.model_path = _checked_model_path(config.model_path)
        self.adapter_path = _checked_adapter_path(config.adapter_path)
        self.device = config.device
        default_name = self.model_path.name + (f"+{self.adapter_path.name}" if self.adapter_path else "")
        self.model = config.model or default_name

    def stream(
        self,
        messages: list[dict],
        *,
        max_tokens: int = 512,
        temperature: float = 0.2,
        stop: list[str] | None = None,
        **opts,
    ) -> Iterator[str]:
        from transformers import StoppingCriteriaList, TextIteratorStreamer

        model, tokenizer = load_model(self.model_path, self.adapter_path, self.device)
        inputs = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        ).to(model.device)
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        cancelled = threading.Event()
        generate_kwargs = {
            **inputs,
            "streamer": streamer,
            "max_new_tokens": max_tokens,
            "stopping_criteria": StoppingCriteriaList([_StopWhenCancelled(cancelled)]),
            **_sampling_options(temperature),
            **opts,
        }
        if stop:
            # Stops generating early; `cut_at_stop` below then drops the stop string itself.
            generate_kwargs.update(stop_strings=stop, tokenizer=tokenizer)

        failure: list[BaseException] = []

        def generate() -> None:
            try:
                model.generate(**generate_kwargs)
            except BaseException as error:  # handed to the caller's thread below
                failure.append(error)
                streamer.end()

        worker = threading.Thread(target=generate, name="local-llm-generate", daemon=True)
        worker.start()
        try:
            for text in cut_at_stop(streamer, stop):
                if text:
                    yield text
        finally:
            # The caller may stop reading early (a closed chat tab): stop generating too.
            cancelled.set()
            worker.join()
        if failure:
            raise failure[0]


def load_model(model_path: Path, adapter_path: Path | None, device: str = "cpu") -> tuple[Any, Any]:
    """The (model, tokenizer) pair for these paths, loaded on first use and cached for the process."""
    key = (str(model_path), str(adapter_path or ""), device)
    with _loading_lock:
        if key not in _loaded:
            _loaded[key] = _load_uncached(model_path, adapter_path, device)
        return _loaded[key]


def _load_uncached(model_path: Path, adapter_path: Path | None, device: str) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # An adapter may ship its own tokenizer (e.g. with added chat tokens); it then wins.
    has_own_tokenizer = adapter_path is not None and (adapter_path / "tokenizer_config.json").exists()
    tokenizer = AutoTokenizer.from_pretrained(adapter_path if has_own_tokenizer else model_path)
    dtype = torch.float32 if device == "cpu" else "auto"
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype)
    if adapter_path is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter_path)
    return model.to(device).eval(), tokenizer


def _sampling_options(temperature: float) -> dict:
    """Greedy decoding at temperature 0 (reproducible answers), sampling above it."""
    if temperature <= 0:
        return {"do_sample": False}
    return {"do_sample": True, "temperature": temperature}


class _StopWhenCancelled:
    """A stopping criterion that ends generation once the reader has gone away."""

    def __init__(self, cancelled: threading.Event):
        self.cancelled = cancelled

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        return torch.full((input_ids.shape[0],), self.cancelled.is_set(), dtype=torch.bool, device=input_ids.device)


def _checked_model_path(model_path: str) -> Path:
    if not model_path:
        raise ConfigError(
            "the local LLM backend needs a model folder: set TUTOR_LLM_MODEL_PATH to a directory saved "
            "with `save_pretrained` (config.json, weights, tokenizer), or choose the extractive backend"
        )
    path = Path(model_path).expanduser()
    if not (path / "config.json").is_file():
        raise ConfigError(
            f"local LLM model folder {str(path)!r} has no config.json; set TUTOR_LLM_MODEL_PATH to a folder "
            "saved with `save_pretrained` (models are read from disk, never downloaded)"
        )
    return path


def _checked_adapter_path(adapter_path: str) -> Path | None:
    if not adapter_path:
        return None
    path = Path(adapter_path).expanduser()
    if not (path / "adapter_config.json").is_file():
        raise ConfigError(
            f"local LLM adapter folder {str(path)!r} has no adapter_config.json; set TUTOR_LLM_ADAPTER_PATH "
            "to a PEFT adapter saved with `save_pretrained` (e.g. by `tutor finetune`), or leave it empty"
        )
    return path
