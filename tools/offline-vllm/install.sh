#!/usr/bin/env bash
# Install what pack.sh packed into TARGET (default /tmp/site) on the offline GPU machine, then:
#   export PYTHONPATH=TARGET:$PYTHONPATH PATH=TARGET/bin:$PATH VLLM_USE_FLASHINFER_SAMPLER=0
# (flashinfer is one of the lazily loaded kernels left out; its sampler must then be off).
set -euo pipefail
TARGET=${1:-/tmp/site}
cd "$(dirname "$0")"
mkdir -p "$TARGET"
xz -T0 -dc vllm-tree.tar.xz | tar x -C "$TARGET"
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$TARGET" wheels/*.whl
mkdir -p "$TARGET/bin"
# The wheel's console script is not created by unpacking; vLLM starts its engine with the `spawn`
# method, which re-imports __main__, so the launcher must guard its call.
printf '#!%s\nimport sys\nfrom vllm.entrypoints.cli.main import main\nif __name__ == "__main__":\n    sys.exit(main())\n' \
  "$(command -v python3)" > "$TARGET/bin/vllm"
chmod +x "$TARGET/bin/vllm"
PYTHONPATH="$TARGET" python3 -c "import vllm; print('vllm', vllm.__version__, 'installed in $TARGET')"
