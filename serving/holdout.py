"""Keep the evaluation set out of fine-tuning: an adapter trained on the test questions proves nothing.

    holdout = EvalHoldout.from_dataset(Path("eval/datasets/dl-intro.jsonl"), embedder)
    kept, excluded = holdout.filter(examples, index)      # excluded: Counter of reasons
    holdout.lineage(excluded)                              # goes into the adapter's lineage.json

A training example is left out when
- `question`: its question is within `QUESTION_SIMILARITY` (cosine of the tutor's embedder) of an
  evaluation question: a paraphrase of a test question is the test question;
- `source`: a passage its reply cites holds the gold quote of an evaluation case: the model would
  have been taught, sentence for sentence, the answer it is graded on.

The eval set is read here as plain JSONL (`question`, `gold_sources: [{path, quote}]`) rather than
through `eval.dataset`, because `serving` does not import `eval` (DESIGN.md: imports point one way).
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ingest.errors import ConfigError
from tutor.citations import MARKER

# MiniLM cosine of two questions: from 0.8 they ask the same thing in other words. Measured on the
# shipped eval set: its near-duplicate pairs (a CNN's parameter count asked two ways) score 0.81-0.87,
# while different questions on one topic (three steps of momentum vs. of plain SGD) stay at or below 0.77.
QUESTION_SIMILARITY = 0.8


def normalise(text: str) -> str:
    """Case-folded, NFKC, Markdown emphasis dropped, whitespace collapsed (as the eval matches quotes)."""
    text = unicodedata.normalize("NFKC", text).replace("*", "").replace("`", "").casefold()
    return " ".join(text.split())


@dataclass
class EvalHoldout:
    """The evaluation cases training must not see: their questions (embedded) and gold quotes."""

    path: Path
    sha256: str
    questions: list[str]
    vectors: np.ndarray                          # one unit vector per question
    gold: list[tuple[str, str]] = field(default_factory=list)   # (path, normalised quote)
    embedder: object = None                      # encodes training questions the same way

    @classmethod
    def from_dataset(cls, path: Path, embedder) -> EvalHoldout:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"evaluation dataset {path} not found; pass --eval-dataset FILE, or "
                              "--eval-dataset '' to train without holding an eval set out")
        raw = path.read_bytes()
        questions, gold = [], []
        for number, line in enumerate(raw.decode("utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                case = json.loads(line)
                questions.append(str(case["question"]))
                gold += [(g["path"], normalise(g.get("quote", ""))) for g in case.get("gold_sources") or []]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise ConfigError(f"{path}:{number}: not an eval case ({exc})") from None
        vectors = embedder.encode(questions) if questions else np.zeros((0, 1), dtype=np.float32)
        return cls(path, hashlib.sha256(raw).hexdigest(), questions, np.asarray(vectors),
                   [(p, q) for p, q in gold if q], embedder)

    def reasons(self, examples: list, index) -> list[str | None]:
        """Per example: "question", "source" or None (kept). `index` resolves cited chunk ids."""
        if not examples:
            return []
        out: list[str | None] = [None] * len(examples)
        if self.questions:
            vectors = np.asarray(self.embedder.encode([e.question for e in examples]))
            closest = (vectors @ self.vectors.T).max(axis=1)
            out = ["question" if c >= QUESTION_SIMILARITY else None for c in closest]
        for i, example in enumerate(examples):
            if out[i] is None and self._cites_gold(example, index):
                out[i] = "source"
        return out

    def filter(self, examples: list, index) -> tuple[list, Counter]:
        """The examples that may be trained on, and how many were left out for each reason."""
        reasons = self.reasons(examples, index)
        return [e for e, r in zip(examples, reasons) if r is None], Counter(r for r in reasons if r)

    def lineage(self, excluded: Counter) -> dict:
        return {"path": str(self.path), "sha256": self.sha256, "cases": len(self.questions),
                "question_similarity": QUESTION_SIMILARITY,
                "excluded": {"question": excluded.get("question", 0), "source": excluded.get("source", 0),
                             "total": sum(excluded.values())}}

    def _cites_gold(self, example, index) -> bool:
        cited = {int(n) for m in MARKER.finditer(example.reply) for n in m.group(1).split(",")}
        for n in cited:
            if not 1 <= n <= len(example.sources) or example.sources[n - 1] not in index.row_of:
                continue
            chunk = index.chunks[index.row_of[example.sources[n - 1]]]
            text = normalise(chunk.text)
            if any(path == chunk.locator.path and quote in text for path, quote in self.gold):
                return True
        return False

