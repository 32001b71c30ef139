"""The answering product: settings, retrieval, policy, prompt, LLM backends, answers, the Gradio app
and the CLI. Offline by default: importing `ingest` sets the offline environment (ingest/__init__.py)."""

import ingest  # noqa: F401  (first: the offline environment, before any hub or Gradio import)
