"""Judges: who decides whether an answer is correct and whether a passage supports a sentence.

One small interface, chosen by name, registered like the LLM backends:

    judge = create_judge("embedding", embedder=embedder)
    judge.correctness([(question, answer, reference)])   # -> [Verdict(score 0..1, reason)]
    judge.support([(sentence, passage)])                 # -> [Verdict(score, passed, reason)]

- `lexical`: token F1 against the reference; a passage supports a sentence when it holds most of
  the sentence's content words. No model, instant.
- `embedding`: cosine similarity of the sentence-transformers vectors (the tutor's own embedder).
- `llm`: any OpenAI-compatible chat model through `tutor.llm` (default backend `openai`), asked a
  rubric question and made to reply in JSON; replies are cached by a hash of model and prompt in
  SQLite, so re-scoring a run costs nothing. See `eval.judge_llm`. It has run against the bundled
  SmolLM2-135M (`tests/test_judge_smollm2.py`): none of its 4 verdicts in the slow test was even
  readable JSON, so use a stronger model as judge, and keep `embedding` (the default) otherwise.

The interface, `Verdict`, `JudgeConfig` and the registry live in `eval.judge_base`, which both this
module and `eval.judge_llm` import, so neither imports the other.

Every metric in `metrics.json` records the judge that produced it.
"""

from __future__ import annotations

import numpy as np

from eval.judge_base import Judge, JudgeConfig, Verdict, register_judge, registered_judges
from eval.metrics import token_f1, words
from ingest.errors import ConfigError
from ingest.lexical import lexical_tokens
from tutor.citations import split_sentences

__all__ = ["Judge", "JudgeConfig", "Verdict", "create_judge", "judge_names", "register_judge",
           "resolve_judge_name"]

LEXICAL_SUPPORT = 0.5      # share of a sentence's content words the passage must contain
EMBEDDING_SUPPORT = 0.65   # cosine similarity of a sentence and its closest passage sentence (all-MiniLM-L6-v2)


def judge_names() -> list[str]:
    return sorted(registered_judges())


def resolve_judge_name(name: str, config: JudgeConfig) -> str:
    """`auto` is the `llm` judge when a judge server is configured, else the offline `embedding` one."""
    if name == "auto":
        return "llm" if config.base_url else "embedding"
    return name


def create_judge(name: str, config: JudgeConfig | None = None, embedder=None) -> Judge:
    """The judge registered as `name`; `embedder` (an `ingest.embed.Embedder`) is shared when given."""
    factories = registered_judges()
    if name not in factories:
        raise ConfigError(f"unknown judge {name!r}; choose one of: {', '.join(sorted(factories))}")
    return factories[name](config or JudgeConfig(), embedder)


class LexicalJudge(Judge):
    name = "lexical"

    def correctness(self, items: list[tuple[str, str, str]]) -> list[Verdict]:
        out = []
        for _, answer, reference in items:
            f1 = token_f1(answer, reference)
            out.append(Verdict(f1, reason=f"token F1 with the reference answer: {f1:.2f}"))
        return out

    def support(self, pairs: list[tuple[str, str]]) -> list[Verdict]:
        out = []
        for sentence, passage in pairs:
            claim = set(lexical_tokens(sentence)) or set(words(sentence))
            held = set(lexical_tokens(passage)) | set(words(passage))
            share = len(claim & held) / len(claim) if claim else 0.0
            out.append(Verdict(share, share >= LEXICAL_SUPPORT,
                               f"the passage holds {share:.0%} of the sentence's content words"))
        return out


class EmbeddingJudge(Judge):
    name = "embedding"

    def __init__(self, embedder=None):
        if embedder is None:
            from ingest.embed import Embedder

            embedder = Embedder()
        self.embedder = embedder

    def _vectors(self, texts: list[str]) -> dict[str, np.ndarray]:
        """One encoding per distinct non-empty text."""
        distinct = list(dict.fromkeys(t for t in texts if t.strip()))
        vectors = self.embedder.encode(distinct) if distinct else []
        return dict(zip(distinct, vectors))

    def correctness(self, items: list[tuple[str, str, str]]) -> list[Verdict]:
        vec = self._vectors([t for _, answer, reference in items for t in (answer, reference)])
        out = []
        for _, answer, reference in items:
            s = max(0.0, float(vec[answer] @ vec[reference])) if answer.strip() and reference.strip() else 0.0
            out.append(Verdict(s, reason=f"cosine similarity with the reference answer: {s:.2f}"))
        return out

    def support(self, pairs: list[tuple[str, str]]) -> list[Verdict]:
        """The best cosine similarity of the sentence with the passage or any of its sentences: a
        passage about several things is far from each of them as a whole, but one of its sentences
        is close to a sentence that restates it."""
        units = {passage: [passage, *split_sentences(passage)] for _, passage in pairs}
        vec = self._vectors([t for sentence, passage in pairs for t in (sentence, *units[passage])])
        out = []
        for sentence, passage in pairs:
            parts = [u for u in units[passage] if u.strip()]
            s = max((float(vec[sentence] @ vec[u]) for u in parts), default=0.0) if sentence.strip() else 0.0
            s = max(0.0, s)
            out.append(Verdict(s, s >= EMBEDDING_SUPPORT, f"closest passage sentence: cosine similarity {s:.2f}"))
        return out

    def describe(self) -> dict:
        return {"name": self.name, "embedder": getattr(self.embedder, "name", ""),
                "support_threshold": EMBEDDING_SUPPORT}


@register_judge("lexical")
def _create_lexical(config: JudgeConfig, embedder) -> Judge:
    return LexicalJudge()


@register_judge("embedding")
def _create_embedding(config: JudgeConfig, embedder) -> Judge:
    return EmbeddingJudge(embedder)


@register_judge("llm")
def _create_llm(config: JudgeConfig, embedder) -> Judge:
    from eval.judge_llm import LLMJudge  # its prompts and cache load only when it is chosen

    return LLMJudge(config)
