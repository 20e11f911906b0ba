"""Weight conversion: clear errors on bad state_dicts, .pth files and the command line."""

import numpy as np
import pytest
import torch

from googlenet_jax.weights.torch_layout import flax_to_torchvision, load_torch_state_dict, torchvision_to_flax

import helpers as ref
from helpers import run_command


@pytest.fixture(scope="module")
def state_dict():
    return ref.state_dict_numpy(ref.torch_reference("torchvision", num_classes=10, seed=0))


@pytest.fixture(scope="module")
def paper_state_dict():
    return ref.state_dict_numpy(ref.torch_reference("paper", num_classes=10, seed=0))


def test_layouts_follow_torch_conventions(state_dict):
    """Conv OIHW -> HWIO, linear (out, in) -> (in, out), aux fc1 rows (C, H, W) -> (H, W, C)."""
    params = torchvision_to_flax(state_dict)["params"]
    np.testing.assert_array_equal(params["conv1"]["conv"]["kernel"],
                                  state_dict["conv1.conv.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(params["fc"]["kernel"], state_dict["fc.weight"].T)
    torch_fc1 = state_dict["aux1.fc1.weight"]  # (1024, 128 * 4 * 4), input index c * 16 + h * 4 + w
    flax_fc1 = params["aux1"]["fc1"]["kernel"]  # (4 * 4 * 128, 1024), input index (h * 4 + w) * 128 + c
    for c, h, w in [(0, 0, 1), (5, 2, 3), (127, 3, 0)]:
        np.testing.assert_array_equal(flax_fc1[(h * 4 + w) * 128 + c], torch_fc1[:, c * 16 + h * 4 + w])


def test_float64_state_dict_stays_float64(state_dict):
    doubled = {k: (v.astype(np.float64) if v.dtype == np.float32 else v) for k, v in state_dict.items()}
    params = torchvision_to_flax(doubled)["params"]
    assert params["conv1"]["conv"]["kernel"].dtype == np.float64


def test_missing_and_unexpected_keys_are_named(state_dict):
    broken = dict(state_dict)
    del broken["inception4b.branch2.1.bn.running_var"]
    broken["inception4b.extra.weight"] = np.zeros(3)
    with pytest.raises(ValueError, match=r"missing: inception4b\.branch2\.1\.bn\.running_var; "
                                         r"unexpected: inception4b\.extra\.weight"):
        torchvision_to_flax(broken)


def test_misshaped_key_names_key_and_both_shapes(state_dict):
    broken = dict(state_dict)
    broken["inception3a.branch3.1.conv.weight"] = np.zeros((32, 16, 5, 5), np.float32)
    with pytest.raises(ValueError, match=r"inception3a\.branch3\.1\.conv\.weight has shape \(32, 16, 5, 5\), "
                                         r"expected \(32, 16, 3, 3\)"):
        torchvision_to_flax(broken)


def test_state_dict_of_the_other_variant_is_refused(state_dict, paper_state_dict):
    with pytest.raises(ValueError, match="paper-variant state_dict; pass variant='paper'"):
        torchvision_to_flax(paper_state_dict)
    with pytest.raises(ValueError, match="torchvision-variant state_dict"):
        torchvision_to_flax(state_dict, variant="paper")


def test_num_classes_mismatch_is_refused(state_dict):
    with pytest.raises(ValueError, match=r"fc\.weight has 10 classes .* expected num_classes=1000"):
        torchvision_to_flax(state_dict, num_classes=1000)
    broken = dict(state_dict)
    broken["aux2.fc2.weight"] = np.zeros((1000, 1024), np.float32)
    broken["aux2.fc2.bias"] = np.zeros((1000,), np.float32)
    with pytest.raises(ValueError, match=r"aux2\.fc2\.weight has shape \(1000, 1024\), expected \(10, 1024\)"):
        torchvision_to_flax(broken)


def test_flax_to_torchvision_names_bad_variables(state_dict):
    variables = torchvision_to_flax(state_dict)
    del variables["params"]["inception5b"]["pool_proj"]
    with pytest.raises(ValueError, match="missing: params/inception5b/pool_proj/bn/bias"):
        flax_to_torchvision(variables)


def test_pth_files_plain_wrapped_and_data_parallel(tmp_path, state_dict):
    tensors = {k: torch.from_numpy(v) for k, v in state_dict.items()}
    torch.save(tensors, tmp_path / "plain.pth")
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in tensors.items()}}, tmp_path / "wrapped.pth")
    for name in ("plain.pth", "wrapped.pth"):
        loaded = load_torch_state_dict(str(tmp_path / name))
        assert sorted(loaded) == sorted(state_dict)
    (tmp_path / "garbage.pth").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="garbage.pth: not a readable PyTorch file"):
        load_torch_state_dict(str(tmp_path / "garbage.pth"))
    with pytest.raises(ValueError, match="nope.pth: no such file"):
        load_torch_state_dict(str(tmp_path / "nope.pth"))


def _cli(*args):
    return run_command(["-m", "googlenet_jax.convert", *args], check=False)


@pytest.mark.slow
def test_command_line_round_trip_through_an_orbax_checkpoint(tmp_path, paper_state_dict):
    torch.save({k: torch.from_numpy(v) for k, v in paper_state_dict.items()}, tmp_path / "in.pth")
    result = _cli("to-flax", str(tmp_path / "in.pth"), str(tmp_path / "ckpt"), "--variant", "paper")
    assert result.returncode == 0, result.stderr
    result = _cli("to-torch", str(tmp_path / "ckpt"), str(tmp_path / "out.pth"))
    assert result.returncode == 0, result.stderr
    back = torch.load(tmp_path / "out.pth", weights_only=True)
    assert list(back) == list(paper_state_dict)
    for key, value in paper_state_dict.items():
        np.testing.assert_array_equal(back[key].numpy(), value, err_msg=key)


@pytest.mark.slow
def test_command_line_errors_are_one_line(tmp_path):
    result = _cli("to-flax", str(tmp_path / "missing.pth"), str(tmp_path / "ckpt"))
    assert result.returncode == 2 and result.stderr.startswith("convert: error: ")
    assert result.stderr.strip().count("\n") == 0 and "missing.pth: no such file" in result.stderr


def test_the_public_converter_names_are_the_functions_themselves():
    """DESIGN.md's googlenet_jax.convert.torchvision_to_flax / flax_to_torchvision: one name each."""
    from googlenet_jax import convert
    from googlenet_jax.weights import torch_layout

    assert convert.torchvision_to_flax is torch_layout.torchvision_to_flax
    assert convert.flax_to_torchvision is torch_layout.flax_to_torchvision
