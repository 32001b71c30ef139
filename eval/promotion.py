"""The promotion gate: may this adapter become the course's current one?

    failures = promotion_failures(Path("runs/candidate"), reference_run=Path("runs/current"),
                                  reference_label="the current adapter lora-2", course="dl-intro")

    tutor eval promotion-check runs/candidate --against runs/current --json     # the same, as JSON

A candidate passes when
1. its eval run meets every threshold of the promotion thresholds (`--thresholds`, else the course's
   `eval/thresholds/<course>-promote.toml` when it ships one);
2. no quality metric is distinguishably worse (`eval.compare`: the 95% paired-bootstrap interval of
   candidate - reference lies wholly on the bad side) than the reference run: the current adapter's
   eval run, or the base model's for a course's first promotion.

Each failure is one line naming the metric, the values and the interval, so a refused promotion says
exactly what to fix. Latency is not gated (it measures the machine as much as the adapter).
`tutor adapters promote` (serving) asks this through the `tutor eval promotion-check` command, since
`serving` and `eval` do not import each other.
"""

from __future__ import annotations

from pathlib import Path

from eval.compare import compare_runs, load_run
from eval.gate import check_gate, load_thresholds, run_metrics

THRESHOLDS_DIR = Path(__file__).resolve().parent / "thresholds"
NOT_GATED = ("latency.", "run.")


def default_thresholds(course: str) -> Path | None:
    """`eval/thresholds/<course>-promote.toml` when the course ships one."""
    path = THRESHOLDS_DIR / f"{course}-promote.toml"
    return path if course and path.is_file() else None


def promotion_failures(candidate_run: Path, reference_run: Path | None = None, reference_label: str = "",
                       thresholds: Path | None = None, course: str = "") -> list[str]:
    """One line per reason the candidate's run may not be promoted; [] when it passes."""
    failures = []
    chosen = thresholds or default_thresholds(course)
    if chosen:
        checks = check_gate(run_metrics(candidate_run), load_thresholds(chosen))
        failures += [c.describe() for c in checks if not c.passed]
    if reference_run:
        label = reference_label or f"the reference run {reference_run}"
        comparison = compare_runs(load_run(reference_run), load_run(candidate_run))
        for row in comparison["metrics"]:
            if row["verdict"] == "worse" and not row["metric"].startswith(NOT_GATED):
                failures.append(f"{row['metric']} is worse than {label}: {row['a']:.3f} -> {row['b']:.3f} "
                                f"(95% CI of the change [{row['ci'][0]:+.3f}, {row['ci'][1]:+.3f}])")
    return failures
