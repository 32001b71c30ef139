"""Markdown source as published sites and books write it, cleaned to what a reader sees.

Used by the Markdown loader, notebook Markdown cells and remark slide decks. Code (fenced blocks
and inline code spans) is never touched; in the prose around it:

- Jekyll/Liquid: `{% highlight python %}` … `{% endhighlight %}` becomes a fenced code block;
  other `{% … %}` tags and `{{ … }}` expressions (`{{site.baseurl}}`) are removed;
- MathJax written for kramdown, `\\\\( … \\\\)` and `\\\\[ … \\\\]`, becomes `$…$` and `$$…$$`,
  the LaTeX the rest of the course uses and the chat window renders;
- inline `<svg>` drawings, `<script>`/`<style>` blocks, HTML comments and images embedded as
  base64 `data:` URIs or notebook attachments are removed;
- other HTML tags are stripped to their text, so a figure `<div>` leaves its caption; an `<img>`
  leaves its alt text only when that is a symbol (`x`, `W`) standing in a sentence;
- book directives (`:label:`, `:eqref:`, `:cite:`, `:numref:`, `:ref:`, `:width:`) are removed
  and multi-framework code tabs reduced to one framework (`ingest.loaders.code_tabs`).
"""

from __future__ import annotations

import html
import re

from ingest.loaders.clean import clean_text
from ingest.loaders.code_tabs import reduce_code_tabs

_HIGHLIGHT = re.compile(r"^([ \t]*)\{%-?\s*highlight\s+(\w+)[^%]*-?%\}[ \t]*$", re.MULTILINE)
_END_HIGHLIGHT = re.compile(r"^([ \t]*)\{%-?\s*endhighlight\s*-?%\}[ \t]*$", re.MULTILINE)
_LIQUID = re.compile(r"\{%.*?%\}|\{\{.*?\}\}", re.DOTALL)
_FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
_INLINE_CODE = re.compile(r"(`+)(?!`).*?(?<!`)\1(?!`)", re.DOTALL)
_BLOCKS = re.compile(r"<(svg|script|style|iframe)\b.*?(?:</\1\s*>|\Z)|<!--.*?(?:-->|\Z)", re.DOTALL | re.IGNORECASE)
_DATA_IMAGE = re.compile(r"!\[[^\]]*\]\(\s*(?:data:[^)]*|attachment:[^)]*)\)")
_IMG = re.compile(r"<img\b[^>]*>", re.IGNORECASE)
_ALT = re.compile(r"""\balt\s*=\s*(["'])(.*?)\1""", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"</?[A-Za-z][\w:-]*(?:\s[^<>]*)?/?>")
_DISPLAY_MATH = re.compile(r"\\\\\[(.*?)\\\\\]", re.DOTALL)
_INLINE_MATH = re.compile(r"\\\\\((.*?)\\\\\)", re.DOTALL)
_DIRECTIVE = re.compile(r":(?:label|eqref|cite|citet|citep|numref|ref|width|height):`[^`]*`")
_INNER_SPACES = re.compile(r"(?<=[^\s|]) {2,}(?=[^\s|])")  # not table padding
_MARK = "\x02"  # stands in for an inline code span while the prose around it is cleaned


def clean_markdown(markdown: str, framework: str = "pytorch") -> str:
    """`markdown` cleaned as the module docstring says (and by `clean_text`, so headings are too);
    headings and code are otherwise left as they are."""
    markdown = clean_text(markdown)
    markdown = _END_HIGHLIGHT.sub(r"\1```", _HIGHLIGHT.sub(r"\1```\2", markdown))
    markdown = reduce_code_tabs(markdown, framework)
    pieces, prose, fence = [], [], None
    for line in markdown.split("\n"):
        opening = _FENCE.match(line)
        if fence is None and opening:
            pieces.append(clean_prose("\n".join(prose)))
            prose, fence = [], opening.group(1)
            pieces.append(line)
        elif fence is not None:
            pieces.append(line)
            if opening and line.strip() == fence[0] * len(line.strip()) and len(line.strip()) >= len(fence):
                fence = None
        else:
            prose.append(line)
    pieces.append(clean_prose("\n".join(prose)))
    return "\n".join(piece for piece in pieces if piece is not None)


def strip_liquid(text: str) -> str:
    """`text` without Liquid tags and expressions (Jekyll's `{% … %}` and `{{ … }}`)."""
    return _LIQUID.sub("", text)


def clean_prose(text: str) -> str:
    """Markdown prose (no fenced code in it) cleaned as the module docstring says."""
    spans: list[str] = []

    def keep_span(match: re.Match) -> str:
        spans.append(match.group())
        return f"{_MARK}{len(spans) - 1}{_MARK}"

    text = _DIRECTIVE.sub("", text.replace(_MARK, ""))  # before code spans: a directive's argument is one
    text = _INLINE_CODE.sub(keep_span, text)
    text = strip_liquid(text)
    text = _BLOCKS.sub("", text)
    text = _DATA_IMAGE.sub("", text)
    text = _IMG.sub(lambda m: _img_alt(m) if "\n" in m.group() else m.group(), text)  # tags over lines
    text = _TAG.sub(lambda m: "" if "\n" in m.group() else m.group(), text)
    text = "\n".join(_strip_tags(line) for line in text.split("\n"))
    text = _INNER_SPACES.sub(" ", text)  # where an image or a tag stood between two words
    text = _DISPLAY_MATH.sub(lambda m: f"$${m.group(1).strip()}$$", text)
    text = _INLINE_MATH.sub(lambda m: f"${m.group(1).strip()}$", text)
    text = html.unescape(text)
    return re.sub(f"{_MARK}(\\d+){_MARK}", lambda m: spans[int(m.group(1))], text)


def _strip_tags(line: str) -> str:
    """The line without HTML tags; one that held tags also loses its indentation, which was the
    HTML's layout (and would make Markdown read the text as an indented code block)."""
    stripped = _TAG.sub("", _IMG.sub(_img_alt, line))
    return stripped if stripped == line else stripped.strip()


def _img_alt(match: re.Match) -> str:
    alt = _ALT.search(match.group())
    text = alt.group(2).strip() if alt else ""
    return text if 0 < len(text) <= 3 else ""
