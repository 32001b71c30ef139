"""Fine-tuning speed: LoRA steps per second on the tiny test model, on this machine's CPU.

    .venv/bin/python benchmarks/finetune_speed.py [--epochs 3] [--batch-size 1 4] [--rank 8]

Builds the small generated course of the tests (`tests/course_fixtures.py`) and the tiny random
Llama with its locally trained tokenizer (`tests/tiny_model.py`), renders the course's fine-tuning
examples in the tutor's prompt format (one source per prompt so they fit the tiny model's 1024
positions), and trains an adapter with `serving.finetune.train_lora` once per batch size. Prints
optimizer steps/s, examples/s and trained tokens/s (prompt + reply tokens through forward and
backward), timed over the training loop with its per-epoch validation pass (model loading and
saving are not counted). A few instructor Q&A pairs are added to the course so there is more to
train on than the policy examples.
The figures are for the plumbing's overhead, not for a real model: scale by the model's size.
For the real figure, `tutor finetune --base smollm2` prints steps/s and tokens/s per step and in
its summary, and records them in the adapter's `lineage.json` (`metrics.steps_per_s`, `tokens_per_s`).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the tiny model and the small course are test fixtures

from course_fixtures import shared_embedder, write_small_course  # noqa: E402
from tiny_model import build_tiny_model  # noqa: E402

from ingest.pipeline import IngestOptions, ingest_course  # noqa: E402
from ingest.store import load_index  # noqa: E402
from serving.finetune import LoraSettings, tokenize_example, train_lora  # noqa: E402
from serving.finetune_data import DataOptions, build_finetune_data  # noqa: E402

# Instructor Q&A for the small course, so the run has more than the policy examples to learn.
QA = [
    ("Why does momentum help gradient descent?",
     "It keeps a running velocity of past gradients, which damps oscillation."),
    ("What happens if the learning rate is too large?", "The loss can diverge because each step overshoots."),
    ("What does dropout do?", "It randomly zeroes activations during training so units cannot co-adapt."),
    ("Why is no rescaling needed at test time with inverted dropout?", "Training already scaled by 1/(1-p)."),
    ("What does max pooling keep?", "The largest activation in each window."),
    ("How does a convolutional layer save parameters?", "Its filters slide over the image and share weights."),
    ("Which loss is used for classification?", "Cross entropy."),
    ("Where are office hours held?", "On Thursdays in room 204."),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--target-modules", default="q_proj,v_proj")
    args = parser.parse_args()

    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        course = write_small_course(root / "course")
        (course / "qa.jsonl").write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in QA))
        ingest_course(course, IngestOptions(data_dir=root / "data"), embedder=shared_embedder())
        index = load_index(root / "data" / "index", "small")
        data = build_finetune_data(index, shared_embedder(), options=DataOptions(top_k=1, context_span=0))
        model_dir = build_tiny_model(root / "tiny")
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        lengths = [len(t.input_ids) for e in data.train if (t := tokenize_example(tokenizer, e, 1024))]
        print(f"{len(lengths)} training examples of {min(lengths)}-{max(lengths)} tokens "
              f"(mean {sum(lengths) / len(lengths):.0f}), {args.epochs} epochs, rank {args.rank}, "
              f"targets {args.target_modules}")
        print(f"{'batch':>5}  {'steps':>5}  {'steps/s':>8}  {'examples/s':>10}  {'tokens/s':>9}  "
              f"{'loss first->last epoch':>22}")
        for batch_size in args.batch_size:
            settings = LoraSettings(rank=args.rank, alpha=2 * args.rank, epochs=args.epochs, batch_size=batch_size,
                                    target_modules=tuple(args.target_modules.split(",")), max_length=1024)
            metrics = train_lora(model_dir, data, root / f"out-{batch_size}", settings).lineage["metrics"]
            seconds = metrics["seconds"]
            examples = len(lengths) * args.epochs
            print(f"{batch_size:>5}  {metrics['steps']:>5}  {metrics['steps_per_s']:>8.2f}  "
                  f"{examples / seconds:>10.2f}  {metrics['tokens_per_s']:>9.0f}  "
                  f"{metrics['first_epoch_train_loss']:>10.3f} -> {metrics['last_epoch_train_loss']:.3f}")


if __name__ == "__main__":
    main()
