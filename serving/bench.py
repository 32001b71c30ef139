"""`tutor bench`: load-test a served model through the tutor's full answer path, and compare two.

    targets = [BenchTarget("A", "http://127.0.0.1:8000/v1", "dl-intro"),
               BenchTarget("B", "http://127.0.0.1:8000/v1", "dl-intro-v2")]
    report = run_benchmark(targets, settings, BenchOptions(concurrency=8, duration_s=30))
    save_report(report, Path("bench/"))          # bench.json + bench.png

Each simulated student is a thread with its own `Tutor` (sharing the index and embedder) talking to
the server with the `openai` backend, so every request pays for what a real one does: embedding
the question, hybrid retrieval, the policy checks, the prompt, the streamed generation and the
citation check. Students replay the course's questions (`eval/datasets/<course>.jsonl`, else
questions made from the index's section titles) round-robin until the time or request budget ends.
Targets are measured one after another, so they do not compete for the machine.

Per target: time to first token (the first streamed text, from the moment the question is asked)
p50/p95, the server's own share of it (from sending the model request to its first text, so the
rest is the tutor's embedding, retrieval and policy work), end-to-end latency p50/p95, requests/s, output tokens/s (as the server counts them in
its streamed usage report; where a server sends none, whitespace-separated words stand in, and
`tokens_counted_by` says which), errors (a request that raised, or
whose answer is the extractive fallback after the model failed), and questions the tutor declined
as out of scope (they never reach the model, so they are counted apart and left out of the timings).
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ingest.embed import Embedder
from ingest.errors import ConfigError
from ingest.store import CourseIndex
from tutor.answer import Tutor, final_answer
from tutor.llm import create_backend
from tutor.settings import Settings

# Case types whose answers never reach the model (declined by the tutor before generation).
_NOT_GENERATED = ("out_of_scope", "homework")
DATASETS_DIR = Path(__file__).resolve().parents[1] / "eval" / "datasets"
COMPARED = ("ttft_p50_s", "ttft_p95_s", "server_ttft_p50_s", "server_ttft_p95_s", "latency_p50_s", "latency_p95_s", "requests_per_s", "tokens_per_s")


@dataclass
class BenchTarget:
    """One server to load. `model` may list several names, comma-separated ("dl-intro,ml-101"): the
    requests are then spread over them in turn, as students of two courses would share one server."""

    label: str
    base_url: str
    model: str

    def models(self) -> list[str]:
        names = [name.strip() for name in self.model.split(",") if name.strip()]
        if not names:
            raise ConfigError(f"bench target {self.label} names no model")
        return names


@dataclass
class BenchOptions:
    """How hard and how long to push each target."""

    concurrency: int = field(default=8, metadata={"help": "simulated students asking at once"})
    duration_s: float = field(default=30.0, metadata={"help": "seconds of load per target"})
    max_requests: int = field(default=0, metadata={"help": "stop a target after this many requests (0: no cap)"})
    max_tokens: int = field(default=256, metadata={"help": "longest answer requested"})
    warmup_requests: int = field(default=1, metadata={"help": "unmeasured requests before the clock starts"})

    def __post_init__(self) -> None:
        if not 1 <= self.concurrency <= 256:
            raise ConfigError(f"concurrency {self.concurrency} must be between 1 and 256")
        if self.duration_s <= 0:
            raise ConfigError(f"duration {self.duration_s} must be positive seconds")
        if self.max_requests < 0 or self.max_tokens < 1 or self.warmup_requests < 0:
            raise ConfigError("max_requests and warmup_requests must be 0 or more, max_tokens 1 or more")


@dataclass
class RequestRecord:
    question: str
    status: str                 # "ok" | "declined" (never reached the model) | "error"
    ttft_s: float | None = None
    server_ttft_s: float | None = None  # from sending the model request to its first text
    latency_s: float = 0.0
    words: int = 0
    tokens: int | None = None   # generated tokens as the server counted them (None: it did not say)
    error: str = ""


def load_questions(index: CourseIndex, dataset: Path | None = None) -> list[str]:
    """The course's answerable eval questions, or ones made from its section titles if there is none."""
    dataset = dataset or DATASETS_DIR / f"{index.course_id}.jsonl"
    if Path(dataset).is_file():
        questions = []
        for line in Path(dataset).read_text(encoding="utf-8").splitlines():
            if line.strip():
                case = json.loads(line)
                if case.get("type") not in _NOT_GENERATED and case.get("question"):
                    questions.append(case["question"])
        if questions:
            return questions
    return questions_from_titles(index)


def questions_from_titles(index: CourseIndex) -> list[str]:
    """One "Can you explain ...?" per distinct section heading (else file title) of the lecture material."""
    seen: dict[str, None] = {}
    for chunk in index.chunks:
        if chunk.locator.kind in ("assignment", "solution"):
            continue
        topic = (chunk.locator.section or "").split(" > ")[-1].strip()
        if not re.search(r"[A-Za-z]{3}", topic):  # no heading, or a transcript's "01:10"
            topic = chunk.locator.title.strip()
        if re.search(r"[A-Za-z]{3}", topic):
            seen.setdefault(f"Can you explain {topic}?", None)
    if not seen:
        raise ConfigError(f"course {index.course_id!r} has no section titles to ask about; pass --questions FILE")
    return list(seen)


def measure_target(target: BenchTarget, index: CourseIndex, embedder: Embedder, settings: Settings,
                   questions: list[str], options: BenchOptions) -> dict:
    """Load one target with `options.concurrency` students; its summary (see `summarise`)."""
    settings = settings.model_copy(update={"max_answer_tokens": options.max_tokens})

    def make_tutors() -> list[Tutor]:
        return [Tutor(index, embedder, create_backend("openai", settings.backend_config(
                    base_url=target.base_url, model=model, max_retries=0)), settings) for model in target.models()]

    embedder.encode_query("warm up")  # load the model once, before threads race to load it
    for warm in make_tutors():
        for question in questions[:options.warmup_requests]:
            ask_once(warm, question)
    records: list[RequestRecord] = []
    lock = threading.Lock()
    counter = iter(range(10**9))
    started = time.perf_counter()
    deadline = started + options.duration_s

    def student() -> None:
        tutors = make_tutors()
        while time.perf_counter() < deadline:
            with lock:
                n = next(counter)
                if options.max_requests and n >= options.max_requests:
                    return
            record = ask_once(tutors[n % len(tutors)], questions[n % len(questions)])
            with lock:
                records.append(record)

    threads = [threading.Thread(target=student, daemon=True) for _ in range(options.concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return {**asdict(target), **summarise(records, elapsed)}


def ask_once(tutor: Tutor, question: str) -> RequestRecord:
    """One question through the whole tutor, timed; a fallback or a failure is an error."""
    started = time.perf_counter()
    first = None

    def on_delta(text: str) -> None:
        nonlocal first
        if text and first is None:
            first = time.perf_counter() - started

    try:
        answer = final_answer(tutor.stream(question), on_delta=on_delta)
    except Exception as exc:  # a load test records failures instead of stopping at the first
        return RequestRecord(question, "error", first, latency_s=time.perf_counter() - started,
                             error=f"{type(exc).__name__}: {exc}")
    latency = time.perf_counter() - started
    if answer.refused == "out_of_scope":
        return RequestRecord(question, "declined", first, latency_s=latency)
    if answer.backend != "openai":  # the model failed and the tutor fell back to extractive
        return RequestRecord(question, "error", first, latency_s=latency,
                             error=answer.notice or "fell back to extractive")
    tokens = getattr(tutor.backend, "last_completion_tokens", None)
    server_first = getattr(tutor.backend, "last_first_text_s", None)
    return RequestRecord(question, "ok", first, server_first, latency, len(answer.text.split()), tokens)


def summarise(records: list[RequestRecord], elapsed_s: float) -> dict:
    ok = [r for r in records if r.status == "ok"]
    ttft = sorted(r.ttft_s for r in ok if r.ttft_s is not None)
    server_ttft = sorted(r.server_ttft_s for r in ok if r.server_ttft_s is not None)
    latency = sorted(r.latency_s for r in ok)
    errors = [r.error for r in records if r.status == "error"]
    counted = "server" if ok and all(r.tokens is not None for r in ok) else "words"
    return {
        "requests": len(records), "ok": len(ok), "errors": len(errors),
        "declined": sum(r.status == "declined" for r in records),
        "error_samples": sorted(set(errors))[:5], "elapsed_s": round(elapsed_s, 3),
        "requests_per_s": round(len(ok) / elapsed_s, 4) if elapsed_s else 0.0,
        "tokens_per_s": round(sum(_tokens(r, counted) for r in ok) / elapsed_s, 3) if elapsed_s else 0.0,
        "tokens_counted_by": counted,
        "ttft_p50_s": percentile(ttft, 50), "ttft_p95_s": percentile(ttft, 95),
        "server_ttft_p50_s": percentile(server_ttft, 50), "server_ttft_p95_s": percentile(server_ttft, 95),
        "latency_p50_s": percentile(latency, 50), "latency_p95_s": percentile(latency, 95),
        "ttft_s": [round(x, 4) for x in ttft],
    }


def _tokens(record: RequestRecord, counted: str) -> int:
    return record.tokens if counted == "server" else record.words


def percentile(sorted_values: list[float], q: float) -> float | None:
    """The q-th percentile with linear interpolation between ranks (numpy's default method)."""
    if not sorted_values:
        return None
    position = (len(sorted_values) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(sorted_values) - 1)
    value = sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)
    return round(value, 4)


def run_benchmark(targets: list[BenchTarget], index: CourseIndex, embedder: Embedder, settings: Settings,
                  options: BenchOptions, questions: list[str]) -> dict:
    """Measure each target in turn; with two, add each compared metric's ratio B / A."""
    if not 1 <= len(targets) <= 2:
        raise ConfigError("bench compares one or two targets (a second --model or --base-url2)")
    results = [measure_target(t, index, embedder, settings, questions, options) for t in targets]
    report = {"course": index.course_id, "options": asdict(options), "questions": len(questions), "targets": results}
    if len(results) == 2:
        a, b = results
        report["ratio_b_over_a"] = {m: (round(b[m] / a[m], 4) if a.get(m) and b.get(m) is not None else None)
                                    for m in COMPARED}
    return report


def format_report(report: dict) -> str:
    """The targets side by side, one metric a row, with the ratio column when there are two."""
    targets = report["targets"]
    ratio = report.get("ratio_b_over_a", {})
    header = ["metric", *(f"{t['label']}: {t['model']}" for t in targets)] + (["B/A"] if ratio else [])
    rows = [header]
    for metric in ("requests", "ok", "declined", "errors", *COMPARED):
        row = [metric, *(_cell(t.get(metric)) for t in targets)]
        if ratio:
            row.append(_cell(ratio.get(metric)) if metric in ratio else "")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    for t in targets:
        lines += [f"{t['label']} error: {e}" for e in t["error_samples"]]
    return "\n".join(lines)


def _cell(value) -> str:
    return "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def save_report(report: dict, out_dir: Path) -> tuple[Path, Path]:
    """bench.json and bench.png (TTFT distribution per target, and the compared metrics) in `out_dir`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, png_path = out_dir / "bench.json", out_dir / "bench.png"
    json_path.write_text(json.dumps(report, indent=2), encoding="utf-8")
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for t in report["targets"]:
        values = t["ttft_s"]
        if values:
            left.plot(values, [(i + 1) / len(values) for i in range(len(values))], label=f"{t['label']}: {t['model']}")
    left.set(xlabel="time to first token (s)", ylabel="share of requests", title="TTFT, cumulative")
    left.legend(loc="lower right")
    metrics = ["ttft_p50_s", "ttft_p95_s", "requests_per_s", "tokens_per_s"]
    width = 0.8 / len(report["targets"])
    for i, t in enumerate(report["targets"]):
        right.bar([m + i * width for m in range(len(metrics))], [t[m] or 0 for m in metrics], width, label=t["label"])
    right.set_xticks([m + width * (len(report["targets"]) - 1) / 2 for m in range(len(metrics))], metrics)
    right.set(title=f"{report['course']}: concurrency {report['options']['concurrency']}")
    right.legend()
    figure.tight_layout()
    figure.savefig(png_path, dpi=110)
    plt.close(figure)
    return json_path, png_path


def bench_course(settings: Settings, course: str | None, targets: list[BenchTarget], options: BenchOptions,
                 questions_file: Path | None = None, out_dir: Path | None = None) -> tuple[dict, Path, Path]:
    """`tutor bench`: load the course index, run the targets, save bench.json/bench.png."""
    index = settings.open_index(course)
    if questions_file is not None and not Path(questions_file).is_file():
        raise ConfigError(f"--questions {str(questions_file)!r} does not exist; give a JSONL file of eval cases")
    questions = load_questions(index, questions_file)
    report = run_benchmark(targets, index, settings.embedder(), settings, options, questions)
    out_dir = Path(out_dir or settings.data_dir / "bench" / time.strftime("%Y%m%d-%H%M%S"))
    json_path, png_path = save_report(report, out_dir)
    return report, json_path, png_path


def targets_from_flags(base_url: str, models: list[str], base_url2: str | None) -> list[BenchTarget]:
    """A: the first model at --base-url; B: the second model, or the same model at --base-url2."""
    if not models or len(models) > 2:
        raise ConfigError("give --model once (with --base-url2 to compare two servers) or twice (two models)")
    if len(models) == 1 and not base_url2:
        return [BenchTarget("A", base_url, models[0])]
    if len(models) == 1:
        return [BenchTarget("A", base_url, models[0]), BenchTarget("B", base_url2, models[0])]
    return [BenchTarget("A", base_url, models[0]), BenchTarget("B", base_url2 or base_url, models[1])]
