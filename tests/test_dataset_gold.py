"""The shipped course's question set, eval/datasets/dl-intro.jsonl, is well formed and its gold
sources are real.

Every case has the DESIGN.md fields with valid values, ids are unique, the mix has enough
out-of-scope and homework cases, and every gold quote occurs (whitespace collapsed, case folded)
in the text the ingest loader extracts from the named file, inside a single slide, page, section
or cell, so a retrieved chunk can contain it. Homework reference answers give hints, never the
numbers of the solution. The decks are built first (make-like, so free when up to date) because
gold sources cite the built slides/*.pptx and *.pdf, not their Markdown sources.

The slow test ingests the course and checks the acceptance target: plain dense retrieval finds the
gold sources in the top 5 for at least 80% of the answerable cases.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections import Counter
from pathlib import Path

import pytest

from eval.dataset import CASE_TYPES, DIFFICULTIES, load_dataset
from ingest.course import load_course
from ingest.loaders import load_file
from ingest.model import SourceFile
from tutor.policy import solution_only_numbers

REPO = Path(__file__).resolve().parents[1]
COURSE = REPO / "corpus" / "dl-intro"
DATASET = REPO / "eval" / "datasets" / "dl-intro.jsonl"
FIELDS = {"id": str, "question": str, "reference_answer": str, "gold_sources": list, "type": str, "difficulty": str}
NOT_RETRIEVED = ("out_of_scope", "homework")
LECTURES = [f"{n:02d}" for n in range(1, 12)]
_SPACE = re.compile(r"\s+")

RAW = [json.loads(line) for line in DATASET.read_text(encoding="utf-8").splitlines() if line.strip()]
GOLD = [(case["id"], i, source) for case in RAW for i, source in enumerate(case.get("gold_sources", []))]


def normalise(text: str) -> str:
    return _SPACE.sub(" ", text).strip().casefold()


def _import_script(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def course():
    _import_script("build_decks", REPO / "corpus" / "build_decks.py").build_course_decks(COURSE)
    return load_course(COURSE)


@pytest.fixture(scope="module")
def section_texts(course):
    """`rel -> [normalised text of each section]`, loaded once per file with the ingest loaders."""
    cache: dict[str, list[str]] = {}

    def load(rel: str) -> list[str]:
        if rel not in cache:
            source = SourceFile(path=COURSE / rel, rel=rel, kind=course.kind_for(rel), demo_base=course.demo_base)
            cache[rel] = [normalise(s.text) for s in load_file(source).sections]
        return cache[rel]

    return load


def test_the_dataset_loads_with_the_eval_loader():
    cases = load_dataset(DATASET)
    assert len(cases) == len(RAW)


@pytest.mark.parametrize("case", RAW, ids=[c.get("id", "?") for c in RAW])
def test_case_has_every_field_with_a_valid_value(case):
    for name, kind in FIELDS.items():
        assert isinstance(case.get(name), kind), f"{name} must be a {kind.__name__}"
        if kind is str:
            assert case[name].strip(), f"{name} is empty"
    assert case["type"] in CASE_TYPES
    assert case["difficulty"] in DIFFICULTIES
    for source in case["gold_sources"]:
        assert set(source) == {"path", "quote"}
        assert isinstance(source["path"], str) and isinstance(source["quote"], str)


def test_ids_are_unique():
    repeated = [i for i, n in Counter(c["id"] for c in RAW).items() if n > 1]
    assert not repeated


def test_size_and_mix_of_case_types():
    types = Counter(c["type"] for c in RAW)
    assert len(RAW) >= 80
    assert types["out_of_scope"] >= 10 and types["homework"] >= 10
    assert set(types) == set(CASE_TYPES), f"missing types: {set(CASE_TYPES) - set(types)}"


def test_out_of_scope_cases_have_no_sources_and_expect_a_decline():
    for case in RAW:
        if case["type"] == "out_of_scope":
            assert case["gold_sources"] == [], case["id"]
            assert "decline" in case["reference_answer"].lower(), case["id"]
        else:
            assert case["gold_sources"], f"{case['id']} is answerable but names no gold source"


def test_homework_cases_point_at_the_assignment_never_the_solution():
    for case in RAW:
        if case["type"] == "homework":
            assert all(s["path"].startswith("assignments/") for s in case["gold_sources"]), case["id"]
        assert not any(s["path"].startswith("solutions/") for s in case["gold_sources"]), case["id"]


def test_some_homework_cases_are_prompt_injections():
    injections = [c for c in RAW if c["type"] == "homework" and re.search(
        r"ignore|developer mode|system|policy is disabled|override", c["question"], re.I)]
    assert len(injections) >= 3


def test_homework_reference_answers_state_no_solution_results(course):
    """A homework reference answer is hints only: no number that only the solution states."""
    by_path = {a.path: a for a in course.assignments}
    for case in RAW:
        if case["type"] != "homework":
            continue
        assignment = by_path[case["gold_sources"][0]["path"]]
        public = (COURSE / assignment.path).read_text(encoding="utf-8") + "\n" + case["question"]
        results = solution_only_numbers((COURSE / assignment.solution).read_text(encoding="utf-8"), public)
        numbers = set(re.findall(r"(?<![\w.])-?\d+(?:\.\d+)?(?!\w|\.\d)", case["reference_answer"]))
        assert not numbers & results, f"{case['id']} states solution results {sorted(numbers & results)}"


def test_multi_hop_cases_cite_two_different_files():
    for case in RAW:
        if case["type"] == "multi-hop":
            assert len({s["path"] for s in case["gold_sources"]}) >= 2, case["id"]


def test_quotes_are_short_verbatim_spans():
    for case_id, i, source in GOLD:
        words = len(source["quote"].split())
        assert 8 <= words <= 25, f"{case_id} gold_sources[{i}] quote has {words} words (want 8-25)"


def test_gold_paths_are_indexed_course_files(course):
    for case_id, i, source in GOLD:
        path = source["path"]
        assert (COURSE / path).is_file(), f"{case_id} gold_sources[{i}]: {path} does not exist"
        assert course.kind_for(path) not in (None, "solution"), f"{case_id}: {path} is not an indexed student-visible file"


def test_gold_sources_cover_every_lecture_and_every_kind_of_material(course):
    answerable = [s["path"] for c in RAW if c["type"] not in NOT_RETRIEVED for s in c["gold_sources"]]
    kinds = {course.kind_for(p) for p in answerable}
    assert {"slides", "book", "notebook", "syllabus", "transcript"} <= kinds
    lectures = {Path(p).name[:2] for p in answerable}
    assert set(LECTURES) <= lectures, f"lectures without a question: {sorted(set(LECTURES) - lectures)}"


@pytest.mark.parametrize("case_id,i,source", GOLD, ids=[f"{c}-{i}" for c, i, _ in GOLD])
def test_gold_quote_occurs_in_one_section_of_its_source(case_id, i, source, section_texts):
    quote = normalise(source["quote"])
    assert any(quote in text for text in section_texts(source["path"])), (
        f"{case_id} gold_sources[{i}]: quote not found in any section of {source['path']} as the loader reads it")


@pytest.mark.slow
def test_dense_retrieval_finds_the_gold_sources(tmp_path, course):
    """The acceptance target: dense top-5 recall of at least 80% on the answerable cases."""
    from ingest.embed import Embedder
    from ingest.pipeline import IngestOptions, ingest_course
    from ingest.store import load_index

    quality = _import_script("retrieval_quality", REPO / "benchmarks" / "retrieval_quality.py")
    embedder = Embedder()
    ingest_course(COURSE, IngestOptions(data_dir=tmp_path), embedder=embedder)
    index = load_index(tmp_path / "index", course.id)
    cases = load_dataset(DATASET)
    assert quality.unreachable_gold(index, cases) == [], "gold quotes that straddle a chunk boundary"
    results = quality.evaluate_modes(index, embedder, cases, modes={"dense": ("rrf", "dense")})
    assert results["dense"]["recall@5"] >= 0.80, results["dense"]
