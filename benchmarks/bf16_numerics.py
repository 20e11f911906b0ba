"""How far bfloat16 compute moves GoogLeNet's outputs and gradients from float32.

    python benchmarks/bf16_numerics.py [--batch 64] [--image-size 224] [--json OUT.json]

Same float32 parameters (torchvision initialisation, BN statistics from one training-mode
pass so eval-mode activations are normalised), same inputs; the model computes in float32
and in bfloat16. Reports the relative error (||bf16 - f32|| / ||f32||) of eval logits, the
train-mode loss, and the gradient (global and worst tensor), plus top-1 agreement.
"""
import argparse
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from googlenet_jax.losses import googlenet_loss  # noqa: E402
from googlenet_jax.model import GoogLeNet  # noqa: E402


def relative_error(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--json")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((args.batch, args.image_size, args.image_size, 3)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 1000, args.batch), jnp.int32)
    f32 = GoogLeNet(dropout_rate=0.0, aux_dropout_rate=0.0)
    bf16 = GoogLeNet(dropout_rate=0.0, aux_dropout_rate=0.0, dtype=jnp.bfloat16)
    variables = jax.jit(lambda x: f32.init(jax.random.key(0), x, train=False))(x)
    # One training-mode pass with momentum 0.9 moves running stats only 10% of the way; a
    # few passes bring them close to the batch statistics.
    for _ in range(20):
        _, updates = jax.jit(lambda v, x: f32.apply(v, x, train=True, mutable=["batch_stats"]))(variables, x)
        variables = {**variables, **updates}

    def loss_and_grad(net):
        def loss_fn(params):
            out, _ = net.apply({**variables, "params": params}, x, train=True, mutable=["batch_stats"])
            return googlenet_loss(out.logits, out[1:], labels, aux_weight=0.3)[0]
        return jax.jit(jax.value_and_grad(loss_fn))(variables["params"])

    logits = {name: jax.jit(lambda v, x, net=net: net.apply(v, x, train=False))(variables, x)
              for name, net in (("f32", f32), ("bf16", bf16))}
    (loss32, grad32), (loss16, grad16) = loss_and_grad(f32), loss_and_grad(bf16)
    per_tensor = jax.tree.leaves(jax.tree.map(relative_error, grad16, grad32))
    flat = lambda g: np.concatenate([np.ravel(v) for v in jax.tree.leaves(g)])  # noqa: E731
    report = {
        "device": jax.devices()[0].device_kind,
        "eval_logits_relative_error": relative_error(logits["bf16"], logits["f32"]),
        "eval_top1_agreement": float(np.mean(np.argmax(logits["bf16"], -1) == np.argmax(logits["f32"], -1))),
        "logits_dtype": str(logits["bf16"].dtype),
        "train_loss_f32": float(loss32),
        "train_loss_relative_error": abs(float(loss16) - float(loss32)) / abs(float(loss32)),
        "grad_relative_error_global": relative_error(flat(grad16), flat(grad32)),
        "grad_relative_error_worst_tensor": max(per_tensor),
        "grad_relative_error_median_tensor": float(np.median(per_tensor)),
    }
    print(json.dumps(report, indent=2))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
