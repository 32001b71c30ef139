"""Settings: one set of defaults, bad values refused with the fix, the data folder's layout and each
part's config built in one place."""

from __future__ import annotations

import pytest

from ingest import defaults
from ingest.errors import ConfigError, CourseNotFoundError
from ingest.pipeline import IngestOptions
import tutor.llm
from tutor.llm import BackendConfig, LLMBackend
from tutor.retrieve import Retriever
from tutor.settings import load_settings


def test_ingest_defaults_are_the_settings_defaults():
    settings, options = load_settings(), IngestOptions(data_dir="data")
    for name in ("chunk_tokens", "chunk_overlap", "max_file_mb", "embedding_backend", "hnsw_threshold"):
        assert getattr(settings.ingest_options(), name) == getattr(options, name) == getattr(settings, name)
    assert settings.fusion == defaults.FUSION
    assert Retriever.__init__.__defaults__[0] == settings.fusion  # training data retrieves as answers do


def test_an_overlap_as_large_as_the_chunk_is_refused_with_the_fix():
    with pytest.raises(ConfigError, match=r"chunk_overlap \(64\) must be smaller than chunk_tokens \(64\)"):
        load_settings(chunk_tokens=64, chunk_overlap=64)
    assert load_settings(chunk_tokens=64, chunk_overlap=63).chunk_overlap == 63


def test_a_registered_backend_can_be_chosen_and_an_unknown_one_is_named(monkeypatch):
    with pytest.raises(ConfigError, match=r"unknown LLM backend 'nope'; accepted: auto, .*extractive"):
        load_settings(llm_backend="nope")

    class Echo(LLMBackend):
        name = "echo-for-settings-test"

        def __init__(self, config: BackendConfig | None = None):
            self.model = ""

        def stream(self, messages, max_tokens=512, **kwargs):
            yield "echo"

    tutor.llm.backend_names()  # the built-in backends registered first
    monkeypatch.setitem(tutor.llm._FACTORIES, "echo-for-settings-test", Echo)  # registered for this test only
    settings = load_settings(llm_backend="echo-for-settings-test")
    assert settings.backend().name == "echo-for-settings-test"


def test_the_data_folder_layout_is_built_from_the_settings(tmp_path):
    settings = load_settings(data_dir=tmp_path)
    assert settings.index_root() == tmp_path / "index"
    assert settings.chatlog_path() == tmp_path / "chatlog.sqlite"
    assert settings.uploads_dir() == tmp_path / "uploads"
    assert settings.adapters_dir("dl") == tmp_path / "adapters" / "dl"
    with pytest.raises(CourseNotFoundError, match="no course is indexed .* run `tutor ingest COURSE_DIR`"):
        settings.open_index()


def test_backend_config_carries_every_llm_setting_and_overrides():
    settings = load_settings(llm_base_url="http://127.0.0.1:9/v1", llm_model="m", llm_timeout_s=7,
                             llm_first_token_timeout_s=3, llm_connect_timeout_s=1, llm_max_retries=0)
    config = settings.backend_config()
    assert (config.base_url, config.model, config.timeout_s, config.first_token_timeout_s,
            config.connect_timeout_s, config.max_retries) == ("http://127.0.0.1:9/v1", "m", 7, 3, 1, 0)
    assert settings.backend_config(model="other").model == "other"


def test_the_local_backend_loads_the_courses_promoted_adapter(tmp_path):
    """`tutor adapters promote` decides what answers: without llm_adapter_path, the local backend takes
    the course's current adapter from the registry; an explicit path still wins."""
    import json

    model = tmp_path / "base"
    model.mkdir()
    (tmp_path / "adapters").mkdir()
    (tmp_path / "adapters" / "registry.json").write_text(json.dumps({
        "format": 1, "adapters": {"dl-v2": {"path": "/adapters/dl-v2/adapter", "course": "dl"}},
        "courses": {"dl": {"current": "dl-v2", "previous": [], "history": []}}}))
    settings = load_settings(data_dir=tmp_path, llm_backend="local", llm_model_path=str(model))
    assert settings.backend_config("dl").adapter_path == "/adapters/dl-v2/adapter"
    assert settings.backend_config("other").adapter_path == ""
    assert settings.model_copy(update={"llm_adapter_path": "/mine"}).backend_config("dl").adapter_path == "/mine"
