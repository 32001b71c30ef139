"""The Gradio chat: students ask and follow citations; instructors update material and read the log.

    tutor chat --data-dir data                    # http://127.0.0.1:7860
    app = build_app(load_settings())              # a FastAPI app: Gradio at /, originals at /course-file/

Per-session state only: each browser tab (or API client) has its own conversation in a `gr.State`;
nothing module-level holds a chat. What is shared is read-only or thread-safe: the tutors (one per
course, reloaded when an ingest swaps in a new index), the chat log (SQLite), the settings.

The parts live beside this module in `tutor/app/`: `chat` (the student's handlers), `render` (chips,
source panel, demo links), `files` (the original files behind citations), `instructor` (the
password-gated tab), `upload` (safe uploads); `tutor/chatlog.py` keeps questions, answers, feedback.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator

import gradio as gr

from ingest.store import list_courses
from tutor.answer import Tutor
from tutor.app.chat import MAX_QUESTION_CHARS, STARTERS, StudentChat, new_session
from tutor.app.files import mount_course_files
from tutor.app.instructor import (
    INSTRUCTOR_COOKIE,
    InstructorTokens,
    SignInGuard,
    build_instructor_tab,
    recover_interrupted_uploads,
)
from tutor.app.render import CSS, LATEX_DELIMITERS, SOURCES_JS, banner_markdown, sources_html
from tutor.chatlog import FEEDBACK_CATEGORIES, ChatLog
from tutor.errors import CourseNotFoundError
from tutor.settings import Settings

log = logging.getLogger("tutor.app")

# How many answers are computed at once (more wait in Gradio's queue). An extractive answer costs the
# server 10-20 ms of CPU (one query embedding shared with the questions asked in the same moment, run
# in the embedding process; two searches sharing their BM25 scores; a leak check without embeddings),
# so a burst is CPU-bound whatever the limit, and the limit decides who waits. With 64 a class's burst
# is admitted whole and its questions share a few query batches (ingest/query_batch.py). Measured
# with benchmarks/load.py on 2 cores (students open the page, then ask at once): 50 students' first
# text at p50 0.68-0.76 s / p95 0.75-0.85 s, 200 at p95 3.9-4.3 s; 16 and 32 gave the same within noise.
ASK_CONCURRENCY = 64
# The other events (page load, a thumb, the feedback form) run sub-millisecond handlers (start_page
# 0.06 ms): 4 at once clear a lecture hall's page loads long before its answers.
OTHER_CONCURRENCY = 4
SESSION_TTL_S = 12 * 3600
# Students waiting in the queue see their place refreshed this often. Gradio's default ("auto") tells
# every waiting student each time any answer starts: with 136 of 200 waiting that is thousands of
# messages in a burst, each a write on the server's one Python thread.
QUEUE_STATUS_INTERVAL_S = 1.0


class CourseTutors:
    """One `Tutor` per indexed course, created on first use and refreshed after each ingest.

    `tutor_factory(course_id) -> Tutor` builds one; by default from the settings, all courses sharing
    one embedder (the model is the largest thing in memory).
    """

    def __init__(self, settings: Settings, tutor_factory: Callable[[str], Tutor] | None = None):
        self.settings = settings
        self._factory = tutor_factory or self._from_settings
        self._tutors: dict[str, Tutor] = {}
        self._lock = threading.Lock()
        self._embedder = None
        self._known: tuple[float, list[str]] | None = None

    def _from_settings(self, course: str) -> Tutor:
        if self._embedder is None:
            self._embedder = self.settings.embedder()
            if self.settings.embedding_process:
                from ingest.embed_process import EmbeddingProcess

                self._embedder = EmbeddingProcess(self._embedder)
        return Tutor.from_settings(self.settings, course=course, embedder=self._embedder)

    def close(self) -> None:
        """Stop the embedding process, if one was started (the app's shutdown)."""
        close = getattr(self._embedder, "close", None)
        if close is not None:
            close()

    @contextlib.asynccontextmanager
    async def lifespan(self, _app):
        """A FastAPI lifespan: nothing to start, `close` at shutdown."""
        yield
        self.close()

    def courses(self, fresh: bool = False) -> list[str]:
        """The indexed courses (looked up at most once a second, unless `fresh`: every question asks)."""
        now = time.monotonic()
        if fresh or self._known is None or now - self._known[0] > 1.0:
            known = list_courses(self.settings.index_root())
            if not known:
                self.settings.default_course()  # fails, saying what to run
            self._known = (now, known)
        return self._known[1]

    def default_course(self) -> str:
        return self.settings.default_course()

    def get(self, course: str) -> Tutor:
        """The tutor of `course`, on the newest index build."""
        with self._lock:
            tutor = self._tutors.get(course)
            if tutor is None:
                if course not in self.courses() and course not in self.courses(fresh=True):
                    raise CourseNotFoundError(f"course '{course}' is not indexed")
                tutor = self._tutors[course] = self._factory(course)
            else:
                tutor.reload_if_changed()
            return tutor

    def root_and_files(self, course: str) -> tuple[str, dict]:
        tutor = self.get(course)
        return str(tutor.index.course.root), tutor.index.manifest.files


def build_app(settings: Settings, tutor_factory: Callable[[str], Tutor] | None = None):
    """The whole app as a FastAPI application (serve it with uvicorn, or `serve`)."""
    from fastapi import FastAPI

    for line in recover_interrupted_uploads(settings):
        log.warning(line)
    tutors = CourseTutors(settings, tutor_factory)
    chatlog = ChatLog.from_settings(settings)     # SQLite in the data folder, or database_url
    tokens = InstructorTokens()
    blocks = build_blocks(settings, tutors, chatlog, tokens)
    app = FastAPI(title="Course Tutor", docs_url=None, redoc_url=None, openapi_url=None, lifespan=tutors.lifespan)
    mount_course_files(app, tutors.root_and_files)
    from tutor.api import TutorApi  # here: tutor.api imports this package

    app.include_router(TutorApi(tutors, chatlog).router())    # /v1/...: before Gradio takes "/"

    app.add_middleware(UploadsNeedAnInstructor, tokens=tokens)
    return gr.mount_gradio_app(
        app, blocks, path="/", css=CSS, footer_links=["api"], run_history=False, show_error=False,
        max_file_size=int(settings.max_upload_mb * 2**20), server_name=settings.host, server_port=settings.port,
    )


class UploadsNeedAnInstructor:
    """Only the instructor tab takes files; Gradio's own upload route would take them from anyone.

    A plain ASGI middleware: Starlette's `@app.middleware("http")` wraps every response, and its
    per-message disconnect checks on the chat's event streams cost about a tenth of the server's CPU
    under a lecture hall's load (benchmarks/load.py with py-spy)."""

    def __init__(self, app, tokens: InstructorTokens):
        self.app, self.tokens = app, tokens

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST" \
                and scope["path"].rstrip("/").endswith("/gradio_api/upload"):
            from starlette.requests import HTTPConnection
            from starlette.responses import PlainTextResponse

            if not self.tokens.valid(HTTPConnection(scope).cookies.get(INSTRUCTOR_COOKIE)):
                await PlainTextResponse("Sign in as instructor to upload files.", status_code=403)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def build_blocks(settings: Settings, tutors: CourseTutors, chatlog: ChatLog,
                 tokens: InstructorTokens | None = None) -> gr.Blocks:
    """The page: the Ask tab (chat, starters, feedback, sources) and the instructor tabs, wired."""
    courses = tutors.courses()
    default = tutors.default_course()
    first = tutors.get(default)
    chat = StudentChat(tutors, chatlog, default)

    with gr.Blocks(title="Course Tutor", fill_width=True) as blocks:
        session = gr.State(new_session(default), time_to_live=SESSION_TTL_S)
        banner = gr.Markdown(banner_markdown(first.course, first.backend.name, first.backend.model),
                             elem_id="tutor-banner")
        with gr.Tabs() as tabs:
            with gr.Tab("Ask", id="ask"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=3):
                        chatbot = gr.Chatbot(
                            label="Course Tutor", height=560, latex_delimiters=LATEX_DELIMITERS,
                            sanitize_html=True, render_markdown=True, buttons=["copy"], elem_id="tutor-chat",
                            placeholder="Ask about the lectures, the book or the demos. The bin icon starts "
                                        "a new conversation.")
                        with gr.Row():
                            question = gr.Textbox(placeholder="Type a question and press Enter", show_label=False,
                                                  scale=5, elem_id="tutor-question", max_lines=6,
                                                  max_length=MAX_QUESTION_CHARS)
                            send = gr.Button("Ask", variant="primary", scale=1, elem_id="tutor-send")
                        with gr.Row():
                            starters = [gr.Button(visible=False, size="sm", elem_classes="tutor-starter")
                                        for _ in range(STARTERS)]
                        with gr.Accordion("Rate an answer", open=False) as feedback_box:
                            with gr.Row():
                                fb_answer = gr.Dropdown([], label="Answer", allow_custom_value=True, scale=3)
                                fb_rating = gr.Radio([("👍 Helpful", "1"), ("👎 Not helpful", "-1")], label="Rating",
                                                     scale=2)
                                fb_category = gr.Dropdown(list(FEEDBACK_CATEGORIES), scale=2,
                                                          label="What was wrong? (optional)")
                            fb_comment = gr.Textbox(label="Comment (optional)", lines=2)
                            fb_send = gr.Button("Send feedback", size="sm")
                            fb_status = gr.Markdown()
                    with gr.Column(scale=2):
                        course_picker = gr.Dropdown(
                            [(tutors.get(c).index.course.title, c) for c in courses], value=default,
                            label="Course", visible=len(courses) > 1)
                        mode = gr.Radio([("Explain", "explain"), ("Socratic: guide me with questions", "socratic")],
                                        value=settings.mode, label="Answer style")
                        sources = gr.HTML(sources_html(None), js_on_load=SOURCES_JS, elem_id="tutor-sources")
            build_instructor_tab(settings, tutors, chatlog, course_picker, tabs, blocks, SignInGuard(),
                                 tokens or InstructorTokens())

        # One event per question: the answer's last update also refreshes the feedback form's picker.
        ask = {"fn": chat.respond, "inputs": [question, session, course_picker, mode],
               "outputs": [chatbot, sources, question, session, fb_answer], "concurrency_limit": ASK_CONCURRENCY,
               "concurrency_id": "ask"}
        question.submit(**ask, api_name="ask")
        send.click(**ask, api_name=False)
        for button in starters:
            button.click(**{**ask, "inputs": [button, session, course_picker, mode]}, api_name=False)
        chatbot.like(chat.on_like, [session], [fb_answer, fb_rating, feedback_box, fb_status], api_name=False)
        chatbot.select(chat.show_turn_sources, [session], [sources], api_name=False)
        fb_send.click(chat.send_feedback, [fb_answer, fb_rating, fb_category, fb_comment, session],
                      [fb_status, fb_comment], api_name="feedback")
        page = [session, chatbot, sources, banner, fb_answer, *starters]
        course_picker.change(chat.start_page, [course_picker], page, api_name=False)
        chatbot.clear(chat.start_page, [course_picker], page, api_name=False)
        blocks.load(chat.start_page, [course_picker], page, api_name=False)
    blocks.queue(default_concurrency_limit=OTHER_CONCURRENCY, status_update_rate=QUEUE_STATUS_INTERVAL_S)
    return blocks


def chat_torch_threads() -> int:
    """Torch intra-op threads for the chat: one per core this process may use.

    The batched query embedding of a burst is the one large model call, and it takes both cores:
    50 students at once on 2 cores reached their first token at p95 0.7-1.0 s with 2 threads and
    1.2-1.6 s with 1 (a single question: 15 ms to the first token with 2 threads, 18 ms with 1).
    Torch's own default counts the machine's cores, not those the process is allowed (a container's
    CPU set): more threads than that only contend."""
    import torch

    return min(torch.get_num_threads(), len(os.sched_getaffinity(0)))


def serve(settings: Settings) -> None:
    """Run the app in the foreground until Ctrl-C (what `tutor chat` does)."""
    import torch
    import uvicorn

    torch.set_num_threads(chat_torch_threads())
    app = build_app(settings)
    print(f"Course Tutor: http://{settings.host}:{settings.port}/ (OpenAI-compatible API: "
          f"http://{settings.host}:{settings.port}/v1, keys from `tutor keys create`)")
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")


@contextlib.contextmanager
def serve_in_thread(app, host: str = "127.0.0.1", port: int = 0, timeout_s: float = 60.0) -> Iterator[str]:
    """Serve `app` from a background thread (tests, notebooks); yields the base URL, stops on exit.

    `port=0` picks a free port.
    """
    import socket
    import time

    import uvicorn

    if port == 0:
        with socket.socket() as probe:
            probe.bind((host, 0))
            port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on",
                                          timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, name=f"tutor-app-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the app did not start on {host}:{port}")
        time.sleep(0.05)
    try:
        yield f"http://{host}:{port}/"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
