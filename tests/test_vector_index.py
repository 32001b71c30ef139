"""The dense index: flat below the threshold, HNSW from it, both answering like exact search,
with and without row filters, and through the retriever's own filtered search call."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from ingest.course import CourseConfig
from ingest.lexical import LexicalIndex
from ingest.model import Chunk, Locator
from ingest.store import CourseIndex, IndexManifest
from ingest.vector_index import DEFAULT_HNSW_THRESHOLD, EXACT_SHARE, build_vector_index, index_kind, search_index
from tutor.retrieve import Retriever

DIM = 64
K = 10


def clustered(n: int, seed: int) -> np.ndarray:
    """Unit vectors around 50 centres, so neighbours mean something (and ties are unlikely)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(50, DIM))
    x = centres[rng.integers(0, 50, size=n)] + rng.normal(size=(n, DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def exact_top_k(vectors: np.ndarray, queries: np.ndarray, k: int, allowed: np.ndarray | None = None):
    """The oracle: numpy inner products, disallowed rows never chosen."""
    scores = queries @ vectors.T
    if allowed is not None:
        scores[:, ~allowed] = -np.inf
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


@pytest.fixture(scope="module")
def data():
    vectors, queries = clustered(3000, seed=0), clustered(40, seed=1)
    flat = build_vector_index(vectors, hnsw_threshold=len(vectors) + 1)
    hnsw = build_vector_index(vectors, hnsw_threshold=len(vectors))
    hnsw.hnsw.efSearch = 512  # high enough to be exact on 3,000 rows
    return vectors, queries, {"flat": flat, "hnsw": hnsw}


@pytest.mark.parametrize("rows, threshold, kind", [
    (0, 100_000, "flat"), (99_999, 100_000, "flat"), (100_000, 100_000, "hnsw"), (5, 5, "hnsw"), (5, 6, "flat"),
])
def test_the_threshold_picks_the_kind(rows, threshold, kind):
    assert index_kind(rows, threshold) == kind


def test_the_default_threshold_splits_flat_from_hnsw():
    assert index_kind(DEFAULT_HNSW_THRESHOLD - 1) == "flat" and index_kind(DEFAULT_HNSW_THRESHOLD) == "hnsw"


def test_built_index_kinds_use_inner_product(data):
    _, _, built = data
    assert type(built["flat"]) is faiss.IndexFlatIP
    assert type(built["hnsw"]) is faiss.IndexHNSWFlat
    assert {i.metric_type for i in built.values()} == {faiss.METRIC_INNER_PRODUCT}
    assert {i.ntotal for i in built.values()} == {3000}


def test_an_empty_index_needs_only_the_dimension():
    index = build_vector_index(np.zeros((0, DIM), np.float32), DIM)
    assert type(index) is faiss.IndexFlatIP and index.d == DIM and index.ntotal == 0


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_top_k_equals_exact_search(data, kind):
    vectors, queries, built = data
    _, ids = built[kind].search(queries, K)
    np.testing.assert_array_equal(ids, exact_top_k(vectors, queries, K))


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
@pytest.mark.parametrize("share", [0.6, 0.2, EXACT_SHARE / 2])  # HNSW: selector, raised efSearch, exact scan
def test_filtered_search_equals_exact_search_over_allowed_rows(data, kind, share):
    vectors, queries, built = data
    allowed = np.random.default_rng(2).random(len(vectors)) < share
    _, ids = search_index(built[kind], queries, K, allowed=allowed)
    np.testing.assert_array_equal(ids, exact_top_k(vectors, queries, K, allowed))


def test_default_hnsw_parameters_answer_filtered_searches_like_exact_search(data):
    """As built (stored efSearch), filters at every share keep recall@10 against exact search high."""
    vectors, queries, _ = data
    index = build_vector_index(vectors, hnsw_threshold=1)
    for share in (1.0, 0.5, 0.1, 0.01):
        allowed = np.random.default_rng(3).random(len(vectors)) < share
        _, ids = search_index(index, queries, K, allowed=allowed)
        oracle = exact_top_k(vectors, queries, K, allowed)
        found = np.mean([len(set(a) & set(b)) / K for a, b in zip(ids, oracle)])
        assert found >= 0.97, (share, found)


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_written_index_reads_back_as_the_same_kind(data, kind, tmp_path):
    vectors, queries, built = data
    faiss.write_index(built[kind], str(tmp_path / "faiss.index"))
    again = faiss.read_index(str(tmp_path / "faiss.index"))
    assert type(again) is type(built[kind])
    if kind == "hnsw":
        assert again.hnsw.efSearch == built[kind].hnsw.efSearch
    np.testing.assert_array_equal(again.search(queries, K)[1], built[kind].search(queries, K)[1])


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_the_retrievers_filters_work_on_both_kinds(data, kind):
    """tutor/retrieve.py filters with faiss.SearchParameters(sel=IDSelectorBitmap) on whatever index
    the store built: it must keep to the allowed rows (solutions out) and rank like exact search."""
    vectors, queries, built = data
    kinds = np.where(np.arange(len(vectors)) % 4 == 0, "solution", "book")
    chunks = [Chunk(id=f"c{i}", text="x", locator=Locator(f"f{i // 30}.md", str(kinds[i]), "S"), ordinal=i % 30,
                    text_hash=str(i)) for i in range(len(vectors))]
    index = CourseIndex(path=None, manifest=IndexManifest(course="t", embedder={"dimension": DIM}, chunker={}),
                        chunks=chunks, vectors=vectors, faiss_index=built[kind],
                        lexical=LexicalIndex.build(["x"] * len(vectors)), course=CourseConfig.from_dict({"id": "c"}))
    retriever = Retriever(index, embedder=None)
    allowed = retriever.allowed_rows()
    assert 0 < allowed.sum() < len(allowed)
    for query in queries[:10]:
        rows = retriever.dense_ranking(query, allowed, K)
        assert all(kinds[r] != "solution" for r in rows)
        assert rows == exact_top_k(vectors, query[None, :], K, allowed)[0].tolist()


# -- wired from the settings through ingest to the question -------------------------------------

def test_settings_choose_the_index_kind_and_the_tutor_searches_it(tmp_path):
    """hnsw_threshold reaches the stored index: 0 gives an HNSW index that the retriever searches
    with the same results as an exact index of the same course."""
    from course_fixtures import shared_embedder, write_small_course
    from ingest.pipeline import ingest_course
    from ingest.store import load_index
    from tutor.settings import load_settings

    course = write_small_course(tmp_path / "course")
    tops = {}
    for threshold in (0, 10**9):
        settings = load_settings(data_dir=tmp_path / f"data-{threshold}", hnsw_threshold=threshold)
        ingest_course(course, settings.ingest_options(), embedder=shared_embedder())
        index = load_index(settings.index_root(), "small")
        assert isinstance(index.faiss_index, faiss.IndexHNSWFlat if threshold == 0 else faiss.IndexFlatIP)
        retriever = settings.retriever(index, shared_embedder())
        tops[threshold] = [h.chunk.id for h in retriever.search("What does momentum do to SGD?", k=3)]
        only_notebooks = retriever.search("momentum", k=3, kinds=["notebook"])
        assert only_notebooks and {h.chunk.locator.kind for h in only_notebooks} == {"notebook"}
    assert tops[0] == tops[10**9]


def test_the_embedding_backend_setting_builds_the_index_and_a_different_one_is_refused(tmp_path):
    from course_fixtures import write_small_course
    from ingest.errors import IndexMismatchError
    from ingest.pipeline import ingest_course
    from ingest.store import check_embedder
    from tutor.settings import load_settings

    settings = load_settings(data_dir=tmp_path / "data", embedding_backend="onnx-int8")
    ingest_course(write_small_course(tmp_path / "course"), settings.ingest_options())
    index = settings.open_index()
    assert index.manifest.embedder["backend"] == "onnx-int8"
    assert (settings.onnx_dir()).is_dir()                              # the export lives in the data dir
    check_embedder(index, settings.embedder().fingerprint)             # the same backend asks the questions
    torch_settings = settings.model_copy(update={"embedding_backend": "torch"})
    with pytest.raises(IndexMismatchError, match="run `tutor ingest COURSE_DIR` again"):
        check_embedder(index, torch_settings.embedder().fingerprint)
