"""The embedding model in a process of its own, for a server that answers many students at once.

    embedder = EmbeddingProcess(settings.embedder())    # same vectors, same fingerprint
    vectors = embedder.encode(["What is dropout?"])      # sent to the child, the answer read back

Why: the chat server is one Python process whose threads (Gradio's workers, its event loop, the
searches) share one interpreter lock. A torch forward pass of the embedding model is hundreds of
small operations that each take that lock, so with 40 busy threads it waits for the lock between
them: measured on 2 cores during a 200-student burst, a batch of 27 questions took 300-500 ms to
embed, against about 40 ms when the process is quiet, and the model was busy for the whole burst.
In a child process the same batch runs undisturbed, and the server's threads only wait on a pipe,
which releases the lock.

The child is started with `spawn` (no copy of the server's threads or locks), loads the model from
the same folder with the same backend, and serves one request at a time: `encode` holds a lock
around each send and receive. If the child cannot start or dies, `encode` logs why once and
embeds in this process from then on, so a question is never lost to it.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from pathlib import Path

import numpy as np

from ingest.embed import Embedder

log = logging.getLogger("ingest.embed_process")

START_TIMEOUT_S = 120.0     # loading torch and the model in the child: a few seconds, more on a busy machine


def _serve(conn, model_path: str, backend: str, onnx_dir: str, batch_size: int, threads: int) -> None:
    """The child's loop: texts in, ("ok", vectors) or ("error", message) out, until the pipe closes
    (the server stopping, even while the model is still loading, ends it quietly)."""
    try:
        _answer(conn, model_path, backend, onnx_dir, batch_size, threads)
    except (EOFError, OSError):
        return


def _answer(conn, model_path: str, backend: str, onnx_dir: str, batch_size: int, threads: int) -> None:
    import torch

    torch.set_num_threads(max(1, threads))
    embedder = Embedder(model_path, batch_size=batch_size, backend=backend, onnx_dir=onnx_dir)
    try:
        embedder.encode(["ready"])                  # load the model before saying so
        conn.send(("ready", os.getpid()))
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which falls back
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    while True:
        texts = conn.recv()
        try:
            conn.send(("ok", embedder.encode(texts)))
        except Exception as exc:  # noqa: BLE001 - one bad request must not end the child
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


class EmbeddingProcess:
    """An `Embedder` whose `encode` runs in a child process; everything else is the embedder's own."""

    def __init__(self, embedder: Embedder, threads: int | None = None):
        self.embedder = embedder
        self.threads = threads or len(os.sched_getaffinity(0))
        self._lock = threading.Lock()
        self._conn = None
        self._process = None
        self._ready = False
        self._failed = ""
        self._start()

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=_serve, name="tutor-embedder", daemon=True,
            args=(child, self.embedder.model_path, self.embedder.backend, str(Path(self.embedder.onnx_dir)),
                  self.embedder.batch_size, self.threads))
        self._process.start()
        child.close()

    @property
    def in_child(self) -> bool:
        """Whether encoding still goes to the child (False once it has failed)."""
        return not self._failed

    @property
    def child_pid(self) -> int | None:
        return self._process.pid if self._process is not None and self.in_child else None

    def _await_ready(self) -> None:
        if not self._conn.poll(START_TIMEOUT_S):
            raise RuntimeError(f"the embedding process did not start within {START_TIMEOUT_S:g} s")
        kind, value = self._conn.recv()
        if kind != "ready":
            raise RuntimeError(f"the embedding process could not load the model: {value}")

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return self.embedder.encode(texts)
        with self._lock:
            if not self._failed:
                try:
                    if not self._ready:
                        self._await_ready()
                        self._ready = True
                    self._conn.send(list(texts))
                    kind, value = self._conn.recv()
                except (EOFError, OSError, RuntimeError) as exc:
                    self._fail(f"{type(exc).__name__}: {exc}")
                else:
                    if kind == "ok":
                        self.embedder.calls += 1
                        self.embedder.texts_embedded += len(texts)
                        return value
                    raise RuntimeError(f"embedding failed in the embedding process: {value}")
        return self.embedder.encode(texts)

    def encode_query(self, text: str) -> np.ndarray:
        return self.encode([text])[0]

    def _fail(self, reason: str) -> None:
        self._failed = reason
        log.warning("embedding in the server's own process from now on: the embedding process failed (%s)", reason)
        self.close()

    def close(self) -> None:
        """Stop the child (it also ends with this process: it is a daemon)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._process is not None:
            self._process.join(timeout=5)
            if self._process.is_alive():
                self._process.kill()
            self._process = None

    def __getattr__(self, name: str):
        # fingerprint, dimension, name, describe(), tokenizer ...: the embedder's (only encode is remote)
        return getattr(self.embedder, name)
