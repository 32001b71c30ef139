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

import fnmatch
import hmac
import logging
import tempfile
import time
from pathlib import Path

import gradio as gr

from ingest.course import load_course
from ingest.pipeline import IngestOptions, IngestReport, ingest_course
from tutor.app_upload import PlacedFiles, UploadRejected, accepted_extensions, place_uploads
from tutor.chatlog import ChatLog
from tutor.settings import Settings

log = logging.getLogger("tutor.app")

ROOT_FOLDER = "(course folder)"
WRONG_PASSWORD_DELAY_S = 0.5   # slows guessing; the comparison itself is constant-time
DISABLED = ("**The instructor tab is disabled**: no instructor password is set. Set the environment "
            "variable `TUTOR_INSTRUCTOR_PASSWORD` (or `instructor_password` in `tutor.toml`) and restart "
            "`tutor chat` to enable uploads and the question log.")


def password_matches(given: str, expected: str) -> bool:
    """Constant-time comparison; an unset password never matches."""
    return bool(expected) and hmac.compare_digest((given or "").encode(), expected.encode())


def build_instructor_tab(settings: Settings, tutors, chatlog: ChatLog, course_picker, tabs) -> None:
    """Add the sign-in and instructor tabs to `tabs` (call inside that `gr.Tabs()` while building)."""
    expected = settings.instructor_password.get_secret_value()

    def require(is_unlocked: bool) -> None:
        if not is_unlocked:
            raise gr.Error("Sign in as instructor first (Instructor sign-in tab).")

    def sign_in(given: str):
        if not password_matches(given, expected):
            time.sleep(WRONG_PASSWORD_DELAY_S)
            raise gr.Error("Wrong instructor password.")
        # Gradio 6 cannot hide a tab once shown, so the sign-in tab stays and says it is done.
        return (True, gr.update(visible=False), gr.update(visible=True), gr.update(visible=True),
                gr.Tabs(selected="instructor"), "")

    def upload(files, folder: str, course: str, is_unlocked: bool, progress=gr.Progress()):
        require(is_unlocked)
        return update_material(settings, tutors, course, [Path(f) for f in files or []],
                               "" if folder in (None, ROOT_FOLDER) else folder,
                               lambda fraction, message: progress(fraction, desc=message))

    def folders(course: str, is_unlocked: bool):
        require(is_unlocked)
        root = Path(tutors.get(course).index.course["root"])
        names = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        return gr.update(choices=[ROOT_FOLDER, *names], value=names[0] if names else ROOT_FOLDER)

    def stats(course: str, is_unlocked: bool):
        require(is_unlocked)
        return usage_tables(chatlog, tutors.get(course).course)

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

    tables = [per_day, cited, refused, weak, down, chosen]
    if expected:
        signed_in = {"fn": sign_in, "inputs": [password],
                     "outputs": [unlocked, sign_in_form, signed_in_note, instructor_tab, tabs, password]}
        for event in (unlock.click(**signed_in, api_name="instructor_login"),
                      password.submit(**signed_in, api_name=False)):
            event.then(folders, [course_picker, unlocked], [folder], api_name=False).then(
                stats, [course_picker, unlocked], tables, api_name=False)
    add.click(upload, [files, folder, course_picker, unlocked], [report], api_name="upload", concurrency_limit=1)
    refresh.click(stats, [course_picker, unlocked], tables, api_name="instructor_stats")
    export_button.click(export, [chosen, unlocked], [exported], api_name="export_eval")


def update_material(settings: Settings, tutors, course: str, files: list[Path], folder: str,
                    progress=None) -> str:
    """Place the uploaded files, re-index the course, and report (Markdown). Never leaves the course
    folder changed if the ingest fails; the previous index keeps serving either way."""
    tutor = tutors.get(course)
    root = Path(tutor.index.course["root"])
    try:
        placed = place_uploads(files, root, folder, int(settings.max_upload_mb * 2**20))
    except UploadRejected as exc:
        return f"❌ **Upload rejected**: {exc}"
    options = IngestOptions(
        data_dir=settings.data_dir, embedding_model=settings.embedding_model, chunk_tokens=settings.chunk_tokens,
        chunk_overlap=settings.chunk_overlap, max_file_mb=settings.max_file_mb,
    )
    try:
        report = ingest_course(root, options, embedder=tutor.embedder, progress=progress)
    except Exception as exc:  # any failure: undo the upload, keep serving the old index
        log.exception("ingest after upload failed")
        placed.rollback()
        return (f"❌ **Re-indexing failed**, so the upload was taken back out and the previous index is still "
                f"serving: {exc}")
    placed.commit()
    tutors.get(course)  # swaps the new build in for every later question
    return ingest_report_markdown(report, placed, _not_indexed(root, placed.written))


def _not_indexed(root: Path, written: list[str]) -> list[str]:
    config = load_course(root)
    return [rel for rel in written if config.kind_for(rel) is None]


def ingest_report_markdown(report: IngestReport, placed: PlacedFiles, not_indexed: list[str]) -> str:
    lines = [
        f"✅ **Re-indexed {report.course}** in {report.seconds:.1f} s: {len(report.added)} added, "
        f"{len(report.changed)} changed, {len(report.removed)} removed, {len(report.unchanged)} unchanged, "
        f"{len(report.skipped)} skipped; {report.chunks} chunks ({report.embedded} newly embedded). "
        "Students are now answered from the new index.", "",
        f"Uploaded: {', '.join(f'`{w}`' for w in placed.written)}", "",
    ]
    lines += [f"- added `{p}`" for p in report.added]
    lines += [f"- changed `{p}`" for p in report.changed]
    lines += [f"- removed `{p}`" for p in report.removed]
    lines += [f"- skipped `{s['path']}`: {s['reason']}" for s in report.skipped]
    lines += [f"- not unpacked `{name}`: {reason}" for name, reason in placed.skipped]
    lines += [f"- not indexed `{rel}`: no `[[sources]]` glob in course.toml matches it; add one, or upload "
              "into a folder the globs cover" for rel in not_indexed]
    lines += [f"- note: {n}" for n in report.notes]
    return "\n".join(lines)


def usage_tables(chatlog: ChatLog, course: dict) -> tuple:
    """The five tables of the "What students ask" tab, and the export picker's choices."""
    import pandas as pd

    course_id = course.get("id")
    per_day = pd.DataFrame(chatlog.questions_per_day(course_id), columns=["day", "questions"])
    cited = pd.DataFrame([(path, lecture_of(path, course), n) for path, n in chatlog.most_cited(course_id)],
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


def lecture_of(path: str, course: dict) -> str:
    for lecture in course.get("schedule", []):
        if any(fnmatch.fnmatchcase(path, g) for g in lecture.get("sources", [])):
            return f"{lecture['lecture']}. {lecture['topic']}"
    return ""


def _excerpt(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
