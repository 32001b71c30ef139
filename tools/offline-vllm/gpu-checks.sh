#!/usr/bin/env bash
# The GPU checks, in one go, on a machine where install.sh has run:
#   tools/offline-vllm/gpu-checks.sh SITE DATA_DIR LOG_DIR [BENCH_SECONDS]
# SITE is install.sh's target; DATA_DIR holds the ingested course (index/) and the two trained
# adapters (adapters/dl-intro, adapters/dl-intro-qkvo); LOG_DIR gets one log per step, written as it
# runs (so a step cut off by a time limit still leaves what it printed) and the benchmark's JSON.
# Each step has its own time limit; a failing step does not stop the next.
set -uo pipefail
SITE=${1:?SITE}; DATA=${2:?DATA_DIR}; LOGS=${3:?LOG_DIR}; SECONDS_PER_LEVEL=${4:-10}
cd "$(dirname "$0")/../.."
mkdir -p "$LOGS"
export PYTHONPATH="$SITE:$PWD" PATH="$SITE/bin:$PATH" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1 \
  GRADIO_ANALYTICS_ENABLED=False TOKENIZERS_PARALLELISM=false VLLM_USE_FLASHINFER_SAMPLER=0 \
  VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1 TUTOR_DATA_DIR="$DATA"
step() {  # step NAME LIMIT_S COMMAND...
  local name=$1 limit=$2; shift 2
  local t0=$(date +%s)
  echo "== $name (limit ${limit}s)" | tee -a "$LOGS/steps.log"
  timeout "$limit" "$@" > "$LOGS/$name.log" 2>&1
  local rc=$?
  echo "== $name: exit $rc after $(( $(date +%s) - t0 )) s" | tee -a "$LOGS/steps.log"
  tail -5 "$LOGS/$name.log"
}
step prepare 120 python3 -m tutor.cli model prepare smollm2 --data-dir "$DATA"
step gpu-tests 420 python3 -m pytest -m gpu tests/test_vllm_gpu.py -v -s -p no:cacheprovider
step bench 540 python3 benchmarks/vllm_lora.py --base smollm2 --data-dir "$DATA" --course dl-intro \
  --adapter dl-intro="$DATA/adapters/dl-intro/adapter" --adapter dl-intro-qkvo="$DATA/adapters/dl-intro-qkvo/adapter" \
  --concurrency 1 8 32 --duration "$SECONDS_PER_LEVEL" --gpu-memory-utilization 0.3 --out "$LOGS/bench" \
  --results "$LOGS/vllm-lora-smollm2.json"
