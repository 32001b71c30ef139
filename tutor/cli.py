"""`tutor`: the command line, and the one place that composes every package.

Imports are lazy (inside each command) so `tutor --help` is instant. Errors of the project
(`TutorError`) become a one-line message and exit code 2; anything else is a bug and shows its
traceback.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(
    name="tutor", no_args_is_help=True, add_completion=False,
    help="Course Tutor: a teaching assistant that answers from your course material, with citations.",
)

DataDir = Annotated[Optional[Path], typer.Option("--data-dir", help="Index/cache/log folder (default: ./data).")]
Course = Annotated[Optional[str], typer.Option("--course", help="Course id (default: the only indexed course).")]
Backend = Annotated[Optional[str], typer.Option(
    "--backend", help="LLM backend: extractive | openai | local | auto.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")]


def friendly_errors(fn):
    """Turn a `TutorError` into `error: <message>` on stderr and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from ingest.errors import TutorError

        try:
            return fn(*args, **kwargs)
        except TutorError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None

    return wrapper


@app.command()
@friendly_errors
def ingest(
    course_dir: Annotated[Path, typer.Argument(help="The course folder (with an optional course.toml).")],
    data_dir: DataDir = None,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Re-read and re-embed every file.")] = False,
    as_json: AsJson = False,
) -> None:
    """Index a course folder; re-running only pays for the files that changed."""
    from ingest.pipeline import IngestOptions, ingest_course
    from tutor.settings import load_settings

    settings = load_settings(data_dir=data_dir)
    options = IngestOptions(
        data_dir=settings.data_dir, embedding_model=settings.embedding_model,
        chunk_tokens=settings.chunk_tokens, chunk_overlap=settings.chunk_overlap,
        max_file_mb=settings.max_file_mb, rebuild=rebuild,
    )
    report = ingest_course(course_dir, options)
    if as_json:
        data = report.to_dict()
        keys = ("course", "added", "changed", "removed", "unchanged", "skipped", "chunks", "embedded",
                "seconds", "notes", "index_path")
        typer.echo(json.dumps({k: data[k] for k in keys}))
    else:
        typer.echo(report.summary())


@app.command()
@friendly_errors
def ask(
    question: Annotated[str, typer.Argument(help="The question, in quotes.")],
    course: Course = None,
    data_dir: DataDir = None,
    backend: Backend = None,
    mode: Annotated[Optional[str], typer.Option("--mode", help="explain | socratic")] = None,
    taught_until: Annotated[Optional[str], typer.Option(
        "--taught-until", help="Only use lectures scheduled up to this date (YYYY-MM-DD).")] = None,
    as_json: AsJson = False,
) -> None:
    """Answer one question from the course material, with numbered sources and demo links."""
    import datetime as dt

    from tutor.answer import Tutor
    from tutor.errors import ConfigError
    from tutor.settings import load_settings

    settings = load_settings(data_dir=data_dir, course=course, llm_backend=backend, mode=mode)
    try:
        until = dt.date.fromisoformat(taught_until) if taught_until else None
    except ValueError:
        raise ConfigError(f"--taught-until {taught_until!r} is not a date like 2026-10-06") from None
    tutor = Tutor.from_settings(settings)
    answer = None
    for event in tutor.stream(question, taught_until=until):
        if event.kind == "delta" and not as_json:
            typer.echo(event.text, nl=False)
        elif event.kind == "reset" and not as_json:
            typer.echo("\n[draft withheld]\n")
        elif event.kind == "answer":
            answer = event.answer
    if as_json:
        typer.echo(json.dumps(answer.to_dict(), ensure_ascii=False))
        return
    typer.echo("\n")
    for c in answer.citations:
        typer.echo(f"[{c.n}] {c.title}  ({c.url})")
    for d in answer.demos:
        where = f" cell {d.cell}" if d.cell is not None else ""
        typer.echo(f"demo: {d.title} - {d.path}{where}  {d.url}")
    if answer.notice:
        typer.echo(f"note: {answer.notice}")


# ----- tutor eval: score answers, compare runs, gate regressions, build question sets -----

class _EvalGroup(typer.core.TyperGroup):
    """`tutor eval DATASET ...` is short for `tutor eval run DATASET ...`."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


eval_app = typer.Typer(
    cls=_EvalGroup, no_args_is_help=True,
    help="Measure answer quality: `tutor eval DATASET` runs a question set; compare, gate, generate, from-feedback.")
app.add_typer(eval_app, name="eval")

JudgeName = Annotated[str, typer.Option("--judge", help="auto | embedding | lexical | llm (auto: llm when "
                                        "--judge-base-url is set, else embedding).")]
JudgeUrl = Annotated[str, typer.Option("--judge-base-url", envvar="TUTOR_JUDGE_BASE_URL",
                                       help="OpenAI-compatible server of the llm judge.")]
JudgeModel = Annotated[str, typer.Option("--judge-model", envvar="TUTOR_JUDGE_MODEL",
                                         help="Model name of the llm judge.")]
JudgeKey = Annotated[str, typer.Option("--judge-api-key", envvar="TUTOR_JUDGE_API_KEY",
                                       help="API key of the judge server.")]


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
    judge_base_url: JudgeUrl = "",
    judge_model: JudgeModel = "",
    judge_api_key: JudgeKey = "",
    workers: Annotated[int, typer.Option(
        "--workers", help="Questions answered at once (latency is measured under this load).")] = 4,
    limit: Annotated[Optional[int], typer.Option("--limit", help="Only the first N cases.")] = None,
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

    settings = load_settings(data_dir=data_dir, course=course, llm_backend=backend, mode=mode)
    tutor = Tutor.from_settings(settings)
    out = out or settings.data_dir / "eval" / f"{dataset.stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    config = JudgeConfig(base_url=judge_base_url, model=judge_model, api_key=judge_api_key,
                         cache_path=out / "judge-cache.sqlite")
    judge_impl = create_judge(resolve_judge_name(judge, config), config, embedder=tutor.embedder)
    run = evaluate(dataset, out, tutor, judge_impl, workers=workers, mode=mode, limit=limit, restart=restart,
                   progress=not as_json)
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
    judge_base_url: JudgeUrl = "",
    judge_model: JudgeModel = "",
    judge_api_key: JudgeKey = "",
) -> None:
    """Write a synthetic question set from the course index, using the llm judge's model."""
    from eval.dataset import write_dataset
    from eval.generate import generate_cases
    from eval.judge_llm import LLMJudge
    from eval.judges import JudgeConfig
    from ingest.embed import Embedder
    from ingest.store import load_index
    from tutor.answer import resolve_course
    from tutor.settings import load_settings

    settings = load_settings(data_dir=data_dir, course=course)
    index = load_index(settings.index_root(), resolve_course(settings.index_root(), settings.course))
    judge = LLMJudge(JudgeConfig(base_url=judge_base_url, model=judge_model, api_key=judge_api_key,
                                 cache_path=settings.data_dir / "cache" / "judge-cache.sqlite"))
    report = generate_cases(index, judge, Embedder(settings.embedding_model), count=count, seed=seed)
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
        new = cases_from_chatlog(open_chatlog(load_settings(data_dir=data_dir).data_dir), course=course)
    existing = load_dataset(out) if out.is_file() and out.stat().st_size else []
    cases = merge_cases(existing, new)
    write_dataset(out, cases)
    needs = sum(1 for c in new if c.extra.get("needs"))
    typer.echo(f"{len(cases) - len(existing)} new cases ({needs} need a reference or sources filled in); "
               f"{len(cases)} in {out}")


@app.command()
@friendly_errors
def chat(
    course: Course = None,
    data_dir: DataDir = None,
    backend: Backend = None,
    host: Annotated[Optional[str], typer.Option(
        "--host", help="Address to listen on (default 127.0.0.1; 0.0.0.0 exposes it to the network).")] = None,
    port: Annotated[Optional[int], typer.Option("--port", help="Port to listen on (default 7860).")] = None,
) -> None:
    """Serve the chat for students (and the instructor tab) in the browser; never shared publicly."""
    from tutor.app import serve
    from tutor.settings import load_settings

    serve(load_settings(course=course, data_dir=data_dir, llm_backend=backend, host=host, port=port))


# ----- the model side: tutor finetune, tutor serve, tutor bench (serving/) -----

@app.command()
@friendly_errors
def finetune(
    course: Course = None,
    data_dir: DataDir = None,
    base: Annotated[Optional[Path], typer.Option(
        "--base", help="Base model folder (a transformers chat model; default: TUTOR_LLM_MODEL_PATH).")] = None,
    out: Annotated[Optional[Path], typer.Option(
        "--out", help="Output folder: data/, adapter/, merged/ (default: <data dir>/adapters/<course>).")] = None,
    teacher_model: Annotated[str, typer.Option("--teacher-model", help="Model that writes synthetic Q&A.")] = "",
    teacher_base_url: Annotated[str, typer.Option(
        "--teacher-base-url", help="OpenAI-compatible server of the teacher model.")] = "",
    teacher_questions: Annotated[int, typer.Option("--teacher-questions", help="Passages to write Q&A for.")] = 40,
    rank: Annotated[int, typer.Option("--rank", help="LoRA rank (1-512; vLLM serves rank <= --max-lora-rank).")] = 8,
    alpha: Annotated[int, typer.Option("--alpha", help="LoRA alpha (the update is scaled by alpha/rank).")] = 16,
    target_modules: Annotated[str, typer.Option(
        "--target-modules", help="Comma-separated linear layers to adapt.")] = "q_proj,v_proj",
    lr: Annotated[float, typer.Option("--lr", help="Learning rate (AdamW, constant).")] = 2e-4,
    epochs: Annotated[int, typer.Option("--epochs", help="Passes over the training examples.")] = 3,
    max_length: Annotated[int, typer.Option("--max-length", help="Longest example in tokens.")] = 4096,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Examples per step.")] = 4,
    seed: Annotated[int, typer.Option("--seed", help="Seed of initialisation and example order.")] = 0,
    top_k: Annotated[Optional[int], typer.Option("--top-k", help="Sources per prompt (default: the tutor's).")] = None,
    merge: Annotated[bool, typer.Option("--merge", help="Also save the base with the adapter merged in.")] = False,
    data_only: Annotated[bool, typer.Option("--data-only", help="Build and save the examples; do not train.")] = False,
    as_json: AsJson = False,
) -> None:
    """Fine-tune a LoRA adapter on the course (instructor Q&A, liked answers, policy examples)."""
    from serving.finetune import LoraSettings, finetune_course
    from serving.finetune_data import DataOptions
    from tutor.llm import BackendConfig, create_backend
    from tutor.settings import load_settings

    settings = load_settings(data_dir=data_dir, course=course)
    lora = LoraSettings(rank=rank, alpha=alpha, target_modules=tuple(m.strip() for m in target_modules.split(",")
                                                                    if m.strip()),
                        learning_rate=lr, epochs=epochs, max_length=max_length, batch_size=batch_size, seed=seed)
    options = DataOptions(top_k=top_k or settings.top_k, max_teacher_questions=teacher_questions)
    teacher = None
    if teacher_model or teacher_base_url:
        teacher = create_backend("openai", BackendConfig(
            base_url=teacher_base_url, model=teacher_model, api_key=settings.llm_api_key.get_secret_value()))

    def log(record: dict) -> None:
        if as_json:
            return
        if record["event"] == "step":
            typer.echo(f"epoch {record['epoch']} step {record['step']}: loss {record['loss']:.4f}")
        elif record["event"] == "epoch":
            validation = record["validation_loss"]
            typer.echo(f"epoch {record['epoch']}: train loss {record['train_loss']:.4f}, validation loss "
                       + (f"{validation:.4f}" if validation is not None else "-"))
        elif record["event"] == "tokenized" and record["too_long"]:
            typer.echo(f"note: {record['too_long']} examples are longer than --max-length {max_length} tokens "
                       "and were left out")
        elif record["event"] == "data":
            typer.echo(f"{record['train']} training and {record['validation']} validation examples "
                       f"{record['counts']} in {record['path']} (sha256 {record['sha256'][:12]})")
            for note in record["notes"]:
                typer.echo(f"note: {note}")

    base_model = base or (Path(settings.llm_model_path) if settings.llm_model_path else None)
    summary = finetune_course(settings, course, base_model, out, lora, options, teacher, merge, data_only, log)
    if as_json:
        typer.echo(json.dumps(summary))
    elif "adapter" in summary:
        typer.echo(f"adapter: {summary['adapter']} ({summary['metrics']['steps_per_s']} steps/s)")
        if summary.get("merged"):
            typer.echo(f"merged model: {summary['merged']}")
        typer.echo(f"serve it: tutor serve --base {base_model} --adapter NAME={summary['adapter']}")


@app.command()
@friendly_errors
def serve(
    base: Annotated[str, typer.Option("--base", help="Base model folder (vllm also takes a hub id).")],
    engine: Annotated[str, typer.Option("--engine", help="vllm (GPU, LoRA adapters) | transformers (CPU).")] = "vllm",
    adapter: Annotated[Optional[list[str]], typer.Option(
        "--adapter", help="NAME=PATH of a LoRA adapter, served as model NAME (repeatable).")] = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
    max_loras: Annotated[int, typer.Option("--max-loras", help="vllm: adapters per batch (0: all).")] = 0,
    max_lora_rank: Annotated[int, typer.Option(
        "--max-lora-rank", help="vllm: largest adapter rank, 8/16/32/... (0: the smallest that fits).")] = 0,
    served_model_name: Annotated[str, typer.Option(
        "--served-model-name", help="Name of the base model in requests.")] = "",
    gpu_memory_utilization: Annotated[float, typer.Option(
        "--gpu-memory-utilization", help="vllm: share of GPU memory to use.")] = 0.9,
    tensor_parallel_size: Annotated[int, typer.Option(
        "--tensor-parallel-size", help="vllm: GPUs per replica.")] = 1,
    data_dir: DataDir = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the server command and exit.")] = False,
) -> None:
    """Serve the base model and course adapters on an OpenAI-compatible server; prints the tutor's settings."""
    import shlex

    from serving.serve import ServeRequest, parse_adapters, serve_until_stopped, server_command
    from tutor.settings import load_settings

    settings = load_settings(data_dir=data_dir)
    request = ServeRequest(
        engine=engine, base=base, adapters=parse_adapters(adapter or []), work_dir=settings.data_dir / "serve",
        host=host, port=port, served_model_name=served_model_name, max_loras=max_loras,
        max_lora_rank=max_lora_rank, gpu_memory_utilization=gpu_memory_utilization,
        tensor_parallel_size=tensor_parallel_size)
    if dry_run:
        typer.echo(shlex.join(server_command(request)))
        return
    serve_until_stopped(request, typer.echo)


@app.command()
@friendly_errors
def bench(
    base_url: Annotated[str, typer.Option("--base-url", help="OpenAI-compatible server (ending in /v1).")],
    model: Annotated[list[str], typer.Option("--model", help="Model name; give two to compare them.")],
    base_url2: Annotated[Optional[str], typer.Option(
        "--base-url2", help="A second server to compare (same --model, or the second one).")] = None,
    course: Course = None,
    data_dir: DataDir = None,
    concurrency: Annotated[int, typer.Option("--concurrency", help="Simulated students at once.")] = 8,
    duration: Annotated[float, typer.Option("--duration", help="Seconds of load per target.")] = 30.0,
    max_requests: Annotated[int, typer.Option("--max-requests", help="Cap per target (0: none).")] = 0,
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="Longest answer requested.")] = 256,
    questions: Annotated[Optional[Path], typer.Option(
        "--questions", help="Eval JSONL to replay (default: eval/datasets/<course>.jsonl, else section titles).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Folder for bench.json and bench.png.")] = None,
    as_json: AsJson = False,
) -> None:
    """Load-test served models through the full tutor path: TTFT p50/p95, requests/s, tokens/s."""
    from serving.bench import BenchOptions, bench_course, format_report, targets_from_flags
    from tutor.settings import load_settings

    settings = load_settings(data_dir=data_dir, course=course)
    options = BenchOptions(concurrency=concurrency, duration_s=duration, max_requests=max_requests,
                           max_tokens=max_tokens)
    report, json_path, png_path = bench_course(settings, course, targets_from_flags(base_url, model, base_url2),
                                               options, questions, out)
    if as_json:
        typer.echo(json.dumps(report))
        return
    typer.echo(format_report(report))
    typer.echo(f"saved {json_path} and {png_path}")


@app.command()
@friendly_errors
def report(
    course: Course = None,
    data_dir: DataDir = None,
    days: Annotated[int, typer.Option("--days", help="How many days of questions to count.")] = 30,
    as_json: AsJson = False,
) -> None:
    """What students ask: questions per day, most-cited files, declined, weak and thumbs-down answers."""
    from tutor.chatlog import ChatLog
    from tutor.errors import CourseNotFoundError
    from tutor.settings import load_settings

    settings = load_settings(data_dir=data_dir, course=course)
    path = settings.data_dir / "chatlog.sqlite"
    if not path.is_file():
        raise CourseNotFoundError(f"no chat log at {path} yet; students' questions are logged by `tutor chat`")
    log, course_id = ChatLog(path), settings.course or None
    data = {
        "questions_per_day": log.questions_per_day(course_id, days),
        "most_cited": log.most_cited(course_id),
        "declined": [{"question": r["question"], "reason": r["refused"]} for r in log.refused(course_id, 20)],
        "low_confidence": [{"question": r["question"], "similarity": r["top_similarity"]}
                           for r in log.low_confidence(course_id, limit=20)],
        "thumbs_down": [{"question": r["question"], "category": r.get("category"), "comment": r.get("comment")}
                        for r in log.thumbs_down(course_id, 20)],
    }
    if as_json:
        typer.echo(json.dumps(data, ensure_ascii=False))
        return
    typer.echo("Questions per day: " + (", ".join(f"{d} {n}" for d, n in data["questions_per_day"]) or "none"))
    typer.echo("Most-cited files:")
    for path_, n in data["most_cited"]:
        typer.echo(f"  {n:4d}  {path_}")
    for title, key, extra in (("Declined", "declined", "reason"), ("Weak matches", "low_confidence", "similarity"),
                              ("Thumbs down", "thumbs_down", "category")):
        typer.echo(f"{title} ({len(data[key])}):")
        for row in data[key]:
            value = row[extra]
            value = f"{value:.2f}" if isinstance(value, float) else (value or "-")
            typer.echo(f"  [{value}] {row['question']}")


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
