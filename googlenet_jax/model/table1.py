"""The paper's Table 1 ("Going Deeper with Convolutions", arXiv 1409.4842), computed from our model.

    summarize(variant="torchvision", image_size=224, num_classes=1000, **model_fields) -> dict

Every number comes from the model itself, `GoogLeNet(variant=..., num_classes=..., **model_fields)`
(any field a config's `model` section sets), traced abstractly with `jax.eval_shape` (nothing is
allocated or computed) with every stage captured, and from its block descriptions
(`model.backbone()`: pool windows, strides, which part fills which column): parameters are the
sizes of the real flax parameter tree under each row's modules, output sizes and patch sizes are
those the traced network produces and uses, and multiply-adds (MACs) are
out_H * out_W * kh * kw * Cin * Cout per convolution (from its kernel shape and its real output
size) and in * out per linear layer. MACs count only convolutions and linear layers: BatchNorm,
LRN, ReLU, pools, biases and the softmax are not counted. Parameters
include conv biases (paper variant) or BatchNorm scales and offsets (torchvision variant);
BatchNorm statistics are not parameters. Only the paper's printed params/ops (`PAPER_TABLE1`)
are data, shown at 224x224 with 1000 classes for the network Table 1 describes, the only setting
the paper gives them for; they are approximate (a few rows disagree with the table's own channel
counts). For an Inception block other than the reduced one (Figure 2a's naive module), each row
and the totals also carry the reduced module's figures at the same widths ("reduced_params",
"reduced_macs"), the comparison the paper makes.

The result (and `--json OUT`) is {"variant", "inception_block", "image_size", "num_classes", "layers": [...],
"params", "params_with_aux", "macs", "notes"}: "params" without the auxiliary heads,
"params_with_aux" with them (null for the paper variant at sizes where its aux heads cannot be
built, with a note saying why), "macs" per image of the main path. Each layer is a dict: type,
label, name, modules, patch_size [kh, kw], stride, output_size [H, W, C], depth, the six channel
columns ch1x1, ch3x3_reduce, ch3x3, ch5x5_reduce, ch5x5, pool_proj (null where Table 1 leaves
them blank), params, macs, paper_params and paper_ops (the printed K x 1024 and M x 10^6, null
where the paper gives none).
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from googlenet_jax.errors import first_line
from googlenet_jax.model import architecture as arch
from googlenet_jax.model import network

# Table 1 as printed: params in K (1024 weights), ops in M (10^6 multiply-adds); 224x224, 1000
# classes. The conv1 row is inconsistent as printed: 7x7x3x64 weights are 9.2K (9.4 thousand)
# and 118M multiply-adds at 112x112.
PAPER_TABLE1 = {
    "conv1": ("2.7K", "34M"), "conv2+conv3": ("112K", "360M"),
    "inception3a": ("159K", "128M"), "inception3b": ("380K", "304M"),
    "inception4a": ("364K", "73M"), "inception4b": ("437K", "88M"), "inception4c": ("463K", "100M"),
    "inception4d": ("580K", "119M"), "inception4e": ("840K", "170M"),
    "inception5a": ("1072K", "54M"), "inception5b": ("1388K", "71M"),
    "fc": ("1000K", "1M"),
}
PAPER_SETTING = (224, 1000)  # (image_size, num_classes) of the paper's figures
PAPER_POOL = (3, 2)  # Table 1's max pools are all 3x3/2
UNITS = {"K": 1024, "M": 10**6}  # the paper's units: K for parameters, M for operations

# Table 1's six channel columns, each filled by the width of the block part naming it (`Part.column`).
INCEPTION_COLUMNS = arch.InceptionChannels._fields


class Trace(NamedTuple):
    """The model traced abstractly: its parameter tree and every stage's output shape."""

    params: Any  # the parameter tree, jax.ShapeDtypeStruct leaves
    shapes: dict  # stage name (and "inceptionXY/<part>") -> output shape
    blocks: dict  # backbone stage name -> its architecture.Block


def _trace(net: network.GoogLeNet, image_size: int) -> Trace:
    """Traces `net.init` on one (1, S, S, 3) image abstractly, capturing every stage."""
    image = jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32)
    stages = arch.stage_names(net.variant, aux_logits=False) + arch.substages(net.backbone())
    (_, captured), variables = jax.eval_shape(
        lambda x: net.init_with_output(jax.random.key(0), x, train=False, capture=stages), image)
    shapes = {name: tuple(value.shape) for name, value in captured.items()}
    return Trace(variables["params"], shapes, dict(net.backbone()))


def _size(tree) -> int:
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree))


def _macs(traced: Trace, name: str) -> int:
    """Multiply-adds of every kernel under top-level module `name`: kernel size x output pixels.

    A conv kernel (kh, kw, Cin, Cout) costs kh*kw*Cin*Cout per output pixel of the module that
    owns it; a dense kernel (in, out) costs in*out once per image.
    """
    total = 0
    for path, leaf in jax.tree_util.tree_flatten_with_path(traced.params[name])[0]:
        keys = (name,) + tuple(entry.key for entry in path)
        if keys[-1] != "kernel":
            continue
        owner = keys[:-1]
        if owner[-1] == "conv":  # a ConvBlock's kernel sits in its "conv" parameter holder
            owner = owner[:-1]
        out_shape = traced.shapes["/".join(owner)]
        if out_shape[-1] != leaf.shape[-1]:
            raise RuntimeError(f"{'/'.join(keys)}: kernel {leaf.shape} does not match output {out_shape}")
        total += math.prod(out_shape[1:-1]) * math.prod(leaf.shape)
    return total


def _kernel(traced: Trace, *path: str) -> tuple:
    """Kernel shape (kh, kw, Cin, Cout) of the ConvBlock at `path`, e.g. ("inception3a", "branch5x5")."""
    tree = traced.params
    for name in path:
        tree = tree[name]
    return tuple(tree["conv"]["kernel"].shape)


def _paper_figures(name: str, paper_setting: bool) -> dict:
    """The paper's printed params and ops for a row, as counts; None outside the paper's setting."""
    printed = PAPER_TABLE1.get(name) if paper_setting else None
    if printed is None:
        return {"paper_params": None, "paper_ops": None}
    params, ops = (round(float(text[:-1]) * UNITS[text[-1]]) for text in printed)
    return {"paper_params": params, "paper_ops": ops}


def _row(kind: str, label: str, name: str, output_shape, *, modules=(), patch=None, stride=None,
         depth=0, columns=None, traced: Trace, paper_setting: bool) -> dict:
    """One Table 1 row; params and macs are summed over `modules` (top-level parameter names)."""
    row = {"type": kind, "label": label, "name": name, "modules": list(modules),
           "patch_size": list(patch) if patch else None, "stride": stride,
           "output_size": list(output_shape[-3:]), "depth": depth}
    row.update({column: (columns or {}).get(column) for column in INCEPTION_COLUMNS})
    row["params"] = sum(_size(traced.params[module]) for module in modules)
    row["macs"] = sum(_macs(traced, module) for module in modules)
    row.update(_paper_figures(name, paper_setting))
    return row


def _table_rows(traced: Trace, variant: str, paper_setting: bool) -> list:
    """Table 1's rows in order: stem, the Inception stages with their pools, then the head."""
    row = functools.partial(_row, traced=traced, paper_setting=paper_setting)

    def pool_row(name):
        pool = traced.blocks[name].parts[0].layer
        return row("max pool", "max pool", name, traced.shapes[name], patch=(pool.kernel, pool.kernel),
                   stride=pool.stride)

    def conv_row(name, modules, columns=None):
        last = modules[-1]  # a merged row shows its last convolution's patch, as Table 1 does
        return row("convolution", "convolution", name, traced.shapes[last], modules=modules,
                   patch=_kernel(traced, last)[:2], stride=traced.blocks[last].stride,
                   depth=len(modules), columns=columns)

    # Table 1 merges the 1x1 reduce (conv2) and the 3x3 (conv3) into one row of depth 2; LRN
    # has no row.
    rows = [conv_row("conv1", ["conv1"]), pool_row("pool1"),
            conv_row("conv2+conv3", ["conv2", "conv3"],
                     {"ch3x3_reduce": _kernel(traced, "conv2")[-1], "ch3x3": _kernel(traced, "conv3")[-1]}),
            pool_row("pool2")]
    for name, block in traced.blocks.items():
        if block.kind == "max_pool" and name not in ("pool1", "pool2"):
            rows.append(pool_row(name))
        elif not block.single:
            columns = {part.column: _kernel(traced, name, part.name)[-1] for part in block.parts if part.column}
            rows.append(row("inception", f"inception ({name.removeprefix('inception')})", name,
                            traced.shapes[name], modules=[name], depth=block.depth(), columns=columns))

    features = rows[-1]["output_size"]
    pooled = (1, 1, features[-1])
    rate = arch.variant_spec(variant).dropout_rate  # GoogLeNet's dropout_rate=None: the variant's own
    logits = (1, 1, traced.shapes["fc"][-1])
    rows += [row("avg pool", "avg pool", "avgpool", pooled, patch=features[:2], stride=1),  # global
             row("dropout", f"dropout ({rate:.0%})", "dropout", pooled),
             row("linear", "linear", "fc", logits, modules=["fc"], depth=1),
             row("softmax", "softmax", "softmax", logits)]
    return rows


def _notes(traced: Trace, rows: list, variant: str, paper_setting: bool) -> list:
    """Where this model departs from Table 1 as printed, read off the traced model."""
    notes = ["MACs count convolutions and linear layers only (not BatchNorm, LRN, ReLU, pools or biases)."]
    kernels5x5 = {_kernel(traced, row["name"], "branch5x5")[:2] for row in rows
                  if row["type"] == "inception" and "branch5x5" in traced.params[row["name"]]}
    if kernels5x5 != {(5, 5)}:
        shown = ", ".join(f"{kh}x{kw}" for kh, kw in sorted(kernels5x5))
        notes.append(f"the '#5x5' branch convolutions are {shown} in this variant, not 5x5 "
                     f"(torchvision keeps them for its released weights).")
    for before, row in zip(rows, rows[1:]):
        if row["type"] == "max pool" and (row["patch_size"][0], row["stride"]) != PAPER_POOL:
            notes.append(f"the max pool after {before['label']} is {_patch_text(row)} "
                         f"(the paper's: {PAPER_POOL[0]}x{PAPER_POOL[0]}/{PAPER_POOL[1]}).")
    paths = [path for path, _ in jax.tree_util.tree_flatten_with_path(traced.params)[0]]
    if any(entry.key == "bn" for path in paths for entry in path):
        notes.append("convolutions carry BatchNorm scales and offsets (2 per channel) instead of biases.")
    if arch.variant_spec(variant).lrn:
        notes.append("LRN after pool1 and after conv3 has no parameters and no row, as in Table 1.")
    notes.append("params here include every bias and BatchNorm term; Table 1's K is 1024 parameters, "
                 "its M 10^6 multiply-adds.")
    if paper_setting:
        notes.append("the paper's conv1 row is inconsistent as printed (7x7x3x64 weights: 9.2K, 118M).")
    else:
        notes.append("the paper's figures are for Table 1's network at 224x224 and 1000 classes only: not shown.")
    return notes


def summarize(variant: str = "torchvision", image_size: int = 224, num_classes: int = 1000,
              **model_fields) -> dict:
    """Table 1 for GoogLeNet(variant, num_classes, **model_fields) on a square image_size input
    (see the module doc).

    Raises ValueError for an unknown variant or model field, an image below the variant's
    minimum input size, or a non-positive class count.
    """
    if variant not in arch.VARIANTS:
        raise ValueError(f"variant must be one of {sorted(arch.VARIANTS)}, got {variant!r}")
    smallest = arch.min_input_size(variant)
    if image_size < smallest:
        raise ValueError(
            f"image_size {image_size} is below the {variant} variant's minimum input of {smallest}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    unknown = sorted(set(model_fields) - {field.name for field in dataclasses.fields(network.GoogLeNet)})
    if unknown:
        raise ValueError(f"{', '.join(unknown)}: not a field of GoogLeNet")

    net = network.GoogLeNet(num_classes=num_classes, variant=variant, aux_logits=False, **model_fields)
    # The paper's figures belong to Table 1's own network: default fields, 224x224, 1000 classes.
    paper_setting = ((image_size, num_classes) == PAPER_SETTING
                     and all(getattr(network.GoogLeNet(), k) == v for k, v in model_fields.items()))
    traced = _trace(net, image_size)
    rows = _table_rows(traced, variant, paper_setting)
    params = _size(traced.params)
    if params != sum(row["params"] for row in rows):
        raise RuntimeError("some parameters of the model belong to no Table 1 row")
    notes = _notes(traced, rows, variant, paper_setting)
    try:
        params_with_aux = _size(_trace(net.clone(aux_logits=True), image_size).params)
    except ValueError as error:  # the paper variant's aux heads exist only for 224-like inputs
        params_with_aux = None
        notes.append(f"params_with_aux is null: {first_line(error)}")
    summary = {"variant": variant, "inception_block": net.inception_block, "image_size": image_size,
               "num_classes": num_classes, "layers": rows,
               "params": params, "params_with_aux": params_with_aux,
               "macs": sum(row["macs"] for row in rows), "notes": notes}
    if net.inception_block != "reduced":
        _beside_the_reduced_module(summary, variant, image_size, num_classes, model_fields)
    return summary


def _beside_the_reduced_module(summary: dict, variant: str, image_size: int, num_classes: int,
                               model_fields: dict) -> None:
    """Adds the reduced module's params and MACs at the same widths to each row and the totals."""
    reduced = summarize(variant, image_size, num_classes, **{**model_fields, "inception_block": "reduced"})
    by_name = {row["name"]: row for row in reduced["layers"]}
    for row in summary["layers"]:
        row["reduced_params"] = by_name[row["name"]]["params"] if row["name"] in by_name else None
        row["reduced_macs"] = by_name[row["name"]]["macs"] if row["name"] in by_name else None
    summary["reduced"] = {"params": reduced["params"], "macs": reduced["macs"]}
    summary["notes"].append(
        f"the {model_fields['inception_block']} Inception module costs {summary['macs'] / reduced['macs']:.1f}x "
        f"the multiply-adds and {summary['params'] / reduced['params']:.1f}x the parameters of the reduced "
        "module (Figure 2b) at the same widths: the reason the paper adds 1x1 reductions.")


def _short(count: int, unit: str) -> str:
    """A count in the paper's style: 2.7K, 159K, 360M (one decimal below 10, two digits below 1); 0: ""."""
    if not count:
        return ""
    value = count / UNITS[unit]
    text = f"{value:.0f}" if value >= 10 else f"{value:.1f}" if value >= 1 else f"{value:.2g}"
    return text + unit


def _patch_text(row: dict) -> str:
    """Patch size/stride as Table 1 prints it ("7x7/2"); "" for a row without one."""
    return f"{row['patch_size'][0]}x{row['patch_size'][1]}/{row['stride']}" if row["patch_size"] else ""


def _printed(row: dict, index: int) -> str:
    """The paper's params (index 0) or ops (1) for a row exactly as printed, where the row has them."""
    return PAPER_TABLE1[row["name"]][index] if row["paper_params"] is not None else ""


CHANNEL_HEADERS = (("#1x1", ""), ("#3x3", "reduce"), ("#3x3", ""), ("#5x5", "reduce"), ("#5x5", ""),
                   ("pool", "proj"))
COLUMNS = (  # (two-line header, row -> text, left-aligned)
    (("type", ""), lambda r: r["label"], True),
    (("patch size/", "stride"), _patch_text, True),
    (("output", "size"), lambda r: "x".join(map(str, r["output_size"])), True),
    (("depth", ""), lambda r: str(r["depth"]), False),
    *((header, lambda r, c=column: "" if r[c] is None else str(r[c]), False)
      for column, header in zip(INCEPTION_COLUMNS, CHANNEL_HEADERS)),
    (("params", ""), lambda r: _short(r["params"], "K"), False),
    (("ops", "(MACs)"), lambda r: _short(r["macs"], "M"), False),
    (("reduced", "params"), lambda r: _short(r["reduced_params"] or 0, "K"), False),
    (("reduced", "ops"), lambda r: _short(r["reduced_macs"] or 0, "M"), False),
    (("paper", "params"), lambda r: _printed(r, 0), False),
    (("paper", "ops"), lambda r: _printed(r, 1), False),
)


def format_table(summary: dict) -> str:
    """The summary as Table 1 (text), followed by the totals and the notes."""
    columns = [column for column in COLUMNS
               if column[0][0] != "paper" or any(r["paper_params"] is not None for r in summary["layers"])
               if column[0][0] != "reduced" or "reduced" in summary]
    cells = [[text(row) for _, text, _ in columns] for row in summary["layers"]]
    headers = [header for header, _, _ in columns]
    widths = [max(len(header[0]), len(header[1]), *(len(line[i]) for line in cells))
              for i, header in enumerate(headers)]

    def line(texts):
        return "  ".join(text.ljust(width) if left else text.rjust(width)
                         for text, width, (_, _, left) in zip(texts, widths, columns)).rstrip()

    size = summary["image_size"]
    with_aux = "n/a" if summary["params_with_aux"] is None else f"{summary['params_with_aux']:,}"
    block = "" if summary["inception_block"] == "reduced" else f", {summary['inception_block']} Inception modules"
    out = [f"GoogLeNet, {summary['variant']} variant, {size}x{size} input, {summary['num_classes']} classes{block}",
           "", line([h[0] for h in headers]), line([h[1] for h in headers])]
    out += [line(texts) for texts in cells]
    out += ["", f"params: {summary['params']:,} without the auxiliary heads, {with_aux} with them",
            f"multiply-adds per {size}x{size} image: {summary['macs']:,} ({summary['macs'] / 1e9:.3f} G)", ""]
    out += [f"note: {note}" for note in summary["notes"]]
    return "\n".join(out)
