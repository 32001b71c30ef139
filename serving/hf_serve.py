"""Run a local model behind `transformers serve`: an OpenAI-compatible HTTP server on a CPU.

vLLM is the production server; `transformers serve` is its stand-in where there is no GPU: in
development, and in tests that need the real HTTP path. Facts about the installed CLI (transformers 5)
that shape this module:

- It finds models by hub id only, in the Hugging Face cache (`HF_HUB_CACHE`). So a local folder is
  first laid out as a cache entry (`install_into_hf_cache`) under a made-up id like `course/tiny`,
  and the server runs offline (`HF_HUB_OFFLINE=1`).
- Started with the id as its positional argument (`force_model`; there is no `--force-model` flag),
  it loads that model before it opens its port and serves only it: `/health` answering means the model is ready,
  requests must name exactly that id, and any other name gets HTTP 400. Unpinned, it loads whatever
  a request names, lazily, and an unknown name is an HTTP 500.
- Endpoints: `POST /v1/chat/completions` (streamed or not), `POST /v1/completions`,
  `POST /v1/responses`, `GET /v1/models` (the cache, scanned once per process), `GET /health`.
- It cannot apply a LoRA adapter: merge it into the base weights first (`merge_adapter`).

Typical use (the CLI's `tutor serve --engine transformers`, and the test fixtures):

    with serve_with_transformers(Path("models/tiny"), "course/tiny", cache_dir=Path("data/hf-cache")) as server:
        create_backend("openai", BackendConfig(base_url=server.base_url, model=server.model))
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ingest.errors import ConfigError, TutorError

STOP_GRACE_S = 10.0
LOG_TAIL_CHARS = 2000


class ServeStartError(TutorError, RuntimeError):
    """`transformers serve` exited or never became healthy; the message carries its log's tail."""


@dataclass
class ServeProcess:
    """A running `transformers serve`: where to reach it, which model name to ask for, its log."""

    process: subprocess.Popen
    base_url: str  # ends in /v1, ready for an OpenAI client
    model: str  # the name requests must use
    log_path: Path

    def stop(self) -> None:
        """Ask the server to shut down; kill it if it has not within a few seconds."""
        stop_process_group(self.process)


def install_into_hf_cache(model_dir: Path, repo_id: str, cache_dir: Path) -> Path:
    """Lay `model_dir` out as the hub cache entry `repo_id`, so offline loaders find it by that id.

    Writes `models--org--name/snapshots/<revision>/...` plus `refs/main` naming that revision. The
    revision is a hash of the files, so installing unchanged files again is a no-op and changed
    files become a new revision that `main` then points to. Files are copied, not linked: the
    snapshot must not change when the source folder is saved over later. Returns the snapshot.
    """
    model_dir, cache_dir = Path(model_dir), Path(cache_dir)
    _check_repo_id(repo_id)
    if not (model_dir / "config.json").is_file():
        raise ConfigError(f"{str(model_dir)!r} is not a saved transformers model (no config.json); "
                          "point at a folder written by `save_pretrained`")
    files = sorted(p for p in model_dir.rglob("*") if p.is_file())
    revision = _content_revision(model_dir, files)
    repo_dir = cache_dir / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / revision
    if not snapshot.is_dir():
        staging = repo_dir / "snapshots" / f".{revision}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        for source in files:
            target = staging / source.relative_to(model_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
        staging.rename(snapshot)  # a reader never sees a half-copied snapshot
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(revision)
    return snapshot


def merge_adapter(model_dir: Path, adapter_dir: Path, out_dir: Path) -> Path:
    """Fold a PEFT LoRA adapter into its base model's weights and save the result to `out_dir`.

    Servers without adapter support (`transformers serve`) then serve the fine-tuned model as a
    plain one. The tokenizer is the adapter's when it ships one, else the base model's.
    """
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir, adapter_dir, out_dir = Path(model_dir), Path(adapter_dir), Path(out_dir)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise ConfigError(f"{str(adapter_dir)!r} is not a PEFT adapter (no adapter_config.json)")
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
    merged.save_pretrained(out_dir)
    has_own_tokenizer = (adapter_dir / "tokenizer_config.json").is_file()
    AutoTokenizer.from_pretrained(adapter_dir if has_own_tokenizer else model_dir).save_pretrained(out_dir)
    return out_dir


def serve_environment(cache_dir: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """The child's environment: offline, reading models from `cache_dir`, no update checks."""
    env = dict(os.environ if base is None else base)
    env.update(
        HF_HUB_CACHE=str(cache_dir),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_HUB_DISABLE_UPDATE_CHECK="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        PYTHONUNBUFFERED="1",
    )
    return env


def transformers_serve_command(
    repo_id: str, *, host: str, port: int, device: str = "cpu", pinned: bool = True
) -> list[str]:
    """The `transformers serve` command line, run with this interpreter (no PATH lookup)."""
    command = [sys.executable, "-m", "transformers.cli.transformers", "serve"]
    if pinned:
        command.append(repo_id)
    return command + ["--host", host, "--port", str(port), "--device", device, "--log-level", "warning"]


def start_transformers_serve(
    model_dir: Path,
    repo_id: str,
    *,
    port: int,
    cache_dir: Path,
    host: str = "127.0.0.1",
    device: str = "cpu",
    pinned: bool = True,
    log_path: Path | None = None,
) -> ServeProcess:
    """Install `model_dir` as `repo_id` in `cache_dir` and start the server in the background.

    Returns at once; call `wait_healthy` (or use `serve_with_transformers`) before sending requests.
    The server runs in its own process group so that stopping it also stops anything it spawned.
    """
    cache_dir = Path(cache_dir)
    install_into_hf_cache(model_dir, repo_id, cache_dir)
    log_path = Path(log_path) if log_path else cache_dir / f"transformers-serve-{port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            transformers_serve_command(repo_id, host=host, port=port, device=device, pinned=pinned),
            env=serve_environment(cache_dir),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return ServeProcess(process=process, base_url=f"http://{host}:{port}/v1", model=repo_id, log_path=log_path)


def wait_healthy(base_url: str, timeout_s: float = 120.0, server: ServeProcess | None = None,
                 engine: str = "transformers serve", poll_s: float = 0.2) -> None:
    """Block until `GET /health` answers 200; raise `ServeStartError` if the server dies or times out."""
    health_url = base_url.rstrip("/").removesuffix("/v1") + "/health"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server is not None and server.process.poll() is not None:
            raise ServeStartError(
                f"{engine} exited with code {server.process.returncode} before becoming healthy; "
                f"its log ({server.log_path}) ends with:\n{_log_tail(server.log_path)}"
            )
        try:
            with urllib.request.urlopen(health_url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(poll_s)
    tail = f"; its log ({server.log_path}) ends with:\n{_log_tail(server.log_path)}" if server else ""
    raise ServeStartError(f"no healthy server at {health_url} after {timeout_s:g}s{tail}")


@contextmanager
def serve_with_transformers(
    model_dir: Path,
    repo_id: str,
    *,
    cache_dir: Path,
    port: int | None = None,
    host: str = "127.0.0.1",
    device: str = "cpu",
    pinned: bool = True,
    startup_timeout_s: float = 120.0,
) -> Iterator[ServeProcess]:
    """Serve `model_dir` as `repo_id` for the duration of a `with` block (on a free port by default)."""
    server = start_transformers_serve(
        model_dir, repo_id, port=port or find_free_port(host), cache_dir=cache_dir, host=host,
        device=device, pinned=pinned,
    )
    try:
        wait_healthy(server.base_url, startup_timeout_s, server)
        yield server
    finally:
        server.stop()


def find_free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def stop_process_group(process: subprocess.Popen, grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM the process group `process` leads, then SIGKILL it if it outlives `grace_s`."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


def _check_repo_id(repo_id: str) -> None:
    owner, _, name = repo_id.partition("/")
    if not owner or not name or "/" in name or "@" in repo_id or ":" in repo_id:
        raise ConfigError(f"model id {repo_id!r} must look like 'owner/name' (e.g. 'course/tutor-lora')")


def _content_revision(root: Path, files: list[Path]) -> str:
    """A 40-hex revision id derived from file names and contents, like a hub commit hash."""
    digest = hashlib.sha1()
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _log_tail(log_path: Path) -> str:
    try:
        return log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:]
    except OSError:
        return "(no log)"
