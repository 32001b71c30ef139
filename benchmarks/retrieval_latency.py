"""Retrieval latency per question (query embedding included), on one CPU thread, and the dense
index for a department: flat against HNSW on a million chunks.

    .venv/bin/python benchmarks/retrieval_latency.py [--data-dir D] [--course ID] [--synthetic 100000]
                                                     [--hnsw-rows 1000000] [--ef-search 32 64 128 256]

Measures p50/p95 of `Retriever.search` (embed the query, FAISS top-k, BM25 scores, fusion) over a
fixed list of questions: first on the indexed course (if one is indexed in --data-dir), then on a
synthetic index of N chunks (random unit vectors and random-word texts from the course's own
vocabulary, so BM25 postings are realistic in size). Also prints the answer path's own overhead
before the first token (retrieval + policy + prompt) as a share of an extractive answer's total.
Target: p50 under 30 ms at 100k chunks on one thread.

Then (unless --hnsw-rows 0) the two kinds of `ingest/vector_index.py` on --hnsw-rows synthetic
384-d vectors shaped like sentence embeddings (`clustered_vectors`): build time (all cores),
memory, and for 1,000 held-out queries on one thread the p50 of a top-10 search and HNSW's
recall@10 against the exact flat answer, at each --ef-search; then the same with the retriever's
row filters (share of rows allowed 50%, 10%, 1%), both as `tutor/retrieve.py` calls FAISS today
(the index's stored efSearch) and through `vector_index.search_index`. Targets: recall@10 >= 0.98,
p50 under 10 ms. Needs about 5 GB of memory at a million rows.
"""

from __future__ import annotations

import argparse
import os
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
from ingest.vector_index import HNSW_EF_CONSTRUCTION, HNSW_M, build_vector_index, search_index  # noqa: E402
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
    manifest = IndexManifest(course="synthetic", embedder={"dimension": dimension}, chunker={})
    return CourseIndex(path=Path("."), manifest=manifest, chunks=chunks, vectors=vectors,
                       faiss_index=build_vector_index(vectors),
                       lexical=LexicalIndex.build([c.text for c in chunks]), course={"schedule": []})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--course", default="")
    parser.add_argument("--synthetic", type=int, default=100_000)
    parser.add_argument("--hnsw-rows", type=int, default=1_000_000, help="rows of the flat/HNSW comparison; 0 skips it")
    parser.add_argument("--ef-search", type=int, nargs="+", default=[32, 64, 128, 256])
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
    if args.hnsw_rows:
        compare_flat_and_hnsw(args.hnsw_rows, embedder.dimension, args.ef_search)


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


def clustered_vectors(n: int, dimension: int, seed: int = 0, per_topic: int = 100, per_subtopic: int = 5
                      ) -> np.ndarray:
    """`n` unit vectors shaped like sentence embeddings: a direction all of them share, topics of
    about `per_topic` rows, subtopics of about `per_subtopic`, and noise. Expected cosine: 0.2
    between unrelated rows, 0.45 within a topic, 0.7 within a subtopic (the shipped course's own
    vectors: 0.23 median, 0.58 to the tenth neighbour, 0.77 to the nearest). The isotropic noise
    makes the neighbourhoods harder for HNSW than real embeddings', so its recall here is a floor."""
    rng = np.random.default_rng(seed)

    def unit(rows: int) -> np.ndarray:
        x = rng.standard_normal((rows, dimension), dtype=np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    common, topics, subtopics = unit(1)[0], unit(n // per_topic + 1), unit(n // per_subtopic + 1)
    weights = np.sqrt(np.array([0.2, 0.25, 0.25, 0.3], dtype=np.float32))  # common, topic, subtopic, noise
    out = np.empty((n, dimension), dtype=np.float32)
    for start in range(0, n, 100_000):
        rows = min(100_000, n - start)
        sub = rng.integers(0, len(subtopics), size=rows)
        x = (weights[0] * common + weights[1] * topics[sub * per_subtopic // per_topic]
             + weights[2] * subtopics[sub] + weights[3] * unit(rows))
        out[start:start + rows] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _p50_ms(search, queries: np.ndarray) -> tuple[float, np.ndarray]:
    """Median single-query latency of `search(query_row) -> ids`, and the ids of every query."""
    times, ids = [], []
    search(queries[:1])  # warm-up
    for i in range(len(queries)):
        started = time.perf_counter()
        ids.append(search(queries[i:i + 1])[0])
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), np.array(ids)


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f[f >= 0]) & set(t[t >= 0])) / max(1, (t >= 0).sum()) for f, t in zip(found, truth)]))


def compare_flat_and_hnsw(rows: int, dimension: int, ef_values: list[int], queries: int = 1000, k: int = 10,
                          flat_timed: int = 100) -> None:
    """Flat against HNSW on `rows` synthetic vectors: build, memory, p50 and recall@k (module docstring)."""
    cores = os.cpu_count() or 1
    data = clustered_vectors(rows + queries, dimension)
    base, held_out = data[:rows], data[rows:].copy()
    print(f"\nflat vs HNSW on {rows:,} clustered {dimension}-d vectors, {queries} held-out queries, top {k}; "
          f"built on {cores} cores, searched on 1 thread")
    built = {}
    for kind, threshold in (("flat", rows + 1), ("hnsw", rows)):
        faiss.omp_set_num_threads(cores)
        before, started = _rss_bytes(), time.perf_counter()
        built[kind] = build_vector_index(base, hnsw_threshold=threshold)
        seconds, grown = time.perf_counter() - started, _rss_bytes() - before
        params = f"M={HNSW_M} efConstruction={HNSW_EF_CONSTRUCTION}" if kind == "hnsw" else "exact"
        print(f"  {kind:<5} built in {seconds:7.1f} s, {grown / 2**30:5.2f} GiB resident ({params})")
    del data, base
    started = time.perf_counter()
    _, truth = built["flat"].search(held_out, k)  # all cores: the exact answer every recall is measured against
    print(f"  exact answers for the {queries} queries in {time.perf_counter() - started:.1f} s")

    faiss.omp_set_num_threads(1)
    flat_p50, _ = _p50_ms(lambda q: built["flat"].search(q, k)[1], held_out[:flat_timed])
    print(f"  {'index':<24} {'recall@10':>9} {'p50 ms':>8}")
    print(f"  {'flat':<24} {1.0:>9.3f} {flat_p50:>8.2f}")
    hnsw = built["hnsw"]
    stored_ef = hnsw.hnsw.efSearch
    for ef in ef_values:
        hnsw.hnsw.efSearch = ef
        p50, found = _p50_ms(lambda q: hnsw.search(q, k)[1], held_out)
        print(f"  {f'hnsw efSearch={ef}':<24} {_recall(found, truth):>9.3f} {p50:>8.2f}")
    hnsw.hnsw.efSearch = stored_ef
    pool = 40  # tutor/retrieve.py asks FAISS for this many candidates before fusion
    _, pool_truth = built["flat"].search(held_out[:200], pool)
    p50, found = _p50_ms(lambda q: hnsw.search(q, pool)[1], held_out[:200])
    print(f"  {f'hnsw efSearch={stored_ef}, top {pool}':<24} {_recall(found, pool_truth):>9.3f} {p50:>8.2f}"
          "   (the retriever's candidate pool; recall@40)")

    print(f"  filtered (stored efSearch={stored_ef}; 200 queries): as tutor/retrieve.py calls FAISS, "
          "and through search_index")
    print(f"  {'allowed':>9} {'flat p50':>9} {'retrieve.py recall':>19} {'p50':>6} "
          f"{'search_index recall':>20} {'p50':>6}")
    subset = held_out[:200]
    for share in (0.5, 0.1, 0.01):
        allowed = np.random.default_rng(1).random(rows) < share
        bitmap = np.packbits(allowed.astype(np.uint8), bitorder="little")
        params = faiss.SearchParameters(sel=faiss.IDSelectorBitmap(rows, faiss.swig_ptr(bitmap)))
        faiss.omp_set_num_threads(cores)
        exact = built["flat"].search(subset, k, params=params)[1]
        faiss.omp_set_num_threads(1)
        flat_p50, _ = _p50_ms(lambda q: built["flat"].search(q, k, params=params)[1], subset[:flat_timed // 2])
        plain_p50, plain = _p50_ms(lambda q: hnsw.search(q, k, params=params)[1], subset)
        routed_p50, routed = _p50_ms(lambda q: search_index(hnsw, q, k, allowed)[1], subset)
        print(f"  {share:>9.0%} {flat_p50:>9.2f} {_recall(plain, exact):>19.3f} {plain_p50:>6.2f} "
              f"{_recall(routed, exact):>20.3f} {routed_p50:>6.2f}")


if __name__ == "__main__":
    main()
