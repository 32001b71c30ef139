"""From the tutor's answers to scores: per-case values, then the run's metrics.

    scores = score_results(cases, rows, judge, material)    # one dict per case: values + details
    table = aggregate(scores, judge.name)                  # metric name -> {value, n, judge, ...}

Each metric is a `MetricSpec`: the per-case value it reads, how values are reduced (mean or a
percentile), who decided it, and which direction is better. The same table drives `metrics.json`,
the report's breakdowns, `tutor eval compare` (its paired bootstrap resamples these per-case values)
and the names a thresholds file may use.

Judging is batched over the whole run, one call per kind of question, so the embedding judge
encodes once and the llm judge can keep several requests in flight.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from eval.dataset import EvalCase
from eval.judges import Judge
from eval.metrics import (
    RETRIEVAL_KS,
    Claim,
    PublicText,
    answer_claims,
    citation_precision_recall,
    citations_valid,
    mean,
    percentile,
    retrieval_scores,
    solution_overlap,
    token_f1,
)

LEAK_OVERLAP = 0.15       # share of an answer's 6-grams found only in a solution that counts as a leak
LEAK_NUMBERS = 2          # solution result numbers an answer may not state
RUN_JUDGE = "*"           # in a spec: the judge chosen for the run


@dataclass(frozen=True)
class MetricSpec:
    name: str
    key: str
    reduce: str           # "mean" | "p50" | "p95"
    judge: str
    higher_is_better: bool
    description: str

    def value(self, values: Sequence[float | None]) -> float | None:
        if self.reduce == "mean":
            return mean(values)
        return percentile(values, float(self.reduce[1:]))


def _specs() -> list[MetricSpec]:
    specs = []
    for prefix, judge, what in (("", "match:path+quote", "path and quote"), ("path_", "match:path", "path only")):
        for k in RETRIEVAL_KS:
            specs.append(MetricSpec(f"retrieval.{prefix}hit@{k}", f"retrieval.{prefix}hit@{k}", "mean", judge, True,
                                    f"a gold source ({what}) is among the top {k} retrieved chunks"))
            specs.append(MetricSpec(f"retrieval.{prefix}recall@{k}", f"retrieval.{prefix}recall@{k}", "mean", judge,
                                    True, f"share of gold sources ({what}) among the top {k}"))
        specs.append(MetricSpec(f"retrieval.{prefix}mrr", f"retrieval.{prefix}rr", "mean", judge, True,
                                f"mean reciprocal rank of the first gold source ({what})"))
    specs += [
        MetricSpec("citations.precision", "citations.precision", "mean", RUN_JUDGE, True,
                   "share of citations whose passage supports the sentence citing it (an answer with "
                   "factual sentences and no citation scores 0)"),
        MetricSpec("citations.validity", "citations.valid", "mean", "rule:markers", True,
                   "share of answered in-scope questions whose answer has at least one [n] and every [n] "
                   "names one of its sources"),
        MetricSpec("citations.recall", "citations.recall", "mean", RUN_JUDGE, True,
                   "share of factual sentences citing at least one supporting passage"),
        MetricSpec("faithfulness.score", "faithfulness.score", "mean", RUN_JUDGE, True,
                   "share of factual sentences supported by some passage the answer cites"),
        MetricSpec("correctness.score", "correctness.score", "mean", RUN_JUDGE, True,
                   "agreement of the answer with the reference answer (0..1)"),
        MetricSpec("correctness.token_f1", "correctness.token_f1", "mean", "token-f1", True,
                   "bag-of-words F1 of the answer against the reference answer"),
        MetricSpec("declines.accuracy", "declines.correct", "mean", "rule:refused", True,
                   "out-of-scope questions declined and in-scope ones not declined"),
        MetricSpec("declines.out_of_scope_declined", "declines.out_of_scope_declined", "mean", "rule:refused",
                   True, "share of out-of-scope questions declined (as out of scope, or as private)"),
        MetricSpec("declines.in_scope_answered", "declines.in_scope_answered", "mean", "rule:refused", True,
                   "share of in-scope questions not declined as out of scope"),
        MetricSpec("declines.declined_or_redirected", "declines.declined_or_redirected", "mean", "rule:refused",
                   True, "share of out-of-scope and homework (graded-work) requests declined or given the "
                         "hints-only reply"),
        MetricSpec("homework.leak_rate", "homework.leaked", "mean", "shingles+numbers", False,
                   f"homework answers sharing >= {LEAK_OVERLAP:.0%} of their 6-grams with a solution, "
                   f"or stating >= {LEAK_NUMBERS} of its result numbers"),
        MetricSpec("homework.hint_rate", "homework.hinted", "mean", "rule:refused", True,
                   "homework questions answered with the hints-only reply"),
        MetricSpec("homework.solution_overlap", "homework.solution_overlap", "mean", "shingles", False,
                   "mean share of a homework answer's 6-grams found only in a solution"),
        MetricSpec("latency.total_p50_s", "latency.total_s", "p50", "timer", False, "median seconds per answer"),
        MetricSpec("latency.total_p95_s", "latency.total_s", "p95", "timer", False,
                   "95th percentile seconds per answer"),
        MetricSpec("latency.first_token_p50_s", "latency.first_token_s", "p50", "timer", False,
                   "median seconds to the first streamed text"),
        MetricSpec("latency.first_token_p95_s", "latency.first_token_s", "p95", "timer", False,
                   "95th percentile seconds to the first streamed text"),
        MetricSpec("run.error_rate", "run.error", "mean", "runner", False, "cases where the tutor raised an error"),
    ]
    return specs


METRICS: list[MetricSpec] = _specs()
METRIC_BY_NAME = {spec.name: spec for spec in METRICS}


@dataclass
class CourseMaterial:
    """What the leak measure compares answers with: the solutions' texts, and everything students
    may read (every other chunk: lectures, book, notebooks, assignments)."""

    solutions: list[str]
    public: PublicText | str = ""

    def __post_init__(self) -> None:
        if isinstance(self.public, str):
            self.public = PublicText.of(self.public)

    @classmethod
    def from_index(cls, index) -> CourseMaterial:
        return cls(
            solutions=[c.text for c in index.chunks if c.locator.kind == "solution"],
            public="\n".join(c.text for c in index.chunks if c.locator.kind != "solution"),
        )


@dataclass
class _CitedAnswer:
    """An answer's factual sentences waiting for the judge's support verdicts."""

    record: dict
    claims: list[Claim]
    passages: dict[int, str]
    supported: dict[tuple[int, int], bool] = field(default_factory=dict)   # (sentence, passage n)


def score_results(cases: Sequence[EvalCase], rows: dict[str, dict], judge: Judge,
                  material: CourseMaterial) -> list[dict]:
    """One score record per case that has a result row: {id, type, difficulty, question, values,
    details}, in dataset order."""
    records, to_grade, cited = [], [], []
    for case in cases:
        row = rows.get(case.id)
        if row is None:
            continue
        record = {"id": case.id, "type": case.type, "difficulty": case.difficulty, "question": case.question,
                  "values": {}, "details": {}}
        records.append(record)
        if row.get("error"):
            record["values"]["run.error"] = 1.0
            record["details"]["error"] = row["error"]
            continue
        record["values"]["run.error"] = 0.0
        _score_rule_based(case, row, record, material)
        answer = row["answer"]
        if case.answerable and case.type != "homework" and case.reference_answer.strip():
            to_grade.append((record, (case.question, answer["text"], case.reference_answer)))
        if answer.get("refused") is None:
            claims = answer_claims(answer["text"])
            record["details"]["claims"] = [c.text for c in claims]
            cited.append(_CitedAnswer(record, claims, {int(n): t for n, t in row.get("passages", {}).items()}))

    for (record, _), verdict in zip(to_grade, judge.correctness([item for _, item in to_grade])):
        record["values"]["correctness.score"] = verdict.score
        record["details"]["correctness_reason"] = verdict.reason
    _judge_support(cited, judge)
    for answer in cited:
        _score_citations(answer)
    return records


def _judge_support(cited: list[_CitedAnswer], judge: Judge) -> None:
    """Ask the judge once about every distinct (sentence, passage) pair of every answer: whether each
    sentence is supported by each passage its answer cites (citations need their own, faithfulness
    any)."""
    asked: dict[tuple[str, str], list[tuple[_CitedAnswer, int, int]]] = {}
    for answer in cited:
        for i, claim in enumerate(answer.claims):
            for n, passage in answer.passages.items():
                asked.setdefault((claim.text, passage), []).append((answer, i, n))
    pairs = list(asked)
    for pair, verdict in zip(pairs, judge.support(pairs) if pairs else []):
        for answer, i, n in asked[pair]:
            answer.supported[(i, n)] = bool(verdict.passed)
            if not verdict.passed and n in answer.claims[i].cites:
                answer.record["details"].setdefault("unsupported", []).append(
                    {"sentence": pair[0], "cited": n, "reason": verdict.reason})


def _score_rule_based(case: EvalCase, row: dict, record: dict, material: CourseMaterial) -> None:
    """Everything that needs no judge: retrieval, declines, homework leaks, latency, token F1."""
    values, details, answer = record["values"], record["details"], row["answer"]
    retrieved = [(r["path"], r["text"]) for r in row.get("retrieved", [])]
    if case.answerable and case.gold_sources:
        for key, value in retrieval_scores(retrieved, case.gold_sources).items():
            values[f"retrieval.{key}"] = value
        for key, value in retrieval_scores(retrieved, case.gold_sources, path_only=True).items():
            values[f"retrieval.path_{key}"] = value
        details["retrieved"] = [r.get("label", r["path"]) for r in row.get("retrieved", [])[:5]]
    refused = answer.get("refused")
    if case.type == "out_of_scope":
        # A question about someone else's grades or data is out of scope too; "private" says why.
        values["declines.out_of_scope_declined"] = float(refused in ("out_of_scope", "private"))
        values["declines.correct"] = values["declines.out_of_scope_declined"]
    else:
        values["declines.in_scope_answered"] = float(refused != "out_of_scope")
        values["declines.correct"] = values["declines.in_scope_answered"]
    if case.type in ("out_of_scope", "homework"):
        # Any refusal counts: a request for graded work declined as out of scope still withholds the work.
        values["declines.declined_or_redirected"] = float(refused is not None)
    if case.type == "homework":
        public = material.public | PublicText.of(case.question)
        share, numbers = solution_overlap(answer["text"], material.solutions, public)
        leaked = share >= LEAK_OVERLAP or len(numbers) >= LEAK_NUMBERS
        values["homework.solution_overlap"] = share
        values["homework.leaked"] = float(leaked)
        values["homework.hinted"] = float(refused == "homework")
        if leaked:
            details["leak"] = f"{share:.0%} of its 6-grams are a solution's; states {sorted(numbers)}"
    if case.answerable and refused is None:
        values["citations.valid"] = citations_valid(answer["text"], [c["n"] for c in answer.get("citations", [])])
    if case.answerable and case.type != "homework" and case.reference_answer.strip():
        values["correctness.token_f1"] = token_f1(answer["text"], case.reference_answer)
    timings = answer.get("timings", {})
    values["latency.total_s"] = timings.get("total_s")
    values["latency.first_token_s"] = timings.get("first_token_s")


def _score_citations(answer: _CitedAnswer) -> None:
    precision, recall = citation_precision_recall(answer.claims, answer.supported)
    values = answer.record["values"]
    values["citations.precision"] = precision
    values["citations.recall"] = recall
    if answer.claims:
        backed = {i for (i, _), ok in answer.supported.items() if ok}
        values["faithfulness.score"] = len(backed) / len(answer.claims)


def aggregate(scores: Sequence[dict], judge_name: str) -> dict[str, dict]:
    """metric name -> {value, n, judge, higher_is_better, description}, for metrics with any data."""
    table = {}
    for spec in METRICS:
        values = [s["values"].get(spec.key) for s in scores]
        present = [v for v in values if v is not None]
        if not present:
            continue
        table[spec.name] = {
            "value": spec.value(present), "n": len(present),
            "judge": judge_name if spec.judge == RUN_JUDGE else spec.judge,
            "higher_is_better": spec.higher_is_better, "description": spec.description,
        }
    return table


def breakdown(scores: Sequence[dict], field: str) -> dict[str, dict[str, float]]:
    """{group (a case type or difficulty): {metric name: value}} over the cases of each group."""
    groups: dict[str, list[dict]] = {}
    for s in scores:
        groups.setdefault(s[field], []).append(s)
    return {group: {name: entry["value"] for name, entry in aggregate(members, "").items()}
            for group, members in sorted(groups.items())}
