"""Comparing stored runs (known deltas, paired bootstrap CIs, flipped cases) and gating them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from eval.compare import compare_runs, load_run, paired_bootstrap
from eval.gate import check_gate, load_thresholds
from eval.scoring import METRIC_BY_NAME, aggregate
from ingest.errors import ConfigError
from tutor.cli import app


def store_run(folder, per_case: dict[str, dict[str, float]], backend="extractive"):
    """A finished run folder from per-case values, its metrics computed by the real aggregation."""
    folder.mkdir(parents=True)
    scores = [{"id": cid, "type": "factual", "difficulty": "easy", "question": f"question {cid}", "values": values,
               "details": {}} for cid, values in per_case.items()]
    (folder / "scores.jsonl").write_text("".join(json.dumps(s) + "\n" for s in scores))
    (folder / "metrics.json").write_text(json.dumps({"metrics": aggregate(scores, "lexical")}))
    (folder / "settings.json").write_text(json.dumps({"backend": {"name": backend, "model": ""}}))
    return folder


@pytest.fixture
def two_runs(tmp_path):
    """B improves correctness by exactly 0.2 on every case, fixes one retrieval miss, breaks a decline."""
    a, b = {}, {}
    for i in range(20):
        a[f"c{i}"] = {"correctness.score": 0.3 + 0.02 * i, "retrieval.hit@5": 1.0 if i else 0.0,
                      "declines.correct": 1.0, "latency.total_s": 1.0 + i}
        b[f"c{i}"] = {"correctness.score": 0.5 + 0.02 * i, "retrieval.hit@5": 1.0,
                      "declines.correct": 0.0 if i == 7 else 1.0, "latency.total_s": 1.0 + i}
    b["only-in-b"] = {"correctness.score": 1.0}
    return load_run(store_run(tmp_path / "a", a)), load_run(store_run(tmp_path / "b", b, backend="openai"))


def test_compare_known_delta_with_bootstrap_ci(two_runs):
    comparison = compare_runs(*two_runs)
    rows = {r["metric"]: r for r in comparison["metrics"]}
    assert comparison["paired_cases"] == 20
    correctness = rows["correctness.score"]
    # the delta of the means includes the unpaired case; the CI is over the 20 paired ones, all +0.2
    assert correctness["delta"] == pytest.approx((sum(0.5 + 0.02 * i for i in range(20)) + 1.0) / 21
                                                 - sum(0.3 + 0.02 * i for i in range(20)) / 20)
    assert correctness["ci"] == pytest.approx([0.2, 0.2]) and correctness["verdict"] == "better"
    assert rows["retrieval.hit@5"]["delta"] == pytest.approx(0.05)
    assert rows["retrieval.hit@5"]["verdict"] == "same"       # one case in 20 is within the noise
    assert rows["latency.total_p50_s"]["ci"] == [0.0, 0.0]
    flips = {(f["id"], f["key"], f["change"]) for f in comparison["flips"]}
    assert ("c0", "retrieval.hit@5", "fixed") in flips and ("c7", "declines.correct", "broke") in flips
    # cases crossing the 0.5 correctness mark: a = 0.3 + 0.02 i < 0.5 <= b = 0.5 + 0.02 i for i < 10
    assert sum(1 for f in flips if f[1] == "correctness.score") == 10
    assert all(change == "fixed" for _, key, change in flips if key == "correctness.score")


def test_each_side_has_its_own_interval_wilson_for_rates(two_runs):
    from eval.stats import bootstrap_interval, wilson_interval

    rows = {r["metric"]: r for r in compare_runs(*two_runs)["metrics"]}
    # A's hit@5 is 19 of 20 yes/no values: Wilson; B's is 20 of 20 (B's extra case has no hit@5)
    assert rows["retrieval.hit@5"]["a_ci"] == pytest.approx(list(wilson_interval(19, 20)))
    assert rows["retrieval.hit@5"]["b_ci"] == pytest.approx(list(wilson_interval(20, 20)))
    a_scores = np.array([0.3 + 0.02 * i for i in range(20)])
    assert rows["correctness.score"]["a_ci"] == pytest.approx(list(bootstrap_interval(a_scores)))


def test_paired_bootstrap_is_deterministic_and_covers_the_true_difference():
    rng = np.random.default_rng(1)
    a = rng.normal(0.5, 0.2, 200)
    b = a + 0.1 + rng.normal(0, 0.05, 200)
    spec = METRIC_BY_NAME["correctness.score"]
    low, high = paired_bootstrap(a, b, spec)
    assert (low, high) == paired_bootstrap(a, b, spec)
    assert low < 0.1 < high and high - low < 0.03
    same_low, same_high = paired_bootstrap(a, a + rng.normal(0, 0.05, 200), spec)
    assert same_low < 0 < same_high


def test_compare_cli_writes_markdown_and_json(two_runs, tmp_path):
    a, b = two_runs
    result = CliRunner().invoke(app, ["eval", "compare", str(a.path), str(b.path), "--out", str(tmp_path / "cmp")])
    assert result.exit_code == 0, result.output
    assert "| correctness.score |" in result.output and "better" in result.output
    assert "| retrieval.hit@5 | 0.950 [0.76, 0.99] | 1.000 [0.84, 1.00] | +0.050 |" in result.output
    assert "Flipped cases (11 fixed, 1 broke)" in result.output
    assert json.loads((tmp_path / "cmp.json").read_text())["paired_cases"] == 20
    missing = CliRunner().invoke(app, ["eval", "compare", str(a.path), str(tmp_path / "nothing")])
    assert missing.exit_code == 2 and "not a finished eval run" in missing.output


THRESHOLDS = """
[min]
"correctness.score" = 0.5
"retrieval.hit@5" = 0.9

[max]
"latency.total_p95_s" = 30.0
"homework.leak_rate" = 0.0
"""


def test_gate_cli_fails_naming_the_missed_metrics(two_runs, tmp_path):
    a, b = two_runs
    thresholds = tmp_path / "t.toml"
    thresholds.write_text(THRESHOLDS)
    failed = CliRunner().invoke(app, ["eval", "gate", str(a.path), "--thresholds", str(thresholds)])
    assert failed.exit_code == 1
    assert "FAIL correctness.score = 0.49 (needs >= 0.5)" in failed.output
    assert "ok retrieval.hit@5 = 0.95" in failed.output
    # the runs measured no homework case: a missing metric fails rather than passing unseen
    assert "homework.leak_rate: not measured by this run" in failed.output
    assert "gate failed: correctness.score, homework.leak_rate" in failed.output

    thresholds.write_text(THRESHOLDS.replace('"homework.leak_rate" = 0.0', ""))
    passed = CliRunner().invoke(app, ["eval", "gate", str(b.path), "--thresholds", str(thresholds)])
    assert passed.exit_code == 0, passed.output
    assert "gate passed: 3 thresholds met" in passed.output


@pytest.mark.parametrize("text, message", [
    ('[min]\n"recall@5" = 0.8\n', "unknown metric 'recall@5'"),
    ('[min]\n"retrieval.hit@5" = "high"\n', "must be a number"),
    ('[floor]\n"retrieval.hit@5" = 0.8\n', r"unknown table\(s\) \['floor'\]"),
    ("", "sets no thresholds"),
    ("[min\n", "not valid TOML"),
])
def test_bad_thresholds_files(tmp_path, text, message):
    path = tmp_path / "t.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_thresholds(path)


def test_check_gate_bounds():
    thresholds = {"min": {"retrieval.hit@5": 0.8}, "max": {"homework.leak_rate": 0.0}}
    checks = check_gate({"retrieval.hit@5": 0.8, "homework.leak_rate": 0.0}, thresholds)
    assert all(c.passed for c in checks)                      # bounds are inclusive
    checks = check_gate({"retrieval.hit@5": 0.79, "homework.leak_rate": 0.01}, thresholds)
    assert [c.passed for c in checks] == [False, False]
    assert not check_gate({"retrieval.hit@5": float("nan")}, {"min": {"retrieval.hit@5": 0.0}})[0].passed
