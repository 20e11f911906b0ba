"""BVLC Caffe's `bvlc_googlenet.caffemodel` -> the paper variant's variables.

    read_caffemodel(path) -> {layer name: [numpy blob, ...]}
    caffemodel_to_state_dict(path) -> the paper variant's state_dict in torchvision's layout

The file is a binary `caffe.NetParameter`. It is parsed with protobuf from a minimal schema
of the fields read here (NetParameter, LayerParameter and its legacy V1 and V0 forms,
BlobProto with its legacy 4-D dims, BlobShape; their field numbers as in Caffe's
src/caffe/proto/caffe.proto), built in Python: no protoc step, no Caffe. Every other field of
the file is skipped.

BVLC's layer names map onto the paper variant's modules: conv1/7x7_s2 -> conv1,
conv2/3x3_reduce -> conv2, conv2/3x3 -> conv3, inception_3a/<part> -> inception3a's part
(each block part's `caffe_name`, model/architecture.py), loss1/* and loss2/* -> the aux heads,
loss3/classifier -> fc. Caffe's blobs are torch's layouts (weights OIHW and (out, in), the aux
heads' fc1 reading a (C, H, W) flattening), so the state_dict goes through the one torchvision
converter. Caffe feeds BGR images (0..255 minus the mean pixel 104/117/123); conv1's input
channels are reversed here so that the network takes RGB images minus (123, 117, 104), the
paper variant's "paper" normalisation: the same function of the same picture.
"""
from __future__ import annotations

import functools

import numpy as np

from googlenet_jax.model import architecture as arch
from googlenet_jax.model import network
from googlenet_jax.weights import paths, torch_layout

STEM = {"conv1": "conv1/7x7_s2", "conv2": "conv2/3x3_reduce", "conv3": "conv2/3x3"}
HEADS = {"aux1": "loss1", "aux2": "loss2"}
HEAD_LAYERS = {"conv.conv": "conv", "fc1": "fc", "fc2": "classifier"}
CLASSIFIER = "loss3/classifier"


@functools.lru_cache(maxsize=None)
def net_parameter_class():
    """The NetParameter message class of a minimal caffe.proto (the fields read here; tests write
    caffemodels with it)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    field = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(name="googlenet_jax_caffe.proto", package="googlenet_jax_caffe",
                                              syntax="proto2")

    def message(name, *fields):
        proto = file.message_type.add(name=name)
        for number, field_name, kind, label, type_name, packed in fields:
            entry = proto.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                entry.type_name = f".googlenet_jax_caffe.{type_name}"
            if packed:
                entry.options.packed = True

    optional, repeated = field.LABEL_OPTIONAL, field.LABEL_REPEATED
    message("BlobShape", (1, "dim", field.TYPE_INT64, repeated, None, True))
    message("BlobProto",
            (7, "shape", field.TYPE_MESSAGE, optional, "BlobShape", False),
            (5, "data", field.TYPE_FLOAT, repeated, None, True),
            (8, "double_data", field.TYPE_DOUBLE, repeated, None, True),
            (1, "num", field.TYPE_INT32, optional, None, False),
            (2, "channels", field.TYPE_INT32, optional, None, False),
            (3, "height", field.TYPE_INT32, optional, None, False),
            (4, "width", field.TYPE_INT32, optional, None, False))
    message("LayerParameter",
            (1, "name", field.TYPE_STRING, optional, None, False),
            (2, "type", field.TYPE_STRING, optional, None, False),
            (7, "blobs", field.TYPE_MESSAGE, repeated, "BlobProto", False))
    # Caffe before 2015 wrote its layers as V1LayerParameter ("layers"), and before that as a
    # V0LayerParameter inside one ("layer" 1); BVLC released its GoogLeNet in 2014.
    message("V0LayerParameter",
            (1, "name", field.TYPE_STRING, optional, None, False),
            (50, "blobs", field.TYPE_MESSAGE, repeated, "BlobProto", False))
    message("V1LayerParameter",
            (4, "name", field.TYPE_STRING, optional, None, False),
            (6, "blobs", field.TYPE_MESSAGE, repeated, "BlobProto", False),
            (1, "layer", field.TYPE_MESSAGE, optional, "V0LayerParameter", False))
    message("NetParameter",
            (1, "name", field.TYPE_STRING, optional, None, False),
            (2, "layers", field.TYPE_MESSAGE, repeated, "V1LayerParameter", False),
            (100, "layer", field.TYPE_MESSAGE, repeated, "LayerParameter", False))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("googlenet_jax_caffe.NetParameter"))


def _blob_array(blob, where: str) -> np.ndarray:
    shape = tuple(blob.shape.dim) if blob.HasField("shape") else tuple(
        d for d in (blob.num, blob.channels, blob.height, blob.width))
    values = np.asarray(blob.double_data if len(blob.double_data) else blob.data,
                        np.float64 if len(blob.double_data) else np.float32)
    if values.size != int(np.prod(shape)):
        raise ValueError(f"{where}: a blob of shape {shape} holds {values.size} values")
    return values.reshape(shape)


def _without_ones(shape: tuple) -> tuple:
    return tuple(d for d in shape if d != 1)


def read_caffemodel(path: str) -> dict[str, list[np.ndarray]]:
    """{layer name: its blobs} of every layer with blobs, in the file's order, whichever of
    Caffe's layer formats (current, V1, V0) the file uses. ValueError (one line naming the file)
    for a file that is not a caffemodel or a truncated one."""
    from google.protobuf.message import DecodeError

    with paths.open_file(path, "rb") as f:
        data = f.read()
    net = net_parameter_class()()
    try:
        net.ParseFromString(data)
    except DecodeError as error:
        raise ValueError(f"{path}: not a readable caffemodel (protobuf: {error}); truncated or not a "
                         "Caffe NetParameter") from None
    layers = {}
    for layer in [*net.layer, *net.layers]:
        if not len(layer.blobs) and hasattr(layer, "layer") and layer.HasField("layer"):
            layer = layer.layer  # the V0 form
        if len(layer.blobs):
            layers[layer.name] = [_blob_array(blob, f"{path}: layer {layer.name}") for blob in layer.blobs]
    if not layers:
        raise ValueError(f"{path}: not a caffemodel with weights (no layer holds blobs)")
    return layers


def caffe_names(aux: bool) -> dict[str, str]:
    """{BVLC layer name: the torchvision-layout prefix of its weight and bias} of the paper variant."""
    names = {caffe: f"{torch}.conv" for torch, caffe in STEM.items()}
    for stage, block in network.GoogLeNet(variant="paper").backbone():
        for part in block.parts:
            if isinstance(part.layer, arch.Conv) and not block.single:
                caffe_stage = "inception_" + stage.removeprefix("inception")
                names[f"{caffe_stage}/{part.caffe_name}"] = f"{stage}.{part.torch_name}.conv"
    if aux:
        for head, caffe_head in HEADS.items():
            names.update({f"{caffe_head}/{caffe}": f"{head}.{torch}" for torch, caffe in HEAD_LAYERS.items()})
    names[CLASSIFIER] = "fc"
    return names


def caffemodel_to_state_dict(path: str) -> tuple[dict[str, np.ndarray], bool]:
    """(the paper variant's torchvision-layout state_dict, whether it holds the aux heads).
    ValueError naming the layer and the shapes for a net that is not BVLC's GoogLeNet."""
    layers = read_caffemodel(path)
    aux = all(f"{head}/classifier" in layers for head in HEADS.values())
    names = caffe_names(aux)
    missing = [name for name in names if name not in layers]
    if missing:
        raise ValueError(f"{path}: not BVLC's GoogLeNet: no layer {missing[0]} "
                         f"({len(missing)} of its {len(names)} layers with weights missing)")
    classes = int(layers[CLASSIFIER][-1].size)  # the classifier's bias, whatever its dims
    shapes = torch_layout.variable_shapes("paper", aux, classes)
    expected = {key: torch_layout.torch_shape(shapes[name], kind)
                for key, name, kind in torch_layout.entries("paper", aux)}
    state_dict = {}
    for caffe_name, prefix in names.items():
        blobs = layers[caffe_name]
        if len(blobs) != 2:
            raise ValueError(f"{path}: layer {caffe_name} has {len(blobs)} blobs, expected 2 (weights and bias)")
        for blob, suffix in zip(blobs, ("weight", "bias")):
            key = f"{prefix}.{suffix}"
            if blob.shape != expected[key] and _without_ones(blob.shape) == _without_ones(expected[key]):
                blob = blob.reshape(expected[key])  # Caffe's 4-D legacy dims: (1, 1, out, in), (1, 1, 1, out)
            if blob.shape != expected[key]:
                raise ValueError(f"{path}: layer {caffe_name} {suffix} has shape {blob.shape}, expected "
                                 f"{expected[key]} (BVLC's GoogLeNet with {classes} classes)")
            state_dict[key] = blob
    # BGR -> RGB: conv1 reads the channels in the order the pipeline gives them.
    state_dict["conv1.conv.weight"] = np.ascontiguousarray(state_dict["conv1.conv.weight"][:, ::-1])
    return state_dict, aux
