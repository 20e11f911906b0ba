"""`python -m googlenet_jax.evaluate` end to end on a fine-tuned workdir and its image folder."""
import json

import pytest

from googlenet_jax.commands import evaluate

from helpers import run_command

pytestmark = pytest.mark.slow  # subprocesses and training runs


def _evaluate(*args, check=True):
    return run_command(["-m", "googlenet_jax.evaluate", *args], check=check)


@pytest.fixture(scope="module")
def report(finetuned_workdir, tmp_path_factory):
    workdir, _ = finetuned_workdir
    out = tmp_path_factory.mktemp("evaluate") / "report.json"
    proc = _evaluate("--weights", workdir, "--crops", "1,10,144", "--json", out)
    return proc, json.loads(out.read_text())


def test_one_crop_equals_the_trainers_final_eval(finetuned_workdir, report):
    workdir, _ = finetuned_workdir
    final = json.loads(open(f"{workdir}/final_metrics.json").read())
    one = report[1]["crops"]["1"]
    assert one["count"] == final["eval_count"] == 12  # 4 test photos per class, padding excluded
    assert one["top1"] == final["eval_top1"] and one["top5"] == final["eval_top5"]
    assert one["loss"] == pytest.approx(final["eval_loss"], rel=1e-6)


def test_raw_params_evaluates_the_weights_instead_of_their_average(finetuned_workdir, report, tmp_path):
    out = tmp_path / "raw.json"
    _evaluate("--weights", finetuned_workdir[0], "--crops", "1", "--raw_params", "--json", out)
    raw, averaged = json.loads(out.read_text())["crops"]["1"], report[1]["crops"]["1"]
    assert raw["count"] == 12
    # The fixture trains at a learning rate where the Polyak average trails the weights.
    assert abs(raw["loss"] - averaged["loss"]) > 1e-4 * averaged["loss"]


def test_every_scheme_counts_each_example_once_with_the_json_keys(report):
    crops = report[1]["crops"]
    assert sorted(crops, key=int) == ["1", "10", "144"]
    for scheme in crops.values():
        assert sorted(scheme) == ["count", "loss", "top1", "top5"] and scheme["count"] == 12
        assert 0 <= scheme["top1"] <= scheme["top5"] <= 1


def test_prints_a_table_and_progress(report):
    proc, _ = report
    lines = proc.stdout.splitlines()
    assert lines[1].split()[:4] == ["crops", "cost", "top-1", "top-5"]
    assert [line.split()[0] for line in lines[2:5]] == ["1", "10", "144"]
    assert "144 crop(s): batch" in proc.stderr and "ETA" in proc.stderr


def _main_error(capsys, *args) -> str:
    """evaluate.main in this process: the exit status must be 2 and stderr one error line."""
    assert evaluate.main(list(map(str, args))) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("evaluate: error: ")
    return err[0]


def test_pth_weights_on_an_image_folder_with_the_wrong_class_count(torchvision_pth, photo_folder, capsys):
    assert _main_error(capsys, "--weights", torchvision_pth[0], "--dataset", "image_folder",
                       "--data_dir", photo_folder) == (
        "evaluate: error: the weights have 1000 classes but dataset 'image_folder' has 3")


def test_pth_weights_need_a_dataset(torchvision_pth, capsys):
    assert "pass --dataset" in _main_error(capsys, "--weights", torchvision_pth[0])


def test_bad_crops_argument(torchvision_pth, capsys):
    with pytest.raises(SystemExit) as exit_:
        evaluate.main(["--weights", torchvision_pth[0], "--crops", "1,5"])
    assert exit_.value.code == 2 and "crop schemes must be among 1,10,144" in capsys.readouterr().err
