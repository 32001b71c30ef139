"""`tutor eval` end to end on a tiny generated course with the extractive backend: answers, resume
after an interruption, lineage checks, the report files, and the CLI from run to gate."""

from __future__ import annotations

import base64
import json
import re

import pytest
from course_fixtures import shared_embedder
from typer.testing import CliRunner

from eval.judges import create_judge
from eval.runner import RESULTS, evaluate, read_results
from ingest.errors import ConfigError
from ingest.pipeline import IngestOptions, ingest_course
from tutor.answer import Tutor
from tutor.cli import app
from tutor.llm import LLMUnavailableError
from tutor.settings import load_settings

CASES = [
    {"id": "momentum", "question": "Why does momentum help gradient descent?",
     "reference_answer": "Momentum keeps a velocity of past gradients, which damps oscillation across a ravine.",
     "gold_sources": [{"path": "book/optimization.md", "quote": "damps oscillation across a narrow ravine"}],
     "type": "conceptual", "difficulty": "medium"},
    {"id": "lr", "question": "What happens when the learning rate is too large?",
     "reference_answer": "The loss diverges instead of shrinking.",
     "gold_sources": [{"path": "book/optimization.md", "quote": "Too large a learning rate makes the loss diverge"}],
     "type": "factual", "difficulty": "easy"},
    {"id": "dropout", "question": "What does dropout do during training?",
     "reference_answer": "It randomly zeroes activations so that units cannot co-adapt.",
     "gold_sources": [{"path": "book/regularization.md", "quote": "randomly zeroes activations"}],
     "type": "factual", "difficulty": "easy"},
    {"id": "decay", "question": "How does weight decay change the loss?",
     "reference_answer": "It adds the squared norm of the weights to the loss.",
     "gold_sources": [{"path": "book/regularization.md", "quote": "adds the squared norm of the weights"}],
     "type": "factual", "difficulty": "hard"},
    {"id": "cake", "question": "What is the best recipe for chocolate cake?", "type": "out_of_scope",
     "difficulty": "easy"},
    {"id": "hw", "question": "Solve homework 1 problem 1 for me: what is x3?", "type": "homework",
     "difficulty": "hard", "gold_sources": [{"path": "assignments/hw1.md", "quote": ""}]},
]


def write_mini_course(root):
    """Two Markdown chapters, an assignment and its solution, and a course.toml linking them."""
    files = {
        "book/optimization.md": "# Optimization\n\n## Gradient descent\n\nGradient descent updates the parameters "
        "against the gradient of the loss. The learning rate sets the step size of each update. Too large a "
        "learning rate makes the loss diverge instead of shrinking.\n\n## Momentum\n\nMomentum keeps a running "
        "velocity of past gradients. This damps oscillation across a narrow ravine and speeds progress along "
        "its floor.\n",
        "book/regularization.md": "# Regularization\n\n## Dropout\n\nDropout randomly zeroes activations during "
        "training so that units cannot co-adapt. At test time inverted dropout needs no rescaling because "
        "training already divided by the keep probability.\n\n## Weight decay\n\nWeight decay adds the squared "
        "norm of the weights to the loss, which pulls every weight towards zero at each step.\n",
        "assignments/hw1.md": "# Homework 1\n\n## Problem 1\n\nRun three steps of gradient descent on f(x) = x^2 "
        "from x0 = 9 with learning rate 0.1 and report x3.\n",
        "solutions/hw1.md": "# Homework 1 solution\n\n## Problem 1\n\nThe derivative is 2x, so each step "
        "multiplies x by 0.8: x1 = 7.2, x2 = 5.76, and the final answer is x3 = 4.608.\n",
        "course.toml": 'id = "mini"\ntitle = "Mini Course"\npolicy = "No full homework solutions."\n\n'
        '[[assignments]]\nid = "hw1"\ntitle = "Gradient descent by hand"\npath = "assignments/hw1.md"\n'
        'solution = "solutions/hw1.md"\n',
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    return root


def write_cases(path, cases=CASES):
    path.write_text("".join(json.dumps(c) + "\n" for c in cases), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    """(data dir, dataset path) of the ingested mini course."""
    root = tmp_path_factory.mktemp("eval-mini")
    ingest_course(write_mini_course(root / "course"), IngestOptions(data_dir=root / "data"),
                  embedder=shared_embedder())
    return root / "data", write_cases(root / "cases.jsonl")


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)               # no tutor.toml of the developer's
    for name in ("TUTOR_LLM_BACKEND", "TUTOR_LLM_BASE_URL", "TUTOR_COURSE", "TUTOR_JUDGE_BASE_URL", "TUTOR_TOP_K"):
        monkeypatch.delenv(name, raising=False)


class RecordingTutor(Tutor):
    """The real tutor, noting which questions it was asked and failing on those in `fail_on`."""

    fail_on: tuple[str, ...] = ()

    def ask(self, question, **kwargs):
        self.asked.append(question)
        if any(word in question for word in self.fail_on):
            raise LLMUnavailableError("model server went away")
        return super().ask(question, **kwargs)


def make_tutor(data_dir, fail_on=(), **settings):
    tutor = RecordingTutor.from_settings(load_settings(data_dir=data_dir, llm_backend="extractive", **settings),
                                         embedder=shared_embedder())
    tutor.asked, tutor.fail_on = [], fail_on
    return tutor


def test_run_scores_every_kind_of_case(mini, tmp_path):
    data_dir, dataset = mini
    tutor = make_tutor(data_dir)
    run = evaluate(dataset, tmp_path / "run", tutor, create_judge("lexical"), workers=2, progress=False)
    assert run.answered == 6 and sorted(tutor.asked) == sorted(c["question"] for c in CASES)
    m = {name: entry["value"] for name, entry in run.metrics.items()}
    assert run.metrics["retrieval.recall@5"]["n"] == 5          # answerable cases with gold sources
    assert m["retrieval.hit@10"] == 1.0 and m["retrieval.path_hit@10"] == 1.0
    assert m["declines.accuracy"] == 1.0 and m["declines.out_of_scope_declined"] == 1.0
    assert m["homework.hint_rate"] == 1.0 and m["homework.leak_rate"] == 0.0
    assert m["citations.precision"] == 1.0      # extractive answers quote their passages verbatim
    assert run.metrics["citations.recall"]["judge"] == "lexical"
    assert run.metrics["retrieval.mrr"]["judge"] == "match:path+quote"
    assert 0 < m["correctness.score"] < 1 and m["latency.total_p95_s"] >= m["latency.total_p50_s"] > 0

    files = {p.name for p in run.out_dir.iterdir()}
    assert {"results.jsonl", "settings.json", "metrics.json", "scores.jsonl", "report.md", "report.html"} <= files
    html = (run.out_dir / "report.html").read_text()
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]{200,})" alt="[^"]+">', html)
    assert len(images) == 3 and all(base64.b64decode(png).startswith(b"\x89PNG") for png in images)
    assert "Worst cases" in html and "chocolate cake" not in html.split("Worst cases")[0]
    document = json.loads((run.out_dir / "metrics.json").read_text())
    assert set(document["by_type"]) == {"conceptual", "factual", "out_of_scope", "homework"}
    assert set(document["by_difficulty"]) == {"easy", "medium", "hard"}
    settings = json.loads((run.out_dir / "settings.json").read_text())
    assert settings["backend"]["name"] == "extractive" and settings["index"]["course"] == "mini"
    assert "instructor_password" not in settings["tutor"] and settings["judge"]["name"] == "lexical"
    assert settings["dataset"]["cases"] == 6


def test_cases_option_answers_only_matching_ids_and_records_the_pattern(mini, tmp_path):
    data_dir, dataset = mini
    tutor = make_tutor(data_dir)
    run = evaluate(dataset, tmp_path / "run", tutor, create_judge("lexical"), progress=False,
                   cases_matching="^(momentum|cake)$")
    assert sorted(tutor.asked) == ["What is the best recipe for chocolate cake?",
                                   "Why does momentum help gradient descent?"]
    assert [s["id"] for s in run.scores] == ["momentum", "cake"]
    assert run.settings["dataset"]["cases_matching"] == "^(momentum|cake)$" and run.settings["dataset"]["cases"] == 2
    # extractive answers cite what they quote: every in-scope answer's markers are valid
    assert run.metrics["citations.validity"]["value"] == 1.0 and run.metrics["citations.validity"]["n"] == 1
    with pytest.raises(ConfigError, match="matches no case id"):
        evaluate(dataset, tmp_path / "none", tutor, create_judge("lexical"), progress=False, cases_matching="^zzz")


def test_resume_after_an_interruption_answers_only_missing_cases(mini, tmp_path):
    data_dir, dataset = mini
    out = tmp_path / "run"
    evaluate(dataset, out, make_tutor(data_dir), create_judge("lexical"), workers=2, progress=False, report=False)
    lines = (out / RESULTS).read_text().splitlines()
    kept = lines[:2]
    # the process died while writing the third line
    (out / RESULTS).write_text("\n".join(kept) + "\n" + lines[2][: len(lines[2]) // 2])
    kept_ids = [json.loads(line)["id"] for line in kept]

    tutor = make_tutor(data_dir)
    run = evaluate(dataset, out, tutor, create_judge("lexical"), workers=2, progress=False)
    assert run.answered == 4
    assert sorted(tutor.asked) == sorted(c["question"] for c in CASES if c["id"] not in kept_ids)
    rows = read_results(out / RESULTS)
    assert sorted(rows) == sorted(c["id"] for c in CASES)
    assert [json.dumps(rows[i]) for i in kept_ids] == [json.dumps(json.loads(line)) for line in kept]
    assert len(run.scores) == 6 and "6 cases" in (out / "report.md").read_text()


def test_failed_cases_are_recorded_then_retried(mini, tmp_path):
    data_dir, dataset = mini
    out = tmp_path / "run"
    first = evaluate(dataset, out, make_tutor(data_dir, fail_on=("dropout",)), create_judge("lexical"),
                     workers=1, progress=False)
    assert first.metrics["run.error_rate"]["value"] == pytest.approx(1 / 6)
    assert first.errors == ["dropout: LLMUnavailableError: model server went away"]
    assert "model server went away" in (out / "report.html").read_text()
    tutor = make_tutor(data_dir)
    second = evaluate(dataset, out, tutor, create_judge("lexical"), workers=1, progress=False)
    assert tutor.asked == ["What does dropout do during training?"]
    assert second.metrics["run.error_rate"]["value"] == 0.0 and second.errors == []


def test_resuming_with_other_settings_is_refused(mini, tmp_path):
    data_dir, dataset = mini
    out = tmp_path / "run"
    evaluate(dataset, out, make_tutor(data_dir), create_judge("lexical"), limit=2, progress=False, report=False)
    with pytest.raises(ConfigError, match=r"other settings \(tutor.top_k: 5 -> 3\).*--restart"):
        evaluate(dataset, out, make_tutor(data_dir, top_k=3), create_judge("lexical"), limit=2, progress=False)
    tutor = make_tutor(data_dir, top_k=3)
    run = evaluate(dataset, out, tutor, create_judge("lexical"), limit=2, restart=True, progress=False)
    assert run.answered == 2 and len(tutor.asked) == 2


def test_cli_run_then_gate(mini, tmp_path):
    """`tutor eval DATASET` (the default command) with offline judges, then `tutor eval gate`."""
    data_dir, dataset = mini
    out = tmp_path / "cli-run"
    runner = CliRunner()
    result = runner.invoke(app, ["eval", str(dataset), "--data-dir", str(data_dir), "--out", str(out),
                                 "--backend", "extractive", "--judge", "lexical", "--workers", "1", "--limit", "5"])
    assert result.exit_code == 0, result.output
    assert "5 cases (5 answered now, 0 from results.jsonl); judge: lexical" in result.output
    assert f"report: {out / 'report.html'}" in result.output
    thresholds = tmp_path / "gate.toml"
    thresholds.write_text('[min]\n"retrieval.hit@10" = 1.0\n"declines.accuracy" = 1.0\n'
                          '[max]\n"latency.total_p95_s" = 0.000001\n')
    gate = runner.invoke(app, ["eval", "gate", str(out), "--thresholds", str(thresholds)])
    assert gate.exit_code == 1
    assert "ok retrieval.hit@10 = 1" in gate.output and "gate failed: latency.total_p95_s" in gate.output
    again = runner.invoke(app, ["eval", "run", str(dataset), "--data-dir", str(data_dir), "--out", str(out),
                                "--backend", "extractive", "--judge", "lexical", "--limit", "5"])
    assert again.exit_code == 0 and "0 answered now, 5 from results.jsonl" in again.output
    bad = runner.invoke(app, ["eval", str(tmp_path / "missing.jsonl"), "--data-dir", str(data_dir),
                              "--out", str(tmp_path / "x"), "--backend", "extractive", "--judge", "lexical"])
    assert bad.exit_code == 2 and "eval dataset not found" in bad.output
