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
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")
_EQUATION_LINE = re.compile(r"^\s*\$\$.*\$\$\s*$")


def candidate_sentences(text: str) -> list[str]:
    """Sentences and bullet points of a passage, with a displayed equation kept with its lead-in."""
    out: list[str] = []
    for raw in split_sentences(text):
        sentence = _BULLET.sub("", raw).strip()
        if not sentence:
            continue
        if out and (_EQUATION_LINE.match(sentence) and out[-1].rstrip().endswith(":")):
            out[-1] = f"{out[-1]}\n\n{sentence}\n"
            continue
        out.append(sentence)
    return [s for s in out if len(s.split()) >= 4 or "$" in s]


def _similar(a: str, b: str) -> bool:
    wa, wb = set(lexical_tokens(a)), set(lexical_tokens(b))
    return bool(wa and wb) and len(wa & wb) / len(wa | wb) > 0.6


def pick_sentences(question: str, sources: list, embed: Callable[[list[str]], np.ndarray],
                   limit: int = MAX_SENTENCES) -> list[tuple[int, str]]:
    """(source number, sentence) pairs that best answer `question`, best first, de-duplicated."""
    candidates: list[tuple[int, int, str]] = []
    for rank, source in enumerate(sources):
        for sentence in candidate_sentences(source.chunk.text):
            candidates.append((source.n, rank, sentence))
    if not candidates:
        return []
    vectors = embed([question] + [c[2] for c in candidates])
    similarity = vectors[1:] @ vectors[0]
    question_words = set(lexical_tokens(question))
    scored = []
    for (n, rank, sentence), sim in zip(candidates, similarity):
        words = set(lexical_tokens(sentence))
        overlap = len(question_words & words) / max(len(question_words), 1)
        scored.append((float(sim) + 0.15 * overlap + 0.04 / (rank + 1), n, sentence))
    scored.sort(key=lambda item: -item[0])
    chosen: list[tuple[int, str]] = []
    per_source: dict[int, int] = {}
    for score, n, sentence in scored:
        if len(chosen) >= limit:
            break
        if chosen and score < scored[0][0] - 0.35:
            break
        if per_source.get(n, 0) >= PER_SOURCE or any(_similar(sentence, s) for _, s in chosen):
            continue
        chosen.append((n, sentence))
        per_source[n] = per_source.get(n, 0) + 1
    return chosen


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
