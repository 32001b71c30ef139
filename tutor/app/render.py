"""What the chat shows beside an answer: citation chips, the source panel, "Try it" demo links.

Everything from the corpus or the model that lands in HTML here is escaped, so a passage that
contains `<script>` (or an `onerror=` attribute) shows as text. The chips and panels are plain HTML
driven by `SOURCES_JS`: clicking chip [n] shows the passage of citation n, its supporting sentence
highlighted, its place in the course, and a link that opens the original there.
"""

from __future__ import annotations

import html
import re
from urllib.parse import urlparse

from ingest.course import CourseConfig
from tutor.app.files import course_file_url

# Chatbot's default renders only $$...$$; inline $...$ and the \( \) / \[ \] pair must be named.
LATEX_DELIMITERS = [
    {"left": "$$", "right": "$$", "display": True},
    {"left": "$", "right": "$", "display": False},
    {"left": "\\(", "right": "\\)", "display": False},
    {"left": "\\[", "right": "\\]", "display": True},
]

# Runs once when the sources component loads; the listener survives re-renders of its content.
SOURCES_JS = """
element.addEventListener('click', (event) => {
  const chip = event.target.closest('.tutor-chip');
  if (!chip || !element.contains(chip)) return;
  const box = chip.closest('.tutor-sources');
  const opening = !chip.classList.contains('active');
  box.querySelectorAll('.tutor-chip').forEach((c) => c.classList.toggle('active', opening && c === chip));
  box.querySelectorAll('.tutor-source').forEach((p) => { p.hidden = !(opening && p.dataset.n === chip.dataset.n); });
});
"""

CSS = """
.tutor-sources { font-size: 0.95rem; }
.tutor-sources h4 { margin: 0.2rem 0 0.4rem; font-size: 0.95rem; }
.tutor-question { color: var(--body-text-color-subdued); margin-bottom: 0.5rem; }
.tutor-chips { display: flex; flex-wrap: wrap; gap: 0.4rem; margin-bottom: 0.6rem; }
.tutor-chip { border: 1px solid var(--border-color-primary); border-radius: 999px; padding: 0.15rem 0.65rem;
  background: var(--background-fill-secondary); cursor: pointer; font-size: 0.82rem; font-weight: 400;
  text-align: left; line-height: 1.4; }
.tutor-chip small { color: var(--body-text-color-subdued); }
.tutor-chip b { color: var(--color-accent); margin-right: 0.3rem; }
.tutor-chip.active { border-color: var(--color-accent); background: var(--color-accent-soft); }
.tutor-source { border-left: 3px solid var(--color-accent); padding: 0.4rem 0.8rem; margin-bottom: 0.6rem;
  background: var(--background-fill-secondary); border-radius: 4px; }
.tutor-source-label { font-weight: 600; font-size: 0.95rem; margin-bottom: 0.3rem; }
.tutor-passage { white-space: pre-wrap; margin: 0.3rem 0; max-height: 22rem; overflow-y: auto;
  font-size: 0.9rem; line-height: 1.45; }
.tutor-passage mark { background: #fff3a3; color: inherit; padding: 0 0.1rem; }
.tutor-hint { color: var(--body-text-color-subdued); font-size: 0.85rem; }
.tutor-demos ul { margin: 0.2rem 0 0 1.1rem; padding: 0; }
.tutor-demos li { font-size: 0.9rem; }
#tutor-banner { border-radius: 6px; padding: 0.3rem 0.8rem; background: var(--background-fill-secondary); }
"""

KIND_LABELS = {
    "slides": "slides", "book": "book", "notes": "notes", "notebook": "notebook", "transcript": "video",
    "assignment": "assignment", "syllabus": "syllabus", "web": "page",
}


def highlight_quote(passage: str, quote: str) -> str:
    """`passage` as escaped HTML with the first occurrence of `quote` wrapped in <mark>.

    The quote is matched word by word across any whitespace, since a passage may wrap lines where
    the quote has a space.
    """
    words = quote.split()
    match = re.search(r"\s+".join(map(re.escape, words)), passage) if words else None
    if match is None:
        return html.escape(passage)
    return (html.escape(passage[:match.start()]) + "<mark>" + html.escape(match.group(0)) + "</mark>"
            + html.escape(passage[match.end():]))


def open_label(locator: dict) -> str:
    """The words on the link that opens the original, e.g. `Open the PDF at page 3`."""
    path = locator.get("path", "")
    suffix = path.rsplit(".", 1)[-1].lower() if "." in path else ""
    if suffix == "pdf" and locator.get("page"):
        return f"Open the PDF at page {locator.get('page_label') or locator['page']}"
    if suffix == "pptx":
        return f"Download the slides (slide {locator['slide']})" if locator.get("slide") else "Download the slides"
    if suffix == "ipynb":
        return f"Preview the notebook at cell {locator['cell']}" if locator.get("cell") is not None else \
            "Preview the notebook"
    if locator.get("anchor"):
        return "Open the chapter at this section"
    if locator.get("start_s") is not None:
        return "Open the transcript"
    return "Open the original"


def chip_label(locator: dict) -> str:
    """A chip's short name for a place: `04-optimization, slide 7`, `01-intro § Momentum`."""
    name = locator.get("path", "").rsplit("/", 1)[-1].rsplit(".", 1)[0]
    if locator.get("slide") is not None:
        return f"{name}, slide {locator['slide']}"
    if locator.get("page") is not None:
        return f"{name}, p. {locator.get('page_label') or locator['page']}"
    if locator.get("cell") is not None:
        return f"{name}, cell {locator['cell']}"
    if locator.get("start_s") is not None:
        minutes, seconds = divmod(int(locator["start_s"]), 60)
        return f"{name} at {minutes}:{seconds:02d}"
    if locator.get("section"):
        return f"{name} § {locator['section'].split(' > ')[-1]}"
    return name


def sources_html(turn: dict | None, pending: str = "") -> str:
    """Chips and (hidden) passage panels for one answer, plus its demo links.

    `turn` holds `course`, `question`, `citations` (each a Citation dict plus `passage`, the cited
    chunk's text) and `demos`; None renders the empty-state hint, or with `pending` (a question being
    answered) a note that its sources come with the finished answer.
    """
    if not turn and pending:
        return ("<div class='tutor-sources'><div class='tutor-question'>Sources for: "
                f"<i>{html.escape(_short(pending, 90))}</i></div><p class='tutor-hint'>They appear here when "
                "the answer is complete.</p></div>")
    if not turn:
        return ("<div class='tutor-sources'><p class='tutor-hint'>Sources for each answer appear here: "
                "click a number to read the passage and open the original.</p></div>")
    course = turn["course"]
    parts = ["<div class='tutor-sources'>",
             f"<div class='tutor-question'>Sources for: <i>{html.escape(_short(turn['question'], 90))}</i></div>"]
    citations = turn.get("citations", [])
    if citations:
        parts.append("<div class='tutor-chips'>")
        for c in citations:
            kind = KIND_LABELS.get(c["locator"].get("kind", ""), c["locator"].get("kind", ""))
            parts.append(
                f"<button type='button' class='tutor-chip' data-n='{int(c['n'])}' title='{html.escape(c['title'])}'>"
                f"<b>[{int(c['n'])}]</b>{html.escape(_short(chip_label(c['locator']), 48))}"
                f"{f' <small>({html.escape(kind)})</small>' if kind else ''}</button>")
        parts.append("</div>")
        for c in citations:
            link = course_file_url(course, c["url"])
            parts.append(
                f"<div class='tutor-source' data-n='{int(c['n'])}' hidden>"
                f"<div class='tutor-source-label'>[{int(c['n'])}] {html.escape(c['title'])}</div>"
                f"<div class='tutor-passage'>{highlight_quote(c.get('passage', ''), c.get('quote', ''))}</div>"
                f"<a href='{html.escape(link)}' target='_blank' rel='noopener'>"
                f"{html.escape(open_label(c['locator']))} ↗</a>"
                "</div>")
        parts.append("<p class='tutor-hint'>Click a source to read the passage; the highlighted sentence "
                     "is the one the answer relies on.</p>")
    else:
        parts.append("<p class='tutor-hint'>This answer cites no course material.</p>")
    if turn.get("demos"):
        parts.append(demos_html(course, turn["demos"]))
    parts.append("</div>")
    return "".join(parts)


def demos_html(course: str, demos: list[dict]) -> str:
    """"Try it" links: launch (e.g. Colab), download the notebook from the app, preview it here."""
    items = []
    for demo in demos:
        links = []
        if _is_web_url(demo.get("url", "")):
            host = urlparse(demo["url"]).hostname or "the web"
            links.append(f"<a href='{html.escape(demo['url'])}' target='_blank' rel='noopener noreferrer'>"
                         f"Launch ({html.escape(host)})</a>")
        links.append(f"<a href='{html.escape(course_file_url(course, demo['path'], download=True))}' download>"
                     "Download</a>")
        preview = demo["path"] + (f"#cell={int(demo['cell'])}" if demo.get("cell") is not None else "")
        links.append(f"<a href='{html.escape(course_file_url(course, preview))}' target='_blank' rel='noopener'>"
                     "Preview</a>")
        items.append(f"<li><b>{html.escape(demo['title'])}</b>: {' · '.join(links)}</li>")
    return f"<div class='tutor-demos'><h4>Try it</h4><ul>{''.join(items)}</ul></div>"


def answer_markdown(answer: dict) -> str:
    """The chat message for a finished answer: its text, then any notice (e.g. LLM unreachable)."""
    text = answer["text"]
    if answer.get("notice"):
        text += f"\n\n> ⚠️ {answer['notice']}"
    return text


def banner_markdown(course: CourseConfig, backend: str, model: str = "") -> str:
    from tutor.models import is_demo_model

    lines = [f"**{course.title}**: ask about the lectures, the book and the demos. Every answer cites its sources."]
    if backend == "extractive":
        lines.append("ℹ️ **No language model is configured**: answers are the course passages that best "
                     "match your question, quoted with their sources (extractive mode).")
    elif is_demo_model(model):
        lines.append(f"⚠️ **Demonstration model** (`{model}`): a 135M-parameter model that shows the tutor "
                     "working end to end on a laptop. It is not a reliable teacher: check every answer "
                     "against its cited sources.")
    return "\n\n".join(lines)


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _is_web_url(url: str) -> bool:
    return urlparse(url).scheme in ("http", "https")
