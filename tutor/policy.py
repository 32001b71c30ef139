"""The course's rules, applied around the model: out of scope, homework, prompt injection, leaks.

Each check is a plain function over retrieval hits and text, so it holds whatever the model does:
- `out_of_scope`: nothing retrieved is similar enough to the question (threshold calibrated on the
  shipped course's question set by `benchmarks/retrieval_quality.py`);
- `match_assignment`: the question names an assignment or closely matches its text;
- `looks_like_injection`: the question tries to override the rules;
- `solution_leak`: a draft answer overlaps a solution chunk (shared word 6-grams, or the solution's
  own numbers) beyond a threshold, and is then withheld.

The texts students read when the tutor declines or gives hints only are here too (`decline_text`,
`private_text`, `homework_text`), naming the course by `CourseConfig.display_title`. `tutor/integrity.py` applies the
rules with the course index at hand (and spots graded-work and private-data requests by their words).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from ingest.course import Assignment, CourseConfig
from ingest.lexical import lexical_tokens
from ingest.model import Chunk

# Calibrated with benchmarks/retrieval_quality.py on eval/datasets/dl-intro.jsonl (see its output).
OUT_OF_SCOPE_SIMILARITY = 0.30
HOMEWORK_SIMILARITY = 0.667
# A question at least this close to an assignment, and closer to it than to any teaching material,
# is about the assignment (lecture worked examples resemble problems, so similarity alone is not enough).
HOMEWORK_RELATIVE_FLOOR = 0.40
INJECTION_HOMEWORK_SIMILARITY = 0.40
LEAK_SHINGLE_SHARE = 0.12
LEAKNUMBERS = 2
# The title of graded work no `[[assignments]]` entry names ("write my project report").
GRADED_WORK_TITLE = "graded work"

_ASSIGNMENT_NAME = re.compile(
    r"\b(?:hw|homework|assignment|problem set|pset)\s*#?\s*(\d+)\b", re.I)
_INJECTION = re.compile(
    r"ignore (?:all |any |your |the |previous |prior |above )*(?:rules|instructions|policy|prompt)"
    r"|disregard (?:the |your |all )*(?:rules|instructions|policy)"
    r"|(?:print|show|reveal|give me|output) (?:the |your )?(?:full |complete |official )?"
    r"(?:solution|answer key|system prompt)"
    r"|you are now|act as (?:an? )?(?:unrestricted|different)|developer mode|jailbreak",
    re.I,
)
NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?!\w|\.\d)")


@dataclass(frozen=True)
class AssignmentMatch:
    id: str
    title: str
    path: str
    solution: str
    reason: str


def out_of_scope(top_similarity: float | None, threshold: float = OUT_OF_SCOPE_SIMILARITY) -> bool:
    return top_similarity is None or top_similarity < threshold


def looks_like_injection(text: str) -> bool:
    return bool(_INJECTION.search(text))


def match_assignment(question: str, assignments: list[Assignment], assignment_hits: list[tuple[Chunk, float]],
                     threshold: float = HOMEWORK_SIMILARITY, teaching_similarity: float = 1.0
                     ) -> AssignmentMatch | None:
    """The assignment the question is about: named (hw1, "homework 2"), near-verbatim in its text, or
    closer to it than to anything the course teaches.

    `assignment_hits` are the best assignment/solution chunks for the question with their dense
    similarity; `teaching_similarity` is the best similarity among the teaching material."""
    by_id = {a.id.lower(): a for a in assignments}
    named = _ASSIGNMENT_NAME.search(question)
    if named:
        for key in (f"hw{named.group(1)}", f"homework{named.group(1)}", f"assignment{named.group(1)}"):
            if key in by_id:
                a = by_id[key]
                return AssignmentMatch(a.id, a.title, a.path, a.solution, f"names {named.group(0)}")
    for chunk, similarity in assignment_hits:
        relative = similarity >= HOMEWORK_RELATIVE_FLOOR and similarity >= teaching_similarity
        if similarity < threshold and not relative:
            continue
        for a in assignments:
            if chunk.locator.path in (a.path, a.solution):
                return AssignmentMatch(a.id, a.title, a.path, a.solution,
                                       f"matches {chunk.locator.label()} (similarity {similarity:.2f})")
    return None


def shingles(text: str, n: int = 6) -> set[tuple[str, ...]]:
    words = lexical_tokens(text)
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def result_numbers(numbers: Iterable[str], public: set[str] | frozenset) -> set[str]:
    """Of a solution's `numbers`, those of two or more digits that the public text does not state:
    its results (the one rule, for the tutor's leak check and the eval's leak measure)."""
    return {x for x in numbers if x not in public and len(x.strip("-").replace(".", "")) >= 2}


def solution_only_numbers(solution: str, public_text: str) -> set[str]:
    """Numbers the solution states that the assignment and question do not: its results."""
    return result_numbers(NUMBER.findall(solution), public_numbers(public_text))


@dataclass(frozen=True)
class SolutionFacts:
    """What the leak check compares a draft with, worked out once per solution chunk."""

    path: str
    shingles: frozenset
    numbers: frozenset   # every number the solution states

    @classmethod
    def of(cls, chunk: Chunk) -> SolutionFacts:
        return cls(chunk.locator.path, frozenset(shingles(chunk.text)), frozenset(NUMBER.findall(chunk.text)))


def public_numbers(text: str) -> set[str]:
    """The numbers of text students already have (the assignments, the question)."""
    return set(NUMBER.findall(text))


def solution_leak(answer: str, solutions: list[Chunk] | list[SolutionFacts], public_text: str = "",
                  public: set[str] | None = None) -> str:
    """Why `answer` gives away a solution ('' when it does not): it shares enough of a solution's word
    6-grams, or states enough of the numbers only the solution has. `public` (the numbers of
    `public_text`) may be given worked out already, as `solutions` may be `SolutionFacts`."""
    answer_shingles = shingles(answer)
    answer_numbers = set(NUMBER.findall(answer))
    public = public_numbers(public_text) if public is None else public
    for solution in solutions:
        facts = solution if isinstance(solution, SolutionFacts) else SolutionFacts.of(solution)
        if facts.shingles and answer_shingles:
            shared = len(facts.shingles & answer_shingles) / min(len(facts.shingles), len(answer_shingles))
            if shared >= LEAK_SHINGLE_SHARE:
                return f"shares {shared:.0%} of its phrasing with {facts.path}"
        results = result_numbers(facts.numbers & answer_numbers, public)
        if len(results) >= LEAKNUMBERS:
            return f"states results of {facts.path} ({', '.join(sorted(results)[:4])})"
    return ""


def decline_text(course: CourseConfig) -> str:
    topics = [s.topic for s in course.schedule if s.topic]
    offer = ("I can help with the topics of this course, for example: " + "; ".join(topics[:6]) + "."
             if topics else "I can help with questions about this course's lectures, readings and demos.")
    return ("I can only answer questions about the material of "
            f"{course.display_title}, and I found nothing in it about this. " + offer)


def private_text(course: CourseConfig) -> str:
    """The reply to a question about someone else's grades or personal details."""
    return ("I can't look up or share other people's grades, submissions or personal details: they are "
            f"private, and all I can see is the material of {course.display_title}. For your own grades, ask "
            "the course staff. I'm happy to help with the material itself.")


def homework_text(match: AssignmentMatch, pointers: list[tuple[int, str]], problem: str = "") -> str:
    """The hints-only reply for a graded question: the policy, guiding questions, cited pointers.

    A match without an id is no known assignment (a request for graded work that `course.toml` does
    not list, or a leak caught with nothing matched: its title is a placeholder), so the reply names
    none rather than print an empty '()'."""
    aid, title = match.id.strip(), match.title.strip()
    if not aid:
        assignment = "a graded assignment"
    elif title and title != aid:
        assignment = f"**{title}** ({aid}), a graded assignment"
    else:
        assignment = f"**{aid}**, a graded assignment"
    lines = [
        f"This looks like {problem or 'part'} of {assignment}. Under the "
        "course's AI-use policy I won't solve it for you, but I can help you get there yourself.",
        "",
        "Some questions to guide you:",
        "- Which quantity are you asked to find, and which definition or formula from the lecture "
        "connects it to what the problem gives you?",
        "- Can you try the method on a smaller or simpler case first, and check each step?",
        "- How will you check your result (units, shapes, a numerical check, a limiting case)?",
    ]
    if pointers:
        lines += ["", "Material that teaches the idea you need:"]
        lines += [f"- {summary} [{n}]" for n, summary in pointers]
    lines += ["", "If you are stuck on a specific step, tell me what you tried and where it breaks."]
    return "\n".join(lines)
