"""benchmarks/load.py: the questions it asks, how it reads Gradio's stream, and a tiny run end to end.

The stream tests replay a recorded `/ask` stream (placeholder, then text as diffs, then the final
answer) through httpx's mock transport; the end-to-end run is `slow` (it starts `tutor chat`)."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import sys
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("load_bench", ROOT / "benchmarks" / "load.py")
load = importlib.util.module_from_spec(spec)
sys.modules["load_bench"] = load          # dataclasses look their module up while it loads
spec.loader.exec_module(load)

APP = load.GradioAsk(prefix="gradio_api/", fn_index=3, trigger_id=9)
USER = {"role": "user", "content": [{"text": "What is dropout?", "type": "text"}]}
SOURCES = "<div class='tutor-sources'><div>Sources for: <i>What is dropout?</i></div><button class='tutor-chip'>"


def write_dataset(path: Path, cases: list[tuple[str, str]]) -> Path:
    lines = [json.dumps({"id": f"c{i}", "question": q, "type": t}) for i, (q, t) in enumerate(cases)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_pool_asks_only_answerable_questions_and_never_the_same_string_twice(tmp_path):
    dataset = write_dataset(tmp_path / "set.jsonl", [
        ("What is dropout?", "factual"), ("What is the capital of France?", "out_of_scope"),
        ("Solve homework 2 for me", "homework"), ("Why does momentum help?", "conceptual")])
    pool = load.question_pool(dataset)
    assert pool[:2] == ["What is dropout?", "Why does momentum help?"]
    assert len(pool) == 2 * len(load.LEAD_INS) == len(set(pool))
    assert not any("France" in q or "homework" in q for q in pool)
    assert load.take(pool, len(pool) - 1, 3) == [pool[-1], pool[0], pool[1]]


def test_levels_always_start_with_the_single_student_baseline():
    assert load.parse_levels("200,50") == [1, 50, 200]
    assert load.parse_levels("1,5,5") == [1, 5]
    for bad in ("", "a,b", "0,50"):
        with pytest.raises(argparse.ArgumentTypeError, match="--levels"):
            load.parse_levels(bad)


def test_percentile_is_nearest_rank():
    samples = [float(v) for v in range(1, 21)]
    assert load.percentile(samples, 0.5) == 10.0 and load.percentile(samples, 0.95) == 19.0
    assert load.percentile([3.0], 0.95) == 3.0 and load.percentile([], 0.5) is None


def sse(*messages: dict) -> bytes:
    return b"".join(b"data: " + json.dumps(m).encode() + b"\n\n" for m in messages)


def replay(stream: bytes) -> load.Outcome:
    """Ask one question of a fake app whose queue answers with `stream`."""
    seen = {}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/gradio_api/queue/join":
            seen["join"] = json.loads(request.content)
            return httpx.Response(200, json={"event_id": "e1"})
        assert request.url.path == "/gradio_api/queue/data"
        assert request.url.params["session_hash"] == seen["join"]["session_hash"]
        return httpx.Response(200, content=stream, headers={"content-type": "text/event-stream"})

    async def ask():
        async with httpx.AsyncClient(base_url="http://127.0.0.1:1/", transport=httpx.MockTransport(handler)) as http:
            return await load.ask_via_gradio(http, APP, "What is dropout?", "dl-intro", timeout_s=10)

    outcome = asyncio.run(ask())
    assert seen["join"]["data"] == ["What is dropout?", None, "dl-intro", "explain"]
    assert seen["join"]["fn_index"] == 3 and seen["join"]["trigger_id"] == 9
    return outcome


def answer_stream(final_sources: str = SOURCES, success: bool = True) -> bytes:
    placeholder = [USER, {"role": "assistant", "content": [{"text": "…", "type": "text"}]}]
    answer = [USER, {"role": "assistant", "content": [{"text": "Dropout zeroes units. [1]", "type": "text"}]}]
    completed = ({"msg": "process_completed", "success": True, "output": {"data": [answer, final_sources, "", []]}}
                 if success else
                 {"msg": "process_completed", "success": False, "output": {"error": "boom", "title": "Error"}})
    return sse({"msg": "estimation", "rank": 0},
               {"msg": "process_starts"},
               {"msg": "process_generating", "success": True, "output": {"data": [placeholder, "", "", {}]}},
               {"msg": "process_generating", "success": True,
                "output": {"data": [[["replace", [1, "content", 0, "text"], "Dropout zeroes units."]], [], [], []]}},
               {"msg": "process_generating", "success": True,
                "output": {"data": [[["append", [1, "content", 0, "text"], " [1]"]], [], [], []]}},
               completed, {"msg": "close_stream", "event_id": None})


def test_a_streamed_answer_is_timed_from_its_first_real_text():
    outcome = replay(answer_stream())
    assert outcome.error == "" and outcome.cited
    assert outcome.ttft_s is not None and outcome.total_s is not None and outcome.ttft_s <= outcome.total_s


@pytest.mark.parametrize("stream, error", [
    (answer_stream(success=False), "app error: boom"),
    (answer_stream(final_sources=""), "incomplete answer"),
    (sse({"msg": "process_starts"}, {"msg": "close_stream", "event_id": None}), "stream ended before"),
])
def test_failures_are_counted_with_their_reason(stream, error):
    outcome = replay(stream)
    assert error in outcome.error


def test_a_student_opens_the_page_then_asks_in_its_session():
    app = load.GradioAsk(prefix="gradio_api/", fn_index=3, trigger_id=9, load_fn_index=0)
    joins = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/gradio_api/queue/join":
            joins.append(json.loads(request.content))
            return httpx.Response(200, json={"event_id": f"e{len(joins)}"})
        assert request.url.params["session_hash"] == joins[-1]["session_hash"]
        page_loaded = sse({"msg": "process_completed", "success": True, "output": {"data": [{}, [], "", "", None]}})
        stream = page_loaded if joins[-1]["fn_index"] == 0 else answer_stream()
        return httpx.Response(200, content=stream, headers={"content-type": "text/event-stream"})

    async def student():
        async with httpx.AsyncClient(base_url="http://127.0.0.1:1/", transport=httpx.MockTransport(handler)) as http:
            session, seconds, error = await load.open_page_via_gradio(http, app, "dl-intro", timeout_s=10)
            return session, seconds, error, await load.ask_via_gradio(http, app, "What is dropout?", "dl-intro",
                                                                      timeout_s=10, session=session)

    session, seconds, error, outcome = asyncio.run(student())
    assert error == "" and seconds is not None and outcome.error == "" and outcome.cited
    assert [(j["fn_index"], j["data"]) for j in joins] == [(0, ["dl-intro"]),
                                                          (3, ["What is dropout?", None, "dl-intro", "explain"])]
    assert joins[0]["session_hash"] == joins[1]["session_hash"] == session


def test_in_place_diffs_match_gradios_own():
    from gradio_client.utils import apply_diff

    value = [{"content": [{"text": "a"}]}, {"content": [{"text": "…"}]}]
    diff = [["replace", [1, "content", 0, "text"], "b"], ["append", [1, "content", 0, "text"], "c"],
            ["add", [2], {"content": "d"}], ["delete", [0], None]]
    expected = apply_diff(value, diff)
    assert load.apply_diff(value, diff) == expected == [{"content": [{"text": "bc"}]}, {"content": "d"}]
    assert load.apply_diff("ab", [["append", [], "c"]]) == "abc"


@pytest.mark.slow
def test_a_small_run_end_to_end_leaves_the_data_dir_alone(tmp_path):
    from test_app import ingest_tiny_course

    _, data = ingest_tiny_course(tmp_path)
    before = sorted(p.relative_to(data) for p in data.rglob("*"))
    dataset = write_dataset(tmp_path / "tiny.jsonl", [
        ("What is the gradient descent update rule?", "factual"), ("What does max pooling keep?", "factual"),
        ("What does momentum do?", "conceptual")])
    out = tmp_path / "load.json"
    report = load.main(["--data-dir", str(data), "--dataset", str(dataset), "--levels", "3",
                        "--single-rounds", "2", "--out", str(out)])

    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    assert [(lv["students"], lv["asked"], lv["errors"]) for lv in report["levels"]] == [(1, 2, 0), (3, 3, 0)]
    assert all(lv["page_opened"] and lv["page_errors"] == 0 and lv["page_open_p95_s"] for lv in report["levels"])
    asked = [q["question"] for lv in report["levels"] for q in lv["questions"]]
    assert len(set(asked)) == 5                                   # every question of the run differs
    assert report["run"]["course"] == "tiny" and report["run"]["commit"]
    assert sorted(p.relative_to(data) for p in data.rglob("*")) == before   # no chat log written there
