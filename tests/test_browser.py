"""The chat in a real browser: Debian's chromium driven by playwright (never a downloaded browser).

A student asks how Adam scales its step size and sees the streamed answer with its math
typeset by KaTeX, clicks a citation chip and reads the cited passage with its supporting sentence
highlighted, opens the original, and rates the answer; an instructor signs in and the instructor
tab appears. Screenshots go to test-artifacts/ for a person to look at.

The course is the shipped one (corpus/dl-intro): by default its optimization lecture (PDF slides,
book chapter, notebook) so the index builds in seconds; TUTOR_BROWSER_FULL_COURSE=1 indexes
all of it. One notation page is added to check every math delimiter the chat accepts.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "corpus" / "dl-intro"
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
LECTURE = "04-optimization"
PASSWORD = "browser test password"
QUESTION = "How does Adam scale the step size?"      # answered from the book and slides, with math
NOTATION = r"""# Notation check

The four math styles of the notation check are inline $a^2 + b^2$, display $$c^2 = a^2 + b^2$$, parenthesised \(e^{i\pi} = -1\) and bracketed \[\sum_{k=1}^{n} k = \frac{n(n+1)}{2}\] in one sentence.
"""


def course_subset(target: Path) -> Path:
    """The shipped course (or its optimization lecture) copied to `target`, plus the notation page."""
    if os.environ.get("TUTOR_BROWSER_FULL_COURSE") == "1":
        shutil.copytree(SHIPPED, target)
    else:
        target.mkdir(parents=True)
        shutil.copy2(SHIPPED / "course.toml", target / "course.toml")
        for rel in (f"slides/{LECTURE}.pdf", f"book/{LECTURE}.md", f"notebooks/{LECTURE}.ipynb"):
            (target / rel).parent.mkdir(exist_ok=True)
            shutil.copy2(SHIPPED / rel, target / rel)
    (target / "book" / "99-notation-check.md").write_text(NOTATION, encoding="utf-8")
    return target


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    from ingest.pipeline import IngestOptions, ingest_course
    from tutor.app import build_app, serve_in_thread
    from tutor.settings import load_settings

    assert (SHIPPED / "course.toml").is_file(), f"the shipped course is missing at {SHIPPED}"
    assert list((SHIPPED / "slides").glob(f"{LECTURE}.pdf")), \
        "the shipped slides are not built: run `python corpus/build_decks.py corpus/dl-intro` (or `make corpus`)"
    tmp = tmp_path_factory.mktemp("browser")
    course = course_subset(tmp / "course")
    report = ingest_course(course, IngestOptions(data_dir=tmp / "data"))
    assert f"book/{LECTURE}.md" in report.added and not report.skipped, report.summary()
    settings = load_settings(data_dir=tmp / "data", instructor_password=PASSWORD, llm_backend="extractive")
    with serve_in_thread(build_app(settings)) as url:
        yield url, tmp / "data"


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), "Debian's chromium is needed at /usr/bin/chromium (apt-get install chromium)"
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.set_default_timeout(60_000)
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def ask(page, question: str) -> None:
    page.fill("#tutor-question textarea", question)
    page.keyboard.press("Enter")


def test_student_sees_math_citations_and_the_cited_passage(app_url, page):
    url, data = app_url
    page.goto(url)
    page.wait_for_selector("#tutor-question textarea")
    page.wait_for_selector(".tutor-starter:visible")           # this week's starter questions
    page.screenshot(path=str(ARTIFACTS / "browser-1-start.png"))

    ask(page, QUESTION)
    page.wait_for_selector(".tutor-chip")                       # drawn when the answer is final
    answer = page.locator("#tutor-chat .message.bot, #tutor-chat [data-testid='bot']").last
    answer.locator(".katex").first.wait_for(timeout=20_000)    # KaTeX typesets just after
    assert "[1]" in answer.inner_text()
    page.screenshot(path=str(ARTIFACTS / "browser-2-answer.png"))

    chip = page.locator(".tutor-chip").first
    panel = page.locator(".tutor-source[data-n='1']")
    assert panel.is_hidden()
    chip.click()
    panel.wait_for(state="visible")
    highlighted = panel.locator("mark").inner_text()
    assert len(highlighted.split()) >= 4, panel.inner_text()
    assert panel.locator(".tutor-source-label").inner_text().startswith("[1] ")
    page.screenshot(path=str(ARTIFACTS / "browser-3-source.png"))
    (citations,), = sqlite3.connect(data / "chatlog.sqlite").execute(
        "SELECT citations FROM chats ORDER BY id DESC LIMIT 1").fetchall()
    assert highlighted.split()[:4] == json.loads(citations)[0]["quote"].split()[:4]

    href = panel.locator("a").get_attribute("href")
    opened = page.request.get(url + href.split("#")[0])
    assert opened.status == 200, href
    preview = page.locator(".tutor-demos a", has_text="Preview").first.get_attribute("href")
    assert preview.startswith(f"course-file/dl-intro/notebooks/{LECTURE}.ipynb")
    assert page.request.get(url + preview.split("#")[0]).status == 200

    page.locator("#tutor-chat button[aria-label='Dislike']").last.click()
    page.get_by_text("Thanks! You can add what was wrong").wait_for()
    rating = sqlite3.connect(data / "chatlog.sqlite").execute(
        "SELECT f.rating FROM feedback f JOIN chats c ON c.id = f.chat_id "
        "WHERE c.question = ?", (QUESTION,)).fetchall()
    assert rating == [(-1,)]


def test_every_math_delimiter_renders(app_url, page):
    url, _ = app_url
    page.goto(url)
    page.wait_for_selector("#tutor-question textarea")
    ask(page, "What are the four math styles of the notation check?")
    page.wait_for_selector(".tutor-chip")
    answer = page.locator("#tutor-chat .message.bot, #tutor-chat [data-testid='bot']").last
    # KaTeX typesets after the message is in the page, so wait for the fourth formula (a timeout
    # here means the math never rendered), then check no delimiter is left as text.
    answer.locator(".katex").nth(3).wait_for(timeout=20_000)
    text = answer.inner_text()
    assert "$" not in text and "\\(" not in text and "\\[" not in text, text
    assert answer.locator(".katex").count() >= 4
    assert answer.locator(".katex-display").count() >= 2      # $$...$$ and \[...\] are display math
    page.screenshot(path=str(ARTIFACTS / "browser-4-notation.png"))


def test_instructor_tab_appears_only_after_the_password(app_url, page, tmp_path):
    url, _ = app_url
    page.goto(url)
    page.get_by_role("tab", name="Instructor sign-in").click()
    assert page.get_by_role("tab", name="Instructor", exact=True).count() == 0
    page.fill("#tutor-password input", "not the password")
    page.keyboard.press("Enter")
    page.get_by_text("Wrong instructor password").first.wait_for()
    page.fill("#tutor-password input", PASSWORD)
    page.keyboard.press("Enter")
    page.get_by_role("tab", name="Instructor", exact=True, selected=True).wait_for()
    page.get_by_text("Add or replace files").wait_for()
    # An upload from the browser goes through Gradio's upload route, which needs the sign-in's cookie.
    assert any(c["name"] == "tutor_instructor" for c in page.context.cookies())
    chapter = tmp_path / "zorbulation.md"
    chapter.write_text("# Zorbulation\n\nThe zorbulation trick rescales each gradient by a cube root.\n")
    page.locator("#component-0 input[type=file], input[type=file]").first.set_input_files(str(chapter))
    page.get_by_role("button", name="Add and re-index").click()
    page.get_by_text("Re-indexed").first.wait_for(timeout=60_000)
    page.get_by_role("tab", name="Instructor sign-in").click()
    page.get_by_text("Signed in: the Instructor tab is open").wait_for()
    page.get_by_role("tab", name="Instructor", exact=True).click()
    page.get_by_role("tab", name="What students ask").click()
    page.screenshot(path=str(ARTIFACTS / "browser-5-instructor.png"), full_page=True)
