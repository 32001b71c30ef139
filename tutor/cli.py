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


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
