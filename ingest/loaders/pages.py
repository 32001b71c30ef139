"""Clean-up across the pages of one document (PDF pages, slides): what only shows up by comparing
a page with the others.

- `drop_running_lines`: running headers and footers (author, university and course lines, page
  numbers such as `3 / 40`) are lines found on most pages. A line counts as the same on every page
  with its numbers ignored; it is dropped when it is on at least `RUNNING_SHARE` of the pages, or on
  `COUNTER_SHARE` of them with a number that changes from page to page (a page counter, as in a
  book's alternating headers). A deck's section title on a third of its slides stays. Pages are
  counted once per reveal sequence, so that a build of five steps does not make its title "running".
- `collapse_reveals`: a step-by-step reveal (Beamer overlays, builds copied onto new slides) is a
  run of consecutive pages each holding the one before plus a little more. Only the fullest page of
  the run is kept, under its own page number; a page counts as held by the next when at most
  `REVEAL_SLACK` of its words are missing from it (a highlight that moved, a counter).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict

RUNNING_SHARE = 0.6
COUNTER_SHARE = 0.4
MIN_PAGES = 3
REVEAL_SLACK = 0.1

_NUMBER = re.compile(r"\d+")


def drop_running_lines(pages: list[str]) -> list[str]:
    """`pages` without the lines that repeat on most of them (module docstring)."""
    distinct = collapse_reveals([_NUMBER.sub("#", page) for page in pages])  # page counters differ
    with_text = [pages[index] for index in distinct]
    if len(with_text) < MIN_PAGES:
        return pages
    pages_with: Counter[str] = Counter()
    variants: dict[str, set[str]] = defaultdict(set)
    for page in with_text:
        seen = set()
        for line in page.split("\n"):
            plain = " ".join(line.split())
            if plain:
                key = _NUMBER.sub("#", plain)
                seen.add(key)
                variants[key].add(plain)
        pages_with.update(seen)
    running = {
        key for key, count in pages_with.items()
        if count >= MIN_PAGES and (
            count >= RUNNING_SHARE * len(with_text)
            or (count >= COUNTER_SHARE * len(with_text) and len(variants[key]) > 1)
        )
    }
    if not running:
        return pages
    return [
        "\n".join(line for line in page.split("\n")
                  if _NUMBER.sub("#", " ".join(line.split())) not in running).strip()
        for page in pages
    ]


def collapse_reveals(pages: list[str]) -> list[int]:
    """Indices of the pages to keep: each page held by the page after it (module docstring) is
    dropped, so a reveal sequence is left with its last, fullest page. Empty pages are skipped over
    when finding the next page, and are never kept."""
    with_text = [index for index, page in enumerate(pages) if page.strip()]
    kept = []
    for index, following in zip(with_text, [*with_text[1:], None]):
        if following is None or not _held_by(pages[index], pages[following]):
            kept.append(index)
    return kept


def _held_by(page: str, following: str) -> bool:
    words, next_words = Counter(page.split()), Counter(following.split())
    total = sum(words.values())
    if total > sum(next_words.values()):
        return False
    missing = sum((words - next_words).values())
    return missing <= REVEAL_SLACK * total
