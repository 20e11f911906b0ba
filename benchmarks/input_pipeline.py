"""Input-pipeline throughput on ImageNet-like JPEGs: our train and eval pipelines, images/s per CPU core.

    python benchmarks/input_pipeline.py [--images 2000] [--eval_images N] [--batch 128] [--warmup 2]
                                        [--timed 1024] [--repeats 3] [--cores 1,2] [--data_dir DIR]
                                        [--json OUT.json]

Data: `--images` train JPEGs (and `--eval_images`, by default one window's worth, for the test split)
made from real photos (random crops, resizes and flips of scikit-image's sample photos, a little
sensor-like grain), in ImageNet's typical sizes (500x375, 375x500, 500x333, ...), quality 90,
written as an image folder ROOT/{train,test}/<class>/<i>.JPEG in a temporary directory, or in
`--data_dir` (kept, and reused by later runs with the same settings).

Timed at 224x224, each in a child process pinned to 1 and to 2 cores (the affinity is set before
TensorFlow loads, so its thread pools size themselves to the pinned cores), cache off, one process:
  train       googlenet_jax.data.train_batches(dataset="image_folder", ...) as the trainer calls it:
              read, fused decode of the Inception crop, resize, flip, normalize, batch;
  eval        googlenet_jax.data.eval_batches(...): read, full decode, shorter side to 256
              (antialiased), center 224 crop, normalize, batch;
  stages      read only; read + the train decode (crop box only); read + the eval decode (whole
              image): where the time goes;
  tf peer     plain tf.io.decode_jpeg of the whole image + resize to 224x224 through tf.data
              (same thread pool and AUTOTUNE as ours);
  pil peer    PIL decode + Inception crop + resize + flip + normalize + batch in Python (1 core).
Each measurement is `--repeats` windows (warm-up batches, then at least `--timed` images), the core
counts and pipelines taking turns. Two rates: img/s, the best window by wall clock; img/CPU-s, images
per CPU-second of the child (median over windows), what one dedicated core gives: on a shared
machine other processes steal wall time but hardly change the CPU time per image, so ratios, time
shares and core counts use it. Each window also records the child's CPU use, what other processes
used of the same cores and the thread count (TensorFlow's pools follow the affinity: more threads at
2 cores, at most 1.0 CPU-s per second at 1). "Cores to feed 10,000 img/s" = 10000 / img/CPU-s at
1 core, assuming linear scaling across cores; the measured 1 -> 2 core scaling is printed beside it.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import io
import json
import os
import pathlib
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SIZE = 224
RESIZE = 256  # eval: shorter side before the center crop (the trainer's resize_size for 224)
TARGET = 10_000  # img/s to feed
CONTENDED = 0.25  # others' CPU use (cores) above which a window's wall clock is not trusted
MIN_WINDOW_S = 1.0  # fast stages (reading) still get a window longer than the clock ticks
QUALITY = 90
GRAIN = 10.0  # std of the luminance noise: photo-like high frequencies, so file sizes nearer ImageNet's
# Colour photos among scikit-image's samples; each is a class.
SOURCES = ("astronaut.png", "chelsea.png", "coffee.png", "hubble_deep_field.jpg", "motorcycle_left.png",
           "rocket.jpg", "retina.jpg", "ihc.png")
# ImageNet's common (width, height) and rough shares.
SHAPES = ((500, 375), (375, 500), (500, 333), (333, 500), (500, 400), (500, 500))
SHAPE_SHARES = (0.45, 0.15, 0.2, 0.05, 0.1, 0.05)
DATA_VERSION = 1
TF_PIPELINES = ("train", "eval", "read", "train_decode", "eval_decode", "tf_peer")
LABELS = {
    "train": "train (ours)", "eval": "eval (ours)", "read": "  read file only",
    "train_decode": "  read + train decode (crop box)", "eval_decode": "  read + eval decode (whole image)",
    "tf_peer": "peer: tf decode_jpeg + resize", "pil_peer": "peer: PIL, in Python",
}


# ----------------------------------------------------------------------------- data


def _sources() -> list[Image.Image]:
    import skimage  # only its bundled sample photos

    folder = os.path.join(os.path.dirname(skimage.__file__), "data")
    images = [Image.open(os.path.join(folder, name)).convert("RGB") for name in SOURCES]
    for image in images:
        image.load()
    return images


_worker_sources: list[Image.Image] = []


def _init_worker():
    _worker_sources[:] = _sources()


def _make_jpeg(split_id: int, i: int, seed: int) -> bytes:
    """One ImageNet-like JPEG; a pure function of (seed, split, i), whichever worker makes it."""
    rng = np.random.default_rng([seed, split_id, i])
    source = _worker_sources[i % len(SOURCES)]
    w, h = SHAPES[rng.choice(len(SHAPES), p=SHAPE_SHARES)]
    fit = min(source.width / w, source.height / h)
    scale = fit * rng.uniform(0.6, 1.0)  # a crop of 60-100% of the largest box of this shape
    cw, ch = w * scale, h * scale
    left, top = rng.uniform(0, source.width - cw), rng.uniform(0, source.height - ch)
    image = source.resize((w, h), Image.BICUBIC, box=(left, top, left + cw, top + ch))
    if rng.random() < 0.5:
        image = image.transpose(Image.FLIP_LEFT_RIGHT)
    pixels = np.asarray(image, np.float32) + GRAIN * rng.standard_normal((h, w, 1), np.float32)
    out = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=QUALITY)
    return out.getvalue()


def _write_chunk(root: str, split: str, split_id: int, indices: range,
                 seed: int) -> list[tuple[int, tuple[int, int]]]:
    written = []
    for i in indices:
        blob = _make_jpeg(split_id, i, seed)
        path = os.path.join(root, split, SOURCES[i % len(SOURCES)].split(".")[0], f"{i:05d}.JPEG")
        with open(path, "wb") as f:
            f.write(blob)
        written.append((len(blob), Image.open(io.BytesIO(blob)).size))
    return written


def prepare_data(root: str, train: int, test: int, seed: int) -> tuple[dict, bool]:
    """Writes (or reuses) the image folder; returns its description (sizes, shapes) and whether reused."""
    settings = {"version": DATA_VERSION, "train": train, "test": test, "seed": seed, "quality": QUALITY,
                "grain": GRAIN, "sources": list(SOURCES)}
    manifest = os.path.join(root, "manifest.json")
    if os.path.exists(manifest):
        with open(manifest) as f:
            previous = json.load(f)
        if previous["settings"] == settings and previous["data"]:
            return previous["data"], True
        for split in ("train", "test"):  # ours (the manifest says so): other settings, or unfinished
            shutil.rmtree(os.path.join(root, split), ignore_errors=True)
    elif any(os.path.exists(os.path.join(root, s)) for s in ("train", "test")):
        raise SystemExit(f"{root} holds a train/ or test/ folder this benchmark did not write; pick another")
    with open(manifest, "w") as f:  # first, so that an interrupted run is recognised as ours
        json.dump({"settings": settings, "data": None}, f)
    start = time.perf_counter()
    workers = len(os.sched_getaffinity(0))
    chunk = 50
    with concurrent.futures.ProcessPoolExecutor(workers, initializer=_init_worker) as pool:
        jobs = []
        for split_id, (split, count) in enumerate((("train", train), ("test", test))):
            for name in SOURCES:
                os.makedirs(os.path.join(root, split, name.split(".")[0]), exist_ok=True)
            jobs += [pool.submit(_write_chunk, root, split, split_id, range(s, min(s + chunk, count)), seed)
                     for s in range(0, count, chunk)]
        written = [w for job in jobs for w in job.result()]
    sizes = [n for n, _ in written]
    shapes: dict[str, int] = {}
    for _, (w, h) in written:
        shapes[f"{w}x{h}"] = shapes.get(f"{w}x{h}", 0) + 1
    description = {
        "train_images": train, "test_images": test, "classes": len(SOURCES), "quality": QUALITY,
        "mean_kb": round(float(np.mean(sizes)) / 1024, 1),
        "median_kb": round(float(np.median(sizes)) / 1024, 1),
        "mean_pixels": round(float(np.mean([w * h for _, (w, h) in written]))),
        "shapes": dict(sorted(shapes.items(), key=lambda kv: -kv[1])),
        "write_seconds": round(time.perf_counter() - start, 1),
    }
    with open(manifest, "w") as f:
        json.dump({"settings": settings, "data": description}, f, indent=2)
    return description, False


# ----------------------------------------------------------------------------- child: timing


def _busy_jiffies(cpus: list[int]) -> int:
    """Jiffies the given cores spent on anything but idle/iowait, whoever ran there (steal included:
    the hypervisor giving the core to another machine)."""
    total = 0
    with open("/proc/stat") as f:
        for line in f:
            name, *fields = line.split()
            if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
                values = [int(v) for v in fields[:8]]
                total += sum(values) - values[3] - values[4]
    return total


def time_window(batches, count, warmup: int, timed: int, cpus: list[int]) -> dict:
    """Consumes `warmup` batches, then times batches until `timed` images and MIN_WINDOW_S have passed.

    cpu_busy: this process's CPU seconds per wall second (at most the pinned core count when
    TensorFlow follows the affinity); others_busy: what other processes used of the same cores;
    threads: the process's threads at the end of the window (the pools TensorFlow sized).
    """
    it = iter(batches)
    for _ in range(warmup):
        next(it)
    hz = os.sysconf("SC_CLK_TCK")
    images, busy0 = 0, _busy_jiffies(cpus)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    while images < timed or time.perf_counter() - wall0 < MIN_WINDOW_S:
        images += count(next(it))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    busy = (_busy_jiffies(cpus) - busy0) / hz
    threads = len(os.listdir("/proc/self/task"))
    it.close()
    return {"images": images, "seconds": round(wall, 3), "img_per_s": round(images / wall, 1),
            "img_per_cpu_s": round(images / cpu, 1), "cpu_busy": round(cpu / wall, 2),
            "others_busy": round(max(0.0, busy - cpu) / wall, 2),
            "threads": threads}


def _tf_streams(root: str, batch: int):
    """name -> (zero-argument function making an endless batch iterator, images in a batch)."""
    import tensorflow as tf

    from googlenet_jax import data
    from googlenet_jax.configs import imagenet_torchvision
    from googlenet_jax.data import preprocess, sources

    paths = list(sources.list_image_folder(root, "train").paths)

    def train():  # the trainer's call (configs/imagenet_torchvision.py), one process, no cache
        yield from data.train_batches(
            dataset="image_folder", data_dir=root, split="train", global_batch_size=batch,
            image_size=SIZE, normalization="torchvision", seed=0,
            augment=data.AugmentConfig(**imagenet_torchvision.get_config().augment.to_dict()),
            num_devices=1, process_index=0, process_count=1, shuffle_buffer=10_000, cache=False)

    def eval_():  # passes over the test split, back to back
        while True:
            yield from data.eval_batches(
                dataset="image_folder", data_dir=root, split="test", global_batch_size=batch,
                image_size=SIZE, normalization="torchvision", resize_size=RESIZE, num_devices=1,
                process_index=0, process_count=1, cache=False)

    def mapped(fn):
        # The same tf.data shape and options as pipeline.py: parallel map (AUTOTUNE), batch, prefetch.
        def stream():
            ds = tf.data.Dataset.from_tensor_slices(paths).repeat().enumerate()

            def prepare(k, path):
                return fn(tf.io.read_file(path), tf.stack([k, tf.constant(0, tf.int64)]))
            ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
            options = tf.data.Options()
            options.deterministic = True
            options.autotune.enabled = True
            yield from ds.batch(batch).prefetch(2).with_options(options).as_numpy_iterator()
        return stream

    # Stages end in a scalar (the decoded shape) so that nothing but the stage itself is timed.
    def read(encoded, seed):
        return tf.strings.length(encoded)

    def train_decode(encoded, seed):
        return tf.shape(preprocess.inception_crop(encoded, seed))[0]

    def eval_decode(encoded, seed):
        return tf.shape(preprocess.decode_image(encoded))[0]

    def tf_peer(encoded, seed):
        return tf.image.resize(tf.io.decode_jpeg(encoded, channels=3), (SIZE, SIZE))

    count_rows = len
    return {
        "train": (train, lambda b: len(b["label"])),
        "eval": (eval_, lambda b: int(b["mask"].sum())),
        "read": (mapped(read), count_rows),
        "train_decode": (mapped(train_decode), count_rows),
        "eval_decode": (mapped(eval_decode), count_rows),
        "tf_peer": (mapped(tf_peer), count_rows),
    }, tf.__version__


def _pil_stream(root: str, batch: int):
    """torchvision-style train transform in Python: decode, Inception crop + resize (one PIL call,
    bilinear), flip, normalize, stack into a batch."""
    from googlenet_jax.data import sources
    from googlenet_jax.model.input_spec import IMAGENET_MEAN, IMAGENET_STD

    paths = sources.list_image_folder(root, "train").paths
    mean, std = np.float32(IMAGENET_MEAN), np.float32(IMAGENET_STD)
    rng = np.random.default_rng(0)

    def box(w, h):
        for _ in range(10):  # torchvision's RandomResizedCrop sampling
            area = w * h * rng.uniform(0.08, 1.0)
            aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
            cw, ch = round(float(np.sqrt(area * aspect))), round(float(np.sqrt(area / aspect)))
            if 0 < cw <= w and 0 < ch <= h:
                left, top = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
                return (left, top, left + cw, top + ch)
        return (0, 0, w, h)

    def one(path):
        with Image.open(path) as im:
            im = im.convert("RGB")
            im = im.resize((SIZE, SIZE), Image.BILINEAR, box=box(*im.size))
        if rng.random() < 0.5:
            im = im.transpose(Image.FLIP_LEFT_RIGHT)
        return (np.asarray(im, np.float32) / 255 - mean) / std

    def stream():
        k = 0
        while True:
            yield np.stack([one(paths[(k + j) % len(paths)]) for j in range(batch)])
            k += batch
    return stream, len


def child(spec: dict) -> dict:
    cpus = spec["cpus"]
    os.sched_setaffinity(0, cpus)  # before TensorFlow loads: its thread pools are sized from it
    streams, tf_version = _tf_streams(spec["root"], spec["batch"])
    streams["pil_peer"] = _pil_stream(spec["root"], spec["batch"])
    results = {}
    for name in spec["pipelines"]:
        make, count = streams[name]
        results[name] = time_window(make(), count, spec["warmup"], spec["timed"], cpus)
    return {"cpus": cpus, "tensorflow": tf_version, "results": results}


# ----------------------------------------------------------------------------- parent: report


def run_child(spec: dict) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    command = [sys.executable, str(pathlib.Path(__file__).resolve()), "--child", json.dumps(spec)]
    proc = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"child on cores {spec['cpus']} failed (exit {proc.returncode})")
    return json.loads(lines[-1][len("RESULT "):])


def cpu_model() -> str:
    """'model name' of /proc/cpuinfo, with family and model (a VM may show only the brand)."""
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                info.setdefault(key.strip(), value.strip())
    except OSError:
        return platform.processor() or platform.machine()
    name = info.get("model name", platform.processor() or platform.machine())
    if "cpu family" in info and "model" in info:
        name += f" (family {info['cpu family']}, model {info['model']})"
    return name


def summarize(windows: dict, core_counts: list[int]) -> dict:
    """Per (pipeline, cores): best wall-clock window and median images per CPU-second, then the
    per-core rates, scaling, ratios and time shares.

    Images per CPU-second of our process is what a dedicated core would give: on a shared machine
    other processes take wall time from a window but hardly change the CPU time per image. Ratios,
    shares and core counts use it; the scaling uses wall-clock rates (can 2 cores be kept busy).
    """
    best = {}
    for (name, cores), runs in windows.items():
        top = max(runs, key=lambda r: r["img_per_s"])
        best.setdefault(name, {})[str(cores)] = {
            "img_per_s": top["img_per_s"], "img_per_s_per_core": round(top["img_per_s"] / cores, 1),
            "img_per_cpu_s": round(statistics.median(r["img_per_cpu_s"] for r in runs), 1),
            "cpu_busy": top["cpu_busy"], "others_busy": top["others_busy"], "threads": top["threads"],
            "windows": runs}
    lo, hi = str(min(core_counts)), str(max(core_counts))

    def get(name, key, cores=lo):
        return best.get(name, {}).get(cores, {}).get(key)

    def ratio(a, b):
        return round(a / b, 2) if a and b else None

    per_cpu = "img_per_cpu_s"
    summary = {"best": best, "scaling": {}, "cores_for_10k": {}}
    for name in best:
        wall_hi, wall_lo = get(name, "img_per_s", hi), get(name, "img_per_s")
        summary["scaling"][name] = ratio(wall_hi, wall_lo) if hi != lo else None
    for name in ("train", "eval", "tf_peer", "pil_peer"):
        summary["cores_for_10k"][name] = {
            f"at_{c}_core": round(TARGET / get(name, per_cpu, c), 1) if get(name, per_cpu, c) else None
            for c in (lo, hi)}
    summary["ratios"] = {  # per CPU-second, same core count
        f"{ours}_over_{peer}": {c: ratio(get(ours, per_cpu, c), get(peer, per_cpu, c)) for c in (lo, hi)}
        for ours in ("train", "eval") for peer in ("tf_peer", "pil_peer")}
    summary["ratios_wall_clock_best"] = {
        f"{ours}_over_{peer}": {c: ratio(get(ours, "img_per_s", c), get(peer, "img_per_s", c))
                                for c in (lo, hi)}
        for ours in ("train", "eval") for peer in ("tf_peer", "pil_peer")}
    # Share of a pipeline's CPU time per image spent in a stage = pipeline rate / stage rate (1 core).
    summary["time_share"] = {
        "train": {s: ratio(get("train", per_cpu), get(s, per_cpu)) for s in ("read", "train_decode")},
        "eval": {s: ratio(get("eval", per_cpu), get(s, per_cpu)) for s in ("read", "eval_decode")},
    }
    return summary


def print_report(result: dict) -> None:
    d, s, m, settings = result["data"], result["summary"], result["machine"], result["settings"]
    counts = [str(c) for c in settings["cores"]]
    lo, hi = counts[0], counts[-1]
    print(f"\n{d['train_images']} train + {d['test_images']} test JPEGs, mean {d['mean_kb']} KB "
          f"(median {d['median_kb']}), {d['mean_pixels']:,} pixels on average; output {SIZE}x{SIZE}, "
          f"batch {settings['batch']}")
    print(f"{m['cpu_model']}, {m['cores']} cores; TensorFlow {result['versions']['tensorflow']}; "
          f"{settings['repeats']} windows of >= {settings['timed']} images each")
    print("img/s: best window, wall clock; img/CPU-s: median over windows, per CPU-second of the process "
          "(= img/s of one dedicated core)\n")
    print(f"{'':36}" + "".join(f"{c + (' core' if c == '1' else ' cores'):^20}" for c in counts)
          + f"{'scaling':>9}  cpu busy (others on those cores)")
    print(f"{'pipeline':36}" + f"{'img/s':>9} {'img/CPU-s':>10}" * len(counts))
    for name, label in LABELS.items():
        if name not in s["best"]:
            continue
        row, busy = f"{label:36}", []
        for c in counts:
            b = s["best"][name].get(c)
            row += f"{b['img_per_s']:>9.0f} {b['img_per_cpu_s']:>10.0f}" if b else f"{'-':>9} {'':>10}"
            if b:
                busy.append(f"{b['cpu_busy']:.2f} ({b['others_busy']:.2f})")
        scaling = s["scaling"].get(name)
        contended = max(b["others_busy"] for b in s["best"][name].values()) > CONTENDED
        row += f"{scaling:>8.2f}{'*' if contended else 'x'}" if scaling else f"{'':>9}"
        print(row + "  " + " / ".join(busy))
    print(f"* other processes used more than {CONTENDED} of a core during a best window: the wall-clock "
          "scaling is a lower bound")
    r, share, need, scaling = s["ratios"], s["time_share"], s["cores_for_10k"], s["scaling"]

    def x(value):
        return f"x{value:.2f}" if value else "-"

    def pct(value):
        return f"{value:.0%}" if value else "-"

    print(f"\nours / peers, per CPU-second at {lo} core (at {hi}): train / tf peer "
          f"{x(r['train_over_tf_peer'][lo])} ({x(r['train_over_tf_peer'][hi])}), train / PIL "
          f"{x(r['train_over_pil_peer'][lo])}; eval / tf peer {x(r['eval_over_tf_peer'][lo])} "
          f"({x(r['eval_over_tf_peer'][hi])}), eval / PIL {x(r['eval_over_pil_peer'][lo])}")
    train_share, eval_share = share["train"], share["eval"]
    print(f"CPU time per image in read + JPEG decode, at {lo} core: train "
          f"{pct(train_share['train_decode'])} (crop box only), eval {pct(eval_share['eval_decode'])} "
          f"(whole image); reading alone: train {pct(train_share['read'])}, eval {pct(eval_share['read'])}")
    print(f"cores to feed {TARGET:,} img/s = {TARGET:,} / (img/CPU-s at {lo} core), linear scaling assumed "
          f"(measured {lo} -> {hi}: train {x(scaling.get('train'))}, eval {x(scaling.get('eval'))}): "
          f"train {need['train'][f'at_{lo}_core']}, eval {need['eval'][f'at_{lo}_core']}; "
          f"from img/CPU-s at {hi} cores: train {need['train'][f'at_{hi}_core']}, "
          f"eval {need['eval'][f'at_{hi}_core']}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000, help="train JPEGs to write")
    parser.add_argument("--eval_images", type=int, help="test JPEGs (default: one window's worth)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=2, help="batches before each timed window")
    parser.add_argument("--timed", type=int, default=1024, help="images per timed window")
    parser.add_argument("--repeats", type=int, default=3, help="windows per pipeline and core count")
    parser.add_argument("--cores", default="1,2", help="core counts to pin the children to")
    parser.add_argument("--data_dir", help="write (or reuse) the JPEGs here instead of a temp dir")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(json.loads(args.child))))
        return
    available = sorted(os.sched_getaffinity(0))
    core_counts = sorted({int(c) for c in args.cores.split(",")})
    if max(core_counts) > len(available):
        raise SystemExit(f"--cores {args.cores}: only {len(available)} cores available")
    eval_images = args.eval_images or args.warmup * args.batch + args.timed
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.abspath(args.data_dir or tmp)
        os.makedirs(root, exist_ok=True)
        description, reused = prepare_data(root, args.images, eval_images, args.seed)
        written = "reused" if reused else f"written in {description['write_seconds']} s"
        print(f"data: {description['train_images']} + {description['test_images']} JPEGs, mean "
              f"{description['mean_kb']} KB, {written}", flush=True)
        windows: dict = {}
        # Core counts and pipelines alternate so that a noisy spell of the machine hits them alike.
        for repeat in range(args.repeats):
            for cores in core_counts:
                pipelines = list(TF_PIPELINES) + (["pil_peer"] if cores == 1 else [])
                spec = {"cpus": available[:cores], "root": root, "batch": args.batch, "warmup": args.warmup,
                        "timed": args.timed, "pipelines": pipelines}
                out = run_child(spec)
                for name, window in out["results"].items():
                    windows.setdefault((name, cores), []).append(window)
                print(f"  repeat {repeat + 1}, {cores} core(s): "
                      + ", ".join(f"{n} {w['img_per_s']:.0f}" for n, w in out["results"].items()), flush=True)
    result = {
        "settings": {"images": args.images, "eval_images": eval_images, "batch": args.batch,
                     "warmup_batches": args.warmup, "timed": args.timed, "repeats": args.repeats,
                     "cores": core_counts, "output_hw": [SIZE, SIZE], "eval_resize": RESIZE,
                     "normalization": "torchvision", "cache": False},
        "data": description,
        "machine": {"processor": platform.processor(), "cpu_model": cpu_model(), "cores": os.cpu_count(),
                    "cores_available": len(available)},
        "versions": {"tensorflow": out["tensorflow"], "python": platform.python_version(),
                     "pillow": Image.__version__, "numpy": np.__version__},
        "summary": summarize(windows, core_counts),
        "seconds": round(time.perf_counter() - start, 1),
    }
    print_report(result)
    print(f"\n({result['seconds']} s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
