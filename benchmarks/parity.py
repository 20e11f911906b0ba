"""Prints the parity figures of the README: relative errors against the PyTorch references.

    python benchmarks/parity.py [--json OUT.json]

Same set-up as tests/test_parity.py (random weights, randomised BN statistics): eval
logits in float32 at 224x224 and two odd sizes, train-mode logits and aux logits, and the
worst per-tensor gradient error of CE(main) + 0.3 CE(aux1) + 0.3 CE(aux2) in float64.
Relative error = ||ours - reference|| / ||reference||.
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
from googlenet_jax.convert import torchvision_to_flax  # noqa: E402
from googlenet_jax.model.losses import googlenet_loss  # noqa: E402

import helpers as ref  # noqa: E402  (tests/helpers.py)

SIZES = {"torchvision": [(224, 224), (117, 97), (15, 15)], "paper": [(224, 224), (117, 97), (31, 31)]}


def eval_errors(variant):
    torch_net = ref.torch_reference(variant, seed=1).eval()
    variables = torchvision_to_flax(ref.state_dict_numpy(torch_net), variant=variant)
    net = GoogLeNet(variant=variant)
    errors = {}
    for height, width in SIZES[variant]:
        x = ref.images(2, height, width, seed=2)
        with torch.no_grad():
            expected = torch_net(ref.to_nchw(x)).numpy()
        actual = jax.jit(lambda v, x: net.apply(v, x, train=False))(variables, x)
        errors[f"{height}x{width}"] = ref.relative_error(actual, expected)
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
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    report = {}
    for variant in ("torchvision", "paper"):
        report[variant] = {"eval_logits_float32": eval_errors(variant)}
        outputs, worst, median = train_outputs(variant, jnp.float32)
        report[variant]["train_outputs_float32"] = outputs
        report[variant]["grad_float32_worst"], report[variant]["grad_float32_median"] = worst, median
        with jax.enable_x64(True):
            outputs, worst, median = train_outputs(variant, jnp.float64)
        report[variant]["train_outputs_float64"] = outputs
        report[variant]["grad_float64_worst"], report[variant]["grad_float64_median"] = worst, median
    print(json.dumps(report, indent=2))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
