"""evaluate.py and predict.py, as real processes, on files made to hurt: small files that declare gigabytes, pictures
of too many pixels or of NaN, PyTorch files of no data or of pickles, a big-endian checkpoint, a model of 12 outputs.
Each costs one line on stderr (never a traceback or a torch warning), and the good inputs beside it still count."""

import datetime
import subprocess
import sys
from pathlib import Path

import numpy
import pytest

import backend as backend_module
from conftest import torch_or_skip
from crafted_files import members_of, png_of_zeros, write_zip, zeros_deflate, zeros_of_layers
from idx_files import write_dataset
from nets.checkpoint import save_checkpoint
from nets.nn.models import build_model

Image = pytest.importorskip("PIL.Image", reason="Pillow is not installed; pip install -e .[plot]")
ImageDraw = pytest.importorskip("PIL.ImageDraw")

ROOT = Path(__file__).resolve().parents[1]


def run_script(name, *args):
    return subprocess.run([sys.executable, str(ROOT / "scripts" / f"{name}.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=180, cwd=ROOT)


def one_line(result, code=1) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def seven(path):
    image = Image.new("RGB", (90, 120), "white")
    ImageDraw.Draw(image).line([(20, 20), (70, 25), (35, 110)], fill="black", width=9)
    image.save(path)
    return path


def saved_mlp(path, sizes=(784, 16, 10), **meta):
    model = build_model({"name": "mlp", "sizes": list(sizes)}, backend=backend_module.get_backend("cpu"),
                        rng=numpy.random.default_rng(0))
    return save_checkpoint(path, model.state_dict(), model.config(), **meta)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("data") / "mnist", n_train=10, n_test=40, seed=0)


@pytest.mark.parametrize("script", ["evaluate", "predict"])
def test_layers_each_under_the_bound_but_gigabytes_together_are_one_line(tmp_path, data_dir, script):
    path = zeros_of_layers(tmp_path / "layers.npz")
    arguments = ["--data-dir", data_dir] if script == "evaluate" else [seven(tmp_path / "seven.png")]
    result = run_script(script, path, *arguments, "--device", "cpu")
    line = one_line(result)
    assert f"{path}: its 30 entries together declare 854.9 MiB of data in 868.4 KiB of compressed bytes" in line
    assert result.stdout == ""


def test_a_pytorch_file_inflating_to_a_gibibyte_and_one_of_meta_tensors_are_one_line_each(tmp_path):
    torch = torch_or_skip()
    torch.save({"fc1.weight": torch.zeros(4)}, tmp_path / "small.pt")
    members = members_of(tmp_path / "small.pt")
    storage = next(name for name in members if name.endswith("/data/0"))
    members[storage] = (*zeros_deflate(b"", 2**30), 2**30)
    bomb = write_zip(tmp_path / "bomb.pt", members)
    torch.save({"fc1.weight": torch.empty(16, 784, device="meta")}, tmp_path / "meta.pt")
    torch.save({"fc1.weight": torch.zeros(2, 2), "when": datetime.date(2024, 1, 1)}, tmp_path / "objects.pt")
    image = seven(tmp_path / "seven.png")
    expected = {bomb: f"entry {storage} declares 1.0 GiB of data in 1.0 MiB of compressed bytes",
                tmp_path / "meta.pt": "parameter fc1.weight is a meta-device tensor",
                tmp_path / "objects.pt": "holds pickled Python objects besides tensors (datetime.date)"}
    for path, part in expected.items():
        line = one_line(run_script("predict", path, image, "--device", "cpu"))
        assert str(path) in line and part in line and "weights_only" not in line


def test_bad_pictures_get_a_line_each_and_the_good_ones_are_still_classified(tmp_path):
    checkpoint = saved_mlp(tmp_path / "mlp.npz", dataset="mnist")
    good = seven(tmp_path / "good.png")
    huge = tmp_path / "huge.png"
    huge.write_bytes(png_of_zeros(14_000, 14_000))  # above Pillow's own bound too
    wide = tmp_path / "wide.png"
    wide.write_bytes(png_of_zeros(13_000, 13_000, 3))
    float_values = numpy.zeros((40, 40), dtype=numpy.float32)
    float_values[10:30, 18:22] = 1.0
    float_values[0, 0] = numpy.nan
    not_a_number = tmp_path / "nan.tif"
    Image.fromarray(float_values).save(not_a_number)
    also_good = seven(tmp_path / "also_good.png")
    result = run_script("predict", checkpoint, huge, good, wide, not_a_number, also_good, "--device", "cpu")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    errors = result.stderr.strip().splitlines()
    assert [line.split(": ", 2)[1] for line in errors] == [str(huge), str(wide), str(not_a_number)]
    assert "196,000,000 pixels is more than the 50 million pixels" in errors[0]
    assert "13000x13000 pixels is more than the 50 million pixels" in errors[1]
    assert "holds NaN or infinite pixel values" in errors[2]
    assert [line.split(": ")[0] for line in result.stdout.splitlines()[2:]] == [str(good), str(also_good)]


def test_a_model_of_12_outputs_is_shown_by_number_and_refuses_ten_class_names(tmp_path):
    checkpoint = saved_mlp(tmp_path / "twelve.npz", sizes=(784, 16, 12))
    image = seven(tmp_path / "seven.png")
    shown = run_script("predict", checkpoint, image, "--device", "cpu", "--top", 10)
    assert shown.returncode == 0 and shown.stderr == "", shown.stderr
    knows, _prepared, guesses = shown.stdout.splitlines()
    assert knows.endswith("so its classes are shown by number, 0-11")
    numbers = [int(guess.split()[0]) for guess in guesses.split(": ", 1)[1].split(", ")]
    assert len(set(numbers)) == 10 and set(numbers) <= set(range(12))
    line = one_line(run_script("predict", checkpoint, image, "--device", "cpu", "--dataset", "mnist"))
    assert line == (f"error: {checkpoint} holds an MLP with 12 outputs, but MNIST has 10 classes, so --dataset mnist "
                    "cannot name them; leave out --dataset.")


def test_a_big_endian_checkpoint_scores_alike_with_the_nets_and_with_torch(tmp_path, data_dir):
    torch_or_skip()
    checkpoint = saved_mlp(tmp_path / "little.npz", dataset="mnist")
    with numpy.load(checkpoint) as archive:
        arrays = {key: archive[key].astype(archive[key].dtype.newbyteorder(">")) for key in archive.files}
    numpy.savez(tmp_path / "big.npz", **arrays)
    scores = {}
    for impl in ("nets", "torch"):
        result = run_script("evaluate", tmp_path / "big.npz", "--data-dir", data_dir, "--device", "cpu", "--impl", impl)
        assert result.returncode == 0 and result.stderr == "", result.stderr
        scores[impl] = next(line for line in result.stdout.splitlines() if "accuracy" in line)
    assert scores["nets"] == scores["torch"]
