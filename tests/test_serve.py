"""`tutor serve`: the vLLM command line, the missing-vLLM message, and a real CPU server for the tutor."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from course_fixtures import shared_embedder, write_small_course
from typer.testing import CliRunner

from ingest.errors import ConfigError
from ingest.pipeline import IngestOptions, ingest_course
from serving.hf_serve import find_free_port
from serving.serve import ServeRequest, parse_adapters, server_command, transformers_model_id
from serving.vllm_launch import VLLM_MISSING, VllmServeSpec, smallest_max_lora_rank, vllm_serve_argv
from tutor.answer import Tutor
from tutor.cli import app
from tutor.settings import load_settings

REPO = Path(__file__).resolve().parents[1]


def flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


@pytest.mark.parametrize("ranks, requested, expected", [
    ({"a": 4}, 0, "8"), ({"a": 4, "b": 16}, 0, "16"), ({"a": 17}, 0, "32"), ({"a": 300}, 0, "320"),
    ({"a": 1}, 0, "1"), ({"a": 8}, 64, "64"), ({}, 0, "16"),
])
def test_max_lora_rank_is_the_smallest_vllm_value_that_fits(ranks, requested, expected):
    spec = VllmServeSpec(base="org/base", adapters={n: f"/adapters/{n}" for n in ranks or {"a": 0}},
                         max_lora_rank=requested)
    assert flag(vllm_serve_argv(spec, ranks or None), "--max-lora-rank") == expected


def test_vllm_argv_has_every_setting():
    spec = VllmServeSpec(base="/models/base", adapters={"dl-intro": "/a/dl", "ml-101": "/a/ml"}, port=8100,
                         served_model_name="base", gpu_memory_utilization=0.8, tensor_parallel_size=2,
                         max_model_len=8192, extra_args=["--enforce-eager"])
    argv = vllm_serve_argv(spec, {"dl-intro": 16, "ml-101": 8})
    assert argv[:3] == ["vllm", "serve", "/models/base"]
    assert argv[argv.index("--lora-modules") + 1:argv.index("--max-loras")] == ["dl-intro=/a/dl", "ml-101=/a/ml"]
    assert "--enable-lora" in argv and flag(argv, "--max-loras") == "2"
    assert (flag(argv, "--port"), flag(argv, "--served-model-name"), flag(argv, "--gpu-memory-utilization"),
            flag(argv, "--tensor-parallel-size"), flag(argv, "--max-model-len")) == ("8100", "base", "0.8", "2", "8192")
    assert argv[-1] == "--enforce-eager"
    plain = vllm_serve_argv(VllmServeSpec(base="/models/base"))
    assert "--enable-lora" not in plain and "--lora-modules" not in plain and "--served-model-name" not in plain


@pytest.mark.parametrize("changes, message", [
    ({"max_lora_rank": 12}, "--max-lora-rank 12 is not one vLLM accepts"),
    ({"gpu_memory_utilization": 1.5}, "--gpu-memory-utilization 1.5"),
    ({"tensor_parallel_size": 0}, "--tensor-parallel-size 0"),
    ({"adapters": {"bad name": "/a"}}, "adapter name 'bad name'"),
    ({"port": 0}, "port 0"),
    ({"base": ""}, "needs a base model"),
])
def test_vllm_spec_rejects_bad_settings(changes, message):
    with pytest.raises(ConfigError, match=message):
        VllmServeSpec(**({"base": "org/base"} | changes))


def test_rank_above_vllms_largest_is_refused():
    with pytest.raises(ConfigError, match="exceeds the largest rank vLLM serves"):
        smallest_max_lora_rank(513)


def test_adapter_flags_and_engine_rules():
    assert parse_adapters(["dl=/a/dl", "ml = /a/ml"]) == {"dl": "/a/dl", "ml": "/a/ml"}
    for bad in (["dl"], ["=/a"], ["dl=/a", "dl=/b"]):
        with pytest.raises(ConfigError):
            parse_adapters(bad)
    with pytest.raises(ConfigError, match="at most one --adapter"):
        ServeRequest(engine="transformers", base="/m", adapters={"a": "/a", "b": "/b"})
    with pytest.raises(ConfigError, match="unknown engine 'tgi'"):
        ServeRequest(engine="tgi", base="/m")
    def model_id(**request) -> str:
        return transformers_model_id(ServeRequest(engine="transformers", **request))

    assert model_id(base="/models/tiny") == "local/tiny"
    assert model_id(base="/m", adapters={"dl intro": "/a"}) == "local/dl-intro"
    assert model_id(base="/m", served_model_name="course/x") == "course/x"


def test_dry_run_prints_the_vllm_command_with_the_adapters_rank(tiny_model_dir, tiny_adapter_dir, tmp_path):
    result = CliRunner().invoke(app, ["serve", "--base", str(tiny_model_dir), "--adapter", f"tiny={tiny_adapter_dir}",
                                      "--data-dir", str(tmp_path), "--dry-run"])
    assert result.exit_code == 0, result.output
    printed = result.output.split()
    assert printed[:3] == ["vllm", "serve", str(tiny_model_dir)]
    assert flag(printed, "--lora-modules") == f"tiny={tiny_adapter_dir.resolve()}"
    assert flag(printed, "--max-lora-rank") == "8"  # the fixture's adapter has rank 4


def test_missing_vllm_says_how_to_get_it(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # as if not installed, even where it is
    result = CliRunner().invoke(app, ["serve", "--base", str(tiny_model_dir), "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {VLLM_MISSING}"
    assert VLLM_MISSING == ("vLLM is not installed: pip install 'course-tutor[serve]' on a GPU machine, "
                            "or use --engine transformers")


def test_transformers_dry_run_names_the_adapter():
    request = ServeRequest(engine="transformers", base="/m", adapters={"dl": "/a"}, port=8123)
    command = server_command(request)
    assert command[command.index("serve") + 1] == "local/dl" and flag(command, "--port") == "8123"


def _health(base_url: str) -> int | None:
    try:
        with urllib.request.urlopen(base_url.removesuffix("/v1") + "/health", timeout=2) as response:
            return response.status
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def test_transformers_serve_answers_the_tutor_and_stops_on_sigterm(tiny_model_dir, tiny_adapter_dir, tmp_path):
    data_dir = tmp_path / "data"
    ingest_course(write_small_course(tmp_path / "course"), IngestOptions(data_dir=data_dir), embedder=shared_embedder())
    port = find_free_port()
    command = [sys.executable, "-m", "tutor.cli", "serve", "--engine", "transformers", "--base", str(tiny_model_dir),
               "--adapter", f"tiny-ft={tiny_adapter_dir}", "--port", str(port), "--data-dir", str(data_dir)]
    env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1")
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    printed: dict[str, str] = {}
    try:
        deadline = time.monotonic() + 240
        while "TUTOR_LLM_MODEL" not in printed and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            key, sep, value = line.strip().partition("=")
            if sep and key.startswith("TUTOR_"):
                printed[key] = value
        assert printed == {"TUTOR_LLM_BACKEND": "openai", "TUTOR_LLM_BASE_URL": f"http://127.0.0.1:{port}/v1",
                           "TUTOR_LLM_MODEL": "local/tiny-ft"}, process.stdout.read() if process.poll() else printed
        settings = load_settings(data_dir=data_dir, llm_backend="openai", llm_base_url=printed["TUTOR_LLM_BASE_URL"],
                                 llm_model=printed["TUTOR_LLM_MODEL"], max_answer_tokens=24)
        tutor = Tutor.from_settings(settings, embedder=shared_embedder())
        answer = tutor.ask("What does momentum do in gradient descent?")
        assert answer.backend == "openai" and answer.model == "local/tiny-ft" and answer.notice == ""
        assert len(list((data_dir / "serve" / "merged").iterdir())) == 1  # the adapter was merged for serving
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    assert process.returncode == 0
    assert _health(f"http://127.0.0.1:{port}/v1") is None  # the server went down with the command
