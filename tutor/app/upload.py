"""Instructor uploads as transactions: staged, validated whole, applied by rename, undone on failure.

    upload = stage_upload(files, course_root, folder="book", cap_bytes=..., uploads=settings.uploads_dir())
    upload.apply()                  # originals moved aside, new files renamed in; journal says "applied"
    try:
        report = ingest_course(course_root, options, ...)
    except Exception:
        upload.rollback()           # the folder is as it was; the old index never stopped serving
        raise
    upload.commit()                 # originals dropped

Each upload lives in `<data dir>/uploads/<id>/`: `staged/` (the new files), `backup/` (the files they
replace, moved there by `apply`) and `journal.json` (the course folder, the files, which of them
replace an original, and the state: staged, applying, applied). Staging checks everything before the
course folder is touched: the file type by name and by content (a PDF starts with `%PDF-`, a PPTX is
a zip with `[Content_Types].xml`, text is UTF-8), that the loader can read it, each zip member's
CRC-32 and declared size, names that would leave the course folder (`..`, absolute paths, drive
letters, symlinks inside a zip), hidden files, and the size cap. A failure names the bad file and
leaves nothing behind. `recover_uploads` (run when the app or `tutor ingest` starts) undoes any upload
that a crash interrupted after `apply` and before `commit`, and names the courses to re-index.
Files identical to the ones they would replace are dropped from the upload ("unchanged").
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import stat
import time
import unicodedata
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ingest.errors import LoaderError, TutorError
from ingest.loaders import load_file, supported_extensions
from ingest.model import SourceFile

ARCHIVE = ".zip"
MAX_ARCHIVE_MEMBERS = 5000
JOURNAL = "journal.json"
_TEXT_TYPES = {".md", ".markdown", ".txt", ".html", ".htm", ".vtt", ".srt", ".ipynb", ".sbv"}


class UploadRejected(TutorError, ValueError):
    """An upload broke a rule (type, content, size, name); nothing of it was written."""


def accepted_extensions() -> list[str]:
    return [*supported_extensions(), ARCHIVE]


def safe_name(name: str) -> str:
    """One path component reduced to a harmless file name, or "" if nothing usable is left."""
    name = unicodedata.normalize("NFKC", name).replace("\x00", "")
    cleaned = "".join(ch if ch.isalnum() or ch in "._- " else "_" for ch in name).strip(" .")
    return "" if cleaned in ("", ".", "..") else cleaned


@dataclass
class StagedUpload:
    """One upload between staging and commit; `journal.json` in `folder` makes it survive a crash."""

    course_root: Path
    folder: Path                                                  # <data dir>/uploads/<id>
    files: list[str] = field(default_factory=list)                # course-relative paths it writes
    replaces: list[str] = field(default_factory=list)             # those that replace an existing file
    unchanged: list[str] = field(default_factory=list)            # identical to what is there: dropped
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name in the upload, reason)
    state: str = "staged"

    def staged(self, rel: str) -> Path:
        return self.folder / "staged" / rel

    def backup(self, rel: str) -> Path:
        return self.folder / "backup" / rel

    def target(self, rel: str) -> Path:
        target = (self.course_root / rel).resolve()
        if not target.is_relative_to(self.course_root):
            raise UploadRejected(f"{rel!r} would be written outside the course folder")
        return target

    def _journal(self, state: str) -> None:
        self.state = state
        record = {"course_root": str(self.course_root), "files": self.files, "replaces": self.replaces,
                  "state": state, "updated": time.time()}
        tmp = self.folder / (JOURNAL + ".tmp")
        with open(tmp, "w", encoding="utf-8") as out:
            json.dump(record, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.folder / JOURNAL)

    def apply(self) -> None:
        """Move each original aside and rename the staged file into its place."""
        self._journal("applying")  # before the first move: a crash from here on is rolled back
        for rel in self.files:
            target = self.target(rel)
            if rel in self.replaces and target.exists():
                _move(target, self.backup(rel))
            _move(self.staged(rel), target)
        self._journal("applied")

    def rollback(self) -> None:
        """Put the course folder back as it was before `apply` (also after a crash), then forget it."""
        for rel in self.files:
            target = self.target(rel)
            backup = self.backup(rel)
            if backup.exists():
                _move(backup, target)
            elif rel not in self.replaces:
                target.unlink(missing_ok=True)
        shutil.rmtree(self.folder, ignore_errors=True)

    def commit(self) -> None:
        """Keep what was applied; drop the originals and the journal."""
        shutil.rmtree(self.folder, ignore_errors=True)

    @classmethod
    def load(cls, folder: Path) -> StagedUpload:
        record = json.loads((folder / JOURNAL).read_text(encoding="utf-8"))
        return cls(Path(record["course_root"]), folder, record["files"], record["replaces"],
                   state=record["state"])


def stage_upload(files: list[Path], course_root: Path, folder: str, cap_bytes: int, uploads: Path,
                 accept_source=None) -> StagedUpload:
    """Check every uploaded file, unpack zips, validate the content, and stage it all under the data dir.

    `accept_source(path) -> bool` says whether a given path really is a browser upload (the app passes
    Gradio's record of its uploads); a server path that is not one is refused. Nothing in the course
    folder changes here; the returned upload's `apply` makes the change.
    """
    root = Path(course_root).resolve()
    destination = _folder(root, folder)
    if not files:
        raise UploadRejected("no file was uploaded; choose files or a .zip first")
    accepted = accepted_extensions()
    plan: list[tuple[Path, str]] = []
    for path in files:
        path = Path(path)
        if accept_source is not None and not accept_source(path):
            raise UploadRejected(f"{path.name} was not uploaded from your browser; only uploaded files are accepted")
        name = safe_name(path.name)
        suffix = Path(name).suffix.lower()
        if not name or suffix not in accepted:
            raise UploadRejected(f"{path.name}: file type '{suffix or '(none)'}' is not accepted; "
                                 f"upload one of {', '.join(accepted)}")
        size = path.stat().st_size
        if size > cap_bytes:
            raise UploadRejected(f"{path.name} is {size / 2**20:.2f} MB, over the {cap_bytes / 2**20:g} MB "
                                 "upload cap (raise max_upload_mb to allow it)")
        if suffix == ARCHIVE and not zipfile.is_zipfile(path):
            raise UploadRejected(f"{path.name} is not a valid zip archive")
        plan.append((path, name))

    uploads = Path(uploads)
    uploads.mkdir(parents=True, exist_ok=True)
    upload = StagedUpload(root, uploads / f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(4)}")
    (upload.folder / "staged").mkdir(parents=True)
    try:
        for path, name in plan:
            if name.lower().endswith(ARCHIVE):
                _unpack(path, root, destination, cap_bytes, upload)
            else:
                with open(path, "rb") as source:
                    _stage(upload, (destination / name).relative_to(root).as_posix(), source, path.name)
        for rel in list(upload.files):
            _validate(upload.staged(rel), rel)
            target = upload.target(rel)
            if target.is_file() and _same_bytes(target, upload.staged(rel)):
                upload.files.remove(rel)
                upload.unchanged.append(rel)
            elif target.exists():
                upload.replaces.append(rel)
        if not upload.files and not upload.unchanged:
            reasons = "; ".join(f"{n}: {r}" for n, r in upload.skipped) or "the archive is empty"
            raise UploadRejected(f"nothing to add ({reasons})")
        upload._journal("staged")
    except BaseException:
        shutil.rmtree(upload.folder, ignore_errors=True)
        raise
    return upload


def recover_uploads(uploads: Path) -> list[Path]:
    """Undo uploads a crash left between `apply` and `commit`; the course folders to re-index."""
    touched: list[Path] = []
    uploads = Path(uploads)
    for folder in sorted(uploads.iterdir()) if uploads.is_dir() else []:
        if not (folder / JOURNAL).is_file():
            shutil.rmtree(folder, ignore_errors=True)  # crashed while staging: the course was never touched
            continue
        upload = StagedUpload.load(folder)
        if upload.state in ("applying", "applied"):
            upload.rollback()
            touched.append(upload.course_root)
        else:
            shutil.rmtree(folder, ignore_errors=True)
    return touched


def _move(source: Path, target: Path) -> None:
    """Rename `source` to `target` (replacing it); across file systems, copy to a temporary name first."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(source, target)
    except OSError:
        partial = target.with_name(f".{target.name}.partial")
        shutil.copy2(source, partial)
        os.replace(partial, target)
        source.unlink()


def _stage(upload: StagedUpload, rel: str, source, shown: str) -> None:
    if rel in upload.files:
        raise UploadRejected(f"{shown}: the upload holds two files that land on {rel}")
    upload.target(rel)  # refuses a path that leaves the course folder
    staged = upload.staged(rel)
    staged.parent.mkdir(parents=True, exist_ok=True)
    with open(staged, "wb") as out:
        shutil.copyfileobj(source, out)
    upload.files.append(rel)


def _validate(path: Path, rel: str) -> None:
    """The file's content must be what its name says, and its loader must be able to read it."""
    suffix = path.suffix.lower()
    with open(path, "rb") as handle:
        head = handle.read(2048)  # enough to tell the type; a 100 MB PDF is not read twice here
    if not head:
        raise UploadRejected(f"{rel} is empty (0 bytes); upload the file with its content")
    looks = _looks_like(head)
    if suffix == ".pdf" and not head.lstrip().startswith(b"%PDF-"):
        raise UploadRejected(f"{rel} is not a PDF (its content looks like {looks}); upload the real PDF")
    if suffix == ".pptx" and not _is_office_zip(path):
        raise UploadRejected(f"{rel} is not a PowerPoint .pptx file (its content looks like {looks})")
    if suffix in _TEXT_TYPES and (b"\x00" in head or looks in ("a PDF", "a zip archive")):
        raise UploadRejected(f"{rel} should be text but its content looks like {looks}; check the file")
    try:
        load_file(SourceFile(path=path, rel=rel, kind="notes"))
    except LoaderError as exc:
        raise UploadRejected(f"{rel} cannot be read: {exc}") from None
    except Exception as exc:  # a loader's library failing on a damaged file is a bad file, not a crash
        raise UploadRejected(f"{rel} cannot be read ({type(exc).__name__}: {exc}); check the file") from None


def _is_office_zip(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return "[Content_Types].xml" in archive.namelist()


def _looks_like(head: bytes) -> str:
    stripped = head.lstrip().lower()
    if stripped.startswith(b"%pdf-"):
        return "a PDF"
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive"
    if stripped.startswith((b"<!doctype html", b"<html")) or b"<body" in stripped:
        return "HTML"
    if b"\x00" in head:
        return "binary data"
    return "text"


def _same_bytes(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    return _digest(a) == _digest(b)


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _folder(root: Path, folder: str) -> Path:
    folder = (folder or "").replace("\\", "/")
    parts = [p for p in PurePosixPath(folder).parts if p != "."]
    if folder.startswith("/") or any(p == ".." or safe_name(p) != p or p.startswith(".") for p in parts):
        raise UploadRejected(f"folder {folder!r} is not a plain folder name inside the course")
    destination = root.joinpath(*parts).resolve()
    if not destination.is_relative_to(root):
        raise UploadRejected(f"folder {folder!r} leaves the course folder")
    return destination


def _unpack(archive: Path, root: Path, destination: Path, cap_bytes: int, upload: StagedUpload) -> None:
    accepted = set(supported_extensions())
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            if len(members) > MAX_ARCHIVE_MEMBERS:
                raise UploadRejected(f"{archive.name} holds {len(members)} entries, more than {MAX_ARCHIVE_MEMBERS}")
            chosen: list[tuple[zipfile.ZipInfo, str]] = []
            for info in members:
                if info.is_dir():
                    continue
                rel, reason = _member_path(info, accepted)
                if reason:
                    upload.skipped.append((info.filename, reason))
                    continue
                chosen.append((info, rel))
            total = sum(info.file_size for info, _ in chosen)
            if total > cap_bytes:
                raise UploadRejected(f"{archive.name} unpacks to {total / 2**20:.2f} MB, over the "
                                     f"{cap_bytes / 2**20:g} MB upload cap")
            for info, rel in chosen:
                target_rel = (destination / rel).relative_to(root).as_posix()
                try:
                    with zf.open(info) as member:  # zipfile checks the CRC-32 when a member is read to its end
                        _stage(upload, target_rel, _Capped(member, info.file_size, info.filename), info.filename)
                except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
                    if isinstance(exc, UploadRejected):
                        raise
                    raise UploadRejected(f"{archive.name}: member {info.filename} is damaged ({exc}); "
                                         "nothing was changed, re-create the zip and upload it again") from None
                if upload.staged(target_rel).stat().st_size != info.file_size:
                    raise UploadRejected(f"{archive.name}: member {info.filename} is shorter than the archive "
                                         "declares; the archive is damaged, nothing was changed")
    except zipfile.BadZipFile as exc:
        raise UploadRejected(f"{archive.name} is a damaged zip archive ({exc}); nothing was changed") from None


def _member_path(info: zipfile.ZipInfo, accepted: set[str]) -> tuple[str, str]:
    """(safe relative path, "") for a member to unpack, or ("", reason it is skipped)."""
    if stat.S_ISLNK(info.external_attr >> 16):
        return "", "symbolic links are not unpacked"
    raw = info.filename.replace("\\", "/")
    parts = PurePosixPath(raw).parts
    if raw.startswith("/") or (parts and parts[0].endswith(":")) or ".." in parts:
        return "", "its path leaves the archive's folder"
    parts = [p for p in parts if p not in ("", ".")]
    if any(p.startswith(".") or p == "__MACOSX" for p in parts):
        return "", "hidden file"
    cleaned = [safe_name(p) for p in parts]
    if not cleaned or not all(cleaned):
        return "", "its name has no usable characters"
    suffix = PurePosixPath(cleaned[-1]).suffix.lower()
    if suffix not in accepted:
        return "", f"file type '{suffix or '(none)'}' is not indexed"
    return "/".join(cleaned), ""


class _Capped:
    """A zip member reader that refuses to yield more bytes than the archive declared."""

    def __init__(self, member, declared: int, name: str):
        self.member, self.left, self.name = member, declared, name

    def read(self, size: int = -1) -> bytes:
        data = self.member.read(1 << 20 if size < 0 else size)
        self.left -= len(data)
        if self.left < 0:
            raise UploadRejected(f"{self.name} unpacks to more than its declared size; the archive is damaged, "
                                 "nothing was changed")
        return data
