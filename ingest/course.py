"""A course folder and its optional `course.toml`: which files to index, with which kind.

`course.toml` (every key optional):

    id = "dl-intro"                 # default: the folder name
    title = "Introduction to Deep Learning"
    demo_base = "https://colab.research.google.com/github/ORG/REPO/blob/main/corpus/dl-intro/"
    policy = "...the AI-use policy in the instructor's words..."

    [[sources]]                     # default: every supported file, kind inferred
    glob = "slides/*.pptx"
    kind = "slides"

    [[schedule]]                    # lecture dates -> topics, for "taught so far"
    date = 2026-09-08
    lecture = 1
    topic = "Supervised learning and loss functions"
    sources = ["slides/01-*", "book/01-*"]

    [[assignments]]
    id = "hw1"
    title = "Gradient descent by hand"
    path = "assignments/hw1.md"
    solution = "solutions/hw1.md"
    due = 2026-09-29

    [quotas]                        # limits on asking; 0 or absent means no limit
    questions_per_hour = 20         # per student (a chat session, or an API key's owner)
    questions_per_day = 100
    concurrent_answers_per_key = 4  # answers one API key may have in progress at once

Without `[[sources]]`, a file's kind comes from its folder (`solutions/` -> solution, `slides/` ->
slides, ...) and then its type (`.ipynb` -> notebook, `.vtt` -> transcript, ...). Anything under a
folder named `solutions`, and any file an assignment names as its `solution`, is always a `solution`,
whatever the globs say.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path, PurePosixPath

from ingest.errors import ConfigError, CourseNotFoundError
from ingest.model import KINDS

_FOLDER_KINDS = {
    "solutions": "solution", "solution": "solution",
    "slides": "slides", "lectures": "slides", "decks": "slides",
    "book": "book", "textbook": "book", "chapters": "book",
    "notes": "notes", "notebooks": "notebook", "demos": "notebook",
    "transcripts": "transcript", "videos": "transcript",
    "assignments": "assignment", "homework": "assignment", "hw": "assignment",
    "syllabus": "syllabus", "web": "web",
}
_SUFFIX_KINDS = {
    ".ipynb": "notebook", ".vtt": "transcript", ".srt": "transcript", ".pptx": "slides",
    ".pdf": "notes", ".md": "notes", ".markdown": "notes", ".html": "web", ".htm": "web",
    ".txt": "slides",
}
_SKIP_DIRS = {".git", ".ipynb_checkpoints", "__pycache__", ".venv", "node_modules"}
_REPOSITORY_PAPERS = re.compile(
    r"^(licen[cs]e|copying|contributing|code_of_conduct|changelog|authors)(-(?-i:[A-Z0-9.]+))?(\.(md|txt|rst))?$", re.I)


@dataclass(frozen=True)
class SourceRule:
    glob: str
    kind: str


@dataclass(frozen=True)
class Lecture:
    date: dt.date
    lecture: int
    topic: str
    sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class Assignment:
    id: str
    title: str
    path: str = ""
    solution: str = ""
    due: dt.date | None = None


@dataclass(frozen=True)
class Quotas:
    """How much one student (or one API key) may ask; 0 means no limit."""

    questions_per_hour: int = 0
    questions_per_day: int = 0
    concurrent_answers_per_key: int = 0

    def __post_init__(self):
        for name, value in vars(self).items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"course.toml [quotas] {name} = {value!r}: give a whole number, 0 for no limit")


@dataclass
class CourseConfig:
    root: Path
    id: str
    title: str
    policy: str = ""
    demo_base: str = ""
    sources: list[SourceRule] = field(default_factory=list)
    schedule: list[Lecture] = field(default_factory=list)
    assignments: list[Assignment] = field(default_factory=list)
    demos: dict[str, dict] = field(default_factory=dict)  # notebook path -> {"title", "launch_url"}, found at ingest
    quotas: Quotas = field(default_factory=Quotas)

    def to_dict(self) -> dict:
        """The course as the index stores it (`course.json`); `from_dict` reads it back."""
        return {
            "id": self.id, "title": self.title, "policy": self.policy, "demo_base": self.demo_base,
            "root": str(self.root),
            "sources": [{"glob": r.glob, "kind": r.kind} for r in self.sources],
            "schedule": [{"date": s.date.isoformat(), "lecture": s.lecture, "topic": s.topic,
                          "sources": list(s.sources)} for s in self.schedule],
            "assignments": [{"id": a.id, "title": a.title, "path": a.path, "solution": a.solution,
                             "due": a.due.isoformat() if a.due else None} for a in self.assignments],
            "demos": self.demos,
            "quotas": vars(self.quotas),
        }

    @classmethod
    def from_dict(cls, data: dict) -> CourseConfig:
        return cls(
            root=Path(data.get("root", ".")), id=data["id"], title=data.get("title") or data["id"],
            policy=data.get("policy", ""), demo_base=data.get("demo_base", ""),
            sources=[SourceRule(r["glob"], r["kind"]) for r in data.get("sources", [])],
            schedule=[Lecture(date=_as_date(s["date"]), lecture=int(s["lecture"]), topic=s.get("topic", ""),
                              sources=tuple(s.get("sources", ()))) for s in data.get("schedule", [])],
            assignments=[Assignment(id=a["id"], title=a.get("title", a["id"]), path=a.get("path", ""),
                                    solution=a.get("solution", ""), due=_as_date(a["due"]) if a.get("due") else None)
                         for a in data.get("assignments", [])],
            demos=dict(data.get("demos", {})),
            quotas=Quotas(**data.get("quotas", {})),
        )

    @property
    def display_title(self) -> str:
        """The title students read: course.toml's, else "this course" (an id or a folder's name is no
        title: "the material of course" reads as a mistake)."""
        title = self.title.strip()
        return title if title and title not in (self.id, self.root.name) else "this course"

    def lectures_of(self, rel: str) -> list[Lecture]:
        """Every scheduled lecture whose source globs match `rel` (a file may serve several)."""
        return [lecture for lecture in self.schedule if any(_glob_match(rel, g) for g in lecture.sources)]

    def demos_of_lecture(self, lecture: Lecture) -> list[str]:
        """The demo notebooks a lecture's source globs name."""
        return [path for path in self.demos if any(_glob_match(path, g) for g in lecture.sources)]

    def kind_for(self, rel: str) -> str | None:
        """The kind of the file at `rel`, or None when the sources rules leave it out."""
        parts = PurePosixPath(rel).parts
        if any(p.lower() in ("solutions", "solution") for p in parts[:-1]):
            return "solution"
        if PurePosixPath(rel) in {PurePosixPath(a.solution) for a in self.assignments if a.solution}:
            return "solution"
        if self.sources:
            for rule in self.sources:
                if _glob_match(rel, rule.glob):
                    return rule.kind
            return None
        return infer_kind(rel)

    def lecture_of(self, rel: str) -> Lecture | None:
        """The (first) scheduled lecture whose source globs match `rel`, if any."""
        return next(iter(self.lectures_of(rel)), None)

    def unmatched_globs(self, rels: list[str]) -> list[str]:
        """Source globs that match no file: usually a build step (e.g. `make corpus`) not yet run."""
        return [r.glob for r in self.sources if not any(_glob_match(x, r.glob) for x in rels)]


def infer_kind(rel: str) -> str:
    path = PurePosixPath(rel)
    for part in reversed(path.parts[:-1]):
        if part.lower() in _FOLDER_KINDS:
            return _FOLDER_KINDS[part.lower()]
    if "syllabus" in path.stem.lower():
        return "syllabus"
    return _SUFFIX_KINDS.get(path.suffix.lower(), "notes")


def _glob_match(rel: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(rel, pattern)


def load_course(course_dir: str | Path) -> CourseConfig:
    """Read `course_dir/course.toml` if present; fail with one line if the folder is missing/empty."""
    root = Path(course_dir).expanduser()
    if not root.is_dir():
        raise CourseNotFoundError(f"course folder not found: {root} (give the folder that holds the course files)")
    if not any(root.iterdir()):
        raise CourseNotFoundError(f"course folder is empty: {root} (add slides, notes or notebooks to it first)")
    root = root.resolve()
    toml_path = root / "course.toml"
    data: dict = {}
    if toml_path.is_file():
        try:
            data = tomllib.loads(toml_path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{toml_path} is not valid TOML: {exc}; fix the file or remove it") from exc
    try:
        return _parse(root, data)
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{toml_path}: {exc}") from exc


def _parse(root: Path, data: dict) -> CourseConfig:
    sources = []
    for rule in data.get("sources", []):
        kind = rule.get("kind", "")
        if kind not in KINDS:
            raise ConfigError(
                f"course.toml source {rule.get('glob')!r} has kind {kind!r}; accepted: {', '.join(KINDS)}"
            )
        sources.append(SourceRule(glob=rule["glob"], kind=kind))
    schedule = [
        Lecture(
            date=_as_date(item["date"]), lecture=int(item.get("lecture", i + 1)),
            topic=str(item.get("topic", "")), sources=tuple(item.get("sources", ())),
        )
        for i, item in enumerate(data.get("schedule", []))
    ]
    assignments = [
        Assignment(
            id=str(item["id"]), title=str(item.get("title", item["id"])), path=item.get("path", ""),
            solution=item.get("solution", ""), due=_as_date(item["due"]) if "due" in item else None,
        )
        for item in data.get("assignments", [])
    ]
    return CourseConfig(
        root=root, id=str(data.get("id", root.name)), title=str(data.get("title", root.name)),
        policy=str(data.get("policy", "")).strip(), demo_base=str(data.get("demo_base", "")),
        sources=sources, schedule=sorted(schedule, key=lambda s: s.date), assignments=assignments,
        quotas=_quotas(data.get("quotas", {})),
    )


def _quotas(table: dict) -> Quotas:
    accepted = [f.name for f in fields(Quotas)]
    unknown = sorted(set(table) - set(accepted))
    if unknown:
        raise ConfigError(f"course.toml [quotas] has unknown key {unknown[0]!r}; accepted: {', '.join(accepted)}")
    return Quotas(**table)


def _as_date(value) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError as exc:
        raise ConfigError(f"date {value!r} is not YYYY-MM-DD") from exc


def walk_course(root: Path) -> list[Path]:
    """Every file under `root` (sorted, what `left_out` names skipped), symlinks included: the caller
    decides what a symlink means (where it really leads)."""
    found = []
    for path in sorted(root.rglob("*")):
        if left_out(path.relative_to(root).as_posix()):
            continue
        if path.is_file() or path.is_symlink():
            found.append(path)
    return found


def left_out(rel: str) -> bool:
    """Whether the course walk skips `rel`: hidden files and folders, build caches, course.toml, and a
    repository's own papers (licence, contributing guide, changelog), which are not course material."""
    parts = PurePosixPath(rel).parts
    return (any(p in _SKIP_DIRS or p.startswith(".") for p in parts) or parts[-1:] == ("course.toml",)
            or bool(_REPOSITORY_PAPERS.match(parts[-1] if parts else "")))
