"""Students' thumbs-down answers (and instructors' corrections) become eval cases.

    cases = cases_from_chatlog(open_chatlog(settings), course="dl-intro")
    cases = cases_from_export("corrected.jsonl")       # an instructor-edited export
    write_dataset("eval/datasets/from-feedback.jsonl", cases)

A chat is turned into a case by `tutor.chatlog.eval_case`: the tutor's answer is the draft reference
and its citations the gold sources. That draft is only trusted where the student's complaint does
not contradict it: a chat rated "wrong" keeps no reference answer (grading against the answer the
student said was wrong would reward repeating it), one rated "bad source" keeps no gold sources, and
one rated "gave away homework" becomes a `homework` case. Such a case says what it is missing in
`needs`, so an instructor knows what to fill in; the export the instructor tab writes
(`ChatLog.export_eval_cases`), once corrected by hand, is read back by `cases_from_export`.
"""

from __future__ import annotations

from pathlib import Path

from eval.dataset import EvalCase, load_dataset, parse_case
from ingest.errors import TutorError


class FeedbackError(TutorError, FileNotFoundError):
    """There is no chat log (or export) to read feedback from."""


def case_from_chat(chat: dict) -> EvalCase:
    """One thumbs-down chat (a `ChatLog.thumbs_down` row) as an eval case, trusting only what the
    complaint leaves standing (see the module docstring)."""
    from tutor.chatlog import eval_case

    data = eval_case(chat)
    category = chat.get("category") or ""
    needs = []
    if category == "wrong":
        data["reference_answer"] = ""
        needs.append("reference_answer")
    if category == "bad source":
        data["gold_sources"] = []
        needs.append("gold_sources")
    if category == "gave away homework":
        data["type"] = "homework"
        data["reference_answer"] = ""
    if needs:
        data["needs"] = needs
    return parse_case(data, where=f"chat {chat['id']}")


def cases_from_chatlog(log, course: str | None = None, limit: int = 500) -> list[EvalCase]:
    """Every answer whose latest rating is a thumbs down, newest first, as eval cases."""
    return [case_from_chat(chat) for chat in log.thumbs_down(course=course, limit=limit)]


def open_chatlog(settings):
    """The deployment's chat log (`database_url`, else the data folder's SQLite file)."""
    from tutor.chatlog import ChatLog

    path = settings.chatlog_path()
    if not settings.database_url and not path.is_file():
        raise FeedbackError(
            f"no chat log at {path}: students' feedback is recorded by `tutor chat`; give --data-dir "
            "of the deployment, or --export FILE with cases exported from the instructor tab")
    return ChatLog.from_settings(settings)


def cases_from_export(path: str | Path) -> list[EvalCase]:
    """Cases from an exported (and perhaps instructor-corrected) JSONL file, checked like a dataset."""
    path = Path(path)
    if not path.is_file():
        raise FeedbackError(f"export file not found: {path}")
    return load_dataset(path)


def merge_cases(existing: list[EvalCase], new: list[EvalCase]) -> list[EvalCase]:
    """`existing` then the cases of `new` whose id is not already there (a re-run adds no duplicates)."""
    ids = {c.id for c in existing}
    return existing + [c for c in new if c.id not in ids]
