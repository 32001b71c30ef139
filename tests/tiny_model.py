"""A tiny random-weight chat model and LoRA adapter, built in-process for hermetic tests.

`build_tiny_model` trains a byte-level BPE tokenizer on a few hundred generated sentences about
deep learning, wraps it with chat special tokens and a Jinja chat template, and saves it next to a
two-layer Llama with random weights: a real `save_pretrained` folder that `AutoModelForCausalLM`,
`transformers serve` and PEFT load like any hub model, built in a couple of seconds and a few MB.
`build_tiny_lora_adapter` adds an adapter (rank 4 by default) whose B matrices are random (not zero),
so that it visibly changes what the model generates.

The text it produces is noise; tests check the plumbing (streaming, adapters, HTTP), never wording.
"""

from __future__ import annotations

import itertools
from pathlib import Path

TINY_VOCAB_SIZE = 512  # an upper bound: the small corpus runs out of merges a little below it
SEED = 1234

# Turn markers of the tiny chat format; `<|end|>` closes a turn and is the model's EOS token.
SPECIAL_TOKENS = ["<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}<|end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

_SUBJECTS = [
    "the optimizer", "a convolutional layer", "the attention head", "batch normalization",
    "the learning rate", "a residual block", "the transformer", "dropout", "the loss function",
    "gradient descent", "the embedding table", "a recurrent network",
]
_VERBS = ["updates", "normalizes", "scales", "regularizes", "projects", "reduces", "transforms"]
_OBJECTS = [
    "the weights", "each activation", "the hidden state", "every token", "the gradient",
    "the feature map", "the softmax output", "the validation error",
]
_ENDINGS = ["during training.", "at every step.", "before the next layer.", "on each minibatch."]


def training_sentences() -> list[str]:
    """A few hundred short, grammatical sentences: enough text for a BPE vocabulary of ~500."""
    combos = itertools.product(_SUBJECTS, _VERBS, _OBJECTS, _ENDINGS)
    # Every 7th combination keeps the corpus small while still touching every word.
    return [f"{s.capitalize()} {v} {o} {e}" for i, (s, v, o, e) in enumerate(combos) if i % 7 == 0]


def build_tiny_tokenizer():
    """Train a byte-level BPE tokenizer in-process and wrap it as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    raw.train_from_iterator(training_sentences(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        bos_token="<|endoftext|>",
        eos_token="<|end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        additional_special_tokens=["<|system|>", "<|user|>", "<|assistant|>"],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_tiny_model(out_dir: Path) -> Path:
    """Save a random-weight two-layer Llama and its tokenizer to `out_dir`; return `out_dir`."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    out_dir = Path(out_dir)
    tokenizer = build_tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=48,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        # Wider than the usual 0.02 so greedy decoding wanders over the vocabulary instead of
        # repeating one token: a LoRA adapter then visibly changes the text.
        initializer_range=0.3,
    )
    torch.manual_seed(SEED)
    model = LlamaForCausalLM(config).to(torch.float32).eval()
    # Greedy by default; a random model may pick EOS first, and a reply of a few tokens at least
    # keeps "streams more than one chunk" a property of the fixture rather than of the seed.
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
        min_new_tokens=4,
    )
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def build_tiny_lora_adapter(model_dir: Path, out_dir: Path, seed: int = SEED + 1, rank: int = 4,
                            target_modules: tuple[str, ...] = ("q_proj", "v_proj")) -> Path:
    """Save a LoRA adapter (rank 4 on q_proj/v_proj by default) with random, non-zero B matrices.

    PEFT starts B at zero (the adapter is a no-op until trained); a random B stands in for training,
    and each seed changes the model its own way.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    out_dir = Path(out_dir)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    lora = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=list(target_modules), task_type="CAUSAL_LM")
    torch.manual_seed(seed)
    peft_model = get_peft_model(base, lora)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(mean=0.0, std=0.5)
    peft_model.save_pretrained(out_dir, save_embedding_layers=False)
    return out_dir


# vLLM's attention and LoRA kernels want a head size of 64 and an embedding of at least 32000 rows,
# which the CPU model above (head size 12, ~500 tokens) does not have.
VLLM_VOCAB_ROWS = 32000
VLLM_LORA = {"rank": 8, "target_modules": ("q_proj", "v_proj", "o_proj")}  # the GPU test's course adapters


def build_vllm_tiny_model(out_dir: Path, max_positions: int = 16384) -> Path:
    """A random two-layer fp16 Llama shaped for vLLM, with the tiny tokenizer padded to every row.

    The tokenizer is padded with plain added tokens (`<x480>` ... `<x31999>`) so that every id the
    random weights can emit decodes to text: an id the tokenizer cannot decode would fail the
    server's detokenizer instead of measuring it. Prompts are unaffected (no text contains them).
    `max_positions` leaves room for the tutor's prompts, which the ~500-token vocabulary makes about
    three times longer than a real tokenizer would (4.5k-7.2k tokens on the shipped course).
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out_dir = Path(out_dir)
    tokenizer = build_tiny_tokenizer()
    tokenizer.add_tokens([f"<x{i}>" for i in range(len(tokenizer), VLLM_VOCAB_ROWS)])
    config = LlamaConfig(
        vocab_size=VLLM_VOCAB_ROWS, hidden_size=512, intermediate_size=1024, num_hidden_layers=2,
        num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=max_positions,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False, initializer_range=0.2)
    torch.manual_seed(SEED)
    LlamaForCausalLM(config).to(torch.float16).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
