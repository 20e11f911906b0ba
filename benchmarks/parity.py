"""Prints the parity figures of the README: relative errors against the PyTorch references.

    python benchmarks/parity.py [--precision default|highest] [--skip_float64] [--json OUT.json]

Same set-up as tests/parity/test_model_parity.py (random weights, randomised BN statistics): eval
logits in float32 at 224x224 and two odd sizes (torchvision's also with BatchNorm folded),
train-mode logits and aux logits, and the worst per-tensor gradient error of CE(main) + 0.3
CE(aux1) + 0.3 CE(aux2) in float64.
Relative error = ||ours - reference|| / ||reference||.

Ours runs on JAX's default device (a GPU when there is one), the references on the CPU.
`--precision` is JAX's default matmul precision for float32 convolutions and matmuls:
"default" lets a GPU use TF32 (10-bit mantissa inputs) and a TPU bfloat16 passes, "highest"
asks for full float32; on the CPU both are float32. `--skip_float64` leaves out the float64
runs (which the precision does not touch: a second precision's run need not repeat them).
"""
import argparse
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "tests"))
sys.path.insert(0, str(pathlib.Path(__file__).parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from googlenet_jax import GoogLeNet  # noqa: E402
from googlenet_jax.model import fold_batch_norm  # noqa: E402
from googlenet_jax.model.losses import googlenet_loss  # noqa: E402
from googlenet_jax.weights.torch_layout import torchvision_to_flax  # noqa: E402

import helpers as ref  # noqa: E402  (tests/helpers.py)

SIZES = {"torchvision": [(224, 224), (117, 97), (15, 15)], "paper": [(224, 224), (117, 97), (31, 31)]}


def eval_errors(variant):
    torch_net = ref.torch_reference(variant, seed=1).eval()
    variables = torchvision_to_flax(ref.state_dict_numpy(torch_net), variant=variant)
    net = GoogLeNet(variant=variant)
    folded_net, folded = fold_batch_norm(net, variables)  # what the Classifier, evaluate and export run
    errors = {}
    for height, width in SIZES[variant]:
        x = ref.images(2, height, width, seed=2)
        with torch.no_grad():
            expected = torch_net(ref.to_nchw(x)).numpy()
        actual = jax.jit(lambda v, x: net.apply(v, x, train=False))(variables, x)
        errors[f"{height}x{width}"] = ref.relative_error(actual, expected)
        if folded_net is not net:  # torchvision's: the paper variant has no BatchNorm
            actual = jax.jit(lambda v, x: folded_net.apply(v, x, train=False))(folded, x)
            errors[f"{height}x{width}_batch_norm_folded"] = ref.relative_error(actual, expected)
    return errors


def train_outputs(variant, dtype):
    torch_net = ref.torch_reference(variant, dropout=0.0, dropout_aux=0.0, seed=7).train()
    if dtype == jnp.float64:
        torch_net = torch_net.double()
    variables = torchvision_to_flax(ref.state_dict_numpy(torch_net), variant=variant)
    x = ref.images(2, 224, 224, seed=8).astype(np.float64 if dtype == jnp.float64 else np.float32)
    labels = np.array([3, 917])
    outputs = torch_net(ref.to_nchw(x))
    if variant == "torchvision":
        outputs = (outputs.logits, outputs.aux_logits1, outputs.aux_logits2)
    ce, torch_labels = torch.nn.functional.cross_entropy, torch.from_numpy(labels)
    loss = ce(outputs[0], torch_labels) + 0.3 * (ce(outputs[1], torch_labels) + ce(outputs[2], torch_labels))
    torch_net.zero_grad()
    loss.backward()
    parameters = dict(torch_net.named_parameters())
    grads = {k: (parameters[k].grad if k in parameters else v).detach().numpy()
             for k, v in torch_net.state_dict().items()}
    expected_grads = torchvision_to_flax(grads, variant=variant)["params"]

    net = GoogLeNet(variant=variant, dropout_rate=0.0, aux_dropout_rate=0.0, dtype=dtype)
    mutable = ["batch_stats"] if "batch_stats" in variables else False

    def loss_fn(params):
        result = net.apply({**variables, "params": params}, jnp.asarray(x), train=True, mutable=mutable)
        out = result[0] if mutable else result
        total, _ = googlenet_loss(out.logits, out[1:], jnp.asarray(labels), aux_weight=0.3)
        return total, out

    (_, out), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(variables["params"])
    output_errors = {name: ref.relative_error(a, b.detach().numpy()) for name, a, b in zip(out._fields, out, outputs)}
    grad_errors = jax.tree.leaves(jax.tree.map(ref.relative_error, grads, expected_grads))
    return output_errors, max(grad_errors), float(np.median(grad_errors))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", choices=("default", "highest"), default="default",
                        help="jax.default_matmul_precision for the float32 runs (GPU: default is TF32)")
    parser.add_argument("--skip_float64", action="store_true", help="leave out the float64 train outputs and gradients")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    device = jax.devices()[0]
    report = {"device": device.device_kind, "platform": device.platform, "precision": args.precision,
              "jax_version": jax.__version__, "torch_version": torch.__version__}
    with jax.default_matmul_precision(args.precision):
        _measure(report, float64=not args.skip_float64)
    print(json.dumps(report, indent=2))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(report, indent=2))


def _measure(report, float64):
    for variant in ("torchvision", "paper"):
        report[variant] = {"eval_logits_float32": eval_errors(variant)}
        outputs, worst, median = train_outputs(variant, jnp.float32)
        report[variant]["train_outputs_float32"] = outputs
        report[variant]["grad_float32_worst"], report[variant]["grad_float32_median"] = worst, median
        if not float64:
            continue
        with jax.enable_x64(True):
            outputs, worst, median = train_outputs(variant, jnp.float64)
        report[variant]["train_outputs_float64"] = outputs
        report[variant]["grad_float64_worst"], report[variant]["grad_float64_median"] = worst, median


if __name__ == "__main__":
    main()
