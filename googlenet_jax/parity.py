"""Parity with PyTorch, stage by stage, on your own weights and images.

    python -m googlenet_jax.parity [--weights MODEL.pth] [--variant torchvision|paper]
        [--images FILE... | --random N] [--image_size S] [--dtype float32|float64]
        [--train] [--grads] [--tolerance REL] [--json OUT]

Loads the same weights into the PyTorch reference (torchvision's `googlenet`, or for the paper
variant the torch.nn port of BVLC Caffe in googlenet_jax.caffe_torch) and into our Flax model
(through `convert.torchvision_to_flax`), runs both on the same preprocessed inputs and prints,
in network order, every stage's relative error ||ours - torch|| / ||torch|| and largest
absolute error, marking the first stage over tolerance. Without --weights both get random
He-scaled weights with randomised BatchNorm statistics. Exit status: 0 when every row is within
tolerance, 1 when one is not, 2 for bad arguments or files.

--train compares train mode (dropout off on both sides, so they are deterministic), including
the BatchNorm running statistics after the step; --grads adds the gradient of
CE(main) + 0.3 (CE(aux1) + CE(aux2)) for every parameter, on random fixed labels.

The Python API serves forks too:

    report = compare(flax_module, variables, torch_module, inputs, stages=DEFAULT_STAGES["torchvision"])
    report.ok, report.first_divergence, print(report.table()), report.to_json()

`stages` maps, in network order, each Flax stage to the torch module whose output it must
equal: {flax_path: torch_module_name}. A Flax path names a submodule (its output is captured:
"inception4a", or nested "inception4a/branch1x1") or a value sown into "intermediates" with
`self.sow("intermediates", name, x)` (GoogLeNet sows its pools, LRNs and global pool this
way). A torch name is a key of `torch_module.named_modules()`. A fork that adds a block
`inception4f` after `inception4e` on both sides compares it with

    stages = insert_after(DEFAULT_STAGES["torchvision"], "inception4e", {"inception4f": "inception4f"})

and a fork that renames a block maps the new names: {"mixed_4a": "inception4a", ...}. A name
that its side's model lacks is a ValueError naming that side and the closest names it has.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import difflib
import functools
import json
import math
import os
import sys
from typing import Any, Callable, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # quiet TensorFlow's C++ start-up logs

from googlenet_jax import model as model_lib  # noqa: E402

TORCH_INSTALL = "pip install torch==2.14.1 torchvision==0.29.1"
AUX_WEIGHT = 0.3  # the paper's weight of each auxiliary loss (the configs' aux_weight)
LABELS_SEED = 0
# Our convolutions and matmuls at full float32 precision: GPUs would otherwise use TF32 by
# default, about 1e-3 off, while the torch reference runs on the CPU in full float32.
MATMUL_PRECISION = "highest"

# Flax stage -> torch module, in the order the network computes them (aux1 reads 4a, aux2 4d).
DEFAULT_STAGES = {
    "torchvision": {
        "conv1": "conv1", "pool1": "maxpool1", "conv2": "conv2", "conv3": "conv3", "pool2": "maxpool2",
        "inception3a": "inception3a", "inception3b": "inception3b", "pool3": "maxpool3",
        "inception4a": "inception4a", "aux1": "aux1", "inception4b": "inception4b",
        "inception4c": "inception4c", "inception4d": "inception4d", "aux2": "aux2",
        "inception4e": "inception4e", "pool4": "maxpool4", "inception5a": "inception5a",
        "inception5b": "inception5b", "avgpool": "avgpool", "fc": "fc",
    },
    "paper": {
        "conv1": "conv1", "pool1": "pool1", "lrn1": "norm1", "conv2": "conv2", "conv3": "conv3",
        "lrn2": "norm2", "pool2": "pool2", "inception3a": "inception3a", "inception3b": "inception3b",
        "pool3": "pool3", "inception4a": "inception4a", "aux1": "aux1", "inception4b": "inception4b",
        "inception4c": "inception4c", "inception4d": "inception4d", "aux2": "aux2",
        "inception4e": "inception4e", "pool4": "pool4", "inception5a": "inception5a",
        "inception5b": "inception5b", "avgpool": "avgpool", "fc": "fc",
    },
}
# Default stages that weights may lack (a state_dict without aux heads); left out then.
OPTIONAL_STAGES = ("aux1", "aux2")
# The stages the loss reads for --grads: the main head first, then the aux heads.
LOSS_STAGES = ("fc", "aux1", "aux2")

# Relative error allowed per row: about ten times the largest rounding error measured on
# correct models (random He-scaled weights, batch 2; README, "Checking parity on your own
# weights"). float32 eval: up to 1.2e-6 per stage. float32 train: BatchNorm's batch statistics
# amplify rounding with depth, up to 4e-5 at 224x224 and 1e-4 at 64x64 (2x2 maps in 5a/5b);
# running statistics up to 2e-5. float32 gradients: rounding alone moves whole tensors by up
# to 3.5e-2 (2.5e-2 on the CPU), so only a gross error fails there. float64: up to 6e-12
# (gradients at 64x64). The same levels were measured with ours on a GPU.
TOLERANCES = {
    "float32": {"eval": 1e-5, "train": 1e-3, "running statistic": 1e-4, "loss": 1e-3, "gradient": 1e-1},
    "float64": {"eval": 1e-9, "train": 1e-9, "running statistic": 1e-9, "loss": 1e-9, "gradient": 1e-9},
}
SECTION_TITLES = {
    "output": "stage outputs",
    "running statistic": "BatchNorm running statistics after the step",
    "loss": "loss",
    "gradient": "loss gradients, one row per parameter (torch state_dict names)",
}


def _default_stages(variant: str, torch_module) -> dict[str, str]:
    """DEFAULT_STAGES[variant] without the optional stages the torch model does not have."""
    present = dict(torch_module.named_modules())
    return {stage: torch_name for stage, torch_name in DEFAULT_STAGES[variant].items()
            if stage not in OPTIONAL_STAGES or torch_name in present}


def insert_after(stages: Mapping[str, str], after: str, new: Mapping[str, str]) -> dict[str, str]:
    """A copy of `stages` with the `new` entries placed right after the stage `after`."""
    if after not in stages:
        raise ValueError(f"no stage {after!r} to insert after; stages: {', '.join(stages)}")
    out = {}
    for name, torch_name in stages.items():
        out[name] = torch_name
        if name == after:
            out.update(new)
    return out


# ----------------------------------------------------------------------------- the report


@dataclasses.dataclass(frozen=True)
class Row:
    """One compared tensor: ours against torch's, both as float64 numpy arrays."""

    kind: str  # "output", "running statistic", "loss" or "gradient"
    name: str  # the stage (Flax path) for outputs, the torch state_dict name otherwise
    shape: tuple
    rel_error: float  # ||ours - torch|| / ||torch||; inf when the shapes differ
    max_abs_error: float
    tolerance: float
    note: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.rel_error <= self.tolerance)  # False for NaN

    def to_json(self) -> dict:
        finite = lambda value: value if math.isfinite(value) else None  # noqa: E731  (JSON has no inf/NaN)
        return {"name": self.name, "shape": list(self.shape), "rel_error": finite(self.rel_error),
                "max_abs_error": finite(self.max_abs_error), "tolerance": self.tolerance, "ok": self.ok,
                **({"note": self.note} if self.note else {})}


@dataclasses.dataclass
class ParityReport:
    """Rows in network order (outputs, then running statistics, loss and gradients) and notes."""

    rows: list[Row]
    notes: list[str] = dataclasses.field(default_factory=list)
    settings: dict = dataclasses.field(default_factory=dict)

    @property
    def first_divergence(self) -> Row | None:
        """The first row over its tolerance, or None."""
        return next((row for row in self.rows if not row.ok), None)

    @property
    def ok(self) -> bool:
        return self.first_divergence is None

    def table(self) -> str:
        """The text the command prints: one section per kind of row, then notes and the verdict."""
        first = self.first_divergence
        lines = []
        for kind, title in SECTION_TITLES.items():
            rows = [row for row in self.rows if row.kind == kind]
            if not rows:
                continue
            width = max(12, *(len(row.name) for row in rows))
            lines += ["", title,
                      f"{'name':<{width}}  {'shape':<20}  {'rel_error':>9}  {'max_abs_err':>11}  "
                      f"{'tolerance':>9}  status"]
            for row in rows:
                status = "ok" if row.ok else "FAIL"
                if row is first:
                    status += "  <- first divergence"
                if row.note:
                    status += f"  ({row.note})"
                lines.append(f"{row.name:<{width}}  {_shape_text(row.shape):<20}  {row.rel_error:>9.2e}  "
                             f"{row.max_abs_error:>11.2e}  {row.tolerance:>9.0e}  {status}")
        lines += [""] + [f"note: {note}" for note in self.notes]
        lines.append(f"first divergence: {_describe(first) if first else 'none'}")
        failed = sum(not row.ok for row in self.rows)
        lines.append("verdict: " + (f"FAIL ({failed} row(s) over tolerance)" if failed
                                    else "PASS (every row within tolerance)"))
        return "\n".join(lines).lstrip("\n")

    def to_json(self) -> dict:
        """{"settings", "stages", "running_statistics", "loss", "gradients", "notes",
        "first_divergence", "verdict"}; each row: name, shape, rel_error, max_abs_error,
        tolerance, ok (and note)."""
        by_kind = lambda kind: [row.to_json() for row in self.rows if row.kind == kind]  # noqa: E731
        first = self.first_divergence
        return {"settings": self.settings, "stages": by_kind("output"),
                "running_statistics": by_kind("running statistic"), "loss": by_kind("loss"),
                "gradients": by_kind("gradient"), "notes": self.notes,
                "first_divergence": first.name if first else None,
                "first_divergence_kind": first.kind if first else None,
                "verdict": "pass" if self.ok else "fail"}


def _shape_text(shape) -> str:
    return "(" + ", ".join(map(str, shape)) + ")"


def _describe(row: Row) -> str:
    what = "stage" if row.kind == "output" else row.kind
    return f"{what} {row.name} (relative error {row.rel_error:.2e} > {row.tolerance:.0e})"


def _compare_arrays(kind: str, name: str, ours, theirs, tolerance: float, note: str = "") -> Row:
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    if ours.shape != theirs.shape:
        if ours.size == theirs.size and _squeezed(ours.shape) == _squeezed(theirs.shape):
            theirs = theirs.reshape(ours.shape)  # e.g. torch's (N, C, 1, 1) global pool against (N, C)
        else:
            note = f"shape differs: torch {_shape_text(theirs.shape)}" + (f"; {note}" if note else "")
            return Row(kind, name, ours.shape, math.inf, math.inf, tolerance, note)
    difference = np.linalg.norm(ours - theirs)
    scale = np.linalg.norm(theirs)
    rel = float(difference / scale) if scale > 0 else (0.0 if difference == 0 else math.inf)
    max_abs = float(np.max(np.abs(ours - theirs))) if ours.size else 0.0
    return Row(kind, name, ours.shape, rel, max_abs, tolerance, note)


def _squeezed(shape) -> tuple:
    return tuple(d for d in shape if d != 1)


# ----------------------------------------------------------------------------- the Flax side


# ConvBlock's method that ends the block after its convolution (model.shared_input_1x1).
OUTPUT_METHOD = "activate"


def _flax_lookup(intermediates: Mapping, path: str):
    """The captured or sown value at "a/b/c", or None when that stage did not run."""
    node = intermediates
    for part in path.split("/"):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    if isinstance(node, Mapping):  # a module: capture_intermediates stores {"__call__": (output,)}
        # A ConvBlock that its Inception module runs merged with others shows up as "activate".
        node = node.get("__call__") or node.get(OUTPUT_METHOD)
    return node[0] if node else None  # first call, like the torch hooks


def _flax_module_exists(variables: Mapping, path: str) -> bool:
    """Whether some collection holds a submodule at `path` (it exists but may not have run)."""
    for tree in variables.values():
        node = tree
        for part in path.split("/"):
            if not isinstance(node, Mapping) or part not in node:
                break
            node = node[part]
        else:
            return True
    return False


def _bypass_dropout(next_fun, args, kwargs, context):
    """A method interceptor that makes every nn.Dropout the identity (deterministic train mode)."""
    if isinstance(context.module, nn.Dropout) and context.method_name == "__call__":
        return args[0]
    return next_fun(*args, **kwargs)


def _flax_forward(module, variables, inputs, paths: Sequence[str], train: bool):
    """(intermediates, new batch_stats or None) of one apply that captures `paths`."""
    wanted = set(paths)

    def capture(mdl, method_name):
        return method_name in ("__call__", OUTPUT_METHOD) and "/".join(mdl.path) in wanted

    mutable = ["intermediates", "batch_stats"] if train and "batch_stats" in variables else ["intermediates"]
    with nn.intercept_methods(_bypass_dropout):
        _, state = module.apply(variables, inputs, train=train, mutable=mutable,
                                capture_intermediates=capture)
    return state["intermediates"], state.get("batch_stats")


def _with_dtype(module, dtype):
    """The module computing in `dtype` (its `dtype` field, when it has one)."""
    if any(field.name == "dtype" for field in dataclasses.fields(module)):
        return module.clone(dtype=dtype)
    return module


def _cast_tree(tree, dtype):
    return jax.tree.map(lambda a: np.asarray(a, dtype) if np.issubdtype(np.asarray(a).dtype, np.floating)
                        else np.asarray(a), tree)


# ----------------------------------------------------------------------------- the torch side


def _check_torch_names(torch_module, stages: Mapping[str, str]) -> None:
    names = dict(torch_module.named_modules())
    for stage, torch_name in stages.items():
        if torch_name not in names:
            close = difflib.get_close_matches(torch_name, list(names), n=3)
            children = ", ".join(name for name, _ in torch_module.named_children())
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ValueError(f"stage {stage!r}: the torch model has no module {torch_name!r}{hint} "
                             f"(its top-level modules: {children})")


def _record_outputs(torch_module, stages: Mapping[str, str], keep_graph: bool):
    """Forward hooks keeping each stage's first output; returns (outputs dict, hook handles)."""
    import torch

    modules = dict(torch_module.named_modules())
    outputs, handles = {}, []
    for stage, torch_name in stages.items():
        def hook(_module, _args, output, stage=stage, torch_name=torch_name):
            if stage in outputs:
                return
            if not torch.is_tensor(output):
                raise ValueError(f"stage {stage!r}: torch module {torch_name!r} returns "
                                 f"{type(output).__name__}, not a tensor; map a module that returns one")
            outputs[stage] = output if keep_graph else output.detach()
        handles.append(modules[torch_name].register_forward_hook(hook))
    return outputs, handles


def _record_batch_norm_inputs(torch_module):
    """Each train-mode BatchNorm's input and running variance before the step, by module name."""
    import torch

    inputs, old_vars, handles = {}, {}, []

    def hook(_module, args, _output, name):
        inputs.setdefault(name, args[0].detach())  # returns None: a hook's return value replaces the output

    for name, module in torch_module.named_modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and module.track_running_stats:
            old_vars[name] = module.running_var.detach().clone()
            handles.append(module.register_forward_hook(functools.partial(hook, name=name)))
    return inputs, old_vars, handles


def _torch_ready(torch_module, dtype: str, train: bool):
    """A copy in the comparison's dtype and mode, dropout off in train mode (the caller's
    module, its running statistics included, stays untouched)."""
    import torch

    net = copy.deepcopy(torch_module)
    net = net.double() if dtype == "float64" else net.float()
    net.train(train)
    if train:
        for module in net.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
    return net


def _to_nchw(inputs: np.ndarray, dtype: str):
    import torch

    return torch.from_numpy(np.ascontiguousarray(np.asarray(inputs, dtype).transpose(0, 3, 1, 2)))


def _as_nhwc(tensor) -> np.ndarray:
    array = tensor.detach().cpu().numpy()
    return array.transpose(0, 2, 3, 1) if array.ndim == 4 else array


# ----------------------------------------------------------------------------- compare


def torchvision_state_dict(variables: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Our variables (or gradients in their place) as a torch state_dict of numpy arrays."""
    from googlenet_jax import convert

    return convert.flax_to_torchvision(variables, return_numpy=True)


def random_labels(count: int, num_classes: int, seed: int = LABELS_SEED) -> np.ndarray:
    """The fixed labels of --grads: `count` class ids drawn uniformly with `seed`."""
    return np.random.default_rng(seed).integers(0, num_classes, size=count)


def compare(flax_module, variables: Mapping[str, Any], torch_module, inputs: np.ndarray, *,
            stages: Mapping[str, str] | None = None, train: bool = False, grads: bool = False,
            dtype: str = "float32", labels: np.ndarray | None = None, aux_weight: float = AUX_WEIGHT,
            loss_stages: Sequence[str] = LOSS_STAGES, tolerance: float | None = None,
            to_state_dict: Callable[[Mapping[str, Any]], Mapping[str, np.ndarray]] = torchvision_state_dict,
            ) -> ParityReport:
    """Runs both models on `inputs` and compares them stage by stage.

    flax_module, variables: our model and its {"params"[, "batch_stats"]}.
    torch_module: the reference holding the same weights (it is copied, never modified).
    inputs: float (N, H, W, 3) NHWC images, already preprocessed; torch gets them as NCHW.
    stages: {flax_path: torch_module_name} in network order (see the module docstring);
      default DEFAULT_STAGES[flax_module.variant], without the aux heads when the torch model
      has none. Stages that neither side runs (the aux heads in eval mode) are left out.
    train: train mode: batch statistics in BatchNorm, dropout off on both sides, aux heads on;
      adds the BatchNorm running statistics after the step (torch's means; for the variances
      Flax's rule, which mixes in the biased batch variance where torch uses the unbiased one).
    grads: implies train; adds the loss CE(main) + aux_weight * sum(CE(aux)) over
      `loss_stages` (main head first) and its gradient for every parameter. labels: (N,) ints,
      default `random_labels`.
    dtype: "float32", or "float64" (both sides compute in float64; ours under jax x64).
    tolerance: one relative tolerance for every row instead of TOLERANCES[dtype].
    to_state_dict: maps our variables (or gradients in place of params) to torch state_dict
      names; a fork whose parameters the converter does not know passes its own.
    Raises ValueError for a stage name that its side's model lacks (naming the closest ones).
    """
    import torch

    if dtype not in TOLERANCES:
        raise ValueError(f"dtype must be one of {sorted(TOLERANCES)}, got {dtype!r}")
    train = train or grads
    if stages is None:
        stages = _default_stages(getattr(flax_module, "variant", "torchvision"), torch_module)
    stages = dict(stages)
    if grads and loss_stages[0] not in stages:
        raise ValueError(f"the loss reads stage {loss_stages[0]!r}, which is not among the stages")
    _check_torch_names(torch_module, stages)
    inputs = np.asarray(inputs)
    if inputs.ndim != 4 or inputs.shape[-1] != 3:
        raise ValueError(f"inputs must be NHWC images (N, H, W, 3), got shape {inputs.shape}")
    tolerances = {kind: value if tolerance is None else tolerance
                  for kind, value in TOLERANCES[dtype].items()}
    random_fixed_labels = labels is None
    if grads and labels is None:
        labels = _default_labels(torch_module, stages, loss_stages[0], len(inputs))

    # Ours first: our model's own errors (an input too small for a head) are the clearer ones.
    with _jax_precision(dtype), jax.default_matmul_precision(MATMUL_PRECISION):
        ours = _run_ours(_with_dtype(flax_module, _jnp_dtype(dtype)), _cast_tree(variables, dtype), inputs,
                         stages, train, grads, labels, aux_weight, loss_stages, dtype)
    net = _torch_ready(torch_module, dtype, train)
    with torch.set_grad_enabled(grads):
        theirs = _run_torch(net, inputs, stages, train, grads, labels, aux_weight, loss_stages, dtype)

    mode = "train" if train else "eval"
    rows = _output_rows(stages, ours["outputs"], theirs["outputs"], tolerances[mode])
    notes = [f"{dtype}, {mode} mode; relative error = ||ours - torch|| / ||torch||; ours on "
             f"{jax.default_backend()} at {MATMUL_PRECISION} matmul precision, torch on the CPU",
             "train mode: dropout off on both sides; BatchNorm normalises with batch statistics" if train
             else "eval mode: the aux heads run in train mode only (--train)"]
    if train and theirs["bn_inputs"]:
        our_stats = to_state_dict({**variables, "batch_stats": ours["batch_stats"]})
        rows += _running_statistic_rows(theirs, our_stats, tolerances["running statistic"])
        notes.append("running_mean is compared with torch's; running_var with Flax's rule, (1 - m) * old + "
                     "m * biased batch variance: torch mixes in the unbiased batch variance (n / (n - 1) "
                     "times larger), a documented difference")
    if grads:
        rows.append(_compare_arrays("loss", "loss", ours["loss"], theirs["loss"], tolerances["loss"]))
        our_grads = to_state_dict({**variables, "params": ours["grads"]})
        rows += _gradient_rows(net, our_grads, tolerances["gradient"])
        notes += _loss_notes(loss_stages, ours["outputs"], aux_weight, labels, random_fixed_labels,
                             dtype, tolerances["gradient"])
    settings = {"dtype": dtype, "mode": mode, "grads": grads, "batch": int(inputs.shape[0]),
                "input_size": list(inputs.shape[1:3])}
    return ParityReport(rows, notes, settings)


def _loss_notes(loss_stages, outputs, aux_weight, labels, random_fixed_labels, dtype, tolerance) -> list[str]:
    aux = [f"CE({stage})" for stage in loss_stages[1:] if stage in outputs]
    loss = f"CE({loss_stages[0]})" + (f" + {aux_weight:g} * ({' + '.join(aux)})" if aux else "")
    labels_text = f"random fixed labels {np.asarray(labels).tolist()} (seed {LABELS_SEED})" \
        if random_fixed_labels else f"labels {np.asarray(labels).tolist()}"
    notes = [f"loss = {loss}, on {labels_text}"]
    if dtype == "float32":
        notes.append(f"float32 rounding alone moves gradients by up to a few 1e-2, so float32 fails only "
                     f"gross gradient errors (> {tolerance:g}); --dtype float64 gives the exact verdict")
    return notes


def _jnp_dtype(dtype: str):
    return jnp.float64 if dtype == "float64" else jnp.float32


def _jax_precision(dtype: str):
    return jax.enable_x64(True) if dtype == "float64" else contextlib.nullcontext()


@functools.partial(jax.jit, static_argnames=("module", "paths", "train"))
def _forward(variables, x, *, module, paths, train):
    """_flax_forward, compiled once per model, stage list, mode and input shape."""
    return _flax_forward(module, variables, x, paths, train)


@functools.partial(jax.jit, static_argnames=("module", "paths", "train", "loss_stages", "aux_weight"))
def _loss_and_grads(variables, x, labels, *, module, paths, train, loss_stages, aux_weight):
    """((loss, (intermediates, batch_stats)), gradients of the params)."""
    from googlenet_jax.training.losses import googlenet_loss

    def loss_fn(params):
        intermediates, batch_stats = _flax_forward(module, {**variables, "params": params}, x, paths, train)
        main = _flax_lookup(intermediates, loss_stages[0])
        aux = [_flax_lookup(intermediates, stage) for stage in loss_stages[1:]]
        total, _ = googlenet_loss(main, aux, labels, aux_weight=aux_weight)
        return total, (intermediates, batch_stats)

    return jax.value_and_grad(loss_fn, has_aux=True)(variables["params"])


def _run_ours(module, variables, inputs, stages, train, grads, labels, aux_weight, loss_stages, dtype):
    """Our stage outputs (numpy), new batch_stats, and with grads the loss and gradients."""
    x = jnp.asarray(inputs, _jnp_dtype(dtype))
    _check_flax_names(module, variables, x, tuple(stages), train)
    static = {"module": module, "paths": tuple(stages), "train": train}
    if not grads:
        intermediates, batch_stats = _forward(variables, x, **static)
        return {"outputs": _found(intermediates, stages), "batch_stats": batch_stats}
    (loss, (intermediates, batch_stats)), grads_tree = _loss_and_grads(
        variables, x, jnp.asarray(labels), loss_stages=tuple(loss_stages), aux_weight=float(aux_weight),
        **static)
    return {"outputs": _found(intermediates, stages), "batch_stats": batch_stats,
            "loss": np.asarray(loss), "grads": jax.tree.map(np.asarray, grads_tree)}


def _default_labels(torch_module, stages, main_stage, count) -> np.ndarray:
    """random_labels over the main head's classes (the width of its torch nn.Linear)."""
    head = dict(torch_module.named_modules())[stages[main_stage]]
    if not hasattr(head, "out_features"):
        raise ValueError(f"the main head {stages[main_stage]!r} is not a Linear layer; pass labels")
    return random_labels(count, head.out_features)


def _found(intermediates, paths) -> dict[str, np.ndarray]:
    """{path: numpy output} of the stages that ran."""
    found = {path: _flax_lookup(intermediates, path) for path in paths}
    return {path: np.asarray(value) for path, value in found.items() if value is not None}


def _check_flax_names(module, variables, x, paths: tuple[str, ...], train: bool) -> None:
    """A clear error for a path that names no submodule and no sown value, found by tracing the
    model's shapes only, before anything is compiled or run (`_forward` then reuses the trace)."""
    shapes, _ = jax.eval_shape(functools.partial(_forward, module=module, paths=paths, train=train),
                               variables, x)
    for path in paths:
        if _flax_lookup(shapes, path) is None and not _flax_module_exists(variables, path):
            names = sorted(set(shapes) | {k for tree in variables.values() for k in tree})
            close = difflib.get_close_matches(path.split("/")[0], names, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ValueError(f"stage {path!r}: the Flax model has no submodule or sown intermediate "
                             f"{path!r}{hint} (its names: {', '.join(names)})")


def _run_torch(net, inputs, stages, train, grads, labels, aux_weight, loss_stages, dtype):
    """torch's stage outputs (NHWC numpy), BatchNorm records, and with grads the loss."""
    import torch

    outputs, handles = _record_outputs(net, stages, keep_graph=grads)
    bn_inputs, old_vars, bn_handles = _record_batch_norm_inputs(net) if train else ({}, {}, [])
    try:
        net(_to_nchw(inputs, dtype))
    finally:
        for handle in handles + bn_handles:
            handle.remove()
    result = {"outputs": {stage: _as_nhwc(t) for stage, t in outputs.items()},
              "bn_inputs": bn_inputs, "old_vars": old_vars, "net": net}
    if grads:
        ce = torch.nn.functional.cross_entropy
        target = torch.from_numpy(np.asarray(labels, np.int64))
        loss = ce(outputs[loss_stages[0]], target)
        for stage in loss_stages[1:]:
            if stage in outputs:
                loss = loss + aux_weight * ce(outputs[stage], target)
        net.zero_grad()
        loss.backward()
        result["loss"] = loss.detach().numpy()
    return result


def _output_rows(stages, ours, theirs, tolerance) -> list[Row]:
    rows = []
    for stage in stages:
        if stage in ours and stage in theirs:
            rows.append(_compare_arrays("output", stage, ours[stage], theirs[stage], tolerance))
        elif stage in ours or stage in theirs:  # one side ran it, the other did not
            side = "ours" if stage in ours else "torch"
            shape = (ours.get(stage) if stage in ours else theirs[stage]).shape
            rows.append(Row("output", stage, shape, math.inf, math.inf, tolerance,
                            f"only {side} computed this stage"))
    return rows


def _running_statistic_rows(theirs, our_state_dict, tolerance) -> list[Row]:
    import torch

    rows = []
    modules = dict(theirs["net"].named_modules())
    for name, x in theirs["bn_inputs"].items():
        module = modules[name]
        momentum = module.momentum
        if momentum is None:  # a cumulative average; Flax has no such mode
            continue
        x = x.double()
        batch_var = x.var(dim=[d for d in range(x.dim()) if d != 1], unbiased=False)
        flax_rule_var = (1 - momentum) * theirs["old_vars"][name].double() + momentum * batch_var
        for stat, expected in (("running_mean", module.running_mean), ("running_var", flax_rule_var)):
            key = f"{name}.{stat}"
            if key in our_state_dict:
                rows.append(_compare_arrays("running statistic", key, our_state_dict[key],
                                            torch.as_tensor(expected).detach().numpy(), tolerance))
    return rows


def _gradient_rows(net, our_grads: Mapping[str, np.ndarray], tolerance) -> list[Row]:
    rows = []
    for name, parameter in net.named_parameters():
        if parameter.grad is None:
            continue  # unused by this loss on the torch side
        if name not in our_grads:
            rows.append(Row("gradient", name, tuple(parameter.shape), math.inf, math.inf, tolerance,
                            "no gradient on our side"))
            continue
        rows.append(_compare_arrays("gradient", name, our_grads[name], parameter.grad.numpy(), tolerance))
    return rows


# ----------------------------------------------------------------------------- command line


class UsageError(ValueError):
    """A bad argument or file: one `parity: error: ...` line, exit status 2."""


class _OneLineErrorParser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"parity: error: {message}\n")


def parse_args(argv=None) -> argparse.Namespace:
    parser = _OneLineErrorParser(prog="python -m googlenet_jax.parity",
                                 description=" ".join(__doc__.split("\n\n")[i] for i in (0, 2)),
                                 epilog="Exit status: 0 all within tolerance, 1 a divergence, 2 bad "
                                        "arguments or files.")
    parser.add_argument("--weights", metavar="PATH.pth",
                        help="a torchvision-layout googlenet state_dict (with or without aux heads; "
                             "default: random weights)")
    parser.add_argument("--variant", choices=sorted(model_lib.VARIANTS),
                        help="default: the weights' own (BatchNorm keys: torchvision); torchvision "
                             "for random weights")
    inputs = parser.add_mutually_exclusive_group()
    inputs.add_argument("--images", nargs="+", metavar="FILE",
                        help="images, preprocessed by the eval path (resize, center crop, the variant's "
                             "normalisation)")
    inputs.add_argument("--random", type=int, metavar="N", help="N random normal images (default 2)")
    parser.add_argument("--image_size", type=int, default=224, metavar="S",
                        help="square input side (default 224)")
    parser.add_argument("--dtype", choices=sorted(TOLERANCES), default="float32",
                        help="compute dtype of both sides (default float32; in float64 they agree to ~1e-12)")
    parser.add_argument("--train", action="store_true",
                        help="train mode (dropout off), with BatchNorm running statistics")
    parser.add_argument("--grads", action="store_true",
                        help="also the loss gradient of every parameter (implies --train)")
    parser.add_argument("--transform_input", choices=("on", "off"),
                        help="torchvision's transform_input on both sides (default: on for the "
                             "torchvision variant, as its pretrained builder sets it)")
    parser.add_argument("--tolerance", type=float, metavar="REL",
                        help="one relative tolerance for every row (default: by dtype and mode)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights and images")
    parser.add_argument("--json", metavar="OUT", help="also write the report as JSON to OUT")
    args = parser.parse_args(argv)
    if args.random is not None and args.random < 1:
        parser.error(f"--random must be at least 1, got {args.random}")
    if args.image_size < 1:
        parser.error(f"--image_size must be positive, got {args.image_size}")
    if args.tolerance is not None and not args.tolerance >= 0:
        parser.error(f"--tolerance must be a non-negative number, got {args.tolerance}")
    if args.weights and not os.path.isfile(args.weights):
        parser.error(f"--weights {args.weights}: no such file")
    for image in args.images or ():
        if not os.path.isfile(image):
            parser.error(f"--images {image}: no such file")
    if args.json and not os.path.isdir(os.path.dirname(os.path.abspath(args.json))):
        parser.error(f"--json {args.json}: its folder does not exist")
    return args


def _import_torch_reference():
    """googlenet_jax.torch_reference, imported before TensorFlow (torchvision crashes after it)."""
    try:
        from googlenet_jax import torch_reference
    except ImportError as error:
        raise UsageError(f"comparing with PyTorch needs torch and torchvision ({error}): "
                         f"{TORCH_INSTALL}") from None
    return torch_reference


def load_models(args, torch_reference):
    """(our module, our variables, the torch reference, variant, a description of the weights)."""
    from googlenet_jax import convert

    transform_input = None if args.transform_input is None else args.transform_input == "on"
    if args.weights:
        try:
            state_dict = convert.load_torch_state_dict(args.weights)
        except ValueError as error:
            raise UsageError(str(error)) from None
        variant = args.variant or ("torchvision" if any(".bn." in k for k in state_dict) else "paper")
        state_dict = {k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()}
        try:
            variables = convert.torchvision_to_flax(state_dict, variant=variant)
        except ValueError as error:
            raise UsageError(f"{args.weights}: {error}") from None
        transform_input = variant == "torchvision" if transform_input is None else transform_input
        torch_net = torch_reference.from_state_dict(state_dict, variant, transform_input=transform_input)
        described = args.weights
    else:
        variant = args.variant or "torchvision"
        transform_input = variant == "torchvision" if transform_input is None else transform_input
        torch_net = torch_reference.build(variant, transform_input=transform_input, seed=args.seed)
        variables = convert.torchvision_to_flax(
            {k: v.numpy() for k, v in torch_net.state_dict().items()}, variant=variant)
        described = f"random (He-scaled, randomised BatchNorm statistics, seed {args.seed})"
    if transform_input and variant != "torchvision":
        raise UsageError("--transform_input on is a torchvision option; the paper variant has none")
    params = variables["params"]
    ours = model_lib.GoogLeNet(num_classes=int(params["fc"]["kernel"].shape[-1]), variant=variant,
                               aux_logits="aux1" in params, transform_input=transform_input)
    return ours, variables, torch_net, variant, described


def load_inputs(args, variant: str) -> tuple[np.ndarray, str]:
    """(float32 (N, S, S, 3) inputs, a description): the eval preprocessing of --images, or
    --random N standard normal images."""
    size = args.image_size
    if not args.images:
        count = args.random or 2
        images = np.random.default_rng(args.seed).standard_normal((count, size, size, 3)).astype(np.float32)
        return images, f"{count} random normal image(s), {size}x{size}"
    from googlenet_jax import inference, weights
    from googlenet_jax.data import crops

    info = weights.ModelInfo(variant=variant, num_classes=0, class_names=(), image_size=size,
                             resize_size=crops.eval_resize_size(size), normalization=variant)
    try:
        images = inference.preprocess_images(args.images, info)
    except inference.ImageError as error:
        raise UsageError(str(error)) from None
    return images, (f"{len(images)} image(s), shorter side resized to {info.resize_size}, center "
                    f"{size}x{size} crop, {variant} normalisation")


def run(args) -> ParityReport:
    """The report the command prints (raises UsageError for bad weights, images or sizes)."""
    torch_reference = _import_torch_reference()  # first: before anything imports TensorFlow
    ours, variables, torch_net, variant, weights_text = load_models(args, torch_reference)
    smallest = model_lib.min_input_size(variant)
    if args.image_size < smallest:
        raise UsageError(f"--image_size {args.image_size} is too small for the {variant} GoogLeNet "
                         f"(at least {smallest})")
    inputs, inputs_text = load_inputs(args, variant)
    try:
        report = compare(ours, variables, torch_net, inputs, train=args.train, grads=args.grads,
                         dtype=args.dtype, tolerance=args.tolerance)
    except (ValueError, RuntimeError) as error:  # e.g. the paper variant's aux heads at a small size
        raise UsageError(str(error).strip().splitlines()[0]) from None
    reference = ("torchvision.models.googlenet" if variant == "torchvision"
                 else "BVLC Caffe's topology in torch.nn (googlenet_jax.caffe_torch)")
    report.settings.update(variant=variant, reference=reference, weights=weights_text, inputs=inputs_text,
                           transform_input=ours.transform_input)
    return report


def header(report: ParityReport) -> str:
    s = report.settings
    return "\n".join([
        f"GoogLeNet parity, {s['variant']} variant: ours (Flax) against {s['reference']}",
        f"weights: {s['weights']}",
        f"inputs: {s['inputs']}; transform_input {'on' if s['transform_input'] else 'off'}",
    ])


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        report = run(args)
    except UsageError as error:
        print(f"parity: error: {error}", file=sys.stderr)
        return 2
    print(header(report))
    print()
    print(report.table())
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report.to_json(), f, indent=2)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
