"""Training-step and inference throughput of the JAX GoogLeNet, beside torchvision's in the same run.

    python benchmarks/train_step.py [--batch 128] [--image-size 224] [--dtypes float32,bfloat16]
                                    [--steps 20] [--no-torch] [--json OUT.json]

Model only (synthetic device-resident batches, no input pipeline): the jitted train step of
googlenet_jax.training.steps (SGD momentum, weighted aux losses, BatchNorm updates, state donated)
on one device, and jitted eval-mode inference. The peer is torchvision's googlenet in the
same process: channels_last, SGD momentum, the same loss, autocast for bfloat16. Reported as
images per second and as ratios ours / torch (the machine may be shared: compare only numbers
from one run).
"""
import argparse
import functools
import json
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from googlenet_jax.training import steps  # noqa: E402
from googlenet_jax.model import GoogLeNet  # noqa: E402
from googlenet_jax.training.train_state import create_train_state  # noqa: E402

AUX_WEIGHT = 0.3


def _time(fn, steps_count, warmup=3):
    for _ in range(warmup):
        fn()
    start = time.perf_counter()
    for _ in range(steps_count):
        fn()
    return time.perf_counter() - start


def jax_throughput(batch, image_size, dtype, steps_count):
    model = GoogLeNet(num_classes=1000, dtype=jnp.dtype(dtype))
    tx = optax.sgd(0.01, momentum=0.9)
    state = create_train_state(model, tx, seed=0, image_size=image_size, use_ema=False)
    rng = np.random.default_rng(0)
    images = jax.device_put(rng.standard_normal((batch, image_size, image_size, 3), np.float32))
    labels = jax.device_put(rng.integers(0, 1000, batch).astype(np.int32))
    step = jax.jit(functools.partial(
        steps.train_step, model=model, tx=tx, learning_rate_fn=lambda s: 0.01, aux_weight=AUX_WEIGHT,
        label_smoothing=0.0, ema_decay=0.0, axis_name=None), donate_argnums=(0,))
    holder = {"state": state}

    def train():
        holder["state"], metrics = step(holder["state"], {"image": images, "label": labels})
        metrics["loss"].block_until_ready()

    train_seconds = _time(train, steps_count)
    variables = {"params": holder["state"].params, "batch_stats": holder["state"].batch_stats}
    predict = jax.jit(lambda v, x: model.apply(v, x, train=False))
    infer_seconds = _time(lambda: predict(variables, images).block_until_ready(), steps_count)
    return batch * steps_count / train_seconds, batch * steps_count / infer_seconds


def torch_throughput(batch, image_size, dtype, steps_count):
    import torch
    import torchvision

    device = "cuda" if torch.cuda.is_available() else "cpu"
    net = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True).to(device)
    net = net.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    images = torch.randn(batch, 3, image_size, image_size, device=device).to(memory_format=torch.channels_last)
    labels = torch.randint(0, 1000, (batch,), device=device)
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=dtype == "bfloat16")
    ce = torch.nn.functional.cross_entropy
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def train():
        net.train()
        with autocast:
            out = net(images)
            loss = ce(out.logits, labels) + AUX_WEIGHT * (ce(out.aux_logits1, labels) + ce(out.aux_logits2, labels))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sync()

    def infer():
        net.eval()
        with torch.no_grad(), autocast:
            net(images)
        sync()

    return batch * steps_count / _time(train, steps_count), batch * steps_count / _time(infer, steps_count)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--no-torch", action="store_true", help="skip the torchvision peer")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    report = {"device": str(jax.devices()[0].device_kind), "batch": args.batch, "image_size": args.image_size}
    for dtype in args.dtypes.split(","):
        train, infer = jax_throughput(args.batch, args.image_size, dtype, args.steps)
        entry = {"jax_train_images_per_sec": train, "jax_inference_images_per_sec": infer}
        if not args.no_torch:
            torch_train, torch_infer = torch_throughput(args.batch, args.image_size, dtype, args.steps)
            entry.update(torch_train_images_per_sec=torch_train, torch_inference_images_per_sec=torch_infer,
                         train_ratio_jax_over_torch=train / torch_train,
                         inference_ratio_jax_over_torch=infer / torch_infer)
        report[dtype] = entry
        print(json.dumps({dtype: entry}), flush=True)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
