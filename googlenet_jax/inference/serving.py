"""Serving files of the inference function: a `jax.export` artifact (jax alone loads it) or an
ONNX file (onnxruntime alone runs it; googlenet_jax/inference/onnx_export.py), each with a
FILE.json that says how to feed and read it.

The jax artifact holds the StableHLO of `images -> probabilities` (or logits) with the weights
inside and a symbolic batch dimension: input float32 (batch, S, S, 3), NHWC, preprocessed
(shorter side to resize_size, center crop S, normalised). `describe` is the JSON that goes
beside it: input shape, normalisation (mean and std on 0..255 pixels), class names, versions.
Loading it needs only jax:

    from jax import export
    serve = export.deserialize(open("googlenet.jax", "rb").read())
    probabilities = serve.call(images)   # float32 (batch, S, S, 3) -> (batch, num_classes)

`jax.export` promises that an artifact loads on jax releases up to about 6 months newer
than the one that wrote it (and older ones back to its calling-convention version): keep
the weights as the archive and re-export for newer jax. The ONNX file has the same input and
output and needs only onnxruntime:

    import onnxruntime
    session = onnxruntime.InferenceSession("googlenet.onnx")
    probabilities = session.run(None, {"images": images})[0]
"""
from __future__ import annotations

import datetime

import jax
import jax.numpy as jnp
import jaxlib
from jax import export

from googlenet_jax.inference import onnx_export
from googlenet_jax.model import folding, input_spec
from googlenet_jax.weights import LoadedModel


def _without_aux_heads(variables):
    return {collection: {k: v for k, v in tree.items() if k not in ("aux1", "aux2")}
            for collection, tree in variables.items()}


def export_model(loaded: LoadedModel, *, platforms, dtype: str = "float32", logits: bool = False):
    """The jax.export.Exported of `images -> probabilities | logits` for a LoadedModel.

    The aux heads are left out (inference never runs them); BatchNorm is folded into the
    convolutions (googlenet_jax/model/folding.py) and the weights become constants of the
    artifact. The batch dimension is symbolic ("batch").
    """
    model, variables = folding.fold_batch_norm(loaded.model.clone(aux_logits=False, dtype=jnp.dtype(dtype)),
                                               _without_aux_heads(loaded.variables))
    variables = jax.tree.map(jnp.asarray, variables)

    def serve(images):
        out = model.apply(variables, images, train=False).astype(jnp.float32)
        return out if logits else jax.nn.softmax(out, axis=-1)

    batch, = export.symbolic_shape("batch")
    size = loaded.info.image_size
    spec = jax.ShapeDtypeStruct((batch, size, size, 3), jnp.float32)
    return export.export(jax.jit(serve), platforms=platforms)(spec)


def describe(loaded: LoadedModel, *, logits: bool, **format_fields) -> dict:
    """FILE.json: everything a serving user needs to feed and read the file, whatever its format
    (`format_fields` say which format and with what it was written)."""
    info = loaded.info
    mean, std = input_spec.mean_std_255(info.normalization)
    return {
        **format_fields,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "weights": info.path,
        "variant": info.variant,
        "input": {"shape": ["batch", info.image_size, info.image_size, 3], "dtype": "float32",
                  "layout": "NHWC, RGB"},
        "output": {"shape": ["batch", info.num_classes], "dtype": "float32",
                   "kind": "logits" if logits else "probabilities"},
        "preprocessing": {
            "resize_shorter_side": info.resize_size, "resize": "bilinear, antialiased",
            "center_crop": info.image_size,
            "normalization": info.normalization,
            "formula": "(pixel - mean) / std, pixel in 0..255",
            "mean": list(mean), "std": list(std),
        },
        "transform_input_inside": info.transform_input,
        "class_names": list(info.class_names),
    }


def jax_artifact(loaded: LoadedModel, *, platforms, dtype: str = "float32", logits: bool = False):
    """(serialized jax.export artifact, its FILE.json)."""
    exported = export_model(loaded, platforms=platforms, dtype=dtype, logits=logits)
    return exported.serialize(), describe(
        loaded, logits=logits, format="jax.export serialized Exported (jax.export.deserialize)",
        jax_version=jax.__version__, jaxlib_version=jaxlib.__version__,
        calling_convention_version=exported.calling_convention_version, platforms=list(exported.platforms),
        compute_dtype=dtype)


def onnx_file(loaded: LoadedModel, *, logits: bool = False):
    """(serialized ONNX model, its FILE.json); float32 inside, aux heads left out."""
    onnx = onnx_export.import_onnx()
    proto = onnx_export.to_onnx(loaded.model, _without_aux_heads(loaded.variables), logits=logits,
                                image_size=loaded.info.image_size)
    return proto.SerializeToString(), describe(
        loaded, logits=logits, format=f"ONNX (opset {onnx_export.OPSET}), e.g. onnxruntime.InferenceSession",
        onnx_version=onnx.__version__, opset=onnx_export.OPSET, input_name="images",
        output_name="logits" if logits else "probabilities", compute_dtype="float32")
