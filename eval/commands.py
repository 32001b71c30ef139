"""`tutor eval`: score answers, compare runs, gate regressions, build question sets.

`tutor` finds this group through the `course_tutor.commands` entry point (pyproject.toml), so nothing
under `tutor/` imports `eval`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from tutor.cli.options import AsJson, Backend, Course, DataDir, friendly_errors

class _EvalGroup(typer.core.TyperGroup):
    """`tutor eval DATASET ...` is short for `tutor eval run DATASET ...`."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


eval_app = typer.Typer(
    cls=_EvalGroup, no_args_is_help=True,
    help="Measure answer quality: `tutor eval DATASET` runs a question set; compare, gate, promotion-check, "
         "generate, from-feedback.")

JudgeName = Annotated[str, typer.Option("--judge", help="auto | embedding | lexical | llm (auto: llm when "
                                        "--judge-base-url is set, else embedding).")]
# The judge server is a setting like any other (judge_base_url in tutor.toml, TUTOR_JUDGE_BASE_URL, ...);
# these flags win over it.
JudgeUrl = Annotated[Optional[str], typer.Option("--judge-base-url", help="OpenAI-compatible server of the llm judge.")]
JudgeModel = Annotated[Optional[str], typer.Option("--judge-model", help="Model name of the llm judge.")]
JudgeKey = Annotated[Optional[str], typer.Option("--judge-api-key", help="API key of the judge server.")]


@eval_app.command("run")
@friendly_errors
def eval_run(
    dataset: Annotated[Path, typer.Argument(help="Question set, JSONL (e.g. eval/datasets/dl-intro.jsonl).")],
    out: Annotated[Optional[Path], typer.Option(
        "--out", help="Run folder; an existing one is resumed (default: DATA_DIR/eval/<dataset>-<time>).")] = None,
    course: Course = None,
    data_dir: DataDir = None,
    backend: Backend = None,
    mode: Annotated[Optional[str], typer.Option("--mode", help="explain | socratic")] = None,
    judge: JudgeName = "auto",
    judge_base_url: JudgeUrl = None,
    judge_model: JudgeModel = None,
    judge_api_key: JudgeKey = None,
    workers: Annotated[int, typer.Option(
        "--workers", help="Questions answered at once (latency is measured under this load).")] = 4,
    limit: Annotated[Optional[int], typer.Option("--limit", help="Only the first N cases.")] = None,
    cases: Annotated[Optional[str], typer.Option(
        "--cases", help="Only cases whose id matches this regular expression, e.g. '^(ho|oos)-'.")] = None,
    restart: Annotated[bool, typer.Option("--restart", help="Discard the answers already in --out.")] = False,
    as_json: AsJson = False,
) -> None:
    """Answer every question of DATASET, score it, and write metrics.json and report.html/md."""
    import time

    from eval.judges import JudgeConfig, create_judge, resolve_judge_name
    from eval.report import summary_text
    from eval.runner import evaluate
    from tutor.answer import Tutor
    from tutor.settings import load_settings

    settings = load_settings(data_dir=data_dir, course=course, llm_backend=backend, mode=mode,
                             judge_base_url=judge_base_url, judge_model=judge_model, judge_api_key=judge_api_key)
    tutor = Tutor.from_settings(settings)
    out = out or settings.data_dir / "eval" / f"{dataset.stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    config = JudgeConfig.from_settings(settings, cache_path=out / "judge-cache.sqlite")
    judge_impl = create_judge(resolve_judge_name(judge, config), config, embedder=tutor.embedder)
    run = evaluate(dataset, out, tutor, judge_impl, workers=workers, mode=mode, limit=limit, restart=restart,
                   progress=not as_json, cases_matching=cases)
    typer.echo(json.dumps(run.metrics) if as_json else summary_text(run))


@eval_app.command("compare")
@friendly_errors
def eval_compare(
    run_a: Annotated[Path, typer.Argument(help="The baseline run folder.")],
    run_b: Annotated[Path, typer.Argument(help="The run compared with it.")],
    out: Annotated[Optional[Path], typer.Option("--out", help="Also write FILE.md and FILE.json.")] = None,
    as_json: AsJson = False,
) -> None:
    """Metric deltas B - A with paired bootstrap 95% CIs, and the cases that flipped."""
    from eval.compare import compare_runs, comparison_markdown, load_run

    comparison = compare_runs(load_run(run_a), load_run(run_b))
    text = comparison_markdown(comparison)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".md").write_text(text, encoding="utf-8")
        out.with_suffix(".json").write_text(json.dumps(comparison, indent=1), encoding="utf-8")
    typer.echo(json.dumps(comparison) if as_json else text)


@eval_app.command("gate")
@friendly_errors
def eval_gate(
    run: Annotated[Path, typer.Argument(help="The run folder (holding metrics.json).")],
    thresholds: Annotated[Path, typer.Option("--thresholds", help="TOML with [min] and [max] metric tables.")],
) -> None:
    """Exit 1, naming the metrics, when the run misses a threshold (for CI)."""
    from eval.gate import check_gate, load_thresholds, run_metrics

    checks = check_gate(run_metrics(run), load_thresholds(thresholds))
    for check in checks:
        typer.echo(check.describe())
    failed = [c.metric for c in checks if not c.passed]
    if failed:
        typer.echo(f"gate failed: {', '.join(failed)}", err=True)
        raise typer.Exit(1)
    typer.echo(f"gate passed: {len(checks)} thresholds met")


@eval_app.command("generate")
@friendly_errors
def eval_generate(
    out: Annotated[Path, typer.Option("--out", help="JSONL file to write the cases to.")],
    count: Annotated[int, typer.Option("--count", help="Cases wanted.")] = 50,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the chunk sample.")] = 0,
    course: Course = None,
    data_dir: DataDir = None,
    judge_base_url: JudgeUrl = None,
    judge_model: JudgeModel = None,
    judge_api_key: JudgeKey = None,
) -> None:
    """Write a synthetic question set from the course index, using the llm judge's model."""
    from eval.dataset import write_dataset
    from eval.generate import generate_cases
    from eval.judge_llm import LLMJudge
    from eval.judges import JudgeConfig
    from tutor.settings import load_settings

    settings = load_settings(data_dir=data_dir, course=course, judge_base_url=judge_base_url,
                             judge_model=judge_model, judge_api_key=judge_api_key)
    index = settings.open_index()
    judge = LLMJudge(JudgeConfig.from_settings(settings, cache_path=settings.data_dir / "cache" / "judge-cache.sqlite"))
    report = generate_cases(index, judge, settings.embedder(), count=count, seed=seed)
    write_dataset(out, report.cases)
    typer.echo(f"{report.summary()}\nwrote {out}")


@eval_app.command("from-feedback")
@friendly_errors
def eval_from_feedback(
    out: Annotated[Path, typer.Option("--out", help="JSONL file; cases already in it are kept.")],
    course: Course = None,
    data_dir: DataDir = None,
    export: Annotated[Optional[Path], typer.Option(
        "--export", help="Read an (instructor-corrected) export instead of the chat log.")] = None,
) -> None:
    """Turn thumbs-down answers from the chat log (or a corrected export) into eval cases."""
    from eval.dataset import load_dataset, write_dataset
    from eval.feedback import cases_from_chatlog, cases_from_export, merge_cases, open_chatlog
    from tutor.settings import load_settings

    if export:
        new = cases_from_export(export)
    else:
        new = cases_from_chatlog(open_chatlog(load_settings(data_dir=data_dir)), course=course)
    existing = load_dataset(out) if out.is_file() and out.stat().st_size else []
    cases = merge_cases(existing, new)
    write_dataset(out, cases)
    needs = sum(1 for c in new if c.extra.get("needs"))
    typer.echo(f"{len(cases) - len(existing)} new cases ({needs} need a reference or sources filled in); "
               f"{len(cases)} in {out}")


@eval_app.command("promotion-check")
@friendly_errors
def eval_promotion_check(
    candidate: Annotated[Path, typer.Argument(help="Eval run made with the candidate adapter.")],
    against: Annotated[Optional[Path], typer.Option(
        "--against", help="Eval run it must not be worse than (the current adapter's, or the base model's).")] = None,
    against_label: Annotated[str, typer.Option("--against-label", help="How failures name that run.")] = "",
    thresholds: Annotated[Optional[Path], typer.Option(
        "--thresholds", help="Thresholds TOML (default: eval/thresholds/<course>-promote.toml).")] = None,
    course: Course = None,
    as_json: AsJson = False,
) -> None:
    """The adapter promotion gate (what `tutor adapters promote` asks): exit 1 naming each failure."""
    from eval.promotion import promotion_failures

    failures = promotion_failures(candidate, against, against_label, thresholds, course or "")
    if as_json:
        typer.echo(json.dumps({"passed": not failures, "failures": failures}))
    else:
        typer.echo("\n".join(failures) if failures else "promotion gate passed")
    if failures:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add `tutor eval` (the `course_tutor.commands` entry point)."""
    app.add_typer(eval_app, name="eval")
