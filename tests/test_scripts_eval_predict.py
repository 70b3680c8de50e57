"""scripts/evaluate.py, predict.py and plot.py end to end, on a tiny IDX dataset and fresh checkpoints.

Most runs go through click's CliRunner (fast, in-process); a few run the real `python scripts/...`
to check the entry point and that user errors end in one line on stderr, without a traceback.
"""

import importlib.util
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy
import re

import pytest
from click.testing import CliRunner

import backend as backend_module
from nets.baseline.checkpoint import save_torch_state_dict
from nets.checkpoint import save_checkpoint
from nets.nn.models import build_model
from conftest import torch_or_skip
from idx_files import write_dataset

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))  # the scripts import their shared helper as `_cli`, as when run directly

PIL_Image = pytest.importorskip("PIL.Image", reason="Pillow is not installed; pip install -e .[plot]")
from PIL import ImageDraw  # noqa: E402


def load_script(name):
    spec = importlib.util.spec_from_file_location(f"script_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


evaluate_script = load_script("evaluate")
predict_script = load_script("predict")
FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
plot_script = load_script("plot")


def invoke(script, *args):
    result = CliRunner().invoke(script.main, [str(arg) for arg in args])
    return result


def assert_one_line_error(result, *fragments):
    assert result.exit_code == 1, (result.exit_code, result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("data") / "mnist", n_train=10, n_test=40, seed=0)


@pytest.fixture(scope="module")
def cnn_checkpoint(tmp_path_factory):
    model = build_model("cnn", backend=backend_module.get_backend("cpu"), rng=numpy.random.default_rng(0))
    path = tmp_path_factory.mktemp("checkpoints") / "cnn.npz"
    save_checkpoint(path, model.state_dict(), model.config(), config={"dataset": "mnist"})
    return path


@pytest.fixture(scope="module")
def mlp_checkpoint(tmp_path_factory):
    model = build_model("mlp", backend=backend_module.get_backend("cpu"), rng=numpy.random.default_rng(0))
    path = tmp_path_factory.mktemp("checkpoints") / "mlp.npz"
    save_checkpoint(path, model.state_dict(), model.config(), config={"dataset": "fashion-mnist"})
    return path


def digit_image(path, background="white", ink="black"):
    image = PIL_Image.new("RGB", (90, 120), background)
    ImageDraw.Draw(image).line([(20, 20), (70, 25), (35, 110)], fill=ink, width=9)
    image.save(path)
    return path


# ---------------------------------------------------------------------------------------------- evaluate


def test_evaluate_prints_accuracy_and_table(cnn_checkpoint, data_dir, tmp_path):
    json_path = tmp_path / "eval.json"
    result = invoke(evaluate_script, cnn_checkpoint, "--data-dir", data_dir, "--device", "cpu",
                    "--batch-size", 16, "--json", json_path, "--no-download")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    accuracy_line = next(line for line in lines if line.startswith("test accuracy:"))
    accuracy = float(accuracy_line.split()[2].rstrip("%")) / 100
    assert 0.0 <= accuracy <= 1.0
    table_start = lines.index("confusion matrix (rows: true class, columns: predicted):")
    table = lines[table_start + 1:table_start + 12]
    assert table[0].split()[-10:] == [str(k) for k in range(10)]
    assert [row.split()[0] for row in table[1:]] == [str(k) for k in range(10)]
    assert sum(int(cell) for row in table[1:] for cell in row.split()[1:]) == 40
    report = json.loads(json_path.read_text())
    assert report["accuracy"] == pytest.approx(accuracy, abs=1e-4)
    assert numpy.array(report["confusion_matrix"]).sum() == 40


def test_evaluate_uses_the_checkpoints_dataset(mlp_checkpoint, tmp_path):
    fashion_dir = write_dataset(tmp_path / "fashion-mnist", n_train=10, n_test=20, seed=1)
    result = invoke(evaluate_script, mlp_checkpoint, "--data-dir", fashion_dir, "--device", "cpu", "--no-download")
    assert result.exit_code == 0, result.output
    assert "(trained on Fashion-MNIST) on the fashion-mnist test set" in result.stdout
    assert "Ankle boot" in result.stdout and "T-shirt/top" in result.stdout
    assert result.stderr == ""


def test_evaluate_names_fashion_mnist_files_by_their_checksums(cnn_checkpoint, tmp_path, monkeypatch):
    """A digit model scored with --data-dir holding the published Fashion-MNIST files: they are called what they
    are, and the warning says the model's classes are not theirs; --dataset mnist that they contradict is refused."""
    import hashlib

    from nets.data import datasets

    clothes = write_dataset(tmp_path / "downloads", n_train=10, n_test=20, seed=4)
    published = {name: hashlib.md5(datasets.read_idx_bytes(path, ndim=3 if "images" in name else 1)).hexdigest()
                 for name, path in datasets.dataset_files(clothes)[0].items()}
    monkeypatch.setitem(datasets.CONTENT_MD5, "fashion-mnist", published)
    result = invoke(evaluate_script, cnn_checkpoint, "--data-dir", clothes, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        f"note: the files in {clothes} are Fashion-MNIST (they match its published checksums), not MNIST: using "
        "Fashion-MNIST's name and classes.",
        f"warning: {cnn_checkpoint} was trained on MNIST, so scoring it on Fashion-MNIST compares its MNIST classes "
        "with Fashion-MNIST's labels."]
    assert "on the fashion-mnist test set" in result.stdout and "Ankle boot" in result.stdout
    refused = invoke(evaluate_script, cnn_checkpoint, "--data-dir", clothes, "--dataset", "mnist", "--device", "cpu")
    assert_one_line_error(refused, "not MNIST as --dataset mnist says; leave out --dataset")


def test_evaluate_on_another_dataset_than_the_checkpoints_warns(mlp_checkpoint, data_dir):
    result = invoke(evaluate_script, mlp_checkpoint, "--data-dir", data_dir, "--dataset", "mnist", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert result.stderr == (f"warning: {mlp_checkpoint} was trained on Fashion-MNIST, so scoring it on MNIST "
                             "compares its Fashion-MNIST classes with MNIST's labels.\n")


def test_evaluate_a_pytorch_state_dict(data_dir, tmp_path):
    torch_or_skip()
    model = build_model("mlp", backend=backend_module.get_backend("cpu"), rng=numpy.random.default_rng(0))
    path = save_torch_state_dict(tmp_path / "mlp.pt", model)
    result = invoke(evaluate_script, path, "--data-dir", data_dir, "--device", "cpu", "--no-download")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("mlp from ")
    assert "test accuracy:" in result.stdout


@pytest.mark.parametrize("checkpoint_fixture", ["cnn_checkpoint", "mlp_checkpoint"])
def test_evaluate_with_the_pytorch_baseline_agrees_with_the_nets(checkpoint_fixture, data_dir, tmp_path, request):
    torch_or_skip()
    checkpoint = request.getfixturevalue(checkpoint_fixture)
    reports = {}
    for impl in ("nets", "torch"):
        path = tmp_path / f"{impl}.json"
        result = invoke(evaluate_script, checkpoint, "--data-dir", data_dir, "--dataset", "mnist", "--device", "cpu",
                        "--impl", impl, "--json", path)
        assert result.exit_code == 0, result.output
        assert f"scored by {impl}" in result.output
        reports[impl] = json.loads(path.read_text())
    assert reports["torch"]["confusion_matrix"] == reports["nets"]["confusion_matrix"]
    assert reports["torch"]["accuracy"] == reports["nets"]["accuracy"]


def test_evaluate_with_torch_missing_is_one_line(cnn_checkpoint, data_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    result = invoke(evaluate_script, cnn_checkpoint, "--data-dir", data_dir, "--impl", "torch")
    assert_one_line_error(result, "needs PyTorch")


def test_evaluate_missing_checkpoint(tmp_path, data_dir):
    result = invoke(evaluate_script, tmp_path / "nothing.npz", "--data-dir", data_dir, "--device", "cpu")
    assert_one_line_error(result, "nothing.npz")


def test_evaluate_corrupt_checkpoint(tmp_path, data_dir):
    path = tmp_path / "broken.npz"
    path.write_bytes(b"PK\x03\x04 this is not really a zip archive")
    assert_one_line_error(invoke(evaluate_script, path, "--data-dir", data_dir, "--device", "cpu"), "broken.npz")


def test_evaluate_missing_data(cnn_checkpoint, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = invoke(evaluate_script, cnn_checkpoint, "--data-dir", empty, "--device", "cpu", "--no-download")
    assert_one_line_error(result, str(empty))


def test_evaluate_on_an_empty_test_set_is_one_line(cnn_checkpoint, tmp_path):
    empty = write_dataset(tmp_path / "mnist", n_train=10, n_test=0)
    result = invoke(evaluate_script, cnn_checkpoint, "--data-dir", empty, "--device", "cpu")
    assert_one_line_error(result, f"{empty / 't10k-images-idx3-ubyte'} holds no images", "evaluation needs test images")


def test_evaluate_json_into_a_blocked_folder_is_refused_before_any_work(cnn_checkpoint, data_dir, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    result = invoke(evaluate_script, cnn_checkpoint, "--data-dir", data_dir, "--device", "cpu",
                    "--json", blocker / "eval.json")
    assert_one_line_error(result, f"--json {blocker / 'eval.json'}", "is a file, not a folder")
    assert result.stdout == ""


@pytest.mark.parametrize("spelling", ["same", "./", "link"])
def test_evaluate_never_writes_its_report_over_the_checkpoint(cnn_checkpoint, data_dir, tmp_path, monkeypatch,
                                                             spelling):
    monkeypatch.chdir(tmp_path)
    checkpoint = Path("y.npz")
    checkpoint.write_bytes(cnn_checkpoint.read_bytes())
    json_path = {"same": "y.npz", "./": "./y.npz", "link": "link.npz"}[spelling]
    if spelling == "link":
        Path("link.npz").symlink_to("y.npz")
    result = invoke(evaluate_script, checkpoint, "--data-dir", data_dir, "--device", "cpu", "--json", json_path)
    assert_one_line_error(result, f"error: --json {json_path} is the checkpoint being scored, and writing there would "
                                  f"replace it; give --json another path.")
    assert result.stdout == "" and checkpoint.read_bytes() == cnn_checkpoint.read_bytes()


def test_evaluate_refuses_a_fifo_an_empty_path_and_a_dataset_file_as_json(cnn_checkpoint, data_dir, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    result = invoke(evaluate_script, cnn_checkpoint, "--data-dir", data_dir, "--device", "cpu", "--json", fifo)
    assert_one_line_error(result, f"--json {fifo}: {fifo} is a FIFO (named pipe), not a regular file")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and result.stdout == ""
    labels = data_dir / "t10k-labels-idx1-ubyte"
    before = labels.read_bytes()
    result = invoke(evaluate_script, cnn_checkpoint, "--data-dir", data_dir, "--device", "cpu", "--json", labels)
    assert_one_line_error(result, f"--json {labels} is the dataset file {labels}, and writing there would replace it")
    assert labels.read_bytes() == before and "test accuracy" not in result.stdout
    for args in (("", "--data-dir", data_dir), (cnn_checkpoint, "--json", "")):
        empty = invoke(evaluate_script, *args, "--device", "cpu")
        assert empty.exit_code == 2 and empty.stdout == ""
        assert empty.stderr.startswith("error: ") and "is empty ('')" in empty.stderr and empty.stderr.count("\n") == 1


def _copy_with(source, target, mutate):
    with numpy.load(source, allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    mutate(arrays)
    numpy.savez(target, **arrays)
    return target


def _nan_weights(arrays):
    arrays["fc2.weight"] = arrays["fc2.weight"].copy()
    arrays["fc2.weight"][0, 0] = numpy.nan


def _huge_hidden(arrays):
    config = json.loads(str(arrays["meta/model_config"][()]))
    arrays["meta/model_config"] = numpy.array(json.dumps({**config, "hidden": 10**9}))


@pytest.mark.parametrize("damage, expected", [
    ("nan", "parameter fc2.weight holds 1 NaN or infinite value; the model diverged before it was saved"),
    ("extra member", "holds a member 'notes.txt' that is not a numpy array (.npy)"),
    ("huge config", "fc1.weight has shape (48, 3200), but a CNN of this size has (1000000000, 3200)"),
])
@pytest.mark.parametrize("script", ["evaluate", "predict"])
def test_a_bad_checkpoint_is_one_line_in_evaluate_and_predict(cnn_checkpoint, data_dir, tmp_path, damage, expected,
                                                               script):
    import zipfile

    path = tmp_path / "bad.npz"
    if damage == "extra member":
        path.write_bytes(cnn_checkpoint.read_bytes())
        with zipfile.ZipFile(path, "a") as archive:
            archive.writestr("notes.txt", "hello")
    else:
        _copy_with(cnn_checkpoint, path, _nan_weights if damage == "nan" else _huge_hidden)
    if script == "evaluate":
        result = invoke(evaluate_script, path, "--data-dir", data_dir, "--device", "cpu")
    else:
        result = invoke(predict_script, path, digit_image(tmp_path / "seven.png"), "--device", "cpu")
    assert_one_line_error(result, str(path), expected)
    assert result.stdout == ""


@pytest.mark.parametrize("script", ["evaluate", "predict"])
def test_a_checkpoint_whose_meta_names_the_other_model_does_not_suggest_options_the_script_lacks(
        mlp_checkpoint, cnn_checkpoint, data_dir, tmp_path, script):
    def claim_cnn(arrays):
        with numpy.load(cnn_checkpoint) as cnn:
            arrays["meta/model_config"] = cnn["meta/model_config"]

    path = _copy_with(mlp_checkpoint, tmp_path / "odd.npz", claim_cnn)
    if script == "evaluate":
        result = invoke(evaluate_script, path, "--data-dir", data_dir, "--device", "cpu")
    else:
        result = invoke(predict_script, path, digit_image(tmp_path / "seven.png"), "--device", "cpu")
    assert_one_line_error(result, f"{path}: meta/model_config describes a CNN", "those of an MLP, not a CNN",
                          "save it again")
    assert "--model" not in result.stderr


@pytest.mark.parametrize("config", [{"name": "cnn", "classes": 3}, {"name": "mlp", "sizes": [784, 32, 12]}],
                         ids=["3 outputs", "12 outputs"])
@pytest.mark.parametrize("script", ["evaluate", "plot"])  # predict names such a model's classes by number instead
def test_a_model_without_one_output_per_class_is_refused_saying_so(config, script, data_dir, tmp_path):
    model = build_model(config, backend=backend_module.get_backend("cpu"), rng=numpy.random.default_rng(0))
    path = tmp_path / "odd.npz"
    save_checkpoint(path, model.state_dict(), model.config())  # says no dataset: scored on MNIST's ten digits
    outputs = model.config().get("classes") or model.config()["sizes"][-1]
    if script == "evaluate":
        result = invoke(evaluate_script, path, "--data-dir", data_dir, "--device", "cpu")
    elif script == "plot":
        pytest.importorskip("matplotlib", reason="matplotlib is not installed; pip install -e .[plot]")
        result = invoke(plot_script, path, "--data-dir", data_dir, "--device", "cpu", "--out", tmp_path / "plots")
    article = "a CNN" if config["name"] == "cnn" else "an MLP"
    assert_one_line_error(result, f"error: {path} holds {article} with {outputs} outputs, but MNIST has 10 classes; "
                                  "use a model with one output per class, trained on MNIST.")
    assert "test accuracy" not in result.stdout


def test_evaluate_on_an_unavailable_gpu(cnn_checkpoint, data_dir):
    if backend_module.gpu_problem() is None:
        pytest.skip("a GPU works here, so --device gpu is not an error")
    result = invoke(evaluate_script, cnn_checkpoint, "--data-dir", data_dir, "--device", "gpu")
    assert_one_line_error(result, "--device gpu is not available")


def test_evaluate_on_device_auto_says_nothing_of_cuda_without_a_gpu(cnn_checkpoint, data_dir):
    problem = backend_module.gpu_problem()
    if problem is None or not problem.absent:
        pytest.skip("an NVIDIA driver is loaded here; this checks machines without a GPU")
    result = invoke(evaluate_script, cnn_checkpoint, "--data-dir", data_dir)  # --device auto is the default
    assert result.exit_code == 0, result.output
    assert not re.search("cuda|cupy|driver|--device auto", result.output, re.IGNORECASE), result.output


# ---------------------------------------------------------------------------------------------- predict


def test_predict_top_k(cnn_checkpoint, tmp_path):
    seven = digit_image(tmp_path / "seven.png")
    inverted = digit_image(tmp_path / "inverted.jpg", background="black", ink="white")
    result = invoke(predict_script, cnn_checkpoint, seven, inverted, "--top", 3, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""  # a digit model: no warning
    knows, prepared, *lines = result.stdout.splitlines()
    assert knows == "model: a CNN trained on MNIST (classes: the digits 0-9)"
    assert prepared == ("pictures: prepared as MNIST's digits were: cropped to the ink, scaled into a 20x20 box, "
                        "centred by mass, light on black (the model learned from MNIST)")
    assert len(lines) == 2 and lines[0].startswith(f"{seven}: ") and lines[1].startswith(f"{inverted}: ")
    guesses = lines[0].split(": ", 1)[1].split(", ")
    assert len(guesses) == 3
    percentages = [float(guess.split()[-1].rstrip("%")) for guess in guesses]
    assert percentages == sorted(percentages, reverse=True)
    assert all(0.0 <= value <= 100.0 for value in percentages)


def test_the_readmes_example_pictures_are_predicted(cnn_checkpoint):
    """README: `predict.py examples/*.png`; the pictures are there and each gets an answer."""
    pictures = sorted((ROOT / "examples").glob("*.png"))
    assert len(pictures) >= 2, pictures
    result = invoke(predict_script, cnn_checkpoint, *pictures, "--top", 1, "--device", "cpu")
    assert result.exit_code == 0, result.output
    answered = [line.split(": ", 1)[0] for line in result.stdout.splitlines()[2:]]
    assert answered == [str(picture) for picture in pictures]


def test_predict_reports_bad_images_and_goes_on(cnn_checkpoint, tmp_path):
    good = digit_image(tmp_path / "good.png")
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("hello")
    blank = tmp_path / "blank.png"
    PIL_Image.new("L", (40, 40), 255).save(blank)
    result = invoke(predict_script, cnn_checkpoint, not_an_image, good, blank, "--top", 1, "--device", "cpu")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 2
    assert errors[0].startswith("error: ") and "notes.png" in errors[0]
    assert "blank.png" in errors[1] and "blank" in errors[1]
    assert result.stdout.strip().splitlines()[2:] == [line for line in result.stdout.strip().splitlines()
                                                      if line.startswith(f"{good}: ")]
    assert len(result.stdout.strip().splitlines()) == 3


def test_predict_prepares_the_pictures_of_a_clothes_model_as_fashion_mnists_and_says_so(mlp_checkpoint, tmp_path):
    """A Fashion-MNIST model's pictures are prepared as its clothes were, without a warning; --prepare digits is
    obeyed, with a warning that says what is wrong with that (the warning blamed the picture before)."""
    seven = digit_image(tmp_path / "seven.png")
    result = invoke(predict_script, mlp_checkpoint, seven, "--top", 2, "--device", "cpu")
    assert result.exit_code == 0, result.output
    knows, prepared, guesses = result.stdout.splitlines()
    assert knows == ("model: an MLP trained on Fashion-MNIST (classes: T-shirt/top, Trouser, Pullover, Dress, Coat, "
                     "Sandal, Shirt, Sneaker, Bag, Ankle boot)")
    assert prepared == ("pictures: prepared as Fashion-MNIST's clothes were: the item fitted to the 28x28 frame, "
                        "aspect kept, light on black (the model learned from Fashion-MNIST)")
    assert all(guess.rsplit(" ", 1)[0] in FASHION for guess in guesses.split(": ", 1)[1].split(", "))
    assert result.stderr == ""
    same = invoke(predict_script, mlp_checkpoint, seven, "--top", 2, "--device", "cpu", "--dataset", "fashion-mnist")
    assert same.exit_code == 0 and same.stdout == result.stdout
    digits = invoke(predict_script, mlp_checkpoint, seven, "--device", "cpu", "--prepare", "digits")
    assert digits.exit_code == 0, digits.output
    assert digits.stdout.splitlines()[1].endswith("(as --prepare digits says)")
    assert digits.stderr == ("warning: this model learned from Fashion-MNIST's clothes, so pictures prepared as digits "
                             "are unlike those it was trained on; leave out --prepare to prepare them as its training "
                             "pictures were.\n")


def test_predict_never_relabels_the_classes_of_a_checkpoint_that_names_them(mlp_checkpoint, tmp_path):
    result = invoke(predict_script, mlp_checkpoint, digit_image(tmp_path / "seven.png"), "--dataset", "mnist",
                    "--device", "cpu")
    assert result.exit_code == 1 and result.stdout == ""  # "error: ..." and exit 1, as every user error but click's
    assert result.stderr == (f"error: {mlp_checkpoint} holds an MLP trained on Fashion-MNIST; its outputs are "
                             "Fashion-MNIST's classes, so --dataset mnist would give them MNIST's names. Leave out "
                             "--dataset.\n")


def test_predict_with_a_checkpoint_that_does_not_say_its_dataset(tmp_path):
    torch_or_skip()
    model = build_model("cnn", backend=backend_module.get_backend("cpu"), rng=numpy.random.default_rng(0))
    path = save_torch_state_dict(tmp_path / "cnn.pt", model)
    seven = digit_image(tmp_path / "seven.png")
    result = invoke(predict_script, path, seven, "--device", "cpu", "--top", 1)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == (f"model: a CNN; {path} does not say which dataset it was trained on, so "
                                             "its classes are shown by number, 0-9 (--dataset NAME names them)")
    named = invoke(predict_script, path, seven, "--device", "cpu", "--top", 10, "--dataset", "fashion-mnist")
    assert named.exit_code == 0, named.output
    assert "named as --dataset fashion-mnist says: T-shirt/top, Trouser," in named.stdout.splitlines()[0]
    assert sorted(guess.rsplit(" ", 1)[0] for guess in named.stdout.splitlines()[2].split(": ", 1)[1].split(", ")) == (
        sorted(FASHION))
    assert named.stdout.splitlines()[1].startswith("pictures: prepared as Fashion-MNIST's clothes were")
    assert named.stdout.splitlines()[1].endswith("(--dataset fashion-mnist names its classes)")
    assert named.stderr == ""
    assert result.stdout.splitlines()[1].endswith(
        "(the checkpoint does not say its dataset; --prepare clothes for garments)")


def test_predict_reads_what_train_py_leaves_by_default(tmp_path, monkeypatch):
    """A fresh clone's make train leaves runs/<dataset>-<model>-<impl>.npz; evaluate and predict read it as it is."""
    fashion = write_dataset(tmp_path / "fashion-mnist", n_train=64, n_test=16, seed=2)
    monkeypatch.chdir(tmp_path)
    trained = CliRunner().invoke(load_script("train").main, ["--model", "mlp", "--dataset", "fashion-mnist",
                                                              "--data-dir", str(fashion), "--epochs", "1", "--quiet"])
    assert trained.exit_code == 0, trained.output
    checkpoint = Path("runs/fashion-mnist-mlp-nets.npz")
    scored = invoke(evaluate_script, checkpoint, "--data-dir", fashion, "--device", "cpu")
    assert scored.exit_code == 0, scored.output
    assert scored.stdout.startswith(f"mlp from {checkpoint} (trained on Fashion-MNIST) on the fashion-mnist test set")
    predicted = invoke(predict_script, checkpoint, digit_image(tmp_path / "seven.png"), "--device", "cpu")
    assert predicted.exit_code == 0, predicted.output
    assert predicted.stdout.startswith("model: an MLP trained on Fashion-MNIST")


def test_predict_with_a_corrupt_checkpoint(tmp_path):
    path = tmp_path / "model.npz"
    path.write_bytes(b"\x00" * 64)
    result = invoke(predict_script, path, digit_image(tmp_path / "seven.png"), "--device", "cpu")
    assert_one_line_error(result, "model.npz")


# ---------------------------------------------------------------------------------------------- plot


def test_plot_from_saved_files(mlp_checkpoint, tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is not installed; pip install -e .[plot]")
    fashion_dir = write_dataset(tmp_path / "fashion-mnist", n_train=10, n_test=20, seed=1)
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"model": "mlp", "epochs": [
        {"epoch": 1, "train_loss": 1.0, "train_accuracy": 0.5, "test_accuracy": 0.6},
        {"epoch": 2, "train_loss": 0.5, "train_accuracy": 0.7, "test_accuracy": 0.8},
    ]}))
    out = tmp_path / "plots"
    result = invoke(plot_script, mlp_checkpoint, "--metrics", metrics, "--out", out, "--data-dir", fashion_dir,
                    "--device", "cpu", "--no-download")
    assert result.exit_code == 0, result.output
    names = sorted(path.name for path in out.iterdir())
    assert names == ["confusion_matrix.png", "first_layer_filters.png", "misclassified.png", "training_curves.png"]
    assert all((out / name).stat().st_size > 1000 for name in names)


def test_plot_of_a_checkpoint_alone_finds_its_metrics_and_writes_beside_it(tmp_path, monkeypatch):
    """plot.py CHECKPOINT after train.py: the metrics JSON beside the checkpoint, the PNGs into CHECKPOINT-plots/."""
    pytest.importorskip("matplotlib", reason="matplotlib is not installed; pip install -e .[plot]")
    data = write_dataset(tmp_path / "mnist", n_train=64, n_test=16, seed=5)
    monkeypatch.chdir(tmp_path)
    trained = CliRunner().invoke(load_script("train").main, ["--model", "mlp", "--data-dir", str(data), "--epochs",
                                                              "2", "--quiet"])
    assert trained.exit_code == 0, trained.output
    result = invoke(plot_script, "runs/mnist-mlp-nets.npz", "--data-dir", data, "--device", "cpu")
    assert result.exit_code == 0, result.output
    out = Path("runs/mnist-mlp-nets-plots")
    names = ["confusion_matrix.png", "first_layer_filters.png", "misclassified.png", "training_curves.png"]
    assert sorted(path.name for path in out.iterdir()) == names
    lines = result.stdout.splitlines()
    assert lines[0] == "metrics: runs/mnist-mlp-nets.json (beside the checkpoint, from the same run)"
    assert lines[-1] == f"4 plots written to {out}"
    Path("runs/mnist-mlp-nets.json").unlink()  # no metrics beside it: no curves, said so
    result = invoke(plot_script, "runs/mnist-mlp-nets.npz", "--data-dir", data, "--device", "cpu", "--out", "p")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == ("metrics: none (runs/mnist-mlp-nets.json is not there), so no training "
                                             "curves; --metrics FILE gives them")
    assert sorted(path.name for path in Path("p").iterdir()) == names[:3]


def test_plot_with_bad_metrics(mlp_checkpoint, tmp_path):
    metrics = tmp_path / "metrics.json"
    metrics.write_text("{not json")
    result = invoke(plot_script, mlp_checkpoint, "--metrics", metrics, "--out", tmp_path / "plots")
    assert_one_line_error(result, "metrics.json is not valid JSON")


def test_plot_with_a_missing_metrics_file_or_a_blocked_out_folder(mlp_checkpoint, tmp_path):
    result = invoke(plot_script, mlp_checkpoint, "--metrics", tmp_path / "none.json", "--out", tmp_path / "plots")
    assert_one_line_error(result, f"--metrics {tmp_path / 'none.json'}: no such file")
    (tmp_path / "metrics.json").write_text('{"epochs": 3}')
    result = invoke(plot_script, mlp_checkpoint, "--metrics", tmp_path / "metrics.json", "--out", tmp_path / "plots")
    assert_one_line_error(result, "does not hold a metrics object with a list of epochs")
    pytest.importorskip("matplotlib", reason="matplotlib is not installed; pip install -e .[plot]")
    (tmp_path / "blocker").write_text("a file where a folder should be")
    result = invoke(plot_script, mlp_checkpoint, "--out", tmp_path / "blocker" / "plots")
    assert_one_line_error(result, f"--out {tmp_path / 'blocker' / 'plots'}", "is a file, not a folder")


# ---------------------------------------------------------------------------------------------- real processes


def run_script(name, *args):
    return subprocess.run([sys.executable, str(SCRIPTS / f"{name}.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_real_process_errors_are_one_line(tmp_path):
    not_an_image = tmp_path / "picture.jpg"
    not_an_image.write_bytes(b"\xff\xd8 not really a jpeg")
    missing = run_script("predict", tmp_path / "missing.npz", not_an_image, "--device", "cpu")
    assert missing.returncode == 1
    assert missing.stderr.strip().count("\n") == 0 and missing.stderr.startswith("error: ")
    assert "missing.npz" in missing.stderr and "Traceback" not in missing.stderr


def test_real_process_predicts(cnn_checkpoint, tmp_path):
    not_an_image = tmp_path / "picture.jpg"
    not_an_image.write_bytes(b"\xff\xd8 not really a jpeg")
    good = digit_image(tmp_path / "seven.png")
    finished = run_script("predict", cnn_checkpoint, good, not_an_image, "--device", "cpu", "--top", 2)
    assert finished.returncode == 1
    assert finished.stdout.splitlines()[2].startswith(f"{good}: ")
    assert finished.stderr.strip().count("\n") == 0 and "picture.jpg" in finished.stderr
    assert "Traceback" not in finished.stderr


# ---------------------------------------------------------------------------------------------- _cli


def test_one_line_errors_only_for_the_projects_errors(monkeypatch):
    import click

    from _cli import one_line_errors
    from nets.errors import NetsError
    from nets.data.idx import DataError

    class StoppedError(NetsError):
        exit_code = 4

    @click.command()
    @click.option("--kind")
    @one_line_errors
    def main(kind):
        raise {"user": DataError("the file is bad; re-download it.\nsecond line"),
               "code": StoppedError("stopped; try again."),
               "value": ValueError("operands could not be broadcast together"),
               "missing": FileNotFoundError(2, "No such file or directory", "x.png"),
               "bug": KeyError("oops")}[kind]

    assert_one_line_error(CliRunner().invoke(main, ["--kind", "user"]), "error: the file is bad; re-download it.")
    coded = CliRunner().invoke(main, ["--kind", "code"])
    assert coded.exit_code == 4 and coded.stderr == "error: stopped; try again.\n"
    for kind, error_type in (("value", ValueError), ("missing", FileNotFoundError), ("bug", KeyError)):
        bug = CliRunner().invoke(main, ["--kind", kind])
        assert isinstance(bug.exception, error_type), kind  # a bug keeps its traceback, even a ValueError or OSError
        assert "error:" not in bug.output
    monkeypatch.setenv("NETS_TRACEBACK", "1")
    assert isinstance(CliRunner().invoke(main, ["--kind", "user"]).exception, DataError)


def test_every_user_facing_error_derives_from_the_one_base():
    import backend
    from nets.errors import USER_ERRORS, DeviceError, NetsError
    from nets.checkpoint import CheckpointError
    from nets.data.datasets import DataNotFoundError
    from nets.data.digits import DigitImageError
    from nets.data.download import DownloadError
    from nets.report.evaluation import EvaluationError
    from nets.data.idx import DataError
    from nets.outputs import OutputError
    from nets.report.plots import PlotError
    from nets.train.run import Diverged, Interrupted, RunError

    for error_type in (DeviceError, CheckpointError, DataError, DataNotFoundError, DownloadError,
                       DigitImageError, EvaluationError, OutputError, PlotError, RunError, Diverged, Interrupted):
        assert issubclass(error_type, NetsError), error_type
    # backend/ sits below nets, so its error is not a NetsError; the scripts catch both as the user's
    assert USER_ERRORS == (NetsError, backend.BackendError) and not issubclass(backend.BackendError, NetsError)
    # the old bases stay, so code that catches them still does
    assert issubclass(CheckpointError, ValueError) and issubclass(DataError, ValueError)
    assert issubclass(backend.BackendError, RuntimeError) and issubclass(RunError, RuntimeError)
    assert issubclass(OutputError, OSError)
    assert (Diverged.exit_code, Interrupted.exit_code, RunError.exit_code) == (3, 130, 1)


def test_real_process_shows_the_traceback_of_a_bug_and_one_line_for_a_user_error(tmp_path):
    program = tmp_path / "tool.py"
    program.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(SCRIPTS)!r})\n"
        "import click\n"
        "from _cli import one_line_errors\n"
        "from nets.checkpoint import CheckpointError\n"
        "@click.command()\n"
        "@click.argument('kind')\n"
        "@one_line_errors\n"
        "def main(kind):\n"
        "    if kind == 'user':\n"
        "        raise CheckpointError('no checkpoint at x.npz; check the path.')\n"
        "    raise ValueError('an internal shape bug')\n"
        "main()\n")
    user = subprocess.run([sys.executable, str(program), "user"], capture_output=True, text=True, timeout=60)
    assert (user.returncode, user.stderr) == (1, "error: no checkpoint at x.npz; check the path.\n")
    bug = subprocess.run([sys.executable, str(program), "bug"], capture_output=True, text=True, timeout=60)
    assert bug.returncode == 1
    assert bug.stderr.startswith("Traceback (most recent call last):")
    assert bug.stderr.rstrip().endswith("ValueError: an internal shape bug") and "error:" not in bug.stderr
