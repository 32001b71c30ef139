"""vLLM on a GPU: a base model alone against the same base serving two course LoRA adapters.

    python benchmarks/vllm_lora.py [--base smollm2 --adapter dl-intro=PATH --adapter NAME2=PATH]
                                   [--data-dir data] [--course dl-intro] [--concurrency 1 8 32]
                                   [--duration 20] [--max-tokens 256] [--eager] [--out bench-vllm]
                                   [--results benchmarks/results/vllm-lora.json]

Needs an NVIDIA GPU, `pip install 'course-tutor[serve]'` and an ingested course (`make ingest`).
With `--base` (a folder, or a prepared model name such as `smollm2`) and two `--adapter`s, it serves
those; without, it builds the random-weight vLLM-shaped model and two random adapters
(`tests/tiny_model.py`). It starts two `vllm serve` processes through `serving.serve` (A: the base
alone, no LoRA; B: the base with `--enable-lora` and both adapters), then, at each concurrency,
loads A with the base model's name and B with requests spread over both adapters, through the full
tutor path (`serving.bench`: embedding, hybrid retrieval, policy, prompt, streamed generation,
citation check). Printed per level: time to first token p50/p95 (from the question, and the
server's own share), requests/s, generated tokens/s (the server's counts), errors, and B/A ratios.
Saved: one bench.json and bench.png per level under --out, summary.json, and with --results one
JSON with the command, versions and GPU beside the figures.

A random model almost never stops before --max-tokens, so its figures measure serving cost only.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the tiny models are test fixtures

from tiny_model import VLLM_LORA, build_tiny_lora_adapter, build_vllm_tiny_model  # noqa: E402

from serving.bench import (  # noqa: E402
    BenchOptions,
    BenchTarget,
    format_report,
    load_questions,
    run_benchmark,
    save_report,
)
from serving.hf_serve import find_free_port  # noqa: E402
from serving.serve import ServeRequest, parse_adapters, serve_model  # noqa: E402
from tutor.models import resolve_model_path  # noqa: E402
from tutor.settings import load_settings  # noqa: E402

TINY_MAX_MODEL_LEN = 16384  # the longest tutor prompt with the tiny tokenizer is ~7.2k tokens, plus the answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="", help="base model folder or prepared name (default: tiny random)")
    parser.add_argument("--adapter", action="append", default=[], help="NAME=PATH of a course adapter (give two)")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--course", default=None)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load per target and level")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--max-model-len", type=int, default=0, help="vLLM context (default: the model's own)")
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.35, help="per server (two run at once)")
    parser.add_argument("--eager", action="store_true", help="pass --enforce-eager (no CUDA graphs; faster start)")
    parser.add_argument("--out", type=Path, default=Path("bench-vllm"))
    parser.add_argument("--results", type=Path, default=None, help="also write one JSON with command and versions")
    args = parser.parse_args()

    settings = load_settings(data_dir=args.data_dir, course=args.course)
    index = settings.open_index(args.course)
    questions = load_questions(index)
    embedder = settings.embedder()

    with tempfile.TemporaryDirectory() as tmp:
        base, served_name, adapters, max_len = _models(args, settings.data_dir, Path(tmp))
        extra = (["--max-model-len", str(max_len)] if max_len else []) + (["--enforce-eager"] if args.eager else [])
        common = dict(engine="vllm", base=base, served_model_name=served_name, work_dir=args.out / "logs",
                      gpu_memory_utilization=args.gpu_memory_utilization, startup_timeout_s=900, extra_args=extra)
        # One after the other: vLLM sizes its KV cache from the free memory it sees while starting.
        started = time.monotonic()
        print(f"starting A ({served_name} alone) and then B (with {', '.join(adapters)})", flush=True)
        with serve_model(ServeRequest(port=find_free_port(), **common)) as alone:
            print(f"A ready after {time.monotonic() - started:.0f} s", flush=True)
            with serve_model(ServeRequest(port=find_free_port(), adapters=adapters, **common)) as with_lora:
                print(f"B ready after {time.monotonic() - started:.0f} s", flush=True)
                summary = _load(args, index, embedder, settings, questions, served_name, alone, with_lora,
                                adapters, base, max_len)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    print(f"\nsaved {args.out}/summary.json and c*/bench.json, c*/bench.png")
    if args.results:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        record = {"command": " ".join(["python", *sys.argv]), "environment": _environment(), **summary}
        args.results.write_text(json.dumps(record, indent=2), encoding="utf-8")
        print(f"saved {args.results}")


def _load(args, index, embedder, settings, questions, served_name, alone, with_lora, adapters, base, max_len) -> dict:
    """Each concurrency level against A then B; the summary of all levels."""
    spread = ",".join(adapters)
    targets = [BenchTarget("A", alone.base_url, served_name), BenchTarget("B", with_lora.base_url, spread)]
    summary = {"course": index.course_id, "questions": len(questions), "base": base,
               "adapters": adapters, "max_model_len": max_len or None, "eager": args.eager,
               "max_tokens": args.max_tokens, "duration_s": args.duration, "levels": {}}
    for concurrency in args.concurrency:
        options = BenchOptions(concurrency=concurrency, duration_s=args.duration, max_tokens=args.max_tokens)
        report = run_benchmark(targets, index, embedder, settings, options, questions)
        save_report(report, args.out / f"c{concurrency}")
        print(f"\n== {concurrency} concurrent students: A = {served_name} alone, B = requests spread "
              f"over {spread} (one server, both adapters) ==", flush=True)
        print(format_report(report), flush=True)
        summary["levels"][str(concurrency)] = {
            "A": {k: v for k, v in report["targets"][0].items() if k != "ttft_s"},
            "B": {k: v for k, v in report["targets"][1].items() if k != "ttft_s"},
            "ratio_b_over_a": report["ratio_b_over_a"]}
        (args.out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")  # so far
    return summary


def _models(args, data_dir: Path, work: Path) -> tuple[str, str, dict[str, str], int]:
    """(base folder, its served name, adapters by name, max model length or 0 for the model's own)."""
    if not args.base:
        base = build_vllm_tiny_model(work / "base", max_positions=TINY_MAX_MODEL_LEN)
        adapters = {name: str(build_tiny_lora_adapter(base, work / name, seed, **VLLM_LORA))
                    for name, seed in (("dl-intro", 1), ("ml-101", 2))}
        return str(base), "tiny-base", adapters, TINY_MAX_MODEL_LEN
    if len(args.adapter) != 2:
        raise SystemExit("--base needs two --adapter NAME=PATH (the adapters B spreads its requests over)")
    base = resolve_model_path(args.base, data_dir)
    return base, Path(base).name, parse_adapters(args.adapter), args.max_model_len


def _environment() -> dict:
    """Versions and the GPU, so a result file says what produced it."""
    import importlib.metadata
    import platform

    import torch

    versions = {}
    for name in ("vllm", "torch", "transformers", "peft", "openai", "sentence-transformers"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    memory = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1) if gpu else None
    return {"python": platform.python_version(), "packages": versions, "gpu": gpu, "gpu_memory_gib": memory,
            "cpus": __import__("os").cpu_count()}


if __name__ == "__main__":
    main()
