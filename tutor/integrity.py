"""The course's rules applied to one question and its draft answer, with the course index at hand.

Each check works without any configuration, so a course folder with no `course.toml` is protected
too; what `course.toml` adds (named assignments, their solutions) makes the checks more precise.

    checks = IntegrityChecks(index, retriever)
    asks_for_private_data("What grade did Maria Chen get?")           # True: declined, refused="private"
    checks.homework(question, question_vector, teaching_similarity)    # AssignmentMatch | None: hints only
    checks.logistics(question, question_vector)                        # syllabus hits for a logistics question
    checks.assignment_problem(match, question, question_vector)        # the assignment chunk it is about
    checks.leak(draft, question)                                       # why a draft gives a solution away, or ''

The texts students read and the similarity thresholds are in `tutor/policy.py`.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

import numpy as np

from ingest.model import Chunk
from ingest.sentences import logistics_heading
from ingest.store import CourseIndex
from tutor import policy
from tutor.retrieve import Hit, Retriever

# A request to hand over graded work: complete a notebook's TODOs and paste the code, write my
# report/essay/project, the full solution to homework N, what is on the exam.
_REQUEST = (r"(?:^|[.!?;]\s*|\b(?:please|pls|can you|could you|would you|will you|i need you to|i want you to"
            r"|just|now)\s+)")
_GRADED_WORK = [
    ("asks for the finished code of a lab or notebook exercise", re.compile(
        _REQUEST + r"(?:complete|fill(?: in| out)?|finish|do|solve|implement|answer)\b[^.?!]{0,80}"
        r"\b(?:todos?|exercises?|labs?|notebooks?|assignments?|homework|problem sets?|psets?|cells?)\b[^.?!]{0,80}"
        r"(?:\b(?:paste|give me|send me|show me|submit|hand in|for me)\b"
        r"|\b(?:finished|completed|complete|full|whole) code\b)",
        re.I)),
    ("asks for a report, essay or project to hand in", re.compile(
        _REQUEST + r"(?:write|draft|compose|produce|generate|do)\b[^.?!]{0,30}\b(?:my|our|an?|the|this)\b[^.?!]{0,50}"
        r"\b(?:report|essay|paper|project|thesis|write-?up|assignment|homework)\b", re.I)),
    ("asks for the full solution to graded work", re.compile(
        r"\b(?:full|complete|whole|entire|worked|official|final|exact)\s+(?:solutions?|answers?|answer key|code)\b"
        r"[^.?!]{0,30}\b(?:for|to|of)\b[^.?!]{0,30}\b(?:homework|hw\s*\d|assignments?|problem sets?|psets?|labs?|"
        r"exams?|quiz(?:zes)?|midterms?|projects?)\b"
        r"|\b(?:solutions?|answers?)\s+(?:to|for|of)\s+(?:the\s+)?(?:homework|hw\s*\d|assignment|problem set|pset|"
        r"exam|quiz|midterm|final)\b|\banswer key\b", re.I)),
    ("asks what is on an exam", re.compile(
        r"\b(?:what(?:'s|’s| is| are| will be)|which questions?|(?:exact|actual) questions?"
        r"|questions? (?:will be|are))"
        r"\s+(?:\w+\s+){0,3}?on the (?:final |midterm |next )?(?:exam|quiz|midterm|final)\b"
        r"|\bexam questions\b|\b(?:questions|answers) (?:of|on|in|to|for) the (?:final |midterm )?(?:exam|quiz)\b",
        re.I)),
]

# Someone else's grades, scores or contact details: only the course staff may see them.
_PRIVATE_FIELD = (r"(?:grades?|marks?|scores?|gpa|results?|rankings?|email(?: address)?(?:es)?|e-mails?"
                  r"|phone(?: numbers?)?|(?:home )?address(?:es)?|student (?:ids?|numbers?)|submissions?|evaluations?)")
_PRIVATE = [
    re.compile(r"\b(?:classmates?|other students?|another student|fellow students?|everyone(?:'s| else)|everybody|"
               r"all (?:the )?students|each student|students'|my (?:friend|roommate|partner|teammate|lab partner)s?)\b"
               r"[^.?!]{0,60}\b" + _PRIVATE_FIELD + r"\b", re.I),
    re.compile(r"\b" + _PRIVATE_FIELD + r"\b[^.?!]{0,60}\b(?:classmates?|other students?|another student|"
               r"fellow students?|everyone else|all (?:the )?students|each student|my (?:friend|roommate|partner|"
               r"teammate|lab partner)s?)\b", re.I),
    # A person named by name: "What grade did Maria Chen get", "John's grade" (not "Google's score").
    re.compile(r"\b(?:grade|mark|gpa|score)s?\s+(?:did|does|will|has)\s+(?!I\b|you\b|we\b)"
               r"[A-Z][a-z]+(?:\s+[A-Z][a-z]+)?\s+(?:get|got|receive|have|earn|score)"),
    re.compile(r"\b(?!I\b)[A-Z][a-z]+(?:\s+[A-Z][a-z]+)?(?:'s|’s)\s+"
               r"(?:(?:final |midterm |exam |homework |course )?(?:grades?|marks?|gpa)"
               r"|(?:final|midterm|exam|homework|quiz) (?:scores?|results?)|email|phone|address)\b"),
]

# Course logistics: each concept as a student asks it, and as the syllabus says it.
_LOGISTICS = [
    (re.compile(r"\b(?:mid-?terms?|final exams?|exams?|quiz(?:zes)?)\b", re.I),
     re.compile(r"\b(?:mid-?terms?|exams?|quiz(?:zes)?)\b", re.I)),
    (re.compile(r"\b(?:grad(?:e|es|ed|ing)|worth|weight(?:s|ed|ing)?|percent(?:age)?|count(?:s)? (?:for|towards?))\b"
                r"|%", re.I),
     re.compile(r"\bgrad(?:e|es|ed|ing)\b|%|\bpercent", re.I)),
    (re.compile(r"\blate\b|\bextensions?\b", re.I), re.compile(r"\blate\b|\bextensions?\b", re.I)),
    (re.compile(r"\boffice hours?\b", re.I), re.compile(r"\boffice hours?\b", re.I)),
    (re.compile(r"\b(?:deadlines?|due)\b", re.I), re.compile(r"\b(?:deadlines?|due)\b", re.I)),
    (re.compile(r"\battendance\b", re.I), re.compile(r"\battendance\b", re.I)),
    (re.compile(r"\bsyllabus\b", re.I), re.compile(r"\bsyllabus\b", re.I)),
    (re.compile(r"\b(?:ai|chatgpt|llms?|generative)\b[^.?!]{0,40}\b(?:polic(?:y|ies)|allowed|rules?)\b"
                r"|\bcollaboration polic", re.I),
     re.compile(r"\bpolic(?:y|ies)\b", re.I)),
]
_SYLLABUS_FILE = re.compile(r"^(?:syllabus|index|readme|course|course[-_ ]?info|about|logistics|overview|home)$", re.I)
LOGISTICS_SOURCES = 3


def asks_for_private_data(question: str) -> bool:
    """Whether the question asks about someone else's grades, scores or contact details."""
    return any(p.search(question) for p in _PRIVATE)


def asks_for_graded_work(question: str) -> str:
    """Why the question asks to be handed graded work ('' when it does not)."""
    return next((reason for reason, pattern in _GRADED_WORK if pattern.search(question)), "")


def logistics_concepts(question: str) -> list[int]:
    """Which course-logistics concepts (exams, grading, late work, ...) the question asks about."""
    return [i for i, (asked, _) in enumerate(_LOGISTICS) if asked.search(question)]


def is_syllabus(chunk: Chunk) -> bool:
    """Whether a chunk is course logistics: the syllabus, a course's index or README page, or a slide
    or section headed as logistics ("Grading", "Office hours", "Course logistics")."""
    return (chunk.locator.kind == "syllabus" or bool(_SYLLABUS_FILE.match(PurePosixPath(chunk.locator.path).stem))
            or logistics_heading(chunk.heading))


# Up to this many solution chunks, a draft is compared with every one of them; past it (a course with
# a large solution bank), with the three most similar, found by an embedding search.
LEXICAL_LEAK_CHUNKS = 200


class IntegrityChecks:
    """The checks that read the course index: which graded work a question is about, the syllabus
    passages that answer a logistics question, and whether a draft answer gives a solution away."""

    def __init__(self, index: CourseIndex, retriever: Retriever):
        self.index = index
        self.retriever = retriever
        self._solutions = [c for c in index.chunks if c.locator.kind == "solution"]
        self._solution_facts = [policy.SolutionFacts.of(c) for c in self._solutions]
        self.has_solutions = bool(self._solutions)
        self._public_numbers = policy.public_numbers(
            "\n".join(c.text for c in index.chunks if c.locator.kind == "assignment"))
        self._syllabus_rows = np.array([i for i, c in enumerate(index.chunks) if is_syllabus(c)], dtype=np.int64)

    def homework(self, question: str, query: str, question_vector: np.ndarray,
                 teaching_similarity: float | None) -> policy.AssignmentMatch | None:
        """The graded work the question asks for: an assignment of `course.toml` (named, or matched by
        its text), else any request to be handed graded work, configured or not."""
        graded = self.retriever.search(query, k=3, kinds=["assignment", "solution"], query_vector=question_vector)
        # An attempt to talk the tutor out of its rules gets the stricter homework match.
        strict = policy.looks_like_injection(question)
        match = policy.match_assignment(
            question, self.index.course.assignments, [(h.chunk, h.dense) for h in graded],
            threshold=policy.INJECTION_HOMEWORK_SIMILARITY if strict else policy.HOMEWORK_SIMILARITY,
            teaching_similarity=teaching_similarity if teaching_similarity is not None else 1.0)
        if match is None and (reason := asks_for_graded_work(question)):
            match = policy.AssignmentMatch("", policy.GRADED_WORK_TITLE, "", "", reason)
        return match

    def logistics(self, question: str, question_vector: np.ndarray) -> list[Hit]:
        """The syllabus passages that speak of what a logistics question asks ("Is there a midterm and
        how much is it worth?": a grading table naming the midterm), best first; [] for any other
        question. They answer it however low its similarity: the words students use for logistics
        and the words a syllabus uses differ too much for the out-of-scope floor."""
        concepts = logistics_concepts(question)
        if not concepts or not len(self._syllabus_rows):
            return []
        scored = []
        for row in self._syllabus_rows.tolist():
            chunk = self.index.chunks[row]
            said = sum(bool(_LOGISTICS[i][1].search(chunk.text)) for i in concepts)
            if said:
                dense = float(self.index.vectors[row] @ question_vector)
                scored.append((said, dense, row))
        scored.sort(key=lambda s: (-s[0], -s[1], s[2]))
        return [Hit(self.index.chunks[row], dense, dense, 0.0, row) for _, dense, row in scored[:LOGISTICS_SOURCES]]

    def assignment_problem(self, match: policy.AssignmentMatch, question: str,
                           question_vector: np.ndarray) -> Chunk | None:
        """The assignment chunk the question is about: the problem it names, else the most similar."""
        chunks = [c for c in self.index.chunks if match.path and c.locator.path == match.path]
        if not chunks:
            return None
        named = re.search(r"\b(?:problem|question|exercise|part)\s*#?\s*(\d+)", question, re.I)
        if named:
            for chunk in chunks:
                if re.search(rf"\b(?:problem|question|exercise)\s*{named.group(1)}\b", chunk.heading, re.I):
                    return chunk
        rows = [self.index.row_of[c.id] for c in chunks]
        return chunks[int((self.index.vectors[rows] @ question_vector).argmax())]

    def leak(self, draft: str, question: str) -> str:
        """Why `draft` gives a solution away ('' when it does not, and at once in a course without
        solutions, which is most: the search would embed the question and draft for nothing)."""
        if not self.has_solutions or not draft.strip():
            return ""
        public = self._public_numbers | policy.public_numbers(question)
        if len(self._solutions) <= LEXICAL_LEAK_CHUNKS:
            # A course's solutions are few: compare the draft with all of them (word 6-grams and
            # numbers worked out at load, well under a millisecond) instead of embedding question and
            # draft to pick three.
            return policy.solution_leak(draft, self._solution_facts, public=public)
        hits = self.retriever.search(question + "\n" + draft[:2000], k=3, kinds=["solution"])
        return policy.solution_leak(draft, [h.chunk for h in hits], public=public)
