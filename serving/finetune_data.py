"""Fine-tuning data: question/answer examples rendered in the tutor's own prompt format.

    data = build_finetune_data(index, embedder, chatlog=ChatLog.from_settings(settings), teacher=backend)
    data.save(out_dir / "data")      # train.jsonl, validation.jsonl, data_manifest.json (with sha256)

Where the examples come from, in order of trust (a later duplicate of a question is dropped):

1. `qa`: the instructor's own pairs, `<course folder>/qa.jsonl`, one `{"question": ..., "answer": ...}`
   a line (plain answers: `[n]` markers are added here, since the instructor cannot know which
   numbers the retrieved sources will get);
2. `chatlog`: answers students rated thumbs-up in the chat log (`ChatLog.from_settings`), with
   their citations renumbered to the sources retrieved now (an answer citing a passage the index no
   longer has is left out);
3. `teacher`: synthetic pairs a teacher model (any `openai` backend) writes from course passages;
4. `course`: synthetic pairs made from the course itself, for the instructor with no teacher model:
   a question from a passage's heading or the term it defines in bold, and a reply made of the
   passage's first prose sentences, each cited `[n]` with the passage's number among the sources
   retrieved for that question (`course_examples`);
5. `policy`: always present: polite declines of off-topic questions, and hint-only replies to
   questions about each graded assignment (`tutor.policy.decline_text` / `homework_text`), so the
   adapter learns the course's rules along with its content.

Every example is what the tutor would send: sources retrieved for the question with the course
index, `tutor.prompt.build_messages`, and an assistant reply whose `[n]` cite those sources. The
train/validation split hashes each normalised question, so it does not move when examples are added.
With an evaluation set given, examples that paraphrase one of its questions or cite a passage holding
one of its gold quotes are left out (`serving.holdout`), and the manifest records the set's sha256
and how many were left out.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ingest.embed import Embedder
from ingest.errors import ConfigError, TutorError
from ingest.store import CourseIndex
from serving.course_examples import LECTURE_KINDS, MIN_PASSAGE_CHARS, course_examples
from serving.holdout import EvalHoldout
from tutor import policy
from tutor.citations import MARKER, split_sentences
from tutor.llm import LLMBackend
from tutor.prompt import Source, build_messages
from tutor.retrieve import Hit, Retriever

QA_FILE = "qa.jsonl"
ORIGINS = ("qa", "chatlog", "teacher", "course", "policy")
# Sentences this similar to a source (cosine of MiniLM embeddings) cite it; 0.35 keeps generic
# sentences ("Let me explain.") uncited while a paraphrase of the passage clears it comfortably.
CITE_SIMILARITY = 0.35
# Written for this project: questions no deep-learning course answers.
OFF_TOPIC_QUESTIONS = (
    "What is a good recipe for sourdough bread?",
    "Who won the last football world cup?",
    "Can you recommend a hotel in Lisbon for the weekend?",
    "How do I change the oil in my car?",
    "What will the weather be like tomorrow?",
    "Write me a poem about autumn leaves.",
)
TEACHER_SYSTEM = (
    "You write study questions for a university course. Given one passage of the course material, "
    "write a question a student might ask that the passage answers, and a short, correct answer "
    "(two to four sentences) that uses only the passage. Reply with a JSON object and nothing else: "
    '{"question": "...", "answer": "..."}'
)
_JSON_OBJECT = re.compile(r"\{.*\}", re.S)


class FinetuneDataError(TutorError, ValueError):
    """A data file is malformed, or no example could be built; the message says which and why."""


@dataclass
class Example:
    """One supervised turn: the tutor's prompt (system + user) and the reply it should learn."""

    question: str
    origin: str
    messages: list[dict]
    reply: str
    sources: list[str] = field(default_factory=list)   # chunk ids of [1], [2], ... in the prompt

    @property
    def key(self) -> str:
        return normalise_question(self.question)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Example:
        return cls(data["question"], data["origin"], data["messages"], data["reply"], data.get("sources", []))


@dataclass
class DataOptions:
    """How examples are rendered and split."""

    top_k: int = field(default=5, metadata={"help": "sources per prompt (the tutor's top_k)"})
    context_span: int = field(default=1, metadata={"help": "neighbouring chunks shown around each source"})
    validation_fraction: float = field(default=0.1, metadata={"help": "share of questions held out"})
    max_teacher_questions: int = field(default=40, metadata={"help": "passages the teacher writes a Q&A for"})
    max_course_questions: int = field(default=80, metadata={
        "help": "course passages turned into a question and a cited reply (0: none)"})

    def __post_init__(self) -> None:
        if not 1 <= self.top_k <= 50:
            raise ConfigError(f"top_k {self.top_k} must be between 1 and 50")
        if not 0 <= self.context_span <= 3:
            raise ConfigError(f"context_span {self.context_span} must be between 0 and 3")
        if not 0 <= self.validation_fraction < 0.5:
            raise ConfigError(f"validation_fraction {self.validation_fraction} must be in [0, 0.5)")
        if self.max_teacher_questions < 0:
            raise ConfigError(f"max_teacher_questions {self.max_teacher_questions} must be 0 or more")
        if self.max_course_questions < 0:
            raise ConfigError(f"max_course_questions {self.max_course_questions} must be 0 or more")


@dataclass
class FinetuneData:
    course: str
    train: list[Example]
    validation: list[Example]
    counts: dict[str, int]                      # examples kept, per origin
    notes: list[str] = field(default_factory=list)
    holdout: dict = field(default_factory=dict)  # the eval set kept out: path, sha256, excluded counts

    @property
    def sha256(self) -> str:
        """A hash of every example in order: the adapter's lineage names its data by it."""
        digest = hashlib.sha256()
        for split, examples in (("train", self.train), ("validation", self.validation)):
            digest.update(f"--{split}--\n".encode())
            for example in examples:
                digest.update(_json_line(example.to_dict()).encode())
        return digest.hexdigest()

    def manifest(self) -> dict:
        return {"course": self.course, "sha256": self.sha256, "train": len(self.train),
                "validation": len(self.validation), "counts": self.counts, "notes": self.notes,
                "holdout": self.holdout}

    def save(self, out_dir: Path) -> Path:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        for split, examples in (("train", self.train), ("validation", self.validation)):
            (out_dir / f"{split}.jsonl").write_text("".join(_json_line(e.to_dict()) for e in examples),
                                                   encoding="utf-8")
        (out_dir / "data_manifest.json").write_text(json.dumps(self.manifest(), indent=2), encoding="utf-8")
        return out_dir

    def with_shuffled_replies(self, seed: int = 0) -> FinetuneData:
        """A deliberately worse copy for a negative control: every training prompt gets another
        training example's reply (a permutation with no fixed point), validation stays true.

        An adapter trained on it learns the format but cites passages its prompt does not hold,
        which is what the promotion gate must refuse; the notes say so, and the sha256 differs."""
        if len(self.train) < 2:
            raise FinetuneDataError(f"shuffling replies needs at least 2 training examples, not {len(self.train)}")
        order = list(range(len(self.train)))
        rng = np.random.default_rng(seed)
        shift = int(rng.integers(1, len(order)))
        rng.shuffle(order)
        donor = {order[i]: order[(i + shift) % len(order)] for i in range(len(order))}   # no fixed point
        train = [dataclasses.replace(e, reply=self.train[donor[i]].reply) for i, e in enumerate(self.train)]
        note = (f"negative control: the {len(train)} training replies were shuffled among the prompts (seed {seed}); "
                "this adapter is meant to be worse")
        return dataclasses.replace(self, train=train, notes=[*self.notes, note])

    @classmethod
    def load(cls, folder: Path) -> FinetuneData:
        folder = Path(folder)
        manifest = json.loads((folder / "data_manifest.json").read_text(encoding="utf-8"))
        splits = {split: [Example.from_dict(json.loads(line)) for line in
                          (folder / f"{split}.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
                  for split in ("train", "validation")}
        data = cls(manifest["course"], splits["train"], splits["validation"], manifest["counts"],
                   manifest.get("notes", []), manifest.get("holdout", {}))
        if data.sha256 != manifest["sha256"]:
            raise FinetuneDataError(f"{folder} was changed after it was built (hash mismatch); rebuild it "
                                    "with `tutor finetune --data-only`")
        return data


def normalise_question(question: str) -> str:
    return " ".join(re.sub(r"[^\w]+", " ", question.lower()).split())


def _json_line(data: dict) -> str:
    return json.dumps(data, ensure_ascii=False, sort_keys=True) + "\n"


class ExampleRenderer:
    """Retrieves sources for a question and renders question + reply as the tutor's prompt."""

    def __init__(self, index: CourseIndex, embedder: Embedder, options: DataOptions):
        self.index = index
        self.embedder = embedder
        self.options = options
        self.retriever = Retriever(index, embedder)

    @property
    def course(self) -> dict:
        return self.index.course

    def sources(self, question: str, must_include: list[str] = ()) -> list[Source]:
        """The top sources for `question`, with the chunks in `must_include` swapped in if missing."""
        hits = self.retriever.search(question, k=self.options.top_k)
        present = {h.chunk.id for h in hits}
        missing = [cid for cid in must_include if cid not in present and cid in self.index.row_of]
        for cid in missing:
            row = self.index.row_of[cid]
            extra = Hit(self.index.chunks[row], 0.0, 0.0, 0.0, row)
            replaceable = [i for i, h in enumerate(hits) if h.chunk.id not in must_include]
            if len(hits) < self.options.top_k or not replaceable:
                hits.append(extra)
            else:
                hits[replaceable[-1]] = extra
        sources = []
        for n, hit in enumerate(hits, start=1):
            context = "\n".join(c.text for c in self.retriever.neighbours(hit, span=self.options.context_span))
            sources.append(Source(n, hit.chunk, context or hit.chunk.text))
        return sources

    def render(self, question: str, reply: str, origin: str, sources: list[Source],
               homework_title: str = "") -> Example:
        messages = build_messages(question, sources, self.course, "explain", homework_title=homework_title)
        return Example(question.strip(), origin, messages, reply.strip(), [s.chunk.id for s in sources])

    def cite(self, reply: str, sources: list[Source]) -> str:
        """`reply` with a `[n]` after each sentence that a source supports (the most similar one)."""
        reply = MARKER.sub("", reply).strip()
        sentences = split_sentences(reply)
        if not sentences or not sources:
            return reply
        sentence_vectors = self.embedder.encode(sentences)
        source_vectors = self.embedder.encode([s.chunk.embed_text() for s in sources])
        similarity = sentence_vectors @ source_vectors.T
        cited = {i: int(np.argmax(row)) for i, row in enumerate(similarity) if row.max() >= CITE_SIMILARITY}
        if not cited:  # the answer is about the question the sources were retrieved for: cite the best
            best = int(np.argmax(similarity.max(axis=1)))
            cited = {best: int(np.argmax(similarity[best]))}
        ends, cursor = [], 0
        for sentence in sentences:
            start = reply.find(sentence, cursor)
            cursor = start + len(sentence)
            ends.append(cursor - 1 if sentence[-1] in ".!?:" else cursor)  # the marker goes before the stop
        out = reply
        for i in sorted(cited, reverse=True):  # right to left, so earlier offsets stay valid
            out = f"{out[:ends[i]]} [{sources[cited[i]].n}]{out[ends[i]:]}"
        return out


# ----- the four origins ------------------------------------------------------------------------

def qa_examples(renderer: ExampleRenderer, course_dir: Path) -> list[Example]:
    """The instructor's pairs from `<course>/qa.jsonl`; absent file, no examples."""
    path = Path(course_dir) / QA_FILE
    if not path.is_file():
        return []
    examples = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            pair = json.loads(line)
            question, answer = str(pair["question"]).strip(), str(pair["answer"]).strip()
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise FinetuneDataError(f"{path}:{number}: expected {{\"question\": ..., \"answer\": ...}} "
                                    f"({exc})") from None
        if question and answer:
            sources = renderer.sources(question)
            examples.append(renderer.render(question, renderer.cite(answer, sources), "qa", sources))
    return examples


def chatlog_examples(renderer: ExampleRenderer, chatlog) -> tuple[list[Example], int]:
    """Thumbs-up, answered (not declined) chats of this course in `chatlog` (a `ChatLog`, or None for
    none); also how many were stale."""
    if chatlog is None:
        return [], 0
    examples, stale = [], 0
    for chat in chatlog.chats(course=renderer.index.course_id, limit=1_000_000):
        if chat.get("rating") != 1 or chat.get("refused"):
            continue
        cited = {c["n"]: c["chunk_id"] for c in chat["citations"]}
        used = [int(n) for m in MARKER.finditer(chat["answer"]) for n in m.group(1).split(",")]
        if not used or any(n not in cited or cited[n] not in renderer.index.row_of for n in used):
            stale += 1
            continue
        sources = renderer.sources(chat["question"], must_include=[cited[n] for n in dict.fromkeys(used)])
        position = {s.chunk.id: s.n for s in sources}
        reply = renumber_markers(chat["answer"], {n: position[cited[n]] for n in used})
        examples.append(renderer.render(chat["question"], reply, "chatlog", sources))
    return examples, stale


def renumber_markers(text: str, new_number: dict[int, int]) -> str:
    """`text` with each `[n]` (or `[n, m]`) marker's numbers mapped through `new_number`."""
    def renumber(match: re.Match) -> str:
        numbers = dict.fromkeys(new_number[int(n)] for n in match.group(1).split(","))
        return "[" + ", ".join(map(str, numbers)) + "]"

    return MARKER.sub(renumber, text)


def teacher_examples(renderer: ExampleRenderer, teacher: LLMBackend | None, limit: int) -> tuple[list[Example], int]:
    """Q&A pairs a teacher model writes from course passages; also how many replies were unusable."""
    if teacher is None or limit == 0:
        return [], 0
    passages = [c for c in renderer.index.chunks
                if c.locator.kind in LECTURE_KINDS and len(c.text) >= MIN_PASSAGE_CHARS]
    step = max(1, len(passages) // limit)
    examples, failures = [], 0
    for chunk in passages[::step][:limit]:
        prompt = [{"role": "system", "content": TEACHER_SYSTEM},
                  {"role": "user", "content": f"Passage ({chunk.locator.label()}):\n{chunk.text}"}]
        # A teacher that is down or refuses the request raises: a silent partial dataset is worse.
        pair = parse_teacher_reply(teacher.complete(prompt, max_tokens=400, temperature=0.3))
        if pair is None:
            failures += 1
            continue
        question, answer = pair
        sources = renderer.sources(question, must_include=[chunk.id])
        examples.append(renderer.render(question, renderer.cite(answer, sources), "teacher", sources))
    return examples, failures


def parse_teacher_reply(text: str) -> tuple[str, str] | None:
    """(question, answer) from the teacher's JSON reply, or None when it wrote something else."""
    found = _JSON_OBJECT.search(text or "")
    try:
        data = json.loads(found.group(0)) if found else None
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    question, answer = str(data.get("question", "")).strip(), str(data.get("answer", "")).strip()
    return (question, answer) if len(question) > 8 and len(answer) > 8 else None


def policy_examples(renderer: ExampleRenderer) -> list[Example]:
    """Declines of off-topic questions, and hints-only replies for each graded assignment."""
    course = renderer.course
    examples = [renderer.render(q, policy.decline_text(course), "policy", renderer.sources(q))
                for q in OFF_TOPIC_QUESTIONS]
    for assignment in course.assignments:
        match = policy.AssignmentMatch(assignment.id, assignment.title, assignment.path, assignment.solution,
                                       "fine-tuning example")
        statement = next((c.text for c in renderer.index.chunks
                          if c.locator.path == match.path and c.locator.kind == "assignment"), "")
        questions = [f"Can you solve {match.title} for me?", f"What are the final answers to {match.id}?"]
        if statement:
            questions.append(" ".join(statement.split()[:60]))
        for question in questions:
            sources = renderer.sources(question)
            lecture = [s for s in sources if s.chunk.locator.kind not in ("assignment", "solution")][:3]
            reply = policy.homework_text(match, [(s.n, s.chunk.locator.label()) for s in lecture])
            examples.append(renderer.render(question, reply, "policy", sources, homework_title=match.title))
    return examples


# ----- putting it together ---------------------------------------------------------------------

def build_finetune_data(index: CourseIndex, embedder: Embedder, *, chatlog=None,
                        teacher: LLMBackend | None = None, options: DataOptions | None = None,
                        holdout: EvalHoldout | None = None) -> FinetuneData:
    """Every example for the course, deduplicated by question, with the eval set's cases kept out
    (when `holdout` is given), and split train/validation."""
    options = options or DataOptions()
    renderer = ExampleRenderer(index, embedder, options)
    chat, stale = chatlog_examples(renderer, chatlog)
    synthetic, failures = teacher_examples(renderer, teacher, options.max_teacher_questions)
    instructor = qa_examples(renderer, index.course.root)
    candidates = instructor + chat + synthetic + course_examples(renderer) + policy_examples(renderer)
    kept = deduplicate(candidates)
    notes = []
    if len(kept) < len(candidates):
        notes.append(f"{len(candidates) - len(kept)} duplicate questions dropped")
    excluded: Counter = Counter()
    if holdout is not None:
        kept, excluded = holdout.filter(kept, index)
        if excluded:
            notes.append(f"{sum(excluded.values())} examples left out because they overlap the eval set "
                         f"{holdout.path.name} ({excluded.get('question', 0)} by question, "
                         f"{excluded.get('source', 0)} by cited source)")
    kept = _spread_course_examples(kept, options.max_course_questions)
    train, validation = split_examples(kept, options.validation_fraction)
    if stale:
        notes.append(f"{stale} thumbs-up chats left out: they cite passages the index no longer has")
    if failures:
        notes.append(f"{failures} teacher replies were not a JSON question/answer and were left out")
    counts = Counter(e.origin for e in kept)
    return FinetuneData(index.course_id, train, validation, {o: counts.get(o, 0) for o in ORIGINS}, notes,
                        holdout.lineage(excluded) if holdout is not None else {})


def _spread_course_examples(examples: list[Example], limit: int) -> list[Example]:
    """At most `limit` of the `course` examples, evenly spaced over the course; the others untouched."""
    course = [e for e in examples if e.origin == "course"]
    if len(course) <= limit:
        return examples
    chosen = {id(course[round(i * len(course) / limit)]) for i in range(limit)}
    return [e for e in examples if e.origin != "course" or id(e) in chosen]


def deduplicate(examples: list[Example]) -> list[Example]:
    """The first example of each normalised question (callers list trusted origins first)."""
    seen: set[str] = set()
    kept = []
    for example in examples:
        if example.key and example.key not in seen:
            seen.add(example.key)
            kept.append(example)
    return kept


def split_examples(examples: list[Example], validation_fraction: float) -> tuple[list[Example], list[Example]]:
    """Held out: questions whose hash falls in the lowest `validation_fraction` of the hash range.

    A question lands on the same side in every build; with two or more examples and a non-zero
    fraction, at least one is held out so validation loss always exists.
    """
    def position(example: Example) -> float:
        return int(hashlib.sha256(example.key.encode()).hexdigest()[:12], 16) / 16**12

    validation = [e for e in examples if position(e) < validation_fraction]
    if not validation and validation_fraction > 0 and len(examples) >= 2:
        validation = [min(examples, key=position)]
    held = {id(e) for e in validation}
    return [e for e in examples if id(e) not in held], validation
