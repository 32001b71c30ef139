"""`tutor`: the student and instructor commands, and the groups other packages add.

Imports are lazy (inside each command) so `tutor --help` is instant. The commands of `eval`
(`tutor eval ...`) and `serving` (`tutor finetune|serve|bench`) are not imported from here: each
package registers them through the `course_tutor.commands` entry point group (pyproject.toml), found
by `register_command_groups`, so `tutor` never imports the layers above it. The shared options and
the error boundary are in `options.py`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from tutor.cli.options import AsJson, Backend, Course, DataDir, Host, Port, friendly_errors, register_command_groups

app = typer.Typer(
    name="tutor", no_args_is_help=True, add_completion=False,
    help="Course Tutor: a teaching assistant that answers from your course material, with citations.",
)


@app.command()
@friendly_errors
def ingest(
    course_dir: Annotated[Path, typer.Argument(help="The course folder (with an optional course.toml).")],
    data_dir: DataDir = None,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Re-read and re-embed every file.")] = False,
    as_json: AsJson = False,
) -> None:
    """Index a course folder; re-running only pays for the files that changed."""
    from ingest.pipeline import ingest_course
    from tutor.app.upload import recover_uploads
    from tutor.settings import load_settings

    settings = load_settings(data_dir=data_dir)
    for root in recover_uploads(settings.uploads_dir()):  # a crash mid-upload must not be indexed as if it landed
        typer.echo(f"note: an interrupted upload to {root} was undone", err=True)
    report = ingest_course(course_dir, settings.ingest_options(rebuild=rebuild))
    if as_json:
        data = report.to_dict()
        keys = ("course", "added", "changed", "removed", "unchanged", "skipped", "chunks", "embedded",
                "sentences_embedded", "seconds", "notes", "index_path")
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

    from tutor.answer import Tutor, final_answer
    from tutor.errors import ConfigError
    from tutor.settings import load_settings

    settings = load_settings(data_dir=data_dir, course=course, llm_backend=backend, mode=mode)
    try:
        until = dt.date.fromisoformat(taught_until) if taught_until else None
    except ValueError:
        raise ConfigError(f"--taught-until {taught_until!r} is not a date like 2026-10-06") from None
    tutor = Tutor.from_settings(settings)
    answer = final_answer(tutor.stream(question, taught_until=until),
                          on_delta=None if as_json else lambda text: typer.echo(text, nl=False),
                          on_reset=None if as_json else lambda: typer.echo("\n[draft withheld]\n"))
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


@app.command()
@friendly_errors
def chat(
    course: Course = None,
    data_dir: DataDir = None,
    backend: Backend = None,
    host: Host = None,
    port: Port = None,
) -> None:
    """Serve the chat for students (and the instructor tab) in the browser; never shared publicly."""
    from tutor.app import serve
    from tutor.settings import load_settings

    serve(load_settings(course=course, data_dir=data_dir, llm_backend=backend, host=host, port=port))


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
    if not settings.database_url and not settings.chatlog_path().is_file():
        raise CourseNotFoundError(f"no chat log at {settings.chatlog_path()} yet; students' questions are "
                                  "logged by `tutor chat`")
    log, course_id = ChatLog.from_settings(settings), settings.course or None
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


prepare_app = typer.Typer(help="Models that ship inside Python packages: prepare them once for every command.")


@prepare_app.command("prepare")
@friendly_errors
def prepare(
    name: Annotated[str, typer.Argument(help="A packaged model: smollm2 (SmolLM2-135M-Instruct, Apache-2.0).")],
    data_dir: DataDir = None,
    as_json: AsJson = False,
) -> None:
    """Convert a packaged model once into <data dir>/models/ (safetensors, tokenizer, lineage.json)."""
    from tutor.models import prepare_model
    from tutor.settings import load_settings

    settings = load_settings(data_dir=data_dir)
    prepared = prepare_model(name, settings.data_dir, (lambda _: None) if as_json else typer.echo)
    if as_json:
        typer.echo(json.dumps({"name": prepared.name, "path": prepared.path, "sha256": prepared.sha256}))
        return
    typer.echo(f"use it: tutor ask --backend local ... with TUTOR_LLM_MODEL_PATH={name}, "
               f"or tutor finetune --base {name}")


app.add_typer(prepare_app, name="model")
register_command_groups(app)

from tutor.cli.service import register_service_commands  # noqa: E402  (tutor api, tutor keys)

register_service_commands(app)
