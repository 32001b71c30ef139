"""The adapter registry: which trained adapters a course has, which one is current, and its history.

    registry = AdapterRegistry(data_dir)
    registry.list("dl-intro")                   # adapters found under <data dir>/adapters/*/adapter
    registry.promote("dl-intro-course", gate)   # gate(candidate, current) -> failures; [] promotes
    registry.rollback("dl-intro")               # the adapter that was current before the last promotion
    registry.current_path("dl-intro")           # what `tutor serve` (and the chat) should load

Every folder `<data dir>/adapters/NAME/adapter/` with a `lineage.json` (what `tutor finetune` writes)
is an adapter named NAME; its course, base model and training-data hash come from the lineage. The
state lives in `<data dir>/adapters/registry.json`:

    {"format": 1,
     "adapters": {NAME: {"path", "course", "base_model", "data_sha256", "eval_run", "registered"}},
     "courses": {COURSE: {"current": NAME | null, "previous": [NAME, ...],
                          "history": [{"at", "action", "name", "previous", "gate"}]}}}

It is rewritten whole to a temporary file and renamed over the old one (a reader never sees half a
file) under an exclusive lock, so two instructors promoting at once cannot lose an update. A
promotion that the gate refuses changes nothing but the history, which records each failing metric.
`previous` is a stack: promotion pushes the adapter it replaces, rollback pops it back.

The gate is passed in. `eval_command_gate` is the one `tutor adapters promote` uses: it asks
`tutor eval promotion-check` (thresholds, and "not worse than the current adapter" by
`tutor eval compare`'s paired bootstrap) in a child process, because `serving` and `eval` do not
import each other; the command line is their contract, as HTTP is the model server's.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from ingest.errors import ConfigError, TutorError
from tutor.models import ADAPTER_REGISTRY, ADAPTER_REGISTRY_FORMAT, read_adapter_registry

REGISTRY_FILE = ADAPTER_REGISTRY
FORMAT = ADAPTER_REGISTRY_FORMAT


class AdapterNotFoundError(TutorError, KeyError):
    """No adapter of that name: the message lists the ones there are."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0])


class PromotionRefusedError(TutorError, RuntimeError):
    """The gate refused a promotion; `failures` names each failing metric."""

    def __init__(self, message: str, failures: list[str]):
        super().__init__(message)
        self.failures = failures


@dataclass
class Adapter:
    name: str
    path: str                 # the adapter folder (adapter_config.json, weights, lineage.json)
    course: str
    base_model: str
    data_sha256: str
    eval_run: str = ""        # an eval run folder made with this adapter, for the promotion gate
    registered: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


Gate = Callable[[Adapter, "Adapter | None"], list[str]]


class AdapterRegistry:
    """Reads and changes `<data dir>/adapters/registry.json`; see the module docstring."""

    def __init__(self, data_dir: Path):
        self.root = Path(data_dir) / "adapters"  # Settings.adapters_dir()
        self.path = self.root / REGISTRY_FILE

    # ----- reading -----

    def state(self) -> dict:
        """The registry with every adapter folder on disk registered (not saved until a change)."""
        state = self._read()
        for lineage_path in sorted(self.root.glob("*/adapter/lineage.json")):
            name = lineage_path.parent.parent.name
            if name not in state["adapters"]:
                state["adapters"][name] = _adapter_from_lineage(name, lineage_path).to_dict()
        return state

    def list(self, course: str | None = None) -> list[dict]:
        """Every adapter (of `course`), each with `status`: current, previous (rollback target) or candidate."""
        state = self.state()
        out = []
        for name, entry in sorted(state["adapters"].items()):
            if course and entry["course"] != course:
                continue
            course_state = state["courses"].get(entry["course"], {})
            status = ("current" if course_state.get("current") == name
                      else "previous" if name in course_state.get("previous", []) else "candidate")
            out.append({**entry, "name": name, "status": status})
        return out

    def get(self, name: str) -> Adapter:
        adapters = self.state()["adapters"]
        if name not in adapters:
            known = ", ".join(sorted(adapters)) or "none yet; train one with `tutor finetune`"
            raise AdapterNotFoundError(f"no adapter named {name!r} under {self.root}; known: {known}")
        return Adapter(**{**adapters[name], "name": name})

    def current(self, course: str) -> Adapter | None:
        name = self.state()["courses"].get(course, {}).get("current")
        return self.get(name) if name else None

    def current_path(self, course: str) -> str:
        """The current adapter's folder for `course`, or "" when none has been promoted."""
        current = self.current(course)
        return current.path if current else ""

    def history(self, course: str) -> list[dict]:
        return self.state()["courses"].get(course, {}).get("history", [])

    # ----- changing -----

    def attach_eval_run(self, name: str, run_dir: Path) -> Adapter:
        """Record `run_dir` (an eval run made with adapter `name`) as the evidence its gate reads."""
        if not (Path(run_dir) / "metrics.json").is_file():
            raise ConfigError(f"{run_dir} is not a finished eval run (no metrics.json); run "
                              f"`tutor eval DATASET --out {run_dir}` with the adapter first")
        with self._locked() as state:
            self._require(state, name)["eval_run"] = str(Path(run_dir).resolve())
        return self.get(name)

    def promote(self, name: str, gate: Gate | None = None) -> Adapter:
        """Make `name` its course's current adapter if `gate(candidate, current)` returns no failures.

        A refusal raises `PromotionRefusedError` after recording it in the history; the current
        adapter stays as it was."""
        with self._locked() as state:
            entry = self._require(state, name)
            course = state["courses"].setdefault(entry["course"], {"current": None, "previous": [], "history": []})
            if course["current"] == name:
                raise ConfigError(f"{name} is already the current adapter of {entry['course']}")
            candidate = Adapter(**{**entry, "name": name})
            current = (Adapter(**{**state["adapters"][course["current"]], "name": course["current"]})
                       if course["current"] else None)
            failures = gate(candidate, current) if gate else []
            event = {"at": _now(), "action": "promote", "name": name, "previous": course["current"],
                     "gate": {"passed": not failures, "failures": failures, "checked": gate is not None}}
            course["history"].append(event)
            if not failures:
                if course["current"]:
                    course["previous"].append(course["current"])
                course["current"] = name
        if failures:
            kept = f"{current.name} stays current" if current else "no adapter is current"
            raise PromotionRefusedError(f"promotion of {name} refused ({kept}): " + "; ".join(failures), failures)
        return candidate

    def rollback(self, course: str) -> Adapter | None:
        """Make the adapter that was current before the last promotion current again (None: the base
        model alone, when the first promotion is undone)."""
        with self._locked() as state:
            entry = state["courses"].get(course)
            if not entry or not entry.get("current"):
                raise ConfigError(f"{course} has no current adapter to roll back; see `tutor adapters list`")
            restored = entry["previous"].pop() if entry["previous"] else None
            entry["history"].append({"at": _now(), "action": "rollback", "name": restored,
                                     "previous": entry["current"], "gate": None})
            entry["current"] = restored
        return self.get(restored) if restored else None

    # ----- storage -----

    def _read(self) -> dict:
        return read_adapter_registry(self.root)

    @contextmanager
    def _locked(self):
        """The current state, held under an exclusive lock and saved atomically when the block ends."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".registry.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = self.state()
            yield state
            temporary = self.path.with_name(f".{REGISTRY_FILE}.{os.getpid()}.tmp")
            temporary.write_text(json.dumps(state, indent=1, sort_keys=True), encoding="utf-8")
            os.replace(temporary, self.path)

    def _require(self, state: dict, name: str) -> dict:
        if name not in state["adapters"]:
            self.get(name)  # raises, naming the known adapters
        return state["adapters"][name]


def eval_command_gate(thresholds: Path | None = None, baseline_run: Path | None = None) -> Gate:
    """A gate that runs `tutor eval promotion-check` on the candidate's eval run, against the current
    adapter's eval run (or `baseline_run`, the base model's, when no adapter is current)."""

    def gate(candidate: Adapter, current: Adapter | None) -> list[str]:
        if not candidate.eval_run:
            return [f"{candidate.name} has no eval run: run `tutor eval DATASET --out DIR` with it, then "
                    f"`tutor adapters promote {candidate.name} --eval-run DIR`"]
        command = [sys.executable, "-m", "tutor.cli", "eval", "promotion-check", candidate.eval_run,
                   "--course", candidate.course, "--json"]
        if current is not None and current.eval_run:
            command += ["--against", current.eval_run, "--against-label", f"the current adapter {current.name}"]
        elif baseline_run:
            command += ["--against", str(baseline_run), "--against-label", "the baseline run"]
        if thresholds:
            command += ["--thresholds", str(thresholds)]
        done = subprocess.run(command, capture_output=True, text=True)
        try:
            return json.loads(done.stdout)["failures"]
        except (json.JSONDecodeError, KeyError):
            raise ConfigError("the promotion gate (`tutor eval promotion-check`) did not answer: "
                              + (done.stderr.strip() or done.stdout.strip())[-500:]) from None

    return gate


def _adapter_from_lineage(name: str, lineage_path: Path) -> Adapter:
    lineage = json.loads(lineage_path.read_text(encoding="utf-8"))
    return Adapter(name=name, path=str(lineage_path.parent.resolve()), course=lineage.get("data", {}).get("course", ""),
                   base_model=lineage.get("base_model", {}).get("path", ""),
                   data_sha256=lineage.get("data", {}).get("sha256", ""), registered=_now())


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
