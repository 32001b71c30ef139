"""Retrieval: fusion against hand-computed cases, filters, and the cross-encoder rerank."""

from __future__ import annotations

import shutil

import pytest
from course_fixtures import ingest_small_course, shared_embedder

from ingest.embed import default_model_path
from ingest.store import load_index
from tutor.retrieve import Retriever, expand_abbreviations, fuse_rankings, fuse_scores


def test_rrf_matches_a_hand_computed_case():
    fused = fuse_rankings([[7, 3, 5], [3, 9]], k=60)
    assert fused[3] == pytest.approx(1 / 62 + 1 / 61)
    assert fused[7] == pytest.approx(1 / 61)
    assert fused[9] == pytest.approx(1 / 62)
    assert fused[5] == pytest.approx(1 / 63)
    assert sorted(fused, key=lambda i: -fused[i]) == [3, 7, 9, 5]


def test_weighted_fusion_matches_a_hand_computed_case():
    fused = fuse_scores({1: 0.9, 2: 0.5, 3: 0.7}, {2: 10.0, 4: 2.0}, dense_weight=0.6)
    # dense min-max: 1 -> 1, 2 -> 0, 3 -> 0.5; lexical: 2 -> 1, 4 -> 0
    assert fused == pytest.approx({1: 0.6, 2: 0.4, 3: 0.3, 4: 0.0})
    assert fuse_scores({}, {}) == {}
    assert fuse_scores({5: 0.3}, {}, dense_weight=0.6) == pytest.approx({5: 0.6})


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    return load_index(ingest_small_course(tmp_path_factory.mktemp("retrieve")) / "index", "small")


@pytest.mark.parametrize("mode", ["dense", "lexical", "hybrid"])
@pytest.mark.parametrize("fusion", ["rrf", "weighted"])
def test_every_mode_finds_the_passage_and_never_a_solution(index, mode, fusion):
    hits = Retriever(index, shared_embedder(), fusion=fusion).search(
        "Which activation does max pooling keep?", k=3, mode=mode)
    assert hits and hits[0].chunk.locator.path == "slides/lecture2.pptx"
    assert all(h.chunk.locator.kind != "solution" for h in hits)


def test_kind_filter_and_solution_lookup(index):
    retriever = Retriever(index, shared_embedder())
    assert {h.chunk.locator.kind for h in retriever.search("gradient descent", k=10, kinds=["notebook"])} == {"notebook"}
    solutions = retriever.search("final answer x3", k=3, kinds=["solution"])
    assert solutions and all(h.chunk.locator.kind == "solution" for h in solutions)


def test_neighbours_stay_in_the_same_file(index):
    retriever = Retriever(index, shared_embedder())
    hit = retriever.search("momentum velocity ravine", k=1)[0]
    around = retriever.neighbours(hit)
    assert hit.chunk in around and {c.locator.path for c in around} == {hit.chunk.locator.path}


def tiny_cross_encoder(folder):
    """A random-weight one-layer BERT cross-encoder with the embedder's own tokenizer files."""
    from transformers import BertConfig, BertForSequenceClassification

    source = default_model_path()
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(f"{source}/{name}", folder / name)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, num_labels=1)
    BertForSequenceClassification(config).save_pretrained(folder)
    return folder


def test_rerank_orders_candidates_by_the_cross_encoder(index, tmp_path):
    from sentence_transformers import CrossEncoder

    model = tiny_cross_encoder(tmp_path)
    question = "How does gradient descent choose its step?"
    plain = Retriever(index, shared_embedder()).search(question, k=40)
    reranked = Retriever(index, shared_embedder(), reranker_model=str(model)).search(question, k=5)
    oracle = CrossEncoder(str(model), device="cpu").predict([(question, h.chunk.embed_text()) for h in plain])
    expected = [plain[i].chunk.id for i in sorted(range(len(plain)), key=lambda i: -oracle[i])[:5]]
    assert [h.chunk.id for h in reranked] == expected


def test_langchain_retriever_returns_documents_with_locators(index):
    from tutor.langchain_retriever import CourseRetriever

    retriever = CourseRetriever(retriever=Retriever(index, shared_embedder()), k=3)
    docs = retriever.invoke("Which activation does max pooling keep?")
    assert len(docs) == 3 and docs[0].metadata["path"] == "slides/lecture2.pptx"
    assert docs[0].metadata["url"] == "slides/lecture2.pptx#slide=2" and "Max pooling" in docs[0].page_content
    only_solutions = CourseRetriever(retriever=Retriever(index, shared_embedder()), kinds=["solution"])
    assert all(d.metadata["kind"] != "solution" for d in only_solutions.invoke("final answer x3"))


FAKE_JAX_LAX = '''
import json, os
def top_k(values, k):  # what bm25s calls while it is being imported
    keys = ("JAX_PLATFORMS", "XLA_PYTHON_CLIENT_PREALLOCATE")
    with open(os.environ["FAKE_JAX_REPORT"], "w") as out:
        json.dump({key: os.environ.get(key) for key in keys}, out)
    return values, values
'''


@pytest.mark.parametrize("preset, expected", [
    ({}, {"JAX_PLATFORMS": "cpu", "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}),
    ({"JAX_PLATFORMS": "cuda"}, {"JAX_PLATFORMS": "cuda", "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}),
])
def test_bm25s_finds_jax_kept_off_the_gpu_unless_the_environment_says_otherwise(tmp_path, preset, expected):
    """With JAX installed, bm25s runs a JAX op at import; on a GPU that would take 75% of its memory."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    (tmp_path / "jax").mkdir()
    (tmp_path / "jax" / "__init__.py").write_text("")
    (tmp_path / "jax" / "lax.py").write_text(FAKE_JAX_LAX)
    report = tmp_path / "seen.json"
    env = {key: value for key, value in os.environ.items()
           if key not in ("JAX_PLATFORMS", "XLA_PYTHON_CLIENT_PREALLOCATE")}
    env.update(preset, FAKE_JAX_REPORT=str(report),
               PYTHONPATH=os.pathsep.join([str(tmp_path), str(Path(__file__).resolve().parents[1])]))
    subprocess.run([sys.executable, "-c", "import ingest.lexical"], env=env, check=True, timeout=120)
    assert json.loads(report.read_text()) == expected


@pytest.mark.parametrize("query, expanded", [
    ("When can I meet the TA?", "When can I meet the TA (teaching assistant)?"),
    ("Is hw2 due Friday?", "Is hw2 (homework) due Friday?"),
    ("When are OH this week?", "When are OH (office hours) this week?"),
    ("Which lec covers attention?", "Which lec (lecture) covers attention?"),
    ("Does the ta in a URL matter? What does THAT mean?", "Does the ta in a URL matter? What does THAT mean?"),
    ("Can I see the teaching assistant (TA)?", "Can I see the teaching assistant (TA)?"),
])
def test_course_shorthand_is_spelled_out_once(query, expanded):
    assert expand_abbreviations(query) == expanded
    assert expand_abbreviations(expanded) == expanded
