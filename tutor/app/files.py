"""The originals behind the citations, served by the chat app at `/course-file/<course>/<path>`.

A citation links to the place it came from, opened the way that suits the format:

    PDF        inline, so the browser's viewer honours `#page=N`
    Markdown   rendered to HTML with the same heading anchors the index uses, so `#anchor` lands
    notebook   a read-only HTML preview (nbconvert) with an anchor per cell, so `#cell=N` lands;
               `?download=1` gives the .ipynb itself
    VTT / SRT / text   as plain text
    PPTX and anything else   a download

Only files of the live index are served, never a `solution`, and a path that leaves the course
folder (`..`, an absolute path, a symlink pointing out) is refused. Rendered pages carry a
Content-Security-Policy without scripts: course material never runs code in the student's browser.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from urllib.parse import quote

from markdown_it import MarkdownIt

from ingest.errors import TutorError
from ingest.loaders.markdown import HeadingSlugger, heading_plain_text

ROUTE = "course-file"
_NO_SCRIPT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; sandbox"
_FRONT_MATTER = re.compile(r"\A---[ \t]*\n.*?\n(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL)
_PAGE_CSS = """
body { font: 16px/1.55 system-ui, sans-serif; max-width: 52rem; margin: 2rem auto; padding: 0 1rem; color: #1f2328; }
pre { background: #f6f8fa; padding: .8rem; overflow-x: auto; border-radius: 6px; }
code { font-family: ui-monospace, monospace; font-size: .92em; }
table { border-collapse: collapse; } td, th { border: 1px solid #d0d7de; padding: .3rem .6rem; }
:target { background: #fff3bf; outline: 3px solid #f5b301; outline-offset: 4px; }
.origin { color: #59636e; font-size: .9em; border-bottom: 1px solid #d0d7de; padding-bottom: .5rem; }
"""


class CourseFileRefused(TutorError, PermissionError):
    """The path leaves the course folder; nothing outside it is ever served."""


class CourseFileMissing(TutorError, FileNotFoundError):
    """The path is not a file of the live index (or is a solution, which students never see)."""


def course_file_url(course: str, url: str, download: bool = False) -> str:
    """The app-relative link for a citation's `url` (`book/ch1.md#anchor` -> `course-file/...`).

    Relative (no leading slash) so the link still works when the app is served under a path prefix.
    """
    path, _, fragment = url.partition("#")
    link = f"{ROUTE}/{quote(course, safe='')}/{quote(path)}"
    if download:
        link += "?download=1"
    return f"{link}#{fragment}" if fragment and not download else link


def resolve_course_file(root: Path, rel: str, indexed: dict[str, dict]) -> tuple[Path, str]:
    """(absolute path, path relative to the course) of a servable file, or raise.

    `indexed` is the live manifest's `files` (path -> {kind, ...}): only those are served.
    """
    root = Path(root).resolve()
    if not rel or "\x00" in rel or rel.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", rel):
        raise CourseFileRefused(f"refused path {rel!r}: give a path inside the course folder")
    target = (root / rel).resolve()
    if not target.is_relative_to(root):
        raise CourseFileRefused(f"refused path {rel!r}: it leaves the course folder")
    inside = target.relative_to(root).as_posix()
    entry = indexed.get(inside)
    if entry is None or entry.get("kind") == "solution" or not target.is_file():
        raise CourseFileMissing(f"{inside} is not a file of this course's index")
    return target, inside


def render_markdown_page(text: str, title: str) -> str:
    """Markdown as a standalone page; headings get the anchors `ingest.loaders.markdown` gives them.

    Raw HTML in the source is shown as text (markdown-it with html off), so the page runs no script.
    """
    text = _FRONT_MATTER.sub("", text.replace("\r\n", "\n"), count=1)
    parser = MarkdownIt("commonmark", {"html": False}).enable("table")
    tokens = parser.parse(text)
    slugger = HeadingSlugger()
    for opening, inline in zip(tokens, tokens[1:]):
        if opening.type == "heading_open" and opening.level == 0:
            opening.attrSet("id", slugger.slug(heading_plain_text(inline)))
    body = parser.renderer.render(tokens, parser.options, {})
    return _page(title, body)


def render_notebook_page(path: Path, title: str) -> str:
    """A read-only HTML preview of a notebook, with `id="cell=N"` on cell N (0-based, all cell types).

    nbconvert's lab template is used for its look; its script tags (require.js and MathJax from a
    CDN) are removed, since the app works offline and runs no code from the page.
    """
    import nbformat
    from bs4 import BeautifulSoup
    from nbconvert import HTMLExporter

    notebook = nbformat.read(str(path), as_version=4)
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(notebook)
    soup = BeautifulSoup(body, "html.parser")
    for script in soup.find_all("script"):
        script.decompose()
    rendered = soup.select("div.jp-Cell")
    for index, cell in enumerate(notebook.cells):
        element = soup.find(id=f"cell-id={cell.get('id')}") if cell.get("id") else None
        if element is None and index < len(rendered):
            element = rendered[index]
        if element is not None:
            anchor = soup.new_tag("a", id=f"cell={index}")
            element.insert_before(anchor)
    style = soup.new_tag("style")
    style.string = ":target + div { outline: 3px solid #f5b301; outline-offset: 2px; }"
    (soup.head or soup).append(style)
    banner = soup.new_tag("p", attrs={"class": "origin", "style": "font: 14px system-ui; padding: 0 1rem"})
    banner.string = f"{title} (read-only preview)"
    if soup.body:
        soup.body.insert(0, banner)
    return str(soup)


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_PAGE_CSS}</style></head><body><p class='origin'>{html.escape(title)}</p>{body}</body></html>")


def mount_course_files(app, course_root_and_files) -> None:
    """Add the `/course-file/{course}/{path}` route to a FastAPI `app`.

    `course_root_and_files(course)` returns (course folder, live manifest `files`) or raises
    `CourseNotFoundError` for a course that is not indexed.
    """
    from fastapi import HTTPException
    from fastapi.responses import FileResponse, HTMLResponse

    # No CSP on PDFs: Chromium refuses to show a PDF in a sandboxed document.
    plain = {"X-Content-Type-Options": "nosniff"}
    headers = {**plain, "Content-Security-Policy": _NO_SCRIPT_CSP}

    @app.get(f"/{ROUTE}/{{course}}/{{rel:path}}")
    def course_file(course: str, rel: str, download: bool = False):
        try:
            root, indexed = course_root_and_files(course)
            target, inside = resolve_course_file(root, rel, indexed)
        except CourseFileRefused as exc:
            raise HTTPException(status_code=403, detail=str(exc)) from None
        except (CourseFileMissing, FileNotFoundError) as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None
        suffix = target.suffix.lower()
        if download:
            return FileResponse(target, filename=target.name, headers=plain)
        if suffix == ".pdf":
            return FileResponse(target, media_type="application/pdf", content_disposition_type="inline",
                                filename=target.name, headers=plain)
        if suffix in (".md", ".markdown"):
            page = render_markdown_page(target.read_text(encoding="utf-8-sig", errors="replace"), inside)
            return HTMLResponse(page, headers=headers)
        if suffix == ".ipynb":
            return HTMLResponse(render_notebook_page(target, inside), headers=headers)
        if suffix in (".html", ".htm"):
            return FileResponse(target, media_type="text/html; charset=utf-8", headers=headers)
        if suffix in (".vtt", ".srt", ".txt"):
            return FileResponse(target, media_type="text/plain; charset=utf-8", headers=headers)
        return FileResponse(target, filename=target.name, headers=plain)
