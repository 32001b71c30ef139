"""LLM backends: the registry, `openai` against a real `transformers serve`, and `local` in-process.

Failure modes (server down, silent server, 5xx, a stream cut short) are played by tiny socket and
HTTP servers in this file, so each test knows exactly what the server did and can count attempts.
Greedy decoding makes the backends oracles for each other: the same model and prompt must produce
the same text in-process and over HTTP.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import tutor.llm as llm
from serving.hf_serve import (
    find_free_port,
    install_into_hf_cache,
    merge_adapter,
    serve_with_transformers,
)
from tutor.llm import (
    BackendConfig,
    ConfigError,
    LLMBackend,
    LLMRequestError,
    LLMUnavailableError,
    backend_names,
    create_backend,
    cut_at_stop,
    register_backend,
)

QUESTION = [
    {"role": "system", "content": "You are a teaching assistant."},
    {"role": "user", "content": "What does dropout do during training?"},
]


# ----- registry and configuration -----


def test_builtin_backends_are_listed_and_unknown_names_rejected():
    assert {"openai", "local", "extractive"} <= set(backend_names())
    with pytest.raises(ConfigError) as caught:
        create_backend("gpt-in-a-box")
    assert "gpt-in-a-box" in str(caught.value)
    assert "openai" in str(caught.value) and "local" in str(caught.value)


def test_a_registered_backend_is_created_by_name(monkeypatch):
    monkeypatch.setattr(llm, "_FACTORIES", dict(llm._FACTORIES))

    class EchoBackend(LLMBackend):
        name = "echo"

        def __init__(self, config):
            self.model = config.model

        def stream(self, messages, **opts):
            yield from messages[-1]["content"].split(" ")

    register_backend("echo")(EchoBackend)
    backend = create_backend("echo", BackendConfig(model="parrot"))
    assert "echo" in backend_names()
    assert backend.model == "parrot"
    assert backend.complete([{"role": "user", "content": "a b c"}]) == "abc"


@pytest.mark.parametrize(
    "field, value", [("timeout_s", 0), ("connect_timeout_s", -1), ("max_retries", -1), ("retry_backoff_s", -0.1)]
)
def test_backend_config_rejects_bad_values_by_name(field, value):
    with pytest.raises(ConfigError, match=field):
        BackendConfig(**{field: value})


@pytest.mark.parametrize(
    "config, named",
    [
        (BackendConfig(model="m"), "TUTOR_LLM_BASE_URL"),
        (BackendConfig(base_url="http://127.0.0.1:1/v1"), "TUTOR_LLM_MODEL"),
    ],
)
def test_openai_backend_names_the_missing_setting(config, named):
    with pytest.raises(ConfigError, match=named):
        create_backend("openai", config)


@pytest.mark.parametrize(
    "pieces, stop, expected",
    [
        (["Dropout zeroes ", "units.<|end|>", "junk"], ["<|end|>"], "Dropout zeroes units."),
        (["Drop", "out", " <", "|e", "nd|", ">junk"], ["<|end|>"], "Dropout "),  # stop split over pieces
        (list("a <b> c"), ["<b>", " c"], "a "),  # the earliest stop wins
        (["<|end|>tail"], ["<|end|>"], ""),
        (["no stop here", " at all"], ["<|end|>"], "no stop here at all"),
        (["almost <|en"], ["<|end|>"], "almost <|en"),  # a held-back prefix is released at the end
        (["unchanged"], None, "unchanged"),
    ],
)
def test_cut_at_stop_drops_the_stop_string_and_what_follows(pieces, stop, expected):
    assert "".join(cut_at_stop(iter(pieces), stop)) == expected


def greedy_answer_and_a_stop_inside_it(backend: LLMBackend) -> tuple[str, str]:
    answer = backend.complete(QUESTION, max_tokens=16, temperature=0)
    word = re.search(r"(?<=.)[A-Za-z]{3,}", answer)
    assert word, f"the tiny model's greedy answer has no inner word to stop at: {answer!r}"
    return answer, word.group()


# ----- openai backend against a real transformers serve -----


def openai_backend(base_url: str, model: str, **overrides) -> LLMBackend:
    return create_backend("openai", BackendConfig(base_url=base_url, model=model, **overrides))


def test_openai_streams_from_transformers_serve(tiny_server):
    backend = openai_backend(tiny_server.base_url, tiny_server.model)
    chunks = list(backend.stream(QUESTION, max_tokens=12, temperature=0))
    assert len(chunks) > 1
    assert all(isinstance(chunk, str) and chunk for chunk in chunks)
    assert "".join(chunks).strip()


def test_openai_matches_the_in_process_model_under_greedy_decoding(tiny_server, tiny_model_dir):
    over_http = openai_backend(tiny_server.base_url, tiny_server.model).complete(QUESTION, max_tokens=16, temperature=0)
    in_process = create_backend("local", BackendConfig(model_path=str(tiny_model_dir))).complete(
        QUESTION, max_tokens=16, temperature=0
    )
    assert over_http == in_process


def test_stop_strings_end_the_answer_before_them_on_both_backends(tiny_server, tiny_model_dir):
    local = create_backend("local", BackendConfig(model_path=str(tiny_model_dir)))
    remote = openai_backend(tiny_server.base_url, tiny_server.model)
    answer, stop = greedy_answer_and_a_stop_inside_it(local)
    expected = answer[: answer.find(stop)]
    assert local.complete(QUESTION, max_tokens=16, temperature=0, stop=[stop]) == expected
    assert remote.complete(QUESTION, max_tokens=16, temperature=0, stop=[stop]) == expected


def test_openai_lists_the_served_models(tiny_server):
    assert openai_backend(tiny_server.base_url, tiny_server.model).list_models() == [tiny_server.model]


def test_unknown_model_is_a_request_error_naming_the_served_ones(tiny_server):
    # transformers serve, pinned to one model, answers any other name with HTTP 400.
    backend = openai_backend(tiny_server.base_url, "course/no-such-model")
    with pytest.raises(LLMRequestError) as caught:
        backend.complete(QUESTION, max_tokens=4)
    message = str(caught.value)
    assert "course/no-such-model" in message and tiny_server.model in message
    assert isinstance(caught.value, ValueError)


@pytest.mark.slow
def test_unpinned_server_answers_an_unknown_model_with_500_reported_as_a_request_error(tiny_model_dir, tmp_path):
    # Serving every model in its cache, transformers serve fails to load an unknown name and answers
    # HTTP 500; the backend sees the name missing from /v1/models and does not retry.
    with serve_with_transformers(tiny_model_dir, "course/tiny", cache_dir=tmp_path, pinned=False) as server:
        with pytest.raises(LLMRequestError, match="does not serve model 'course/other'; it serves: course/tiny"):
            openai_backend(server.base_url, "course/other").complete(QUESTION, max_tokens=4)
        assert openai_backend(server.base_url, "course/tiny").complete(QUESTION, max_tokens=4, temperature=0)


# ----- openai backend failure modes, played by scripted servers -----


def test_server_down_fails_fast_with_the_url_and_the_fix():
    base_url = f"http://127.0.0.1:{find_free_port()}/v1"  # nobody listens there
    backend = openai_backend(base_url, "m", max_retries=2, retry_backoff_s=0.01)
    started = time.monotonic()
    with pytest.raises(LLMUnavailableError) as caught:
        backend.complete(QUESTION)
    assert time.monotonic() - started < 3
    message = str(caught.value)
    assert base_url in message and "connection refused" in message and "tutor serve" in message
    assert isinstance(caught.value, ConnectionError)


class SilentServer:
    """Accepts TCP connections and never answers; counts how many it accepted."""

    def __init__(self):
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.socket.settimeout(0.1)
        self.port = self.socket.getsockname()[1]
        self.connections: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self):
        while not self._stop.is_set():
            try:
                connection, _ = self.socket.accept()
            except TimeoutError:
                continue
            self.connections.append(connection)

    def close(self):
        self._stop.set()
        self._thread.join()
        for connection in self.connections:
            connection.close()
        self.socket.close()


def test_silent_server_times_out_once_without_retrying():
    server = SilentServer()
    try:
        base_url = f"http://127.0.0.1:{server.port}/v1"
        backend = openai_backend(base_url, "m", first_token_timeout_s=1, connect_timeout_s=1, max_retries=2,
                                 retry_backoff_s=0.05)
        started = time.monotonic()
        with pytest.raises(LLMUnavailableError) as caught:
            backend.complete(QUESTION)
        elapsed = time.monotonic() - started
    finally:
        server.close()
    assert len(server.connections) == 1  # a server that hung once would hang again: no retry
    assert 1 <= elapsed < 8
    assert base_url in str(caught.value) and "no answer within 1s" in str(caught.value)


class ScriptedHTTPServer:
    """A local HTTP server whose chat endpoint answers with `script(handler)`; counts its requests."""

    def __init__(self, script):
        outer = self
        self.chat_requests = 0
        self.bodies: list[dict] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                outer.chat_requests += 1
                self.body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                outer.bodies.append(self.body)
                script(self)

            def do_GET(self):
                self.send_response(503)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def sse_chunk(content: str) -> bytes:
    chunk = {
        "id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}],
    }
    return f"data: {json.dumps(chunk)}\n\n".encode()


def answer_with_usage(handler):
    """Two pieces of text, then the usage chunk vLLM sends for `stream_options.include_usage`,
    counting as many tokens as the request's max_tokens (so each caller can tell its own count)."""
    handler.send_response(200)
    handler.send_header("Content-Type", "text/event-stream")
    handler.end_headers()
    handler.wfile.write(sse_chunk("Dropout ") + sse_chunk("zeroes units."))
    usage = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m", "choices": [],
             "usage": {"prompt_tokens": 30, "completion_tokens": handler.body["max_tokens"], "total_tokens": 0}}
    handler.wfile.write(f"data: {json.dumps(usage)}\n\ndata: [DONE]\n\n".encode())


def answer_503(handler):
    body = b'{"error": {"message": "overloaded"}}'
    handler.send_response(503)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def answer_one_chunk_then_hang_up(handler):
    handler.send_response(200)
    handler.send_header("Content-Type", "text/event-stream")
    handler.send_header("Content-Length", "100000")  # promises more than it sends
    handler.end_headers()
    handler.wfile.write(sse_chunk("Dropout "))
    handler.wfile.flush()
    handler.connection.shutdown(socket.SHUT_RDWR)


def answer_error_event(handler):
    # What transformers serve sends when generation fails after the HTTP 200 went out.
    handler.send_response(200)
    handler.send_header("Content-Type", "text/event-stream")
    handler.end_headers()
    handler.wfile.write(b'data: {"error": "CUDA out of memory"}\n\n')


def test_an_error_event_before_any_text_is_reported_without_retrying():
    server = ScriptedHTTPServer(answer_error_event)
    try:
        backend = openai_backend(server.base_url, "m", max_retries=2, retry_backoff_s=0.01)
        with pytest.raises(LLMUnavailableError, match=r"failed before answering \(CUDA out of memory\)"):
            backend.complete(QUESTION)
    finally:
        server.close()
    assert server.chat_requests == 1


def test_the_servers_token_count_reaches_each_thread_that_asked():
    server = ScriptedHTTPServer(answer_with_usage)
    backend = openai_backend(server.base_url, "m")
    counts = {}

    def ask(max_tokens):
        assert backend.complete(QUESTION, max_tokens=max_tokens) == "Dropout zeroes units."
        counts[max_tokens] = backend.last_completion_tokens

    try:
        assert backend.last_completion_tokens is None
        threads = [threading.Thread(target=ask, args=(n,)) for n in (5, 9, 13)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        server.close()
    assert counts == {5: 5, 9: 9, 13: 13}  # one backend, shared: each thread reads its own stream's count
    assert all(body["stream_options"] == {"include_usage": True} for body in server.bodies)


def test_server_errors_are_retried_then_reported_as_unavailable():
    server = ScriptedHTTPServer(answer_503)
    try:
        backend = openai_backend(server.base_url, "m", max_retries=2, retry_backoff_s=0.01)
        with pytest.raises(LLMUnavailableError, match="HTTP 503: overloaded"):
            backend.complete(QUESTION)
    finally:
        server.close()
    assert server.chat_requests == 3


def test_a_stream_cut_after_the_first_text_is_never_retried():
    server = ScriptedHTTPServer(answer_one_chunk_then_hang_up)
    received = []
    try:
        backend = openai_backend(server.base_url, "m", max_retries=2, retry_backoff_s=0.01)
        with pytest.raises(LLMUnavailableError, match="broke off the answer after 8 characters"):
            for text in backend.stream(QUESTION):
                received.append(text)
    finally:
        server.close()
    assert received == ["Dropout "]
    assert server.chat_requests == 1


# ----- local backend -----


def test_local_backend_streams_text(tiny_model_dir):
    backend = create_backend("local", BackendConfig(model_path=str(tiny_model_dir)))
    chunks = list(backend.stream(QUESTION, max_tokens=12, temperature=0))
    assert len(chunks) > 1 and "".join(chunks).strip()
    assert backend.model == tiny_model_dir.name


def test_local_adapter_changes_the_greedy_answer(tiny_model_dir, tiny_adapter_dir):
    base = create_backend("local", BackendConfig(model_path=str(tiny_model_dir)))
    tuned = create_backend("local", BackendConfig(model_path=str(tiny_model_dir), adapter_path=str(tiny_adapter_dir)))
    base_answer = base.complete(QUESTION, max_tokens=12, temperature=0)
    tuned_answer = tuned.complete(QUESTION, max_tokens=12, temperature=0)
    assert tuned_answer.strip() and tuned_answer != base_answer
    assert base.complete(QUESTION, max_tokens=12, temperature=0) == base_answer  # greedy is reproducible


def test_local_model_is_loaded_once_per_paths(tiny_model_dir):
    from tutor.llm.local import load_model

    first = load_model(tiny_model_dir, None)
    assert load_model(tiny_model_dir, None) is first


def test_local_generation_stops_when_the_reader_stops(tiny_model_dir):
    backend = create_backend("local", BackendConfig(model_path=str(tiny_model_dir)))
    stream = backend.stream(QUESTION, max_tokens=100_000, temperature=0)
    next(stream)
    started = time.monotonic()
    stream.close()
    assert time.monotonic() - started < 5
    assert not any(thread.name == "local-llm-generate" for thread in threading.enumerate())


@pytest.mark.parametrize("field", ["model_path", "adapter_path"])
def test_local_backend_names_a_missing_folder(tiny_model_dir, tmp_path, field):
    settings = {"model_path": str(tiny_model_dir), field: str(tmp_path / "missing")}
    with pytest.raises(ConfigError, match="missing"):
        create_backend("local", BackendConfig(**settings))


# ----- serving helpers -----


def test_install_into_hf_cache_is_a_hub_cache_entry(tiny_model_dir, tmp_path):
    from huggingface_hub import scan_cache_dir

    snapshot = install_into_hf_cache(tiny_model_dir, "course/tiny", tmp_path)
    assert install_into_hf_cache(tiny_model_dir, "course/tiny", tmp_path) == snapshot  # unchanged: same revision
    repo_dir = tmp_path / "models--course--tiny"
    assert (repo_dir / "refs" / "main").read_text() == snapshot.name
    assert sorted(p.name for p in snapshot.iterdir()) == sorted(p.name for p in tiny_model_dir.iterdir())
    (repo,) = scan_cache_dir(tmp_path).repos
    assert repo.repo_id == "course/tiny" and set(repo.refs) == {"main"}


def test_install_rejects_a_name_that_is_not_owner_slash_name(tiny_model_dir, tmp_path):
    with pytest.raises(ConfigError, match="owner/name"):
        install_into_hf_cache(tiny_model_dir, "tiny", tmp_path)


@pytest.mark.slow
def test_merged_adapter_served_over_http_answers_like_the_adapter_in_process(
    tiny_model_dir, tiny_adapter_dir, tmp_path
):
    merged_dir = merge_adapter(tiny_model_dir, tiny_adapter_dir, tmp_path / "merged")
    in_process = create_backend(
        "local", BackendConfig(model_path=str(tiny_model_dir), adapter_path=str(tiny_adapter_dir))
    ).complete(QUESTION, max_tokens=12, temperature=0)
    with serve_with_transformers(merged_dir, "course/tiny-tuned", cache_dir=tmp_path / "cache") as server:
        over_http = openai_backend(server.base_url, server.model).complete(QUESTION, max_tokens=12, temperature=0)
    assert over_http == in_process
