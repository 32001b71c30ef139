"""Fine-tuning: examples in the tutor's prompt format, a LoRA run on the tiny model, vLLM's rules.

The training run overfits three short answers on purpose (about 25 steps on a CPU): afterwards the
loss has fallen, the adapter reloads with PEFT and changes the logits, it passes the vLLM checks,
and the merged model greedily writes the start of each trained answer.
"""

from __future__ import annotations

import json
import re
import shutil

import pytest
import torch
from course_fixtures import shared_embedder, write_small_course
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from ingest.errors import ConfigError
from ingest.pipeline import IngestOptions, ingest_course
from ingest.store import load_index
from serving.finetune import (
    IGNORE_INDEX,
    FinetuneError,
    LoraSettings,
    merge_trained_adapter,
    tokenize_example,
    train_lora,
)
from serving.finetune_data import (
    OFF_TOPIC_QUESTIONS,
    DataOptions,
    Example,
    ExampleRenderer,
    FinetuneData,
    FinetuneDataError,
    build_finetune_data,
    qa_examples,
    split_examples,
)
from serving.vllm_launch import check_adapter_for_vllm
from tutor.answer import Tutor
from tutor.chatlog import ChatLog
from tutor.cli import app
from tutor.llm import LLMBackend, create_backend
from tutor.settings import load_settings

QA = [
    ("Why does momentum help gradient descent?", "Momentum keeps a running velocity of past gradients."),
    ("What does dropout do during training?", "Dropout randomly zeroes activations during training."),
    ("What does max pooling keep?", "Max pooling keeps the largest activation in each window."),
    ("When are office hours?", "Office hours are on Thursdays in room 204."),
]
ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def markers(text: str) -> list[int]:
    return [int(n) for group in re.findall(r"\[(\d+(?:\s*,\s*\d+)*)\]", text) for n in group.split(",")]


class PassageTeacher(LLMBackend):
    """A stand-in teacher: a JSON Q&A from the passage's first sentence, and every third reply junk."""

    name = "passage-teacher"
    model = "teacher-1"

    def __init__(self):
        self.calls = 0

    def stream(self, messages, **opts):
        self.calls += 1
        if self.calls % 3 == 0:
            yield "Sorry, here is a poem instead."
            return
        passage = messages[-1]["content"].split("\n", 1)[1]
        first = re.split(r"(?<=[.!?])\s", passage.strip())[0]
        words = first.split()
        yield json.dumps({"question": f"What does the course say about {' '.join(words[:5])}?", "answer": first})


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """The small course with instructor Q&A, indexed, plus a chat log with rated answers."""
    root = tmp_path_factory.mktemp("finetune")
    course_dir = write_small_course(root / "course")
    (course_dir / "qa.jsonl").write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in QA))
    data_dir = root / "data"
    ingest_course(course_dir, IngestOptions(data_dir=data_dir), embedder=shared_embedder())
    settings = load_settings(data_dir=data_dir)
    tutor = Tutor.from_settings(settings, embedder=shared_embedder(), backend=create_backend("extractive"))
    log = ChatLog(data_dir / "chatlog.sqlite")
    liked = tutor.ask("How do convolutional networks share parameters?")
    liked_id = log.log_answer("s1", liked)
    log.record_feedback(liked_id, "s1", 1)
    duplicate = log.log_answer("s1", tutor.ask("why does momentum help gradient descent"))  # a QA question
    log.record_feedback(duplicate, "s1", 1)
    disliked = log.log_answer("s2", tutor.ask("What does cross entropy measure?"))
    log.record_feedback(disliked, "s2", -1)
    stale = liked.to_dict() | {"question": "What is a stale answer?"}
    stale["citations"] = [dict(stale["citations"][0], chunk_id="no-such-chunk")]
    log.record_feedback(log.log_answer("s3", stale), "s3", 1)
    return {"dir": course_dir, "data_dir": data_dir, "index": load_index(data_dir / "index", "small"),
            "liked": liked}


@pytest.fixture(scope="module")
def data(course):
    return build_finetune_data(course["index"], shared_embedder(), chatlog=ChatLog(course["data_dir"] / "chatlog.sqlite"),
                               teacher=PassageTeacher(), options=DataOptions(top_k=3, max_teacher_questions=6))


def all_examples(data: FinetuneData) -> list[Example]:
    return data.train + data.validation


def test_every_origin_contributes_and_problems_are_reported(data):
    # one `course` example, about gradient descent: the only passage with two prose sentences
    assert data.counts == {"qa": 4, "chatlog": 1, "teacher": 4, "course": 1, "policy": len(OFF_TOPIC_QUESTIONS) + 3}
    assert any("1 thumbs-up chats left out" in n for n in data.notes)
    assert any("2 teacher replies" in n for n in data.notes)
    assert any("1 duplicate questions dropped" in n for n in data.notes)


def test_examples_are_the_tutors_prompt_with_citations_to_its_sources(data, course):
    for example in all_examples(data):
        system, user = example.messages
        assert system["role"] == "system" and "Small Test Course" in system["content"]
        assert user["content"].endswith(f"<question>\n{example.question}\n</question>")
        assert example.sources and "<sources>" in user["content"]
        for n in markers(example.reply):
            assert 1 <= n <= len(example.sources)
            assert f"[{n}] " in user["content"]
        if example.origin in ("qa", "chatlog", "teacher"):
            assert markers(example.reply), example
    momentum = next(e for e in all_examples(data) if e.question == QA[0][0])
    chunks = {c.id: c for c in course["index"].chunks}
    assert all("velocity" in chunks[momentum.sources[n - 1]].text for n in markers(momentum.reply))


def test_liked_chat_keeps_its_cited_passages_under_new_numbers(data, course):
    chat = next(e for e in all_examples(data) if e.origin == "chatlog")
    logged = {c.chunk_id for c in course["liked"].citations}
    assert chat.question == "How do convolutional networks share parameters?"
    assert {chat.sources[n - 1] for n in markers(chat.reply)} == logged
    assert re.sub(r"\s?\[[\d, ]+\]", "", chat.reply) == re.sub(r"\s?\[[\d, ]+\]", "", course["liked"].text)


def test_policy_examples_decline_and_give_homework_hints(data):
    policy = [e for e in all_examples(data) if e.origin == "policy"]
    declines = [e for e in policy if e.question in OFF_TOPIC_QUESTIONS]
    homework = [e for e in policy if e not in declines]
    assert len(declines) == len(OFF_TOPIC_QUESTIONS) and all("I can only answer" in e.reply for e in declines)
    assert len(homework) == 3
    for example in homework:
        assert "graded assignment" in example.reply and "4.608" not in example.reply
        assert "Homework 1: gradient descent by hand" in example.messages[0]["content"]


def test_build_is_deterministic_and_the_hash_names_the_data(data, course, tmp_path):
    again = build_finetune_data(course["index"], shared_embedder(), chatlog=ChatLog(course["data_dir"] / "chatlog.sqlite"),
                                teacher=PassageTeacher(), options=DataOptions(top_k=3, max_teacher_questions=6))
    assert again.sha256 == data.sha256
    assert [e.question for e in again.validation] == [e.question for e in data.validation] and data.validation
    folder = data.save(tmp_path / "data")
    assert FinetuneData.load(folder).sha256 == data.sha256
    assert json.loads((folder / "data_manifest.json").read_text())["sha256"] == data.sha256
    with open(folder / "train.jsonl", "a") as fh:
        fh.write(json.dumps(data.train[0].to_dict() | {"question": "tampered?"}) + "\n")
    with pytest.raises(FinetuneDataError, match="hash mismatch"):
        FinetuneData.load(folder)


def test_shuffled_replies_are_a_permutation_with_no_reply_left_in_place(data):
    shuffled = data.with_shuffled_replies(seed=3)
    assert sorted(e.reply for e in shuffled.train) == sorted(e.reply for e in data.train)
    unique = {r for r in (e.reply for e in data.train) if sum(e.reply == r for e in data.train) == 1}
    assert len(unique) >= 2
    assert all(new.reply != old.reply for new, old in zip(shuffled.train, data.train) if old.reply in unique)
    assert [e.messages for e in shuffled.train] == [e.messages for e in data.train]   # prompts untouched
    assert shuffled.validation == data.validation and shuffled.sha256 != data.sha256
    assert "negative control" in shuffled.notes[-1] and "negative control" not in " ".join(data.notes)
    assert [e.reply for e in data.with_shuffled_replies(seed=3).train] == [e.reply for e in shuffled.train]
    with pytest.raises(FinetuneDataError, match="at least 2"):
        FinetuneData(data.course, data.train[:1], [], data.counts).with_shuffled_replies()


def test_split_is_stable_when_examples_are_added():
    examples = [Example(f"Question number {i}?", "qa", [], "a") for i in range(60)]
    train, validation = split_examples(examples[:40], 0.2)
    train2, validation2 = split_examples(examples, 0.2)
    assert {e.question for e in validation} <= {e.question for e in validation2}
    assert {e.question for e in train} <= {e.question for e in train2}
    assert 3 <= len(validation2) <= 21 and len(train2) + len(validation2) == 60


def test_missing_chat_log_and_bad_qa_file(course, tmp_path):
    no_log = build_finetune_data(course["index"], shared_embedder(), chatlog=None,
                                 options=DataOptions(top_k=2))
    assert no_log.counts["chatlog"] == 0 and no_log.counts["qa"] == 4
    (tmp_path / "qa.jsonl").write_text('{"question": "ok?", "answer": "fine."}\n{"question": "no answer"}\n')
    renderer = ExampleRenderer(course["index"], shared_embedder(), DataOptions(top_k=2))
    with pytest.raises(FinetuneDataError, match=r"qa.jsonl:2"):
        qa_examples(renderer, tmp_path)


@pytest.mark.parametrize("field, value, message", [
    ("rank", 0, "rank 0"), ("rank", 1024, "rank 1024"), ("alpha", 0, "alpha 0"),
    ("target_modules", (), "empty"), ("target_modules", ("embed_tokens",), "embedding"),
    ("target_modules", ("q-proj!",), "not a module name"), ("dropout", 1.0, "dropout"),
    ("learning_rate", 0.0, "learning rate"), ("epochs", 0, "epochs 0"), ("max_length", 8, "max_length 8"),
    ("batch_size", 0, "batch_size 0"),
])
def test_lora_settings_reject_bad_values(field, value, message):
    with pytest.raises(ConfigError, match=message):
        LoraSettings(**{field: value})


def test_tokenized_example_learns_only_the_reply(tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    example = Example("What is dropout?", "qa", [{"role": "system", "content": "Be brief."},
                                                  {"role": "user", "content": "What is dropout?"}],
                      "Dropout zeroes activations [1].")
    tokenized = tokenize_example(tokenizer, example, 1024)
    learned = [t for t in tokenized.labels if t != IGNORE_INDEX]
    prompt = tokenizer.apply_chat_template(example.messages, add_generation_prompt=True, tokenize=False)
    assert len(tokenized.labels) - len(learned) == len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert tokenizer.decode(learned) == "Dropout zeroes activations [1].<|end|>\n"
    assert tokenize_example(tokenizer, example, 20) is None


# ----- one real training run, overfitting three answers --------------------------------------

@pytest.fixture(scope="module")
def trained(course, tiny_model_dir, tmp_path_factory):
    renderer = ExampleRenderer(course["index"], shared_embedder(), DataOptions(top_k=1, context_span=0))
    pairs = []
    for question, answer in QA:
        sources = renderer.sources(question)
        pairs.append(renderer.render(question, renderer.cite(answer, sources), "qa", sources))
    data = FinetuneData("small", pairs[:3], pairs[3:], {"qa": 4})
    settings = LoraSettings(rank=8, alpha=16, target_modules=ALL_LINEAR, learning_rate=1e-2, epochs=25,
                            batch_size=3, dropout=0.0, max_length=1024)
    out = tmp_path_factory.mktemp("lora")
    steps = []
    result = train_lora(tiny_model_dir, data, out, settings, log=steps.append)
    merged = merge_trained_adapter(tiny_model_dir, result, out / "merged")
    from transformers import AutoTokenizer

    return {"data": data, "result": result, "merged": merged, "log": steps, "out": out,
            "tokenizer": AutoTokenizer.from_pretrained(tiny_model_dir)}


def test_training_lowers_the_loss_and_records_lineage(trained, tiny_model_dir):
    lineage = json.loads((trained["result"].adapter_dir / "lineage.json").read_text())
    epochs = lineage["metrics"]["epochs"]
    assert len(epochs) == 25 and epochs[-1]["train_loss"] < 0.3 * epochs[0]["train_loss"]
    assert epochs[-1]["validation_loss"] is not None
    assert sum(r["event"] == "step" for r in trained["log"]) == lineage["metrics"]["steps"] == 25
    assert lineage["data"]["sha256"] == trained["data"].sha256
    assert lineage["base_model"]["path"] == str(tiny_model_dir.resolve())
    assert lineage["settings"]["rank"] == 8 and lineage["serve_with"] == {"max_lora_rank": 8}
    assert lineage["metrics"]["steps_per_s"] > 0
    # every step trains the three examples' tokens (padding excluded): 25 epochs of one batch
    trained_tokens = 25 * sum(len(tokenize_example(trained["tokenizer"], e, 1024).input_ids)
                              for e in trained["data"].train)
    assert lineage["metrics"]["tokens"] == trained_tokens
    assert lineage["metrics"]["tokens_per_s"] == pytest.approx(trained_tokens / lineage["metrics"]["seconds"], rel=0.01)
    steps = [r for r in trained["log"] if r["event"] == "step"]
    assert steps[-1]["of"] == 25 and steps[-1]["eta_s"] == 0 and steps[0]["tokens_per_s"] > 0
    png = trained["result"].adapter_dir / "loss_curve.png"
    assert png.read_bytes().startswith(b"\x89PNG")


def test_adapter_reloads_with_peft_and_changes_the_model(trained, tiny_model_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    adapter = trained["result"].adapter_dir
    assert {p.name for p in adapter.iterdir()} >= {"adapter_config.json", "adapter_model.safetensors"}
    ids = torch.tensor([[5, 17, 42, 99, 7]])
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    with torch.no_grad():
        before = base(ids).logits
        tuned = PeftModel.from_pretrained(base, adapter).eval()
        after = tuned(ids).logits
    assert (after - before).abs().max() > 1e-2


def test_merged_model_writes_the_trained_answers(trained):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(trained["merged"])
    model = AutoModelForCausalLM.from_pretrained(trained["merged"]).eval()
    for example in trained["data"].train:
        prompt = tokenizer.apply_chat_template(example.messages, add_generation_prompt=True, tokenize=False)
        ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            out = model.generate(ids, max_new_tokens=40, do_sample=False, min_new_tokens=1)
        written = tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
        assert written.split()[:3] == example.reply.split()[:3], (written, example.reply)


def test_trained_adapter_passes_the_vllm_checks(trained, tiny_model_dir):
    assert check_adapter_for_vllm(trained["result"].adapter_dir, tiny_model_dir) == []


def _tamper_config(adapter, **changes):
    config = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps(config | changes))


def _rename_module(adapter, old, new):
    tensors = load_file(adapter / "adapter_model.safetensors")
    save_file({k.replace(old, new): v for k, v in tensors.items()}, adapter / "adapter_model.safetensors")


@pytest.mark.parametrize("tamper, max_rank, problem", [
    (lambda a: _tamper_config(a, r=1024), 512, "rank 1024 is greater than max_lora_rank 512"),
    (lambda a: None, 1, "rank 8 is greater than max_lora_rank 1"),
    (lambda a: _rename_module(a, "self_attn.q_proj", "self_attn.qq_proj"), 512, "'model.layers.0.self_attn.qq_proj'"),
    (lambda a: _tamper_config(a, modules_to_save=["lm_head"]), 512, "modules_to_save"),
    (lambda a: _tamper_config(a, bias="all"), 512, "bias='all'"),
    (lambda a: _tamper_config(a, use_dora=True), 512, "use_dora=True"),
    (lambda a: _rename_module(a, "lora_B.weight", "lora_B.bias"), 512, "not a LoRA weight"),
    (lambda a: (a / "adapter_model.safetensors").unlink(), 512, "no adapter_model.safetensors"),
])
def test_tampered_adapters_fail_the_vllm_checks(trained, tiny_model_dir, tmp_path, tamper, max_rank, problem):
    adapter = shutil.copytree(trained["result"].adapter_dir, tmp_path / "adapter")
    tamper(adapter)
    problems = check_adapter_for_vllm(adapter, tiny_model_dir, max_lora_rank=max_rank)
    assert any(problem in p for p in problems), problems


def test_adapter_with_wrong_shapes_fails_the_vllm_checks(trained, tiny_model_dir, tmp_path):
    adapter = shutil.copytree(trained["result"].adapter_dir, tmp_path / "adapter")
    _tamper_config(adapter, r=16)
    assert any("does not match rank 16" in p for p in check_adapter_for_vllm(adapter, tiny_model_dir))


def test_the_gpu_tests_model_and_adapters_pass_the_vllm_checks(tmp_path):
    """The inputs of `test_vllm_gpu.py`, checked on CPU: every id the random model can emit decodes,
    and both adapters pass the checks `tutor serve --engine vllm` makes before starting vLLM."""
    from tiny_model import VLLM_LORA, VLLM_VOCAB_ROWS, build_tiny_lora_adapter, build_vllm_tiny_model
    from transformers import AutoConfig, AutoTokenizer

    base = build_vllm_tiny_model(tmp_path / "base")
    tokenizer = AutoTokenizer.from_pretrained(base)
    assert len(tokenizer) == AutoConfig.from_pretrained(base).vocab_size == VLLM_VOCAB_ROWS
    assert tokenizer.decode([VLLM_VOCAB_ROWS - 1]) == f"<x{VLLM_VOCAB_ROWS - 1}>"
    assert len(tokenizer("What does the optimizer do?")["input_ids"]) < 40  # padding leaves prompts alone
    first, second = (build_tiny_lora_adapter(base, tmp_path / name, seed, **VLLM_LORA)
                     for name, seed in (("a", 1), ("b", 2)))
    for adapter in (first, second):
        assert check_adapter_for_vllm(adapter, base, max_lora_rank=8) == []
    weights = [load_file(a / "adapter_model.safetensors") for a in (first, second)]
    assert weights[0].keys() == weights[1].keys()
    assert not torch.equal(*(next(t for k, t in sorted(w.items()) if "lora_B" in k) for w in weights))


def test_training_refuses_data_that_does_not_fit_or_unknown_layers(trained, tiny_model_dir, tmp_path):
    with pytest.raises(FinetuneError, match="--max-length 16"):
        train_lora(tiny_model_dir, trained["data"], tmp_path, LoraSettings(max_length=16))
    with pytest.raises(ConfigError, match="c_attn are not linear layers"):
        train_lora(tiny_model_dir, trained["data"], tmp_path, LoraSettings(target_modules=("c_attn",), max_length=1024))


def test_cli_builds_the_data_without_training(course, tmp_path):
    result = CliRunner().invoke(app, ["finetune", "--course", "small", "--data-dir", str(course["data_dir"]),
                                      "--out", str(tmp_path), "--data-only", "--top-k", "2", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["data"]["counts"]["qa"] == 4 and summary["data"]["counts"]["chatlog"] == 1
    saved = FinetuneData.load(tmp_path / "data")
    assert saved.sha256 == summary["data"]["sha256"] and not (tmp_path / "adapter").exists()
    missing_base = CliRunner().invoke(app, ["finetune", "--course", "small", "--data-dir", str(course["data_dir"]),
                                            "--out", str(tmp_path)], env={"TUTOR_LLM_MODEL_PATH": ""})
    assert missing_base.exit_code == 2 and "needs a base model" in missing_base.output


def test_cli_shuffled_replies_save_the_control_data_and_say_so(course, tmp_path):
    args = ["finetune", "--course", "small", "--data-dir", str(course["data_dir"]), "--data-only", "--top-k", "2"]
    plain = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "plain")])
    control = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "control"), "--shuffle-replies"])
    assert plain.exit_code == 0 and control.exit_code == 0, plain.output + control.output
    assert "negative control" in control.output and "negative control" not in plain.output
    true, shuffled = FinetuneData.load(tmp_path / "plain" / "data"), FinetuneData.load(tmp_path / "control" / "data")
    assert [e.messages for e in shuffled.train] == [e.messages for e in true.train]
    assert [e.reply for e in shuffled.train] != [e.reply for e in true.train]
