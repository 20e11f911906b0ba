"""Train-step and inference throughput of the JAX GoogLeNet against every torchvision mode, in one process.

    python benchmarks/bench.py [--device cpu|gpu] [--batch 32] [--image_size 224]
                               [--dtype float32|bfloat16] [--steps 5] [--repeats 5]
                               [--without merged_1x1,cpu_conv_gradients,separable_max_pool,fold_batch_norm]
                               [--no_jax] [--no_torch] [--no_torch_eager] [--skip_torch_compile]
                               [--torch_compile_modes default,max-autotune,...]
                               [--no_onnx] [--infer_only] [--json OUT.json] [--profile DIR]

Model only: the same synthetic device-resident batch (random normal images, random labels)
for every contestant, no input pipeline.
- ours: the trainer's jitted train step (googlenet_jax.training.steps.train_step: both aux
  heads, CE(main) + 0.3 (CE(aux1) + CE(aux2)), BatchNorm statistic updates, SGD momentum 0.9
  with weight decay 1e-4 on kernels, the state donated) and jitted eval-mode inference with
  BatchNorm folded into the convolutions (as the Classifier, evaluate and export run it);
- torchvision's googlenet, the same step (aux heads, the same loss, torch.optim.SGD with
  momentum and weight decay) and inference (`torch.inference_mode`), in eager NCHW, eager
  channels_last, and `torch.compile` of the model in channels_last, once per mode of
  `--torch_compile_modes` (default, max-autotune, max-autotune-no-cudagraphs,
  reduce-overhead). With `--dtype bfloat16` every torch mode runs under bfloat16 autocast
  (AMP) and ours computes in bfloat16 with float32 parameters;
- on the CPU in float32, `onnxruntime`: our ONNX export (`python -m googlenet_jax.export
  --format onnx`) run by onnxruntime with as many intra-op threads as cores, inference only.
Compilation and warm-up are excluded from the throughput and reported on their own (ours:
lower + compile of each function, then its first call; torch: its first call, and for
torch.compile its compile time, the first call minus a steady-state one, with a fresh inductor
cache per process, though a later mode may reuse kernels an earlier one built). `--without`
adds, per speed form named (a field of the model's ComputeForms, or fold_batch_norm; WITHOUT
below), a copy of ours traced with that form replaced by the plain one, and reports ours / that
copy as `<form>_train_gain` and `<form>_infer_gain`.

Order and timing: the contestants are built in stages, ours first, then the copies without a form,
onnxruntime and eager torch; then each torch.compile mode (minutes each) as a stage of its
own. After each stage every contestant built so far is timed in `--repeats` rounds, so a run
cut off while torch.compile compiles still has the figures before it; a contestant built early
has more blocks. In a round the contestants take turns, one block of `--steps` calls each,
each round starting one contestant later, so a change in the machine's load hits them all
alike. Each figure is the median over the contestant's blocks, with min and max.

With `--json OUT` the result file is rewritten (atomically) when the run starts, after every
contestant is warm and after every round, with `"complete": false` and `"rounds_done"`, and a
last time with `"complete": true`; SIGTERM (as from `timeout`) or Ctrl-C stops the run, and
the table and file then hold the figures so far.

Peak memory: ours from XLA's compiled memory analysis (arguments, outputs and temporaries);
on a GPU also the device's peak after warm-up (the process's peak so far, so a copy without a form
reports at least ours'); torch's only on a GPU (CUDA allocator, per mode).
Ratios (ours / the fastest torch mode for that job) are the figures that travel between
machines; absolute numbers on a shared machine do not.

`--profile DIR`: after the first stage's timing (before torch.compile, which may be cut off),
one more block of ours' train step and of ours' inference (not the copies without a form),
each traced by `jax.profiler` into DIR/train and DIR/infer
(`plugins/profile/<time>/*.xplane.pb`, as train.py's `profile_steps` writes);
`benchmarks/profile_top.py DIR/train` names the top operations and their share.
"""
import argparse
import dataclasses
import datetime
import functools
import json
import os
import pathlib
import platform
import signal
import statistics
import sys
import tempfile
import time
import traceback

sys.path.insert(0, str(pathlib.Path(__file__).parents[1]))
from googlenet_jax.commands.common import prepare_tensorflow  # noqa: E402

prepare_tensorflow()
# A fresh inductor cache, so torch.compile's reported compile time is a cold one, as ours is.
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="bench_inductor_"))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from googlenet_jax.inference import onnx_export  # noqa: E402
from googlenet_jax.model import ComputeForms, GoogLeNet, fold_batch_norm  # noqa: E402
from googlenet_jax.training import optim, steps  # noqa: E402
from googlenet_jax.training.train_state import create_train_state  # noqa: E402

AUX_WEIGHT = 0.3
LEARNING_RATE, MOMENTUM, WEIGHT_DECAY = 0.01, 0.9, 1e-4
NUM_CLASSES = 1000
# torch.compile's `mode` -> the contestant's name.
COMPILE_MODES = {"default": "torch_compile", "max-autotune": "torch_compile_max_autotune",
                 "max-autotune-no-cudagraphs": "torch_compile_max_autotune_no_cudagraphs",
                 "reduce-overhead": "torch_compile_reduce_overhead"}
EAGER_MODES = {"torch": "eager NCHW", "torch_cl": "eager channels_last"}
TORCH_MODES = {**EAGER_MODES,
               **{name: "torch.compile channels_last" if mode == "default" else f"torch.compile {mode} channels_last"
                  for mode, name in COMPILE_MODES.items()}}


# The speed forms `--without` undoes, one at a time, in extra copies of our contestants, to
# measure what each gives in the same run: the model's ComputeForms fields, by their names, and
# fold_batch_norm (inference only: BatchNorm folded into the convolutions vs run as is).
FOLD_BATCH_NORM = "fold_batch_norm"
WITHOUT = (*(field.name for field in dataclasses.fields(ComputeForms)), FOLD_BATCH_NORM)


class CutOff(BaseException):
    """SIGTERM arrived: stop and report what was measured (a BaseException, like Ctrl-C's, so
    that the handler of a failing contestant does not take it for one)."""


def _cut_off(signum, frame):
    raise CutOff()


class Contestant:
    """One timed job: `run()` does one call and waits for it; `steps` calls make a block."""

    def __init__(self, prefix, job, run, batch):
        self.prefix, self.job, self.run, self.batch, self.seconds = prefix, job, run, batch, []

    @property
    def name(self):
        return f"{self.prefix}_{self.job}"

    def warm_up(self, info):
        """Three calls: the first (compilation, autotuning) and the third (steady state) timed into `info`."""
        _progress(f"{self.name}: first call")
        timed = []
        for call in range(3):
            start = time.perf_counter()
            self.run()
            if call != 1:  # the second call may still record (CUDA graphs) or tune
                timed.append(time.perf_counter() - start)
        info[f"{self.name}_first_call_s"], info[f"{self.name}_steady_call_s"] = timed
        _progress(f"{self.name}: warm, first call {timed[0]:.1f}s, then {timed[1] * 1e3:.1f} ms")
        return timed

    def time_block(self, steps_per_block):
        start = time.perf_counter()
        for _ in range(steps_per_block):
            self.run()
        self.seconds.append((time.perf_counter() - start) / steps_per_block)

    def summary(self):
        rates = sorted(self.batch / s for s in self.seconds)
        return {"img_s": statistics.median(rates), "img_s_min": rates[0], "img_s_max": rates[-1],
                "blocks": len(rates)}


def synthetic_batch(batch, image_size):
    rng = np.random.default_rng(0)
    images = rng.standard_normal((batch, image_size, image_size, 3)).astype(np.float32)
    labels = rng.integers(0, NUM_CLASSES, batch).astype(np.int32)
    return images, labels


def _progress(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _compiled(name, info, fn, *args, donate_argnums=()):
    _progress(f"{name}: compiling")
    start = time.perf_counter()
    compiled = jax.jit(fn, donate_argnums=donate_argnums).lower(*args).compile()
    info[f"{name}_compile_s"] = time.perf_counter() - start
    info[f"{name}_memory_mb"] = _memory_mb(compiled)
    _progress(f"{name}: compiled in {info[f'{name}_compile_s']:.1f}s")
    return compiled


def _memory_mb(compiled):
    analysis = compiled.memory_analysis()
    if analysis is None:
        return None
    total = (analysis.argument_size_in_bytes + analysis.output_size_in_bytes
             + analysis.temp_size_in_bytes - analysis.alias_size_in_bytes)
    return total / 2**20


def jax_contestants(images, labels, dtype, device, jobs, info, prefix="jax", forms=ComputeForms(), fold=True):
    """Our train step and inference (those in `jobs`), each yielded compiled and warm; compile
    times, memory and first calls go into `info`. `fold`: inference with BatchNorm folded."""
    _progress(f"{prefix}: initializing the model")
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
    holder = {"state": state}

    def warm(contestant):
        contestant.warm_up(info)
        if device.platform == "gpu":  # after the first calls, which may allocate more than compiling
            info[f"{prefix}_peak_memory_mb"] = device.memory_stats()["peak_bytes_in_use"] / 2**20
        return contestant

    if "train" in jobs:
        train = _compiled(f"{prefix}_train", info, train_step, state, batch, donate_argnums=(0,))

        def train_once():
            holder["state"], metrics = train(holder["state"], batch)
            metrics["loss"].block_until_ready()

        yield warm(Contestant(prefix, "train", train_once, len(labels)))
    if "infer" in jobs:
        infer_model, infer_variables = fold_batch_norm(model, variables) if fold else (model, variables)
        infer_variables = jax.device_put(infer_variables, device)
        infer = _compiled(f"{prefix}_infer", info, lambda v, x: infer_model.apply(v, x, train=False),
                          infer_variables, batch["image"])

        def infer_once():
            infer(infer_variables, batch["image"]).block_until_ready()

        yield warm(Contestant(prefix, "infer", infer_once, len(labels)))


def onnxruntime_contestant(images, info):
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

    info.update(onnxruntime_version=onnxruntime.__version__, onnxruntime_threads=os.cpu_count())
    contestant = Contestant("onnxruntime", "infer", infer_once, len(images))
    contestant.warm_up(info)
    yield contestant


def torch_contestants(images, labels, dtype, device, mode, jobs, info):
    """torchvision's googlenet train step and inference in one mode (a TORCH_MODES name), each
    yielded warm; for torch.compile its compile time goes into `info`."""
    import torch
    import torchvision

    _progress(f"{mode}: building the model")
    torch_device = "cuda" if device == "gpu" else "cpu"
    torch.backends.cudnn.benchmark = True  # what a performance-minded torch user sets
    sync = torch.cuda.synchronize if device == "gpu" else (lambda: None)
    info["torch_version"], info["torch_threads"] = torch.__version__, torch.get_num_threads()
    x = torch.from_numpy(images.transpose(0, 3, 1, 2).copy()).to(torch_device)
    targets = torch.from_numpy(labels.astype(np.int64)).to(torch_device)
    cross_entropy = torch.nn.functional.cross_entropy
    torch.manual_seed(0)
    net = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True).to(torch_device)
    if mode != "torch":
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(net.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    compile_mode = {name: m for m, name in COMPILE_MODES.items()}.get(mode)
    module, step_begin = net, (lambda: None)
    if compile_mode:
        # Every mode's train and eval graphs share one code object's cache: room for all of them.
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
        module = torch.compile(net, mode=None if compile_mode == "default" else compile_mode)
        step_begin = torch.compiler.cudagraph_mark_step_begin  # CUDA graph modes: a new iteration

    def autocast():
        return torch.autocast(torch_device, dtype=torch.bfloat16, enabled=dtype == "bfloat16")

    def train_once():
        step_begin()
        net.train()
        with autocast():
            out = module(x)
            loss = cross_entropy(out.logits, targets) + AUX_WEIGHT * (
                cross_entropy(out.aux_logits1, targets) + cross_entropy(out.aux_logits2, targets))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sync()

    def infer_once():
        step_begin()
        net.eval()
        with torch.inference_mode(), autocast():
            module(x)
        sync()

    for job, run in (("train", train_once), ("infer", infer_once)):
        if job in jobs:
            contestant = Contestant(mode, job, run, len(labels))
            first, steady = contestant.warm_up(info)
            if compile_mode:
                info[f"{mode}_{job}_compile_s"] = first - steady
            yield contestant
    if device == "gpu":
        info[f"{mode}_peak_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
        torch.cuda.reset_peak_memory_stats()


def report(args, contestants, info, device, rounds_done=0, complete=False):
    """The result from what has been measured so far: contestants without a timed block are
    left out (and listed as `untimed`), ratios and gains only where both sides have figures."""
    result = {"device": device.device_kind, "platform": device.platform, "batch": args.batch,
              "image_size": args.image_size, "dtype": args.dtype,
              "date": datetime.date.today().isoformat(), "jax_version": jax.__version__,
              "cpu_count": os.cpu_count(), "machine": platform.machine(),
              "steps_per_block": args.steps, "repeats": args.repeats, "without": args.without,
              "torch_compile_modes": args.torch_compile_modes,
              "xla_flags": os.environ.get("XLA_FLAGS", ""),
              "jax_compilation_cache": jax.config.jax_compilation_cache_dir or "",
              "complete": complete, "rounds_done": rounds_done,
              "untimed": [c.name for c in contestants if not c.seconds]}
    for contestant in contestants:
        if contestant.seconds:
            for key, value in contestant.summary().items():
                result[f"{contestant.name}_{key}"] = value
    result.update(info)
    for mode in COMPILE_MODES.values():  # a mode's whole compile time, once every job has one
        times = [info.get(f"{mode}_{job}_compile_s") for job in _jobs(args)]
        if all(t is not None for t in times):
            result[f"{mode}_s"] = sum(times)
    for job in ("train", "infer"):
        torch_rates = {mode: result[f"{mode}_{job}_img_s"] for mode in TORCH_MODES
                       if f"{mode}_{job}_img_s" in result}
        if torch_rates:
            best = max(torch_rates, key=torch_rates.get)
            result[f"best_torch_{job}"] = TORCH_MODES[best]
            for prefix, key in (("jax", f"{job}_ratio_vs_best_torch"),
                                ("onnxruntime", f"onnxruntime_{job}_ratio_vs_best_torch")):
                if f"{prefix}_{job}_img_s" in result:
                    result[key] = result[f"{prefix}_{job}_img_s"] / torch_rates[best]
        for form in args.without.split(","):
            ours, without = result.get(f"jax_{job}_img_s"), result.get(f"jax_without_{form}_{job}_img_s")
            if form and ours and without:  # what the form gives: ours with it / ours without it
                result[f"{form}_{job}_gain"] = ours / without
    return result


class Recorder:
    """The contestants built so far and their info; `save()` writes the result file atomically,
    so a run cut off at any point leaves a valid file with what it measured."""

    def __init__(self, args, device):
        self.args, self.device = args, device
        self.contestants, self.info, self.rounds_done = [], {}, 0

    def save(self, complete=False):
        result = report(self.args, self.contestants, self.info, self.device, self.rounds_done, complete)
        if self.args.json:
            path = pathlib.Path(self.args.json)
            temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            temporary.write_text(json.dumps(result, indent=2))
            os.replace(temporary, path)
        return result

    def build(self, stage):
        """Adds every contestant of `stage` ((name, generator of warm contestants) pairs), saving
        after each; one that fails is reported under `errors` and the others go on."""
        for name, generator in stage:
            try:
                for contestant in generator:
                    self.contestants.append(contestant)
                    self.save()
            except Exception as error:  # e.g. out of memory, or a torch.compile mode this device lacks
                traceback.print_exc()
                _progress(f"{name}: failed, going on without it")
                self.info.setdefault("errors", []).append(f"{name}: {type(error).__name__}: {error}"[:500])
                self.save()

    def profile(self, directory, steps_per_block):
        """Traces one block of each of ours' jobs (not the copies) into DIRECTORY/JOB, each step
        annotated; a profiler that cannot start (no access to CUPTI, say) is reported under
        `errors`, and the figures go on."""
        self.info["profile"] = directory
        try:
            for contestant in self.contestants:
                if contestant.prefix == "jax":
                    _progress(f"{contestant.name}: profiling {steps_per_block} calls")
                    with jax.profiler.trace(str(pathlib.Path(directory) / contestant.job)):
                        for step in range(steps_per_block):
                            with jax.profiler.StepTraceAnnotation(contestant.job, step_num=step):
                                contestant.run()
        except Exception as error:
            traceback.print_exc()
            self.info.setdefault("errors", []).append(f"profile: {type(error).__name__}: {error}"[:500])
        self.save()

    def time_rounds(self, rounds, steps_per_block):
        for _ in range(rounds):
            # Each round starts one contestant later: whoever follows torch's blocks (its OpenMP
            # threads spin a while after a call) is a different contestant each round.
            start = self.rounds_done % len(self.contestants)
            began = time.perf_counter()
            for contestant in self.contestants[start:] + self.contestants[:start]:
                contestant.time_block(steps_per_block)
            self.rounds_done += 1
            self.save()
            _progress(f"round {self.rounds_done} done: {len(self.contestants)} contestants "
                      f"in {time.perf_counter() - began:.1f}s")


def _jobs(args):
    return ("infer",) if args.infer_only else ("train", "infer")


def stages(args, images, labels, device, platform_name, info):
    """The contestants' (name, generator) pairs in the order they are built, in stages: ours first
    (so a run cut off keeps the main figures), the quick ones together, then each torch.compile
    mode alone. Generators run nothing until iterated."""
    jobs, quick = _jobs(args), []
    if not args.no_jax:
        quick.append(("jax", jax_contestants(images, labels, args.dtype, device, jobs, info)))
        for form in filter(None, args.without.split(",")):
            prefix = f"jax_without_{form}"
            if form == FOLD_BATCH_NORM:  # inference only
                copy = jax_contestants(images, labels, args.dtype, device, ("infer",), info, prefix=prefix,
                                       fold=False)
            else:
                copy = jax_contestants(images, labels, args.dtype, device, jobs, info, prefix=prefix,
                                       forms=ComputeForms(**{form: False}))
            quick.append((prefix, copy))
    if not (args.no_jax or args.no_onnx) and platform_name == "cpu" and args.dtype == "float32":
        quick.append(("onnxruntime", onnxruntime_contestant(images, info)))
    if args.no_torch:
        return [quick]

    def torch_mode(mode):
        return mode, torch_contestants(images, labels, args.dtype, platform_name, mode, jobs, info)

    if not args.no_torch_eager:
        quick += [torch_mode(mode) for mode in EAGER_MODES]
    compiled = [] if args.skip_torch_compile else [[torch_mode(COMPILE_MODES[mode])]
                                                   for mode in filter(None, args.torch_compile_modes.split(","))]
    return [stage for stage in [quick, *compiled] if stage]


def print_table(result):
    print(f"\n{result['device']}, batch {result['batch']}, {result['image_size']}x{result['image_size']}, "
          f"{result['dtype']} (img/s, median of the blocks [min, max]; {result['rounds_done']} rounds"
          f"{'' if result['complete'] else ', cut off before the end'})")
    names = {"jax": "googlenet_jax (jit)",
             **{f"jax_without_{form}": f"googlenet_jax without {form}" for form in WITHOUT},
             **{k: f"torchvision {v}" for k, v in TORCH_MODES.items()},
             "onnxruntime": "googlenet_jax's ONNX file in onnxruntime"}
    for job in ("train", "infer"):
        for prefix, label in names.items():
            key = f"{prefix}_{job}_img_s"
            if key in result:
                print(f"  {job:5s} {label:50s} {result[key]:9.1f}  "
                      f"[{result[key + '_min']:.1f}, {result[key + '_max']:.1f}] of {result[f'{prefix}_{job}_blocks']}")
        for form in WITHOUT:
            if f"{form}_{job}_gain" in result:
                print(f"  {job:5s} {form} gives x{result[f'{form}_{job}_gain']:.2f}")
        if f"{job}_ratio_vs_best_torch" in result:
            print(f"  {job:5s} ours / best torch ({result[f'best_torch_{job}']}): "
                  f"x{result[f'{job}_ratio_vs_best_torch']:.2f}")
        if f"onnxruntime_{job}_ratio_vs_best_torch" in result:
            print(f"  {job:5s} onnxruntime / best torch: x{result[f'onnxruntime_{job}_ratio_vs_best_torch']:.2f}")
    if result["untimed"]:
        print(f"  not timed: {', '.join(result['untimed'])}")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "gpu"), default=None,
                        help="default: the GPU when JAX sees one, else the CPU")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--steps", type=int, default=5, help="calls per timed block")
    parser.add_argument("--repeats", type=int, default=5, help="timing rounds after each stage")
    parser.add_argument("--no_jax", action="store_true", help="time torch only")
    parser.add_argument("--no_torch", action="store_true", help="time ours only")
    parser.add_argument("--no_torch_eager", action="store_true",
                        help="leave out torch's eager modes (NCHW and channels_last)")
    parser.add_argument("--skip_torch_compile", action="store_true",
                        help="leave out torch.compile (its compilation takes minutes on a small CPU)")
    parser.add_argument("--torch_compile_modes", default="default",
                        help=f"comma-separated torch.compile modes, each a contestant: {', '.join(COMPILE_MODES)}")
    parser.add_argument("--without", default="", metavar="FORM,...",
                        help=f"comma-separated speed forms to measure, each by an extra copy of ours "
                             f"without it: {', '.join(WITHOUT)}")
    parser.add_argument("--no_onnx", action="store_true",
                        help="leave out onnxruntime (it runs our ONNX export on the CPU, float32 only)")
    parser.add_argument("--infer_only", action="store_true",
                        help="time inference only (skips every train step and its compilation)")
    parser.add_argument("--json", help="also write the results to this file, rewritten as they come")
    parser.add_argument("--profile", metavar="DIR",
                        help="after the first stage's timing, trace one block of ours' train step and inference "
                             "into DIR/train and DIR/infer (benchmarks/profile_top.py reads them)")
    args = parser.parse_args()
    for flag, known in (("without", WITHOUT), ("torch_compile_modes", COMPILE_MODES)):
        unknown = sorted(set(filter(None, getattr(args, flag).split(","))) - set(known))
        if unknown:
            parser.error(f"--{flag}: unknown {', '.join(unknown)}; known: {', '.join(known)}")
    if args.batch < 1 or args.image_size < 15 or args.steps < 1 or args.repeats < 1:
        parser.error("--batch, --steps and --repeats must be positive and --image_size at least 15")
    if args.no_jax and args.no_torch:
        parser.error("--no_jax and --no_torch leave nothing to time")
    if args.no_jax and args.profile:
        parser.error("--profile traces ours: not with --no_jax")
    return parser, args


def main():
    parser, args = parse_args()
    platform_name = args.device or ("gpu" if jax.default_backend() == "gpu" else "cpu")
    try:
        device = jax.devices(platform_name)[0]
    except RuntimeError as error:
        parser.error(f"--device {platform_name}: JAX has no such device ({error})")

    signal.signal(signal.SIGTERM, _cut_off)
    recorder = Recorder(args, device)
    recorder.save()  # the settings, before anything compiles
    images, labels = synthetic_batch(args.batch, args.image_size)
    complete = False
    try:
        for stage in stages(args, images, labels, device, platform_name, recorder.info):
            recorder.build(stage)
            if recorder.contestants:
                recorder.time_rounds(args.repeats, args.steps)
            if args.profile and "profile" not in recorder.info:  # ours is built in the first stage
                recorder.profile(args.profile, args.steps)
        complete = True
    except (CutOff, KeyboardInterrupt):
        _progress("cut off: reporting the figures so far")
    result = recorder.save(complete)
    print_table(result)
    if args.json:
        print(f"\nwrote {args.json}")
    else:
        print(json.dumps(result, indent=2))
    if not complete:  # at once: JAX's and torch's teardown can outlast `timeout -k`'s grace
        sys.stdout.flush()
        os._exit(1)


if __name__ == "__main__":
    main()
