"""`tutor api` (the OpenAI-compatible API alone) and `tutor keys create|list|revoke` (its API keys).

`tutor chat` serves the same API beside the chat page, on its port; `tutor api` is for a machine
that serves only clients (an LMS plugin, a bot, Open WebUI). Keys live in the chat-log database
(`database_url`, else `<data dir>/chatlog.sqlite`), so every replica sees a revocation at once.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from tutor.cli.options import AsJson, Backend, Course, DataDir, Host, Port, friendly_errors

keys_app = typer.Typer(help="API keys of the OpenAI-compatible API: create (shown once), list, revoke.",
                       no_args_is_help=True)


def api(
    course: Course = None,
    data_dir: DataDir = None,
    backend: Backend = None,
    host: Host = None,
    port: Port = None,
) -> None:
    """Serve only the OpenAI-compatible API (/v1/models, /v1/chat/completions), no chat page."""
    import torch
    import uvicorn

    from tutor.app.server import chat_torch_threads
    from tutor.settings import load_settings

    settings = load_settings(course=course, data_dir=data_dir, llm_backend=backend, host=host, port=port)
    torch.set_num_threads(chat_torch_threads())
    app = build_api_app(settings)
    typer.echo(f"Course Tutor API: http://{settings.host}:{settings.port}/v1 (keys: `tutor keys create`)")
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")


@keys_app.command("create")
@friendly_errors
def create(
    owner: Annotated[str, typer.Option("--owner", help="Who asks with it: a student id, or a bot's name. "
                                                       "Its questions are logged and counted under this name.")],
    course: Annotated[str, typer.Option("--course", help="The course it may ask (a course id), or '*' for all.")],
    data_dir: DataDir = None,
    as_json: AsJson = False,
) -> None:
    """Create a key; it is printed once (only its hash is stored)."""
    from ingest.store import list_courses
    from tutor.keys import ALL_COURSES, ApiKeyError

    settings, keys = _keys(data_dir)
    known = list_courses(settings.index_root())
    if course != ALL_COURSES and known and course not in known:
        raise ApiKeyError(f"course {course!r} is not indexed (indexed: {', '.join(known)}); "
                          f"give one of them, or '{ALL_COURSES}' for every course")
    key, secret = keys.create(owner, course)
    if as_json:
        typer.echo(json.dumps({**key.to_dict(), "key": secret}))
        return
    typer.echo(f"API key {key.id} for {key.owner} on {key.course}:\n{secret}\n"
               "Keep it now: it is not shown again. Clients use it as their OpenAI API key, with base URL "
               f"http://{settings.host}:{settings.port}/v1")


@keys_app.command("list")
@friendly_errors
def list_keys(data_dir: DataDir = None, as_json: AsJson = False) -> None:
    """Every key: id, first characters, owner, course, created, revoked."""
    import datetime as dt

    _, keys = _keys(data_dir)
    found = keys.list()
    if as_json:
        typer.echo(json.dumps([key.to_dict() for key in found]))
        return
    if not found:
        typer.echo("no API keys yet; create one with `tutor keys create --owner NAME --course COURSE`")
    for key in found:
        created = dt.datetime.fromtimestamp(key.created).strftime("%Y-%m-%d %H:%M")
        state = "revoked " + dt.datetime.fromtimestamp(key.revoked).strftime("%Y-%m-%d %H:%M") \
            if key.revoked else "active"
        typer.echo(f"{key.id:>4}  {key.prefix}…  {key.owner}  {key.course}  created {created}  {state}")


@keys_app.command("revoke")
@friendly_errors
def revoke(
    key_id: Annotated[int, typer.Argument(help="The key's id (see `tutor keys list`).")],
    data_dir: DataDir = None,
) -> None:
    """Revoke a key: its requests get 401 from now on, on every replica."""
    _, keys = _keys(data_dir)
    key = keys.revoke(key_id)
    typer.echo(f"revoked API key {key.id} ({key.prefix}…, {key.owner} on {key.course})")


def build_api_app(settings, tutor_factory=None):
    """The API alone (what `tutor api` serves): `/v1/...` and the course files its links point at."""
    from fastapi import FastAPI

    from tutor.api import TutorApi
    from tutor.app.files import mount_course_files
    from tutor.app.server import CourseTutors
    from tutor.chatlog import ChatLog

    tutors = CourseTutors(settings, tutor_factory)
    app = FastAPI(title="Course Tutor API", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=tutors.lifespan)
    mount_course_files(app, tutors.root_and_files)
    app.include_router(TutorApi(tutors, ChatLog.from_settings(settings)).router())
    return app


def _keys(data_dir):
    from tutor.chatlog import ChatLog
    from tutor.keys import ApiKeys
    from tutor.settings import load_settings

    settings = load_settings(data_dir=data_dir)
    return settings, ApiKeys(ChatLog.from_settings(settings).engine)


def register_service_commands(app: typer.Typer) -> None:
    app.command("api")(friendly_errors(api))
    app.add_typer(keys_app, name="keys")
