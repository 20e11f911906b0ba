#!/usr/bin/env bash
# The GPU figures of the README in one run: every contestant at bfloat16, batch 256,
# 224x224 (benchmarks/bench.py), then ours beside copies of ours with one speed lever undone,
# and ours with XLA's command buffers off, so each lever's share shows. JSON files and a log
# go to $OUT (default /tmp/bench); each step has its own time limit, so a slow one cannot
# take the others' results with it.
#     bash benchmarks/run_gpu.sh
set -u
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/bench}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
# JAX and torch share the card in one process: leave torch room.
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.5
python="${PYTHON:-python3}"
common=(--device gpu --batch 256 --image_size 224 --dtype bfloat16 --steps 10)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
"$python" -c "import jax, torch; print('jax', jax.__version__, 'torch', torch.__version__, jax.devices())"

echo "== every contestant"
timeout 360 "$python" benchmarks/bench.py "${common[@]}" --repeats 5 --json "$out/gpu_bf16_b256.json"
echo "== speed levers (ours only)"
timeout 240 "$python" benchmarks/bench.py "${common[@]}" --repeats 3 --no_torch \
  --levers merge_1x1,separable_max_pool --json "$out/gpu_bf16_b256_levers.json"
echo "== ours with XLA's command buffers off"
XLA_FLAGS="--xla_gpu_enable_command_buffer=" timeout 120 "$python" benchmarks/bench.py "${common[@]}" \
  --repeats 3 --no_torch --json "$out/gpu_bf16_b256_no_command_buffer.json"
