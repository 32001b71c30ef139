"""The `extractive` backend: no LLM, the sentences of the sources that best answer, each cited.

It is the default when no LLM is configured and the fallback when the configured one is down, so a
student always gets an answer. It has no model to read a prompt with, so it answers from the
`Grounding` it is given (`reads_sources = True`):

    backend.stream(messages, grounding=Grounding("What is momentum?", [Source...], embedder.encode,
                                                 question_vector=qvec, sentences=index.sentences))

The sentences it may quote (`ingest/sentences.py`: no exercise prompts, captions, footers, fragments
or equation debris) are embedded at ingest; `sentences` holds their vectors and `question_vector` the
question's, so an answer normally embeds nothing. What is missing (an index built before sentences
were stored, no question vector) is embedded with `embed`, in one call. Among similar sentences, one
that says what the asked thing is ("Dropout is a regulariser that ...") is preferred to one that
leans on the sentence before it ("This also ...").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import numpy as np

from ingest.lexical import lexical_tokens
from ingest.sentences import SentenceVectors, candidate_sentences, headed
from tutor.llm import BackendConfig, Grounding, LLMBackend, register_backend

MAX_SENTENCES = 4
PER_SOURCE = 2
DEFINES_BONUS = 0.05      # the sentence says what a word of the question is or does
LEANS_ON_CONTEXT = 0.03   # it opens by pointing back at a sentence the answer does not quote
_DEFINING_VERB = re.compile(
    r"\b(?:is|are|means|refers? to|denotes|stands? for|consists? of|computes?|works? by|is called|are called"
    r"|is defined as|can be (?:thought of|seen|viewed) as)\b", re.I)
_POINTS_BACK = re.compile(
    r"^(?:this|these|that|those|it|they|such|here|however|but|also|additionally|moreover|furthermore|so|thus"
    r"|hence|therefore|then|in other words|in this case)\b", re.I)


def _similar(a: str, b: str) -> bool:
    wa, wb = set(lexical_tokens(a)), set(lexical_tokens(b))
    return bool(wa and wb) and len(wa & wb) / len(wa | wb) > 0.6


def _defines(sentence: str, question_words: set[str]) -> bool:
    """Whether `sentence` names what the question asks about (at least half its words) and then says
    what it is or does: "Dropout is ..." for "What is dropout?", not "Exploding gradients are ..." for
    "What is the vanishing gradient problem?"."""
    verb = _DEFINING_VERB.search(sentence)
    if not verb or verb.start() >= 120 or not question_words:
        return False
    named = question_words & set(lexical_tokens(sentence[:verb.start()]))
    return len(named) * 2 >= len(question_words)


def pick_sentences(question: str, sources: list, embed: Callable[[list[str]], np.ndarray],
                   limit: int = MAX_SENTENCES, question_vector: np.ndarray | None = None,
                   sentences: SentenceVectors | None = None) -> list[tuple[int, str]]:
    """(source number, sentence) pairs that best answer `question`, de-duplicated, in reading order:
    sources by rank, sentences as they stand in their passage.

    Sentences are compared with the question as embedded with their heading (`ingest.sentences.headed`),
    taken from `sentences` where it holds them; the rest, and the question if `question_vector` is
    None, are embedded with `embed` in one call."""
    candidates: list[tuple[int, int, int, str]] = []
    blocks: list[np.ndarray | list[str]] = []  # per source: its stored sentence vectors, or the texts to embed
    for rank, source in enumerate(sources):
        heading = source.chunk.heading
        found = candidate_sentences(source.chunk.text, heading)
        if not found:
            continue
        candidates.extend((source.n, rank, position, sentence) for position, sentence in enumerate(found))
        texts = [headed(sentence, heading) for sentence in found]
        stored = sentences.vectors_of(source.chunk.id, texts) if sentences is not None else None
        blocks.append(texts if stored is None else stored)
    if not candidates:
        return []
    question_vector, vectors = _embed_missing(question, question_vector, blocks, embed)
    similarity = vectors @ question_vector
    question_words = set(lexical_tokens(question))
    scored = []
    for (n, rank, position, sentence), sim in zip(candidates, similarity):
        words = set(lexical_tokens(sentence))
        overlap = len(question_words & words) / max(len(question_words), 1)
        style = (DEFINES_BONUS * _defines(sentence, question_words)
                 - LEANS_ON_CONTEXT * bool(_POINTS_BACK.match(sentence)))
        scored.append((float(sim) + 0.15 * overlap + 0.08 / (rank + 1) + style, n, rank, position, sentence))
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


def _embed_missing(question: str, question_vector: np.ndarray | None, blocks: list[np.ndarray | list[str]],
                   embed: Callable[[list[str]], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The question's vector and the candidates' (stacked in order), embedding only what `blocks` lacks."""
    texts = ([question] if question_vector is None else []) + [t for b in blocks if isinstance(b, list) for t in b]
    fresh = embed(texts) if texts else None
    at = 0
    if question_vector is None:
        question_vector, at = fresh[0], 1
    rows = []
    for block in blocks:
        if isinstance(block, list):
            block, at = fresh[at:at + len(block)], at + len(block)
        rows.append(block)
    return question_vector, np.concatenate(rows)


class ExtractiveBackend(LLMBackend):
    name = "extractive"
    model = "extractive"
    reads_sources = True
    streams = False       # its sentences are picked together, then handed out in one go

    def stream(self, messages: list[dict], *, max_tokens: int = 512, temperature: float = 0.2,
               stop: list[str] | None = None, grounding: Grounding | None = None, **opts) -> Iterator[str]:
        if grounding is None or not grounding.sources:
            yield "I could not find anything in the course material about this."
            return
        picked = pick_sentences(grounding.question, grounding.sources, grounding.embed,
                                question_vector=grounding.question_vector, sentences=grounding.sentences)
        if not picked:
            yield "The course material I found does not answer this directly; see the sources below."
            return
        socratic = grounding.mode == "socratic"
        if socratic:
            yield "Let's work it out together. Here is what the course material gives us to start:\n\n"
        else:
            yield "Here is what the course material says:\n\n"
        for n, sentence in picked:
            yield f"- {sentence.rstrip()} [{n}]\n"
        if socratic:
            yield ("\nBefore reading further: how would you put this idea in your own words, and "
                   "can you think of a case where it would fail?")


@register_backend("extractive")
def _make_extractive(config: BackendConfig) -> LLMBackend:
    return ExtractiveBackend()
