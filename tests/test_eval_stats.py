"""Confidence intervals (`eval.stats`) and the citation-validity measure, against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from eval.metrics import citations_valid
from eval.stats import bootstrap_interval, value_interval, wilson_interval


@pytest.mark.parametrize("successes, n, low, high", [
    (0, 10, 0.0, 0.2775),        # Wilson's upper bound at 0/10 (Newcombe 1998, table I)
    (5, 10, 0.2366, 0.7634),
    (10, 10, 0.7225, 1.0),
    (81, 263, 0.2553, 0.3662),   # Newcombe's worked example
])
def test_wilson_matches_published_values(successes, n, low, high):
    assert wilson_interval(successes, n) == pytest.approx((low, high), abs=5e-4)


def test_bootstrap_interval_brackets_the_mean_and_is_repeatable():
    values = np.linspace(0.0, 1.0, 41)
    low, high = bootstrap_interval(values)
    assert low < 0.5 < high and high - low < 0.4
    assert bootstrap_interval(values) == (low, high)


def test_value_interval_picks_wilson_for_rates_and_needs_two_cases():
    assert value_interval(np.array([1.0, 0.0, 1.0, 1.0]))[1] == "wilson"
    assert value_interval(np.array([0.2, 0.9, 0.4]))[1] == "bootstrap"
    assert value_interval(np.array([1.0])) == (None, "-")


@pytest.mark.parametrize("text, cited, valid", [
    ("Momentum damps oscillation [1]. It speeds progress [2].", [1, 2], 1.0),
    ("Momentum damps oscillation [1, 2].", [1, 2], 1.0),
    ("Momentum damps oscillation.", [], 0.0),                     # no marker at all
    ("Momentum damps oscillation [3].", [1, 2], 0.0),              # names no source
    ("See `x[1]`:\n```python\nx[1] = 0\n```\nIt is an index [1].", [1], 1.0),  # code is not a citation
    ("```python\nx[1] = 0\n```", [1], 0.0),
])
def test_citation_validity(text, cited, valid):
    assert citations_valid(text, cited) == valid
