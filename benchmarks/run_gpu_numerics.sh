#!/usr/bin/env bash
# Numerics on the GPU, after benchmarks/run_gpu.sh (phase a of which profiles the train step),
# in under 4 minutes, each part under its own time limit, output into $OUT (default
# /tmp/bench_numerics) and its log:
#   parity_highest / parity_default  benchmarks/parity.py at jax.default_matmul_precision
#       "highest" (full float32) and "default" (TF32 on an NVIDIA GPU): eval logits (also with
#       BatchNorm folded), train outputs and gradients in float32 against torch on the CPU (the
#       float64 figures, which the precision does not touch, are the CPU's: docs/parity.md);
#   bf16_numerics      benchmarks/bf16_numerics.py: how far bfloat16 compute moves outputs and
#       gradients from float32 at batch 64, 224x224.
# Nothing here needs TensorFlow (a GPU image with JAX and PyTorch but no tf.data runs it all).
#     bash benchmarks/run_gpu_numerics.sh
# BUDGET (default 195 s) scales the limits; BATCH and IMAGE (default 64, 224) are
# bf16_numerics' batch and image size. Rehearsal on a CPU (the same parity figures, on the CPU;
# bf16_numerics small: XLA:CPU compiles its bfloat16 gradients slowly):
#     BATCH=4 IMAGE=64 BUDGET=1200 bash benchmarks/run_gpu_numerics.sh   (where JAX sees no GPU)
set -u  # not -e: a part that fails or runs out of time must not stop the next
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/bench_numerics}"
log="$out/run_gpu_numerics.log"
mkdir -p "$out"
python="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
budget="${BUDGET:-195}"
scaled() { echo $(( $1 * budget / 195 )); }
say() { echo "$*" | tee -a "$log"; }

# part NAME LIMIT COMMAND...: COMMAND under a time limit, its output appended to the log.
part() {
  local name=$1 limit=$2 start=$SECONDS
  shift 2
  say "== $name (limit ${limit}s): $*"
  timeout -k 5 "$limit" "$@" 2>&1 | grep -v "^[WI]0000" | tee -a "$log"
  say "== $name: exit ${PIPESTATUS[0]} after $(( SECONDS - start ))s"
}

say "== $(date -u '+%Y-%m-%d %H:%M:%S') UTC"
part parity_highest "$(scaled 75)" "$python" benchmarks/parity.py --precision highest --skip_float64 --json "$out/parity_highest.json"
part parity_default "$(scaled 75)" "$python" benchmarks/parity.py --precision default --skip_float64 --json "$out/parity_default.json"
part bf16_numerics "$(scaled 45)" "$python" benchmarks/bf16_numerics.py --batch "${BATCH:-64}" --image-size "${IMAGE:-224}" --json "$out/bf16_numerics.json"
