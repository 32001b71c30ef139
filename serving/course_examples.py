"""Fine-tuning examples made from the course itself, for the instructor who has no teacher model.

    examples = course_examples(renderer)       # renderer: serving.finetune_data.ExampleRenderer

For each teaching passage with prose to quote: a student's question (`course_question`: "What is X?"
for a term the passage defines in bold, the heading itself when it is a question, else a question
about the heading's topic) and a reply made of the passage's first prose sentences
(`prose_sentences`), each cited with the passage's `[n]` among the sources the tutor's retrieval
returns for that question (the passage is swapped in when retrieval misses it). The reply is short
on purpose: a small model learns to answer briefly from its sources and to cite them.
"""

from __future__ import annotations

import hashlib
import re

from tutor.citations import split_sentences

MIN_PASSAGE_CHARS = 80  # shorter chunks (a title, a caption) give the teacher too little to ask about
LECTURE_KINDS = ("slides", "book", "notes", "notebook", "transcript", "web", "syllabus")
REPLY_SENTENCES = 2  # a course example's reply: short, so the adapter learns to answer briefly and cite
# Headings that name a kind of section rather than a topic: no student asks about them by name.
GENERIC_HEADINGS = {"common mistakes", "further practice", "practical advice", "summary", "exercises",
                    "key points", "recap", "introduction", "overview", "setup", "takeaways", "examples",
                    "learning goals", "readings", "what to remember", "check your understanding", "common pitfalls",
                    "pitfalls", "notes", "worked example", "try it", "questions", "discussion"}
_DEFINED_TERM = re.compile(r"\*\*([A-Za-z][^*]{2,60})\*\*,?\s+(?:is|are|means|refers to|measures)\b")
_HEADING_PREFIX = re.compile(r"^(?:(?:chapter|demo|lecture|part|section|step)\s*)?\d+[a-z]?\s*[.:)]\s*", re.I)
_CODE = re.compile(r"[=#{}_]|\w\(|\)\.|>>>|\btorch\b|\bnp\.")
_INLINE_MATH = re.compile(r"\$[^$]*\$")
_BULLET = re.compile(r"^\s*(?:[-*+\u00b7\u2022]|\d+[.)])\s+")
COURSE_QUESTION_FORMS = ("Can you explain {topic}?", "What should I know about {topic}?",
                         "How does the course describe {topic}?")


def course_examples(renderer) -> list:
    """`Example`s (serving.finetune_data) of origin `course`: one question per teaching passage that has prose to quote, with a reply citing that passage.

    Every candidate is built (in course order); `build_finetune_data` drops those the eval set
    forbids and then keeps `max_course_questions` of the rest, spread over the course.
    """
    if renderer.options.max_course_questions == 0:
        return []
    examples = []
    for chunk in renderer.index.chunks:
        if chunk.locator.kind not in LECTURE_KINDS or len(chunk.text) < MIN_PASSAGE_CHARS:
            continue
        sentences = prose_sentences(chunk.text)
        question = course_question(chunk.heading, chunk.text, chunk.id)
        if len(sentences) < 2 or question is None:
            continue
        defined = _DEFINED_TERM.search(chunk.text)
        if defined:  # the definition first: it is what "What is X?" asks for
            first = next((s for s in sentences if defined.group(1) in s), sentences[0])
            sentences = [first] + [s for s in sentences if s != first]
        sources = renderer.sources(question, must_include=[chunk.id])
        n = next(s.n for s in sources if s.chunk.id == chunk.id)
        reply = " ".join(cite_sentence(s, n) for s in sentences[:REPLY_SENTENCES])
        examples.append(renderer.render(question, reply, "course", sources))
    return examples


def course_question(heading: str, text: str, seed: str) -> str | None:
    """A student's question about a passage: "What is X?" for a term it defines in bold, the heading
    itself when it is a question, else one of `COURSE_QUESTION_FORMS` (picked by `seed`, so a rebuild
    asks the same) about its heading's topic; None for a heading that names no topic."""
    defined = _DEFINED_TERM.search(text)
    if defined:
        return f"What is {_topic(defined.group(1))}?"
    parts = [p.strip() for p in heading.split(">") if p.strip()]
    if not parts:
        return None
    topic = _HEADING_PREFIX.sub("", parts[-1]).strip()
    topic = re.sub(r"\s*:\s*(?:a|the)?\s*worked example$", "", topic, flags=re.I)
    if topic.endswith("?") and "$" not in topic:  # the heading is already a student's question
        return topic
    if "$" in topic:
        return None
    if topic.lower().startswith("worked example"):
        rest = topic.split(":", 1)[1].strip() if ":" in topic else ""
        return f"Can you walk me through the worked example on {_topic(rest)}?" if rest else None
    if len(topic) < 4 or topic.lower() in GENERIC_HEADINGS or re.fullmatch(r"(?i)the \w+", topic):
        return None  # "Summary", "The update": no student asks about these words alone
    form = COURSE_QUESTION_FORMS[int(hashlib.sha256(seed.encode()).hexdigest()[:8], 16) % len(COURSE_QUESTION_FORMS)]
    return form.format(topic=_topic(topic))


def _topic(text: str) -> str:
    """A heading as it reads inside a sentence: a capitalised first word in lower case; acronyms and
    names with inner capitals (LSTM, LoRA, ResNet) as they are."""
    words = text.strip().rstrip(".:?").split()
    if words and words[0][:1].isupper() and (len(words[0]) == 1 or words[0][1:].islower()):
        words[0] = words[0].lower()
    return " ".join(words)


def prose_sentences(text: str) -> list[str]:
    """The sentences of a passage worth quoting as an answer: whole prose sentences (ending in a full
    stop), not code, tables, headings or sentences that are mostly a formula."""
    out = []
    unwrapped = re.sub(r"(?<=[\w,;])\n(?=[a-z(])", " ", text)  # a line break inside a sentence
    for sentence in split_sentences(unwrapped):
        sentence = _BULLET.sub("", sentence.strip())
        if sentence.startswith("Notes:"):  # a slide's speaker notes: the sentence after the label
            sentence = sentence[len("Notes:"):].strip()
        if "\n\n" in sentence or "\n|" in sentence or "    " in sentence:  # a split that failed, a table, code
            continue
        sentence = " ".join(sentence.split())  # a sentence wrapped over lines reads as one
        if (sentence.startswith(("#", "|", "$$"))
                or not sentence.endswith(".") or _CODE.search(sentence)):
            continue
        prose = _INLINE_MATH.sub("", sentence)
        letters = sum(c.isalpha() or c.isspace() for c in prose)
        if 6 <= len(prose.split()) <= 60 and letters >= 0.8 * len(prose) and len(prose) >= 0.7 * len(sentence):
            out.append(sentence)
    return out


def cite_sentence(sentence: str, n: int) -> str:
    """`sentence` with `[n]` before its closing stop ("... gap [3].")."""
    sentence = sentence.rstrip()
    if sentence[-1:] in ".!":
        return f"{sentence[:-1]} [{n}]{sentence[-1]}"
    return f"{sentence} [{n}]."

