"""predict.py on a dataset's own test images saved as PNG files answers as the model does on the images themselves.

A model is trained briefly here (an MLP, one epoch on 3,000 images: the agreement measures how pictures are
prepared, not how good the model is). 300 test images are saved twice: as 8-bit grey PNGs as they are, and as RGB
PNGs, dark on white (inverted) and scaled up 4x, as a picture a user would have. predict.py must give the model's own
top answer for at least 97% of each.

Fashion-MNIST: the real files (Debian's dataset-fashion-mnist), prepared as clothes. Digits: MNIST cannot be
downloaded everywhere, so digit_pictures.py draws a digits-like set and prepares it exactly as MNIST's digits are
(cropped to the ink, 20x20, centred by mass); a digit already so prepared must come back the same.
"""

import json
from pathlib import Path

import numpy
import pytest
from click.testing import CliRunner

import backend as backend_module
from digit_pictures import digit_set
from idx_files import write_idx
from nets.checkpoint import load_checkpoint, restore_model
from nets.data.datasets import DEBIAN_FASHION_MNIST_DIR, CLASS_NAMES, load_dataset
from nets.nn.inference import predict_classes
from test_scripts_eval_predict import load_script

Image = pytest.importorskip("PIL.Image", reason="Pillow is not installed; pip install -e .[plot]")

pytestmark = pytest.mark.slow
TRAIN, TEST = 3000, 300
AGREEMENT = 0.97


def fashion_mnist():
    try:
        data = load_dataset("fashion-mnist", DEBIAN_FASHION_MNIST_DIR, download=False)
    except Exception as error:  # DataNotFoundError: the files are not installed here
        pytest.skip(f"Fashion-MNIST is not in {DEBIAN_FASHION_MNIST_DIR} (apt-get install dataset-fashion-mnist): "
                    f"{str(error).splitlines()[0][:80]}")
    return data.train_images[:TRAIN], data.train_labels[:TRAIN], data.test_images[:TEST], data.test_labels[:TEST]


def digits():
    train_images, train_labels = digit_set(TRAIN, seed=0)
    test_images, test_labels = digit_set(TEST, seed=1)
    return train_images, train_labels, test_images, test_labels


def train_briefly(folder: Path, dataset: str, arrays) -> Path:
    """An MLP trained for one epoch on these arrays, written as the four IDX files of `dataset`; -> its checkpoint."""
    data = folder / dataset
    for name, array in zip(("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                            "t10k-labels-idx1-ubyte"), arrays):
        write_idx(data / name, array)
    checkpoint = folder / f"{dataset}.npz"
    trained = CliRunner().invoke(load_script("train").main, [
        "--model", "mlp", "--dataset", dataset, "--data-dir", str(data), "--epochs", "1", "--device", "cpu",
        "--save", str(checkpoint), "--quiet"])
    assert trained.exit_code == 0, trained.output
    return checkpoint


def save_pictures(folder: Path, images) -> dict:
    """Each image as an 8-bit grey PNG as it is, and as an RGB PNG dark on white, 4x the size."""
    folder.mkdir()
    saved = {"grey": [], "rgb on white, 4x": []}
    for index, image in enumerate(images):
        grey = folder / f"{index:03d}-grey.png"
        Image.fromarray(image).save(grey)
        large = folder / f"{index:03d}-rgb4x.png"
        Image.fromarray(255 - image).convert("RGB").resize((112, 112), Image.Resampling.NEAREST).save(large)
        saved["grey"].append(grey)
        saved["rgb on white, 4x"].append(large)
    return saved


def predicted_by_script(checkpoint: Path, paths: list, *options) -> dict:
    """predict.py's top answer for each path: {path: class name}."""
    result = CliRunner().invoke(load_script("predict").main, [str(checkpoint), *map(str, paths), "--top", "1",
                                                               "--device", "cpu", *options])
    assert result.exit_code == 0, result.output
    answers = {}
    for line in result.stdout.splitlines()[2:]:
        path, guess = line.rsplit(": ", 1)
        answers[path] = guess.rsplit(" ", 1)[0]
    return answers


@pytest.mark.parametrize("dataset", ["fashion-mnist", "mnist"], ids=["fashion-mnist", "digits"])
def test_predict_answers_as_the_model_does_on_the_images_themselves(dataset, tmp_path, record_property):
    arrays = fashion_mnist() if dataset == "fashion-mnist" else digits()
    checkpoint = train_briefly(tmp_path, dataset, arrays)
    test_images, test_labels = arrays[2], arrays[3]
    model = restore_model(load_checkpoint(checkpoint), backend_module.get_backend("cpu"))
    direct = predict_classes(model, test_images)
    assert (direct == test_labels).mean() > 0.5  # a model that answers: agreement with a constant would say nothing
    names = CLASS_NAMES[dataset]
    saved = save_pictures(tmp_path / "pictures", test_images)
    answers = predicted_by_script(checkpoint, saved["grey"] + saved["rgb on white, 4x"])
    agreement = {}
    for kind, paths in saved.items():
        agreement[kind] = numpy.mean([answers[str(path)] == names[k] for path, k in zip(paths, direct)])
        assert agreement[kind] >= AGREEMENT, (kind, agreement)
    record_property("agreement", json.dumps(agreement))
    print(f"{dataset}: direct accuracy {(direct == test_labels).mean():.1%}, predict.py agreement {agreement}")


def test_the_wrong_preparation_disagrees_so_the_agreement_measures_it(tmp_path):
    """The same pictures prepared as digits (what predict.py did for every model) disagree with a Fashion-MNIST
    model's own answers far more often: the test above would catch a preparation that is not the dataset's."""
    arrays = fashion_mnist()
    checkpoint = train_briefly(tmp_path, "fashion-mnist", arrays)
    model = restore_model(load_checkpoint(checkpoint), backend_module.get_backend("cpu"))
    direct = predict_classes(model, arrays[2])
    saved = save_pictures(tmp_path / "pictures", arrays[2])
    answers = predicted_by_script(checkpoint, saved["grey"], "--prepare", "digits")
    names = CLASS_NAMES["fashion-mnist"]
    agreement = numpy.mean([answers[str(path)] == names[k] for path, k in zip(saved["grey"], direct)])
    assert agreement < 0.9, agreement


def test_a_digit_prepared_as_mnists_comes_back_the_same(tmp_path):
    """A digit already prepared as MNIST's are, saved and prepared again, is the same picture to within the rounding
    of its faint edge: the preparation neither moves nor rescales a prepared digit."""
    from nets.data.digits import load_picture

    images, _ = digit_set(200, seed=2)
    differences = []
    for index, image in enumerate(images):
        path = tmp_path / f"{index}.png"
        Image.fromarray(image).save(path)
        again = load_picture(path, "digits")
        differences.append(numpy.abs(again - image / 255.0).mean())
    assert numpy.median(differences) < 0.02 and max(differences) < 0.06, (numpy.median(differences), max(differences))


def test_a_garment_of_fashion_mnist_comes_back_the_same(tmp_path):
    """A Fashion-MNIST test image, saved as an 8-bit grey PNG or as an RGB PNG on white at 4x, prepared as clothes
    is the very image for most of them: fitted to the frame, and placed as Fashion-MNIST places its items."""
    from nets.data.digits import load_picture

    images = fashion_mnist()[2][:100]
    saved = save_pictures(tmp_path / "pictures", images)
    for kind, paths in saved.items():
        same = [numpy.abs(load_picture(path, "clothes") - image / 255.0).max() < 0.01 for path, image in
                zip(paths, images)]
        assert numpy.mean(same) > 0.8, (kind, numpy.mean(same))
