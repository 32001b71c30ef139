"""The answering product: settings, retrieval, policy, prompt, LLM backends, answers, the Gradio app
and the CLI. Offline by default: no hub look-ups, no analytics."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
