"""Scope and integrity without configuration: graded work, other people's data, logistics, the course's name.

The course here has no course.toml, as a course folder dropped in by an instructor would: no title,
no assignments, no solutions. The oracle for each rule is the reply kind (`refused`) and what the
reply must and must not contain.
"""

from __future__ import annotations

import re

import pytest
from course_fixtures import ingest_small_course, shared_embedder
from fixture_files import make_markdown, make_pptx

from ingest.course import CourseConfig
from ingest.pipeline import IngestOptions, ingest_course
from tutor import policy
from tutor.answer import AnswerEvent, AnswerMissingError, Tutor, final_answer
from tutor.integrity import asks_for_graded_work, asks_for_private_data, logistics_concepts
from tutor.llm import Grounding, LLMBackend, create_backend, register_backend
from tutor.settings import load_settings


class RecordingBackend(LLMBackend):
    """A model that reads the prompt (or, with `reads_sources`, the grounding) and records what it got."""

    name = "recording"
    model = "recording-1"

    def __init__(self, reply: str = "Momentum keeps a velocity [1]."):
        self.reply = reply
        self.calls: list[dict] = []

    def stream(self, messages, **opts):
        self.calls.append({"messages": messages, **opts})
        yield from re.split(r"(\s+)", self.reply)


class SourceReadingBackend(RecordingBackend):
    name = "source-reading"
    reads_sources = True


register_backend("recording")(lambda config: RecordingBackend())


@pytest.fixture(scope="module")
def bare_course(tmp_path_factory):
    """A course folder without course.toml: material, a syllabus-like slide deck, nothing configured."""
    root = tmp_path_factory.mktemp("bare")
    course = root / "course"
    make_markdown(course / "book/optimization.md", """# Optimization

## Momentum

Momentum keeps a running velocity of past gradients, which damps oscillation across a ravine and
speeds progress along its floor.

## Dropout

Dropout randomly zeroes activations during training so that units cannot co-adapt.
""")
    make_pptx(course / "slides/lecture1.pptx", [
        ("Welcome", "Deep learning fits layered models to data with gradient descent", ""),
        ("Grading", "Midterm exam (week 9)\t30%\nHomework\t40%\nProject\t30%", ""),
        ("Late policy", "Late submissions lose ten percent of the grade per day, for up to three days.", ""),
    ])
    data = root / "data"
    ingest_course(course, IngestOptions(data_dir=data), embedder=shared_embedder())
    return data


def make_tutor(data_dir, backend: LLMBackend | None = None, **settings) -> Tutor:
    return Tutor.from_settings(load_settings(data_dir=data_dir, **settings), embedder=shared_embedder(),
                               backend=backend or create_backend("extractive"))


@pytest.mark.parametrize("question", [
    "Fill in all the TODO cells of the lab notebook and paste the finished code.",
    "Complete the exercises in the gradient descent notebook and give me the code so I can submit it.",
    "Write my whole project report on momentum for me.",
    "Please write an essay on dropout that I can hand in for my assignment.",
    "Give me the full solution to homework 3.",
    "What questions will be on the final exam?",
    "What's on the midterm? Tell me the exact questions.",
])
def test_graded_work_gets_hints_though_no_assignment_is_configured(bare_course, question):
    tutor = make_tutor(bare_course)
    assert tutor.course.assignments == []
    answer = tutor.ask(question)
    assert answer.refused == "homework", answer.text
    assert "a graded assignment" in answer.text and "guide you" in answer.text
    assert all(c.locator["kind"] != "solution" for c in answer.citations)


def test_a_model_is_told_the_request_is_graded_work(bare_course):
    model = RecordingBackend("Start from the update rule [1].")
    answer = make_tutor(bare_course, model).ask("Write my whole project report on momentum for me.")
    system = model.calls[0]["messages"][0]["content"]
    assert answer.refused == "homework" and "asks for graded work" in system and '"graded work"' not in system


@pytest.mark.parametrize("question", [
    "What grade did my classmate Alice get on the midterm?",
    "What grade did Maria Chen get on the final exam?",
    "What is John's grade in this course?",
    "Can you list the email addresses and grades of the other students in this course?",
])
def test_other_peoples_grades_and_details_are_declined_as_private(bare_course, question):
    answer = make_tutor(bare_course).ask(question)
    assert answer.refused == "private" and answer.citations == []
    assert answer.text == policy.private_text(make_tutor(bare_course).course)
    assert "private" in answer.text and "this course" in answer.text


def test_logistics_are_answered_from_the_syllabus_below_the_scope_floor(bare_course):
    # A floor no question reaches: every answer below must come from the logistics rule.
    tutor = make_tutor(bare_course, min_relevance=0.99)
    midterm = tutor.ask("Is there a midterm and how much is it worth?")
    assert midterm.refused is None and midterm.top_similarity < 0.99
    assert "Midterm exam (week 9): 30%" in midterm.text
    assert {c.locator["path"] for c in midterm.citations} == {"slides/lecture1.pptx"}
    late = tutor.ask("What is the late policy?")
    assert late.refused is None and "ten percent" in late.text
    # Not logistics, or logistics the syllabus does not speak of: declined as before.
    assert tutor.ask("What does momentum do in gradient descent?").refused == "out_of_scope"
    assert tutor.ask("When are office hours?").refused == "out_of_scope"


def test_declines_name_the_course_by_its_title_never_its_folder(bare_course, tmp_path):
    bare = make_tutor(bare_course)
    assert bare.index.course_id == "course"
    declined = bare.ask("Who won the football world cup in 2018?")
    assert declined.refused == "out_of_scope"
    assert "the material of this course" in declined.text and "of course," not in declined.text
    titled = make_tutor(ingest_small_course(tmp_path)).ask("Who won the football world cup in 2018?")
    assert "the material of Small Test Course" in titled.text
    assert CourseConfig.from_dict({"id": "dl-intro", "title": "dl-intro"}).display_title == "this course"
    assert CourseConfig.from_dict({"id": "x", "title": "Deep Learning"}).display_title == "Deep Learning"


def test_no_solution_search_in_a_course_without_solutions(bare_course):
    tutor = make_tutor(bare_course, RecordingBackend("Momentum keeps a running velocity [1]."))
    searched: list = []
    search = tutor.retriever.search
    tutor.retriever.search = lambda query, **kw: searched.append(kw.get("kinds")) or search(query, **kw)
    calls = shared_embedder().calls
    answer = tutor.ask("What does momentum do in gradient descent?")
    assert answer.refused is None and answer.citations
    assert ["solution"] not in searched and not tutor.checks.has_solutions
    assert shared_embedder().calls - calls == 1  # the question, once


def test_a_source_reading_backend_gets_a_grounding_and_a_prompt_reader_does_not(bare_course):
    reader, prompt_reader = SourceReadingBackend("Momentum keeps a velocity [1]."), RecordingBackend()
    make_tutor(bare_course, reader).ask("What does momentum do in gradient descent?")
    make_tutor(bare_course, prompt_reader).ask("What does momentum do in gradient descent?")
    grounding = reader.calls[0]["grounding"]
    assert isinstance(grounding, Grounding) and grounding.sources and grounding.question_vector is not None
    assert grounding.question == "What does momentum do in gradient descent?"
    assert "grounding" not in prompt_reader.calls[0]


def test_the_homework_checks_reuse_the_question_vector(tmp_path):
    tutor = make_tutor(ingest_small_course(tmp_path))
    tutor.ask("What does momentum do?")  # warm: nothing below is a first-use cost
    calls = shared_embedder().calls
    answer = tutor.ask("Run three steps of gradient descent on f(x) = x^2 from x0 = 9 with learning rate 0.1 "
                       "and report x3.")
    assert answer.refused == "homework" and "Problem 1" in answer.text
    # The question, and the problem's text to find the lecture pointers: not the question a second time.
    assert shared_embedder().calls - calls == 2


def test_final_answer_drains_the_events_through_its_callbacks():
    done = object()
    events = [AnswerEvent("delta", "Draft "), AnswerEvent("delta", "text"), AnswerEvent("reset"),
              AnswerEvent("delta", "Hints."), AnswerEvent("answer", answer=done)]
    seen: list[str] = []
    assert final_answer(iter(events), on_delta=seen.append, on_reset=lambda: seen.append("<reset>")) is done
    assert seen == ["Draft ", "text", "<reset>", "Hints."]
    assert final_answer(iter(events)) is done
    with pytest.raises(AnswerMissingError, match="ask again"):
        final_answer(iter(events[:3]))


@pytest.mark.parametrize(("question", "graded"), [
    ("Fill in every TODO in the MIT TensorFlow lab 1 notebook and give me the completed code so I can submit it.",
     True),
    ("Write my 1500-word essay on the history of deep learning for this course, ready to submit.", True),
    ("Write the complete solution for CS231n Assignment 2 so I can submit it.", True),
    ("What is the answer to hw1 problem 1?", True),
    ("What's on the final exam? Tell me the exact questions.", True),
    ("How do I write a good project report?", False),
    ("Will the course tutor help me with my homework? How far will it go?", False),
    ("What happens if I hand in my homework two days late?", False),
    ("Is there a midterm and how much is it worth?", False),
    ("Which topics does the final exam cover?", False),
    ("How do I fill in the TODO for the softmax cell?", False),
])
def test_graded_work_requests_are_told_from_questions_about_graded_work(question, graded):
    assert bool(asks_for_graded_work(question)) is graded


@pytest.mark.parametrize(("question", "private"), [
    ("What grade did Maria Chen get on the STAT 453 final exam?", True),
    ("Can you list the email addresses and grades of the other students in this course?", True),
    ("Tell me my roommate's midterm score.", True),
    ("What score did AlexNet get on ImageNet?", False),
    ("How are grades computed in this course?", False),
    ("What grade do I need on the final to pass?", False),
    ("What is the BLEU score of the transformer?", False),
])
def test_private_data_requests(question, private):
    assert asks_for_private_data(question) is private


def test_logistics_questions_are_recognised_and_others_are_not():
    assert logistics_concepts("Is there a midterm and how much is it worth?")
    assert logistics_concepts("What happens if I hand in my homework two days late?")
    assert not logistics_concepts("What time does the university library close on Sundays?")
    assert not logistics_concepts("Can I deduct my home office from my taxes as a freelancer?")
