"""Retrieval quality on the shipped course's question set, and the policy thresholds it calibrates.

    .venv/bin/python benchmarks/retrieval_quality.py [--data-dir DIR] [--dataset FILE] [--course DIR]
                                                     [--subset PREFIX] [--show-misses] [--json FILE]

Without `--data-dir` the course (default corpus/dl-intro, decks built first) is ingested into a
temporary data dir; with it, the index already there is used (ingest it first with
`tutor ingest corpus/dl-intro --data-dir DIR`).

For the answerable cases (every type but `out_of_scope` and `homework`) and each retrieval mode
(dense only, lexical only, hybrid with reciprocal rank fusion, hybrid with weighted scores) it
prints recall@5 (the share of a case's gold sources found in the top 5, averaged over cases),
hit@5 (the share of cases with at least one gold source in the top 5) and MRR over the top 10. A
retrieved chunk finds a gold source when its path is the gold path and the gold quote occurs in
its text (whitespace collapsed, case folded). A second table breaks recall@5 down by case type, and
a warning names any gold quote that no chunk contains (a dataset bug: retrieval cannot find it).
`--subset ho-` evaluates only the held-out cases (ids starting `ho-`), whose gold sources were
fixed by a content rule before any retrieval run and never revised after one.

It then calibrates the two similarity thresholds of `tutor/policy.py`:
- OUT_OF_SCOPE_SIMILARITY: the top dense similarity of a question to the course (solutions
  excluded), out-of-scope cases against all others;
- HOMEWORK_SIMILARITY: the top dense similarity to assignment and solution chunks, homework cases
  against all others;
printing each group's distribution, the threshold with the best accuracy, and the accuracy of the
threshold currently in the policy.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eval.dataset import DatasetError, EvalCase, GoldSource, load_dataset  # noqa: E402
from ingest.embed import Embedder  # noqa: E402
from ingest.errors import TutorError  # noqa: E402
from ingest.model import Chunk  # noqa: E402
from ingest.store import CourseIndex, load_index  # noqa: E402
from tutor import policy  # noqa: E402
from tutor.retrieve import Retriever  # noqa: E402

K = 5
SEARCH_K = 10
# name -> (fusion, mode) for tutor.retrieve.Retriever
MODES = {
    "dense": ("rrf", "dense"),
    "lexical": ("rrf", "lexical"),
    "hybrid-rrf": ("rrf", "hybrid"),
    "hybrid-weighted": ("weighted", "hybrid"),
}
NOT_RETRIEVAL = ("out_of_scope", "homework")
_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """Whitespace runs collapsed to one space, case folded: how quotes are compared with text."""
    return _SPACE.sub(" ", text).strip().casefold()


def finds(chunk: Chunk, gold: GoldSource) -> bool:
    """Whether a retrieved chunk is (a piece of) the gold source."""
    return chunk.locator.path == gold.path and normalise(gold.quote) in normalise(chunk.text)


def retrieval_cases(cases: list[EvalCase]) -> list[EvalCase]:
    """The cases whose answer retrieval should find: in scope, not homework, with gold sources."""
    return [c for c in cases if c.type not in NOT_RETRIEVAL and c.gold_sources]


@dataclass
class CaseResult:
    id: str
    recall: float          # share of gold sources in the top K
    hit: bool              # at least one gold source in the top K
    reciprocal_rank: float  # 1 / rank of the first chunk that finds a gold source (0 if none in the top SEARCH_K)


def score_hits(case: EvalCase, chunks: list[Chunk], k: int = K) -> CaseResult:
    found = [any(finds(c, g) for c in chunks[:k]) for g in case.gold_sources]
    first = next((rank for rank, c in enumerate(chunks, start=1)
                  if any(finds(c, g) for g in case.gold_sources)), None)
    return CaseResult(case.id, sum(found) / len(found), any(found), 1.0 / first if first else 0.0)


def evaluate_modes(index: CourseIndex, embedder: Embedder, cases: list[EvalCase], k: int = K,
                   modes: dict[str, tuple[str, str]] | None = None) -> dict[str, dict]:
    """Per retrieval mode: recall@k, hit@k and MRR@SEARCH_K over the retrieval cases of `cases`,
    and the ids of the cases whose gold sources were not all found (`misses`)."""
    cases = retrieval_cases(cases)
    if not cases:
        raise DatasetError("no answerable case with gold sources to evaluate; check the dataset (or --subset)")
    vectors = {c.id: embedder.encode_query(c.question) for c in cases}  # shared by every mode
    results: dict[str, dict] = {}
    for name, (fusion, mode) in (modes or MODES).items():
        retriever = Retriever(index, embedder, fusion=fusion)
        per_case = []
        for case in cases:
            hits = retriever.search(case.question, k=max(SEARCH_K, k), mode=mode, query_vector=vectors[case.id])
            per_case.append(score_hits(case, [h.chunk for h in hits], k))
        by_type: dict[str, list[float]] = {}
        for case, r in zip(cases, per_case):
            by_type.setdefault(case.type, []).append(r.recall)
        results[name] = {
            f"recall@{k}": float(np.mean([r.recall for r in per_case])),
            f"hit@{k}": float(np.mean([r.hit for r in per_case])),
            "mrr": float(np.mean([r.reciprocal_rank for r in per_case])),
            "cases": len(per_case),
            f"recall@{k}_by_type": {t: float(np.mean(v)) for t, v in sorted(by_type.items())},
            "misses": [r.id for r in per_case if r.recall < 1.0],
        }
    return results


def unreachable_gold(index: CourseIndex, cases: list[EvalCase]) -> list[str]:
    """Gold sources that no chunk of the index contains (the quote straddles a chunk boundary, or
    the source changed): retrieval can never find them, so they are dataset bugs to fix."""
    return [f"{c.id}: {g.path}" for c in retrieval_cases(cases) for g in c.gold_sources
            if not any(finds(chunk, g) for chunk in index.chunks)]


def top_similarities(index: CourseIndex, embedder: Embedder, cases: list[EvalCase],
                     kinds: list[str] | None = None) -> dict[str, float]:
    """Per case id, the highest dense similarity of its question to the allowed chunks."""
    retriever = Retriever(index, embedder)
    top = {}
    for case in cases:
        hits = retriever.search(case.question, k=1, kinds=kinds, mode="dense")
        top[case.id] = max((h.dense for h in hits), default=0.0)
    return top


def best_threshold(above: list[float], below: list[float]) -> tuple[float, float, tuple[float, float]]:
    """The threshold t that best separates `above` (should score >= t) from `below` (< t), its
    accuracy over both groups, and the interval (low, high] of thresholds that are just as accurate.

    Candidates are the midpoints between neighbouring observed scores (and one below and above all
    of them). Of the longest run of equally accurate neighbouring candidates, the middle one is
    returned: the threshold farthest from the scores on both sides of it."""
    scores = sorted(set(above) | set(below))
    candidates = [scores[0] - 1e-6] + [(a + b) / 2 for a, b in zip(scores, scores[1:])] + [scores[-1] + 1e-6]
    accuracy = [threshold_accuracy(t, above, below) for t in candidates]
    best = max(accuracy)
    runs: list[list[int]] = []  # runs of neighbouring candidate indices with the best accuracy
    for i, acc in enumerate(accuracy):
        if acc == best:
            if runs and runs[-1][-1] == i - 1:
                runs[-1].append(i)
            else:
                runs.append([i])
    run = max(runs, key=len)
    # candidate i sits between scores[i - 1] and scores[i], so the run spans these scores
    low = scores[run[0] - 1] if run[0] > 0 else candidates[0]
    high = scores[run[-1]] if run[-1] < len(scores) else candidates[-1]
    return float(candidates[run[len(run) // 2]]), best, (float(low), float(high))


def threshold_accuracy(t: float, above: list[float], below: list[float]) -> float:
    right = sum(s >= t for s in above) + sum(s < t for s in below)
    return right / (len(above) + len(below))


def calibrate(index: CourseIndex, embedder: Embedder, cases: list[EvalCase]) -> dict[str, dict]:
    """The out-of-scope and homework similarity thresholds that best fit the question set.

    The homework threshold is fitted to the policy's whole rule: a question that names its assignment
    ("hw1", "homework 2") matches whatever its similarity, so it counts as scoring 1.0 there; the
    printed distributions are the raw similarities."""
    assignments = index.course.assignments
    named = {c.id: policy.match_assignment(c.question, assignments, []) is not None for c in cases}
    scope = top_similarities(index, embedder, cases)
    homework = top_similarities(index, embedder, cases, kinds=["assignment", "solution"])
    homework_rule = {i: 1.0 if named[i] else s for i, s in homework.items()}
    out = {}
    for name, raw, rule, positive, current in (
        ("out_of_scope", scope, scope, lambda c: c.type != "out_of_scope", policy.OUT_OF_SCOPE_SIMILARITY),
        ("homework", homework, homework_rule, lambda c: c.type == "homework", policy.HOMEWORK_SIMILARITY),
    ):
        above = [rule[c.id] for c in cases if positive(c)]
        below = [rule[c.id] for c in cases if not positive(c)]
        if not above or not below:
            continue  # a subset without both kinds of case calibrates nothing
        threshold, accuracy, optimal = best_threshold(above, below)
        out[name] = {
            "above": [raw[c.id] for c in cases if positive(c)], "below": [raw[c.id] for c in cases if not positive(c)],
            "best_threshold": threshold, "best_accuracy": accuracy, "optimal_range": optimal,
            "current_threshold": current, "current_accuracy": threshold_accuracy(current, above, below),
            "named": sum(named[c.id] for c in cases if positive(c)) if name == "homework" else 0,
            "wrong_at_best": [c.id for c in cases if (rule[c.id] >= threshold) != positive(c)],
        }
    return out


def describe(values: list[float]) -> str:
    if not values:
        return "(none)"
    q = np.percentile(values, [0, 25, 50, 75, 100])
    return f"n={len(values):3d}  min {q[0]:.3f}  p25 {q[1]:.3f}  median {q[2]:.3f}  p75 {q[3]:.3f}  max {q[4]:.3f}"


def format_report(results: dict[str, dict], calibration: dict[str, dict], k: int = K) -> str:
    cases = next(iter(results.values()))["cases"]
    lines = [f"Retrieval on {cases} answerable cases (top {k}; MRR over the top {SEARCH_K})", "",
             f"{'mode':<16} {f'recall@{k}':>9} {f'hit@{k}':>7} {'MRR':>6}"]
    for name, r in results.items():
        lines.append(f"{name:<16} {r[f'recall@{k}']:>9.3f} {r[f'hit@{k}']:>7.3f} {r['mrr']:>6.3f}")
    types = sorted({t for r in results.values() for t in r[f"recall@{k}_by_type"]})
    lines += ["", f"recall@{k} by case type", f"{'mode':<16} " + " ".join(f"{t[:10]:>10}" for t in types)]
    for name, r in results.items():
        by_type = r[f"recall@{k}_by_type"]
        lines.append(f"{name:<16} " + " ".join(f"{by_type.get(t, float('nan')):>10.3f}" for t in types))
    labels = {
        "out_of_scope": ("OUT_OF_SCOPE_SIMILARITY: top dense similarity to the course",
                         "in scope (all but out_of_scope)", "out_of_scope"),
        "homework": ("HOMEWORK_SIMILARITY: top dense similarity to assignment/solution chunks",
                     "homework", "all other cases"),
    }
    for name, c in calibration.items():
        title, above, below = labels[name]
        lines += ["", title,
                  f"  {above:<34} {describe(c['above'])}",
                  f"  {below:<34} {describe(c['below'])}",
                  f"  best threshold {c['best_threshold']:.3f}: accuracy {c['best_accuracy']:.3f}"
                  f" (as accurate for any threshold above {c['optimal_range'][0]:.3f} and up to "
                  f"{c['optimal_range'][1]:.3f})",
                  f"  wrong at the best threshold: {', '.join(c['wrong_at_best']) or '-'}",
                  f"  current policy {c['current_threshold']:.3f}: accuracy {c['current_accuracy']:.3f}"]
    if "homework" in calibration:
        named = calibration["homework"]["named"]
        lines.append(f"  ({named} of {len(calibration['homework']['above'])} homework questions name their assignment; "
                     "policy.match_assignment matches those whatever their similarity, and the accuracies count that)")
    return "\n".join(lines)


def _build_decks(course_dir: Path) -> None:
    script = ROOT / "corpus" / "build_decks.py"
    spec = importlib.util.spec_from_file_location("build_decks", script)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    module.build_course_decks(course_dir)


def open_index(course_dir: Path, data_dir: Path | None, embedder: Embedder, workdir: Path) -> CourseIndex:
    """The course's index from `data_dir`, or a fresh ingest into `workdir` when none is given."""
    from ingest.course import load_course
    from ingest.pipeline import IngestOptions, ingest_course

    if data_dir is None:
        _build_decks(course_dir)
        data_dir = workdir / "data"
        report = ingest_course(course_dir, IngestOptions(data_dir=data_dir), embedder=embedder)
        print(report.summary(), file=sys.stderr)
    return load_index(Path(data_dir) / "index", load_course(course_dir).id)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, default=ROOT / "eval" / "datasets" / "dl-intro.jsonl")
    parser.add_argument("--course", type=Path, default=ROOT / "corpus" / "dl-intro")
    parser.add_argument("--data-dir", type=Path, default=None, help="use the index already ingested here")
    parser.add_argument("--subset", default="", metavar="PREFIX",
                        help="only the cases whose id starts with PREFIX (e.g. ho- for the held-out cases)")
    parser.add_argument("--show-misses", action="store_true", help="list the cases each mode missed")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    args = parser.parse_args(argv)

    try:
        cases = [c for c in load_dataset(args.dataset) if c.id.startswith(args.subset)]
        embedder = Embedder()
        with tempfile.TemporaryDirectory(prefix="retrieval-quality-") as tmp:
            index = open_index(args.course, args.data_dir, embedder, Path(tmp))
            unreachable = unreachable_gold(index, cases)
            results = evaluate_modes(index, embedder, cases)
            calibration = calibrate(index, embedder, cases)
    except TutorError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for where in unreachable:
        print(f"warning: no chunk contains the gold quote of {where}", file=sys.stderr)
    print(format_report(results, calibration))
    if args.show_misses:
        for name, r in results.items():
            print(f"\n{name} missed ({len(r['misses'])}): {', '.join(r['misses']) or '-'}")
    if args.json:
        args.json.write_text(json.dumps({
            "dataset": str(args.dataset), "course": str(args.course), "embedder": embedder.describe(),
            "subset": args.subset, "index_built_at": index.manifest.built_at, "unreachable_gold": unreachable,
            "retrieval": results, "calibration": calibration,
        }, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
