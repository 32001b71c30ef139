"""vLLM on a GPU: the tiny base model alone against the same base serving two course LoRA adapters.

    python benchmarks/vllm_lora.py [--data-dir data] [--course dl-intro] [--concurrency 1 8 32]
                                   [--duration 20] [--max-tokens 256] [--eager] [--out bench-vllm]

Needs an NVIDIA GPU, `pip install 'course-tutor[serve]'` and an ingested course (`make ingest`).
It builds the random-weight vLLM-shaped model and two random adapters (`tests/tiny_model.py`),
starts two `vllm serve` processes through `serving.serve` (A: the base alone, no LoRA; B: the base
with `--enable-lora` and both adapters), then, at each concurrency, loads A with the base model's
name and B with the adapter `dl-intro` through the full tutor path (`serving.bench`: embedding,
hybrid retrieval, policy, prompt, streamed generation, citation check). Printed per level: time to
first token p50/p95, requests/s, output words/s, errors, and B/A ratios. Saved: one bench.json and
bench.png per level under --out, plus summary.json.

The model is random, so every answer runs to --max-tokens: the figures measure serving cost, not
answers. The tiny tokenizer makes the tutor's prompts about three times longer in tokens than a real
tokenizer would (4.5k-7.2k tokens), so prefill weighs more here than it would with a real model.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the tiny models are test fixtures

from tiny_model import VLLM_LORA, build_tiny_lora_adapter, build_vllm_tiny_model  # noqa: E402

from ingest.embed import Embedder  # noqa: E402
from ingest.store import load_index  # noqa: E402
from serving.bench import (  # noqa: E402
    BenchOptions,
    BenchTarget,
    format_report,
    load_questions,
    run_benchmark,
    save_report,
)
from serving.hf_serve import find_free_port  # noqa: E402
from serving.serve import ServeRequest, serve_model  # noqa: E402
from tutor.answer import resolve_course  # noqa: E402
from tutor.settings import load_settings  # noqa: E402

MAX_MODEL_LEN = 16384  # the longest tutor prompt with the tiny tokenizer is ~7.2k tokens, plus the answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--course", default=None)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load per target and level")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.35, help="per server (two run at once)")
    parser.add_argument("--eager", action="store_true", help="pass --enforce-eager (no CUDA graphs; faster start)")
    parser.add_argument("--out", type=Path, default=Path("bench-vllm"))
    args = parser.parse_args()

    settings = load_settings(data_dir=args.data_dir, course=args.course)
    index = load_index(settings.index_root(), resolve_course(settings.index_root(), args.course or settings.course))
    questions = load_questions(index)
    embedder = Embedder(settings.embedding_model)
    extra = ["--max-model-len", str(MAX_MODEL_LEN)] + (["--enforce-eager"] if args.eager else [])

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base = build_vllm_tiny_model(work / "base", max_positions=MAX_MODEL_LEN)
        adapters = {name: str(build_tiny_lora_adapter(base, work / name, seed, **VLLM_LORA))
                    for name, seed in (("dl-intro", 1), ("ml-101", 2))}
        common = dict(engine="vllm", base=str(base), served_model_name="tiny-base", work_dir=args.out / "logs",
                      gpu_memory_utilization=args.gpu_memory_utilization, startup_timeout_s=900, extra_args=extra)
        # One after the other: vLLM sizes its KV cache from the free memory it sees while starting.
        with serve_model(ServeRequest(port=find_free_port(), **common)) as alone, \
                serve_model(ServeRequest(port=find_free_port(), adapters=adapters, **common)) as with_lora:
            targets = [BenchTarget("A", alone.base_url, "tiny-base"), BenchTarget("B", with_lora.base_url, "dl-intro")]
            summary = {"course": index.course_id, "questions": len(questions), "max_model_len": MAX_MODEL_LEN,
                       "eager": args.eager, "levels": {}}
            for concurrency in args.concurrency:
                options = BenchOptions(concurrency=concurrency, duration_s=args.duration, max_tokens=args.max_tokens)
                report = run_benchmark(targets, index, embedder, settings, options, questions)
                save_report(report, args.out / f"c{concurrency}")
                print(f"\n== {concurrency} concurrent students: A = base alone, B = adapter dl-intro "
                      f"(server with 2 adapters) ==", flush=True)
                print(format_report(report), flush=True)
                summary["levels"][str(concurrency)] = {
                    "A": {k: v for k, v in report["targets"][0].items() if k != "ttft_s"},
                    "B": {k: v for k, v in report["targets"][1].items() if k != "ttft_s"},
                    "ratio_b_over_a": report["ratio_b_over_a"]}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    print(f"\nsaved {args.out}/summary.json and c*/bench.json, c*/bench.png")


if __name__ == "__main__":
    main()
