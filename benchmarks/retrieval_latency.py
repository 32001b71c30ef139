"""Retrieval latency per question (query embedding included), on one CPU thread.

    .venv/bin/python benchmarks/retrieval_latency.py [--data-dir D] [--course ID] [--synthetic 100000]

Measures p50/p95 of `Retriever.search` (embed the query, FAISS top-k, BM25 scores, fusion) over a
fixed list of questions: first on the indexed course (if one is indexed in --data-dir), then on a
synthetic index of N chunks (random unit vectors and random-word texts from the course's own
vocabulary, so BM25 postings are realistic in size). Also prints the answer path's own overhead
before the first token (retrieval + policy + prompt) as a share of an extractive answer's total.
Target: p50 under 30 ms at 100k chunks on one thread.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import faiss  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from ingest.embed import Embedder  # noqa: E402
from ingest.lexical import LexicalIndex  # noqa: E402
from ingest.model import Chunk, Locator  # noqa: E402
from ingest.store import CourseIndex, IndexManifest, list_courses, load_index  # noqa: E402
from tutor.retrieve import Retriever  # noqa: E402

QUESTIONS = [
    "What is the gradient descent update rule?", "Why does momentum help?", "How does dropout work?",
    "What is the output size of a convolution?", "Explain backpropagation and the chain rule",
    "What does batch normalization do?", "How does an LSTM avoid vanishing gradients?",
    "What is scaled dot-product attention?", "How many parameters does a LoRA adapter add?",
    "What is cross-entropy loss?", "Why can't a perceptron learn XOR?", "What is Adam?",
    "What is weight decay?", "What are residual connections for?", "What is retrieval-augmented generation?",
    "What is the universal approximation theorem?", "When should I use early stopping?",
    "What is a learning rate schedule?", "How does max pooling work?", "What is positional encoding?",
]


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def time_searches(retriever: Retriever, rounds: int = 3) -> list[float]:
    retriever.search(QUESTIONS[0], k=5)  # warm-up
    times = []
    for _ in range(rounds):
        for question in QUESTIONS:
            started = time.perf_counter()
            retriever.search(question, k=5)
            times.append((time.perf_counter() - started) * 1000)
    return times


def synthetic_index(n: int, dimension: int, vocabulary: list[str], seed: int = 0) -> CourseIndex:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, dimension)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    words = np.array(vocabulary)
    chunks = []
    for i in range(n):
        text = " ".join(words[rng.integers(0, len(words), size=60)])
        chunks.append(Chunk(id=f"s{i}", text=text, locator=Locator(f"synthetic/{i // 50}.md", "book", "S"),
                            ordinal=i % 50, text_hash=str(i)))
    flat = faiss.IndexFlatIP(dimension)
    flat.add(vectors)
    manifest = IndexManifest(course="synthetic", embedder={"dimension": dimension}, chunker={})
    return CourseIndex(path=Path("."), manifest=manifest, chunks=chunks, vectors=vectors, faiss_index=flat,
                       lexical=LexicalIndex.build([c.text for c in chunks]), course={"schedule": []})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--course", default="")
    parser.add_argument("--synthetic", type=int, default=100_000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    embedder = Embedder()
    embedder.encode(["warm up"])

    index_root = Path(args.data_dir) / "index"
    courses = [args.course] if args.course else list_courses(index_root)
    vocabulary = ["gradient", "descent", "loss", "network", "layer", "weight"]
    print(f"{'index':<24} {'chunks':>8} {'p50 ms':>8} {'p95 ms':>8}")
    if courses:
        index = load_index(index_root, courses[0])
        vocabulary = sorted({w for c in index.chunks for w in c.text.lower().split() if w.isalpha()})
        p50, p95 = percentiles(time_searches(Retriever(index, embedder)))
        print(f"{courses[0]:<24} {len(index.chunks):>8} {p50:>8.1f} {p95:>8.1f}")
        _answer_overhead(args.data_dir, courses[0], embedder)
    if args.synthetic:
        started = time.perf_counter()
        index = synthetic_index(args.synthetic, embedder.dimension, vocabulary)
        build_s = time.perf_counter() - started
        p50, p95 = percentiles(time_searches(Retriever(index, embedder)))
        print(f"{'synthetic':<24} {len(index.chunks):>8} {p50:>8.1f} {p95:>8.1f}   (built in {build_s:.0f} s)")
        started = time.perf_counter()
        for question in QUESTIONS:
            embedder.encode_query(question)
        embed_ms = (time.perf_counter() - started) * 1000 / len(QUESTIONS)
        print(f"  of which query embedding: {embed_ms:.1f} ms per question")


def _answer_overhead(data_dir: str, course: str, embedder: Embedder) -> None:
    from tutor.answer import Tutor
    from tutor.settings import load_settings

    tutor = Tutor.from_settings(load_settings(data_dir=data_dir, llm_backend="extractive"), course=course,
                                embedder=embedder)
    shares, before = [], []
    for question in QUESTIONS:
        timings = tutor.ask(question).timings
        if "prompt_s" in timings:
            before.append(timings["prompt_s"] * 1000)
            shares.append(timings["prompt_s"] / timings["total_s"])
    if before:
        print(f"  answer path before the first token: p50 {statistics.median(before):.1f} ms, "
              f"{statistics.median(shares):.0%} of an extractive answer's total (p50)")


if __name__ == "__main__":
    main()
