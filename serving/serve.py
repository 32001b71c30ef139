"""`tutor serve`: put a base model and its course adapters behind an OpenAI-compatible server.

    with serve_model(ServeRequest(engine="transformers", base=Path("models/base"),
                                  adapters={"dl-intro": Path("adapters/dl-intro/adapter")},
                                  work_dir=Path("data/serve"))) as served:
        print(tutor_settings(served))     # TUTOR_LLM_BASE_URL=... TUTOR_LLM_MODEL=dl-intro

Two engines, one result (`ServedModel`: the URL and the model name the tutor should ask for):

- `vllm` (production, GPU): one base model, every adapter a `model` name (multi-LoRA); the argv
  comes from `serving.vllm_launch`, and each adapter is checked against vLLM's rules first.
- `transformers` (CPU, development and tests): `transformers serve` cannot apply adapters, so the
  one adapter given is merged into the base weights first (cached by content under `work_dir`) and
  the result is served under the adapter's name.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ingest.errors import ConfigError
from serving import hf_serve, vllm_launch

ENGINES = ("vllm", "transformers")
DEFAULT_PORT = 8000


@dataclass
class ServeRequest:
    """What to serve and how; the `tutor serve` flags."""

    engine: str = field(metadata={"help": "vllm (GPU, LoRA adapters) or transformers (CPU, merged adapter)"})
    base: str = field(metadata={"help": "base model folder (a hub id also works with vllm)"})
    adapters: dict[str, str] = field(default_factory=dict, metadata={"help": "adapter name -> folder"})
    work_dir: Path = field(default=Path("data/serve"), metadata={
        "help": "merged models, the transformers cache and server logs"})
    host: str = field(default="127.0.0.1", metadata={"help": "address to listen on"})
    port: int = field(default=DEFAULT_PORT, metadata={"help": "port to listen on"})
    served_model_name: str = field(default="", metadata={"help": "name of the base model in requests"})
    max_loras: int = field(default=0, metadata={"help": "vllm: adapters per batch (0: all)"})
    max_lora_rank: int = field(default=0, metadata={"help": "vllm: largest adapter rank (0: fit the adapters)"})
    gpu_memory_utilization: float = field(default=0.9, metadata={"help": "vllm: share of GPU memory"})
    tensor_parallel_size: int = field(default=1, metadata={"help": "vllm: GPUs per replica"})
    startup_timeout_s: float = field(default=900.0, metadata={"help": "seconds to wait for /health"})
    extra_args: list[str] = field(default_factory=list, metadata={"help": "vllm: more `vllm serve` flags"})

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ConfigError(f"unknown engine {self.engine!r}; choose one of: {', '.join(ENGINES)}")
        if self.engine == "transformers" and len(self.adapters) > 1:
            raise ConfigError("transformers serve cannot apply LoRA adapters, so it serves one merged model: "
                              "give at most one --adapter, or use --engine vllm for several")

    def vllm_spec(self) -> vllm_launch.VllmServeSpec:
        return vllm_launch.VllmServeSpec(
            base=str(self.base), adapters={n: str(Path(p).resolve()) for n, p in self.adapters.items()},
            host=self.host, port=self.port, max_loras=self.max_loras, max_lora_rank=self.max_lora_rank,
            served_model_name=self.served_model_name, gpu_memory_utilization=self.gpu_memory_utilization,
            tensor_parallel_size=self.tensor_parallel_size, extra_args=list(self.extra_args))


@dataclass
class ServedModel:
    engine: str
    base_url: str         # ends in /v1
    model: str            # the name the tutor should ask for: the (first) adapter, else the base
    names: list[str]      # every model name the server answers to
    log_path: Path
    process: subprocess.Popen


def parse_adapters(values: list[str]) -> dict[str, str]:
    """`["dl-intro=adapters/dl-intro", ...]` -> {name: path}; a repeated name is an error."""
    adapters: dict[str, str] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise ConfigError(f"--adapter {value!r} must look like NAME=PATH (e.g. dl-intro=adapters/dl-intro)")
        if name in adapters:
            raise ConfigError(f"--adapter name {name!r} is given twice")
        adapters[name.strip()] = path.strip()
    return adapters


def tutor_settings(served: ServedModel) -> list[str]:
    """The environment lines that point the tutor at this server."""
    return ["TUTOR_LLM_BACKEND=openai", f"TUTOR_LLM_BASE_URL={served.base_url}", f"TUTOR_LLM_MODEL={served.model}"]


def vllm_argv(request: ServeRequest) -> list[str]:
    """The `vllm serve` command for this request (adapter ranks read from their folders)."""
    ranks = {name: vllm_launch.adapter_rank(Path(path)) for name, path in request.adapters.items()}
    return vllm_launch.vllm_serve_argv(request.vllm_spec(), ranks)


def transformers_model_id(request: ServeRequest) -> str:
    """The `owner/name` id `transformers serve` serves: the served name, else the adapter's, else the base's."""
    name = request.served_model_name or next(iter(request.adapters), "") or Path(request.base).name
    cleaned = re.sub(r"[^A-Za-z0-9._/-]+", "-", name).strip("-/") or "model"
    return cleaned if cleaned.count("/") == 1 else "local/" + cleaned.replace("/", "-")


def server_command(request: ServeRequest) -> list[str]:
    """The command `serve_model` runs for `request` (what `tutor serve --dry-run` prints)."""
    if request.engine == "vllm":
        return vllm_argv(request)
    return hf_serve.transformers_serve_command(transformers_model_id(request), host=request.host, port=request.port)


@contextmanager
def serve_model(request: ServeRequest) -> Iterator[ServedModel]:
    """Start the server, wait until it is healthy, yield where it is; stop it on exit."""
    starter = _serve_vllm if request.engine == "vllm" else _serve_transformers
    with starter(request) as served:
        yield served


@contextmanager
def _serve_vllm(request: ServeRequest) -> Iterator[ServedModel]:
    vllm_launch.require_vllm()
    spec = request.vllm_spec()
    argv = vllm_argv(request)
    max_rank = int(argv[argv.index("--max-lora-rank") + 1]) if request.adapters else vllm_launch.LARGEST_LORA_RANK
    # A base given as a hub id has no local config to check against; vLLM then checks on load.
    local_base = (Path(request.base) / "config.json").is_file()
    for name, path in request.adapters.items() if local_base else ():
        problems = vllm_launch.check_adapter_for_vllm(Path(path), Path(request.base), max_rank)
        if problems:
            raise ConfigError(f"adapter {name!r} ({path}) would not load in vLLM: " + "; ".join(problems))
    log_path = Path(request.work_dir) / f"vllm-{request.port}.log"
    server = vllm_launch.start_vllm(argv, log_path)
    try:
        vllm_launch.wait_for_health(server, request.startup_timeout_s)
        base_name = spec.served_model_name or spec.base
        names = [base_name, *request.adapters]
        yield ServedModel("vllm", server.base_url, next(iter(request.adapters), base_name), names, log_path,
                          server.process)
    finally:
        hf_serve.stop_process_group(server.process)


@contextmanager
def _serve_transformers(request: ServeRequest) -> Iterator[ServedModel]:
    work_dir = Path(request.work_dir)
    base = Path(request.base)
    model_dir = base
    if request.adapters:
        model_dir = merged_model(base, Path(next(iter(request.adapters.values()))), work_dir / "merged")
    repo_id = transformers_model_id(request)
    server = hf_serve.start_transformers_serve(
        model_dir, repo_id, port=request.port, cache_dir=work_dir / "hf-cache", host=request.host,
        log_path=work_dir / f"transformers-serve-{request.port}.log")
    try:
        hf_serve.wait_healthy(server.base_url, request.startup_timeout_s, server)
        yield ServedModel("transformers", server.base_url, repo_id, [repo_id], server.log_path, server.process)
    finally:
        server.stop()


def merged_model(base: Path, adapter: Path, merged_root: Path) -> Path:
    """The base with `adapter` folded in, merged once per (base, adapter) content and then reused."""
    digest = hashlib.sha256()
    for folder in (base, adapter):
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            digest.update(path.relative_to(folder).as_posix().encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    target = merged_root / f"{adapter.resolve().name}-{digest.hexdigest()[:12]}"
    if not (target / "config.json").is_file():
        staging = target.with_name(target.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)  # left by an interrupted merge
        hf_serve.merge_adapter(base, adapter, staging)
        staging.rename(target)
    return target



def serve_until_stopped(request: ServeRequest, echo) -> None:
    """`tutor serve`: start the server, print the tutor's settings, block until Ctrl-C or SIGTERM."""
    def stop(signum, frame):
        raise SystemExit(0)  # unwinds through `serve_model`, which stops the server

    signal.signal(signal.SIGTERM, stop)
    with serve_model(request) as served:
        for line in tutor_settings(served):
            echo(line)
        echo(f"serving {', '.join(served.names)} with {served.engine} (log: {served.log_path}); Ctrl-C stops it")
        try:
            while served.process.poll() is None:
                time.sleep(1.0)
        except KeyboardInterrupt:
            return
        raise hf_serve.ServeStartError(f"the {served.engine} server exited with code {served.process.returncode}; "
                                       f"see its log {served.log_path}")
