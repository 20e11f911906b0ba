"""Train-step and inference throughput of the JAX GoogLeNet against every torchvision mode, in one process.

    python benchmarks/bench.py [--device cpu|gpu] [--batch 32] [--image_size 224]
                               [--dtype float32|bfloat16] [--steps 5] [--repeats 5]
                               [--levers merge_1x1,conv_gradients,separable_max_pool]
                               [--no_torch] [--skip_torch_compile] [--no_onnx] [--json OUT.json]

Model only: the same synthetic device-resident batch (random normal images, random labels)
for every contestant, no input pipeline.
- ours: the trainer's jitted train step (googlenet_jax.training.steps.train_step: both aux
  heads, CE(main) + 0.3 (CE(aux1) + CE(aux2)), BatchNorm statistic updates, SGD momentum 0.9
  with weight decay 1e-4 on kernels, the state donated) and jitted eval-mode inference;
- torchvision's googlenet, the same step (aux heads, the same loss, torch.optim.SGD with
  momentum and weight decay) and inference (`torch.inference_mode`), in three modes: eager
  NCHW, eager channels_last, and `torch.compile` of the model in channels_last. With
  `--dtype bfloat16` every torch mode runs under bfloat16 autocast (AMP) and ours computes in
  bfloat16 with float32 parameters;
- on the CPU in float32, `onnxruntime`: our ONNX export (`python -m googlenet_jax.export
  --format onnx`) run by onnxruntime with as many intra-op threads as cores, inference only.
Compilation and warm-up are excluded from the throughput and reported on their own (ours:
lower + compile of each function; torch.compile: its first call minus a steady-state call,
with a fresh inductor cache). `--levers` adds, per lever named, a copy of ours traced with that
speed lever replaced by the plain form (LEVERS below), and reports ours / that copy as
`<lever>_train_gain` and `<lever>_infer_gain`.
Each figure is the median over `--repeats` timed blocks of `--steps` calls, with min and
max; the contestants take turns block by block, each round starting one contestant later, so
a change in the machine's load hits them all alike. Peak memory: ours from XLA's compiled
memory analysis (arguments, outputs and temporaries); on a GPU also the device's peak;
torch's only on a GPU (CUDA allocator).
Ratios (ours / the fastest torch mode for that job) are the figures that travel between
machines; absolute numbers on a shared machine do not.
"""
import argparse
import datetime
import functools
import json
import os
import pathlib
import platform
import statistics
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).parents[1]))
from googlenet_jax.cli import quiet_tensorflow  # noqa: E402

quiet_tensorflow()
# A fresh inductor cache, so torch.compile's reported compile time is a cold one, as ours is.
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="bench_inductor_"))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from googlenet_jax.inference import onnx_export  # noqa: E402
from googlenet_jax.model import ComputeForms, GoogLeNet  # noqa: E402
from googlenet_jax.training import optim, steps  # noqa: E402
from googlenet_jax.training.train_state import create_train_state  # noqa: E402

AUX_WEIGHT = 0.3
LEARNING_RATE, MOMENTUM, WEIGHT_DECAY = 0.01, 0.9, 1e-4
NUM_CLASSES = 1000
TORCH_MODES = {"torch": "eager NCHW", "torch_cl": "eager channels_last",
               "torch_compile": "torch.compile channels_last"}


# Speed levers that `--levers` undoes, one at a time, in extra copies of our contestants, to
# measure what each gives in the same run: name -> the model's ComputeForms field that holds it.
LEVERS = {
    "merge_1x1": "merged_1x1",  # an Inception's input 1x1s as one convolution
    "separable_max_pool": "separable_max_pool",  # vs one reduce_window
    "conv_gradients": "cpu_conv_gradients",  # CPU: matmul forms vs XLA's own
}


class Contestant:
    """One timed job: `run()` does one call and waits for it; `steps` calls make a block."""

    def __init__(self, prefix, job, run, batch):
        self.prefix, self.job, self.run, self.batch, self.seconds = prefix, job, run, batch, []

    def time_block(self, steps_per_block):
        start = time.perf_counter()
        for _ in range(steps_per_block):
            self.run()
        self.seconds.append((time.perf_counter() - start) / steps_per_block)

    def summary(self):
        rates = sorted(self.batch / s for s in self.seconds)
        return {"img_s": statistics.median(rates), "img_s_min": rates[0], "img_s_max": rates[-1]}


def synthetic_batch(batch, image_size):
    rng = np.random.default_rng(0)
    images = rng.standard_normal((batch, image_size, image_size, 3)).astype(np.float32)
    labels = rng.integers(0, NUM_CLASSES, batch).astype(np.int32)
    return images, labels


def _progress(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _compiled(fn, *args, donate_argnums=()):
    start = time.perf_counter()
    compiled = jax.jit(fn, donate_argnums=donate_argnums).lower(*args).compile()
    _progress(f"compiled ours in {time.perf_counter() - start:.1f}s")
    return compiled, time.perf_counter() - start


def _memory_mb(compiled):
    analysis = compiled.memory_analysis()
    if analysis is None:
        return None
    total = (analysis.argument_size_in_bytes + analysis.output_size_in_bytes
             + analysis.temp_size_in_bytes - analysis.alias_size_in_bytes)
    return total / 2**20


def jax_contestants(images, labels, dtype, device, jobs, prefix="jax", forms=ComputeForms()):
    """Our train step and inference (those in `jobs`), compiled, with their compile times and memory."""
    model = GoogLeNet(num_classes=NUM_CLASSES, dtype=jnp.dtype(dtype), forms=forms)
    tx = optax.chain(optax.add_decayed_weights(WEIGHT_DECAY, mask=optim.weight_decay_mask),
                     optax.sgd(LEARNING_RATE, momentum=MOMENTUM))
    with jax.default_device(device):
        state = create_train_state(model, tx, seed=0, image_size=images.shape[1], use_ema=False)
    batch = {"image": jax.device_put(images, device), "label": jax.device_put(labels, device)}
    train_step = functools.partial(
        steps.train_step, model=model, tx=tx, learning_rate_fn=lambda step: LEARNING_RATE,
        aux_weight=AUX_WEIGHT, label_smoothing=0.0, ema_decay=0.0, axis_name=None)
    # A copy: the train step donates (and so deletes) the state's own buffers.
    variables = jax.tree.map(jnp.copy, {"params": state.params, "batch_stats": state.batch_stats})
    holder, info, contestants = {"state": state}, {}, []

    if "train" in jobs:
        train, info[f"{prefix}_train_compile_s"] = _compiled(train_step, state, batch, donate_argnums=(0,))
        info[f"{prefix}_train_memory_mb"] = _memory_mb(train)

        def train_once():
            holder["state"], metrics = train(holder["state"], batch)
            metrics["loss"].block_until_ready()

        contestants.append(Contestant(prefix, "train", train_once, len(labels)))
    if "infer" in jobs:
        infer, info[f"{prefix}_infer_compile_s"] = _compiled(
            lambda v, x: model.apply(v, x, train=False), variables, batch["image"])
        info[f"{prefix}_infer_memory_mb"] = _memory_mb(infer)

        def infer_once():
            infer(variables, batch["image"]).block_until_ready()

        contestants.append(Contestant(prefix, "infer", infer_once, len(labels)))
    if device.platform == "gpu":
        info[f"{prefix}_peak_memory_mb"] = device.memory_stats()["peak_bytes_in_use"] / 2**20
    return contestants, info


def onnxruntime_contestant(images):
    """Our ONNX export (googlenet_jax/inference/onnx_export.py) of a random-weight model, run by
    onnxruntime on the CPU with as many intra-op threads as cores: CPU serving."""
    import onnxruntime

    model = GoogLeNet(num_classes=NUM_CLASSES, aux_logits=False)
    shapes = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), images[:1])
    rng = np.random.default_rng(0)
    variables = {"params": jax.tree.map(lambda s: rng.normal(0.0, 0.01, s.shape).astype(np.float32),
                                        shapes["params"]),
                 "batch_stats": jax.tree.map(lambda s: np.ones(s.shape, np.float32), shapes["batch_stats"])}
    proto = onnx_export.to_onnx(model, variables, logits=True, image_size=images.shape[1])
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = os.cpu_count()
    session = onnxruntime.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])

    def infer_once():
        session.run(None, {"images": images})

    infer_once()
    _progress("onnxruntime infer warmed up")
    return Contestant("onnxruntime", "infer", infer_once, len(images)), {
        "onnxruntime_version": onnxruntime.__version__, "onnxruntime_threads": os.cpu_count()}


def torch_contestants(images, labels, dtype, device, modes, jobs):
    """torchvision's googlenet train step and inference in each mode, warmed up."""
    import torch
    import torchvision

    torch_device = "cuda" if device == "gpu" else "cpu"
    torch.backends.cudnn.benchmark = True  # what a performance-minded torch user sets
    sync = torch.cuda.synchronize if device == "gpu" else (lambda: None)
    nchw = torch.from_numpy(images.transpose(0, 3, 1, 2).copy()).to(torch_device)
    targets = torch.from_numpy(labels.astype(np.int64)).to(torch_device)
    cross_entropy = torch.nn.functional.cross_entropy
    contestants, info = [], {}
    for mode in modes:
        torch.manual_seed(0)
        net = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True).to(torch_device)
        x = nchw
        if mode != "torch":
            net = net.to(memory_format=torch.channels_last)
            x = nchw.contiguous(memory_format=torch.channels_last)
        optimizer = torch.optim.SGD(net.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM,
                                    weight_decay=WEIGHT_DECAY)
        module = torch.compile(net) if mode == "torch_compile" else net

        def autocast():
            return torch.autocast(torch_device, dtype=torch.bfloat16, enabled=dtype == "bfloat16")

        def train_once(module=module, net=net, optimizer=optimizer, x=x):
            net.train()
            with autocast():
                out = module(x)
                loss = cross_entropy(out.logits, targets) + AUX_WEIGHT * (
                    cross_entropy(out.aux_logits1, targets) + cross_entropy(out.aux_logits2, targets))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            sync()

        def infer_once(module=module, net=net, x=x):
            net.eval()
            with torch.inference_mode(), autocast():
                module(x)
            sync()

        for job, run in (("train", train_once), ("infer", infer_once)):
            if job not in jobs:
                continue
            first = time.perf_counter()
            run()
            first = time.perf_counter() - first
            steady = time.perf_counter()
            run()
            steady = time.perf_counter() - steady
            if mode == "torch_compile":
                info[f"torch_compile_{job}_compile_s"] = first - steady
            _progress(f"{mode} {job} warmed up ({first:.1f}s first call)")
            contestants.append(Contestant(mode, job, run, len(labels)))
        if device == "gpu":
            info[f"{mode}_peak_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
            torch.cuda.reset_peak_memory_stats()
    if "torch_compile" in modes:
        info["torch_compile_s"] = sum(info[f"torch_compile_{job}_compile_s"] for job in jobs)
    info["torch_version"], info["torch_threads"] = torch.__version__, torch.get_num_threads()
    return contestants, info


def report(args, contestants, info, device):
    result = {"device": device.device_kind, "platform": device.platform, "batch": args.batch,
              "image_size": args.image_size, "dtype": args.dtype,
              "date": datetime.date.today().isoformat(), "jax_version": jax.__version__,
              "cpu_count": os.cpu_count(), "machine": platform.machine(),
              "steps_per_block": args.steps, "repeats": args.repeats, "levers": args.levers,
              "xla_flags": os.environ.get("XLA_FLAGS", "")}
    for contestant in contestants:
        for key, value in contestant.summary().items():
            result[f"{contestant.prefix}_{contestant.job}_{key}"] = value
    result.update(info)
    for job in ("train", "infer"):
        torch_rates = {mode: result[f"{mode}_{job}_img_s"] for mode in TORCH_MODES
                       if f"{mode}_{job}_img_s" in result}
        if torch_rates:
            best = max(torch_rates, key=torch_rates.get)
            result[f"best_torch_{job}"] = TORCH_MODES[best]
            result[f"{job}_ratio_vs_best_torch"] = result[f"jax_{job}_img_s"] / torch_rates[best]
            if f"onnxruntime_{job}_img_s" in result:
                result[f"onnxruntime_{job}_ratio_vs_best_torch"] = (result[f"onnxruntime_{job}_img_s"]
                                                                   / torch_rates[best])
        for lever in args.levers.split(","):
            if lever:  # what the lever gives: ours with it / ours without it
                without = result[f"jax_without_{lever}_{job}_img_s"]
                result[f"{lever}_{job}_gain"] = result[f"jax_{job}_img_s"] / without
    return result


def print_table(result):
    print(f"\n{result['device']}, batch {result['batch']}, {result['image_size']}x{result['image_size']}, "
          f"{result['dtype']} (img/s, median of {result['repeats']} blocks [min, max])")
    names = {"jax": "googlenet_jax (jit)",
             **{f"jax_without_{lever}": f"googlenet_jax without {lever}" for lever in LEVERS},
             **{k: f"torchvision {v}" for k, v in TORCH_MODES.items()},
             "onnxruntime": "googlenet_jax's ONNX file in onnxruntime"}
    for job in ("train", "infer"):
        for prefix, label in names.items():
            key = f"{prefix}_{job}_img_s"
            if key in result:
                print(f"  {job:5s} {label:42s} {result[key]:9.1f}  "
                      f"[{result[key + '_min']:.1f}, {result[key + '_max']:.1f}]")
        for lever in LEVERS:
            if f"{lever}_{job}_gain" in result:
                print(f"  {job:5s} {lever} gives x{result[f'{lever}_{job}_gain']:.2f}")
        if f"{job}_ratio_vs_best_torch" in result:
            print(f"  {job:5s} ours / best torch ({result[f'best_torch_{job}']}): "
                  f"x{result[f'{job}_ratio_vs_best_torch']:.2f}")
        if f"onnxruntime_{job}_ratio_vs_best_torch" in result:
            print(f"  {job:5s} onnxruntime / best torch: x{result[f'onnxruntime_{job}_ratio_vs_best_torch']:.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "gpu"), default=None,
                        help="default: the GPU when JAX sees one, else the CPU")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--steps", type=int, default=5, help="calls per timed block")
    parser.add_argument("--repeats", type=int, default=5, help="timed blocks per contestant")
    parser.add_argument("--no_torch", action="store_true", help="time ours only")
    parser.add_argument("--skip_torch_compile", action="store_true",
                        help="leave out torch.compile (its compilation takes minutes on a small CPU)")
    parser.add_argument("--levers", default="",
                        help=f"comma-separated speed levers to measure, each by an extra copy of ours "
                             f"without it: {', '.join(LEVERS)}")
    parser.add_argument("--no_onnx", action="store_true",
                        help="leave out onnxruntime (it runs our ONNX export on the CPU, float32 only)")
    parser.add_argument("--infer_only", action="store_true",
                        help="time inference only (skips every train step and its compilation)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    levers = [name for name in args.levers.split(",") if name]
    unknown = sorted(set(levers) - set(LEVERS))
    if unknown:
        parser.error(f"--levers: unknown lever(s) {', '.join(unknown)}; known: {', '.join(LEVERS)}")
    if args.batch < 1 or args.image_size < 15 or args.steps < 1 or args.repeats < 1:
        parser.error("--batch, --steps and --repeats must be positive and --image_size at least 15")
    platform_name = args.device or ("gpu" if jax.default_backend() == "gpu" else "cpu")
    try:
        device = jax.devices(platform_name)[0]
    except RuntimeError as error:
        parser.error(f"--device {platform_name}: JAX has no such device ({error})")

    jobs = ("infer",) if args.infer_only else ("train", "infer")
    images, labels = synthetic_batch(args.batch, args.image_size)
    contestants, info = jax_contestants(images, labels, args.dtype, device, jobs)
    for lever in levers:
        more, lever_info = jax_contestants(images, labels, args.dtype, device, jobs, prefix=f"jax_without_{lever}",
                                           forms=ComputeForms(**{LEVERS[lever]: False}))
        contestants += more
        info.update(lever_info)
    if not args.no_onnx and platform_name == "cpu" and args.dtype == "float32":
        contestant, onnx_info = onnxruntime_contestant(images)
        contestants.append(contestant)
        info.update(onnx_info)
    if not args.no_torch:
        modes = [m for m in TORCH_MODES if not (args.skip_torch_compile and m == "torch_compile")]
        more, torch_info = torch_contestants(images, labels, args.dtype, platform_name, modes, jobs)
        contestants += more
        info.update(torch_info)
    for repeat in range(args.repeats):
        # Each round starts one contestant later: whoever follows torch's blocks (its OpenMP
        # threads spin a while after a call) is a different contestant each round.
        start = repeat % len(contestants)
        for contestant in contestants[start:] + contestants[:start]:
            contestant.time_block(args.steps)
    result = report(args, contestants, info, device)
    print_table(result)
    print(json.dumps(result, indent=2))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
