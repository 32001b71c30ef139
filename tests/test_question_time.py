"""Nothing heavy at question time: sentence vectors come from ingest, question vectors come batched.

The oracle for the extractive answer is the question-time path it replaces (embed the question and
every headed candidate sentence in one call), which still serves indexes built before sentences
were stored.
"""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from course_fixtures import ingest_small_course, shared_embedder

from ingest.errors import TutorError
from ingest.pipeline import IngestOptions, ingest_course
from ingest.query_batch import QueryBatcher
from ingest.sentences import ROWS_FILE, VECTORS_FILE, headed_sentences
from ingest.store import FORMAT_VERSION, load_index
from tutor.answer import Tutor
from tutor.llm import create_backend
from tutor.llm.extractive import pick_sentences
from tutor.prompt import Source
from tutor.retrieve import expand_abbreviations
from tutor.settings import load_settings

QUESTIONS = [
    "What does momentum do in gradient descent?", "How does dropout work?", "What does max pooling keep?",
    "Why does a large learning rate make the loss diverge?", "What is inverted dropout at test time?",
    "What do convolutional filters share?", "When are office hours?", "Which loss is used for classification?",
    "What is the gradient descent update rule?",
]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return ingest_small_course(tmp_path_factory.mktemp("question-time"))


def make_tutor(data_dir) -> Tutor:
    return Tutor.from_settings(load_settings(data_dir=data_dir), embedder=shared_embedder(),
                               backend=create_backend("extractive"))


def answered(tutor: Tutor) -> list[tuple[str, list[str]]]:
    answers = [tutor.ask(q) for q in QUESTIONS]
    return [(a.text, [c.chunk_id for c in a.citations]) for a in answers]


def test_ingest_stores_each_chunks_headed_sentences_and_their_vectors(data_dir):
    index = load_index(data_dir / "index", "small")
    table = index.sentences
    assert table is not None and index.manifest.format_version == FORMAT_VERSION
    assert set(table.spans) == {c.id for c in index.chunks}
    for chunk in index.chunks:
        start, end = table.spans[chunk.id]
        texts = headed_sentences(chunk.text, chunk.heading)
        assert table.texts[start:end] == texts
        if texts:
            assert np.allclose(table.vectors_of(chunk.id, texts), shared_embedder().encode(texts), atol=1e-5)
    assert any(t.startswith("Momentum: Momentum keeps a running velocity") for t in table.texts)
    assert table.vectors.dtype == np.float32 and table.vectors.shape == (len(table.texts), 384)
    # Rows that no longer match what the answer would quote are not used.
    some = next(c for c in index.chunks if table.spans[c.id][1] > table.spans[c.id][0])
    assert table.vectors_of(some.id, ["Something else: entirely"]) is None and table.vectors_of("nope", []) is None


def test_precomputed_sentences_pick_what_question_time_embedding_picked(data_dir):
    tutor = make_tutor(data_dir)

    def no_embedding(texts):
        raise AssertionError(f"embedded at question time: {texts}")

    picked_any = 0
    for question in QUESTIONS:
        asked = expand_abbreviations(question)
        qvec = shared_embedder().encode_query(asked)
        hits = tutor.retriever.search(asked, k=5, query_vector=qvec)
        sources = [Source(n, hit.chunk, hit.chunk.text) for n, hit in enumerate(hits, start=1)]
        before = pick_sentences(asked, sources, shared_embedder().encode)
        after = pick_sentences(asked, sources, no_embedding, question_vector=qvec, sentences=tutor.index.sentences)
        assert after == before, question
        picked_any += bool(after)
    assert picked_any >= len(QUESTIONS) - 1


def test_answers_are_the_same_with_and_without_stored_sentences(data_dir):
    tutor = make_tutor(data_dir)
    with_sentences = answered(tutor)
    embedder = shared_embedder()
    calls = embedder.calls
    tutor.ask(QUESTIONS[0])
    calls_with = embedder.calls - calls
    tutor.index.sentences = None  # as an index built before sentences were stored
    assert answered(tutor) == with_sentences
    calls = embedder.calls
    tutor.ask(QUESTIONS[0])
    assert embedder.calls - calls == calls_with + 1  # the sentences of the sources, embedded while asked


def test_an_old_index_answers_and_the_next_ingest_adds_its_sentences(tmp_path):
    data = ingest_small_course(tmp_path)
    current = make_tutor(data).ask(QUESTIONS[0]).text
    build = (data / "index/small").resolve()
    (build / ROWS_FILE).unlink()
    (build / VECTORS_FILE).unlink()
    manifest = json.loads((build / "manifest.json").read_text())
    (build / "manifest.json").write_text(json.dumps({**manifest, "format_version": 1}))

    old = make_tutor(data)
    assert old.index.sentences is None and old.ask(QUESTIONS[0]).text == current

    report = ingest_course(tmp_path / "course", IngestOptions(data_dir=data), embedder=shared_embedder())
    assert any("format 1 -> 2" in note for note in report.notes) and len(report.unchanged) == 8
    assert report.embedded == 0 and report.sentences_embedded == 0  # all from the embedding cache
    upgraded = load_index(data / "index", "small")
    assert upgraded.path != build and upgraded.sentences is not None
    assert upgraded.manifest.format_version == FORMAT_VERSION
    assert make_tutor(data).ask(QUESTIONS[0]).text == current

    manifest = json.loads((upgraded.path / "manifest.json").read_text())
    (upgraded.path / "manifest.json").write_text(json.dumps({**manifest, "format_version": FORMAT_VERSION + 1}))
    with pytest.raises(TutorError, match="--rebuild"):
        load_index(data / "index", "small")


class CountingEmbedder:
    """The shared embedder, recording the texts of each model call."""

    def __init__(self):
        self.batches: list[list[str]] = []

    def encode(self, texts):
        self.batches.append(list(texts))
        return shared_embedder().encode(texts)


def ask_together(encode, texts: list[str]) -> list[np.ndarray]:
    results: list = [None] * len(texts)
    go = threading.Barrier(len(texts))

    def ask(i):
        go.wait(timeout=30)
        try:
            results[i] = encode(texts[i])
        except Exception as exc:  # handed back to the test
            results[i] = exc

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def test_concurrent_questions_share_one_model_call_and_get_their_own_vectors():
    embedder = shared_embedder()
    texts = QUESTIONS[:6]
    # A long wait, ended by the sixth arrival: the batch is whole whatever the thread timing.
    batcher = QueryBatcher(embedder, max_wait_s=30, max_batch=len(texts))
    calls = embedder.calls
    vectors = ask_together(batcher.encode_query, texts)
    assert embedder.calls - calls == 1
    for text, vector in zip(texts, vectors):
        assert np.allclose(vector, embedder.encode_query(text), atol=1e-5)


def test_a_full_batch_closes_and_the_next_callers_start_another():
    counting = CountingEmbedder()
    batcher = QueryBatcher(counting, max_wait_s=30, max_batch=3)
    texts = QUESTIONS[:6]
    vectors = ask_together(batcher.encode_query, texts)
    assert sorted(len(b) for b in counting.batches) == [3, 3]
    assert sorted(t for b in counting.batches for t in b) == sorted(texts)
    for text, vector in zip(texts, vectors):
        assert np.allclose(vector, shared_embedder().encode_query(text), atol=1e-5)


def test_a_lone_question_is_not_held_and_a_failure_reaches_every_caller():
    counting = CountingEmbedder()
    alone = QueryBatcher(counting, max_wait_s=0.005)
    assert np.allclose(alone.encode_query("What is dropout?"), shared_embedder().encode_query("What is dropout?"),
                       atol=1e-5)
    assert counting.batches == [["What is dropout?"]]

    class Broken:
        def encode(self, texts):
            raise RuntimeError("model gone")

    broken = QueryBatcher(Broken(), max_wait_s=30, max_batch=3)
    results = ask_together(broken.encode_query, ["a", "b", "c"])
    assert all(isinstance(r, RuntimeError) and "model gone" in str(r) for r in results)
    with pytest.raises(ValueError, match="max_batch"):
        QueryBatcher(counting, max_batch=0)


def test_students_asking_at_once_are_embedded_in_one_call_and_answered_as_alone(data_dir):
    tutor = make_tutor(data_dir)
    alone = {q: tutor.ask(q).text for q in QUESTIONS[:4]}
    counting = CountingEmbedder()
    tutor.queries = QueryBatcher(counting, max_wait_s=30, max_batch=4)
    answers = ask_together(lambda q: tutor.ask(q).text, QUESTIONS[:4])
    assert counting.batches and sorted(counting.batches[0]) == sorted(QUESTIONS[:4])
    assert len(counting.batches) == 1
    assert dict(zip(QUESTIONS[:4], answers)) == alone


def test_the_embedding_process_gives_the_same_vectors_and_falls_back_when_it_dies(caplog):
    import os
    import signal

    from ingest.embed_process import EmbeddingProcess

    embedder = shared_embedder()
    remote = EmbeddingProcess(embedder)
    try:
        texts = QUESTIONS[:3]
        vectors = remote.encode(texts)
        child = remote.child_pid
        assert child is not None and child != os.getpid() and remote.in_child
        assert np.allclose(vectors, embedder.encode(texts), atol=1e-6)
        assert remote.fingerprint == embedder.fingerprint and remote.dimension == embedder.dimension
        # Questions from many threads at once each get their own vector through the one pipe.
        together = ask_together(remote.encode_query, QUESTIONS[:6])
        for text, vector in zip(QUESTIONS[:6], together):
            assert np.allclose(vector, embedder.encode_query(text), atol=1e-6)

        os.kill(child, signal.SIGKILL)                  # the child dies: the next question is still answered
        with caplog.at_level("WARNING", logger="ingest.embed_process"):
            again = remote.encode(texts)
        assert np.allclose(again, vectors, atol=1e-6) and not remote.in_child and remote.child_pid is None
        assert "embedding in the server's own process" in caplog.text
    finally:
        remote.close()


def test_the_served_app_embeds_in_a_child_process_unless_told_not_to(data_dir):
    from tutor.app.server import CourseTutors

    tutors = CourseTutors(load_settings(data_dir=data_dir))
    try:
        tutor = tutors.get(tutors.default_course())
        assert tutor.embedder.child_pid is not None
        assert "velocity" in tutor.ask("What does momentum do in gradient descent?").text
    finally:
        tutors.close()
    assert tutor.embedder.child_pid is None                   # stopped with the app
    in_process = CourseTutors(load_settings(data_dir=data_dir, embedding_process=False))
    assert not hasattr(in_process.get(in_process.default_course()).embedder, "child_pid")
