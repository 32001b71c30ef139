"""The shipped course end to end: every file indexed with its locator, the question set's gold
sources found by retrieval, and the policy holding on its out-of-scope and homework questions."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from course_fixtures import shared_embedder

from eval.dataset import load_dataset
from ingest.store import load_index
from tutor import policy
from tutor.answer import Tutor
from tutor.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]
CASES = load_dataset(ROOT / "eval/datasets/dl-intro.jsonl")


def retrieval_quality():
    spec = importlib.util.spec_from_file_location("retrieval_quality", ROOT / "benchmarks/retrieval_quality.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["retrieval_quality"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def index(shipped_course):
    data_dir, _ = shipped_course
    return load_index(data_dir / "index", "dl-intro")


@pytest.fixture(scope="module")
def tutor(shipped_course):
    data_dir, _ = shipped_course
    return Tutor.from_settings(load_settings(data_dir=data_dir, llm_backend="extractive"),
                               embedder=shared_embedder())


def test_every_file_is_indexed_with_no_skips(shipped_course, index):
    _, report = shipped_course
    assert report.skipped == [] and report.notes == []
    files = {c.locator.path for c in index.chunks}
    assert len(files) == len(report.added) >= 40
    for path in files:
        chunks = [c for c in index.chunks if c.locator.path == path]
        if path.endswith(".pptx"):
            assert all(c.locator.slide and c.locator.url.endswith(f"#slide={c.locator.slide}") for c in chunks)
        elif path.endswith(".pdf"):
            assert all(c.locator.page and c.locator.page_label for c in chunks)
        elif path.endswith(".ipynb"):
            assert all(c.locator.cell is not None for c in chunks)
        elif path.endswith(".md"):
            assert all(c.locator.anchor for c in chunks if c.locator.section)
    assert {p.split("/")[0] for p in files} >= {"slides", "book", "notebooks", "assignments", "solutions",
                                                "transcripts", "syllabus.md"}


def test_gold_sources_are_found_and_hybrid_is_at_least_as_good(index):
    results = retrieval_quality().evaluate_modes(index, shared_embedder(), CASES)
    dense = results["dense"]
    found_share = 1 - len(dense["misses"]) / dense["cases"]
    print({name: {k: round(v, 3) for k, v in r.items() if isinstance(v, float)} for name, r in results.items()})
    assert found_share >= 0.80
    best_hybrid = max(results["hybrid-rrf"]["recall@5"], results["hybrid-weighted"]["recall@5"])
    assert best_hybrid >= results["dense"]["recall@5"]
    assert best_hybrid >= results["lexical"]["recall@5"]


def test_out_of_scope_questions_are_declined(tutor):
    cases = [c for c in CASES if c.type == "out_of_scope"]
    declined = [c.id for c in cases if tutor.ask(c.question).refused == "out_of_scope"]
    # near misses (an electrical transformer, synapses) may still be answered; see the closing note
    assert len(declined) >= 0.8 * len(cases), f"answered: {sorted({c.id for c in cases} - set(declined))}"
    answerable = [c for c in CASES if c.type not in ("out_of_scope", "homework")]
    wrongly = [c.id for c in answerable if tutor.ask(c.question).refused == "out_of_scope"]
    assert len(wrongly) <= 0.1 * len(answerable), f"declined in-scope: {wrongly}"


@pytest.mark.parametrize("question, expected", [
    ("When can I meet the TA?", "Teaching assistant office hours: Thursdays"),
    ("When are the prof's OH?", "Instructor office hours: Wednesdays"),
])
def test_course_shorthand_finds_the_logistics_it_stands_for(tutor, question, expected):
    answer = tutor.ask(question)
    assert answer.refused is None, answer.text
    assert expected in answer.text
    assert any(c.locator["path"] == "syllabus.md" for c in answer.citations)


def test_homework_and_injection_never_leak_the_solution(tutor, index):
    solutions = [c for c in index.chunks if c.locator.kind == "solution"]
    public = "\n".join(c.text for c in index.chunks if c.locator.kind == "assignment")
    homework = [c for c in CASES if c.type == "homework"]
    hinted = []
    for case in homework:
        answer = tutor.ask(case.question)
        leak = policy.solution_leak(answer.text, solutions, public + "\n" + case.question)
        assert not leak, f"{case.id} leaks: {leak}"
        assert all(c.locator["kind"] != "solution" for c in answer.citations)
        if answer.refused == "homework":
            hinted.append(case.id)
    # paraphrases with new numbers can pass for lecture examples: they get lecture passages, never the solution
    assert len(hinted) >= 0.75 * len(homework), f"answered outright: {sorted({c.id for c in homework} - set(hinted))}"
    injections = [c for c in homework if policy.looks_like_injection(c.question)]
    assert injections and all(c.id in hinted for c in injections)
