"""Eval datasets: one question a line (JSONL), checked on load with errors that name the line.

    cases = load_dataset("eval/datasets/dl-intro.jsonl")

A case (DESIGN.md, "Eval dataset"):

    {"id": "optim-003", "question": "Why does momentum help SGD?",
     "reference_answer": "It averages past gradients, which damps oscillation ...",
     "gold_sources": [{"path": "book/04-optimization.md", "quote": "damps oscillation"}],
     "type": "conceptual", "difficulty": "medium"}

`gold_sources` may be empty (an out-of-scope question has none); a source's `quote` may be empty,
which makes it a path-only source. Keys beyond these are kept in `extra` and written back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ingest.errors import TutorError

CASE_TYPES = (
    "factual", "conceptual", "math", "code", "comparison", "multi-hop", "out_of_scope", "homework",
)
DIFFICULTIES = ("easy", "medium", "hard")
_KNOWN_KEYS = {"id", "question", "reference_answer", "gold_sources", "type", "difficulty"}


class DatasetError(TutorError, ValueError):
    """An eval dataset file is missing or has a malformed case; the message names file and line."""


@dataclass(frozen=True)
class GoldSource:
    """A passage that answers the question: a course file and a verbatim quote from it."""

    path: str
    quote: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "quote": self.quote}


@dataclass(frozen=True)
class EvalCase:
    id: str
    question: str
    type: str
    reference_answer: str = ""
    gold_sources: tuple[GoldSource, ...] = ()
    difficulty: str = "medium"
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def answerable(self) -> bool:
        """In scope: the tutor should answer it (homework is in scope, with hints only)."""
        return self.type != "out_of_scope"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "question": self.question, "reference_answer": self.reference_answer,
            "gold_sources": [g.to_dict() for g in self.gold_sources], "type": self.type,
            "difficulty": self.difficulty, **self.extra,
        }


def parse_case(data: Any, where: str = "case") -> EvalCase:
    """One case from its decoded JSON; `where` (e.g. `file.jsonl:12`) prefixes every error."""
    if not isinstance(data, dict):
        raise DatasetError(f"{where}: a case must be a JSON object, got {type(data).__name__}")
    for key in ("id", "question", "type"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise DatasetError(f"{where}: `{key}` must be a non-empty string")
    case_type = data["type"].strip()
    if case_type not in CASE_TYPES:
        raise DatasetError(f"{where}: type {case_type!r} is unknown; accepted: {', '.join(CASE_TYPES)}")
    difficulty = str(data.get("difficulty", "medium")).strip().lower()
    if difficulty not in DIFFICULTIES:
        raise DatasetError(
            f"{where}: difficulty {data.get('difficulty')!r} is unknown; accepted: {', '.join(DIFFICULTIES)}")
    reference = data.get("reference_answer", "")
    if not isinstance(reference, str):
        raise DatasetError(f"{where}: `reference_answer` must be a string")
    raw_sources = data.get("gold_sources", [])
    if not isinstance(raw_sources, list):
        raise DatasetError(f"{where}: `gold_sources` must be a list of {{path, quote}} objects")
    gold = []
    for i, source in enumerate(raw_sources):
        if not isinstance(source, dict) or not isinstance(source.get("path"), str) or not source["path"].strip():
            raise DatasetError(f"{where}: gold_sources[{i}] needs a non-empty `path` (relative to the course folder)")
        quote = source.get("quote", "")
        if not isinstance(quote, str):
            raise DatasetError(f"{where}: gold_sources[{i}].quote must be a string")
        gold.append(GoldSource(path=source["path"].strip(), quote=quote))
    return EvalCase(
        id=data["id"].strip(), question=data["question"].strip(), type=case_type, reference_answer=reference,
        gold_sources=tuple(gold), difficulty=difficulty,
        extra={k: v for k, v in data.items() if k not in _KNOWN_KEYS},
    )


def load_dataset(path: str | Path) -> list[EvalCase]:
    """Every case of a JSONL file, in order; blank lines and `//` comment lines are skipped."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"eval dataset not found: {path} (give a JSONL file, one case a line)")
    cases: list[EvalCase] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("//"):
            continue
        where = f"{path}:{number}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        case = parse_case(data, where)
        if case.id in seen:
            raise DatasetError(f"{where}: id {case.id!r} is already used on line {seen[case.id]}; ids must be unique")
        seen[case.id] = number
        cases.append(case)
    if not cases:
        raise DatasetError(f"eval dataset {path} has no cases")
    return cases


def write_dataset(path: str | Path, cases: list[EvalCase]) -> Path:
    """Write cases as JSONL (UTF-8, one case a line)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for case in cases:
            fh.write(json.dumps(case.to_dict(), ensure_ascii=False) + "\n")
    return path
