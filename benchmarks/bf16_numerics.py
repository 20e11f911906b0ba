"""How far bfloat16 compute moves GoogLeNet's outputs and gradients from float32.

    python benchmarks/bf16_numerics.py [--batch 64] [--image-size 224] [--json OUT.json]

Same float32 parameters (torchvision initialisation, BN running statistics brought near the
batch statistics), same inputs; the model computes in float64 (the reference, under
jax_enable_x64), float32 and bfloat16. For float32 and bfloat16: relative error
(||x - ref|| / ||ref||) of eval logits, train-mode loss and gradient (global and median per
tensor), the gradient's cosine similarity to the reference, and top-1 agreement.
"""
import argparse
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from googlenet_jax.model import GoogLeNet  # noqa: E402
from googlenet_jax.model.losses import googlenet_loss  # noqa: E402


def relative_error(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def cosine(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--json")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = np.asarray(rng.standard_normal((args.batch, args.image_size, args.image_size, 3)), np.float32)
    labels = np.asarray(rng.integers(0, 1000, args.batch), np.int32)
    nets = {name: GoogLeNet(dropout_rate=0.0, aux_dropout_rate=0.0, dtype=dtype)
            for name, dtype in (("f64", jnp.float64), ("f32", jnp.float32), ("bf16", jnp.bfloat16))}
    variables = jax.jit(lambda x: nets["f32"].init(jax.random.key(0), x, train=False))(x)
    # Running statistics near the batch statistics, so eval-mode activations are normalised.
    for _ in range(20):
        _, updates = jax.jit(lambda v, x: nets["f32"].apply(v, x, train=True, mutable=["batch_stats"]))(variables, x)
        variables = {**variables, **updates}
    variables = jax.tree.map(np.asarray, variables)

    def outputs(net):
        def loss_fn(params):
            out, _ = net.apply({**variables, "params": params}, x, train=True, mutable=["batch_stats"])
            return googlenet_loss(out.logits, out[1:], labels, aux_weight=0.3)[0]
        loss, grads = jax.jit(jax.value_and_grad(loss_fn))(variables["params"])
        logits = jax.jit(lambda v, x: net.apply(v, x, train=False))(variables, x)
        flat = np.concatenate([np.ravel(g) for g in jax.tree.leaves(grads)]).astype(np.float64)
        return np.asarray(logits, np.float64), float(loss), flat, jax.tree.map(np.asarray, grads)

    # The float64 run is the reference: float32's distance from it shows how much rounding
    # alone moves this net, bfloat16's how much more its 8-bit mantissa moves it.
    with jax.enable_x64(True):
        ref_logits, ref_loss, ref_flat, ref_grads = outputs(nets["f64"])
    report = {"device": jax.devices()[0].device_kind, "batch": args.batch, "image_size": args.image_size}
    for name in ("f32", "bf16"):
        logits, loss, flat, grads = outputs(nets[name])
        per_tensor = jax.tree.leaves(jax.tree.map(relative_error, grads, ref_grads))
        report[name] = {
            "eval_logits_relative_error": relative_error(logits, ref_logits),
            "eval_top1_agreement": float(np.mean(np.argmax(logits, -1) == np.argmax(ref_logits, -1))),
            "train_loss_relative_error": abs(loss - ref_loss) / abs(ref_loss),
            "grad_relative_error_global": relative_error(flat, ref_flat),
            "grad_cosine_similarity": cosine(flat, ref_flat),
            "grad_relative_error_median_tensor": float(np.median(per_tensor)),
        }
    print(json.dumps(report, indent=2))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
