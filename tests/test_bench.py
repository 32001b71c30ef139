"""`tutor bench`: load through the full tutor path against a real `transformers serve`, compared side by side."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from course_fixtures import ingest_small_course, shared_embedder
from typer.testing import CliRunner

from ingest.errors import ConfigError
from ingest.store import load_index
from serving.bench import (
    BenchOptions,
    BenchTarget,
    format_report,
    load_questions,
    percentile,
    run_benchmark,
    targets_from_flags,
)
from serving.hf_serve import find_free_port
from tutor.cli import app
from tutor.settings import load_settings


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return ingest_small_course(tmp_path_factory.mktemp("bench"))


def test_bench_compares_two_model_names_on_a_real_server(tiny_server, data_dir, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(app, [
        "bench", "--base-url", tiny_server.base_url, "--model", tiny_server.model, "--model", tiny_server.model,
        "--course", "small", "--data-dir", str(data_dir), "--concurrency", "3", "--duration", "30",
        "--max-requests", "6", "--max-tokens", "16", "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "bench.json").read_text())
    assert [t["label"] for t in report["targets"]] == ["A", "B"]
    for target in report["targets"]:
        assert target["requests"] == 6 and target["errors"] == 0 and target["ok"] >= 4, target
        assert 0 < target["ttft_p50_s"] <= target["ttft_p95_s"] <= target["latency_p95_s"]
        assert target["requests_per_s"] > 0 and target["tokens_per_s"] > 0
        # transformers serve reports its token counts, so no word counting; at most --max-tokens 16 each
        assert target["tokens_counted_by"] == "server"
        assert target["tokens_per_s"] <= 16 * target["ok"] / target["elapsed_s"] * 1.01  # elapsed_s is rounded
        assert target["ttft_p50_s"] == pytest.approx(percentile(target["ttft_s"], 50), abs=2e-4)  # ttft_s is rounded
    a, b = report["targets"]
    assert report["ratio_b_over_a"]["requests_per_s"] == round(b["requests_per_s"] / a["requests_per_s"], 4)
    header = result.output.splitlines()[0].split()
    assert header[0] == "metric" and header[-1] == "B/A"
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_dead_server_is_counted_as_errors_not_hidden(data_dir):
    settings = load_settings(data_dir=data_dir, llm_timeout_s=2)
    index = load_index(data_dir / "index", "small")
    dead = BenchTarget("A", f"http://127.0.0.1:{find_free_port()}/v1", "course/tiny")
    report = run_benchmark([dead], index, shared_embedder(), settings,
                           BenchOptions(concurrency=2, duration_s=30, max_requests=4, warmup_requests=0),
                           ["What does momentum do in gradient descent?"])
    target = report["targets"][0]
    assert target["requests"] == 4 and target["errors"] == 4 and target["ok"] == 0
    assert target["ttft_p50_s"] is None and "not reachable" in target["error_samples"][0]
    assert "ratio_b_over_a" not in report


def test_percentile_matches_numpy():
    rng = random.Random(7)
    for size in (1, 2, 5, 50):
        values = sorted(rng.uniform(0, 3) for _ in range(size))
        for q in (50, 95):
            assert percentile(values, q) == pytest.approx(np.percentile(values, q), abs=1e-4)
    assert percentile([], 50) is None


def test_questions_come_from_the_dataset_or_the_section_titles(data_dir, tmp_path):
    index = load_index(data_dir / "index", "small")
    dataset = tmp_path / "small.jsonl"
    dataset.write_text("\n".join(json.dumps(c) for c in [
        {"id": "1", "question": "Why use momentum?", "type": "conceptual"},
        {"id": "2", "question": "Who won the cup?", "type": "out_of_scope"},
        {"id": "3", "question": "Solve hw1.", "type": "homework"}]))
    assert load_questions(index, dataset) == ["Why use momentum?"]
    derived = load_questions(index, tmp_path / "absent.jsonl")
    assert "Can you explain Momentum?" in derived and len(derived) == len(set(derived))
    assert not any("solution" in q.lower() for q in derived)


def test_targets_and_report_layout():
    assert targets_from_flags("u1", ["m"], None) == [BenchTarget("A", "u1", "m")]
    assert targets_from_flags("u1", ["m"], "u2") == [BenchTarget("A", "u1", "m"), BenchTarget("B", "u2", "m")]
    assert targets_from_flags("u1", ["m", "n"], None) == [BenchTarget("A", "u1", "m"), BenchTarget("B", "u1", "n")]
    row = {"requests": 10, "ok": 10, "declined": 0, "errors": 0, "error_samples": [], "ttft_p50_s": 0.5,
           "ttft_p95_s": 1.0, "latency_p50_s": 1.0, "latency_p95_s": 2.0, "requests_per_s": 2.0, "tokens_per_s": 40.0}
    report = {"targets": [{"label": "A", "model": "m", **row},
                          {"label": "B", "model": "n", **row, "requests_per_s": 3.0}],
              "ratio_b_over_a": {"requests_per_s": 1.5}}
    lines = format_report(report).splitlines()
    assert lines[0].split() == ["metric", "A:", "m", "B:", "n", "B/A"]
    rps = next(line for line in lines if line.startswith("requests_per_s"))
    assert rps.split() == ["requests_per_s", "2", "3", "1.5"]


def test_a_target_naming_two_adapters_spreads_its_requests_over_both(data_dir):
    from test_llm_backends import ScriptedHTTPServer, answer_with_usage

    server = ScriptedHTTPServer(answer_with_usage)
    try:
        report = run_benchmark([BenchTarget("B", server.base_url, "dl-intro, ml-101")],
                               load_index(data_dir / "index", "small"), shared_embedder(),
                               load_settings(data_dir=data_dir),
                               BenchOptions(concurrency=2, duration_s=30, max_requests=6, warmup_requests=0),
                               ["What does momentum do in gradient descent?"])
    finally:
        server.close()
    target = report["targets"][0]
    assert target["ok"] == 6, target
    asked = [body["model"] for body in server.bodies]
    assert sorted(asked) == ["dl-intro"] * 3 + ["ml-101"] * 3
    # the server's share of the time to first token is part of it, never more
    assert 0 < target["server_ttft_p50_s"] <= target["ttft_p50_s"]
    assert BenchTarget("A", "u", "m").models() == ["m"]
    with pytest.raises(ConfigError, match="names no model"):
        BenchTarget("A", "u", " , ").models()
