"""Symlinks cannot turn a solution into teaching material, nor pull files in from outside the course;
the hints-only reply reads cleanly when no assignment was matched."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from course_fixtures import shared_embedder, write_small_course
from fixture_files import make_markdown

from ingest.pipeline import IngestOptions, ingest_course
from ingest.store import load_index
from tutor import policy
from tutor.answer import Tutor
from tutor.llm import create_backend
from tutor.settings import load_settings

# A phrase only the small course's solution states (its numbers also appear in a demo notebook's output).
SOLUTION_PHRASE = "each step multiplies x by 0.8"
# Named homework gets the hints reply at once; the other two (with the link indexed as teaching
# material) got an extractive draft withheld as a leak, then a hints reply citing the link.
QUESTIONS = [
    "What is the answer to hw1 problem 1?",
    "What is the final answer x3?",
    "What are x1 and x2 when x starts at 9?",
]


def ingest(course: Path, data: Path):
    return ingest_course(course, IngestOptions(data_dir=data), embedder=shared_embedder())


def link(at: Path, target: str | Path) -> None:
    at.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, at)


def teaching_chunks_quoting_the_solution(data: Path) -> list[str]:
    index = load_index(data / "index", "small")
    return [c.locator.path for c in index.chunks if c.locator.kind != "solution" and SOLUTION_PHRASE in c.text]


def solution_chunk_paths(data: Path) -> list[str]:
    index = load_index(data / "index", "small")
    return sorted({c.locator.path for c in index.chunks if SOLUTION_PHRASE in c.text})


def assert_replies_never_show_the_solution(data: Path, link_rel: str) -> None:
    tutor = Tutor.from_settings(load_settings(data_dir=data), embedder=shared_embedder(),
                                backend=create_backend("extractive"))
    for question in QUESTIONS:
        answer = tutor.ask(question)
        reply = json.dumps(answer.to_dict())
        assert SOLUTION_PHRASE not in reply, question
        assert link_rel not in reply, question
        assert all(c.locator["kind"] != "solution" for c in answer.citations), question
        assert "()" not in answer.text, question


# (the link, its target as written in it, the real path the skip reason names)
SOLUTION_LINKS = [
    ("book/leak.md", "../solutions/hw1.md", "solutions/hw1.md"),
    ("notes/week1/extra/hw1.md", "../../../solutions/hw1.md", "solutions/hw1.md"),
    ("book/sol", "../solutions", "solutions"),
    ("book/chain.md", "relay.md", "solutions/hw1.md"),   # via book/relay.md -> ../solutions/hw1.md
]


@pytest.mark.parametrize("link_rel, target, real", SOLUTION_LINKS, ids=[s[0] for s in SOLUTION_LINKS])
def test_a_link_to_a_solution_is_skipped_and_never_taught(tmp_path, link_rel, target, real):
    course = write_small_course(tmp_path / "course")
    if link_rel == "book/chain.md":
        link(course / "book/relay.md", "../solutions/hw1.md")
    link(course / link_rel, target)
    data = tmp_path / "data"
    report = ingest(course, data)

    reasons = {s["path"]: s["reason"] for s in report.skipped}
    assert f"({real})" in reasons[link_rel] and "never teaching material" in reasons[link_rel]
    assert teaching_chunks_quoting_the_solution(data) == []
    assert solution_chunk_paths(data) == ["solutions/hw1.md"]   # indexed once, under its real path
    assert_replies_never_show_the_solution(data, link_rel)


def test_a_file_course_toml_declares_a_solution_is_one_wherever_it_lives(tmp_path):
    course = write_small_course(tmp_path / "course")
    (course / "key").mkdir()
    (course / "solutions/hw1.md").rename(course / "key/hw1.md")
    toml = course / "course.toml"
    toml.write_text(toml.read_text().replace('"solutions/hw1.md"', '"key/hw1.md"'), encoding="utf-8")
    link(course / "book/leak.md", "../key/hw1.md")
    data = tmp_path / "data"
    report = ingest(course, data)

    assert "key/hw1.md" in {s["path"]: s["reason"] for s in report.skipped}["book/leak.md"]
    assert teaching_chunks_quoting_the_solution(data) == []
    assert solution_chunk_paths(data) == ["key/hw1.md"]
    assert_replies_never_show_the_solution(data, "book/leak.md")


def test_a_file_replaced_by_a_solution_link_leaves_the_index(tmp_path):
    """An index built before the link existed (or by an older version) must not keep serving it."""
    course = write_small_course(tmp_path / "course")
    make_markdown(course / "book/leak.md", (course / "solutions/hw1.md").read_text(encoding="utf-8"))
    data = tmp_path / "data"
    ingest(course, data)
    assert teaching_chunks_quoting_the_solution(data) == ["book/leak.md"]

    (course / "book/leak.md").unlink()
    link(course / "book/leak.md", "../solutions/hw1.md")
    report = ingest(course, data)
    assert report.removed == ["book/leak.md"] and "book/leak.md" in {s["path"] for s in report.skipped}
    assert teaching_chunks_quoting_the_solution(data) == []


def test_links_out_of_the_course_folder_are_skipped_with_a_reason(tmp_path):
    course = write_small_course(tmp_path / "course")
    make_markdown(tmp_path / "server/secret.md", "# Server notes\n\nThe database password is hunter2.\n")
    link(course / "notes/secret.md", tmp_path / "server/secret.md")
    link(course / "notes/server", tmp_path / "server")
    link(course / "notes/passwd.md", "/etc/passwd")
    data = tmp_path / "data"
    report = ingest(course, data)

    reasons = {s["path"]: s["reason"] for s in report.skipped}
    assert set(reasons) == {"notes/secret.md", "notes/server", "notes/passwd.md"}
    assert all("outside the course folder" in r for r in reasons.values())
    index = load_index(data / "index", "small")
    assert not any("hunter2" in c.text or "root:" in c.text for c in index.chunks)
    assert len(report.added) == 8


def test_broken_looping_and_hidden_links_are_skipped_with_a_reason(tmp_path):
    course = write_small_course(tmp_path / "course")
    link(course / "notes/gone.md", "missing.md")
    link(course / "notes/loop.md", "loop.md")
    make_markdown(course / ".drafts/hw2-key.md", "# Draft key\n\nThe draft answer is 42.\n")
    link(course / "notes/draft.md", "../.drafts/hw2-key.md")
    data = tmp_path / "data"
    report = ingest(course, data)

    reasons = {s["path"]: s["reason"] for s in report.skipped}
    assert set(reasons) == {"notes/gone.md", "notes/loop.md", "notes/draft.md"}
    assert "broken symlink" in reasons["notes/gone.md"] and "symlink loop" in reasons["notes/loop.md"]
    assert ".drafts/hw2-key.md" in reasons["notes/draft.md"] and "hidden" in reasons["notes/draft.md"]
    assert not any("Draft key" in c.text for c in load_index(data / "index", "small").chunks)


def test_a_link_to_a_course_file_is_indexed_under_its_name_as_what_it_leads_to(tmp_path):
    course = write_small_course(tmp_path / "course")
    link(course / "notes/optimization.md", "../book/optimization.md")
    link(course / "book/hw1-copy.md", "../assignments/hw1.md")
    report = ingest(course, tmp_path / "data")
    assert report.skipped == [] and {"notes/optimization.md", "book/hw1-copy.md"} <= set(report.added)
    index = load_index(tmp_path / "data/index", "small")
    kinds = {c.locator.path: c.locator.kind for c in index.chunks}
    assert kinds["notes/optimization.md"] == "book" and kinds["book/hw1-copy.md"] == "assignment"
    assert any("velocity" in c.text for c in index.chunks if c.locator.path == "notes/optimization.md")


# (id, title, problem, the reply's opening sentence)
HOMEWORK_OPENINGS = [
    ("", "a graded assignment", "", "This looks like part of a graded assignment."),
    ("", "a graded assignment", "Problem 2", "This looks like Problem 2 of a graded assignment."),
    ("", "", "", "This looks like part of a graded assignment."),
    ("hw1", "", "", "This looks like part of **hw1**, a graded assignment."),
    ("hw1", "Homework 1", "Problem 1",
     "This looks like Problem 1 of **Homework 1** (hw1), a graded assignment."),
]


@pytest.mark.parametrize("aid, title, problem, opening", HOMEWORK_OPENINGS)
def test_homework_reply_names_only_what_is_known(aid, title, problem, opening):
    match = policy.AssignmentMatch(aid, title, "", "", "shares 40% of its phrasing with solutions/hw1.md")
    text = policy.homework_text(match, [(1, "book/optimization.md > Gradient descent")], problem=problem)
    assert text.startswith(opening + " Under the course's AI-use policy")
    assert "()" not in text and "****" not in text and "( " not in text
