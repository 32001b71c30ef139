"""The adapter registry and `tutor adapters`: promotion through the eval gate, refusal, rollback.

The eval runs are written by hand (metrics.json + scores.jsonl, the files `tutor eval` leaves), so
the gate's verdicts are known in advance: a candidate whose every answer has valid citations beats
one whose none has, with a paired bootstrap interval far from zero. The gate is the real one: a
`tutor eval promotion-check` child process.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from serving.adapters import AdapterNotFoundError, AdapterRegistry, PromotionRefusedError, eval_command_gate
from tutor.cli import app

CASES = 30


def make_adapter(data_dir, name, course="c1", sha="d" * 64):
    folder = data_dir / "adapters" / name / "adapter"
    folder.mkdir(parents=True)
    (folder / "lineage.json").write_text(json.dumps({"data": {"course": course, "sha256": sha},
                                                     "base_model": {"path": "/models/base"}}))
    return folder


def make_run(folder, valid: float, leaked: float = 0.0):
    """An eval run whose answers all have (valid=1.0) or all lack (0.0) valid citations."""
    folder.mkdir(parents=True)
    scores = [{"id": f"q{i}", "question": f"q{i}?", "type": "factual", "difficulty": "easy",
               "values": {"citations.valid": valid, "homework.leaked": leaked, "run.error": 0.0}, "details": {}}
              for i in range(CASES)]
    (folder / "scores.jsonl").write_text("".join(json.dumps(s) + "\n" for s in scores))
    metrics = {"citations.validity": {"value": valid, "n": CASES}, "homework.leak_rate": {"value": leaked, "n": CASES},
               "run.error_rate": {"value": 0.0, "n": CASES}}
    (folder / "metrics.json").write_text(json.dumps({"metrics": metrics}))
    return folder


@pytest.fixture
def data_dir(tmp_path):
    data = tmp_path / "data"
    for name in ("good", "bad", "better"):
        make_adapter(data, name)
    make_adapter(data, "other-course", course="c2")
    return data


def test_adapter_folders_are_listed_as_candidates(data_dir):
    registry = AdapterRegistry(data_dir)
    rows = registry.list("c1")
    assert [(r["name"], r["status"], r["course"]) for r in rows] == [
        ("bad", "candidate", "c1"), ("better", "candidate", "c1"), ("good", "candidate", "c1")]
    assert rows[0]["path"] == str((data_dir / "adapters" / "bad" / "adapter").resolve())
    assert registry.current("c1") is None and registry.current_path("c1") == ""
    with pytest.raises(AdapterNotFoundError, match="no adapter named 'nope'.*known: bad, better, good"):
        registry.get("nope")


def test_promote_refuses_a_worse_adapter_and_keeps_the_current_one(data_dir, tmp_path):
    registry = AdapterRegistry(data_dir)
    registry.attach_eval_run("good", make_run(tmp_path / "runs/good", valid=1.0))
    registry.attach_eval_run("bad", make_run(tmp_path / "runs/bad", valid=0.0))
    registry.promote("good", eval_command_gate())
    with pytest.raises(PromotionRefusedError) as refused:
        registry.promote("bad", eval_command_gate())
    assert len(refused.value.failures) == 1
    assert refused.value.failures[0].startswith("citations.validity is worse than the current adapter good: "
                                                "1.000 -> 0.000")
    assert registry.current("c1").name == "good"
    last = registry.history("c1")[-1]
    assert last["action"] == "promote" and last["name"] == "bad" and not last["gate"]["passed"]


def test_promote_accepts_a_better_adapter_and_rollback_restores_the_previous(data_dir, tmp_path):
    registry = AdapterRegistry(data_dir)
    registry.attach_eval_run("bad", make_run(tmp_path / "runs/bad", valid=0.0))
    registry.attach_eval_run("better", make_run(tmp_path / "runs/better", valid=1.0))
    registry.promote("bad", eval_command_gate())
    registry.promote("better", eval_command_gate())
    assert registry.current_path("c1") == str((data_dir / "adapters/better/adapter").resolve())
    assert {r["name"]: r["status"] for r in registry.list("c1")} == {
        "bad": "previous", "better": "current", "good": "candidate"}
    assert registry.rollback("c1").name == "bad"
    assert registry.rollback("c1") is None and registry.current("c1") is None
    assert [e["action"] for e in registry.history("c1")] == ["promote", "promote", "rollback", "rollback"]
    state = json.loads((data_dir / "adapters" / "registry.json").read_text())
    assert state["courses"]["c1"] == {"current": None, "previous": [], "history": registry.history("c1")}
    assert not list((data_dir / "adapters").glob(".registry.json.*"))  # no temporary file left behind


def test_gate_needs_an_eval_run_and_checks_thresholds_and_the_baseline(data_dir, tmp_path):
    registry = AdapterRegistry(data_dir)
    with pytest.raises(PromotionRefusedError, match="good has no eval run"):
        registry.promote("good", eval_command_gate())
    registry.attach_eval_run("good", make_run(tmp_path / "runs/good", valid=0.0, leaked=1.0))
    thresholds = tmp_path / "gate.toml"
    thresholds.write_text('[max]\n"homework.leak_rate" = 0.0\n')
    base = make_run(tmp_path / "runs/base", valid=1.0)
    with pytest.raises(PromotionRefusedError) as refused:
        registry.promote("good", eval_command_gate(thresholds, baseline_run=base))
    assert [f.split(" ")[:2] for f in refused.value.failures] == [
        ["FAIL", "homework.leak_rate"], ["citations.validity", "is"], ["homework.leak_rate", "is"]]
    assert registry.current("c1") is None


def test_cli_promote_list_and_rollback(data_dir, tmp_path):
    runner = CliRunner()
    good, bad = make_run(tmp_path / "runs/good", valid=1.0), make_run(tmp_path / "runs/bad", valid=0.0)
    ok = runner.invoke(app, ["adapters", "promote", "good", "--eval-run", str(good), "--data-dir", str(data_dir)])
    assert ok.exit_code == 0 and "good is now the current adapter of c1 (gate passed)" in ok.output
    refused = runner.invoke(app, ["adapters", "promote", "bad", "--eval-run", str(bad), "--data-dir", str(data_dir),
                                  "--json"])
    assert refused.exit_code == 1
    assert json.loads(refused.output)["failures"][0].startswith("citations.validity is worse")
    listed = json.loads(runner.invoke(app, ["adapters", "list", "--course", "c1", "--data-dir", str(data_dir),
                                            "--json"]).output)
    assert {r["name"]: r["status"] for r in listed} == {"bad": "candidate", "better": "candidate", "good": "current"}
    back = runner.invoke(app, ["adapters", "rollback", "--course", "c1", "--data-dir", str(data_dir)])
    assert back.exit_code == 0 and "c1: current adapter is now none (base model)" in back.output
    again = runner.invoke(app, ["adapters", "rollback", "--course", "c1", "--data-dir", str(data_dir)])
    assert again.exit_code == 2 and "c1 has no current adapter to roll back" in again.output


def test_serve_dry_run_serves_the_current_adapters(data_dir, tmp_path):
    AdapterRegistry(data_dir).promote("good")
    (data_dir / "adapters/good/adapter/adapter_config.json").write_text(json.dumps({"r": 8, "peft_type": "LORA"}))
    model = tmp_path / "base"
    model.mkdir()
    (model / "config.json").write_text("{}")
    result = CliRunner().invoke(app, ["serve", "--base", str(model), "--data-dir", str(data_dir), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert f"c1={(data_dir / 'adapters/good/adapter').resolve()}" in result.output
