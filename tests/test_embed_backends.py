"""Embedding backends: ONNX vectors agree with torch's, the export is made once and offline, and a
backend switch changes the fingerprint (so the index is rebuilt, with another embedding cache)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from course_fixtures import shared_embedder, write_small_course

from ingest.embed import EMBEDDING_BACKENDS, Embedder
from ingest.errors import ConfigError
from ingest.onnx_encoder import FP32_FILE, INT8_FILE, model_layout
from ingest.pipeline import IngestOptions, ingest_course
from ingest.store import read_manifest

TEXTS = [
    "Gradient descent updates the parameters against the gradient.",
    "Why does momentum help SGD?",
    "",
    "Dropout randomly zeroes activations during training so units cannot co-adapt. " * 40,  # over 256 tokens
    "Output size of a convolution: (W - K + 2P) / S + 1, e.g. (32 - 3 + 2) / 1 + 1 = 32.",
    "def relu(x):\n    return np.maximum(0, x)",
    "Office hours: Tuesdays 14:00-15:00 in room B12.",
]
# Least cosine of each text's vector with torch's: fp32 ONNX is the same computation (measured 1.00000
# on every text); int8 weights move vectors a little (measured here 0.982 worst, on the empty text,
# 0.994 mean; over the shipped course's 978 chunks 0.9925 worst, 0.9965 mean).
LEAST_COSINE = {"onnx": 0.999, "onnx-int8": 0.97}
LEAST_MEAN_COSINE = {"onnx": 0.9999, "onnx-int8": 0.985}


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx")


@pytest.fixture(scope="module")
def embedders(onnx_dir):
    """One embedder per backend, the ONNX ones exported (once, for the module) into `onnx_dir`."""
    return {name: shared_embedder() if name == "torch" else Embedder(backend=name, onnx_dir=onnx_dir)
            for name in EMBEDDING_BACKENDS}


@pytest.mark.parametrize("backend", ["onnx", "onnx-int8"])
def test_onnx_vectors_are_close_to_torch_vectors(embedders, backend):
    expected = embedders["torch"].encode(TEXTS)
    got = embedders[backend].encode(TEXTS)
    assert got.dtype == np.float32 and got.shape == expected.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    cosine = np.sum(got * expected, axis=1)
    assert cosine.min() > LEAST_COSINE[backend], cosine
    assert cosine.mean() > LEAST_MEAN_COSINE[backend], cosine


@pytest.mark.parametrize("backend", ["onnx", "onnx-int8"])
def test_onnx_ranks_like_torch(embedders, backend):
    """The nearest text to each query is the same whichever backend embeds."""
    queries = ["What does momentum do?", "how big is a conv output", "when are office hours"]
    corpus = [t for t in TEXTS if t]
    rank = {name: np.argmax(e.encode(queries) @ e.encode(corpus).T, axis=1) for name, e in embedders.items()}
    np.testing.assert_array_equal(rank[backend], rank["torch"])


def test_onnx_embedder_serves_the_chunker_like_torch(embedders):
    """The chunker counts tokens with the embedder's tokenizer; both backends must count alike."""
    text = TEXTS[3]
    counts = {n: len(e.tokenizer.encode(text, add_special_tokens=False)) for n, e in embedders.items()}
    assert len(set(counts.values())) == 1
    assert {e.max_tokens for e in embedders.values()} == {256}
    assert {e.dimension for e in embedders.values()} == {384}


def test_each_backend_has_its_own_fingerprint(embedders):
    fingerprints = {name: e.fingerprint for name, e in embedders.items()}
    assert len(set(fingerprints.values())) == len(EMBEDDING_BACKENDS)
    # torch keeps the model's own fingerprint, so indexes built before backends existed stay valid
    assert fingerprints["torch"] == embedders["torch"].model_fingerprint
    assert {e.describe()["backend"] for e in embedders.values()} == set(EMBEDDING_BACKENDS)
    assert Embedder(backend="onnx-int8", onnx_dir="/elsewhere").fingerprint == fingerprints["onnx-int8"]


def test_the_export_is_made_once_into_the_onnx_dir(embedders, onnx_dir):
    embedders["onnx-int8"].encode(["export now"])
    folder = onnx_dir / embedders["torch"].model_fingerprint
    assert sorted(p.name for p in folder.iterdir()) == sorted([FP32_FILE, INT8_FILE])  # no partial files left
    stamps = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    again = Embedder(backend="onnx-int8", onnx_dir=onnx_dir)
    again.encode(["reuse"])
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == stamps


def test_exporting_leaves_the_processs_logging_alone(tmp_path):
    """onnxruntime.quantization configures the root logger on import; the tutor's process must not
    start printing every library's INFO lines because an index was built with onnx-int8."""
    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    Embedder(backend="onnx-int8", onnx_dir=tmp_path).encode(["x"])
    assert (list(root.handlers), root.level) == before


def test_switching_backend_rebuilds_the_index(embedders, tmp_path):
    course = write_small_course(tmp_path / "course")
    options = IngestOptions(data_dir=tmp_path / "data")
    ingest_course(course, options, embedder=embedders["torch"])
    first = read_manifest(tmp_path / "data/index", "small")
    report = ingest_course(course, options, embedder=embedders["onnx"])
    second = read_manifest(tmp_path / "data/index", "small")
    assert second.embedder["fingerprint"] == embedders["onnx"].fingerprint != first.embedder["fingerprint"]
    assert report.unchanged == [] and report.embedded == report.chunks  # nothing reused from torch's cache
    assert any("rebuilt every file" in note for note in report.notes)


def test_an_unknown_backend_is_refused_with_the_accepted_ones():
    with pytest.raises(ConfigError, match="accepted: torch, onnx, onnx-int8"):
        Embedder(backend="tensorrt")


def test_a_model_onnx_cannot_run_is_refused_with_the_way_out(tmp_path):
    (tmp_path / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"},
    ]))
    with pytest.raises(ConfigError, match='embedding_backend = "torch"'):
        model_layout(tmp_path)
