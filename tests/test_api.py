"""The tutor's OpenAI-compatible API with a real client: the official `openai` library against the app
served on a free loopback port (the chat and the API on one port), answering a tiny course extractively.

The oracle for an answer is the tutor itself: the API's text before its footer must be exactly what
`Tutor.ask` answers to the same question and history."""

from __future__ import annotations

import re
import time

import httpx
import pytest

from test_app import write_tiny_course

QUOTAS = "\n[quotas]\nquestions_per_hour = 4\nconcurrent_answers_per_key = 2\n"
QUESTION = "What is the gradient descent update rule?"
LINK = "course-file/tiny/book/01-gradient-descent.md#the-update-rule"


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """(base URL, settings, ApiKeys) of the chat app, with the API beside it, serving the tiny course."""
    from course_fixtures import shared_embedder

    from ingest.pipeline import IngestOptions, ingest_course
    from tutor.app import build_app, serve_in_thread
    from tutor.chatlog import ChatLog
    from tutor.keys import ApiKeys
    from tutor.settings import load_settings

    tmp = tmp_path_factory.mktemp("api")
    course = write_tiny_course(tmp / "course")
    with open(course / "course.toml", "a") as fh:
        fh.write(QUOTAS)
    ingest_course(course, IngestOptions(data_dir=tmp / "data"), embedder=shared_embedder())
    settings = load_settings(data_dir=tmp / "data", llm_backend="extractive", course="tiny")
    with serve_in_thread(build_app(settings)) as url:
        yield url, settings, ApiKeys(ChatLog.from_settings(settings).engine)


def openai_client(url: str, key: str):
    from openai import OpenAI

    return OpenAI(base_url=url + "v1", api_key=key, max_retries=0, timeout=120)


@pytest.fixture
def key(api, request):
    """A fresh key (and so a fresh quota) per test, owned by the test's name."""
    _, _, keys = api
    key, secret = keys.create(request.node.name[:60], "tiny")
    return key, secret


def oracle(settings, question: str, history=(), mode: str = "explain"):
    from course_fixtures import shared_embedder

    from tutor.answer import Tutor

    return Tutor.from_settings(settings, course="tiny", embedder=shared_embedder()).ask(
        question, history=list(history), mode=mode)


def split_footer(content: str) -> tuple[str, str]:
    text, _, footer = content.partition("\n\n---\n")
    return text, footer


def chat_rows(settings, owner: str) -> list[dict]:
    from tutor.chatlog import ChatLog

    return [c for c in ChatLog.from_settings(settings).chats("tiny", limit=1000) if c["session"] == owner]


def test_models_are_the_courses_and_their_socratic_mode(api, key):
    url, _, keys = api
    assert [m.id for m in openai_client(url, key[1]).models.list()] == ["tiny", "tiny:socratic"]
    assert openai_client(url, key[1]).models.retrieve("tiny:socratic").owned_by == "course-tutor/tiny"
    _, elsewhere = keys.create("astronomer", "astro")
    assert [m.id for m in openai_client(url, elsewhere).models.list()] == []


def test_an_answer_has_the_tutors_text_a_source_list_and_the_structured_extension(api, key):
    url, settings, _ = api
    reply = openai_client(url, key[1]).chat.completions.create(
        model="tiny", messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": QUESTION}])
    expected = oracle(settings, QUESTION)
    content = reply.choices[0].message.content
    text, footer = split_footer(content)
    assert text == expected.text and "[1]" in text and reply.choices[0].finish_reason == "stop"
    assert reply.model == "tiny" and reply.object == "chat.completion"
    sources = footer.split("Sources:\n", 1)[1].split("\n\n")[0].splitlines()
    assert len(sources) == len(expected.citations)
    assert sources[0] == f"- [1] book/01-gradient-descent.md, § Gradient descent > The update rule: {url}{LINK}"
    assert "Demos:\n- Gradient descent demo: https://colab.example.org/tiny/notebooks/01-gradient-descent.ipynb" \
        in footer

    tutor = reply.model_extra["tutor"]
    assert tutor["text"] == expected.text and tutor["refused"] is None and tutor["mode"] == "explain"
    assert [c["chunk_id"] for c in tutor["citations"]] == [c.chunk_id for c in expected.citations]
    assert tutor["citations"][0]["link"] == url + LINK
    assert httpx.get(tutor["citations"][0]["link"]).status_code == 200          # the deep link opens
    logged, = chat_rows(settings, key[0].owner)
    assert (logged["id"], logged["question"], logged["answer"], logged["api_key_id"]) == (
        tutor["chat_id"], QUESTION, expected.text, key[0].id)


def test_a_stream_carries_the_same_reply_and_ends_with_the_extension(api, key):
    url, settings, _ = api
    client = openai_client(url, key[1])
    messages = [{"role": "user", "content": QUESTION}]
    chunks = list(client.chat.completions.create(model="tiny", messages=messages, stream=True,
                                                 stream_options={"include_usage": True}))
    usage = chunks.pop()                       # asked for: a last chunk with usage and no choices
    assert usage.choices == [] and usage.usage.total_tokens == 0
    whole = client.chat.completions.create(model="tiny", messages=messages)

    assert chunks[0].choices[0].delta.role == "assistant"
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks)
    # The stream is the text as it was written: the same words, spacing not yet tidied.
    assert streamed.split() == whole.choices[0].message.content.split()
    assert [c.choices[0].finish_reason for c in chunks].count("stop") == 1 == (chunks[-1].choices[0].finish_reason
                                                                               == "stop")
    final = chunks[-1].model_extra["tutor"]
    assert final["text"] == whole.model_extra["tutor"]["text"] == split_footer(streamed)[0].strip()
    assert final["citations"][0]["link"].endswith(LINK) and len({c.id for c in chunks}) == 1
    assert len(chat_rows(settings, key[0].owner)) == 2


def test_history_comes_from_the_messages(api, key):
    url, settings, _ = api
    client = openai_client(url, key[1])
    first_q, follow_up = "What does momentum do in gradient descent?", "Why does it help?"
    first = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": first_q}])
    first_reply = first.choices[0].message.content
    reply = client.chat.completions.create(model="tiny", messages=[
        {"role": "user", "content": first_q}, {"role": "assistant", "content": first_reply},
        {"role": "user", "content": [{"type": "text", "text": follow_up}]}])
    # The footer the client sent back is not part of the remembered answer.
    expected = oracle(settings, follow_up, history=[(first_q, first.model_extra["tutor"]["text"])])
    assert split_footer(reply.choices[0].message.content)[0] == expected.text
    assert any("Momentum" in c["locator"].get("section", "") for c in reply.model_extra["tutor"]["citations"])
    assert expected.text != oracle(settings, follow_up).text                    # the history mattered


def test_the_socratic_model_guides_with_questions(api, key):
    url, _, _ = api
    reply = openai_client(url, key[1]).chat.completions.create(
        model="tiny:socratic", messages=[{"role": "user", "content": "What does max pooling keep?"}])
    assert reply.choices[0].message.content.startswith("Let's work it out together")
    assert reply.model_extra["tutor"]["mode"] == "socratic"


def test_no_key_a_wrong_key_and_a_revoked_key_get_401(api, key):
    import openai

    url, _, keys = api
    bare = httpx.post(url + "v1/chat/completions", json={"model": "tiny", "messages": []})
    assert bare.status_code == 401 and bare.headers["www-authenticate"] == "Bearer"
    assert bare.json()["error"]["code"] == "invalid_api_key" and "tutor keys create" in bare.json()["error"]["message"]
    for secret in ("tutor-not-a-key", key[1]):
        if secret == key[1]:
            keys.revoke(key[0].id)
        with pytest.raises(openai.AuthenticationError) as refused:
            openai_client(url, secret).chat.completions.create(
                model="tiny", messages=[{"role": "user", "content": QUESTION}])
        assert refused.value.status_code == 401 and "unknown or was revoked" in refused.value.message
    with pytest.raises(openai.AuthenticationError):
        openai_client(url, key[1]).models.list()


def test_over_the_hourly_quota_is_429_with_retry_after_and_is_not_logged(api, key):
    import openai

    url, settings, _ = api
    client = openai_client(url, key[1])
    for n in range(4):
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": f"{QUESTION} ({n})"}])
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": QUESTION}], stream=True)
    error = refused.value
    assert error.status_code == 429 and 3500 < int(error.response.headers["retry-after"]) <= 3600
    assert error.body["code"] == "questions_per_hour" and error.body["type"] == "rate_limit_error"
    assert re.search(r"you can ask again (tomorrow )?at \d\d:\d\d\.$", error.body["message"])
    assert len(chat_rows(settings, key[0].owner)) == 4


def test_too_many_answers_at_once_on_one_key_is_429(api, key):
    import openai

    from ingest.course import Quotas
    from tutor.quotas import QuotaBook

    url, _, keys = api
    book = QuotaBook(keys.engine)
    running = [book.admit(f"student{i}", "tiny", Quotas(concurrent_answers_per_key=2), api_key_id=key[0].id)
               for i in range(2)]                          # two answers in progress on this key (any replica)
    client = openai_client(url, key[1])
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": QUESTION}])
    assert refused.value.response.headers["retry-after"] == "1"
    assert refused.value.body["code"] == "concurrent_answers_per_key"
    running[0].finish()
    assert client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": QUESTION}]).choices
    running[1].finish()


@pytest.mark.parametrize("body, status, code", [
    ({"model": "tiny", "messages": [{"role": "user", "content": QUESTION}], "n": 2}, 400, "unsupported_value"),
    ({"model": "tiny", "messages": [{"role": "assistant", "content": "hi"}]}, 400, "invalid_messages"),
    ({"model": "tiny", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
     400, "unsupported_content"),
    ({"model": "tiny", "messages": [{"role": "user", "content": "x" * 2001}]}, 400, "question_too_long"),
    ({"messages": [{"role": "user", "content": QUESTION}]}, 400, "invalid_request"),
    (b"{not json", 400, "invalid_request"),
    ({"model": "geology", "messages": [{"role": "user", "content": QUESTION}]}, 404, "model_not_found"),
])
def test_bad_requests_get_openai_shaped_errors(api, key, body, status, code):
    url, _, _ = api
    headers = {"Authorization": f"Bearer {key[1]}"}
    sent = httpx.post(url + "v1/chat/completions", headers=headers,
                      **({"content": body} if isinstance(body, bytes) else {"json": body}))
    assert sent.status_code == status
    error = sent.json()["error"]
    assert error["code"] == code and set(error) == {"message", "type", "param", "code"}
    assert "Traceback" not in sent.text


def test_a_model_outside_the_keys_course_and_an_unknown_endpoint_are_404(api):
    import openai

    url, _, keys = api
    _, secret = keys.create("astronomer", "astro")
    with pytest.raises(openai.NotFoundError, match="not open to this key"):
        openai_client(url, secret).chat.completions.create(model="tiny", messages=[{"role": "user", "content": "q"}])
    unknown = httpx.post(url + "v1/embeddings", headers={"Authorization": f"Bearer {secret}"}, json={})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknown_url"


def test_the_chat_page_says_when_a_student_can_ask_again(api):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    url, _, _ = api
    student = Client(url, verbose=False, httpx_kwargs={"timeout": 120})
    for n in range(4):
        student.predict(f"What does max pooling keep? ({n})", "tiny", "explain", api_name="/ask")
    with pytest.raises(AppError, match=r"4 questions in the last hour.*you can ask again (tomorrow )?at \d\d:\d\d"):
        student.predict("What does max pooling keep?", "tiny", "explain", api_name="/ask")
    other = Client(url, verbose=False, httpx_kwargs={"timeout": 120})       # another session: its own count
    assert other.predict("What does max pooling keep?", "tiny", "explain", api_name="/ask")


def test_tutor_api_serves_the_api_alone(api, key):
    from tutor.cli.service import build_api_app
    from tutor.app import serve_in_thread

    _, settings, _ = api
    started = time.perf_counter()
    with serve_in_thread(build_api_app(settings)) as url:
        client = openai_client(url, key[1])
        assert [m.id for m in client.models.list()] == ["tiny", "tiny:socratic"]
        reply = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": QUESTION}])
        assert f"{url}{LINK}" in reply.choices[0].message.content
        assert httpx.get(url + LINK).status_code == 200
        assert httpx.get(url).status_code == 404                            # no chat page
    assert time.perf_counter() - started < 120
