"""The `extractive` backend: no LLM, the sentences of the sources that best answer, each cited.

It is the default when no LLM is configured and the fallback when the configured one is down, so a
student always gets an answer. It reads the sources and the question from `stream`'s options rather
than from the messages (it has no model to read a prompt with):

    backend.stream(messages, question="What is momentum?", sources=[Source...], embed=embedder.encode)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import numpy as np

from ingest.lexical import lexical_tokens
from tutor.citations import split_sentences
from tutor.llm import BackendConfig, LLMBackend, register_backend

MAX_SENTENCES = 4
PER_SOURCE = 2
_BULLET = re.compile(r"^\s*(?:[-*•·]|\d+[.)])\s+")
_WRAPPED = re.compile(r"(?<=[a-z,;])\n(?=[a-z(])")  # a line break inside a sentence (PDF text wraps)
_EQUATION_LINE = re.compile(r"^\s*\$\$.*\$\$\s*$", re.S)
_NOTES = re.compile(r"^Notes:\s*")
_CODE_LINE = re.compile(
    r"^\s*(?:import |from \w+ import|def |class |for .* in .*:|print\(|return |#|[\"'])|^\s*[\w.\[\]]+\s*[+\-*/]?=\s*\S"
    r"|[;{}]\s*$|\)\s*,?\s*$")


def candidate_sentences(text: str, heading: str = "") -> list[str]:
    """Sentences and bullet points of a passage that could answer something: a displayed equation is
    kept with its lead-in, while the heading itself, exercise questions and speaker-note prefixes go."""
    out: list[str] = []
    text = _WRAPPED.sub(" ", text.split("\nNotes:")[0])  # speaker notes help retrieval, read oddly as answers
    for raw in split_sentences(text):
        if _CODE_LINE.search(raw):
            continue
        sentence = _NOTES.sub("", _BULLET.sub("", raw)).strip()
        if not sentence:
            continue
        if out and _EQUATION_LINE.match(sentence):  # a displayed equation completes the sentence before it
            out[-1] = f"{out[-1]}\n\n{sentence}\n"
            continue
        out.append(sentence)
    title = heading.split(" > ")[-1].strip().rstrip(":").lower()
    return [s for s in out
            if (len(s.split()) >= 6 or "$" in s) and not s.rstrip().endswith("?")
            and s.strip().rstrip(":").lower() != title]


def _similar(a: str, b: str) -> bool:
    wa, wb = set(lexical_tokens(a)), set(lexical_tokens(b))
    return bool(wa and wb) and len(wa & wb) / len(wa | wb) > 0.6


def pick_sentences(question: str, sources: list, embed: Callable[[list[str]], np.ndarray],
                   limit: int = MAX_SENTENCES) -> list[tuple[int, str]]:
    """(source number, sentence) pairs that best answer `question`, de-duplicated, in reading order:
    sources by rank, sentences as they stand in their passage."""
    candidates: list[tuple[int, int, int, str]] = []
    for rank, source in enumerate(sources):
        heading = source.chunk.heading
        for position, sentence in enumerate(candidate_sentences(source.chunk.text, heading)):
            candidates.append((source.n, rank, position, sentence))
    if not candidates:
        return []
    # A sentence is read with its slide or section title: "repeat: $$x_{t+1} = ...$$" alone says
    # little, under "Gradient descent: the update rule" it answers the question.
    headed = [f"{sources[rank].chunk.heading.split(' > ')[-1]}: {sentence}" for _, rank, _, sentence in candidates]
    vectors = embed([question] + headed)
    similarity = vectors[1:] @ vectors[0]
    question_words = set(lexical_tokens(question))
    scored = []
    for (n, rank, position, sentence), sim in zip(candidates, similarity):
        words = set(lexical_tokens(sentence))
        overlap = len(question_words & words) / max(len(question_words), 1)
        scored.append((float(sim) + 0.15 * overlap + 0.08 / (rank + 1), n, rank, position, sentence))
    scored.sort(key=lambda item: -item[0])
    chosen: list[tuple[float, int, int, int, str]] = []
    per_source: dict[int, int] = {}
    for item in scored:
        score, n, _, _, sentence = item
        if len(chosen) >= limit or (chosen and score < scored[0][0] - 0.25):
            break
        if per_source.get(n, 0) >= PER_SOURCE or any(_similar(sentence, c[4]) for c in chosen):
            continue
        chosen.append(item)
        per_source[n] = per_source.get(n, 0) + 1
    first_rank = {}
    for _, n, rank, _, _ in chosen:
        first_rank.setdefault(n, len(first_rank))
    chosen.sort(key=lambda c: (first_rank[c[1]], c[3]))
    return [(n, sentence) for _, n, _, _, sentence in chosen]


class ExtractiveBackend(LLMBackend):
    name = "extractive"
    model = "extractive"
    reads_sources = True  # the answer engine passes question, sources and embed as options

    def stream(self, messages: list[dict], *, max_tokens: int = 512, temperature: float = 0.2,
               stop: list[str] | None = None, **opts) -> Iterator[str]:
        question: str = opts.get("question") or (messages[-1]["content"] if messages else "")
        sources = opts.get("sources") or []
        embed = opts.get("embed")
        mode = opts.get("mode", "explain")
        if not sources or embed is None:
            yield "I could not find anything in the course material about this."
            return
        picked = pick_sentences(question, sources, embed)
        if not picked:
            yield "The course material I found does not answer this directly; see the sources below."
            return
        if mode == "socratic":
            yield "Let's work it out together. Here is what the course material gives us to start:\n\n"
        else:
            yield "Here is what the course material says:\n\n"
        for n, sentence in picked:
            yield f"- {sentence.rstrip()} [{n}]\n"
        if mode == "socratic":
            yield ("\nBefore reading further: how would you put this idea in your own words, and "
                   "can you think of a case where it would fail?")


@register_backend("extractive")
def _make_extractive(config: BackendConfig) -> LLMBackend:
    return ExtractiveBackend()
