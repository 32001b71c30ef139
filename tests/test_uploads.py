"""Instructor uploads as transactions: damaged zips, lying names, and a crash mid-upload lose nothing.

Each test reproduces one way the first version lost or leaked course files: a zip member with a bad
CRC-32, one whose declared size is smaller than its content, an HTML file named like the PDF it
replaces, and `kill -9` of the process between applying an upload and finishing its re-index.
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
from fixture_files import make_pdf
from typer.testing import CliRunner

from ingest.pipeline import IngestOptions, ingest_course
from ingest.store import load_index
from tutor.app.upload import UploadRejected, recover_uploads, stage_upload

ROOT = Path(__file__).resolve().parents[1]
CAP = 1_000_000


def course(tmp_path: Path) -> Path:
    root = tmp_path / "course"
    (root / "book").mkdir(parents=True)
    (root / "slides").mkdir()
    (root / "syllabus.md").write_text("# Syllabus\n\nThe midterm is worth 30 percent of the grade.\n")
    (root / "book" / "ch1.md").write_text("# Chapter one\n\nGradient descent follows the negative gradient.\n")
    make_pdf(root / "slides" / "01-intro.pdf", ["Supervised learning maps inputs to labels."])
    return root


def zip_with(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def patch_member(path: Path, name: str, *, crc: int | None = None, size: int | None = None) -> None:
    """Rewrite a member's CRC-32 or uncompressed size in both its local and central headers."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(name)
    data = bytearray(path.read_bytes())
    local = info.header_offset
    central = data.index(b"PK\x01\x02")  # its central record (the archive holds one member)
    if crc is not None:
        struct.pack_into("<I", data, local + 14, crc)
        struct.pack_into("<I", data, central + 16, crc)
    if size is not None:
        struct.pack_into("<I", data, local + 22, size)
        struct.pack_into("<I", data, central + 24, size)
    path.write_bytes(bytes(data))


def untouched(root: Path, snapshot: dict[str, bytes]) -> bool:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()} == snapshot


def snapshot_of(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_a_zip_member_with_a_bad_crc_is_rejected_and_nothing_is_lost(tmp_path):
    root = course(tmp_path)
    before = snapshot_of(root)
    archive = zip_with(tmp_path / "update.zip", {"syllabus.md": b"# Syllabus\n\nThe midterm is gone.\n"})
    patch_member(archive, "syllabus.md", crc=0xDEADBEEF)
    with pytest.raises(UploadRejected, match=r"syllabus\.md is damaged.*nothing was changed"):
        stage_upload([archive], root, "", CAP, tmp_path / "data" / "uploads")
    assert untouched(root, before)                                  # syllabus.md still has its bytes
    assert not any((tmp_path / "data" / "uploads").iterdir())


def test_a_zip_member_longer_than_declared_is_rejected_and_nothing_is_lost(tmp_path):
    root = course(tmp_path)
    before = snapshot_of(root)
    content = b"# Syllabus\n\nRewritten with a lying size field in the archive.\n"
    archive = zip_with(tmp_path / "update.zip", {"syllabus.md": content})
    patch_member(archive, "syllabus.md", size=10)
    with pytest.raises(UploadRejected, match="damaged"):
        stage_upload([archive], root, "", CAP, tmp_path / "data" / "uploads")
    assert untouched(root, before)


def test_an_html_file_named_like_the_pdf_it_replaces_is_rejected(tmp_path):
    root = course(tmp_path)
    before = snapshot_of(root)
    fake = tmp_path / "upload" / "01-intro.pdf"
    fake.parent.mkdir()
    fake.write_text("<!DOCTYPE html><html><body><h1>Not a PDF</h1></body></html>")
    with pytest.raises(UploadRejected, match=r"slides/01-intro\.pdf is not a PDF \(its content looks like HTML\)"):
        stage_upload([fake], root, "slides", CAP, tmp_path / "data" / "uploads")
    assert untouched(root, before)
    broken = tmp_path / "upload" / "notes.md"
    broken.write_bytes(b"\xff\xfe binary \x00\x01")
    with pytest.raises(UploadRejected, match="notes.md"):
        stage_upload([broken], root, "book", CAP, tmp_path / "data" / "uploads")
    assert untouched(root, before)


def test_an_upload_identical_to_the_course_files_changes_nothing(tmp_path):
    root = course(tmp_path)
    same = tmp_path / "ch1.md"
    same.write_bytes((root / "book" / "ch1.md").read_bytes())
    upload = stage_upload([same], root, "book", CAP, tmp_path / "data" / "uploads")
    assert upload.files == [] and upload.unchanged == ["book/ch1.md"]


CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from ingest.pipeline import IngestOptions, ingest_course
    from tutor.app.upload import stage_upload

    root, data, new, revised = (Path(a) for a in sys.argv[1:5])
    upload = stage_upload([new, revised], root, "book", 1_000_000, data / "uploads")
    upload.apply()

    def slow(fraction, message):
        print("indexing", flush=True)
        time.sleep(120)          # killed here, mid re-index

    ingest_course(root, IngestOptions(data_dir=data), progress=slow)
""")


def test_kill_9_mid_upload_is_undone_at_the_next_start(tmp_path):
    root = course(tmp_path)
    data = tmp_path / "data"
    ingest_course(root, IngestOptions(data_dir=data))
    before = snapshot_of(root)
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    (incoming / "ch2.md").write_text("# Chapter two\n\nThe cancelled chapter about zorbulation.\n")
    (incoming / "ch1.md").write_text("# Chapter one\n\nA revised chapter one that was never committed.\n")
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(root), str(data), str(incoming / "ch2.md"),
                              str(incoming / "ch1.md")], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert child.stdout.readline().strip() == "indexing"
        assert (root / "book" / "ch2.md").exists()                   # the upload is half-way: applied
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)

    from tutor.cli import app

    result = CliRunner().invoke(app, ["ingest", str(root), "--data-dir", str(data)])  # the next start
    assert result.exit_code == 0, result.output
    assert "interrupted upload" in result.output
    assert untouched(root, before)                                   # original back, cancelled file gone
    assert not any((data / "uploads").iterdir())
    index = load_index(data / "index", root.name)
    texts = " ".join(chunk.text for chunk in index.chunks)
    assert "zorbulation" not in texts and "negative gradient" in texts and "revised" not in texts
    assert recover_uploads(data / "uploads") == []                               # nothing left to undo


def test_an_upload_crashed_while_staging_never_touches_the_course(tmp_path):
    root = course(tmp_path)
    before = snapshot_of(root)
    leftover = tmp_path / "data" / "uploads" / "20260101-000000-dead"
    (leftover / "staged" / "book").mkdir(parents=True)
    (leftover / "staged" / "book" / "ch1.md").write_text("half-written")
    assert recover_uploads(tmp_path / "data" / "uploads") == []
    assert not leftover.exists() and untouched(root, before)
