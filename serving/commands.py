"""`tutor finetune`, `tutor serve`, `tutor bench`: the serving package's commands.

`tutor` finds them through the `course_tutor.commands` entry point (pyproject.toml), so nothing under
`tutor/` imports `serving`. The heavy imports stay inside each command, so `tutor --help` is instant.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from tutor.cli.options import AsJson, Course, DataDir, friendly_errors

model_app = typer.Typer()

@model_app.command()
@friendly_errors
def finetune(
    course: Course = None,
    data_dir: DataDir = None,
    base: Annotated[Optional[str], typer.Option(
        "--base", help="Base model folder or a prepared model name such as smollm2 "
        "(default: TUTOR_LLM_MODEL_PATH).")] = None,
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
    context_span: Annotated[int, typer.Option(
        "--context-span", help="Neighbouring chunks shown around each source (the tutor shows 1).")] = 1,
    course_questions: Annotated[int, typer.Option(
        "--course-questions", help="Passages of the course turned into a cited Q&A example (0: none).")] = 80,
    eval_dataset: Annotated[Optional[str], typer.Option(
        "--eval-dataset", help="Eval set kept out of training: no example paraphrasing its questions or citing "
        "its gold passages is trained on (default: eval/datasets/<course>.jsonl when present; '' for none).")] = None,
    merge: Annotated[bool, typer.Option("--merge", help="Also save the base with the adapter merged in.")] = False,
    data_only: Annotated[bool, typer.Option("--data-only", help="Build and save the examples; do not train.")] = False,
    shuffle_replies: Annotated[bool, typer.Option(
        "--shuffle-replies", help="Negative control: give each training prompt another example's reply "
                                  "(an adapter the promotion gate should refuse).")] = False,
    as_json: AsJson = False,
) -> None:
    """Fine-tune a LoRA adapter on the course (instructor Q&A, liked answers, cited course passages,
    policy examples), keeping the eval set out; prints steps/s and tokens/s, saves a loss curve PNG."""
    from serving.finetune import LoraSettings, finetune_course
    from serving.finetune_data import DataOptions
    from tutor.llm import create_backend
    from tutor.settings import load_settings

    settings = load_settings(data_dir=data_dir, course=course)
    lora = LoraSettings(rank=rank, alpha=alpha, target_modules=tuple(m.strip() for m in target_modules.split(",")
                                                                    if m.strip()),
                        learning_rate=lr, epochs=epochs, max_length=max_length, batch_size=batch_size, seed=seed)
    options = DataOptions(top_k=top_k or settings.top_k, max_teacher_questions=teacher_questions,
                          max_course_questions=course_questions, context_span=context_span)
    teacher = None
    if teacher_model or teacher_base_url:
        teacher = create_backend("openai", settings.backend_config(base_url=teacher_base_url, model=teacher_model))

    def log(record: dict) -> None:
        if as_json:
            return
        if record["event"] == "step":
            typer.echo(f"epoch {record['epoch']} step {record['step']}/{record['of']}: loss {record['loss']:.4f} "
                       f"({record['steps_per_s']:.3f} steps/s, {record['tokens_per_s']:.0f} tokens/s, "
                       f"{record['eta_s'] / 60:.1f} min left)")
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
            if record.get("holdout"):
                held = record["holdout"]
                typer.echo(f"eval set kept out: {held['path']} ({held['cases']} cases, sha256 {held['sha256'][:12]}); "
                           f"{held['excluded']['total']} examples excluded")

    from tutor.models import resolve_model_path

    chosen = base or settings.llm_model_path
    base_model = Path(resolve_model_path(chosen, settings.data_dir)) if chosen else None
    summary = finetune_course(settings, course, base_model, out, lora, options, teacher, merge, data_only, log,
                              eval_dataset=eval_dataset, shuffle_replies=shuffle_replies)
    if as_json:
        typer.echo(json.dumps(summary))
    elif "adapter" in summary:
        metrics = summary["metrics"]
        typer.echo(f"adapter: {summary['adapter']}: {metrics['steps']} steps in {metrics['seconds'] / 60:.1f} min "
                   f"({metrics['steps_per_s']} steps/s, {metrics['tokens_per_s']} tokens/s); "
                   f"loss curve {summary['loss_curve']}")
        if summary.get("merged"):
            typer.echo(f"merged model: {summary['merged']}")
        typer.echo(f"serve it: tutor serve --base {base_model} --adapter NAME={summary['adapter']}")


@model_app.command()
@friendly_errors
def serve(
    base: Annotated[str, typer.Option(
        "--base", help="Base model folder or a prepared model name such as smollm2 (vllm also takes a hub id).")],
    engine: Annotated[str, typer.Option("--engine", help="vllm (GPU, LoRA adapters) | transformers (CPU).")] = "vllm",
    adapter: Annotated[Optional[list[str]], typer.Option(
        "--adapter", help="NAME=PATH of a LoRA adapter, served as model NAME (repeatable; default: each "
        "course's current adapter from `tutor adapters`, served as the course id).")] = None,
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

    from tutor.models import resolve_model_path

    settings = load_settings(data_dir=data_dir)
    if adapter is None:  # no --adapter: every course's promoted adapter, served under the course's name
        from serving.adapters import AdapterRegistry

        registry = AdapterRegistry(settings.data_dir)
        adapter = [f"{c}={p}" for c in sorted({row["course"] for row in registry.list()})
                   if (p := registry.current_path(c))]
    request = ServeRequest(
        engine=engine, base=resolve_model_path(base, settings.data_dir), adapters=parse_adapters(adapter),
        work_dir=settings.data_dir / "serve",
        host=host, port=port, served_model_name=served_model_name, max_loras=max_loras,
        max_lora_rank=max_lora_rank, gpu_memory_utilization=gpu_memory_utilization,
        tensor_parallel_size=tensor_parallel_size)
    if dry_run:
        typer.echo(shlex.join(server_command(request)))
        return
    serve_until_stopped(request, typer.echo)


@model_app.command()
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


adapters_app = typer.Typer(no_args_is_help=True, help="The course adapters: list them, promote one through the "
                           "eval gate, roll back. The current one is what `tutor serve` loads.")
AdapterName = Annotated[str, typer.Argument(help="Adapter name: its folder under <data dir>/adapters/.")]


@adapters_app.command("list")
@friendly_errors
def adapters_list(course: Course = None, data_dir: DataDir = None, as_json: AsJson = False) -> None:
    """Every adapter with its course, status (current, previous, candidate), data hash and eval run."""
    from serving.adapters import AdapterRegistry
    from tutor.settings import load_settings

    registry = AdapterRegistry(load_settings(data_dir=data_dir).data_dir)
    rows = registry.list(course)
    if as_json:
        typer.echo(json.dumps(rows))
        return
    if not rows:
        typer.echo(f"no adapters under {registry.root}; train one with `tutor finetune`")
    for row in rows:
        typer.echo(f"{row['name']:<24} {row['course']:<12} {row['status']:<10} data {row['data_sha256'][:12]}  "
                   f"eval {row['eval_run'] or '-'}")


@adapters_app.command("promote")
@friendly_errors
def adapters_promote(
    name: AdapterName,
    eval_run: Annotated[Optional[Path], typer.Option(
        "--eval-run", help="Eval run made with this adapter (recorded; the gate reads it).")] = None,
    baseline_run: Annotated[Optional[Path], typer.Option(
        "--baseline-run", help="Eval run of the base model, compared with when no adapter is current yet.")] = None,
    thresholds: Annotated[Optional[Path], typer.Option(
        "--thresholds", help="Gate thresholds TOML (default: eval/thresholds/<course>-promote.toml).")] = None,
    no_gate: Annotated[bool, typer.Option("--no-gate", help="Promote without checking (recorded as such).")] = False,
    data_dir: DataDir = None,
    as_json: AsJson = False,
) -> None:
    """Make NAME its course's current adapter if it passes the gate; else name each failing metric (exit 1)."""
    from serving.adapters import AdapterRegistry, PromotionRefusedError, eval_command_gate
    from tutor.settings import load_settings

    registry = AdapterRegistry(load_settings(data_dir=data_dir).data_dir)
    if eval_run:
        registry.attach_eval_run(name, eval_run)
    gate = None if no_gate else eval_command_gate(thresholds, baseline_run)
    try:
        adapter = registry.promote(name, gate)
    except PromotionRefusedError as exc:
        if as_json:
            typer.echo(json.dumps({"promoted": False, "name": name, "failures": exc.failures}))
        else:
            typer.echo(f"refused: {name} was not promoted", err=True)
            for failure in exc.failures:
                typer.echo(f"  {failure}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps({"promoted": True, **adapter.to_dict()}))
    else:
        typer.echo(f"{name} is now the current adapter of {adapter.course}"
                   + (" (gate skipped)" if no_gate else " (gate passed)"))


@adapters_app.command("rollback")
@friendly_errors
def adapters_rollback(course: Course = None, data_dir: DataDir = None, as_json: AsJson = False) -> None:
    """Make the adapter that was current before the last promotion current again."""
    from serving.adapters import AdapterRegistry
    from tutor.settings import load_settings

    settings = load_settings(data_dir=data_dir, course=course)
    course_id = settings.course or settings.default_course()  # a course need not be indexed to roll back
    restored = AdapterRegistry(settings.data_dir).rollback(course_id)
    if as_json:
        typer.echo(json.dumps({"course": course_id, "current": restored.name if restored else None}))
    else:
        typer.echo(f"{course_id}: current adapter is now {restored.name if restored else 'none (base model)'}")


def register(app: typer.Typer) -> None:
    """Add finetune, serve, bench and the adapters group to `tutor` (the `course_tutor.commands` entry point)."""
    app.registered_commands.extend(model_app.registered_commands)
    app.add_typer(adapters_app, name="adapters")
