"""Jupyter notebook loader: one section per non-empty cell, and the notebook as a runnable demo.

A code cell's section holds its source and, after "Output:", a short excerpt of what it printed
(streams, plain-text results, errors; images skipped), because the output is often what a student
asks about. Markdown cells are cleaned like Markdown files (`ingest.loaders.markup`: embedded
base64 images and attachments, HTML, Liquid, book directives), and a code cell tagged for another
framework than the course's (`#@tab tensorflow`) is left out. Each cell is named by the nearest
Markdown heading above it. The document carries a
`Demo` whose launch URL is the course's demo link base followed by the notebook's path (a Colab or
Binder link when the base points at the course repository).
"""

from __future__ import annotations

import nbformat

from ingest.errors import LoaderError
from ingest.loaders import read_text, register_loader, tidy_text
from ingest.loaders.code_tabs import keeps_code_cell
from ingest.loaders.markdown import find_headings
from ingest.loaders.markup import clean_markdown
from ingest.model import Demo, Document, Locator, Section, SourceFile

OUTPUT_EXCERPT_CHARS = 500


@register_loader(".ipynb")
def load_notebook(source: SourceFile) -> Document:
    text = read_text(source)
    try:
        # reads() refuses a broken structure but only logs lesser schema slips, as Jupyter does
        notebook = nbformat.reads(text, as_version=4)
    except Exception as err:  # nbformat raises JSON, schema and attribute errors alike
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        raise LoaderError(f"invalid notebook JSON ({reason}); re-save it from Jupyter and re-ingest") from None

    cells = []  # (index, heading above it, text)
    heading = first_heading = ""
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "markdown":
            markdown = clean_markdown(cell.source, source.options.code_framework)
            found = find_headings(markdown)
            opens_with_heading = bool(found) and found[0].line == _first_text_line(markdown)
            cells.append((index, found[0].text if opens_with_heading else heading, tidy_text(markdown)))
            heading = found[-1].text if found else heading
            first_heading = first_heading or (found[0].text if found else "")
        elif cell.cell_type == "code":
            kept, cell.source = keeps_code_cell(cell.source, source.options.code_framework)
            if kept:
                cells.append((index, heading, _code_text(cell)))
    title = first_heading or source.path.stem

    sections = [
        Section(
            text=text,
            locator=Locator(
                path=source.rel, kind=source.kind, title=title, cell=index,
                section=cell_heading or None, url=f"{source.rel}#cell={index}",
            ),
        )
        for index, cell_heading, text in cells
        if text
    ]
    if not sections:
        raise LoaderError(f"notebook has no non-empty cells ({len(notebook.cells)} cells); nothing to index")
    launch_url = source.demo_base + source.rel if source.demo_base else ""
    return Document(title=title, sections=sections, demo=Demo(title=title, path=source.rel, launch_url=launch_url))


def _first_text_line(markdown: str) -> int:
    return next((n for n, line in enumerate(markdown.split("\n")) if line.strip()), 0)


def _code_text(cell) -> str:
    """The cell's source, then an excerpt of its text outputs."""
    code = tidy_text(cell.source)
    if not code:
        return ""
    outputs = tidy_text("\n".join(_output_text(output) for output in cell.get("outputs", [])))
    if len(outputs) > OUTPUT_EXCERPT_CHARS:
        outputs = outputs[:OUTPUT_EXCERPT_CHARS].rstrip() + " …"
    return f"{code}\n\nOutput:\n{outputs}" if outputs else code


def _output_text(output) -> str:
    if output.output_type == "stream":
        return output.get("text", "")
    if output.output_type in ("execute_result", "display_data"):
        return output.get("data", {}).get("text/plain", "")
    if output.output_type == "error":
        return f"{output.get('ename', 'Error')}: {output.get('evalue', '')}"
    return ""
