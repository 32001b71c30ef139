"""Multi-framework code tabs reduced to the one framework a course teaches (`LoadOptions.code_framework`).

Books that teach several frameworks at once give every example once per framework; indexing them
all would fill answers with three versions of each snippet. What is recognised, in Markdown source
and notebook cells:

- d2l fenced blocks whose first line is `#@tab pytorch` (or `#@tab mxnet, tensorflow`, `#@tab all`,
  `%%tab pytorch`); in a file that uses them, an untagged ```` ```{.python .input} ```` block is
  d2l's default framework, MXNet;
- d2l prose tabs, `:begin_tab:`pytorch`` … `:end_tab:`;
- Sphinx tabs, `.. tab:: PyTorch` (also `group-tab` and `code-tab`) with their indented body;
- MyST tab items, `::::{tab-item} PyTorch` … `::::`.

A tab for another framework is dropped with its body; the chosen framework's body is kept without
the marker; text outside tabs, or in a tab naming no known framework, is kept as it is.
"""

from __future__ import annotations

import re
import textwrap

_ALIASES = {
    "pytorch": "pytorch", "torch": "pytorch",
    "tensorflow": "tensorflow", "tf": "tensorflow", "keras": "tensorflow",
    "jax": "jax", "flax": "jax",
    "mxnet": "mxnet", "mx": "mxnet", "gluon": "mxnet",
    "all": "all",
}
_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})(.*)$")
_TAB_LINE = re.compile(r"^\s*(?:#@tab|%%tab)\s+(.+?)\s*$")
_D2L_INPUT = re.compile(r"\{\s*\.python\s+\.input\b")
_BEGIN_TAB = re.compile(r"^\s*:begin_tab:`([^`]*)`\s*$")
_END_TAB = re.compile(r"^\s*:end_tab:\s*$")
_SPHINX_TAB = re.compile(r"^(\s*)\.\. (?:group-|code-)?tab::\s*(.*?)\s*$")
_SPHINX_TABS = re.compile(r"^\s*\.\. tabs::\s*$")
_MYST_TAB = re.compile(r"^\s*(:{3,}|`{3,})\{tab-item\}\s*(.*?)\s*$")


def frameworks_named(label: str) -> set[str]:
    """The frameworks a tab label names (`"mxnet, tensorflow"`, `"PyTorch"`); empty when none."""
    return {_ALIASES[word] for word in re.split(r"[^a-z]+", label.lower()) if word in _ALIASES}


def keeps(label: str, framework: str) -> bool:
    """Whether a tab labelled `label` belongs in a course that teaches `framework`."""
    named = frameworks_named(label)
    return not named or framework in named or "all" in named


def reduce_code_tabs(markdown: str, framework: str) -> str:
    """`markdown` with only `framework`'s tabs kept (module docstring)."""
    if not re.search(r"#@tab|%%tab|:begin_tab:|\.\. (?:group-|code-)?tab::|\{tab-item\}", markdown):
        return markdown
    lines = markdown.split("\n")
    uses_d2l_tabs = any(_TAB_LINE.match(line) for line in lines)
    out: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if fence := _FENCE.match(line):
            end = _closing_fence(lines, index, fence.group(2))
            block = lines[index:end + 1]
            label = _TAB_LINE.match(block[1]) if len(block) > 2 else None
            if label:
                if keeps(label.group(1), framework):
                    out += [block[0], *block[2:]]
            elif uses_d2l_tabs and _D2L_INPUT.search(fence.group(3)):
                if framework == "mxnet":
                    out += block
            else:
                out += block
            index = end + 1
        elif begin := _BEGIN_TAB.match(line):
            end = next((n for n in range(index + 1, len(lines)) if _END_TAB.match(lines[n])), len(lines))
            if keeps(begin.group(1), framework):
                out += lines[index + 1:end]
            index = end + 1
        elif sphinx := _SPHINX_TAB.match(line):
            end = _indented_end(lines, index, len(sphinx.group(1)))
            if keeps(sphinx.group(2), framework):
                out += textwrap.dedent("\n".join(lines[index + 1:end])).split("\n")
            index = end
        elif myst := _MYST_TAB.match(line):
            end = next((n for n in range(index + 1, len(lines)) if lines[n].strip() == myst.group(1)), len(lines))
            if keeps(myst.group(2), framework):
                out += lines[index + 1:end]
            index = end + 1
        elif _SPHINX_TABS.match(line):
            index += 1  # the container of `.. tab::` items says nothing itself
        else:
            out.append(line)
            index += 1
    return "\n".join(out)


def keeps_code_cell(source: str, framework: str) -> tuple[bool, str]:
    """For a notebook code cell: whether to keep it, and its source without a `#@tab` marker."""
    first, _, rest = source.partition("\n")
    label = _TAB_LINE.match(first)
    if not label:
        return True, source
    return keeps(label.group(1), framework), rest


def _closing_fence(lines: list[str], start: int, opening: str) -> int:
    for n in range(start + 1, len(lines)):
        if lines[n].strip().startswith(opening[0] * len(opening)) and not lines[n].strip().strip(opening[0]):
            return n
    return len(lines) - 1


def _indented_end(lines: list[str], start: int, indent: int) -> int:
    """The line after a directive's body: the first non-blank line indented no deeper than it."""
    for n in range(start + 1, len(lines)):
        if lines[n].strip() and len(lines[n]) - len(lines[n].lstrip()) <= indent:
            return n
    return len(lines)
