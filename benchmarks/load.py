"""A lecture hall at once: N students ask N different questions of the served chat at the same moment.

    .venv/bin/python benchmarks/load.py [--data-dir data] [--levels 1,50,200] [--via gradio,api] [--out runs/load.json]

It starts the real app in its own process (`python -m tutor.cli chat --data-dir COPY --port PORT
--backend extractive`) on 127.0.0.1, on a copy of `<data dir>/index` and `<data dir>/cache` in a
temporary folder (the chat writes its chat log into its data dir; the original is never touched,
and `models/` is not copied: extractive answers do not use it). After one unmeasured warm-up
question, each level sends N students at once, every one a new session asking one question; the
N=1 level (always run, first) asks `--single-rounds` questions one after another and is the
baseline the other levels are compared with. Through the chat, every student of a level first opens
the page, all at once (the page-load event a browser runs, which creates the student's session on the
server: about 3 ms of CPU each, for the 56 components' settings), and then all ask at once; the
page-open times are reported apart. `--no-open-page` skips that, so each question also pays for a
session the server has never seen (what a client that asks without opening the page costs). Per question it measures the time to the first token
(from sending the question to the first streamed chat update whose answer has real text: not the
"…" placeholder nor the "checking the draft" note that `tutor/app_chat.py` shows first), the total
time (to the final update, which fills the sources panel) and errors (an HTTP failure, a Gradio
error, no answer within `--timeout`, or a final answer without text or sources). Per level it
prints TTFT and total p50/p95, answers/s (answered questions over the level's wall time), errors,
and those figures as multiples of the N=1 baseline; `--out` writes them with every question's
record, the git commit and the working tree's changes (the server runs the tree, not the commit).

Questions: the answerable cases of the course's question set (`eval/datasets/<course>.jsonl`,
types other than `out_of_scope` and `homework`, which the tutor declines or answers with hints
only), in file order; when a run needs more, the same questions come back with a short lead-in
("Quick question: …"), so no two questions of a run are the same string until the pool (four
phrasings of each) runs out.

How it drives the app: `--via gradio` (the default), raw HTTP against Gradio's queue API,
the same calls the browser makes: POST `/gradio_api/queue/join` with the `/ask` event's inputs and
a fresh session hash per student, then read that session's SSE stream `/gradio_api/queue/data`
until `process_completed`, applying the streamed diffs to the chat only until its first real text.
All students run as asyncio tasks on one thread over one `httpx.AsyncClient`. Why not
`gradio_client`: one shared `Client` has one session hash, so its concurrent jobs would share one
conversation (each answer would see the others' history), and one `Client` per student costs a
config and API-info download plus a heartbeat thread and a reader thread each. Measured with 50
students on the 2-core machine (client CPU seconds during the burst, while the server used 23-27 s):
raw queue API 0.44 s (under 2 % of all CPU used), one shared `Client` 1.6 s, one `Client` per
student 9.6 s plus 3.1 s to create the 50 clients. Each level prints the client's share of the CPU
(client / (client + server), the "client" column) and the CPU other processes on the machine used
meanwhile ("others"), which says how far to trust the figures on a shared machine. Another way
to ask is one more `async def ask_via_...` in `ASK_VIA`. The server's CPU includes its child
processes (the embedding process, `ingest/embed_process.py`). `--via api` asks through the tutor's
OpenAI-compatible API on the same server (`tutor/api.py`): POST `/v1/chat/completions` with
`stream: true`, as the `openai` client does, TTFT at the first chunk with text, total at `[DONE]`;
the benchmark creates one API key in the copied data folder, so its questions are one student's
(a course with `[quotas]` would refuse most of them). `--via gradio,api` measures both on one
server, one after the other, each with its own warm-up and N=1 baseline. Every
request goes to 127.0.0.1; every question has a deadline and every level a fixed number of
questions, so a run always ends.

Targets (the issue "A lecture hall at once"): 50 students TTFT p50 < 1 s and p95 < 2 s; 200
students with 0 errors and TTFT p95 < 5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from eval.dataset import load_dataset  # noqa: E402
from ingest.store import list_courses  # noqa: E402
from tutor.app.chat import PLACEHOLDER, RESET_NOTE  # noqa: E402

NOT_ASKED = ("out_of_scope", "homework")          # declined, or hints only: not the answer path
LEAD_INS = ("{}", "Quick question: {}", "I missed the lecture. {}", "Sorry if this is basic: {}")
ASK_INPUTS = ["textbox", "state", "dropdown", "radio"]   # tutor/app.py's /ask: question, session, course, mode
TARGETS = {50: {"ttft_p50_s": 1.0, "ttft_p95_s": 2.0}, 200: {"errors": 0, "ttft_p95_s": 5.0}}
CLOCK_TICK_S = 1 / os.sysconf("SC_CLK_TCK")


@dataclass
class Outcome:
    """One question: its times from the moment it was sent, or why it failed."""

    question: str
    ttft_s: float | None = None
    total_s: float | None = None
    error: str = ""
    cited: bool = False


# -- questions ------------------------------------------------------------------------------------

def question_pool(dataset: Path) -> list[str]:
    """The set's answerable questions, then the same with each lead-in: every entry a different string."""
    base = [case.question for case in load_dataset(dataset) if case.type not in NOT_ASKED]
    if not base:
        raise SystemExit(f"{dataset} has no answerable questions (types other than {', '.join(NOT_ASKED)})")
    return [lead_in.format(question) for lead_in in LEAD_INS for question in base]


def take(pool: list[str], start: int, count: int) -> list[str]:
    """`count` questions from `pool` from position `start` on, wrapping round when it runs out."""
    return [pool[(start + i) % len(pool)] for i in range(count)]


# -- asking through Gradio's queue API ------------------------------------------------------------

@dataclass(frozen=True)
class GradioAsk:
    """Where and how to send a question to the app's `/ask` event (read once from its config)."""

    prefix: str           # "gradio_api/", relative to the app's URL
    fn_index: int
    trigger_id: int | None
    load_fn_index: int | None = None    # the page-load event a browser runs when the page opens

    @classmethod
    def discover(cls, base_url: str) -> GradioAsk:
        config = httpx.get(base_url + "config", timeout=30).raise_for_status().json()
        types = {c["id"]: c["type"] for c in config["components"]}
        load = next((dep["id"] for dep in config["dependencies"]
                     if any(target[1] == "load" for target in dep.get("targets", []))), None)
        for dep in config["dependencies"]:
            if dep.get("api_name") == "ask":
                inputs = [types[i] for i in dep["inputs"]]
                if inputs != ASK_INPUTS:
                    raise SystemExit(f"/ask now takes {inputs}, not {ASK_INPUTS}: update ASK_INPUTS and "
                                     "ask_via_gradio in benchmarks/load.py")
                trigger = dep["targets"][0][0] if dep.get("targets") else None
                return cls(config.get("api_prefix", "/gradio_api").strip("/") + "/", dep["id"], trigger, load)
        raise SystemExit(f"{base_url} has no /ask endpoint; is it the tutor's chat?")


def text_of(message: dict) -> str:
    content = message.get("content")
    return content if isinstance(content, str) else "".join(p.get("text", "") for p in content or ())


def has_answer_text(chat: list) -> bool:
    return bool(chat) and chat[-1].get("role") == "assistant" and \
        text_of(chat[-1]).strip() not in ("", PLACEHOLDER, RESET_NOTE)


def apply_diff(value, diff: list):
    """Gradio's streamed update of one output, applied in place (gradio_client copies the value first)."""
    for action, path, new in diff:
        if not path:
            value = new if action == "replace" else value + new
            continue
        target = value
        for key in path[:-1]:
            target = target[key]
        key = path[-1]
        if action == "replace":
            target[key] = new
        elif action == "append":
            target[key] += new
        elif action == "add" and isinstance(target, list):
            target.insert(key, new)
        elif action == "add":
            target[key] = new
        elif action == "delete":
            del target[key]
    return value


async def open_page_via_gradio(http: httpx.AsyncClient, app: GradioAsk, course: str | None,
                               timeout_s: float) -> tuple[str, float | None, str]:
    """A student opens the chat: the page-load event the browser runs (it creates the student's
    session on the server and fills the page). (session hash, seconds it took, error or "")."""
    session, started = uuid.uuid4().hex, time.perf_counter()
    if app.load_fn_index is None:
        return session, None, "the page has no load event"
    try:
        async with asyncio.timeout(timeout_s):
            joined = await http.post(app.prefix + "queue/join", json={
                "data": [course], "fn_index": app.load_fn_index, "trigger_id": None, "session_hash": session,
                "event_data": None})
            joined.raise_for_status()
            async with http.stream("GET", app.prefix + "queue/data", params={"session_hash": session}) as stream:
                stream.raise_for_status()
                async for line in stream.aiter_lines():
                    message = json.loads(line[5:]) if line.startswith("data:") else {}
                    if message.get("msg") == "process_completed":
                        error = "" if message.get("success", True) else f"page load failed: {message.get('output')}"
                        return session, time.perf_counter() - started, error
        return session, None, "the page-load stream ended before it completed"
    except TimeoutError:
        return session, None, f"the page did not load within {timeout_s:g} s"
    except (httpx.HTTPError, ValueError) as exc:
        return session, None, f"{type(exc).__name__} opening the page: {exc}"


async def ask_via_gradio(http: httpx.AsyncClient, app: GradioAsk, question: str, course: str | None,
                         timeout_s: float, session: str | None = None) -> Outcome:
    """One student's question: join the queue (in the session of the page the student opened, or as a
    new session), read its stream to the end."""
    outcome, session = Outcome(question), session or uuid.uuid4().hex
    started = time.perf_counter()
    chat, step = None, "joining the queue"
    try:
        async with asyncio.timeout(timeout_s):
            joined = await http.post(app.prefix + "queue/join", json={
                "data": [question, None, course, "explain"], "fn_index": app.fn_index,
                "trigger_id": app.trigger_id, "session_hash": session, "event_data": None})
            joined.raise_for_status()
            step = "reading the stream"
            async with http.stream("GET", app.prefix + "queue/data", params={"session_hash": session}) as stream:
                stream.raise_for_status()
                async for line in stream.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    # After the first token only the final message matters: skip parsing the rest.
                    if outcome.ttft_s is not None and line.startswith('data: {"msg":"process_generating"'):
                        continue
                    message = json.loads(line[5:])
                    kind = message.get("msg")
                    if kind == "process_generating" and message.get("success", True):
                        update = message["output"]["data"][0]
                        chat = update if chat is None else apply_diff(chat, update)
                        if has_answer_text(chat):
                            outcome.ttft_s = time.perf_counter() - started
                    elif kind == "process_completed":
                        outcome.total_s = time.perf_counter() - started
                        output = message.get("output") or {}
                        if not message.get("success", True):
                            outcome.error = f"app error: {output.get('error') or output.get('title') or output}"
                            return outcome
                        final_chat, sources = output["data"][0], output["data"][1]
                        if not has_answer_text(final_chat) or "Sources for:" not in str(sources):
                            outcome.error = "incomplete answer (no text, or no sources panel)"
                        outcome.cited = "tutor-chip" in str(sources)
                        if outcome.ttft_s is None:                 # the whole answer came in one update
                            outcome.ttft_s = outcome.total_s
                        return outcome
                    elif kind == "close_stream":
                        break
            outcome.error = "the stream ended before the answer was complete"
    except TimeoutError:
        outcome.error = f"no complete answer within {timeout_s:g} s"
    except (httpx.HTTPError, KeyError, IndexError, TypeError, ValueError) as exc:
        outcome.error = (f"{type(exc).__name__} {step} after {time.perf_counter() - started:.0f} s"
                         f"{' (first token seen)' if outcome.ttft_s else ''}: {exc}")
    return outcome


@dataclass(frozen=True)
class ApiAsk:
    """The key and model that `/v1/chat/completions` is asked with."""

    key: str
    model: str

    @classmethod
    def discover(cls, base_url: str, data_dir: Path, course: str | None) -> ApiAsk:
        from tutor.chatlog import ChatLog
        from tutor.keys import ApiKeys

        _, secret = ApiKeys(ChatLog(data_dir / "chatlog.sqlite").engine).create("load-benchmark", course or "*")
        models = httpx.get(base_url + "v1/models", headers={"Authorization": f"Bearer {secret}"}, timeout=30,
                           trust_env=False).raise_for_status().json()["data"]
        if not models:
            raise SystemExit(f"{base_url}v1/models lists no model; is a course indexed?")
        return cls(secret, course or models[0]["id"])


async def ask_via_api(http: httpx.AsyncClient, app: ApiAsk, question: str, course: str | None,
                      timeout_s: float, session: str | None = None) -> Outcome:
    """One client's question through the OpenAI-compatible API, streamed (an API client has no page,
    so no session to open)."""
    outcome, started, final = Outcome(question), time.perf_counter(), None
    try:
        async with asyncio.timeout(timeout_s):
            body = {"model": app.model, "stream": True, "messages": [{"role": "user", "content": question}]}
            async with http.stream("POST", "v1/chat/completions", json=body,
                                   headers={"Authorization": f"Bearer {app.key}"}) as stream:
                if stream.status_code != 200:
                    outcome.error = f"HTTP {stream.status_code}: {(await stream.aread())[:300]!r}"
                    return outcome
                async for line in stream.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    if line.strip() == "data: [DONE]":
                        outcome.total_s = time.perf_counter() - started
                        break
                    chunk = json.loads(line[5:])
                    if "error" in chunk:
                        outcome.error = f"app error: {chunk['error'].get('message')}"
                        return outcome
                    if outcome.ttft_s is None and any(c["delta"].get("content") for c in chunk["choices"]):
                        outcome.ttft_s = time.perf_counter() - started
                    final = chunk.get("tutor", final)
        if outcome.total_s is None or final is None or not final.get("text"):
            outcome.error = "incomplete answer (no [DONE], or no final chunk with the answer)"
        outcome.cited = bool(final and final.get("citations"))
    except TimeoutError:
        outcome.error = f"no complete answer within {timeout_s:g} s"
    except (httpx.HTTPError, KeyError, TypeError, ValueError) as exc:
        outcome.error = f"{type(exc).__name__} after {time.perf_counter() - started:.0f} s: {exc}"
    return outcome


ASK_VIA = {"gradio": (lambda url, data_dir, course: GradioAsk.discover(url), ask_via_gradio),
           "api": (ApiAsk.discover, ask_via_api)}
OPEN_PAGE = {"gradio": open_page_via_gradio}      # how a student of that route opens the page, if it has one


# -- CPU accounting -------------------------------------------------------------------------------

def client_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def process_cpu_s(pid: int) -> float:
    """CPU seconds of `pid` and its live child processes (the server's embedding process is one)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:                     # a child that ended since it was listed
        return 0.0
    total = (int(fields[11]) + int(fields[12])) * CLOCK_TICK_S      # utime, stime (all threads)
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        total += sum(process_cpu_s(int(child)) for child in task.read_text().split())
    return total


def machine_busy_s() -> float:
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) * CLOCK_TICK_S     # all but idle and iowait


# -- levels ---------------------------------------------------------------------------------------

def percentile(samples: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..1); None for no samples."""
    if not samples:
        return None
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


async def run_level(students: int, questions: list[str], base_url: str, app, ask, course: str | None,
                    timeout_s: float, server_pid: int, open_page=None) -> dict:
    """`students` questions at once (or, for one student, one after another); figures and records.

    With `open_page`, every student first opens the page (all at once, not part of the question's
    times), as a browser does before its student can type; the page-open times are reported apart."""
    # No connection is reused: a shared pool hands one student's idle connection to another, which no
    # browser does, and with reuse a first run at 200 students lost 7 questions to connection resets
    # (`ReadError`), most likely uvicorn's 5 s keep-alive closing a pooled connection as it was reused.
    limits = httpx.Limits(max_connections=2 * students + 8, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=httpx.Timeout(timeout_s, connect=30),
                                 trust_env=False) as http:
        pages = []
        if open_page is not None:
            pages = await asyncio.gather(*(open_page(http, app, course, timeout_s) for _ in questions))
        sessions = [page[0] for page in pages] or [None] * len(questions)
        cpu = (client_cpu_s(), process_cpu_s(server_pid), machine_busy_s())
        started = time.perf_counter()
        if students == 1:
            outcomes = [await ask(http, app, q, course, timeout_s, s) for q, s in zip(questions, sessions)]
        else:
            outcomes = await asyncio.gather(*(ask(http, app, q, course, timeout_s, s)
                                              for q, s in zip(questions, sessions)))
        wall = time.perf_counter() - started
        client, server, machine = (client_cpu_s() - cpu[0], process_cpu_s(server_pid) - cpu[1],
                                   machine_busy_s() - cpu[2])
    page_errors = [page[2] for page in pages if page[2]]
    for outcome, page in zip(outcomes, pages):
        if page[2] and not outcome.error:
            outcome.error = page[2]              # a student whose page failed to open counts as a failure
    ok = [o for o in outcomes if not o.error]
    ttft, total = [o.ttft_s for o in ok], [o.total_s for o in ok]
    opened = [page[1] for page in pages if page[1] is not None]
    return {
        "students": students, "page_opened": open_page is not None, "page_errors": len(page_errors),
        "page_open_p50_s": percentile(opened, 0.5), "page_open_p95_s": percentile(opened, 0.95),
        "asked": len(outcomes), "answered": len(ok), "errors": len(outcomes) - len(ok),
        "cited": sum(o.cited for o in ok), "wall_s": wall, "answers_per_s": len(ok) / wall if wall else None,
        "ttft_p50_s": percentile(ttft, 0.5), "ttft_p95_s": percentile(ttft, 0.95),
        "total_p50_s": percentile(total, 0.5), "total_p95_s": percentile(total, 0.95),
        "client_cpu_s": client, "server_cpu_s": server, "other_cpu_s": max(0.0, machine - client - server),
        "client_share": client / (client + server) if client + server else None,
        "error_samples": sorted({o.error for o in outcomes if o.error})[:5],
        "questions": [asdict(o) for o in outcomes],
    }


def compare_with_baseline(levels: list[dict]) -> None:
    """Each level as multiples of the N=1 level of the same `via`."""
    bases = {}
    for level in levels:
        base = bases.setdefault(level.get("via"), level)
        for key in ("ttft_p50_s", "ttft_p95_s", "total_p50_s", "total_p95_s"):
            level[key.replace("_s", "_x")] = (level[key] / base[key] if level[key] and base[key] else None)
        level["targets"] = {key: (level[key] is not None and level[key] <= limit)
                            for key, limit in TARGETS.get(level["students"], {}).items()}


def print_table(levels: list[dict]) -> None:
    def f(value, form=".2f"):
        return "-" if value is None else format(value, form)

    print(f"{'students':>8} {'answered':>9} {'errors':>6} {'TTFT p50':>8} {'p95':>6} {'total p50':>9} {'p95':>6} "
          f"{'answers/s':>9} {'TTFT p50/p95 vs N=1':>19} {'total p50/p95 vs N=1':>20} {'client CPU':>10} "
          f"{'server CPU/answer':>17} {'others CPU':>10}")
    for lv in levels:
        if lv["students"] == 1 and "via" in lv:
            print(f"via {lv['via']}:")
        answered = f"{lv['answered']}/{lv['asked']}"
        ttft_x = f"{f(lv['ttft_p50_x'], '.1f')}x / {f(lv['ttft_p95_x'], '.1f')}x"
        total_x = f"{f(lv['total_p50_x'], '.1f')}x / {f(lv['total_p95_x'], '.1f')}x"
        per_answer = lv["server_cpu_s"] / lv["asked"]
        print(f"{lv['students']:>8} {answered:>9} {lv['errors']:>6} {f(lv['ttft_p50_s']):>8} {f(lv['ttft_p95_s']):>6} "
              f"{f(lv['total_p50_s']):>9} {f(lv['total_p95_s']):>6} {f(lv['answers_per_s']):>9} {ttft_x:>19} "
              f"{total_x:>20} {f(lv['client_share'], '.1%'):>10} {per_answer:>15.2f} s {lv['other_cpu_s']:>8.0f} s")
        if lv.get("page_opened"):
            print(f"{'':>8} each student opened the page first: p50 {f(lv['page_open_p50_s'])} s, "
                  f"p95 {f(lv['page_open_p95_s'])} s, {lv['page_errors']} failed")
        for key, met in lv["targets"].items():
            print(f"{'':>8} target {key} <= {TARGETS[lv['students']][key]:g}: {'met' if met else 'MISSED'}")
        for error in lv["error_samples"]:
            print(f"{'':>8} error: {error}")
    print("client CPU: the benchmark's share of client + server CPU; others CPU: what other processes on the "
          "machine used meanwhile")


# -- the server -----------------------------------------------------------------------------------

def copy_data_dir(data_dir: Path, into: Path) -> Path:
    """The index and embedding cache of `data_dir`, copied (links kept) to `into/data`."""
    if not list_courses(data_dir / "index"):
        raise SystemExit(f"no course is indexed in {data_dir}: run `make ingest` (or `tutor ingest FOLDER`) first")
    copy = into / "data"
    for part in ("index", "cache"):
        if (data_dir / part).is_dir():
            shutil.copytree(data_dir / part, copy / part, symlinks=True)
    return copy


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(data_dir: Path, log_path: Path, start_timeout_s: float) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "tutor.cli", "chat", "--data-dir", str(data_dir), "--port", str(port),
               "--backend", "extractive"]
    env = {**os.environ, "TUTOR_INSTRUCTOR_PASSWORD": "", "TUTOR_HOST": "127.0.0.1", "HF_HUB_OFFLINE": "1",
           "GRADIO_ANALYTICS_ENABLED": "False", "TOKENIZERS_PARALLELISM": "false"}
    with open(log_path, "w") as log:           # a file, not a pipe nobody reads: a full pipe would stall it
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + start_timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"`tutor chat` exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2, trust_env=False).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop_server(process)
    raise SystemExit(f"`tutor chat` did not answer on {url} within {start_timeout_s:g} s:\n"
                     f"{log_path.read_text()[-3000:]}")


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def git_lineage() -> dict:
    def git(*args: str) -> str:
        result = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return result.stdout.strip() if result.returncode == 0 else ""

    changes = git("status", "--porcelain").splitlines()        # the code the server ran, if not the commit
    return {"commit": git("rev-parse", "--short", "HEAD") or "unknown",
            "dirty": any(not line.startswith("??") for line in changes), "changes": changes}


async def warm_up(url: str, app, ask, question: str, course: str | None, timeout_s: float) -> Outcome:
    """One unmeasured question: loads the embedder and the index, as a deployed app has done already."""
    async with httpx.AsyncClient(base_url=url, timeout=timeout_s, trust_env=False) as http:
        return await ask(http, app, question, course, timeout_s)


# -- main -----------------------------------------------------------------------------------------

def parse_levels(text: str) -> list[int]:
    try:
        levels = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"--levels {text!r}: give student counts like 1,50,200") from None
    if not levels or not all(1 <= n <= 1000 for n in levels):
        raise argparse.ArgumentTypeError(f"--levels {text!r}: each count must be between 1 and 1000")
    return levels if levels[0] == 1 else [1, *levels]          # the N=1 baseline always runs


def parse_via(text: str) -> list[str]:
    vias = [v.strip() for v in text.split(",") if v.strip()]
    if not vias or any(v not in ASK_VIA for v in vias):
        raise argparse.ArgumentTypeError(f"--via {text!r}: give one or more of {', '.join(ASK_VIA)}, comma-separated")
    return vias


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("data"), help="indexed data dir (copied, not changed)")
    parser.add_argument("--course", default=None, help="course id (default: the only or first indexed course)")
    parser.add_argument("--dataset", type=Path, default=None,
                        help="question set (default: eval/datasets/<course>.jsonl)")
    parser.add_argument("--levels", type=parse_levels, default=[1, 50, 200],
                        help="students at once, comma-separated (N=1 is always run first)")
    parser.add_argument("--single-rounds", type=int, default=10, help="questions asked one by one at N=1")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds one question may take")
    parser.add_argument("--start-timeout", type=float, default=120.0, help="seconds the app may take to start")
    parser.add_argument("--via", type=parse_via, default=["gradio"],
                        help=f"how the students reach the tutor, comma-separated: {', '.join(ASK_VIA)}")
    parser.add_argument("--open-page", action=argparse.BooleanOptionalAction, default=True,
                        help="each student opens the chat page before the burst (as in a browser: the page-load "
                             "event creates the student's session); --no-open-page sends each question from a "
                             "session the server has never seen, so its creation is part of the question")
    parser.add_argument("--out", type=Path, default=None, help="write the figures and every question's record here")
    args = parser.parse_args(argv)

    courses = list_courses(args.data_dir / "index")
    course = args.course or (courses[0] if courses else None)
    dataset = args.dataset or ROOT / "eval" / "datasets" / f"{course}.jsonl"
    pool = question_pool(dataset)
    run = {**git_lineage(), "via": ",".join(args.via), "data_dir": str(args.data_dir), "course": course,
           "dataset": str(dataset), "skipped_types": list(NOT_ASKED), "pool": len(pool), "levels": args.levels,
           "single_rounds": args.single_rounds, "timeout_s": args.timeout, "cpus": os.cpu_count(),
           "open_page": args.open_page,
           "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    with tempfile.TemporaryDirectory(prefix="tutor-load-") as tmp:
        data = copy_data_dir(args.data_dir, Path(tmp))
        process, url = start_server(data, Path(tmp) / "server.log", args.start_timeout)
        levels, used = [], 0
        try:
            print(f"tutor chat on {url} (pid {process.pid}), course {course}, {len(pool)} distinct questions; "
                  f"commit {run['commit']}{' (dirty tree)' if run['dirty'] else ''}")
            for via in args.via:
                discover, ask = ASK_VIA[via]
                app = discover(url, data, course)
                warm = asyncio.run(warm_up(url, app, ask, pool[-1], course, args.timeout))
                if warm.error:
                    raise SystemExit(f"the warm-up question via {via} failed: {warm.error}")
                for students in args.levels:
                    count = args.single_rounds if students == 1 else students
                    questions = take(pool, used, count)
                    used += count
                    opener = OPEN_PAGE.get(via) if args.open_page else None
                    level = asyncio.run(run_level(students, questions, url, app, ask, course, args.timeout,
                                                  process.pid, opener))
                    levels.append({"via": via, **level})
                    print(f"  via {via}, {students} student(s): {level['answered']}/{level['asked']} answered "
                          f"in {level['wall_s']:.1f} s", flush=True)
        finally:
            stop_server(process)
            if any(level["errors"] for level in levels):          # the server's side of the failures
                run["server_log_tail"] = (Path(tmp) / "server.log").read_text(errors="replace")[-4000:]
    run["repeated_questions"] = max(0, used - len(pool))
    compare_with_baseline(levels)
    print_table(levels)
    report = {"run": run, "levels": levels}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))
        print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
