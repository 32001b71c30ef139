"""Circuit breakers for LLM servers: once a server fails, stop waiting on it until it answers again.

There is one breaker per server base URL, shared by every backend in the process. A failure before
the first token (refused, timed out, HTTP 5xx) opens it; while it is open, `allow()` is False and
the backend fails at once, so the tutor answers from the course material without a network wait. A
daemon thread probes the server every `probe_interval_s` and closes the breaker on the first probe
that gets an answer.

    breaker = breaker_for("http://127.0.0.1:8000/v1")
    if breaker.allow():
        ...                                   # talk to the server
    breaker.record_failure("connection refused", probe=check_server, probe_interval_s=5)

`llm_status()` reports every server this process has talked to, for the instructor view:

    [{"base_url": "http://127.0.0.1:8000/v1",
      "state": "open",                        # "closed": in use; "open": marked down, answers fall back
      "since": 1718000000.0,                  # Unix time the state began
      "last_error": "LLM server at ... is not reachable (connection refused); ...",
      "last_error_at": 1718000003.2}]         # Unix time of that failure (None: none yet)

`reset_breakers()` forgets them all (tests).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger("tutor.llm")

Probe = Callable[[], None]  # returns when the server answers, raises (with a readable message) when not


class CircuitBreaker:
    """Whether one server may be asked now, and why not; thread-safe."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self._lock = threading.Lock()
        self._open = False
        self._since = time.time()
        self._last_error = ""
        self._last_error_at: float | None = None
        self._probe: Probe | None = None
        self._probe_interval_s = 5.0
        self._prober: threading.Thread | None = None
        self._stopped = threading.Event()

    def allow(self) -> bool:
        """False while the server is marked down: callers should not wait on it."""
        with self._lock:
            return not self._open

    def record_success(self) -> None:
        """The server answered: use it again."""
        with self._lock:
            self._close_locked()

    def record_failure(self, detail: str, probe: Probe, probe_interval_s: float) -> None:
        """The server failed before answering: mark it down and probe it until it answers."""
        now = time.time()
        with self._lock:
            self._last_error, self._last_error_at = detail, now
            self._probe, self._probe_interval_s = probe, probe_interval_s
            if not self._open:
                self._open, self._since = True, now
                log.warning("LLM server %s marked down, answering from the course material until a probe "
                            "(every %gs) finds it back: %s", self.base_url, probe_interval_s, detail)
            if self._prober is None and not self._stopped.is_set():
                self._prober = threading.Thread(target=self._probe_until_closed, daemon=True,
                                                name=f"llm-probe {self.base_url}")
                self._prober.start()

    def down_message(self) -> str:
        """Why a request was not even sent: for logs and the instructor, not for students."""
        with self._lock:
            at = time.strftime("%H:%M:%S", time.localtime(self._last_error_at or self._since))
            return (f"LLM server at {self.base_url} is marked down (at {at}: {self._last_error}); it is probed "
                    f"every {self._probe_interval_s:g}s and used again once it answers")

    def status(self) -> dict:
        with self._lock:
            return {"base_url": self.base_url, "state": "open" if self._open else "closed", "since": self._since,
                    "last_error": self._last_error, "last_error_at": self._last_error_at}

    def stop(self) -> None:
        """End the probing thread (at its next wake-up); the breaker stays as it is."""
        self._stopped.set()

    def _close_locked(self) -> None:
        if self._open:
            self._open, self._since = False, time.time()
            log.warning("LLM server %s answers again; questions go to it", self.base_url)

    def _probe_until_closed(self) -> None:
        while True:
            with self._lock:
                interval = self._probe_interval_s
            if self._stopped.wait(interval):
                return
            with self._lock:
                if not self._open:
                    self._prober = None
                    return
                probe = self._probe
            try:
                probe()
            except Exception as error:  # any failure of the probe just means "still down"
                with self._lock:
                    self._last_error, self._last_error_at = f"probe failed: {error}", time.time()
                continue
            with self._lock:
                if self._stopped.is_set():
                    return
                self._close_locked()
                self._prober = None
                return


_BREAKERS: dict[str, CircuitBreaker] = {}
_BREAKERS_LOCK = threading.Lock()


def breaker_for(base_url: str) -> CircuitBreaker:
    """The process-wide breaker of the server at `base_url` (created closed on first use)."""
    key = base_url.rstrip("/")
    with _BREAKERS_LOCK:
        if key not in _BREAKERS:
            _BREAKERS[key] = CircuitBreaker(key)
        return _BREAKERS[key]


def llm_status() -> list[dict]:
    """Each LLM server this process has used: base_url, state ("closed" | "open"), since, last_error,
    last_error_at (times are Unix seconds). An "open" server is skipped: students get answers quoted
    from the course material until a background probe finds it answering again."""
    with _BREAKERS_LOCK:
        breakers = list(_BREAKERS.values())
    return [breaker.status() for breaker in breakers]


def reset_breakers() -> None:
    """Forget every breaker and stop their probes, so the next request finds every server closed (tests)."""
    with _BREAKERS_LOCK:
        breakers = list(_BREAKERS.values())
        _BREAKERS.clear()
    for breaker in breakers:
        breaker.stop()
