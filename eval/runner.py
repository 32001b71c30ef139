"""Run the tutor over a question set, resumably, then score and report: what `tutor eval` runs.

    run = evaluate("eval/datasets/dl-intro.jsonl", Path("runs/base"), tutor, judge)
    run.metrics["retrieval.recall@5"]["value"]

Cases are answered concurrently (a thread pool; a tqdm bar on stderr). Each finished case is
appended to `<out>/results.jsonl` at once, so a run killed halfway keeps its answers: running again
with the same `--out` answers only the cases missing there (and retries those that raised). The run's
lineage is `<out>/settings.json`; resuming with another backend, model, index build or tutor setting
is refused, because the answers would then mix two systems.

Scoring (judges) always covers every case and is cheap to repeat: the `llm` judge's verdicts are
cached in `<out>/judge-cache.sqlite`.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
import subprocess
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from tqdm import tqdm

from eval.dataset import EvalCase, load_dataset
from eval.judges import Judge
from eval.scoring import CourseMaterial, aggregate, score_results
from ingest.errors import ConfigError, TutorError

RESULTS = "results.jsonl"
SETTINGS = "settings.json"
RETRIEVAL_K = 10
# Settings that change the answers: a run may only be resumed when these are the same.
_LINEAGE_KEYS = ("backend", "tutor", "index", "eval")
_SECRET_SETTINGS = ("llm_api_key", "instructor_password")
# Settings that decide where the work runs, not what an answer is: left out, so a run resumes across them.
_WHERE_IT_RUNS = ("embedding_process",)


@dataclass
class EvalRun:
    out_dir: Path
    settings: dict
    scores: list[dict]
    metrics: dict[str, dict]
    rows: dict[str, dict] = field(default_factory=dict)   # results.jsonl rows by case id
    answered: int = 0           # cases answered by this invocation (the rest came from results.jsonl)
    errors: list[str] = field(default_factory=list)


def read_results(path: Path) -> dict[str, dict]:
    """Result rows by case id (the last row of an id wins). A line cut short by a crash is ignored."""
    rows: dict[str, dict] = {}
    if not path.is_file():
        return rows
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and "id" in row:
            rows[row["id"]] = row
    return rows


def answer_case(tutor, case: EvalCase, mode: str | None = None, retrieval_k: int = RETRIEVAL_K) -> dict:
    """Ask the tutor one question; the row records the answer, the cited passages' text and (for an
    answerable case with gold sources) the top `retrieval_k` retrieved chunks."""
    answer = tutor.ask(case.question, mode=mode)
    chunks = tutor.index.chunks
    passages = {}
    for citation in answer.citations:
        row = tutor.index.row_of.get(citation.chunk_id)
        if row is not None:
            passages[str(citation.n)] = chunks[row].text
    retrieved = []
    if case.answerable and case.gold_sources:
        for hit in tutor.retriever.search(case.question, k=retrieval_k):
            retrieved.append({"chunk_id": hit.chunk.id, "path": hit.chunk.locator.path, "kind": hit.chunk.locator.kind,
                              "label": hit.chunk.locator.label(), "text": hit.chunk.embed_text(),
                              "score": round(hit.score, 6)})
    return {"id": case.id, "question": case.question, "answer": answer.to_dict(), "passages": passages,
            "retrieved": retrieved, "error": None}


def run_cases(tutor, cases: Sequence[EvalCase], out_dir: Path, workers: int = 4, mode: str | None = None,
              progress: bool = True) -> tuple[dict[str, dict], int]:
    """Answer every case not already answered in `<out_dir>/results.jsonl`; returns all rows by id and
    how many cases were answered now. A case that raises a `TutorError` is recorded with its error
    (and retried by the next run); any other exception is a bug and stops the run.

    Latency is measured under this concurrency: use `workers=1` for one student's latency."""
    if workers < 1:
        raise ConfigError(f"--workers must be 1 or more, got {workers}")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / RESULTS
    rows = read_results(path)
    todo = [c for c in cases if c.id not in rows or rows[c.id].get("error")]
    _drop_partial_line(path)
    if todo:
        tutor.retriever.search("warm-up", k=1)  # load the embedding model before any answer is timed
    lock = threading.Lock()

    def work(case: EvalCase) -> dict:
        try:
            row = answer_case(tutor, case, mode)
        except TutorError as exc:
            row = {"id": case.id, "question": case.question, "error": f"{type(exc).__name__}: {exc}"}
        line = json.dumps(row, ensure_ascii=False) + "\n"
        with lock, open(path, "a", encoding="utf-8") as fh:
            fh.write(line)
        return row

    with tqdm(total=len(todo), desc="eval", unit="case", disable=not progress or not todo) as bar, \
            ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(work, case) for case in todo]
        try:
            for future in as_completed(futures):
                row = future.result()
                rows[row["id"]] = row
                bar.update(1)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return rows, len(todo)


def _drop_partial_line(path: Path) -> None:
    """End the file with a newline, so the next append does not extend a line cut short by a crash."""
    if path.is_file() and path.stat().st_size:
        with open(path, "rb+") as fh:
            fh.seek(-1, 2)
            if fh.read(1) != b"\n":
                fh.write(b"\n")


def run_lineage(dataset: Path, cases: Sequence[EvalCase], tutor, judge: Judge, mode: str | None,
                workers: int) -> dict:
    """Everything needed to reproduce or trust a run: dataset, tutor settings, backend, index, judge."""
    settings = tutor.settings.model_dump(mode="json")
    for name in _SECRET_SETTINGS + _WHERE_IT_RUNS:
        settings.pop(name, None)
    manifest = tutor.index.manifest
    return {
        "dataset": {"path": str(dataset), "sha256": hashlib.sha256(dataset.read_bytes()).hexdigest(),
                    "cases": len(cases)},
        "backend": {"name": tutor.backend.name, "model": tutor.backend.model},
        "tutor": settings,
        "index": {"course": manifest.course, "built_at": manifest.built_at, "embedder": manifest.embedder,
                  "chunker": manifest.chunker, "path": str(tutor.index.path)},
        "eval": {"mode": mode or tutor.settings.mode, "retrieval_k": RETRIEVAL_K},
        "judge": judge.describe(),
        "workers": workers,
        "code": {"git_commit": _git_commit(), "python": platform.python_version(),
                 "packages": {name: _version(name) for name in ("course-tutor", "sentence-transformers",
                                                                "transformers", "openai", "faiss-cpu")}},
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def check_resumable(out_dir: Path, lineage: dict) -> None:
    """Refuse to add answers to a run made by another system (see the module docstring)."""
    path = out_dir / SETTINGS
    if not (out_dir / RESULTS).is_file() or not path.is_file():
        return
    previous = json.loads(path.read_text(encoding="utf-8"))
    changed = []
    for key in _LINEAGE_KEYS:
        old, new = previous.get(key, {}), lineage.get(key, {})
        changed += [f"{key}.{name}: {old.get(name)!r} -> {new.get(name)!r}"
                    for name in sorted(set(old) | set(new)) if old.get(name) != new.get(name)]
    if changed:
        raise ConfigError(
            f"{out_dir} holds answers made with other settings ({'; '.join(changed[:4])}); "
            "give a new --out folder, or pass --restart to discard them")


def evaluate(dataset: str | Path, out_dir: Path, tutor, judge: Judge, *, workers: int = 4,
             mode: str | None = None, limit: int | None = None, restart: bool = False,
             progress: bool = True, report: bool = True, cases_matching: str | None = None) -> EvalRun:
    """Answer (resumably), score and report a question set; see the module docstring.

    `cases_matching` (a regular expression searched in each case id) keeps a subset, e.g.
    `^(ho|oos)-`; it is applied before `limit` and recorded in the run's settings."""
    dataset = Path(dataset)
    cases = select_cases(load_dataset(dataset), cases_matching)[: limit if limit and limit > 0 else None]
    out_dir = Path(out_dir)
    lineage = run_lineage(dataset, cases, tutor, judge, mode, workers)
    lineage["dataset"]["cases_matching"] = cases_matching or ""  # not a lineage key: a wider pattern resumes
    if restart and (out_dir / RESULTS).is_file():
        (out_dir / RESULTS).unlink()
    check_resumable(out_dir, lineage)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / SETTINGS).write_text(json.dumps(lineage, indent=1, default=str), encoding="utf-8")
    rows, answered = run_cases(tutor, cases, out_dir, workers=workers, mode=mode, progress=progress)
    scores = score_results(cases, rows, judge, CourseMaterial.from_index(tutor.index))
    run = EvalRun(out_dir=out_dir, settings=lineage, scores=scores, metrics=aggregate(scores, judge.name),
                  rows=rows, answered=answered, errors=[f"{s['id']}: {s['details']['error']}" for s in scores
                                             if "error" in s["details"]])
    if report:
        from eval.report import write_report

        write_report(run)
    return run


def select_cases(cases: Sequence[EvalCase], pattern: str | None) -> list[EvalCase]:
    """The cases whose id matches `pattern` (searched, not anchored); all of them without one."""
    if not pattern:
        return list(cases)
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"--cases {pattern!r} is not a regular expression: {exc}") from None
    chosen = [c for c in cases if compiled.search(c.id)]
    if not chosen:
        raise ConfigError(f"--cases {pattern!r} matches no case id; ids look like {cases[0].id!r}" if cases
                          else "the dataset has no cases")
    return chosen


def _git_commit() -> str:
    try:
        found = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                               cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return ""
    return found.stdout.strip() if found.returncode == 0 else ""


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return ""
