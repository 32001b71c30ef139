"""The `llm` judge: a chat model asked a rubric question, answering in JSON, with a verdict cache.

    judge = create_judge("llm", JudgeConfig(base_url="http://127.0.0.1:8000/v1", model="judge",
                                            cache_path=Path("run/judge-cache.sqlite")))

The model is reached through `tutor.llm` (backend `openai` by default, so vLLM, `transformers serve`
or a hosted API). Models wrap JSON in code fences, add prose around it, use single quotes or leave
a trailing comma: `parse_judge_reply` survives all of that, and a reply it cannot read becomes a
verdict with no score (counted, never guessed). Raw replies are cached by the hash of model and
prompt, so re-scoring a run, or a run resumed after a crash, asks nothing twice.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from eval.judge_base import Judge, JudgeConfig, Verdict
from ingest.errors import ConfigError, TutorError
from tutor.llm import BackendConfig, LLMBackend, create_backend

CORRECTNESS_PROMPT = """\
You grade a teaching assistant's answer to a student's question against a reference answer written \
by the course staff. Judge the content only: is what the answer says correct and does it cover the \
reference's main points? Ignore style, length and citation markers like [1].

Question:
{question}

Reference answer:
{reference}

Answer to grade:
{answer}

Score on this scale: 5 = correct and complete; 4 = correct, a minor point missing; 3 = partly \
correct or missing a main point; 2 = mostly wrong or off topic; 1 = wrong, empty or a refusal.
Reply with JSON only, like {{"score": 4, "reasoning": "one or two sentences"}}."""

SUPPORT_PROMPT = """\
Does the passage support the sentence? A passage supports a sentence when everything the sentence \
claims can be read from the passage (paraphrase is fine; outside knowledge is not).

Passage:
{passage}

Sentence:
{sentence}

Reply with JSON only, like {{"supported": true, "reasoning": "one sentence"}}."""

_FENCE = re.compile(r"```[a-zA-Z]*\s*(.*?)```", re.S)
_SCORE = re.compile(r"[\"']?score[\"']?\s*[:=]\s*[\"']?(-?\d+(?:\.\d+)?)", re.I)
_SUPPORTED = re.compile(r"[\"']?supported[\"']?\s*[:=]\s*[\"']?(true|false|yes|no|1|0)\b", re.I)
_REASONING = re.compile(r"[\"']?reasoning[\"']?\s*[:=]\s*[\"'](.*?)[\"']\s*[,}]", re.I | re.S)


class JudgeReplyError(TutorError, ValueError):
    """A judge model's reply holds no readable verdict."""


def parse_judge_reply(text: str) -> dict:
    """The verdict object in a model's reply: JSON, perhaps fenced, wrapped in prose or sloppy."""
    candidates = _FENCE.findall(text) + [text]
    decoder = json.JSONDecoder()
    for candidate in candidates:
        for start in (m.start() for m in re.finditer(r"\{", candidate)):
            for attempt in (candidate[start:], _loosen(candidate[start:])):
                try:
                    value, _ = decoder.raw_decode(attempt)
                except json.JSONDecodeError:
                    continue
                if isinstance(value, dict):
                    return value
    found: dict = {}
    if score := _SCORE.search(text):
        found["score"] = float(score.group(1))
    if supported := _SUPPORTED.search(text):
        found["supported"] = supported.group(1).lower() in ("true", "yes", "1")
    if found:
        if reasoning := _REASONING.search(text):
            found["reasoning"] = reasoning.group(1)
        return found
    raise JudgeReplyError(f"no JSON verdict in the judge's reply: {text[:200]!r}")


def _loosen(text: str) -> str:
    """Python-ish or sloppy JSON made strict: single quotes, True/False/None, trailing commas."""
    text = re.sub(r"\bTrue\b", "true", re.sub(r"\bFalse\b", "false", re.sub(r"\bNone\b", "null", text)))
    text = re.sub(r"'([^'\\]*)'", lambda m: json.dumps(m.group(1)), text)
    return re.sub(r",\s*([}\]])", r"\1", text)


def correctness_verdict(reply: str) -> Verdict:
    """A 1-5 rubric score mapped to 0..1; an unreadable reply is a verdict without a score."""
    try:
        data = parse_judge_reply(reply)
        raw = float(data["score"])
    except (JudgeReplyError, KeyError, TypeError, ValueError):
        return Verdict(None, reason=f"unreadable judge reply: {reply[:200]!r}")
    score = (min(max(raw, 1.0), 5.0) - 1.0) / 4.0
    return Verdict(score, score >= 0.5, str(data.get("reasoning", "")))


def support_verdict(reply: str) -> Verdict:
    try:
        data = parse_judge_reply(reply)
        raw = data["supported"]
    except (JudgeReplyError, KeyError):
        return Verdict(None, reason=f"unreadable judge reply: {reply[:200]!r}")
    supported = raw.strip().lower() in ("true", "yes", "1") if isinstance(raw, str) else bool(raw)
    return Verdict(1.0 if supported else 0.0, supported, str(data.get("reasoning", "")))


class VerdictCache:
    """Raw judge replies by prompt hash, in SQLite (shared by the judge's worker threads)."""

    def __init__(self, path: Path | None):
        self._lock = threading.Lock()
        self._db = None
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False)
            self._db.execute("CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, reply TEXT NOT NULL)")
            self._db.commit()

    @staticmethod
    def key(model: str, messages: list[dict]) -> str:
        return hashlib.sha256(json.dumps([model, messages], sort_keys=True).encode()).hexdigest()

    def get(self, key: str) -> str | None:
        if self._db is None:
            return None
        with self._lock:
            row = self._db.execute("SELECT reply FROM replies WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def put(self, key: str, reply: str) -> None:
        if self._db is None:
            return
        with self._lock, self._db:
            self._db.execute("INSERT OR REPLACE INTO replies VALUES (?, ?)", (key, reply))


class LLMJudge(Judge):
    """Rubric verdicts from a chat model; `calls` counts requests actually sent (cache misses)."""

    name = "llm"

    def __init__(self, config: JudgeConfig, backend: LLMBackend | None = None):
        if backend is None:
            if config.backend == "openai" and not (config.base_url and config.model):
                raise ConfigError(
                    "the llm judge needs a model server: pass --judge-base-url and --judge-model "
                    "(or set TUTOR_JUDGE_BASE_URL and TUTOR_JUDGE_MODEL), or use --judge embedding")
            backend = create_backend(config.backend, BackendConfig(
                base_url=config.base_url, model=config.model, api_key=config.api_key, timeout_s=config.timeout_s))
        self.backend = backend
        self.config = config
        self.cache = VerdictCache(config.cache_path)
        self.calls = 0
        self._count = threading.Lock()

    def ask(self, prompt: str) -> str:
        """The model's reply to one prompt, from the cache when it was asked before."""
        messages = [{"role": "user", "content": prompt}]
        key = VerdictCache.key(self.backend.model or self.config.model, messages)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        reply = self.backend.complete(messages, max_tokens=self.config.max_tokens, temperature=0.0)
        with self._count:
            self.calls += 1
        self.cache.put(key, reply)
        return reply

    def ask_all(self, prompts: list[str]) -> list[str]:
        if len(prompts) <= 1 or self.config.workers == 1:
            return [self.ask(p) for p in prompts]
        with ThreadPoolExecutor(self.config.workers) as pool:
            return list(pool.map(self.ask, prompts))

    def correctness(self, items: list[tuple[str, str, str]]) -> list[Verdict]:
        prompts = [CORRECTNESS_PROMPT.format(question=q, reference=r, answer=a or "(empty)") for q, a, r in items]
        return [correctness_verdict(reply) for reply in self.ask_all(prompts)]

    def support(self, pairs: list[tuple[str, str]]) -> list[Verdict]:
        prompts = [SUPPORT_PROMPT.format(sentence=s, passage=p) for s, p in pairs]
        return [support_verdict(reply) for reply in self.ask_all(prompts)]

    def describe(self) -> dict:
        return {**self.config.describe(), "name": self.name, "model": self.backend.model or self.config.model}
