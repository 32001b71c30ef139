"""Two eval runs side by side: each metric's delta with a paired bootstrap 95% CI, each side's own
95% CI (`eval.stats`: Wilson for yes/no rates, else bootstrap), and flipped cases.

    comparison = compare_runs(load_run("runs/base"), load_run("runs/lora"))
    print(comparison_markdown(comparison))

The bootstrap is paired by case id: it resamples the cases both runs scored (with replacement, a
fixed seed, so the same two runs always give the same interval) and recomputes each metric on both
sides of the same sample. A CI that excludes 0 is a difference the question set can tell apart.
A case "flips" when it passes in one run and fails in the other on one of `FLIP_RULES`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from eval.scoring import METRICS, MetricSpec
from eval.stats import value_interval
from ingest.errors import TutorError

BOOTSTRAP_SAMPLES = 2000
SEED = 0
# per-case key -> (pass test, what passing means)
FLIP_RULES = {
    "correctness.score": (lambda v: v >= 0.5, "correct (score >= 0.5)"),
    "retrieval.hit@5": (lambda v: v >= 1.0, "a gold source in the top 5"),
    "declines.correct": (lambda v: v >= 1.0, "declined exactly when out of scope"),
    "homework.leaked": (lambda v: v < 1.0, "no solution leak"),
    "citations.recall": (lambda v: v >= 0.5, "most sentences cite a supporting passage"),
}


class RunNotFoundError(TutorError, FileNotFoundError):
    """A folder given as an eval run holds no finished run."""


@dataclass
class StoredRun:
    path: Path
    metrics: dict[str, dict]
    scores: dict[str, dict]        # by case id
    settings: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        backend = self.settings.get("backend", {})
        return f"{self.path.name} ({backend.get('name', '?')} {backend.get('model', '')})".replace(" )", ")")


def load_run(path: str | Path) -> StoredRun:
    path = Path(path)
    metrics_file, scores_file = path / "metrics.json", path / "scores.jsonl"
    if not metrics_file.is_file() or not scores_file.is_file():
        raise RunNotFoundError(
            f"{path} is not a finished eval run (no metrics.json/scores.jsonl); run `tutor eval DATASET --out {path}`")
    scores = {}
    for line in scores_file.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            scores[record["id"]] = record
    settings_file = path / "settings.json"
    settings = json.loads(settings_file.read_text(encoding="utf-8")) if settings_file.is_file() else {}
    return StoredRun(path, json.loads(metrics_file.read_text(encoding="utf-8"))["metrics"], scores, settings)


def paired_bootstrap(a: np.ndarray, b: np.ndarray, spec: MetricSpec, samples: int = BOOTSTRAP_SAMPLES,
                     seed: int = SEED) -> tuple[float, float]:
    """95% interval of spec(b) - spec(a) over paired resamples of the cases (rows of a and b align)."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(a), size=(samples, len(a)))
    if spec.reduce == "mean":
        deltas = b[picks].mean(axis=1) - a[picks].mean(axis=1)
    else:
        q = float(spec.reduce[1:])
        deltas = np.percentile(b[picks], q, axis=1) - np.percentile(a[picks], q, axis=1)
    low, high = np.percentile(deltas, [2.5, 97.5])
    return float(low), float(high)


def compare_runs(a: StoredRun, b: StoredRun, samples: int = BOOTSTRAP_SAMPLES, seed: int = SEED) -> dict:
    """{"metrics": [row per metric], "flips": [...], "paired_cases": n}; a row holds both values, the
    delta (b - a), its CI over the paired cases, and whether b is better, worse or not distinguishable."""
    common = sorted(set(a.scores) & set(b.scores))
    rows = []
    for spec in METRICS:
        if spec.name not in a.metrics and spec.name not in b.metrics:
            continue
        value_a = a.metrics.get(spec.name, {}).get("value")
        value_b = b.metrics.get(spec.name, {}).get("value")
        pairs = [(a.scores[i]["values"].get(spec.key), b.scores[i]["values"].get(spec.key)) for i in common]
        pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
        row = {"metric": spec.name, "a": value_a, "b": value_b,
               "a_ci": _side_interval(a, spec), "b_ci": _side_interval(b, spec),
               "delta": None if value_a is None or value_b is None else value_b - value_a,
               "ci": None, "paired": len(pairs), "verdict": "n/a"}
        if len(pairs) >= 2:
            xs, ys = np.array(pairs, dtype=float).T
            low, high = paired_bootstrap(xs, ys, spec, samples, seed)
            row["ci"] = [low, high]
            row["verdict"] = _verdict(low, high, spec.higher_is_better)
        rows.append(row)
    return {"a": str(a.path), "b": str(b.path), "paired_cases": len(common), "metrics": rows,
            "flips": flipped_cases(a, b, common), "seed": seed, "samples": samples}


def _side_interval(run: StoredRun, spec: MetricSpec) -> list[float] | None:
    """95% interval of one run's metric over its own cases (Wilson for 0/1 values, else bootstrap)."""
    values = [s["values"].get(spec.key) for s in run.scores.values()]
    interval, _ = value_interval(np.array([v for v in values if v is not None], dtype=float), spec.reduce)
    return list(interval) if interval else None


def _verdict(low: float, high: float, higher_is_better: bool) -> str:
    if low <= 0 <= high:
        return "same"
    improved = low > 0 if higher_is_better else high < 0
    return "better" if improved else "worse"


def flipped_cases(a: StoredRun, b: StoredRun, ids: list[str]) -> list[dict]:
    """Cases passing in one run and failing in the other, per rule: "fixed" (fail -> pass) or "broke"."""
    flips = []
    for case_id in ids:
        va, vb = a.scores[case_id]["values"], b.scores[case_id]["values"]
        for key, (passes, meaning) in FLIP_RULES.items():
            if va.get(key) is None or vb.get(key) is None:
                continue
            before, after = passes(va[key]), passes(vb[key])
            if before != after:
                flips.append({"id": case_id, "question": a.scores[case_id].get("question", ""), "rule": meaning,
                              "key": key, "a": va[key], "b": vb[key], "change": "fixed" if after else "broke"})
    return flips


def comparison_markdown(comparison: dict) -> str:
    def num(v) -> str:
        return "-" if v is None else f"{v:.3f}"

    def side(value, interval) -> str:
        return num(value) + (f" [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else "")

    lines = [f"A: {comparison['a']}", f"B: {comparison['b']}",
             f"{comparison['paired_cases']} cases in both. A and B: value [95% CI over the run's cases: Wilson "
             "for yes/no rates, else bootstrap]; B - A: 95% CI by paired bootstrap "
             f"({comparison['samples']} resamples, seed {comparison['seed']})", "",
             "| metric | A | B | B - A | 95% CI | verdict |", "|---|---|---|---|---|---|"]
    for row in comparison["metrics"]:
        ci = f"[{row['ci'][0]:+.3f}, {row['ci'][1]:+.3f}]" if row["ci"] else "-"
        delta = "-" if row["delta"] is None else f"{row['delta']:+.3f}"
        lines.append(f"| {row['metric']} | {side(row['a'], row.get('a_ci'))} | {side(row['b'], row.get('b_ci'))} "
                     f"| {delta} | {ci} | {row['verdict']} |")
    flips = comparison["flips"]
    lines += ["", f"## Flipped cases ({sum(f['change'] == 'fixed' for f in flips)} fixed, "
                  f"{sum(f['change'] == 'broke' for f in flips)} broke)", ""]
    lines += [f"- {f['change']}: {f['id']} ({f['rule']}: {num(f['a'])} -> {num(f['b'])}) {f['question']}"
              for f in flips]
    return "\n".join(lines) + "\n"
