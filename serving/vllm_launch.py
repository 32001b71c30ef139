"""vLLM with LoRA adapters: the `vllm serve` command line, its launch, and vLLM's adapter rules.

Production serving is one base model with one LoRA adapter per course, each adapter a `model` name
on vLLM's OpenAI-compatible server (multi-LoRA). This module:

- builds the `vllm serve BASE --enable-lora --lora-modules NAME=PATH ...` argv from a typed spec
  (`VllmServeSpec`, `vllm_serve_argv`: pure, so `tutor serve --dry-run` can print it anywhere);
- checks an adapter folder against the rules vLLM applies when it loads one
  (`check_adapter_for_vllm`), so a bad adapter is caught on the laptop that trained it rather than
  after a GPU server has spent minutes starting;
- starts the server and waits for its `/health` (`start_vllm`), or says how to get vLLM.

The adapter rules follow vLLM's own loader (vllm-project/vllm, read for this module):
`vllm/config/lora.py` (`MaxLoRARanks = Literal[1, 8, 16, 32, 64, 128, 256, 320, 512]`, default 16),
`vllm/lora/peft_helper.py` (`r`, `lora_alpha`, `target_modules` required; `modules_to_save` must be
empty; no DoRA; `r <= max_lora_rank`; `bias` must be "none" unless bias was enabled, an option later
versions removed), `vllm/lora/lora_model.py` + `vllm/lora/utils.py::parse_fine_tuned_lora_name`
(tensors named `base_model.model.<module>.lora_A.weight` / `.lora_B.weight`; a module whose last
name part the model does not support is rejected; saved base embedding weights are skipped).
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ingest.errors import ConfigError, TutorError
from serving.hf_serve import wait_healthy

# vLLM's accepted values of --max-lora-rank (vllm/config/lora.py, `MaxLoRARanks`). An adapter of
# any rank r <= max_lora_rank loads; vLLM reserves memory for max_lora_rank per adapter slot.
VLLM_MAX_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
LARGEST_LORA_RANK = VLLM_MAX_LORA_RANKS[-1]
VLLM_DEFAULT_MAX_LORA_RANK = 16
VLLM_MISSING = ("vLLM is not installed: pip install 'course-tutor[serve]' on a GPU machine, "
                "or use --engine transformers")
# PEFT config keys naming features vLLM's LoRA layers do not implement (they would be ignored or
# rejected): the value each must have for the adapter to behave in vLLM as it did in training.
_UNSUPPORTED_FEATURES = {
    "modules_to_save": (None, []),
    "use_dora": (False, None),
    "bias": ("none", None),
    "lora_bias": (False, None),
    "rank_pattern": ({}, None),
    "alpha_pattern": ({}, None),
    "trainable_token_indices": (None, {}, []),
}
_ADAPTER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
_LORA_KEY = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_(?P<which>[AB])\.weight$")
_BASE_EMBEDDING_KEY = re.compile(r"^base_model\.model\.(?:.*\.)?(?:embed_tokens|lm_head)\.weight$")


class VllmNotInstalledError(TutorError, ModuleNotFoundError):
    """`tutor serve --engine vllm` on a machine without vLLM."""


@dataclass
class VllmServeSpec:
    """What `vllm serve` is asked to do; each field is one flag of the command line."""

    base: str = field(metadata={"help": "base model: a local folder or a hub id vLLM can load"})
    adapters: dict[str, str] = field(default_factory=dict, metadata={
        "help": "LoRA adapters, served name -> adapter folder (each becomes a `model` name)"})
    host: str = field(default="127.0.0.1", metadata={"help": "address to listen on"})
    port: int = field(default=8000, metadata={"help": "port to listen on"})
    max_loras: int = field(default=0, metadata={
        "help": "adapters in one batch (0: as many as given)"})
    max_lora_rank: int = field(default=0, metadata={
        "help": f"largest adapter rank, one of {VLLM_MAX_LORA_RANKS} (0: smallest that fits the adapters)"})
    served_model_name: str = field(default="", metadata={"help": "name of the base model in requests"})
    gpu_memory_utilization: float = field(default=0.9, metadata={"help": "share of GPU memory vLLM may take"})
    tensor_parallel_size: int = field(default=1, metadata={"help": "GPUs one replica is split over"})
    max_model_len: int = field(default=0, metadata={"help": "context length (0: the model's own)"})
    extra_args: list[str] = field(default_factory=list, metadata={"help": "passed through unchanged"})

    def __post_init__(self) -> None:
        if not self.base:
            raise ConfigError("vllm serve needs a base model (--base PATH or hub id)")
        for name, path in self.adapters.items():
            if not _ADAPTER_NAME.match(name) or name == self.served_model_name:
                raise ConfigError(f"adapter name {name!r} must be letters, digits, '.', '_', '-' or '/', "
                                  "and differ from --served-model-name")
            if not path:
                raise ConfigError(f"adapter {name!r} has no path; write --adapter {name}=PATH")
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"port {self.port} is not between 1 and 65535")
        if self.max_lora_rank and self.max_lora_rank not in VLLM_MAX_LORA_RANKS:
            raise ConfigError(f"--max-lora-rank {self.max_lora_rank} is not one vLLM accepts; "
                              f"choose one of {', '.join(map(str, VLLM_MAX_LORA_RANKS))}")
        if self.max_loras < 0:
            raise ConfigError(f"--max-loras {self.max_loras} must be 1 or more (0 means one per adapter)")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ConfigError(f"--gpu-memory-utilization {self.gpu_memory_utilization} must be in (0, 1]")
        if self.tensor_parallel_size < 1:
            raise ConfigError(f"--tensor-parallel-size {self.tensor_parallel_size} must be 1 or more")
        if self.max_model_len < 0:
            raise ConfigError(f"--max-model-len {self.max_model_len} must be positive (0: the model's own)")


def vllm_serve_argv(spec: VllmServeSpec, adapter_ranks: dict[str, int] | None = None) -> list[str]:
    """The `vllm serve ...` command line for `spec` (argv[0] is the literal `vllm`).

    `adapter_ranks` (adapter name -> LoRA rank) picks `--max-lora-rank` when the spec leaves it 0;
    with no ranks known, vLLM's own default (16) applies.
    """
    argv = ["vllm", "serve", spec.base, "--host", spec.host, "--port", str(spec.port)]
    if spec.served_model_name:
        argv += ["--served-model-name", spec.served_model_name]
    if spec.adapters:
        if spec.max_lora_rank:
            rank = spec.max_lora_rank
        elif adapter_ranks:
            rank = smallest_max_lora_rank(max(adapter_ranks.values()))
        else:
            rank = VLLM_DEFAULT_MAX_LORA_RANK
        argv += ["--enable-lora", "--lora-modules", *(f"{n}={p}" for n, p in spec.adapters.items()),
                 "--max-loras", str(spec.max_loras or len(spec.adapters)), "--max-lora-rank", str(rank)]
    argv += ["--gpu-memory-utilization", f"{spec.gpu_memory_utilization:g}",
             "--tensor-parallel-size", str(spec.tensor_parallel_size)]
    if spec.max_model_len:
        argv += ["--max-model-len", str(spec.max_model_len)]
    return argv + list(spec.extra_args)


def smallest_max_lora_rank(rank: int) -> int:
    """The smallest `--max-lora-rank` vLLM accepts that an adapter of `rank` fits under."""
    for allowed in VLLM_MAX_LORA_RANKS:
        if rank <= allowed:
            return allowed
    raise ConfigError(f"LoRA rank {rank} exceeds the largest rank vLLM serves ({LARGEST_LORA_RANK}); "
                      "train with a smaller --rank")


def adapter_rank(adapter_dir: Path) -> int:
    """The rank `r` an adapter folder's adapter_config.json declares."""
    return int(read_adapter_config(Path(adapter_dir)).get("r", 0))


def read_adapter_config(adapter_dir: Path) -> dict:
    path = Path(adapter_dir) / "adapter_config.json"
    if not path.is_file():
        raise ConfigError(f"{str(adapter_dir)!r} is not a LoRA adapter (no adapter_config.json); "
                          "point at a folder written by `tutor finetune`")
    return json.loads(path.read_text(encoding="utf-8"))


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def require_vllm() -> None:
    if not vllm_available():
        raise VllmNotInstalledError(VLLM_MISSING)


# ----- adapter rules ---------------------------------------------------------------------------

def check_adapter_for_vllm(adapter_dir: Path, base_config, max_lora_rank: int = LARGEST_LORA_RANK) -> list[str]:
    """Problems vLLM would have loading `adapter_dir` onto the base model; [] when it would load.

    `base_config` is the base model's transformers config (a `PretrainedConfig`, its dict, or the
    model folder). The base's modules are built on the meta device (no weights read) to learn which
    linear layers exist and their shapes.
    """
    adapter_dir = Path(adapter_dir)
    try:
        config = read_adapter_config(adapter_dir)
    except ConfigError as exc:
        return [str(exc)]
    problems: list[str] = []
    for key in ("r", "lora_alpha", "target_modules"):
        if config.get(key) in (None, "", []):
            problems.append(f"adapter_config.json lacks {key!r}, which vLLM requires")
    for key, accepted in _UNSUPPORTED_FEATURES.items():
        if key in config and config[key] not in accepted:
            problems.append(f"adapter_config.json sets {key}={config[key]!r}; vLLM supports only "
                            f"{accepted[0]!r} (train without it)")
    rank = config.get("r") or 0
    if rank > max_lora_rank:
        problems.append(f"LoRA rank {rank} is greater than max_lora_rank {max_lora_rank}"
                        + ("" if max_lora_rank < LARGEST_LORA_RANK else " (the largest vLLM accepts)"))
    if config.get("peft_type", "LORA") != "LORA":
        problems.append(f"peft_type {config['peft_type']!r} is not LORA; vLLM serves LoRA adapters only")

    weights = adapter_dir / "adapter_model.safetensors"
    if not weights.is_file():
        problems.append("no adapter_model.safetensors (vLLM reads safetensors; save with safe_serialization)")
        return problems
    linears = base_linear_shapes(base_config)
    problems += _check_tensors(_tensor_shapes(weights), linears, rank)
    return problems


def _check_tensors(shapes: dict[str, tuple[int, ...]], linears: dict[str, tuple[int, int]], rank: int) -> list[str]:
    problems: list[str] = []
    supported = {name.rsplit(".", 1)[-1] for name in linears}
    halves: dict[str, set[str]] = {}
    for key, shape in sorted(shapes.items()):
        if _BASE_EMBEDDING_KEY.match(key):
            problems.append(f"{key}: saved embedding weights are skipped by vLLM (save with "
                            "save_embedding_layers=False and do not train embeddings)")
            continue
        match = _LORA_KEY.match(key)
        if match is None:
            problems.append(f"{key}: not a LoRA weight vLLM can load (expected "
                            "base_model.model.<module>.lora_A.weight / .lora_B.weight)")
            continue
        module, which = match["module"], match["which"]
        if module not in linears:
            problems.append(f"{key}: module {module!r} is not a linear layer of the base model "
                            f"(its LoRA-able layers end in: {', '.join(sorted(supported))})")
            continue
        halves.setdefault(module, set()).add(which)
        in_features, out_features = linears[module]
        expected = (rank, in_features) if which == "A" else (out_features, rank)
        if tuple(shape) != expected:
            problems.append(f"{key}: shape {tuple(shape)} does not match rank {rank} on this base "
                            f"model (expected {expected})")
    for module, seen in sorted(halves.items()):
        if seen != {"A", "B"}:
            problems.append(f"{module}: has lora_{''.join(sorted(seen))} but not both lora_A and lora_B")
    if not halves and not problems:
        problems.append("the adapter holds no LoRA weights")
    return problems


def base_linear_shapes(base_config) -> dict[str, tuple[int, int]]:
    """Linear layers a LoRA adapter may target: module name -> (in_features, out_features).

    The output head (`lm_head`) is left out: vLLM no longer applies LoRA to it.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig

    if isinstance(base_config, (str, Path)):
        base_config = AutoConfig.from_pretrained(base_config)
    elif isinstance(base_config, dict):
        data = dict(base_config)
        base_config = AutoConfig.for_model(data.pop("model_type"), **data)
    assert isinstance(base_config, PretrainedConfig)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(base_config)
    return {name: (module.in_features, module.out_features) for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and name.rsplit(".", 1)[-1] != "lm_head"}


def _tensor_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}


# ----- launch ----------------------------------------------------------------------------------

@dataclass
class VllmProcess:
    """A running `vllm serve`: its process, where to reach it, and its log."""

    process: subprocess.Popen
    base_url: str
    log_path: Path


def start_vllm(argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> VllmProcess:
    """Run the `vllm serve` argv (from `vllm_serve_argv`) in the background, logging to `log_path`."""
    require_vllm()
    executable = Path(sys.executable).with_name("vllm")
    command = [str(executable) if executable.exists() else (shutil.which("vllm") or "vllm"), *argv[1:]]
    host, port = argv[argv.index("--host") + 1], argv[argv.index("--port") + 1]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True, env=env)
    return VllmProcess(process, f"http://{host}:{port}/v1", log_path)


def wait_for_health(server: VllmProcess, timeout_s: float, engine: str = "vllm serve") -> None:
    """Block until the server's `/health` answers 200; `ServeStartError` with its log tail otherwise."""
    wait_healthy(server.base_url, timeout_s, server, engine=engine, poll_s=1.0)

