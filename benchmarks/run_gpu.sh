#!/usr/bin/env bash
# The GPU figures of the README in one run of under 6 minutes (BUDGET=340 s), in phases, the
# main comparison first, each under its own time limit so a slow phase cannot take the others'
# results with it:
#   a_bf16      bfloat16, batch 256, 224x224: ours, torch eager NCHW, eager channels_last and
#               torch.compile (the targets: train >= 12,000 img/s, inference >= 40,000 img/s,
#               >= x1.3 the fastest torch mode), then one block of ours' train step and
#               inference traced by jax.profiler into $OUT/profile/{train,infer};
#   b_fp32      the same in float32 (no trace);
#   c_<form>    ours beside a copy of ours with that speed form undone (bfloat16), one phase per
#               form: merged_1x1, separable_max_pool, fold_batch_norm;
#   d_batch*    ours at half and twice the batch (memory: *_memory_mb, jax_peak_memory_mb);
#   e_*         ours with XLA's command buffers off, and with XLA's autotuning off;
#   f_max_autotune  torch.compile mode="max-autotune" alone.
# Phases e and f only get the time the others leave; benchmarks/profile_top.py then prints the
# top GPU operations of phase a's traces. Each phase writes $OUT/<phase>.json (default
# OUT=/tmp/bench), which bench.py rewrites after every contestant and every timing round, so a
# phase cut off keeps its figures so far ("complete": false); all output is also appended to
# $OUT/run_gpu.log. A summary of every JSON ends the output. Nothing here needs TensorFlow.
#     bash benchmarks/run_gpu.sh
# With benchmarks/run_gpu_numerics.sh (under 4 minutes) in the same command, both fit in 10
# minutes. PHASES picks phases by letter (default "a b c d e f"; e.g. PHASES="d e f" to run the
# rest later) and BUDGET the seconds for them all (the limits scale with it).
# Rehearsal on a CPU, the same phases and flags at a small size, with fewer steps and the time
# limits scaled to BUDGET (torch.compile takes minutes on a small CPU: SKIP_TORCH_COMPILE=1):
#     DEVICE=cpu BATCH=4 IMAGE=64 REHEARSAL=1 SKIP_TORCH_COMPILE=1 BUDGET=1000 bash benchmarks/run_gpu.sh
# Other settings: PYTHON (default python3).
set -u  # not -e: a phase that fails or runs out of time must not stop the next
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/bench}"
log="$out/run_gpu.log"
mkdir -p "$out"
rm -rf "$out"/[a-f]_*.json "$out/profile"  # an earlier run's phases would show in the summary
python="${PYTHON:-python3}"
device="${DEVICE:-gpu}" batch="${BATCH:-256}" image="${IMAGE:-224}"
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
# JAX and torch share the card in one process: leave torch room.
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.5
# Phase c's ours is phase a's ours compiled again: load it from a cache (phase a's compile
# times stay cold, as the cache starts empty). The JSON names the cache when one is used.
JAX_COMPILATION_CACHE_DIR="$(mktemp -d)"
export JAX_COMPILATION_CACHE_DIR

# Time limits, in seconds on a GPU, for BUDGET=340 (the default): the whole script stays under
# ~350 s (a phase may overrun its limit by 5 s before it is killed). Estimates: XLA compiles
# ours (train + inference) in ~30-60 s, torch.compile (default) the train step and inference in
# ~60-120 s, eager torch warms up in seconds, and a timing round of every contestant (10 steps
# each) takes ~3 s.
budget="${BUDGET:-340}"
phases=" ${PHASES:-a b c d e f} "
scaled() { echo $(( $1 * budget / 340 )); }
declare -A cap=(
  [a]=$(scaled 140)  # ours + eager torch + rounds ~80 s, torch.compile ~100 s (cut off: the rest stays)
  [b]=$(scaled 60)   # ours and eager first, then torch.compile if time is left
  [c]=$(scaled 25)   # each form: ours from the cache, a copy without the form compiled (~20-30 s)
  [d]=$(scaled 25)   # each batch size: ours compiled (~20-30 s) and 3 rounds
  [e]=0 [f]=0        # only what the others leave
)
min_limit=$(scaled 20)  # a phase with less than this left is skipped
forms=(merged_1x1 separable_max_pool fold_batch_norm)
batches=($(( batch / 2 )) $(( batch * 2 )))
# A phase that ends early leaves its time to the next, while every later phase keeps its own
# limit in reserve: the reserve starts as the sum of the chosen phases' limits.
reserve=0
for letter in a b; do [[ $phases == *" $letter "* ]] && reserve=$(( reserve + cap[$letter] )); done
[[ $phases == *" c "* ]] && reserve=$(( reserve + ${#forms[@]} * cap[c] ))
[[ $phases == *" d "* ]] && reserve=$(( reserve + ${#batches[@]} * cap[d] ))
deadline=$(( SECONDS + budget ))

steps=10 repeats=5
[ -n "${REHEARSAL:-}" ] && steps=2 repeats=2
common=(--device "$device" --image_size "$image" --steps "$steps" --no_onnx)
compile=()
[ -n "${SKIP_TORCH_COMPILE:-}" ] && compile=(--skip_torch_compile)

say() { echo "$*" | tee -a "$log"; }

# run_phase NAME CAP BENCH_ARGS...: bench.py with BENCH_ARGS and --json $out/NAME.json, under
# a time limit of CAP plus what earlier phases left over (CAP 0: only the leftover); nothing
# when the phase's letter (NAME's first) is not in PHASES.
run_phase() {
  local name=$1 cap=$2 start=$SECONDS
  shift 2
  [[ $phases == *" ${name:0:1} "* ]] || return
  reserve=$(( reserve - cap ))
  local limit=$(( deadline - SECONDS - reserve ))
  if (( limit < min_limit )); then
    say "== $name: skipped, ${limit}s left for it"
    return
  fi
  say "== $name (limit ${limit}s): bench.py $*"
  timeout -k 5 "$limit" "$python" benchmarks/bench.py "$@" --json "$out/$name.json" 2>&1 | tee -a "$log"
  local rc=${PIPESTATUS[0]} note=""
  case $rc in 0) ;; 124 | 137) note=", cut off at its limit" ;; *) note=", failed" ;; esac
  say "== $name: exit $rc after $(( SECONDS - start ))s$note"
}

say "== $(date -u '+%Y-%m-%d %H:%M:%S') UTC, budget ${budget}s, device $device, batch $batch, image $image"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee -a "$log"
fi

ours=(--no_torch --repeats 3 --dtype bfloat16)
run_phase a_bf16 "${cap[a]}" "${common[@]}" --batch "$batch" --dtype bfloat16 --repeats "$repeats" "${compile[@]}" \
  --profile "$out/profile"
run_phase b_fp32 "${cap[b]}" "${common[@]}" --batch "$batch" --dtype float32 --repeats 3 "${compile[@]}"
for form in "${forms[@]}"; do
  run_phase "c_$form" "${cap[c]}" "${common[@]}" --batch "$batch" "${ours[@]}" --without "$form"
done
for b in "${batches[@]}"; do
  run_phase "d_batch$b" "${cap[d]}" "${common[@]}" --batch "$b" "${ours[@]}"
done
XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_enable_command_buffer=" \
  run_phase e_no_command_buffer "${cap[e]}" "${common[@]}" --batch "$batch" "${ours[@]}"
XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_autotune_level=0" \
  run_phase e_autotune_0 "${cap[e]}" "${common[@]}" --batch "$batch" "${ours[@]}"
if [ -z "${SKIP_TORCH_COMPILE:-}" ]; then
  # torch alone: no JAX memory reserved; its figures compare with phase a's (same settings).
  XLA_PYTHON_CLIENT_PREALLOCATE=false run_phase f_max_autotune "${cap[f]}" "${common[@]}" --batch "$batch" \
    --dtype bfloat16 --repeats 3 --no_jax --no_torch_eager --torch_compile_modes max-autotune
fi
plane=/device:GPU:0
[ "$device" = cpu ] && plane=/host:CPU
for job in train infer; do
  if [ -d "$out/profile/$job" ]; then
    say "== phase a's trace of ours' $job: the top operations"
    timeout -k 5 60 "$python" benchmarks/profile_top.py "$out/profile/$job" --top 25 --plane "$plane" 2>&1 | tee -a "$log"
  fi
done
rm -rf "$JAX_COMPILATION_CACHE_DIR"

say "== summary (img/s; ratio: ours / the fastest torch mode in the same phase)"
"$python" - "$out" <<'EOF' 2>&1 | tee -a "$log"
import json, pathlib, sys


def figures(r, job):
    """ours, the fastest torch mode, their ratio and the gains of its speed forms for one job."""
    found = []
    if f"jax_{job}_img_s" in r:
        found.append(f"ours {r[f'jax_{job}_img_s']:.0f}")
    torch = {k[:-len(f"_{job}_img_s")]: v for k, v in r.items()
             if k.startswith("torch") and k.endswith(f"_{job}_img_s")}
    if torch:
        best = max(torch, key=torch.get)
        found.append(f"{best} {torch[best]:.0f}")
    if f"{job}_ratio_vs_best_torch" in r:
        found.append(f"x{r[f'{job}_ratio_vs_best_torch']:.2f}")
    found += [f"{k[:-len(f'_{job}_gain')]} x{v:.2f}" for k, v in r.items() if k.endswith(f"_{job}_gain")]
    return f"{job}: {' '.join(found)}" if found else None


def summary(r):
    parts = [f"{r['device']} {r['dtype']} b{r['batch']}",
             f"{'complete' if r['complete'] else 'PARTIAL'}, {r['rounds_done']} rounds",
             figures(r, "train"), figures(r, "infer")]
    compiled = [f"{k[:-len('_compile_s')]} {v:.0f}s" for k, v in r.items()
                if k.endswith("_compile_s") and not k.startswith("jax_without")]
    if compiled:
        parts.append(f"compile {', '.join(compiled)}")
    memory = [f"{k[:-len('_mb')]} {v:.0f}" for k, v in r.items()
              if k.startswith("jax_") and k.endswith("memory_mb") and v is not None]
    if memory:
        parts.append(f"MB {', '.join(memory)}")
    if r.get("errors"):
        parts.append(f"ERRORS {r['errors']}")
    if r.get("untimed"):
        parts.append(f"untimed {r['untimed']}")
    return " | ".join(part for part in parts if part)


versions = set()
for path in sorted(pathlib.Path(sys.argv[1]).glob("*.json")):
    try:  # a missing key or a broken file must not hide the others
        result = json.loads(path.read_text())
        print(f"{path.stem}: {summary(result)}")
        versions.add(f"jax {result['jax_version']}, torch {result.get('torch_version', '-')}")
    except Exception as error:
        print(f"{path.stem}: unreadable ({type(error).__name__}: {error})")
print("; ".join(sorted(versions)))
EOF
