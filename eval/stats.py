"""Confidence intervals for a run's metrics: Wilson for yes/no rates, a bootstrap for the rest.

    wilson_interval(successes=17, n=20)              # (0.64, 0.95): 95% interval of a proportion
    value_interval(np.array(per_case_values), spec)  # Wilson when every value is 0 or 1, else bootstrap

Wilson's interval stays inside [0, 1] and is honest at 0/20 or 20/20, where the normal approximation
claims certainty. The bootstrap resamples cases with replacement with a fixed seed, so the same run
always reports the same interval. `eval.compare` puts these next to each side's value and its own
paired bootstrap around the difference.
"""

from __future__ import annotations

import math

import numpy as np

Z95 = 1.959963984540054  # two-sided 95% quantile of the standard normal
BOOTSTRAP_SAMPLES = 2000
SEED = 0


def wilson_interval(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion `successes / n` (n >= 1)."""
    if n < 1:
        raise ValueError(f"n must be 1 or more, got {n}")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def bootstrap_interval(values: np.ndarray, reduce: str = "mean", samples: int = BOOTSTRAP_SAMPLES,
                       seed: int = SEED) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the mean (or of `pNN`, a percentile) over the cases."""
    rng = np.random.default_rng(seed)
    picks = values[rng.integers(0, len(values), size=(samples, len(values)))]
    stats = picks.mean(axis=1) if reduce == "mean" else np.percentile(picks, float(reduce[1:]), axis=1)
    low, high = np.percentile(stats, [2.5, 97.5])
    return float(low), float(high)


def value_interval(values: np.ndarray, reduce: str = "mean") -> tuple[tuple[float, float] | None, str]:
    """The 95% interval of a metric over its per-case values and the method's name; None for n < 2."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return None, "-"
    if reduce == "mean" and np.isin(values, (0.0, 1.0)).all():
        return wilson_interval(float(values.sum()), len(values)), "wilson"
    return bootstrap_interval(values, reduce), "bootstrap"
