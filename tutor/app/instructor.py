"""The instructor tab: add or replace course material (re-indexed live) and read what students ask.

It appears only after the instructor password (`TUTOR_INSTRUCTOR_PASSWORD`, or `instructor_password`
in tutor.toml) is entered in the "Instructor sign-in" tab; with no password set, that tab says how to
enable it. The unlocked flag lives in the session's `gr.State`, and every instructor endpoint checks
it on the server, so calling the API directly gains nothing.

Uploading runs an incremental ingest of the course folder with progress; the live app serves the
new index as soon as it is swapped in. If the ingest fails, the uploaded files are taken back out,
the previous index keeps serving, and the error is shown.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import tempfile
import threading
import time
from pathlib import Path

import gradio as gr

from ingest.course import CourseConfig, load_course
from ingest.pipeline import IngestReport, ingest_course
from tutor.app.upload import StagedUpload, UploadRejected, accepted_extensions, recover_uploads, stage_upload
from tutor.chatlog import ChatLog
from tutor.llm import llm_status
from tutor.settings import Settings

log = logging.getLogger("tutor.app")

ROOT_FOLDER = "(course folder)"
WRONG_PASSWORD_DELAY_S = 0.5   # slows guessing; the comparison itself is constant-time
INSTRUCTOR_COOKIE = "tutor_instructor"
DISABLED = ("**The instructor tab is disabled**: no instructor password is set. Set the environment "
            "variable `TUTOR_INSTRUCTOR_PASSWORD` (or `instructor_password` in `tutor.toml`) and restart "
            "`tutor chat` to enable uploads and the question log.")


def password_matches(given: str, expected: str) -> bool:
    """Constant-time comparison; an unset password never matches."""
    return bool(expected) and hmac.compare_digest((given or "").encode(), expected.encode())


class SignInGuard:
    """Lockout with backoff after repeated wrong passwords, per client address and for everyone.

    A client's first `free_tries` wrong guesses cost nothing more than the fixed delay; each further one
    locks that client out for twice as long as the last (1 s, 2 s, 4 s, ... up to `max_lock_s`). More
    than `global_limit` wrong guesses from all clients within `window_s` lock every sign-in for
    `global_lock_s` (a guesser spread over many addresses). A correct password clears its client.
    """

    def __init__(self, free_tries: int = 5, max_lock_s: float = 900.0, global_limit: int = 100,
                 window_s: float = 600.0, global_lock_s: float = 60.0, clock=time.monotonic):
        self.free_tries, self.max_lock_s = free_tries, max_lock_s
        self.global_limit, self.window_s, self.global_lock_s = global_limit, window_s, global_lock_s
        self.clock = clock
        self._failures: dict[str, int] = {}
        self._locked_until: dict[str, float] = {}
        self._recent: list[float] = []
        self._global_until = 0.0
        self._lock = threading.Lock()

    def wait_s(self, client: str) -> float:
        """Seconds until `client` may try again (0: now)."""
        now = self.clock()
        with self._lock:
            return max(0.0, self._locked_until.get(client, 0.0) - now, self._global_until - now)

    def failed(self, client: str) -> None:
        now = self.clock()
        with self._lock:
            count = self._failures[client] = self._failures.get(client, 0) + 1
            if count > self.free_tries:
                self._locked_until[client] = now + min(self.max_lock_s, 2.0 ** (count - self.free_tries - 1))
            self._recent = [t for t in self._recent if now - t < self.window_s] + [now]
            if len(self._recent) > self.global_limit:
                self._global_until = now + self.global_lock_s

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)
            self._locked_until.pop(client, None)


class InstructorTokens:
    """Random tokens handed to signed-in instructors; Gradio's upload route needs one (as a cookie)."""

    def __init__(self, ttl_s: float = 12 * 3600):
        self.ttl_s = ttl_s
        self._tokens: dict[str, float] = {}
        self._lock = threading.Lock()

    def issue(self) -> str:
        token = secrets.token_urlsafe(32)
        now = time.monotonic()
        with self._lock:
            self._tokens = {t: until for t, until in self._tokens.items() if until > now}
            self._tokens[token] = now + self.ttl_s
        return token

    def valid(self, token: str | None) -> bool:
        with self._lock:
            return bool(token) and self._tokens.get(token, 0.0) > time.monotonic()


# Sets the cookie Gradio's upload route asks for, right after a successful sign-in in the browser.
SET_TOKEN_JS = (f"(token) => {{ if (token) {{ document.cookie = `{INSTRUCTOR_COOKIE}=${{token}}; path=/; "
                "SameSite=Strict`; } return []; }")


def build_instructor_tab(settings: Settings, tutors, chatlog: ChatLog, course_picker, tabs, blocks: gr.Blocks,
                         guard: SignInGuard, tokens: InstructorTokens) -> None:
    """Add the sign-in and instructor tabs to `tabs` (call inside that `gr.Tabs()` while building)."""
    expected = settings.instructor_password.get_secret_value()

    def require(is_unlocked: bool) -> None:
        if not is_unlocked:
            raise gr.Error("Sign in as instructor first (Instructor sign-in tab).", print_exception=False)

    def sign_in(given: str, request: gr.Request):
        client = getattr(request.client, "host", "") if request is not None else ""
        wait = guard.wait_s(client)
        if wait > 0:
            raise gr.Error(f"Too many wrong passwords; try again in {wait:.0f} s.", print_exception=False)
        if not password_matches(given, expected):
            guard.failed(client)
            time.sleep(WRONG_PASSWORD_DELAY_S)
            log.warning("wrong instructor password from %s", client or "an unknown client")
            raise gr.Error("Wrong instructor password.", print_exception=False)
        guard.succeeded(client)
        # Gradio 6 cannot hide a tab once shown, so the sign-in tab stays and says it is done.
        return (True, gr.update(visible=False), gr.update(visible=True), gr.update(visible=True),
                gr.Tabs(selected="instructor"), "", tokens.issue())

    def upload(files, folder: str, course: str, is_unlocked: bool, progress=gr.Progress()):
        require(is_unlocked)
        return update_material(settings, tutors, course, [Path(f) for f in files or []],
                               "" if folder in (None, ROOT_FOLDER) else folder,
                               lambda fraction, message: progress(fraction, desc=message),
                               accept_source=lambda path: str(path) in blocks.upload_file_set)

    def folders(course: str, is_unlocked: bool):
        require(is_unlocked)
        root = tutors.get(course).index.course.root
        names = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        return gr.update(choices=[ROOT_FOLDER, *names], value=names[0] if names else ROOT_FOLDER)

    def stats(course: str, is_unlocked: bool):
        require(is_unlocked)
        return (*usage_tables(chatlog, tutors.get(course).index.course), model_status_markdown(llm_status()))

    def export(chat_ids, is_unlocked: bool):
        require(is_unlocked)
        if not chat_ids:
            raise gr.Error("Choose one or more chats to export.")
        name = f"eval-cases-{time.strftime('%Y%m%d-%H%M%S')}.jsonl"
        target = Path(tempfile.mkdtemp(prefix="tutor-export-")) / name
        try:
            return str(chatlog.export_eval_cases([int(i) for i in chat_ids], target))
        except ValueError as exc:
            raise gr.Error(str(exc)) from None

    with gr.Tab("Instructor sign-in", id="sign-in"):
        unlocked = gr.State(False)      # inside a Tab: a State directly under gr.Tabs breaks tab selection
        if not expected:
            gr.Markdown(DISABLED)
        else:
            with gr.Column() as sign_in_form:
                password = gr.Textbox(type="password", label="Instructor password", elem_id="tutor-password")
                unlock = gr.Button("Sign in", variant="primary")
            signed_in_note = gr.Markdown("Signed in: the **Instructor** tab is open.", visible=False)
            token = gr.Textbox(visible=False, elem_id="tutor-instructor-token")
    with gr.Tab("Instructor", id="instructor", visible=False) as instructor_tab:
        with gr.Tab("Update material"):
            gr.Markdown(f"Add or replace files (or a .zip of them) in the course folder, then re-index. "
                        f"Accepted: {', '.join(accepted_extensions())}; at most {settings.max_upload_mb:g} MB.")
            files = gr.File(file_count="multiple", file_types=accepted_extensions(), type="filepath",
                            label="Files or a .zip")
            folder = gr.Dropdown([ROOT_FOLDER], value=ROOT_FOLDER, allow_custom_value=True,
                                 label="Into folder (type a new name to create one)")
            add = gr.Button("Add and re-index", variant="primary")
            report = gr.Markdown(elem_id="tutor-ingest-report")
        with gr.Tab("What students ask"):
            refresh = gr.Button("Refresh", size="sm")
            model_status = gr.Markdown(elem_id="tutor-model-status")
            per_day = gr.Dataframe(label="Questions per day", interactive=False)
            cited = gr.Dataframe(label="Most-cited files", interactive=False)
            refused = gr.Dataframe(label="Declined questions (out of scope or graded homework)", interactive=False)
            weak = gr.Dataframe(label="Low-confidence answers (weak match in the material)", interactive=False)
            down = gr.Dataframe(label="Thumbs-down answers", interactive=False)
            gr.Markdown("**Export as eval cases**: the tutor's answer becomes the draft reference answer and its "
                        "citations the gold sources; review them before adding the cases to a dataset.")
            chosen = gr.Dropdown([], multiselect=True, label="Chats to export", allow_custom_value=True)
            export_button = gr.Button("Export JSONL", size="sm")
            exported = gr.File(label="Eval cases (JSONL)", interactive=False, height=90)

    tables = [per_day, cited, refused, weak, down, chosen, model_status]
    if expected:
        signed_in = {"fn": sign_in, "inputs": [password],
                     "outputs": [unlocked, sign_in_form, signed_in_note, instructor_tab, tabs, password, token]}
        for event in (unlock.click(**signed_in, api_name="instructor_login"),
                      password.submit(**signed_in, api_name=False)):
            event.success(None, [token], None, js=SET_TOKEN_JS, api_name=False).then(
                folders, [course_picker, unlocked], [folder], api_name=False).then(
                stats, [course_picker, unlocked], tables, api_name=False)
    add.click(upload, [files, folder, course_picker, unlocked], [report], api_name="upload", concurrency_limit=1)
    refresh.click(stats, [course_picker, unlocked], tables, api_name="instructor_stats")
    export_button.click(export, [chosen, unlocked], [exported], api_name="export_eval")


def update_material(settings: Settings, tutors, course: str, files: list[Path], folder: str,
                    progress=None, accept_source=None) -> str:
    """Stage and check the uploaded files, apply them, re-index the course, and report (Markdown).

    The upload is a transaction (`upload.py`): a bad file rejects it before the course folder is
    touched, a failed ingest rolls it back, and a crash is undone by `recover_uploads` at the next
    start. The previous index keeps serving until the new one is swapped in."""
    tutor = tutors.get(course)
    root = tutor.index.course.root
    try:
        upload = stage_upload(files, root, folder, int(settings.max_upload_mb * 2**20), settings.uploads_dir(),
                              accept_source=accept_source)
    except UploadRejected as exc:
        return f"❌ **Upload rejected**: {exc}"
    if not upload.files:
        upload.commit()
        return ("ℹ️ **Nothing changed**: " + ", ".join(f"`{rel}`" for rel in upload.unchanged)
                + " already in the course folder with the same content; the index was not rebuilt.")
    try:
        upload.apply()
        report = ingest_course(root, settings.ingest_options(), embedder=tutor.embedder, progress=progress)
    except Exception as exc:  # any failure: undo the upload, keep serving the old index
        log.exception("ingest after upload failed")
        upload.rollback()
        return (f"❌ **Re-indexing failed**, so the upload was taken back out and the previous index is still "
                f"serving: {exc}")
    upload.commit()
    tutors.get(course)  # swaps the new build in for every later question
    return ingest_report_markdown(report, upload, _not_indexed(root, upload.files))


def recover_interrupted_uploads(settings: Settings) -> list[str]:
    """Undo uploads a crash interrupted and re-index their courses; one line per course for the log."""
    lines = []
    for root in recover_uploads(settings.uploads_dir()):
        report = ingest_course(root, settings.ingest_options())
        lines.append(f"an interrupted upload to {root} was undone and course {report.course} re-indexed")
    return lines


def _not_indexed(root: Path, written: list[str]) -> list[str]:
    config = load_course(root)
    return [rel for rel in written if config.kind_for(rel) is None]


def ingest_report_markdown(report: IngestReport, upload: StagedUpload, not_indexed: list[str]) -> str:
    lines = [
        f"✅ **Re-indexed {report.course}** in {report.seconds:.1f} s: {len(report.added)} added, "
        f"{len(report.changed)} changed, {len(report.removed)} removed, {len(report.unchanged)} unchanged, "
        f"{len(report.skipped)} skipped; {report.chunks} chunks ({report.embedded} newly embedded). "
        "Students are now answered from the new index.", "",
        f"Uploaded: {', '.join(f'`{w}`' for w in upload.files)}", "",
    ]
    lines += [f"- added `{p}`" for p in report.added]
    lines += [f"- changed `{p}`" for p in report.changed]
    lines += [f"- removed `{p}`" for p in report.removed]
    lines += [f"- skipped `{s['path']}`: {s['reason']}" for s in report.skipped]
    lines += [f"- not unpacked `{name}`: {reason}" for name, reason in upload.skipped]
    lines += [f"- unchanged `{rel}`: same content as the file already there" for rel in upload.unchanged]
    lines += [f"- not indexed `{rel}`: no `[[sources]]` glob in course.toml matches it; add one, or upload "
              "into a folder the globs cover" for rel in not_indexed]
    lines += [f"- note: {n}" for n in report.notes]
    return "\n".join(lines)


def model_status_markdown(servers: list[dict]) -> str:
    """The course model's servers as the instructor sees them: up or down, and the last failure in full
    (students only ever see that the model is unavailable, never addresses or commands)."""
    if not servers:
        return "**Course model**: none configured; students get extractive answers quoted from the material."
    lines = []
    for server in servers:
        since = time.strftime("%H:%M:%S", time.localtime(server["since"])) if server.get("since") else "start"
        state = "answering" if server["state"] == "closed" else "down: students get quoted answers, retrying"
        lines.append(f"**Course model** at `{server['base_url']}`: {state} (since {since}).")
        if server.get("last_error"):
            when = time.strftime("%H:%M:%S", time.localtime(server["last_error_at"])) if server.get(
                "last_error_at") else ""
            lines.append(f"Last failure {when}: {server['last_error']}")
    return "\n\n".join(lines)


def usage_tables(chatlog: ChatLog, course: CourseConfig) -> tuple:
    """The five tables of the "What students ask" tab, and the export picker's choices."""
    import pandas as pd

    course_id = course.id
    per_day = pd.DataFrame(chatlog.questions_per_day(course_id), columns=["day", "questions"])
    cited = pd.DataFrame([(path, _lecture_label(course, path), n) for path, n in chatlog.most_cited(course_id)],
                         columns=["file", "lecture", "answers citing it"])
    refused = pd.DataFrame([(c["id"], c["when"], c["refused"], c["question"]) for c in chatlog.refused(course_id)],
                           columns=["chat", "when", "reason", "question"])
    weak = pd.DataFrame([(c["id"], c["when"], round(c["top_similarity"], 3), c["question"])
                         for c in chatlog.low_confidence(course_id)],
                        columns=["chat", "when", "best match", "question"])
    down = pd.DataFrame([(c["id"], c["when"], c["question"], _excerpt(c["answer"]), c["category"] or "",
                          c["comment"], "; ".join(x["title"] for x in c["citations"]))
                         for c in chatlog.thumbs_down(course_id)],
                        columns=["chat", "when", "question", "answer", "category", "comment", "sources"])
    recent = chatlog.chats(course_id, limit=300)
    choices = [(f"#{c['id']} {c['when']} {'👎 ' if c.get('rating') == -1 else ''}{c['question'][:70]}", c["id"])
               for c in recent]
    return per_day, cited, refused, weak, down, gr.update(choices=choices)


def _lecture_label(course: CourseConfig, path: str) -> str:
    lecture = course.lecture_of(path)
    return f"{lecture.lecture}. {lecture.topic}" if lecture else ""


def _excerpt(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
