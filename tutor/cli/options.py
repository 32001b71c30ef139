"""What every `tutor` command shares: the option types, the error boundary, command-group discovery.

Project errors (`TutorError`) become `error: <message>` on stderr and exit status 2; anything else
is a bug and shows its traceback.
"""

from __future__ import annotations

import functools
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated, Optional

import typer

DataDir = Annotated[Optional[Path], typer.Option("--data-dir", help="Index/cache/log folder (default: ./data).")]
Course = Annotated[Optional[str], typer.Option("--course", help="Course id (default: the only indexed course).")]
Backend = Annotated[Optional[str], typer.Option(
    "--backend", help="LLM backend: extractive | openai | local | auto.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")]
Host = Annotated[Optional[str], typer.Option(
    "--host", help="Address to listen on (default 127.0.0.1; 0.0.0.0 exposes it to the network).")]
Port = Annotated[Optional[int], typer.Option("--port", help="Port to listen on (default 7860).")]


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


COMMAND_GROUP = "course_tutor.commands"


def register_command_groups(app: typer.Typer) -> list[str]:
    """Let each installed package add its commands: every `course_tutor.commands` entry point names a
    `register(app)` function (as pytest and llm find their plugins). Returns the entry points' names."""
    found = sorted(entry_points(group=COMMAND_GROUP), key=lambda ep: ep.name)
    for entry in found:
        entry.load()(app)
    return [entry.name for entry in found]
