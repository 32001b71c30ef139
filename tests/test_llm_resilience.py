"""A failing LLM server never stalls students: timeouts, the circuit breaker, 4xx fallbacks, the deadline.

Every server here is real (a raw socket, or a small HTTP server in a thread), so each test knows
exactly what the server did; the tutor runs end to end on the small generated course. The time
bounds are the generous ones the tutor promises ("an answer within 10 s"), never tight ones.
"""

from __future__ import annotations

import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from course_fixtures import ingest_small_course, shared_embedder
from test_llm_backends import QUESTION, SilentServer, sse_chunk

from serving.hf_serve import find_free_port
from tutor.answer import CUT_SHORT_NOTICE, MODEL_DOWN_NOTICE, MODEL_REFUSED_NOTICE, Tutor, retrieval_query
from tutor.llm import BackendConfig, LLMUnavailableError, create_backend, llm_status
from tutor.llm.breaker import reset_breakers
from tutor.settings import load_settings

ASK = "What does momentum do in gradient descent?"
CONTEXT_TOO_LONG = ("This model's maximum context length is 4096 tokens. However, you requested 5210 tokens "
                    "(4698 in the messages, 512 in the completion). Please reduce the length of the messages.")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return ingest_small_course(tmp_path_factory.mktemp("resilience"))


@pytest.fixture(autouse=True)
def fresh_breakers():
    reset_breakers()
    yield
    reset_breakers()


def make_tutor(data_dir, base_url: str, **settings) -> Tutor:
    settings = {"llm_first_token_timeout_s": 2, "llm_connect_timeout_s": 1, **settings}
    return Tutor.from_settings(load_settings(data_dir=data_dir, llm_backend="openai", llm_base_url=base_url,
                                             llm_model="m", **settings), embedder=shared_embedder())


def markers(text: str) -> set[int]:
    return {int(n) for n in re.findall(r"\[(\d+)\]", text)}


def source_numbers(body: dict) -> list[int]:
    """The [n] headers of the sources in a chat request's prompt."""
    return [int(n) for n in re.findall(r"^\[(\d+)\] ", body["messages"][-1]["content"], re.M)]


def assert_plain(notice: str) -> None:
    assert notice and "http" not in notice.lower() and "tutor serve" not in notice
    assert not re.search(r"\d{2,}", notice)  # no port, no address


class CourseModelServer:
    """A small OpenAI-style server: GET /v1/models lists model "m"; POST answers with `script(handler)`.

    `hang()` makes it accept requests and never answer (until `answer_with` or `close`)."""

    def __init__(self, script=None):
        outer = self
        self.script = script
        self.hanging = script is None
        self.released = threading.Event()
        self.bodies: list[dict] = []
        self.hung_requests = 0
        self.probes = 0

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if outer.hanging:
                    outer.hung_requests += 1
                    outer.released.wait(30)
                    return  # closes the connection with no reply
                outer.bodies.append(body)
                self.body = body
                outer.script(self)

            def do_GET(self):
                if outer.hanging:
                    outer.released.wait(30)
                    return
                outer.probes += 1
                send_json(self, 200, {"object": "list", "data": [
                    {"id": "m", "object": "model", "created": 0, "owned_by": "course"}]})

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def answer_with(self, script) -> None:
        self.script, self.hanging = script, False
        self.released.set()

    def close(self) -> None:
        self.released.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def send_json(handler, status: int, payload: dict) -> None:
    body = json.dumps(payload).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def reject(message: str):
    def script(handler):
        send_json(handler, 400, {"error": {"message": message, "type": "BadRequestError", "code": 400}})
    return script


def stream_text(*pieces: str):
    def script(handler):
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.end_headers()
        handler.wfile.write(b"".join(sse_chunk(p) for p in pieces) + b"data: [DONE]\n\n")
    return script


def dribble_forever(handler):
    handler.send_response(200)
    handler.send_header("Content-Type", "text/event-stream")
    handler.end_headers()
    try:
        while True:
            handler.wfile.write(sse_chunk("more "))
            handler.wfile.flush()
            time.sleep(0.1)
    except OSError:  # the client hung up
        pass


def wait_for_state(state: str, within_s: float = 10.0) -> dict:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        (status,) = llm_status()
        if status["state"] == state:
            return status
        time.sleep(0.05)
    raise AssertionError(f"the breaker did not become {state!r} within {within_s}s: {llm_status()}")


# ----- a hung server: one wait, then no more -----


def test_a_silent_server_costs_one_wait_then_questions_skip_it(data_dir):
    server = SilentServer()
    try:
        base_url = f"http://127.0.0.1:{server.port}/v1"
        # no probe during the test, so every connection the server counts comes from a question
        tutor = make_tutor(data_dir, base_url, llm_probe_interval_s=600)
        started = time.monotonic()
        answer = tutor.ask(ASK)
        assert time.monotonic() - started < 10
        assert answer.backend == "extractive" and answer.citations and "velocity" in answer.text
        assert answer.notice == MODEL_DOWN_NOTICE
        assert_plain(answer.notice)
        (status,) = llm_status()
        assert status["base_url"] == base_url and status["state"] == "open"
        assert "no answer within 2s" in status["last_error"] and status["last_error_at"] >= status["since"]
        connections = len(server.connections)

        started = time.monotonic()
        with ThreadPoolExecutor(10) as pool:
            answers = list(pool.map(lambda _: tutor.ask(ASK), range(10)))
        assert time.monotonic() - started < 10
        assert all(a.backend == "extractive" and a.citations and a.notice == MODEL_DOWN_NOTICE for a in answers)
        assert len(server.connections) == connections  # the open breaker sent nothing to the server
    finally:
        server.close()


def test_the_breaker_closes_when_a_probe_finds_the_server_back(data_dir):
    server = CourseModelServer()  # hangs for now
    try:
        tutor = make_tutor(data_dir, server.base_url, llm_first_token_timeout_s=1, llm_probe_interval_s=0.2)
        assert tutor.ask(ASK).backend == "extractive"
        assert llm_status()[0]["state"] == "open"
        assert tutor.ask(ASK).backend == "extractive"  # still down: answered without asking the server
        assert server.hung_requests == 1

        server.answer_with(stream_text("Momentum keeps a running ", "velocity of past gradients [1]."))
        status = wait_for_state("closed")
        assert server.probes >= 1 and status["last_error"]  # the last failure is still on record
        answer = tutor.ask(ASK)
    finally:
        server.close()
    assert answer.backend == "openai" and answer.notice == ""
    assert answer.text.startswith("Momentum keeps a running velocity") and markers(answer.text) == {1}
    assert len(server.bodies) == 1


def test_a_server_that_is_down_for_one_backend_is_down_for_all():
    base_url = f"http://127.0.0.1:{find_free_port()}/v1"  # refuses connections
    config = BackendConfig(base_url=base_url, model="m", max_retries=0, probe_interval_s=600)
    with pytest.raises(LLMUnavailableError, match="connection refused"):
        create_backend("openai", config).complete(QUESTION)
    with pytest.raises(LLMUnavailableError, match="marked down .*connection refused"):
        create_backend("openai", config).complete(QUESTION)  # another backend, same server: no new attempt
    assert [s["state"] for s in llm_status()] == ["open"]


def test_refused_connections_are_retried_only_within_a_few_seconds():
    backend = create_backend("openai", BackendConfig(
        base_url=f"http://127.0.0.1:{find_free_port()}/v1", model="m", max_retries=10, retry_backoff_s=0.5))
    started = time.monotonic()
    with pytest.raises(LLMUnavailableError) as caught:
        backend.complete(QUESTION)
    assert time.monotonic() - started < 10
    attempts = int(re.search(r"after (\d+) attempts", str(caught.value)).group(1))
    assert 2 <= attempts < 11  # backoff 0.5, 1, 2, then 4 s would pass the retry window


# ----- the server answers 4xx -----


def test_a_prompt_too_long_is_retried_once_with_half_the_sources_then_quoted(data_dir):
    server = CourseModelServer(reject(CONTEXT_TOO_LONG))
    try:
        answer = make_tutor(data_dir, server.base_url, top_k=4).ask(ASK)
    finally:
        server.close()
    first, second = server.bodies
    assert source_numbers(first) == [1, 2, 3, 4] and source_numbers(second) == [1, 2]
    assert len(second["messages"][-1]["content"]) < len(first["messages"][-1]["content"])
    assert answer.backend == "extractive" and answer.citations and answer.notice == MODEL_REFUSED_NOTICE
    assert_plain(answer.notice)
    assert markers(answer.text) == {c.n for c in answer.citations}
    assert llm_status()[0]["state"] == "closed"  # the server answered: it is not down


def test_the_shorter_prompt_is_answered_and_cites_only_its_own_sources(data_dir):
    # The model cites [2], which the short prompt had, and [4], which only the long one had.
    fits = stream_text("Momentum keeps a running velocity [2] and damps oscillation [4].")

    def script(handler):
        if len(source_numbers(handler.body)) > 2:
            reject("Input prompt (5210 tokens) is too long and exceeds limit of 4096")(handler)
        else:
            fits(handler)

    server = CourseModelServer(script)
    tutor = make_tutor(data_dir, server.base_url, top_k=5)
    try:
        answer = tutor.ask(ASK)
    finally:
        server.close()
    assert [source_numbers(b) for b in server.bodies] == [[1, 2, 3, 4, 5], [1, 2]]
    assert answer.backend == "openai" and answer.notice == ""
    assert answer.text.startswith("Momentum keeps a running velocity [1]") and markers(answer.text) == {1}
    second_source = tutor.retriever.search(retrieval_query(ASK, []), k=5)[1].chunk
    assert [c.chunk_id for c in answer.citations] == [second_source.id]


def test_a_request_error_not_about_the_context_falls_back_at_once(data_dir):
    server = CourseModelServer(reject("'stop' must be a list of at most 4 strings"))
    try:
        answer = make_tutor(data_dir, server.base_url).ask(ASK)
    finally:
        server.close()
    assert len(server.bodies) == 1
    assert answer.backend == "extractive" and answer.citations and answer.notice == MODEL_REFUSED_NOTICE
    assert llm_status()[0]["state"] == "closed"


# ----- the whole answer's deadline -----


def test_the_deadline_cuts_a_server_that_never_stops(data_dir):
    server = CourseModelServer(dribble_forever)
    try:
        started = time.monotonic()
        answer = make_tutor(data_dir, server.base_url, llm_timeout_s=1.5).ask(ASK)
        elapsed = time.monotonic() - started
        backend = create_backend("openai", BackendConfig(base_url=server.base_url, model="m", timeout_s=1))
        received = []
        with pytest.raises(LLMUnavailableError, match="cut off after .* longer than 1s"):
            for text in backend.stream(QUESTION):
                received.append(text)
    finally:
        server.close()
    assert elapsed < 10
    assert answer.backend == "openai" and answer.text.startswith("more more") and answer.notice == CUT_SHORT_NOTICE
    assert_plain(answer.notice)
    assert received and set(received) <= {"more "}
    assert llm_status()[0]["state"] == "closed"  # the server answered: slow, not down
