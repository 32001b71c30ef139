"""Instructor uploads: files or a zip placed safely into the course folder, then re-indexed.

    placed = place_uploads([Path("/tmp/gradio/x/ch9.md")], course_root, folder="book", cap_bytes=...)
    try:
        report = ingest_course(course_root, options, ...)
    except Exception:
        placed.rollback()          # the folder is as it was; the old index never stopped serving
        raise
    placed.commit()

What is refused, and why: a file type no loader reads (the message lists the accepted ones), a file
or a zip's unpacked content over `max_upload_mb`, a name that would leave the course folder (`..`,
absolute paths, drive letters, symlinks inside a zip: "zip slip"), hidden files. Names are reduced
to letters, digits, `._-` and spaces, so what lands on disk is what the instructor sees listed.
"""

from __future__ import annotations

import shutil
import stat
import tempfile
import unicodedata
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ingest.errors import TutorError
from ingest.loaders import supported_extensions

ARCHIVE = ".zip"
MAX_ARCHIVE_MEMBERS = 5000


class UploadRejected(TutorError, ValueError):
    """An upload broke a rule (type, size, name); nothing of it was written."""


def accepted_extensions() -> list[str]:
    return [*supported_extensions(), ARCHIVE]


def safe_name(name: str) -> str:
    """One path component reduced to a harmless file name, or "" if nothing usable is left."""
    name = unicodedata.normalize("NFKC", name).replace("\x00", "")
    cleaned = "".join(ch if ch.isalnum() or ch in "._- " else "_" for ch in name).strip(" .")
    return "" if cleaned in ("", ".", "..") else cleaned


@dataclass
class PlacedFiles:
    """What an upload wrote into the course folder, with what it replaced, so it can be undone."""

    root: Path
    written: list[str] = field(default_factory=list)            # paths relative to the course folder
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name in the upload, reason)
    _backups: dict[str, Path] = field(default_factory=dict)     # rel -> copy of the replaced file
    _backup_dir: Path | None = None

    def _target(self, rel: str) -> Path:
        target = (self.root / rel).resolve()
        if not target.is_relative_to(self.root):
            raise UploadRejected(f"{rel!r} would be written outside the course folder")
        return target

    def write(self, rel: str, source) -> None:
        """Copy the readable binary `source` to `rel` (keeping a copy of any file it replaces)."""
        target = self._target(rel)
        if target.exists() and rel not in self._backups and rel not in self.written:
            if self._backup_dir is None:
                self._backup_dir = Path(tempfile.mkdtemp(prefix="tutor-upload-backup-"))
            backup = self._backup_dir / str(len(self._backups))
            shutil.copy2(target, backup)
            self._backups[rel] = backup
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as out:
            shutil.copyfileobj(source, out)
        if rel not in self.written:
            self.written.append(rel)

    def rollback(self) -> None:
        """Put the course folder back as it was before the upload."""
        for rel in self.written:
            target = self._target(rel)
            if rel in self._backups:
                shutil.copy2(self._backups[rel], target)
            else:
                target.unlink(missing_ok=True)
        self.written = []
        self.commit()

    def commit(self) -> None:
        """Keep what was written; forget the copies of replaced files."""
        if self._backup_dir is not None:
            shutil.rmtree(self._backup_dir, ignore_errors=True)
        self._backup_dir, self._backups = None, {}


def place_uploads(files: list[Path], course_root: Path, folder: str, cap_bytes: int) -> PlacedFiles:
    """Check every uploaded file, then write them under `course_root/folder` (a zip is unpacked there).

    A wrong type, an oversized file or a bad folder rejects the whole upload before anything is
    written; inside a zip, members of an unsupported type or with unsafe names are skipped with
    their reason, and the zip is rejected if what it unpacks to exceeds the cap.
    """
    root = Path(course_root).resolve()
    destination = _folder(root, folder)
    if not files:
        raise UploadRejected("no file was uploaded; choose files or a .zip first")
    accepted = accepted_extensions()
    plan: list[tuple[Path, str]] = []
    for path in files:
        path = Path(path)
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

    placed = PlacedFiles(root)
    try:
        for path, name in plan:
            if name.lower().endswith(ARCHIVE):
                _unpack(path, root, destination, cap_bytes, placed)
            else:
                with open(path, "rb") as source:
                    placed.write((destination / name).relative_to(root).as_posix(), source)
    except BaseException:
        placed.rollback()
        raise
    if not placed.written:
        placed.commit()
        reasons = "; ".join(f"{n}: {r}" for n, r in placed.skipped) or "the archive is empty"
        raise UploadRejected(f"nothing to add ({reasons})")
    return placed


def _folder(root: Path, folder: str) -> Path:
    folder = (folder or "").replace("\\", "/")
    parts = [p for p in PurePosixPath(folder).parts if p != "."]
    if folder.startswith("/") or any(p == ".." or safe_name(p) != p or p.startswith(".") for p in parts):
        raise UploadRejected(f"folder {folder!r} is not a plain folder name inside the course")
    destination = root.joinpath(*parts).resolve()
    if not destination.is_relative_to(root):
        raise UploadRejected(f"folder {folder!r} leaves the course folder")
    return destination


def _unpack(archive: Path, root: Path, destination: Path, cap_bytes: int, placed: PlacedFiles) -> None:
    accepted = set(supported_extensions())
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
                placed.skipped.append((info.filename, reason))
                continue
            chosen.append((info, rel))
        total = sum(info.file_size for info, _ in chosen)
        if total > cap_bytes:
            raise UploadRejected(f"{archive.name} unpacks to {total / 2**20:.2f} MB, over the "
                                 f"{cap_bytes / 2**20:g} MB upload cap")
        for info, rel in chosen:
            target_rel = (destination / rel).relative_to(root).as_posix()
            with zf.open(info) as member:
                placed.write(target_rel, _Capped(member, info.file_size, info.filename))


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
            raise UploadRejected(f"{self.name} unpacks to more than its declared size; the archive is damaged")
        return data
