"""The ingest pipeline end to end: locators, incremental updates, bad input, crash safety."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from course_fixtures import shared_embedder, write_small_course
from fixture_files import make_markdown, make_pdf

from ingest.errors import CourseNotFoundError
from ingest.pipeline import IngestOptions, ingest_course
from ingest.sentences import headed_sentences
from ingest.store import load_index, read_manifest

ROOT = Path(__file__).resolve().parents[1]


def ingest(course: Path, data: Path, **kw):
    return ingest_course(course, IngestOptions(data_dir=data, **kw), embedder=shared_embedder())


@pytest.fixture()
def course(tmp_path) -> Path:
    return write_small_course(tmp_path / "course")


def by_path(index, path):
    return [c for c in index.chunks if c.locator.path == path]


def test_every_format_is_indexed_with_its_locator(course, tmp_path):
    report = ingest(course, tmp_path / "data")
    assert report.skipped == []
    assert len(report.added) == 8 and report.chunks == len(load_index(tmp_path / "data/index", "small").chunks)
    index = load_index(tmp_path / "data/index", "small")

    pdf = by_path(index, "notes/dropout.pdf")
    assert [(c.locator.page, c.locator.page_label) for c in pdf] == [(1, "i"), (2, "1"), (3, "2")]
    assert pdf[1].locator.url == "notes/dropout.pdf#page=2"
    slides = by_path(index, "slides/lecture2.pptx")
    assert [c.locator.slide for c in slides] == [1, 2] and "Stress weight sharing" in slides[0].text
    book = by_path(index, "book/optimization.md")
    momentum = [c for c in book if "velocity" in c.text][0]
    assert momentum.locator.anchor == "momentum" and momentum.locator.url == "book/optimization.md#momentum"
    cells = by_path(index, "notebooks/gd_demo.ipynb")
    assert [c.locator.cell for c in cells] == [0, 1]
    talk = by_path(index, "transcripts/lecture1.vtt")
    assert talk[0].locator.start_s == 0.0 and talk[-1].locator.start_s == 70.0
    assert by_path(index, "web/faq.html")[-1].locator.anchor == "office-hours"
    assert {c.locator.kind for c in by_path(index, "solutions/hw1.md")} == {"solution"}
    assert index.course.demos["notebooks/gd_demo.ipynb"]["launch_url"] == (
        "https://colab.example/github/org/repo/blob/main/notebooks/gd_demo.ipynb")
    manifest = read_manifest(tmp_path / "data/index", "small")
    assert manifest.embedder["dimension"] == 384 and manifest.chunker["chunk_tokens"] == 200
    assert manifest.files["notes/dropout.pdf"]["chunk_ids"] == [c.id for c in pdf]


def test_chunks_fit_the_embedder_window_and_stay_inside_their_section(tmp_path):
    long_text = " ".join(f"Sentence {i} explains one more detail about residual connections." for i in range(200))
    make_markdown(tmp_path / "c/book/long.md", f"# Long\n\n## Residuals\n\n{long_text}\n\n## Next\n\nShort body.\n")
    ingest(tmp_path / "c", tmp_path / "data", chunk_tokens=120, chunk_overlap=20)
    index = load_index(tmp_path / "data/index", "c")
    tokenizer = shared_embedder().tokenizer
    residual = [c for c in index.chunks if c.locator.section == "Long > Residuals"]
    assert len(residual) > 5
    assert all(len(tokenizer.encode(c.embed_text())) <= 256 for c in index.chunks)
    assert all("Short body" not in c.text for c in residual)
    # consecutive pieces of a long section overlap a little
    assert residual[1].text[:40] in residual[0].text and residual[1].text[0].isalnum()


def test_changing_one_file_embeds_only_that_file(course, tmp_path):
    data = tmp_path / "data"
    ingest(course, data)
    embedder = shared_embedder()
    before = embedder.texts_embedded

    faq = course / "web/faq.html"
    faq.write_text(faq.read_text().replace("Thursdays in room 204", "Fridays in room 9"), encoding="utf-8")
    os.utime(course / "book/optimization.md")  # touched, content unchanged
    report = ingest(course, data)
    assert report.changed == ["web/faq.html"] and report.added == [] and report.removed == []
    assert "book/optimization.md" in report.unchanged
    index = load_index(data / "index", "small")
    changed_chunks = [c for c in index.chunks if c.locator.path == "web/faq.html"]
    assert 1 <= report.embedded <= len(changed_chunks)
    # The sentences answers may quote are embedded too, only those of the changed chunks that are new.
    assert 1 <= report.sentences_embedded <= sum(len(headed_sentences(c.text, c.heading)) for c in changed_chunks)
    assert report.embedded + report.sentences_embedded == embedder.texts_embedded - before
    assert any("Fridays" in c.text for c in changed_chunks)
    quotable = " ".join(index.sentences.texts)
    assert "Fridays" in quotable and "Thursdays" not in quotable

    again = ingest(course, data)
    assert again.embedded == 0 and again.sentences_embedded == 0 and again.changed == []
    assert len(again.unchanged) == 8


def test_deleting_a_file_removes_its_chunks(course, tmp_path):
    data = tmp_path / "data"
    ingest(course, data)
    (course / "slides/lecture2.pptx").unlink()
    report = ingest(course, data)
    assert report.removed == ["slides/lecture2.pptx"]
    index = load_index(data / "index", "small")
    assert not by_path(index, "slides/lecture2.pptx")
    assert len(index.chunks) == index.vectors.shape[0] == index.faiss_index.ntotal
    assert set(index.sentences.spans) == {c.id for c in index.chunks}
    assert len(index.sentences.texts) == len(index.sentences.vectors) and "Max pooling" not in " ".join(
        index.sentences.texts)


def test_bad_files_are_skipped_with_reasons_and_the_rest_is_indexed(course, tmp_path):
    (course / "notes/corrupt.pdf").write_bytes(b"%PDF-1.4\n" + os.urandom(400))
    make_pdf(course / "notes/locked.pdf", ["secret page"], encrypt=True)
    (course / "notes/empty.md").write_bytes(b"")
    (course / "notes/data.xyz").write_text("what is this", encoding="utf-8")
    (course / "slides/latin1.txt").write_bytes("Caf\xe9 slides\n\nNa\xefve Bayes".encode("latin-1"))
    (course / "notebooks/broken.ipynb").write_text("{not json", encoding="utf-8")
    (course / "notes/huge.md").write_text("# Big\n\n" + "word " * 300_000, encoding="utf-8")
    outside = tmp_path / "outside.md"
    outside.write_text("# Secret\n\nOutside the course.", encoding="utf-8")
    (course / "notes/link.md").symlink_to(outside)

    report = ingest(course, tmp_path / "data", max_file_mb=1)
    reasons = {s["path"]: s["reason"] for s in report.skipped}
    assert set(reasons) == {"notes/corrupt.pdf", "notes/locked.pdf", "notes/empty.md", "notes/data.xyz",
                            "slides/latin1.txt", "notebooks/broken.ipynb", "notes/huge.md", "notes/link.md"}
    assert "password" in reasons["notes/locked.pdf"]
    assert "0 bytes" in reasons["notes/empty.md"]
    assert "unsupported file type '.xyz'" in reasons["notes/data.xyz"]
    assert "UTF-8" in reasons["slides/latin1.txt"]
    assert "notebook" in reasons["notebooks/broken.ipynb"].lower()
    assert "1 MB cap" in reasons["notes/huge.md"]
    assert "outside the course folder" in reasons["notes/link.md"]
    assert len(report.added) == 8
    index = load_index(tmp_path / "data/index", "small")
    assert not any("Outside the course" in c.text for c in index.chunks)


def test_a_file_that_turns_corrupt_keeps_its_previous_version(course, tmp_path):
    data = tmp_path / "data"
    ingest(course, data)
    (course / "notes/dropout.pdf").write_bytes(b"%PDF-1.4 garbage")
    report = ingest(course, data)
    assert report.skipped[0]["path"] == "notes/dropout.pdf"
    assert "previously indexed version is kept" in report.skipped[0]["reason"]
    assert by_path(load_index(data / "index", "small"), "notes/dropout.pdf")


def test_changed_chunker_settings_force_a_rebuild_with_a_message(course, tmp_path):
    data = tmp_path / "data"
    ingest(course, data)
    report = ingest(course, data, chunk_tokens=100, chunk_overlap=10)
    assert report.notes and "chunk_tokens: 200 -> 100" in report.notes[0]
    assert len(report.added) == 8
    assert read_manifest(data / "index", "small").chunker["chunk_tokens"] == 100


def test_changed_load_options_read_every_file_again(course, tmp_path):
    """The text of an unchanged file depends on how it is read: switching the code framework (or OCR,
    or a new loaders version) must not keep the old text."""
    data = tmp_path / "data"
    ingest(course, data)
    report = ingest(course, data, code_framework="tensorflow")
    assert report.notes and "code_framework: pytorch -> tensorflow" in report.notes[0]
    assert report.unchanged == [] and len(report.added) == 8
    assert read_manifest(data / "index", "small").chunker["loaders"] >= 2


def test_missing_or_empty_course_folder_is_a_one_line_error(tmp_path):
    with pytest.raises(CourseNotFoundError, match="course folder not found"):
        ingest(tmp_path / "nope", tmp_path / "data")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CourseNotFoundError, match="course folder is empty"):
        ingest(tmp_path / "empty", tmp_path / "data")
    done = subprocess.run([sys.executable, "-m", "tutor.cli", "ingest", str(tmp_path / "nope"),
                           "--data-dir", str(tmp_path / "data")], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and done.stderr.startswith("error: course folder not found")


_SLOW_WRITER = """
import sys, time
import ingest.store as store
real = store._fsync_tree
def stall(folder):
    print("WRITING", flush=True)
    time.sleep(120)
store._fsync_tree = stall
from ingest.pipeline import IngestOptions, ingest_course
from ingest.sentences import headed_sentences
ingest_course(sys.argv[1], IngestOptions(data_dir=sys.argv[2]))
"""


def test_kill_9_during_an_ingest_leaves_the_previous_index_serving(course, tmp_path):
    data = tmp_path / "data"
    ingest(course, data)
    before = load_index(data / "index", "small")
    make_markdown(course / "book/new.md", "# New chapter\n\nBatch normalization standardises activations.")
    child = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, str(course), str(data)],
                             stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        deadline = time.time() + 120
        line = ""
        while time.time() < deadline and "WRITING" not in line:
            line = child.stdout.readline()
        assert "WRITING" in line, "the child never reached the write step"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
    after = load_index(data / "index", "small")
    assert after.path == before.path and len(after.chunks) == len(before.chunks)
    assert list((data / "index/.builds").glob(".*partial"))  # the half-written build is left behind...
    report = ingest(course, data)
    assert report.added == ["book/new.md"]
    assert not list((data / "index/.builds").glob(".*partial"))  # ...and cleaned by the next ingest


def test_cli_json_summary_has_the_documented_keys(course, tmp_path):
    done = subprocess.run([sys.executable, "-m", "tutor.cli", "ingest", str(course), "--data-dir",
                           str(tmp_path / "data"), "--json"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    for key in ("course", "added", "changed", "removed", "unchanged", "skipped", "chunks", "embedded", "seconds"):
        assert key in summary
    assert summary["course"] == "small" and summary["chunks"] > 8 and summary["embedded"] == summary["chunks"]


def test_faiss_search_matches_a_numpy_oracle(course, tmp_path):
    from tutor.retrieve import Retriever

    ingest(course, tmp_path / "data")
    index = load_index(tmp_path / "data/index", "small")
    retriever = Retriever(index, shared_embedder())
    rng = np.random.default_rng(0)
    for _ in range(20):
        q = rng.normal(size=index.vectors.shape[1]).astype(np.float32)
        q /= np.linalg.norm(q)
        allowed = rng.random(len(index.chunks)) > 0.3
        got = retriever.dense_ranking(q, allowed, 5)
        scores = np.where(allowed, index.vectors @ q, -np.inf)
        expected = np.argsort(-scores, kind="stable")[: min(5, allowed.sum())]
        assert got == expected.tolist()


@pytest.mark.parametrize("rel, skipped", [
    ("LICENSE", True), ("LICENSE.md", True), ("sub/licence.txt", True), ("COPYING", True), ("LICENSE-MIT", True),
    ("CONTRIBUTING.md", True), ("CHANGELOG.md", True), ("book/license-notes.md", False), ("README.md", False),
    ("notes/licensing.md", False), ("slides/01-intro.pdf", False),
])
def test_a_repositorys_licence_and_changelog_are_not_course_material(rel, skipped):
    """A course folder that is a Git repository carries its licence and contributor papers: without a
    course.toml they would be indexed and cited as if they taught something."""
    from ingest.course import left_out

    assert left_out(rel) is skipped
