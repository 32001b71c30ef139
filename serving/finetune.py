"""LoRA fine-tuning with PEFT: the tutor's prompt format in, a vLLM-loadable adapter out.

    data = build_finetune_data(index, embedder)                       # serving.finetune_data
    result = train_lora(Path("models/base"), data, Path("adapters/dl-intro"), LoraSettings(rank=16))
    result.adapter_dir        # adapter_config.json + adapter_model.safetensors + lineage.json

A plain PyTorch loop (no trainer framework): the loss is taken on the assistant's reply only (the
prompt's labels are -100), the loss of every step is logged with steps/s, tokens/s (prompt and reply
tokens through forward and backward, padding excluded) and the time left, validation loss is measured
after each epoch, the curve is saved as `adapter/loss_curve.png`, and the saved adapter is checked against vLLM's loading rules
(`serving.vllm_launch.check_adapter_for_vllm`) before the run counts as done. `lineage.json` next to
the adapter names the base model, the data's sha256, the settings and the metrics, so an adapter in
production can be traced to what made it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import platform
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ingest.errors import ConfigError, TutorError
from serving.finetune_data import Example, FinetuneData
from serving.vllm_launch import LARGEST_LORA_RANK, check_adapter_for_vllm, smallest_max_lora_rank

LOSS_CURVE = "loss_curve.png"  # saved next to the adapter
IGNORE_INDEX = -100  # labels with this value add nothing to the loss (PyTorch cross-entropy default)
# Layers LoRA must not touch for vLLM: it serves adapters on the linear layers inside the decoder.
_NOT_TARGETABLE = {"embed_tokens", "lm_head", "wte", "wpe", "embed_in", "embed_out"}
_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


class FinetuneError(TutorError, RuntimeError):
    """Training could not produce a usable adapter; the message says why and what to change."""


@dataclass
class LoraSettings:
    """How the adapter is trained. Every field is also a `tutor finetune` flag.

    The rank may be any value from 1 to 512: vLLM loads an adapter whose rank is at most the
    server's `--max-lora-rank`, which must be one of 1, 8, 16, 32, 64, 128, 256, 320, 512
    (vllm/config/lora.py); `tutor serve` picks the smallest of those that fits. A rank between
    them (say 4) works, but vLLM reserves memory for the larger one.
    """

    rank: int = field(default=8, metadata={"help": "LoRA rank r (1-512; vLLM serves r <= --max-lora-rank)"})
    alpha: int = field(default=16, metadata={"help": "LoRA alpha; the update is scaled by alpha / rank"})
    target_modules: tuple[str, ...] = field(default=("q_proj", "v_proj"), metadata={
        "help": "linear layers (last name part) that get adapters, e.g. q_proj,k_proj,v_proj,o_proj"})
    dropout: float = field(default=0.05, metadata={"help": "dropout on the adapter's input while training"})
    learning_rate: float = field(default=2e-4, metadata={"help": "AdamW learning rate (constant)"})
    epochs: int = field(default=3, metadata={"help": "passes over the training examples"})
    max_length: int = field(default=4096, metadata={
        "help": "longest example in tokens; longer ones are left out (the tutor's prompt with five sources "
                "is typically 1.5k-3k tokens)"})
    batch_size: int = field(default=4, metadata={"help": "examples per optimizer step"})
    seed: int = field(default=0, metadata={"help": "seeds adapter init, dropout and example order"})

    def __post_init__(self) -> None:
        self.target_modules = tuple(self.target_modules)
        if not 1 <= self.rank <= LARGEST_LORA_RANK:
            raise ConfigError(f"rank {self.rank} must be between 1 and {LARGEST_LORA_RANK} (the largest "
                              "--max-lora-rank vLLM accepts); 8, 16 or 32 are usual")
        if self.alpha <= 0:
            raise ConfigError(f"alpha {self.alpha} must be positive (usually twice the rank)")
        if not self.target_modules:
            raise ConfigError("target_modules is empty; name the layers to adapt, e.g. q_proj,v_proj")
        for name in self.target_modules:
            if not _MODULE_NAME.match(name):
                raise ConfigError(f"target module {name!r} is not a module name like q_proj")
            if name.rsplit(".", 1)[-1] in _NOT_TARGETABLE:
                raise ConfigError(f"target module {name!r} is an embedding or output layer, which vLLM does "
                                  "not serve LoRA on; target linear layers such as q_proj,v_proj")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout {self.dropout} must be in [0, 1)")
        if not 0 < self.learning_rate < 1:
            raise ConfigError(f"learning rate {self.learning_rate} must be in (0, 1); 2e-4 is usual for LoRA")
        if self.epochs < 1:
            raise ConfigError(f"epochs {self.epochs} must be 1 or more")
        if self.max_length < 16:
            raise ConfigError(f"max_length {self.max_length} is too short for a prompt; use 1024 or more")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size {self.batch_size} must be 1 or more")

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["target_modules"] = list(self.target_modules)
        return data


@dataclass
class TokenizedExample:
    input_ids: list[int]
    labels: list[int]     # IGNORE_INDEX on prompt tokens, the token id on reply tokens


@dataclass
class TrainResult:
    adapter_dir: Path
    lineage: dict
    merged_dir: Path | None = None


StepLog = Callable[[dict], None]


def tokenize_example(tokenizer, example: Example, max_length: int) -> TokenizedExample | None:
    """Prompt and reply as token ids with the prompt masked out; None if longer than `max_length`.

    The prompt is rendered with the generation prompt (as at inference) and tokenized apart from the
    reply, so training sees exactly the token boundary the model continues from when it answers.
    """
    prompt = tokenizer.apply_chat_template(example.messages, add_generation_prompt=True, tokenize=False)
    full = tokenizer.apply_chat_template(
        example.messages + [{"role": "assistant", "content": example.reply}], tokenize=False)
    if not full.startswith(prompt):
        raise FinetuneError("the tokenizer's chat template does not render a conversation as its prompt "
                            "followed by the reply; fine-tune a chat model whose template does")
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    reply_ids = tokenizer(full[len(prompt):], add_special_tokens=False)["input_ids"]
    if len(prompt_ids) + len(reply_ids) > max_length or not reply_ids:
        return None
    return TokenizedExample(prompt_ids + reply_ids, [IGNORE_INDEX] * len(prompt_ids) + reply_ids)


def collate(batch: list[TokenizedExample], pad_id: int):
    """Right-padded input ids, attention mask and labels (padding ignored by the loss)."""
    import torch

    width = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, example in enumerate(batch):
        n = len(example.input_ids)
        ids[row, :n] = torch.tensor(example.input_ids)
        labels[row, :n] = torch.tensor(example.labels)
        mask[row, :n] = 1
    return ids, mask, labels


def check_target_modules(model, target_modules: tuple[str, ...]) -> None:
    """Every target must name a linear layer of the model (PEFT silently skips the ones that do not)."""
    import torch

    linear = {name.rsplit(".", 1)[-1] for name, module in model.named_modules()
              if isinstance(module, torch.nn.Linear) and not name.endswith("lm_head")}
    missing = [t for t in target_modules if t.rsplit(".", 1)[-1] not in linear]
    if missing:
        raise ConfigError(f"target modules {', '.join(missing)} are not linear layers of this model; "
                          f"it has: {', '.join(sorted(linear))}")


def train_lora(base_model: Path, data: FinetuneData, out_dir: Path, settings: LoraSettings | None = None,
               log: StepLog | None = None) -> TrainResult:
    """Train a LoRA adapter on `data` over the base model at `base_model`; save it to `out_dir`."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    settings = settings or LoraSettings()
    log = log or (lambda record: None)
    base_model, out_dir = Path(base_model), Path(out_dir)
    if not (base_model / "config.json").is_file():
        raise ConfigError(f"--base {str(base_model)!r} is not a saved transformers model (no config.json)")
    random.seed(settings.seed)
    torch.manual_seed(settings.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32

    tokenizer = AutoTokenizer.from_pretrained(base_model)
    train = [t for e in data.train if (t := tokenize_example(tokenizer, e, settings.max_length))]
    validation = [t for e in data.validation if (t := tokenize_example(tokenizer, e, settings.max_length))]
    too_long = len(data.train) + len(data.validation) - len(train) - len(validation)
    log({"event": "tokenized", "train": len(train), "validation": len(validation), "too_long": too_long})
    if not train:
        raise FinetuneError(f"none of the {len(data.train)} training examples fits in --max-length "
                            f"{settings.max_length} tokens; raise it or use fewer sources (--top-k)")

    model = AutoModelForCausalLM.from_pretrained(base_model, dtype=dtype).to(device)
    check_target_modules(model, settings.target_modules)
    lora = LoraConfig(r=settings.rank, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                      target_modules=list(settings.target_modules), bias="none", task_type="CAUSAL_LM")
    model = get_peft_model(model, lora)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                  lr=settings.learning_rate, weight_decay=0.0)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    order = torch.Generator().manual_seed(settings.seed)

    epochs, step, tokens, curve, started = [], 0, 0, [], time.perf_counter()
    total_steps = settings.epochs * math.ceil(len(train) / settings.batch_size)
    for epoch in range(1, settings.epochs + 1):
        model.train()
        losses = []
        permutation = torch.randperm(len(train), generator=order).tolist()
        for first in range(0, len(train), settings.batch_size):
            batch = [train[i] for i in permutation[first:first + settings.batch_size]]
            ids, mask, labels = (t.to(device) for t in collate(batch, pad_id))
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            step += 1
            tokens += int(mask.sum())
            losses.append(loss.item())
            curve.append((step, loss.item()))
            elapsed = time.perf_counter() - started
            log({"event": "step", "epoch": epoch, "step": step, "of": total_steps, "loss": round(loss.item(), 5),
                 "steps_per_s": round(step / elapsed, 4), "tokens_per_s": round(tokens / elapsed, 1),
                 "eta_s": round(elapsed / step * (total_steps - step), 1)})
        record = {"epoch": epoch, "step": step, "train_loss": sum(losses) / len(losses),
                  "validation_loss": evaluate_loss(model, validation, pad_id, settings.batch_size, device)}
        epochs.append(record)
        log({"event": "epoch", **record})
    seconds = time.perf_counter() - started

    adapter_dir = out_dir / "adapter"
    model.save_pretrained(adapter_dir, save_embedding_layers=False)
    problems = check_adapter_for_vllm(adapter_dir, model.get_base_model().config)
    if problems:
        raise FinetuneError(f"the adapter saved to {adapter_dir} would not load in vLLM: " + "; ".join(problems))
    lineage = {
        "base_model": {"path": str(base_model.resolve()),
                       "name_or_path": getattr(model.get_base_model().config, "_name_or_path", ""),
                       "architecture": (model.get_base_model().config.architectures or [""])[0]},
        "data": {**data.manifest(), "too_long_skipped": too_long},
        "settings": settings.to_dict(),
        "serve_with": {"max_lora_rank": smallest_max_lora_rank(settings.rank)},
        "metrics": {"epochs": epochs, "steps": step, "seconds": round(seconds, 3),
                    "steps_per_s": round(step / seconds, 4) if seconds else math.nan,
                    "tokens": tokens, "tokens_per_s": round(tokens / seconds, 1) if seconds else math.nan,
                    "train_examples": len(train), "validation_examples": len(validation),
                    "first_epoch_train_loss": epochs[0]["train_loss"],
                    "last_epoch_train_loss": epochs[-1]["train_loss"],
                    "final_validation_loss": epochs[-1]["validation_loss"]},
        "environment": _versions(device),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (adapter_dir / "lineage.json").write_text(json.dumps(lineage, indent=2), encoding="utf-8")
    save_loss_curve(curve, epochs, adapter_dir / LOSS_CURVE)
    return TrainResult(adapter_dir, lineage)


def save_loss_curve(curve: list[tuple[int, float]], epochs: list[dict], path: Path) -> Path:
    """Training loss per step (and its running mean), validation loss per epoch, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, losses = zip(*curve) if curve else ((), ())
    window = max(1, len(losses) // 10)
    smooth = [sum(losses[max(0, i - window + 1):i + 1]) / len(losses[max(0, i - window + 1):i + 1])
              for i in range(len(losses))]
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    ax.plot(steps, losses, color="#9ab", linewidth=0.8, label="train loss (step)")
    ax.plot(steps, smooth, color="#036", label=f"train loss (mean of {window})")
    validation = [(e["step"], e["validation_loss"]) for e in epochs if e.get("validation_loss") is not None]
    if validation:
        ax.plot(*zip(*validation), "o", color="#c50", label="validation loss (epoch)")
    ax.set_xlabel("step")
    ax.set_ylabel("loss per reply token")
    ax.legend(frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def evaluate_loss(model, examples: list[TokenizedExample], pad_id: int, batch_size: int, device: str) -> float | None:
    """Mean loss per reply token over `examples` (None when there are none)."""
    import torch

    if not examples:
        return None
    model.eval()
    total, tokens = 0.0, 0
    with torch.no_grad():
        for first in range(0, len(examples), batch_size):
            ids, mask, labels = (t.to(device) for t in collate(examples[first:first + batch_size], pad_id))
            count = int((labels[:, 1:] != IGNORE_INDEX).sum())
            total += model(input_ids=ids, attention_mask=mask, labels=labels).loss.item() * count
            tokens += count
    model.train()
    return total / tokens


def merge_trained_adapter(base_model: Path, result: TrainResult, out_dir: Path) -> Path:
    """Fold the adapter into the base weights (for servers without LoRA, e.g. `transformers serve`)."""
    from serving.hf_serve import merge_adapter

    merged = merge_adapter(base_model, result.adapter_dir, out_dir)
    (Path(merged) / "lineage.json").write_text(json.dumps({**result.lineage, "merged_from": str(result.adapter_dir)},
                                                          indent=2), encoding="utf-8")
    result.merged_dir = Path(merged)
    return result.merged_dir


def _versions(device: str) -> dict:
    import peft
    import torch
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "peft": peft.__version__, "device": device}


def finetune_course(settings, course: str | None, base_model: Path | None, out_dir: Path | None,
                    lora: LoraSettings, data_options=None, teacher=None, merge: bool = False,
                    data_only: bool = False, log: StepLog | None = None, eval_dataset: str | Path | None = None,
                    shuffle_replies: bool = False) -> dict:
    """`tutor finetune`: build the course's examples, train, check, optionally merge; a summary dict.

    `settings` is the tutor's `Settings` (data dir, index, embedder, chat log); the adapter goes to
    `out_dir/adapter` (default `<data dir>/adapters/<course>`), the examples to `out_dir/data`.
    No example overlapping a case of `eval_dataset` is trained on (`serving.holdout`); None means the
    course's shipped set (`eval/datasets/<course>.jsonl`) when there is one, "" means none.
    `shuffle_replies` trains a negative control on mismatched replies (`FinetuneData.with_shuffled_replies`).
    """
    from serving.holdout import EvalHoldout

    from serving.finetune_data import build_finetune_data
    from tutor.chatlog import ChatLog

    log = log or (lambda record: None)
    if not data_only and base_model is None:
        raise ConfigError("fine-tuning needs a base model: --base MODEL_FOLDER (a transformers chat model "
                          "saved locally), or set TUTOR_LLM_MODEL_PATH")
    index = settings.open_index(course)
    out_dir = Path(out_dir or settings.adapters_dir(index.course_id))
    embedder = settings.embedder()
    if eval_dataset is None:
        from serving.bench import DATASETS_DIR

        shipped = DATASETS_DIR / f"{index.course_id}.jsonl"
        eval_dataset = shipped if shipped.is_file() else ""
    holdout = EvalHoldout.from_dataset(Path(eval_dataset), embedder) if eval_dataset else None
    data = build_finetune_data(index, embedder, teacher=teacher, options=data_options,
                               chatlog=_chatlog(settings), holdout=holdout)
    if shuffle_replies:
        data = data.with_shuffled_replies(lora.seed)
    data_dir = data.save(out_dir / "data")
    log({"event": "data", "path": str(data_dir), **data.manifest()})
    summary = {"data": {"path": str(data_dir), **data.manifest()}}
    if data_only:
        return summary
    result = train_lora(Path(base_model), data, out_dir, lora, log)
    summary.update(adapter=str(result.adapter_dir), metrics=result.lineage["metrics"],
                   serve_with=result.lineage["serve_with"], loss_curve=str(result.adapter_dir / LOSS_CURVE))
    if merge:
        summary["merged"] = str(merge_trained_adapter(Path(base_model), result, out_dir / "merged"))
    return summary


def _chatlog(settings):
    """The deployment's chat log, or None where there is none yet (a fresh data folder)."""
    from tutor.chatlog import ChatLog

    if not settings.database_url and not settings.chatlog_path().is_file():
        return None
    return ChatLog.from_settings(settings)
