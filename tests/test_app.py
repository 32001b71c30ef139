"""The chat app end to end over HTTP: a tiny course is written and indexed, the app is served on a
free loopback port, and gradio_client talks to it as a browser would (streamed answers, feedback,
the instructor's upload and re-index, rejections), plus the original-file route and upload safety."""

from __future__ import annotations

import http.client
import json
import re
import socket
import sqlite3
import statistics
import threading
import time
import zipfile
from pathlib import Path
from urllib.parse import quote, urlparse

import pytest

from fixture_files import make_notebook

PASSWORD = "correct horse battery"
UPLOAD_CAP_MB = 0.05        # 50 KB, so an oversized upload is cheap to make

GRADIENT_MD = r"""# Gradient descent

Gradient descent minimises a loss by repeatedly stepping against its gradient.

## The update rule

The gradient descent update rule moves the parameters against the gradient: $\theta_{t+1} = \theta_t - \eta \nabla L(\theta_t)$, where $\eta$ is the learning rate.

In display form the update rule reads:

$$\theta \leftarrow \theta - \eta \, \nabla_\theta L$$

The learning rate \(\eta\) sets the step size, and a step that is too large makes the loss diverge: \[ L(\theta_{t+1}) > L(\theta_t). \]

## Momentum

Momentum keeps a running average of past gradients, which damps the oscillation of plain gradient descent in narrow valleys.

## Momentum

A second section with the same heading, so its anchor gets a numeric suffix.
"""

CONV_MD = """# Convolutional networks

A convolutional layer slides a small kernel over the image and shares its weights across positions.

## Pooling

Max pooling keeps the largest activation in each window, which makes features robust to small shifts.

## Unsafe markup

Hostile markup such as `<img src=x onerror="alert(1)">` must be shown as text by the tutor, never run.
"""

COURSE_TOML = """id = "tiny"
title = "Tiny Deep Learning"
demo_base = "https://colab.example.org/tiny/"

[[schedule]]
date = 2026-01-12
lecture = 1
topic = "Gradient descent and momentum"
sources = ["book/01-*", "notebooks/01-*"]

[[schedule]]
date = 2026-01-19
lecture = 2
topic = "Convolutional networks"
sources = ["book/02-*"]
"""


def write_tiny_course(root: Path) -> Path:
    """A three-file course (two book chapters with math, one demo notebook, one hidden solution)."""
    (root / "book").mkdir(parents=True)
    (root / "course.toml").write_text(COURSE_TOML, encoding="utf-8")
    (root / "book" / "01-gradient-descent.md").write_text(GRADIENT_MD, encoding="utf-8")
    (root / "book" / "02-convolutions.md").write_text(CONV_MD, encoding="utf-8")
    make_notebook(root / "notebooks" / "01-gradient-descent.ipynb", [
        ("markdown", "# Gradient descent demo\nWe run gradient descent on a parabola and watch it converge."),
        ("code", "x = 5.0\nfor step in range(20):\n    x -= 0.1 * 2 * x\nprint(round(x, 4))"),
    ])
    (root / "solutions").mkdir()
    (root / "solutions" / "hw1.md").write_text("# Homework 1 solution\n\nThe secret answer is 42.\n")
    return root


def ingest_tiny_course(tmp: Path) -> tuple[Path, Path]:
    from ingest.pipeline import IngestOptions, ingest_course

    course = write_tiny_course(tmp / "course")
    data = tmp / "data"
    report = ingest_course(course, IngestOptions(data_dir=data))
    assert sorted(report.added) == ["book/01-gradient-descent.md", "book/02-convolutions.md",
                                    "notebooks/01-gradient-descent.ipynb", "solutions/hw1.md"]
    return course, data


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(base URL, course folder, data dir) of the app serving the tiny course."""
    from tutor.app import build_app, serve_in_thread
    from tutor.settings import load_settings

    from ingest.pipeline import IngestOptions, ingest_course

    tmp = tmp_path_factory.mktemp("app")
    course, data = ingest_tiny_course(tmp)
    other = tmp / "other-course"
    (other / "book").mkdir(parents=True)
    (other / "course.toml").write_text('id = "astro"\ntitle = "Tiny Astronomy"\n')
    (other / "book" / "stars.md").write_text("# Stars\n\nA red giant is a dying star whose outer layers have "
                                            "swollen to many times the radius of the Sun.\n")
    ingest_course(other, IngestOptions(data_dir=data))
    settings = load_settings(data_dir=data, instructor_password=PASSWORD, max_upload_mb=UPLOAD_CAP_MB,
                             llm_backend="extractive", course="tiny")
    with serve_in_thread(build_app(settings)) as url:
        yield url, course, data


def client(url: str):
    from gradio_client import Client

    return Client(url, verbose=False, httpx_kwargs={"timeout": 120})


def sign_in(gradio) -> str:
    """Sign `gradio` in as instructor; the token becomes the cookie Gradio's upload route asks for."""
    outputs = gradio.predict(PASSWORD, api_name="/instructor_login")
    token = outputs[-1] if isinstance(outputs, (list, tuple)) else outputs
    assert isinstance(token, str) and len(token) > 20, outputs
    gradio.cookies["tutor_instructor"] = token
    return token


def ask(gradio, question: str, mode: str = "explain", course: str = "tiny") -> tuple[list, str, list]:
    """(final chat messages, final sources HTML, every streamed output) of one question."""
    job = gradio.submit(question, course, mode, api_name="/ask")
    job.result(timeout=120)
    outputs = job.outputs()
    chat, sources = outputs[-1][:2]
    return chat, sources, outputs


def text_of(message: dict) -> str:
    content = message["content"]
    return content if isinstance(content, str) else "".join(part.get("text", "") for part in content)


def chat_rows(data: Path, sql: str, params=()) -> list[tuple]:
    with sqlite3.connect(data / "chatlog.sqlite") as db:
        return db.execute(sql, params).fetchall()


def get(url: str, raw_path: str) -> tuple[int, dict, bytes]:
    """GET a path exactly as written (no client-side `..` normalisation)."""
    parsed = urlparse(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
    conn.request("GET", raw_path)
    response = conn.getresponse()
    return response.status, dict(response.getheaders()), response.read()


# -- students -------------------------------------------------------------------------------------

def test_question_streams_an_answer_with_citations_and_demo_links(served):
    url, _, data = served
    chat, sources, outputs = ask(client(url), "What is the gradient descent update rule?")

    # An extractive answer comes whole: the placeholder (with the sources panel saying they are on the
    # way), then the answer with its sources, and no partial update between them.
    assert len(outputs) == 2, [text_of(o[0][-1]) for o in outputs]
    assert text_of(outputs[0][0][-1]) == "…" and "appear here when the answer is complete" in outputs[0][1]
    assert "What is the gradient descent update rule?" in outputs[0][1]
    answer = text_of(chat[-1])
    assert [m["role"] for m in chat] == ["user", "assistant"]
    assert "[1]" in answer and "\\theta" in answer
    assert "data-n='1'" in sources and "class='tutor-chip'" in sources
    assert "<mark>The gradient descent update rule moves the parameters against the gradient" in sources
    assert "course-file/tiny/book/01-gradient-descent.md#the-update-rule" in sources
    assert "https://colab.example.org/tiny/notebooks/01-gradient-descent.ipynb" in sources
    assert "course-file/tiny/notebooks/01-gradient-descent.ipynb?download=1" in sources

    (question, answer_text, citations, backend, timings), = chat_rows(
        data, "SELECT question, answer, citations, backend, timings FROM chats WHERE question = ?",
        ("What is the gradient descent update rule?",))
    assert answer_text == answer and backend == "extractive" and "total_s" in json.loads(timings)
    (chat_id,), = chat_rows(data, "SELECT id FROM chats WHERE question = ?", ("What is the gradient descent update rule?",))
    picker = outputs[-1][-1]                         # the feedback form's picker, set in the same event
    assert picker["value"] == chat_id and picker["choices"] == [["1. What is the gradient descent update rule?", chat_id]]
    assert json.loads(citations)[0]["locator"]["path"] == "book/01-gradient-descent.md"


def test_a_model_answer_streams_in_pieces_and_ends_with_its_sources(served):
    from tutor.answer import Tutor
    from tutor.app import build_app, serve_in_thread
    from tutor.llm import LLMBackend
    from tutor.settings import load_settings

    class SlowModel(LLMBackend):
        """Writes a cited reply a word every 60 ms, as a model on a server would."""

        name, model = "slow", "slow-1"

        def stream(self, messages, **opts):
            for word in "Gradient descent steps against the gradient [1] scaled by the learning rate .".split():
                time.sleep(0.06)
                yield word + " "

    _, _, data = served
    settings = load_settings(data_dir=data, course="tiny", llm_backend="extractive")
    with serve_in_thread(build_app(settings, lambda course: Tutor.from_settings(
            settings, course=course, backend=SlowModel()))) as url:
        chat, sources, outputs = ask(client(url), "What is the gradient descent update rule?")
    shown = [text_of(o[0][-1]) for o in outputs]
    assert shown[0] == "…" and len(shown) >= 4, shown       # placeholder, several partial texts, final
    partial = shown[1:-1]
    assert all(len(a) <= len(b) for a, b in zip(partial, partial[1:])) and partial[0] != shown[-1]
    assert all("tutor-chip" not in o[1] for o in outputs[:-1]) and "tutor-chip" in sources
    assert "learning rate" in text_of(chat[-1])


def test_follow_up_uses_the_conversation_and_sessions_stay_apart(served):
    url, _, _ = served
    alice, bob = client(url), client(url)
    ask(alice, "What does momentum do in gradient descent?")
    chat, sources, _ = ask(alice, "Why does it help?")
    assert [m["role"] for m in chat] == ["user", "assistant", "user", "assistant"]
    assert "§ Momentum" in sources                          # found through the previous question

    bob_chat, _, _ = ask(bob, "What does max pooling do?")
    assert [text_of(m) for m in bob_chat if m["role"] == "user"] == ["What does max pooling do?"]


def test_socratic_mode_and_a_second_course(served):
    url, _, _ = served
    student = client(url)
    chat, _, _ = ask(student, "What does max pooling keep?", mode="socratic")
    assert text_of(chat[-1]).startswith("Let's work it out together")

    chat, sources, _ = ask(student, "What is a red giant?", course="astro")
    assert [m["role"] for m in chat] == ["user", "assistant"]      # a new course starts a new conversation
    assert "swollen to many times the radius of the Sun" in text_of(chat[-1])
    assert "course-file/astro/book/stars.md" in sources


def test_unreachable_llm_falls_back_with_a_notice(served):
    from tutor.app import build_app, serve_in_thread
    from tutor.settings import load_settings

    _, _, data = served
    with socket.socket() as probe:             # a port nobody listens on: connections are refused
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    settings = load_settings(data_dir=data, course="tiny", llm_backend="openai", llm_model="course/none",
                             llm_base_url=f"http://127.0.0.1:{closed}/v1", llm_max_retries=0, llm_timeout_s=5)
    with serve_in_thread(build_app(settings)) as url:
        chat, sources, _ = ask(client(url), "What is the gradient descent update rule?")
    answer = text_of(chat[-1])
    assert "[1]" in answer and "tutor-chip" in sources            # still answered, extractively
    from tutor.answer import MODEL_DOWN_NOTICE

    assert "> ⚠️ " + MODEL_DOWN_NOTICE in answer and "127.0.0.1" not in answer   # no address for students
    from tutor.app.instructor import model_status_markdown
    from tutor.llm import llm_status

    status = model_status_markdown(llm_status())                 # the instructor sees where and why
    assert f"127.0.0.1:{closed}" in status and "down" in status and "Last failure" in status


def test_feedback_is_stored_for_the_asking_session_only(served):
    from gradio_client.exceptions import AppError

    url, _, data = served
    student = client(url)
    ask(student, "What does a convolutional layer share across positions?")
    (chat_id,), = chat_rows(data, "SELECT id FROM chats WHERE question = ?",
                            ("What does a convolutional layer share across positions?",))

    status, _ = student.predict(chat_id, "-1", "bad source", "cites the pooling part", api_name="/feedback")
    assert "saved" in status
    assert chat_rows(data, "SELECT rating, category, comment FROM feedback WHERE chat_id = ?", (chat_id,)) == [
        (-1, "bad source", "cites the pooling part")]

    with pytest.raises(AppError, match="answers you were given"):
        client(url).predict(chat_id, "1", None, "", api_name="/feedback")
    assert len(chat_rows(data, "SELECT id FROM feedback WHERE chat_id = ?", (chat_id,))) == 1


def test_an_overlong_question_is_refused_and_not_logged(served):
    from gradio_client.exceptions import AppError

    url, _, data = served
    flood = "Explain gradient descent. " * 4000                       # 100k characters
    with pytest.raises(AppError, match=r"characters long; please keep it under 2,000"):
        client(url).predict(flood, "tiny", "explain", api_name="/ask")
    assert chat_rows(data, "SELECT COUNT(*) FROM chats WHERE length(question) > 2000") == [(0,)]


def test_corpus_markup_in_a_passage_is_escaped(served):
    url, _, _ = served
    _, sources, _ = ask(client(url), "What happens to hostile markup such as an img tag with onerror?")
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in sources
    assert "<img" not in sources


# -- the original files behind citations ----------------------------------------------------------

def test_markdown_original_has_the_anchors_citations_use(served):
    from ingest.store import load_index

    url, _, data = served
    anchors = {c.locator.anchor for c in load_index(data / "index", "tiny").chunks if c.locator.anchor}
    assert {"the-update-rule", "momentum", "momentum-1"} <= anchors
    status, headers, body = get(url, "/course-file/tiny/book/01-gradient-descent.md")
    page = body.decode()
    assert status == 200 and headers["content-type"].startswith("text/html")
    for anchor in anchors & {"gradient-descent", "the-update-rule", "momentum", "momentum-1"}:
        assert f'id="{anchor}"' in page
    assert "sandbox" in headers["content-security-policy"]
    _, _, conv = get(url, "/course-file/tiny/book/02-convolutions.md")
    assert "&lt;img src=x" in conv.decode() and "<img" not in conv.decode()


def test_notebook_preview_and_download(served):
    url, course, _ = served
    status, _, body = get(url, "/course-file/tiny/notebooks/01-gradient-descent.ipynb")
    page = body.decode()
    assert status == 200 and 'id="cell=0"' in page and 'id="cell=1"' in page
    assert "<script" not in page
    assert "watch it converge" in page and "0.1" in page
    status, headers, raw = get(url, "/course-file/tiny/notebooks/01-gradient-descent.ipynb?download=1")
    assert status == 200 and "attachment" in headers["content-disposition"]
    assert raw == (course / "notebooks" / "01-gradient-descent.ipynb").read_bytes()


@pytest.mark.parametrize("raw_path, expected", [
    ("/course-file/tiny/../../../../etc/passwd", {403, 404}),
    ("/course-file/tiny/..%2F..%2F..%2F..%2Fetc%2Fpasswd", {403}),
    ("/course-file/tiny/%2Fetc%2Fpasswd", {403}),
    ("/course-file/tiny/book/..%2F..%2Fdata%2Fchatlog.sqlite", {403}),
    ("/course-file/tiny/solutions/hw1.md", {404}),          # indexed, but students never see solutions
    ("/course-file/tiny/course.toml", {404}),               # in the folder, but not a course file
    ("/course-file/nope/book/01-gradient-descent.md", {404}),
])
def test_file_route_refuses_paths_outside_the_served_files(served, raw_path, expected):
    url, _, _ = served
    status, _, body = get(url, raw_path)
    assert status in expected
    assert b"root:" not in body and b"secret answer" not in body


# -- instructors ----------------------------------------------------------------------------------

def test_instructor_endpoints_need_the_password(served):
    from gradio_client.exceptions import AppError

    url, _, _ = served
    visitor = client(url)
    with pytest.raises(AppError, match="Wrong instructor password"):
        visitor.predict("correct horse", api_name="/instructor_login")
    with pytest.raises(AppError, match="Sign in as instructor first"):
        visitor.predict([], "book", "tiny", api_name="/upload")
    with pytest.raises(AppError, match="Sign in as instructor first"):
        visitor.predict("tiny", api_name="/instructor_stats")


def test_wrong_passwords_lock_the_client_out_for_a_while_without_tracebacks(served, capfd):
    from gradio_client.exceptions import AppError

    url, _, _ = served
    guesser = client(url)
    sign_in(guesser)                                    # a success clears this address's earlier failures
    for _ in range(6):                                  # 5 free tries; the 6th locks this address for 1 s
        with pytest.raises(AppError, match="Wrong instructor password"):
            guesser.predict("guess", api_name="/instructor_login")
    with pytest.raises(AppError, match=r"Too many wrong passwords; try again in \d+ s"):
        guesser.predict(PASSWORD, api_name="/instructor_login")     # even the right one waits
    time.sleep(1.5)
    assert sign_in(guesser)                             # after the lock, the right password works again
    assert "Traceback" not in capfd.readouterr().err


def test_sign_in_guard_backs_off_per_client_and_globally():
    from tutor.app.instructor import SignInGuard

    now = [0.0]
    guard = SignInGuard(free_tries=2, max_lock_s=8, global_limit=10, window_s=60, global_lock_s=30,
                        clock=lambda: now[0])
    for _ in range(2):
        guard.failed("a")
    assert guard.wait_s("a") == 0
    guard.failed("a")
    assert guard.wait_s("a") == 1 and guard.wait_s("b") == 0     # one client's lock is its own
    for _ in range(5):
        guard.failed("a")
    assert guard.wait_s("a") == 8                                 # doubled each time, capped
    guard.succeeded("a")
    assert guard.wait_s("a") == 0
    for n in range(3):
        guard.failed(f"spread-{n}")                              # 11 failures in the window in all
    assert guard.wait_s("fresh") == 30


def test_gradio_upload_route_is_closed_to_anyone_not_signed_in(served, tmp_path):
    import httpx

    url, _, _ = served
    payload = {"files": ("notes.md", b"# Notes\n\nanything\n")}
    anonymous = httpx.post(f"{url}gradio_api/upload", files=payload)
    assert anonymous.status_code == 403 and "Sign in as instructor" in anonymous.text
    forged = httpx.post(f"{url}gradio_api/upload", files=payload, cookies={"tutor_instructor": "guess"})
    assert forged.status_code == 403
    instructor = client(url)
    sign_in(instructor)
    allowed = httpx.post(f"{url}gradio_api/upload", files=payload, cookies=instructor.cookies)
    assert allowed.status_code == 200 and allowed.json()[0].endswith("notes.md")


def test_the_upload_endpoint_refuses_a_server_file(served, tmp_path, monkeypatch):
    from gradio_client.client import Endpoint

    url, course, _ = served
    secret = tmp_path / "server-secret.md"
    secret.write_text("# Secret\n\nA file on the server that no browser uploaded.\n")
    instructor = client(url)
    sign_in(instructor)
    # The raw attack: a FileData naming a server path, sent without the client uploading anything.
    monkeypatch.setattr(Endpoint, "process_input_files", lambda self, *data: data)
    report = instructor.predict([{"path": str(secret), "meta": {"_type": "gradio.FileData"}}], "book", "tiny",
                                api_name="/upload")
    assert "Upload rejected" in report and "not uploaded from your browser" in report
    assert not list(course.rglob("server-secret.md"))


def test_an_upload_that_changes_nothing_says_so(served):
    from gradio_client import handle_file

    url, course, _ = served
    instructor = client(url)
    sign_in(instructor)
    report = instructor.predict([handle_file(str(course / "book" / "02-convolutions.md"))], "book", "tiny",
                                api_name="/upload")
    assert "Nothing changed" in report and "Students are now answered" not in report


def test_upload_reindexes_and_the_new_file_answers_without_restart(served):
    from gradio_client import handle_file

    url, course, data = served
    instructor = client(url)
    sign_in(instructor)
    new = course.parent / "upload" / "Lecture 9: Zorbulation!.md"
    new.parent.mkdir(exist_ok=True)
    new.write_text("# Zorbulation\n\nThe zorbulation trick rescales every gradient by the cube root of the "
                   "step count before the update.\n", encoding="utf-8")
    report = instructor.predict([handle_file(str(new))], "book", "tiny", api_name="/upload")
    assert "Re-indexed tiny" in report and "1 added" in report
    landed, = (course / "book").glob("*Zorbulation*.md")              # ':' and '!' do not survive
    assert re.fullmatch(r"[\w .-]+", landed.name)
    rel = f"book/{landed.name}"

    chat, sources, _ = ask(client(url), "What does the zorbulation trick do?")
    assert "cube root of the step count" in text_of(chat[-1])
    assert f"course-file/tiny/{quote(rel)}" in sources

    per_day, cited, *_ = instructor.predict("tiny", api_name="/instructor_stats")
    assert sum(row[1] for row in per_day["data"]) == chat_rows(
        data, "SELECT COUNT(*) FROM chats WHERE course = ?", ("tiny",))[0][0]
    assert rel in [row[0] for row in cited["data"]]


def test_rejected_uploads_leave_the_old_index_serving(served, tmp_path):
    import httpx
    from gradio_client import handle_file

    from ingest.store import read_manifest

    url, course, data = served
    instructor = client(url)
    sign_in(instructor)
    before = read_manifest(data / "index", "tiny").files

    program = tmp_path / "tool.exe"
    program.write_bytes(b"MZ" + b"\0" * 100)
    with pytest.raises(Exception, match=r"Invalid file type.*'\.md'"):   # Gradio's own check, then ours
        instructor.predict([handle_file(str(program))], "book", "tiny", api_name="/upload")

    big = tmp_path / "big.md"
    big.write_text("# Big\n\n" + "padding words " * 6000)              # ~84 KB, over the 50 KB cap
    with pytest.raises(Exception, match="exceeds the maximum file size"):     # the client knows the cap
        instructor.predict([handle_file(str(big))], "book", "tiny", api_name="/upload")
    refused = httpx.post(f"{url}gradio_api/upload", files={"files": ("big.md", big.read_bytes())},
                         cookies=instructor.cookies)
    assert refused.status_code == 413 and "maximum allowed size" in refused.text   # and so does the server

    bomb = tmp_path / "bundle.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("notes/huge.md", "# Huge\n\n" + "a" * 200_000)      # compresses small, unpacks over the cap
    report = instructor.predict([handle_file(str(bomb))], "book", "tiny", api_name="/upload")
    assert "Upload rejected" in report and "unpacks to" in report

    slip = tmp_path / "slip.zip"
    with zipfile.ZipFile(slip, "w") as zf:
        zf.writestr("../../escaped.md", "# Escaped\n\nThis must never land outside the course.\n")
        zf.writestr("/abs.md", "# Absolute\n\nNor this.\n")
    report = instructor.predict([handle_file(str(slip))], "book", "tiny", api_name="/upload")
    assert "Upload rejected" in report and "leaves the archive's folder" in report
    assert not list(course.parent.rglob("escaped.md")) and not list(course.parent.rglob("abs.md"))

    assert read_manifest(data / "index", "tiny").files == before
    chat, _, _ = ask(client(url), "What does max pooling keep?")
    assert "largest activation" in text_of(chat[-1])


def test_failed_ingest_takes_the_upload_back_and_keeps_serving(served, tmp_path):
    from gradio_client import handle_file

    from ingest.store import read_manifest

    url, course, data = served
    instructor = client(url)
    sign_in(instructor)
    before = read_manifest(data / "index", "tiny").files
    cache, = (data / "cache").glob("embeddings-*.sqlite")
    aside = cache.with_suffix(".aside")
    cache.rename(aside)
    cache.mkdir()                       # SQLite cannot open a folder: the ingest fails mid-way
    try:
        doc = tmp_path / "dropout.md"
        doc.write_text("# Dropout\n\nDropout zeroes random activations during training.\n")
        report = instructor.predict([handle_file(str(doc))], "book", "tiny", api_name="/upload")
    finally:
        cache.rmdir()
        aside.rename(cache)
    assert "Re-indexing failed" in report and "previous index is still serving" in report
    assert not (course / "book" / "dropout.md").exists()
    assert read_manifest(data / "index", "tiny").files == before
    chat, _, _ = ask(client(url), "What is the gradient descent update rule?")
    assert "[1]" in text_of(chat[-1])


def test_export_selected_chats_as_eval_cases(served):
    from eval.dataset import load_dataset

    url, _, data = served
    instructor = client(url)
    sign_in(instructor)
    ids = [row[0] for row in chat_rows(data, "SELECT id FROM chats ORDER BY id LIMIT 2")]
    path = instructor.predict(ids, api_name="/export_eval")
    cases = load_dataset(path)
    assert [c.id for c in cases] == [f"chat-{i}" for i in ids]
    assert all(c.gold_sources for c in cases if c.type != "out_of_scope")


# -- pure parts -----------------------------------------------------------------------------------

def test_starter_questions_follow_the_schedule():
    import datetime as dt

    from ingest.course import CourseConfig
    from tutor.app.chat import starter_questions

    course = CourseConfig.from_dict({"id": "c", "schedule": [
        {"date": "2026-01-12", "lecture": 1, "topic": "Gradient descent and momentum"},
        {"date": "2026-01-19", "lecture": 2, "topic": "Convolutional networks"},
        {"date": "2026-01-26", "lecture": 3, "topic": "Recurrent networks, LSTM"},
    ]})
    assert starter_questions(course, dt.date(2026, 1, 21)) == ["Can you explain convolutional networks?"]
    assert starter_questions(course, dt.date(2026, 3, 1)) == [
        "Can you explain recurrent networks?", "Can you explain LSTM?", "Can you explain convolutional networks?"]
    assert starter_questions(course, dt.date(2025, 12, 1)) == [
        "Can you explain convolutional networks?", "Can you explain gradient descent?",
        "Can you explain momentum?"]
    assert starter_questions(CourseConfig.from_dict({"id": "c"}), dt.date(2026, 1, 1)) == []


def test_staged_upload_sanitises_names_and_undoes_itself(tmp_path):
    from tutor.app.upload import UploadRejected, stage_upload

    root = tmp_path / "course"
    (root / "book").mkdir(parents=True)
    (root / "book" / "ch1.md").write_text("# One\n\nold chapter\n")
    incoming = tmp_path / "in"
    incoming.mkdir()
    (incoming / "ch1.md").write_text("# One\n\nnew chapter\n")
    archive = incoming / "more.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("extra/ch2 (draft).md", "# Two\n\ntext")
        zf.writestr("extra/run.sh", "rm -rf /")
        zf.writestr("__MACOSX/._ch2.md", "junk")
        info = zipfile.ZipInfo("extra/link.md")
        info.external_attr = 0o120777 << 16               # a symlink member
        zf.writestr(info, "/etc/passwd")

    data = tmp_path / "data"
    upload = stage_upload([incoming / "ch1.md", archive], root, "book", cap_bytes=10_000, uploads=data / "uploads")
    assert upload.files == ["book/ch1.md", "book/extra/ch2 _draft_.md"] and upload.replaces == ["book/ch1.md"]
    assert dict(upload.skipped) == {"extra/run.sh": "file type '.sh' is not indexed", "__MACOSX/._ch2.md":
                                    "hidden file", "extra/link.md": "symbolic links are not unpacked"}
    assert "old chapter" in (root / "book" / "ch1.md").read_text()   # staging never touches the course
    upload.apply()
    assert "new chapter" in (root / "book" / "ch1.md").read_text()
    upload.rollback()
    assert "old chapter" in (root / "book" / "ch1.md").read_text()
    assert not (root / "book" / "extra" / "ch2 _draft_.md").exists()
    assert not any((data / "uploads").iterdir())                      # nothing left behind

    for folder in ("../outside", "/etc", "book/../../x", ".git"):
        with pytest.raises(UploadRejected, match="folder"):
            stage_upload([incoming / "ch1.md"], root, folder, cap_bytes=10_000, uploads=data / "uploads")
    with pytest.raises(UploadRejected, match="over the"):
        stage_upload([incoming / "ch1.md"], root, "book", cap_bytes=5, uploads=data / "uploads")
    fake = incoming / "fake.zip"
    fake.write_text("not a zip")
    with pytest.raises(UploadRejected, match="not a valid zip"):
        stage_upload([fake], root, "book", cap_bytes=10_000, uploads=data / "uploads")
    with pytest.raises(UploadRejected, match="not uploaded from your browser"):
        stage_upload([incoming / "ch1.md"], root, "book", cap_bytes=10_000, uploads=data / "uploads",
                     accept_source=lambda path: False)
    assert not any((data / "uploads").iterdir())


# -- load -----------------------------------------------------------------------------------------

@pytest.fixture
def served_by_cli(served):
    """`tutor chat` in its own process (so the clients' threads do not share its interpreter)."""
    import os
    import socket
    import subprocess
    import sys

    import httpx

    _, _, data = served
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "tutor.cli", "chat", "--data-dir", str(data), "--port", str(port),
               "--backend", "extractive"]
    process = subprocess.Popen(command, env={**os.environ, "TUTOR_INSTRUCTOR_PASSWORD": ""},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, process.stdout.read()
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "tutor chat did not start in 90 s"
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.slow
def test_fifty_students_at_once(served_by_cli):
    """50 students ask different questions at the same moment; every answer completes.

    The server is warmed up by one question first (a deployed app is warm), and the 50 clients
    connect before the clock starts, so the figures are the server's, not the test harness's.
    """
    url = served_by_cli
    topics = ["the gradient descent update rule", "momentum in gradient descent", "the learning rate step size",
              "max pooling windows", "convolutional layer kernels", "kernels sliding over an image",
              "a learning rate that is too large", "the running average of past gradients",
              "the gradient descent demo", "features robust to small shifts"]
    forms = ["What is {}?", "Explain {}.", "How does {} work?", "Tell me about {}.", "What does the course say about {}?"]
    questions = [form.format(topic) for form in forms for topic in topics]
    ask(client(url), "What is gradient descent?")
    students = [client(url) for _ in questions]
    go = threading.Barrier(len(questions) + 1)
    first_token: list[float] = []
    complete: list[float] = []
    cited: list[bool] = []
    errors: list[str] = []
    lock = threading.Lock()

    def student(gradio, question: str) -> None:
        try:
            go.wait(timeout=60)
            started = time.perf_counter()
            job = gradio.submit(question, "tiny", "explain", api_name="/ask")
            first = None
            for output in job:
                if first is None and output[0] and text_of(output[0][-1]) not in ("", "…"):
                    first = time.perf_counter() - started
            chat, sources = job.outputs()[-1][:2]
            # The sources panel is only filled by the final step of the stream: the answer is complete.
            assert "Sources for:" in sources and text_of(chat[-1]) not in ("", "…"), "incomplete answer"
            with lock:
                first_token.append(first)
                complete.append(time.perf_counter() - started)
                cited.append("tutor-chip" in sources)
        except Exception as exc:  # collected and reported below, with the question that failed
            with lock:
                errors.append(f"{question}: {exc!r}")

    threads = [threading.Thread(target=student, args=pair) for pair in zip(students, questions)]
    for t in threads:
        t.start()
    go.wait(timeout=60)
    started = time.perf_counter()
    for t in threads:
        t.join(timeout=300)
    wall = time.perf_counter() - started
    assert not errors, "\n".join(errors)
    assert len(first_token) == 50
    assert sum(cited) >= 45, f"only {sum(cited)} of 50 in-course questions got a cited answer"
    p95 = statistics.quantiles(first_token, n=20)[18]
    print(f"\n50 students: all answered in {wall:.1f} s; first streamed token p50 {statistics.median(first_token):.2f} s, "
          f"p95 {p95:.2f} s, max {max(first_token):.2f} s; complete answer p50 {statistics.median(complete):.2f} s; "
          f"{sum(cited)} cited answers")
