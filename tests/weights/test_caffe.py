"""BVLC Caffe's .caffemodel in the paper variant, against OpenCV's independent Caffe importer.

A caffemodel with random weights is written here in BVLC's layer names and blob layouts (the
mapping below is typed in from BVLC's deploy.prototxt, not read from the package); OpenCV's
`readNetFromCaffe` runs it with tests/weights/bvlc_googlenet/deploy_with_aux_heads.prototxt (BVLC's
deploy.prototxt with the aux heads of its train_val.prototxt), BGR images minus the mean pixel
104/117/123 as Caffe feeds them. `googlenet_jax.load` of the same file, fed the same pictures as
RGB minus (123, 117, 104), gives the same logits, main and auxiliary, as does the torch.nn port
in googlenet_jax/parity/caffe_torch.py.
"""
import os

import jax
import numpy as np
import pytest
import torch
from PIL import Image

import googlenet_jax
from googlenet_jax.commands import predict
from googlenet_jax.parity.caffe_torch import CaffeGoogLeNet
from googlenet_jax.weights import WeightsError, caffe

import helpers

cv2 = pytest.importorskip("cv2")

PROTOTXT = os.path.join(helpers.REPO, "tests", "weights", "bvlc_googlenet", "deploy_with_aux_heads.prototxt")
MEAN_BGR = np.array([104.0, 117.0, 123.0], np.float32)
# BVLC layer -> the module of the torch.nn port that holds its weight and bias.
BVLC_LAYERS = {"conv1/7x7_s2": "conv1.conv", "conv2/3x3_reduce": "conv2.conv", "conv2/3x3": "conv3.conv",
               "loss1/conv": "aux1.conv.conv", "loss1/fc": "aux1.fc1", "loss1/classifier": "aux1.fc2",
               "loss2/conv": "aux2.conv.conv", "loss2/fc": "aux2.fc1", "loss2/classifier": "aux2.fc2",
               "loss3/classifier": "fc"}
for _module in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b"):
    for _caffe, _torch in (("1x1", "branch1"), ("3x3_reduce", "branch2.0"), ("3x3", "branch2.1"),
                           ("5x5_reduce", "branch3.0"), ("5x5", "branch3.1"), ("pool_proj", "branch4.1")):
        BVLC_LAYERS[f"inception_{_module}/{_caffe}"] = f"inception{_module}.{_torch}.conv"


def _write_caffemodel(path, blobs: dict, *, legacy: bool = False, legacy_dims: bool = False):
    """A binary NetParameter holding `blobs` ({layer name: [arrays]}), as Caffe writes it
    (`legacy`: in V1 layers, "layers"; `legacy_dims`: with the 4-D num/channels/height/width of
    Caffe before BlobShape: the Caffe of 2014, when BVLC released its GoogLeNet)."""
    net = caffe.net_parameter_class()(name="GoogleNet")
    for name, arrays in blobs.items():
        layer = net.layers.add(name=name) if legacy else net.layer.add(name=name, type="Convolution")
        for array in arrays:
            blob = layer.blobs.add()
            if legacy_dims:
                blob.num, blob.channels, blob.height, blob.width = (1,) * (4 - array.ndim) + array.shape
            else:
                blob.shape.dim.extend(array.shape)
            blob.data.extend(np.asarray(array, np.float32).ravel().tolist())
    path.write_bytes(net.SerializeToString())
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """(caffemodel path, the torch port holding the same weights): random weights, Caffe's
    xavier scale, biases around Caffe's 0.2."""
    torch.manual_seed(0)
    net = CaffeGoogLeNet(num_classes=1000, aux_logits=True, dropout=0.0, dropout_aux=0.0).eval()
    with torch.no_grad():
        for name, parameter in net.named_parameters():
            if name.endswith("weight"):
                bound = np.sqrt(3.0 / np.prod(parameter.shape[1:]))
                parameter.uniform_(-bound, bound)
            else:
                parameter.uniform_(0.0, 0.4)
    state = {k: v.numpy() for k, v in net.state_dict().items()}
    blobs = {layer: [state[f"{module}.weight"], state[f"{module}.bias"]] for layer, module in BVLC_LAYERS.items()}
    path = _write_caffemodel(tmp_path_factory.mktemp("caffe") / "bvlc_googlenet.caffemodel", blobs)
    return path, net, blobs


def _pictures() -> np.ndarray:
    """Four photos at 224x224, RGB, 0..255 (float32)."""
    return np.stack([np.asarray(Image.open(helpers.photo(name)).convert("RGB").resize((224, 224), Image.BILINEAR),
                                np.float32) for name in ("cat", "rocket", "coffee", "astronaut")])


def test_logits_equal_opencvs_caffe_importer_and_the_torch_port(reference):
    path, net, _ = reference
    rgb = _pictures()
    bgr_nchw = np.ascontiguousarray((rgb[..., ::-1] - MEAN_BGR).transpose(0, 3, 1, 2))

    opencv = cv2.dnn.readNetFromCaffe(PROTOTXT, str(path))
    opencv.setInput(bgr_nchw)
    want = dict(zip(("aux1", "aux2", "fc"),
                    opencv.forward(["loss1/classifier", "loss2/classifier", "loss3/classifier"])))

    loaded = googlenet_jax.load(path)
    assert (loaded.info.variant, loaded.info.source, loaded.info.normalization) == ("paper", "caffemodel", "paper")
    assert loaded.info.aux_logits and loaded.info.class_names[0] == "tench"
    model = loaded.model.clone(dropout_rate=0.0, aux_dropout_rate=0.0)  # train mode: the aux heads run
    ours_input = rgb - np.float32([123.0, 117.0, 104.0])
    ours = jax.jit(lambda x: model.apply(loaded.variables, x, train=True))(ours_input)
    with torch.no_grad():
        net.train()  # the aux heads run in train mode; dropout is 0 and there is no BatchNorm
        port = net(torch.from_numpy(bgr_nchw))
    for name, got, torch_out in zip(("fc", "aux1", "aux2"), ours, port):
        assert np.abs(want[name]).max() > 1.0, name  # not a vanished signal
        assert helpers.relative_error(got, want[name]) < 1e-4, name
        assert helpers.relative_error(torch_out.numpy(), want[name]) < 1e-4, name
    top1 = np.asarray(ours.logits).argmax(-1)
    np.testing.assert_array_equal(top1, want["fc"].argmax(-1))


def test_a_caffemodel_without_aux_heads_loads_them_absent(reference, tmp_path):
    _, _, blobs = reference
    main = {name: arrays for name, arrays in blobs.items() if not name.startswith(("loss1/", "loss2/"))}
    loaded = googlenet_jax.load(_write_caffemodel(tmp_path / "deploy_only.caffemodel", main))
    assert not loaded.info.aux_logits and "aux1" not in loaded.variables["params"]


def _error(path) -> str:
    with pytest.raises(WeightsError) as caught:
        googlenet_jax.load(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    return message


def test_bad_caffemodels_are_named_in_one_line(reference, tmp_path):
    path, _, blobs = reference
    noise = tmp_path / "noise.caffemodel"
    noise.write_bytes(os.urandom(4096))
    assert "not a readable caffemodel" in _error(noise)
    truncated = tmp_path / "truncated.caffemodel"
    truncated.write_bytes(path.read_bytes()[: 1 << 20])
    assert "not a readable caffemodel" in _error(truncated)
    other = dict(blobs)
    del other["inception_4c/5x5"]
    assert "not BVLC's GoogLeNet: no layer inception_4c/5x5" in _error(_write_caffemodel(tmp_path / "o.caffemodel",
                                                                                        other))
    wrong = dict(blobs)
    wrong["inception_3a/5x5"] = [np.zeros((32, 16, 3, 3), np.float32), blobs["inception_3a/5x5"][1]]
    assert ("layer inception_3a/5x5 weight has shape (32, 16, 3, 3), expected (32, 16, 5, 5)"
            in _error(_write_caffemodel(tmp_path / "w.caffemodel", wrong)))


def test_predict_takes_a_caffemodel_and_a_bad_one_exits_2(reference, tmp_path, capsys):
    path, _, _ = reference
    out = tmp_path / "top.json"
    assert predict.main(["--weights", str(path), "--json", str(out), helpers.photo("cat")]) == 0
    assert out.exists()
    bad = tmp_path / "bad.caffemodel"
    bad.write_bytes(b"\x08\x01garbage")
    assert predict.main(["--weights", str(bad), helpers.photo("cat")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("predict: error: ") and "bad.caffemodel" in err[0]


def test_convert_writes_the_caffemodel_as_an_orbax_checkpoint(reference, tmp_path):
    from googlenet_jax.commands import convert

    path, _, blobs = reference
    out = tmp_path / "converted"
    assert convert.main(["to-flax", str(path), str(out)]) == 0
    converted, direct = googlenet_jax.load(out), googlenet_jax.load(path)
    assert (converted.info.variant, converted.info.normalization, converted.info.aux_logits) == ("paper", "paper", True)
    jax.tree.map(np.testing.assert_array_equal, converted.variables, direct.variables)
    # conv1 takes RGB: its input channels are Caffe's BGR ones reversed.
    np.testing.assert_array_equal(converted.variables["params"]["conv1"]["conv"]["kernel"],
                                  blobs["conv1/7x7_s2"][0][:, ::-1].transpose(2, 3, 1, 0))


def test_caffes_2014_formats_load_as_the_same_weights(reference, tmp_path):
    """V1 layers ("layers") with 4-D legacy blob dims, and a V0 layer inside a V1 one."""
    path, _, blobs = reference
    expected = googlenet_jax.load(path).variables
    legacy = googlenet_jax.load(_write_caffemodel(tmp_path / "v1.caffemodel", blobs, legacy=True, legacy_dims=True))
    jax.tree.map(np.testing.assert_array_equal, legacy.variables, expected)
    net = caffe.net_parameter_class()()
    net.ParseFromString(_write_caffemodel(tmp_path / "v1_only.caffemodel", blobs, legacy=True).read_bytes())
    for layer in net.layers:  # each V1 layer's name and blobs moved into its V0 `layer`
        layer.layer.name = layer.name
        layer.layer.blobs.extend(layer.blobs)
        del layer.blobs[:]
        layer.ClearField("name")
    (tmp_path / "v0.caffemodel").write_bytes(net.SerializeToString())
    jax.tree.map(np.testing.assert_array_equal, googlenet_jax.load(tmp_path / "v0.caffemodel").variables, expected)
