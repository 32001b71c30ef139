"""A local sentence-transformers model run by ONNX Runtime: exported once, offline, then cached.

    path = prepare_onnx_model(model_dir, cache_dir, quantized=True)   # exports on first need
    encoder = OnnxSentenceEncoder(model_dir, path)
    vectors = encoder.encode(texts, batch_size=64)                    # float32, L2-normalised

Why not `SentenceTransformer(path, backend="onnx")`: that path needs `optimum-onnx`, whose releases
pin `transformers<4.58`, and this project runs on transformers 5. So the export is done here with
`torch.onnx.export` (nothing is downloaded: the weights come from the model folder), the graph is
fused with ONNX Runtime's BERT optimizer when the model is a BERT, and int8 is ONNX Runtime's dynamic
quantisation with one weight scale per output channel (one per tensor cost all-MiniLM-L6-v2 six
points of cosine similarity) and the feed-forward down-projections left in fp32 (`_after_gelu`).
A folder that already ships `onnx/model.onnx` is used as is for fp32 and quantised from for int8.

Every file is written beside its final name and renamed into place, so two processes exporting at
once, or one killed half way, never leave a broken model in the cache. An export is checked against
the torch model on a few padded batches before it is kept.

Supports the models the tutor embeds with: a Transformer, then mean, CLS or max Pooling, optionally
Normalize (vectors are always normalised here). Anything else is refused with the way out.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path

import numpy as np

from ingest.errors import ConfigError, TutorError

# Bump when the export or the quantisation changes: it is part of the embedder's fingerprint, so
# indexes and embedding caches built with an older recipe are rebuilt.
ONNX_RECIPE = 1
FP32_FILE = "model.onnx"
INT8_FILE = "model_int8.onnx"
_POOLING_MODES = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls",
                  "pooling_mode_max_tokens": "max"}
# Texts of different lengths, so the check runs padded batches (the traced mask path).
_CHECK_TEXTS = [
    "Gradient descent.",
    "Momentum keeps a running velocity of past gradients, which damps oscillation across a ravine.",
    "Dropout randomly zeroes activations during training so units cannot co-adapt; at test time "
    "inverted dropout needs no rescaling because training already scaled by 1/(1-p).",
    "What is the output size of a convolution with stride 2 and padding 1 on a 32x32 image?",
]


class OnnxExportError(TutorError, RuntimeError):
    """The model could not be exported to ONNX, or the export does not reproduce the torch model."""


def model_layout(model_dir: Path) -> dict:
    """The pooling mode and sequence cap of a Transformer + Pooling (+ Normalize) model folder."""
    modules_file = model_dir / "modules.json"
    modules = json.loads(modules_file.read_text()) if modules_file.is_file() else []
    kinds = [m["type"].rsplit(".", 1)[-1] for m in modules]
    if kinds[:2] != ["Transformer", "Pooling"] or set(kinds[2:]) - {"Normalize"}:
        raise ConfigError(
            f"the onnx embedding backends run a Transformer followed by Pooling (and Normalize); {model_dir} "
            f"has {kinds or 'no modules.json'}; set embedding_backend = \"torch\" for this model"
        )
    pooling = json.loads((model_dir / modules[1]["path"] / "config.json").read_text())
    modes = [mode for key, mode in _POOLING_MODES.items() if pooling.get(key)]
    unsupported = [k for k, v in pooling.items() if v and k.startswith("pooling_mode_") and k not in _POOLING_MODES]
    if len(modes) != 1 or unsupported:
        raise ConfigError(f"the onnx embedding backends support one of mean, cls or max pooling; {model_dir} "
                          f"asks for {pooling}; set embedding_backend = \"torch\" for this model")
    bert_config = model_dir / "sentence_bert_config.json"
    st_config = json.loads(bert_config.read_text()) if bert_config.is_file() else {}
    return {"pooling": modes[0], "dimension": int(pooling["word_embedding_dimension"]),
            "max_seq_length": int(st_config.get("max_seq_length") or 512),
            "do_lower_case": bool(st_config.get("do_lower_case", False))}


def shipped_onnx(model_dir: Path) -> Path | None:
    """The fp32 ONNX file a model folder ships (sentence-transformers' `onnx/` layout), if any."""
    path = model_dir / "onnx" / FP32_FILE
    return path if path.is_file() else None


def prepare_onnx_model(model_dir: str | Path, cache_dir: str | Path, quantized: bool) -> Path:
    """The ONNX file for `model_dir` (fp32, or int8 when `quantized`), exported into `cache_dir`
    the first time it is needed and reused after."""
    model_dir, cache_dir = Path(model_dir), Path(cache_dir)
    fp32 = shipped_onnx(model_dir) or cache_dir / FP32_FILE
    if not fp32.is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        _write_atomically(fp32, lambda tmp: _export(model_dir, tmp))
    if not quantized:
        return fp32
    int8 = cache_dir / INT8_FILE
    if not int8.is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        _write_atomically(int8, lambda tmp: _quantize(fp32, tmp))
    return int8


def _write_atomically(final: Path, write) -> None:
    tmp = final.with_name(f".{final.name}.{os.getpid()}.partial")
    try:
        write(tmp)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def _export(model_dir: Path, out: Path) -> None:
    import torch
    from transformers import AutoModel, AutoTokenizer

    # Eager attention traces to plain MatMul/Softmax, which ONNX Runtime fuses into one Attention op;
    # the SDPA path does not fuse.
    model = AutoModel.from_pretrained(model_dir, attn_implementation="eager").eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    example = tokenizer(_CHECK_TEXTS[:2], padding=True, return_tensors="pt")
    names = list(example.keys())

    class LastHiddenState(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *inputs):
            return self.inner(**dict(zip(names, inputs))).last_hidden_state

    raw = out.with_name(out.name + ".raw")
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's and the legacy exporter's notices
            torch.onnx.export(
                LastHiddenState(model), tuple(example[n] for n in names), str(raw), dynamo=False,
                input_names=names, output_names=["last_hidden_state"], opset_version=17,
                dynamic_axes={n: {0: "batch", 1: "sequence"} for n in [*names, "last_hidden_state"]},
            )
        _fuse(raw, model.config, out)
    except OnnxExportError:
        raise
    except Exception as exc:  # the exporter raises many kinds; all mean the same to the user
        raise OnnxExportError(
            f"exporting {model_dir} to ONNX failed ({type(exc).__name__}: {exc}); "
            "set embedding_backend = \"torch\" to embed without ONNX"
        ) from exc
    finally:
        raw.unlink(missing_ok=True)
    _check_against_torch(model_dir, out)


def _fuse(raw: Path, config, out: Path) -> None:
    """ONNX Runtime's transformer fusions (Attention, SkipLayerNorm, BiasGelu) for BERT models;
    other architectures are kept as exported (ONNX Runtime still applies its generic ones)."""
    if config.model_type != "bert":
        raw.replace(out)
        return
    with _root_logging_kept():  # the optimizer imports onnxruntime.quantization
        from onnxruntime.transformers.optimizer import optimize_model

    optimized = optimize_model(str(raw), model_type="bert", num_heads=config.num_attention_heads,
                               hidden_size=config.hidden_size, opt_level=1)
    optimized.save_model_to_file(str(out))


def _quantize(fp32: Path, out: Path) -> None:
    with _root_logging_kept():
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic

        model = onnx.load(str(fp32))
        quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8, per_channel=True,
                         nodes_to_exclude=_after_gelu(model),
                         # fused ops (Attention, BiasGelu) have no registered output types
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


def _after_gelu(model) -> list[str]:
    """The MatMuls that read a GELU's output: each feed-forward block's down-projection. Dynamic
    quantisation gives their activations one int8 scale per tensor, and GELU outputs have outliers
    that such a scale flattens; kept in fp32 they lift all-MiniLM-L6-v2's worst cosine to torch from
    0.983 to 0.993 (its mean from 0.993 to 0.997) for a third of int8's speed-up."""
    gelu_outputs = {o for n in model.graph.node if n.op_type in ("Gelu", "BiasGelu", "FastGelu") for o in n.output}
    return [n.name for n in model.graph.node if n.op_type == "MatMul" and n.input[0] in gelu_outputs]


@contextmanager
def _root_logging_kept():
    """`onnxruntime.quantization` calls `logging.basicConfig(level=INFO)` when imported, which would
    make every library in the tutor's process log at INFO; this puts the root logger back, and
    drops the quantizer's advice to pre-process (meant for static quantisation, not ours)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    advice = _DropMessage("pre-processing before quantization")
    root.addFilter(advice)
    try:
        yield
    finally:
        root.removeFilter(advice)
        root.handlers[:] = handlers
        root.setLevel(level)


class _DropMessage(logging.Filter):
    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


def _check_against_torch(model_dir: Path, onnx_file: Path, least_cosine: float = 0.999) -> None:
    from sentence_transformers import SentenceTransformer

    expected = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True).encode(
        _CHECK_TEXTS, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    got = OnnxSentenceEncoder(model_dir, onnx_file).encode(_CHECK_TEXTS, batch_size=len(_CHECK_TEXTS))
    worst = float(np.min(np.sum(expected * got, axis=1)))
    if worst < least_cosine:
        raise OnnxExportError(
            f"the ONNX export of {model_dir} does not reproduce the torch model (cosine {worst:.4f} < "
            f"{least_cosine}); set embedding_backend = \"torch\" for this model"
        )


class OnnxSentenceEncoder:
    """Tokenize, run the ONNX graph, pool and normalise: what `SentenceTransformer.encode` does for a
    Transformer + Pooling (+ Normalize) model, with the same tokenizer and sequence cap."""

    def __init__(self, model_dir: str | Path, onnx_file: str | Path, threads: int = 0):
        self.model_dir = Path(model_dir)
        self.onnx_file = Path(onnx_file)
        self.threads = threads  # 0: ONNX Runtime's default, one per core (read when the session starts)
        self.layout = model_layout(self.model_dir)

    @cached_property
    def tokenizer(self):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.model_dir, model_max_length=self.max_seq_length)

    @cached_property
    def session(self):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only
        options.intra_op_num_threads = self.threads
        return ort.InferenceSession(str(self.onnx_file), options, providers=["CPUExecutionProvider"])

    @property
    def max_seq_length(self) -> int:
        return self.layout["max_seq_length"]

    def get_embedding_dimension(self) -> int:
        return self.layout["dimension"]

    def encode(self, texts: list[str], batch_size: int = 64, **_st_options) -> np.ndarray:
        """L2-normalised float32 vectors, row i for texts[i]. Texts are batched longest first, as
        sentence-transformers does, so a batch pads to similar lengths. (`_st_options` takes
        SentenceTransformer.encode's flags, which never change what this returns.)"""
        wanted = {i.name for i in self.session.get_inputs()}
        out = np.zeros((len(texts), self.get_embedding_dimension()), dtype=np.float32)
        order = np.argsort([-len(t) for t in texts], kind="stable")
        for start in range(0, len(texts), batch_size):
            rows = order[start:start + batch_size]
            batch = [texts[i].lower() if self.layout["do_lower_case"] else texts[i] for i in rows]
            encoded = self.tokenizer(batch, padding=True, truncation=True, max_length=self.max_seq_length,
                                     return_tensors="np")
            feeds = {name: np.asarray(encoded[name], dtype=np.int64) for name in wanted}
            hidden = self.session.run(None, feeds)[0]
            out[rows] = _pool(hidden, encoded["attention_mask"], self.layout["pooling"])
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out


def _pool(hidden: np.ndarray, mask: np.ndarray, mode: str) -> np.ndarray:
    if mode == "cls":
        return hidden[:, 0]
    mask = mask[..., None].astype(hidden.dtype)
    if mode == "max":
        return np.where(mask > 0, hidden, -1e9).max(axis=1)
    return (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
