"""The CI gate: the shipped course answers its shipped question set at least as well as
`eval/thresholds/dl-intro.toml` demands, with the extractive backend and the offline judges.

It runs in the default suite (CI's gate), on the session's shared index of the shipped course.
"""

from __future__ import annotations

from pathlib import Path

from course_fixtures import shared_embedder
from typer.testing import CliRunner

from eval.judges import create_judge
from eval.runner import evaluate
from tutor.answer import Tutor
from tutor.cli import app
from tutor.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]
DATASET = ROOT / "eval" / "datasets" / "dl-intro.jsonl"
THRESHOLDS = ROOT / "eval" / "thresholds" / "dl-intro.toml"


def test_shipped_question_set_passes_the_gate(shipped_course, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data_dir, report = shipped_course
    assert not report.skipped, report.summary()
    settings = load_settings(data_dir=data_dir, llm_backend="extractive", course="dl-intro")
    tutor = Tutor.from_settings(settings, embedder=shared_embedder())
    run = evaluate(DATASET, tmp_path / "run", tutor, create_judge("embedding", embedder=tutor.embedder),
                   workers=2, progress=False)
    assert run.errors == []
    gate = CliRunner().invoke(app, ["eval", "gate", str(run.out_dir), "--thresholds", str(THRESHOLDS)])
    assert gate.exit_code == 0, gate.output
