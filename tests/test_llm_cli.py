"""The `llm` command-line tool as a client of the tutor's API: `extra-openai-models.yaml` names the
tutor as an OpenAI-compatible server, and `llm` prints the cited answer, streamed and not.

`llm` runs in its own process with a private user folder (`LLM_USER_PATH`: the model list, the key,
its log database) and no plugins (`LLM_LOAD_PLUGINS=''`: an installed plugin may fail to import)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from test_api import LINK, QUESTION, api, oracle  # noqa: F401  (api: the served app fixture)

LLM = Path(sys.executable).with_name("llm")


@pytest.fixture
def llm_home(api, tmp_path):
    """An `llm` user folder whose model `tutor-tiny` is the tiny course on the served app."""
    url, _, keys = api
    if not LLM.exists():
        pytest.skip(f"the `llm` command is not installed beside {sys.executable} (pip install llm)")
    _, secret = keys.create("llm-cli", "tiny")
    (tmp_path / "extra-openai-models.yaml").write_text(
        f"- model_id: tutor-tiny\n  model_name: tiny\n  api_base: \"{url}v1\"\n  api_key_name: tutor\n")
    (tmp_path / "keys.json").write_text(json.dumps({"tutor": secret}))
    return tmp_path


def run_llm(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LLM_USER_PATH": str(home), "LLM_LOAD_PLUGINS": ""}
    return subprocess.run([str(LLM), *args], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("stream", [True, False])
def test_llm_prints_the_cited_answer(api, llm_home, stream):
    url, settings, _ = api
    done = run_llm(llm_home, "-m", "tutor-tiny", *([] if stream else ["--no-stream"]), QUESTION)
    assert done.returncode == 0, done.stderr
    expected = oracle(settings, QUESTION)
    text, _, footer = done.stdout.partition("\n\n---\n")
    assert text.split() == expected.text.split() and "[1]" in text
    assert f"- [1] book/01-gradient-descent.md, § Gradient descent > The update rule: {url}{LINK}" in footer


def test_llm_lists_the_tutor_model_and_reports_a_bad_key(api, llm_home):
    assert "tutor-tiny" in run_llm(llm_home, "models", "list").stdout
    (llm_home / "keys.json").write_text(json.dumps({"tutor": "tutor-revoked-or-wrong"}))
    done = run_llm(llm_home, "-m", "tutor-tiny", QUESTION)
    assert done.returncode != 0 and "unknown or was revoked" in done.stderr
