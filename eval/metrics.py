"""The eval's measures as pure functions over text, ranks and numbers (no model, no I/O).

- retrieval: `retrieval_scores` (hit@k, recall@k, reciprocal rank against gold sources);
- citations: `answer_claims` splits an answer into factual sentences with the `[n]` they cite, and
  `citation_precision_recall` scores them from per-(sentence, citation) support verdicts (ALCE-style);
- correctness: `token_f1` (SQuAD-style bag-of-words F1);
- homework: `solution_overlap` (the share of an answer's word n-grams that only a solution contains,
  and the solution's result numbers it states);
- latency: `percentile`.

Text is compared after `normalise_text` (Unicode NFKC, case-folded, typographic quotes and dashes made
plain, Markdown emphasis dropped, whitespace collapsed), so a quote matches whatever the loader did
to line breaks.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from eval.dataset import GoldSource
from tutor.citations import MARKER, split_sentences
from tutor.policy import NUMBER, shingles
from tutor.policy import result_numbers as policy_result_numbers

RETRIEVAL_KS = (1, 3, 5, 10)
_PLAIN = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-",
                        "\u2014": "-", "\u2212": "-", "\u00a0": " ", "*": None, "`": None})
_WORD = re.compile(r"\w+")
_FENCE = re.compile(r"```.*?(?:```|$)", re.S)
_BULLET = re.compile(r"^\s*(?:[-*+\u2022]|\d+[.)])\s+")
_GREETING = re.compile(
    r"^(?:hi|hello|hey|thanks|thank you|great question|good question|sure|of course|i hope|"
    r"let me know|feel free|happy to help)\b", re.I)
_LEADING_MARKERS = re.compile(r"^((?:\s*\[\d+(?:\s*,\s*\d+)*\])+)\s*")
# A number, also at the end of a sentence ("x3 = 4.608."), but not a piece of a version or a name.
_NUMBER = NUMBER  # the tutor's leak check and this measure read numbers alike
MIN_CLAIM_WORDS = 4


def normalise_text(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).translate(_PLAIN).casefold()
    return " ".join(text.split())


def words(text: str) -> list[str]:
    """Unicode word tokens of the normalised text (letters of any script, digits, underscore)."""
    return _WORD.findall(normalise_text(text))


# ----- retrieval -----

def matches_gold(path: str, text: str, gold: GoldSource, path_only: bool = False) -> bool:
    """A retrieved chunk matches a gold source when its path is the gold path and (unless
    `path_only`, or the gold source has no quote) the gold quote occurs in its text."""
    if path != gold.path:
        return False
    if path_only or not gold.quote.strip():
        return True
    return normalise_text(gold.quote) in normalise_text(text)


def gold_ranks(retrieved: Sequence[tuple[str, str]], gold_sources: Iterable[GoldSource],
               path_only: bool = False) -> list[int | None]:
    """For each distinct gold source, the 1-based rank of the first retrieved (path, text) matching
    it, or None when none does."""
    ranks: list[int | None] = []
    for gold in dict.fromkeys(gold_sources):
        rank = next((i for i, (path, text) in enumerate(retrieved, start=1)
                     if matches_gold(path, text, gold, path_only)), None)
        ranks.append(rank)
    return ranks


def retrieval_scores(retrieved: Sequence[tuple[str, str]], gold_sources: Iterable[GoldSource],
                     ks: Sequence[int] = RETRIEVAL_KS, path_only: bool = False) -> dict[str, float]:
    """hit@k (some gold source in the top k), recall@k (share of gold sources in the top k) and
    rr (1 / rank of the first match, 0 without one). Empty when there is no gold source."""
    ranks = gold_ranks(retrieved, gold_sources, path_only)
    if not ranks:
        return {}
    found = [r for r in ranks if r is not None]
    scores = {"rr": 1.0 / min(found) if found else 0.0}
    for k in ks:
        within = sum(1 for r in found if r <= k)
        scores[f"hit@{k}"] = 1.0 if within else 0.0
        scores[f"recall@{k}"] = within / len(ranks)
    return scores


# ----- citations and faithfulness -----

@dataclass(frozen=True)
class Claim:
    """A factual sentence of an answer (markers removed) and the source numbers it cites."""

    text: str
    cites: tuple[int, ...]


def is_factual(sentence: str) -> bool:
    """False for what asserts nothing: questions, greetings, headings, lead-ins, short fragments."""
    s = sentence.strip()
    if not s or s.startswith("#") or s.endswith("?") or s.endswith(":"):
        return False
    if re.fullmatch(r"\*\*[^*]+\*\*:?", s) or _GREETING.match(s):
        return False
    return len(words(s)) >= MIN_CLAIM_WORDS


def answer_claims(text: str) -> list[Claim]:
    """The factual sentences of an answer, each with the distinct `[n]` it cites, in order.

    Code blocks are left out. A marker written after the full stop ("... oscillation. [2]") belongs
    to the sentence before it, and a displayed equation to the lead-in ending in ":" above it."""
    sentences = split_sentences(_FENCE.sub(" ", text))
    pieces: list[list] = []
    for sentence in sentences:
        sentence = _BULLET.sub("", sentence)
        lead = _LEADING_MARKERS.match(sentence)
        if lead and pieces:
            pieces[-1][1] += lead.group(1)
            sentence = sentence[lead.end():]
        if sentence.startswith("$$") and pieces and pieces[-1][0].rstrip().endswith(":"):
            pieces[-1] = [f"{pieces[-1][0]} {sentence}", f"{pieces[-1][1]} {sentence}"]
            continue
        pieces.append([sentence, sentence])
    claims = []
    for body, with_markers in pieces:
        cites = tuple(dict.fromkeys(int(n) for m in MARKER.finditer(with_markers) for n in m.group(1).split(",")))
        plain = " ".join(MARKER.sub("", body).split())
        plain = re.sub(r"\s+([.,;:!?])", r"\1", plain)
        if is_factual(plain):
            claims.append(Claim(plain, cites))
    return claims


def citations_valid(text: str, cited: Iterable[int]) -> float:
    """1.0 when the answer has at least one `[n]` (outside code) and every one names a source in
    `cited` (the numbers of the answer's citations), else 0.0."""
    numbers = [int(n) for m in MARKER.finditer(_FENCE.sub(" ", text)) for n in m.group(1).split(",")]
    return float(bool(numbers) and set(numbers) <= set(cited))


def citation_pairs(claims: Sequence[Claim]) -> list[tuple[int, int]]:
    """(claim index, cited number) for every distinct citation of every claim."""
    return [(i, n) for i, claim in enumerate(claims) for n in claim.cites]


def citation_precision_recall(claims: Sequence[Claim], supported: dict[tuple[int, int], bool]
                              ) -> tuple[float | None, float | None]:
    """ALCE-style citation quality from per-(claim index, cited number) verdicts.

    precision: the share of citations whose passage supports the sentence citing it; as in ALCE, an
    answer with factual sentences and no citation at all scores 0 (so a model that never cites cannot
    escape the measure), and one with neither scores None. recall: the share of factual sentences
    citing at least one supporting passage (None without factual sentences). A pair missing from
    `supported` (e.g. a number naming no passage) counts as not supporting."""
    if not claims:
        return None, None
    pairs = citation_pairs(claims)
    precision = sum(1 for p in pairs if supported.get(p, False)) / len(pairs) if pairs else 0.0
    backed = sum(1 for i, claim in enumerate(claims) if any(supported.get((i, n), False) for n in claim.cites))
    return precision, backed / len(claims)


# ----- correctness -----

def token_f1(prediction: str, reference: str) -> float:
    """Bag-of-words F1 between two texts (1.0 when both are empty, 0.0 when only one is)."""
    pred, ref = words(prediction), words(reference)
    if not pred or not ref:
        return 1.0 if pred == ref else 0.0
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


# ----- homework -----

@dataclass(frozen=True)
class PublicText:
    """What students may read anyway (the course material that is not a solution, the question),
    reduced to what the leak measure compares: its word n-grams and its numbers."""

    grams: frozenset
    numbers: frozenset

    @classmethod
    def of(cls, text: str, n: int = 6) -> PublicText:
        return cls(frozenset(shingles(text, n)), frozenset(_NUMBER.findall(text)))

    def __or__(self, other: PublicText) -> PublicText:
        return PublicText(self.grams | other.grams, self.numbers | other.numbers)


def result_numbers(solution: str, public_numbers: frozenset | set) -> set[str]:
    """Numbers of two or more digits a solution states that the public text does not: its results."""
    return policy_result_numbers(_NUMBER.findall(solution), public_numbers)


def solution_overlap(answer: str, solutions: Sequence[str], public: PublicText | str = "", n: int = 6
                     ) -> tuple[float, set[str]]:
    """How much of a solution an answer gives away.

    Returns the largest share, over the solution texts, of the answer's word `n`-grams that occur in
    that solution but not in the public text (which an answer may repeat freely: a worked example
    from the lecture is no leak, even if the solution uses it too), and the solution's result numbers
    (absent from the public text) that the answer states."""
    public = PublicText.of(public, n) if isinstance(public, str) else public
    answer_grams = shingles(answer, n)
    answer_numbers = set(_NUMBER.findall(answer))
    share, numbers = 0.0, set()
    for solution in solutions:
        if answer_grams:
            private = (answer_grams & shingles(solution, n)) - public.grams
            share = max(share, len(private) / len(answer_grams))
        numbers |= result_numbers(solution, public.numbers) & answer_numbers
    return share, numbers


# ----- aggregation -----

def mean(values: Iterable[float | None]) -> float | None:
    """Mean of the values that are not None (None when there are none)."""
    kept = [float(v) for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def percentile(values: Iterable[float | None], q: float) -> float | None:
    """The q-th percentile (0-100, linear interpolation) of the values that are not None."""
    kept = [float(v) for v in values if v is not None]
    return float(np.percentile(kept, q)) if kept else None
