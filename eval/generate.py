"""Synthetic question sets: a chat model writes questions from sampled course chunks.

    report = generate_cases(index, judge, embedder, count=50)     # judge: the `llm` judge
    write_dataset("eval/datasets/generated.jsonl", report.cases)

For each sampled chunk (lecture material only: never a solution or an assignment) the model is
asked for a question the passage answers, a short answer and a verbatim quote. A case is kept only
if its quote really occurs in the chunk (after whitespace/case normalisation): a model that
paraphrases its "quote" has not shown where the answer is. Near-identical questions (cosine
similarity of their embeddings at or above `DUPLICATE_SIMILARITY`) are dropped, keeping the first.
The kept quote becomes the case's gold source, so the retrieval metrics work on generated sets too.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass, field

from eval.dataset import CASE_TYPES, EvalCase, GoldSource
from eval.judge_llm import JudgeReplyError, LLMJudge, parse_judge_reply
from eval.metrics import normalise_text, words
from ingest.errors import ConfigError

DUPLICATE_SIMILARITY = 0.9
MIN_CHUNK_WORDS = 15
MIN_QUOTE_WORDS = 3
OVERSAMPLE = 1.5     # chunks asked per wanted case: some replies are rejected
_GENERATED_TYPES = tuple(t for t in CASE_TYPES if t not in ("out_of_scope", "homework"))

QUESTION_PROMPT = """\
Here is a passage from the course "{course}" ({where}):

<passage>
{passage}
</passage>

Write one question a student of this course might ask that this passage answers. Then give a \
short answer based only on the passage, and copy one sentence or phrase from the passage, word for \
word, that supports the answer. Classify the question as one of: {types}.
Reply with JSON only, like {{"question": "...", "answer": "...", "quote": "...", "type": "conceptual"}}."""


@dataclass
class GenerateReport:
    cases: list[EvalCase] = field(default_factory=list)
    asked: int = 0
    unreadable: int = 0          # replies without the JSON fields
    quote_not_found: int = 0     # the quote is not in the chunk
    duplicates: int = 0

    def summary(self) -> str:
        return (f"{len(self.cases)} cases kept from {self.asked} chunks asked: {self.quote_not_found} rejected "
                f"(quote not in the chunk), {self.unreadable} unreadable replies, {self.duplicates} near-duplicates")


def eligible_chunks(index) -> list:
    """Chunks a question may be drawn from: lecture material of some length, no solutions or assignments."""
    return [c for c in index.chunks
            if c.locator.kind not in ("solution", "assignment") and len(c.text.split()) >= MIN_CHUNK_WORDS]


def candidate_from_reply(reply: str, chunk) -> tuple[EvalCase | None, str]:
    """The case a reply describes, or None and why: "unreadable" or "quote"."""
    try:
        data = parse_judge_reply(reply)
    except JudgeReplyError:
        return None, "unreadable"
    question, answer, quote = (str(data.get(k, "")).strip() for k in ("question", "answer", "quote"))
    if not question or not quote:
        return None, "unreadable"
    if len(words(quote)) < MIN_QUOTE_WORDS or normalise_text(quote) not in normalise_text(chunk.text):
        return None, "quote"
    case_type = str(data.get("type", "")).strip().lower()
    digest = hashlib.sha1(f"{chunk.id}\n{question}".encode()).hexdigest()[:10]
    return EvalCase(
        id=f"gen-{digest}", question=question, reference_answer=answer,
        gold_sources=(GoldSource(chunk.locator.path, quote),),
        type=case_type if case_type in _GENERATED_TYPES else "factual", difficulty="medium",
        extra={"generated_from": chunk.locator.label()},
    ), ""


def drop_near_duplicates(cases: list[EvalCase], embedder, threshold: float = DUPLICATE_SIMILARITY
                         ) -> tuple[list[EvalCase], int]:
    """Keep each case unless its question is at least `threshold` similar to one already kept."""
    if not cases:
        return [], 0
    vectors = embedder.encode([c.question for c in cases])
    kept: list[int] = []
    for i in range(len(cases)):
        if all(float(vectors[i] @ vectors[j]) < threshold for j in kept):
            kept.append(i)
    return [cases[i] for i in kept], len(cases) - len(kept)


def generate_cases(index, judge: LLMJudge, embedder, count: int = 50, seed: int = 0) -> GenerateReport:
    """Up to `count` checked, de-duplicated cases from chunks sampled with `seed`."""
    if count < 1:
        raise ConfigError(f"--count must be 1 or more, got {count}")
    pool = eligible_chunks(index)
    if not pool:
        raise ConfigError(f"course {index.course_id} has no lecture chunks of {MIN_CHUNK_WORDS}+ words to ask about")
    chunks = random.Random(seed).sample(pool, min(len(pool), math.ceil(count * OVERSAMPLE)))
    course = index.course.title
    prompts = [QUESTION_PROMPT.format(course=course, where=c.locator.label(), passage=c.text,
                                      types=", ".join(_GENERATED_TYPES)) for c in chunks]
    report = GenerateReport(asked=len(chunks))
    candidates = []
    for chunk, reply in zip(chunks, judge.ask_all(prompts)):
        case, problem = candidate_from_reply(reply, chunk)
        if case is not None:
            candidates.append(case)
        elif problem == "quote":
            report.quote_not_found += 1
        else:
            report.unreadable += 1
    unique, report.duplicates = drop_near_duplicates(candidates, embedder)
    report.cases = unique[:count]
    return report
