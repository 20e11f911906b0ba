#!/usr/bin/env bash
# The second GPU call, after benchmarks/run_gpu.sh: numerics on the GPU and a profile of the
# train step, in under 9 minutes, each part under its own time limit, output into $OUT
# (default /tmp/bench_numerics) and its log:
#   parity_highest / parity_default  benchmarks/parity.py at jax.default_matmul_precision
#       "highest" (full float32) and "default" (TF32 on an NVIDIA GPU): eval logits (also with
#       BatchNorm folded), train outputs, float32 and float64 gradients against torch on the CPU;
#   bf16_numerics      benchmarks/bf16_numerics.py: how far bfloat16 compute moves outputs and
#       gradients from float32 at batch 64, 224x224;
#   profile            train.py on the embedded digits at 224x224, batch 256, bfloat16, with
#       --config.profile_steps=21-25, then benchmarks/profile_top.py: the top GPU ops and
#       their share of the step.
#     bash benchmarks/run_gpu_numerics.sh
# Rehearsal on a CPU (small profile run, the parity figures as on the GPU): DEVICE=cpu.
set -u  # not -e: a part that fails or runs out of time must not stop the next
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/bench_numerics}"
log="$out/run_gpu_numerics.log"
mkdir -p "$out"
python="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
size=224 batch=256 steps=30 window=21-25
if [ "${DEVICE:-gpu}" = cpu ]; then
  size=32 batch=16 steps=6 window=4-5
fi

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
part parity_highest 120 "$python" benchmarks/parity.py --precision highest --json "$out/parity_highest.json"
part parity_default 120 "$python" benchmarks/parity.py --precision default --json "$out/parity_default.json"
part bf16_numerics 90 "$python" benchmarks/bf16_numerics.py --batch 64 --json "$out/bf16_numerics.json"
rm -rf "$out/profile"
part profile 150 "$python" train.py --config configs/demo.py --workdir "$out/profile" \
  --config.data_dir="$out/digits" --config.image_size=$size --config.batch_size=$batch \
  --config.eval_batch_size=$batch --config.num_train_steps=$steps --config.profile_steps=$window \
  --config.model.dtype=bfloat16 --config.eval_every_steps=0 --config.log_every_steps=5
part profile_top 30 "$python" benchmarks/profile_top.py "$out/profile" --top 25
