"""Transcript loader (WebVTT, SubRip and YouTube's SubViewer `.sbv`): cues grouped into stretches
of about a minute.

One cue is a few words, too little to answer from, so consecutive cues are gathered until the group
spans at least `GROUP_SECONDS`; a cue is never split, so a group ends up 45 seconds to about a
minute long. A section is located by the start of its first cue (`talk.vtt#t=83`, shown as 01:23).
Rolling captions that repeat the previous line (common in auto-generated subtitles) are kept once.

An `.sbv` file, what YouTube exports, is blocks separated by blank lines: a `0:00:01.234,0:00:05.678`
line (start and end), then the caption text.
"""

from __future__ import annotations

import io
import re

from webvtt import WebVTT

from ingest.errors import LoaderError
from ingest.loaders import read_text, register_loader
from ingest.loaders.clean import clean_text
from ingest.model import Document, Locator, Section, SourceFile

GROUP_SECONDS = 45.0
_SBV_TIMES = re.compile(r"^\s*(\d+):(\d{1,2}):(\d{1,2}(?:\.\d+)?)\s*,\s*(\d+):(\d{1,2}):(\d{1,2}(?:\.\d+)?)\s*$")


@register_loader(".vtt", ".srt")
def load_subtitles(source: SourceFile) -> Document:
    text = read_text(source)
    fmt = "srt" if source.path.suffix.lower() == ".srt" else "vtt"
    try:
        captions = WebVTT.from_buffer(io.StringIO(text), format=fmt).captions
    except Exception as err:  # webvtt raises MalformedFileError / MalformedCaptionError and friends
        raise LoaderError(
            f"not a valid {fmt.upper()} file ({str(err).strip() or type(err).__name__}); "
            "check the header and the 'start --> end' timestamp lines"
        ) from None
    cues = [(c.start_time.in_milliseconds() / 1000, c.end_time.in_milliseconds() / 1000, c.text) for c in captions]
    return _transcript(source, cues, fmt)


@register_loader(".sbv")
def load_sbv(source: SourceFile) -> Document:
    cues = []
    for number, block in enumerate(re.split(r"\n[ \t]*\n", read_text(source).strip()), start=1):
        times, _, text = block.strip().partition("\n")
        match = _SBV_TIMES.match(times)
        if not match:
            raise LoaderError(
                f"not a valid SBV file (cue {number} starts with {times.strip()[:40]!r}); each cue needs "
                "a 'h:mm:ss.mmm,h:mm:ss.mmm' line, then its text, then a blank line"
            )
        h1, m1, s1, h2, m2, s2 = match.groups()
        cues.append((int(h1) * 3600 + int(m1) * 60 + float(s1), int(h2) * 3600 + int(m2) * 60 + float(s2), text))
    return _transcript(source, cues, "sbv")


def _transcript(source: SourceFile, cues: list[tuple[float, float, str]], fmt: str) -> Document:
    cues = [(start, end, clean_text(text)) for start, end, text in cues if text.strip()]
    if not cues:
        raise LoaderError(f"no subtitle cues with text found; is this really a {fmt.upper()} file?")
    title = _pretty_title(source.path.stem)
    sections = []
    for start, lines in _group_cues(cues):
        sections.append(Section(
            text=" ".join(lines),
            locator=Locator(
                path=source.rel, kind=source.kind, title=title, section=format_clock(start),
                start_s=start, url=f"{source.rel}#t={int(start)}",
            ),
        ))
    return Document(title=title, sections=sections)


def _group_cues(cues: list[tuple[float, float, str]]) -> list[tuple[float, list[str]]]:
    """`(start of the first cue, lines)` for each run of cues spanning at least GROUP_SECONDS."""
    groups: list[tuple[float, list[str]]] = []
    start, lines, previous = None, [], ""
    for cue_start, cue_end, cue_text in cues:
        if start is not None and lines and cue_start - start >= GROUP_SECONDS:
            groups.append((start, lines))  # a long pause: the next cue opens its own section
            start, lines = None, []
        if start is None:
            start = cue_start
        for line in cue_text.splitlines():
            line = " ".join(line.split())
            if line and line != previous:
                lines.append(line)
                previous = line
        if cue_end - start >= GROUP_SECONDS:
            if lines:
                groups.append((start, lines))
            start, lines = None, []
    if start is not None and lines:
        groups.append((start, lines))
    return groups


def format_clock(seconds: float) -> str:
    """`mm:ss` under an hour (`83` -> `01:23`), `h:mm:ss` from an hour on (`3725` -> `1:02:05`)."""
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def _pretty_title(stem: str) -> str:
    """`lecture_03-backprop` -> `Lecture 03 backprop`."""
    words = " ".join(re.split(r"[_\-.\s]+", stem)).strip()
    return words[:1].upper() + words[1:] if words else stem
