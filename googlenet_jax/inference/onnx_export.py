"""An ONNX file of the inference function, for CPU serving in onnxruntime (no JAX, no googlenet_jax).

Written node by node from the network's block descriptions (`model.backbone()`) and the weights
with the `onnx` package's helpers (the graph is small and fully known), not traced through
another framework:

    images float32 (batch, S, S, 3) NHWC, preprocessed
      -> Transpose to NCHW, once
      -> transform_input as a per-channel Mul and Add (when the weights need it)
      -> per convolution block one Conv (BatchNorm folded into its kernel and bias) and Relu;
         ceil-mode MaxPool; LRN (paper variant); each Inception block's parts, Concat
      -> GlobalAveragePool, Flatten, Gemm -> logits (batch, num_classes) [-> Softmax]

The aux heads are left out (inference never runs them). BatchNorm is folded as the jax
Classifier and artifact fold it (googlenet_jax/model/folding.py): exact up to float rounding.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from googlenet_jax.model import architecture as arch
from googlenet_jax.model import folding
from googlenet_jax.model.input_spec import IMAGENET_MEAN, IMAGENET_STD

OPSET = 17
ONNX_INSTALL = "pip install onnx==1.23.2"


def import_onnx():
    """onnx, or an ImportError saying what to install (only --format onnx needs it)."""
    try:
        import onnx
    except ImportError as error:
        raise ImportError(f"--format onnx needs the onnx package ({error}): {ONNX_INSTALL}") from None
    return onnx


class _Graph:
    """Nodes and initializers with generated names."""

    def __init__(self, onnx):
        self.onnx, self.nodes, self.initializers, self._count = onnx, [], [], 0

    def _name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def constant(self, hint: str, array: np.ndarray) -> str:
        name = self._name(hint)
        self.initializers.append(self.onnx.numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(self, op: str, inputs: list[str], hint: str = "", **attributes) -> str:
        output = self._name(hint or op.lower())
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [output], name=output, **attributes))
        return output

    def layer(self, x: str, layer, name: str, params, stats) -> str:
        """One layer of a block (architecture.Conv, MaxPool or LRN); params and stats: a
        convolution block's."""
        if isinstance(layer, arch.Conv):
            kernel, bias = folding.fold_block(params, stats)  # BatchNorm folded in when the block has one
            kernel = kernel.transpose(3, 2, 0, 1)  # HWIO -> OIHW
            y = self.node("Conv", [x, self.constant(f"{name}/kernel", kernel), self.constant(f"{name}/bias", bias)],
                          hint=name, kernel_shape=[layer.kernel] * 2, strides=[layer.stride] * 2,
                          pads=[layer.padding] * 4)
            return self.node("Relu", [y], hint=f"{name}/relu")
        if isinstance(layer, arch.MaxPool):
            # ceil_mode as torchvision and Caffe round; no window here starts in the padding.
            return self.node("MaxPool", [x], hint=name, kernel_shape=[layer.kernel] * 2,
                             strides=[layer.stride] * 2, pads=[layer.padding] * 4, ceil_mode=1)
        return self.node("LRN", [x], hint=name, size=layer.size, alpha=layer.alpha, beta=layer.beta,
                         bias=layer.bias)

    def block(self, x: str, name: str, block, params, stats) -> str:
        """A stage: its parts in order, then the concatenation of its outputs."""
        if block.single:
            return self.layer(x, block.parts[0].layer, name, params.get(name), stats.get(name))
        params, stats, out = params[name], stats.get(name, {}), {"": x}
        for part in block.parts:
            out[part.name] = self.layer(out[part.input], part.layer, f"{name}/{part.name}",
                                        params.get(part.name), stats.get(part.name))
        return self.node("Concat", [out[part] for part in block.outputs], hint=name, axis=1)


def to_onnx(model, variables: Mapping[str, Any], *, logits: bool = False, image_size: int | None = None):
    """The onnx.ModelProto of `images -> probabilities | logits` for a GoogLeNet and its variables.

    model: the GoogLeNet (its variant, class count and transform_input). image_size: the
    square input side written into the input's shape (None: any height and width).
    """
    onnx = import_onnx()
    params, stats = variables["params"], variables.get("batch_stats", {})
    g = _Graph(onnx)
    x = g.node("Transpose", ["images"], hint="nchw", perm=[0, 3, 1, 2])
    if model.transform_input:  # x * std / 0.5 + (mean - 0.5) / 0.5, per channel
        std, mean = np.asarray(IMAGENET_STD), np.asarray(IMAGENET_MEAN)
        x = g.node("Mul", [x, g.constant("transform/scale", (std / 0.5).astype(np.float32).reshape(1, 3, 1, 1))])
        x = g.node("Add", [x, g.constant("transform/shift",
                                         ((mean - 0.5) / 0.5).astype(np.float32).reshape(1, 3, 1, 1))])
    for name, block in model.backbone():
        x = g.block(x, name, block, params, stats)
    x = g.node("Flatten", [g.node("GlobalAveragePool", [x], hint="avgpool")], axis=1)
    fc = params["fc"]
    out = g.node("Gemm", [x, g.constant("fc/kernel", np.asarray(fc["kernel"], np.float32)),
                          g.constant("fc/bias", np.asarray(fc["bias"], np.float32))], hint="fc")
    output_name = "logits" if logits else "probabilities"
    g.nodes.append(onnx.helper.make_node("Identity" if logits else "Softmax", [out], [output_name],
                                         **({} if logits else {"axis": 1})))
    side = image_size or "height"
    inputs = [onnx.helper.make_tensor_value_info(
        "images", onnx.TensorProto.FLOAT, ["batch", side, image_size or "width", 3])]
    outputs = [onnx.helper.make_tensor_value_info(output_name, onnx.TensorProto.FLOAT, ["batch", model.num_classes])]
    graph = onnx.helper.make_graph(g.nodes, f"googlenet_{model.variant}", inputs, outputs, g.initializers)
    proto = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", OPSET)],
                                   producer_name="googlenet_jax")
    proto.ir_version = 8  # what onnxruntime releases of the last years all read
    return proto
