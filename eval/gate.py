"""The regression gate: a run's metrics against a thresholds file; CI fails when one is missed.

    tutor eval gate runs/nightly --thresholds eval/thresholds/dl-intro.toml    # exit 1 on a miss

A thresholds file names metrics of `metrics.json` with their floor or ceiling:

    [min]
    "retrieval.recall@5" = 0.8
    "declines.accuracy" = 0.9

    [max]
    "homework.leak_rate" = 0.0
    "latency.total_p95_s" = 2.0

A metric named in the file but missing from the run fails too: a gate that silently skips what it
cannot see would pass a run that measured nothing.
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path

from eval.scoring import METRIC_BY_NAME
from ingest.errors import ConfigError

BOUNDS = ("min", "max")


@dataclass(frozen=True)
class GateCheck:
    metric: str
    bound: str            # "min" | "max"
    threshold: float
    value: float | None   # None: the run has no such metric

    @property
    def passed(self) -> bool:
        if self.value is None or math.isnan(self.value):
            return False
        return self.value >= self.threshold if self.bound == "min" else self.value <= self.threshold

    def describe(self) -> str:
        if self.value is None:
            return f"{self.metric}: not measured by this run (threshold {self.bound} {self.threshold:g})"
        sign = ">=" if self.bound == "min" else "<="
        verdict = "ok" if self.passed else "FAIL"
        return f"{verdict} {self.metric} = {self.value:.4g} (needs {sign} {self.threshold:g})"


def load_thresholds(path: str | Path) -> dict[str, dict[str, float]]:
    """{"min": {metric: value}, "max": {...}} from a TOML file; unknown tables, metric names or
    non-numbers are a `ConfigError` naming them."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"thresholds file not found: {path}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    unknown = set(data) - set(BOUNDS)
    if unknown:
        raise ConfigError(f"{path}: unknown table(s) {sorted(unknown)}; use [min] and [max]")
    thresholds: dict[str, dict[str, float]] = {}
    for bound in BOUNDS:
        table = data.get(bound, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [{bound}] must be a table of \"metric\" = number")
        for name, value in table.items():
            if name not in METRIC_BY_NAME:
                raise ConfigError(f"{path}: [{bound}] names unknown metric {name!r}; "
                                  f"known: {', '.join(sorted(METRIC_BY_NAME))}")
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{path}: [{bound}] {name!r} must be a number, got {value!r}")
        thresholds[bound] = {name: float(value) for name, value in table.items()}
    if not any(thresholds.values()):
        raise ConfigError(f"{path} sets no thresholds; add a [min] or [max] table")
    return thresholds


def run_metrics(run_dir: str | Path) -> dict[str, float]:
    """metric name -> value from `<run_dir>/metrics.json`."""
    path = Path(run_dir) / "metrics.json"
    if not path.is_file():
        raise ConfigError(f"no metrics.json in {run_dir}; run `tutor eval DATASET --out {run_dir}` first")
    metrics = json.loads(path.read_text(encoding="utf-8"))["metrics"]
    return {name: entry["value"] for name, entry in metrics.items()}


def check_gate(metrics: dict[str, float | None], thresholds: dict[str, dict[str, float]]) -> list[GateCheck]:
    """One check per threshold, in file order (min first)."""
    return [GateCheck(name, bound, threshold, metrics.get(name))
            for bound in BOUNDS for name, threshold in thresholds.get(bound, {}).items()]
