"""The reference MLP and CNN (nets/nn/reference/models.py): the fast models' weights and results, state dicts that
move between reference, fast and PyTorch, and whole training runs with train.py --layers reference."""

import json
import subprocess
import sys

import numpy
import pytest

from conftest import torch_or_skip
from layer_checks import mnist_like_images, parity_tolerance, relative_error
from nets.nn.models import build_model
from nets.nn.reference.models import build_reference_model
from test_train_cli import ROOT, in_a_fresh_directory, one_line_error, run, tiny_data  # noqa: F401  (fixtures)

MODELS = ["mlp", "cnn"]


def batch(model, n=6, seed=1):
    rng = numpy.random.default_rng(seed)
    images = mnist_like_images(rng, n).reshape(n, *model.input_shape)
    return images, rng.integers(0, 10, size=n)


@pytest.mark.parametrize("name", MODELS)
def test_a_reference_model_starts_from_the_fast_weights_and_computes_the_same(backend, name):
    reference = build_reference_model(name, backend=backend, dtype="float64", rng=numpy.random.default_rng(0))
    fast = build_model(name, backend=backend, dtype="float64", rng=numpy.random.default_rng(0))
    assert reference.config() == fast.config() and reference.input_shape == fast.input_shape
    expected = fast.state_dict()
    assert list(reference.state_dict()) == list(expected)
    for key, value in reference.state_dict().items():
        numpy.testing.assert_array_equal(value, expected[key], err_msg=key)
    images, labels_host = batch(fast)
    x, labels = backend.asarray(images), backend.asarray(labels_host)
    loss, logits = reference.loss_and_gradients(x, labels)
    fast_loss, fast_logits = fast.loss_and_gradients(x, labels)
    assert relative_error(backend.to_numpy(loss), backend.to_numpy(fast_loss)) < 1e-12
    assert relative_error(backend.to_numpy(logits), backend.to_numpy(fast_logits)) < 1e-12
    gradients = fast.gradients()
    for key, value in reference.gradients().items():
        assert relative_error(backend.to_numpy(value), backend.to_numpy(gradients[key])) < 1e-10, key
    assert relative_error(backend.to_numpy(reference.predict(x)), backend.to_numpy(fast.predict(x))) < 1e-12


@pytest.mark.parametrize("name", MODELS)
def test_state_dicts_move_between_the_reference_the_fast_model_and_pytorch(backend, name):
    torch = torch_or_skip()
    from nets.baseline.models import build_torch_model, load_nets_params_into

    reference = build_reference_model(name, backend=backend, rng=numpy.random.default_rng(0))
    torch_model = build_torch_model(name)  # PyTorch's own initial weights, unlike ours
    reference.load_state_dict({key: tensor.detach().numpy() for key, tensor in torch_model.state_dict().items()})
    fast = build_model(name, backend=backend, rng=numpy.random.default_rng(5))
    fast.load_state_dict(reference.state_dict())
    back = build_torch_model(name)
    load_nets_params_into(back, fast.state_dict())
    images, _ = batch(fast)
    with torch.no_grad():
        expected = back(torch.from_numpy(images.astype(numpy.float32))).numpy()
        numpy.testing.assert_array_equal(expected, torch_model(torch.from_numpy(images.astype(numpy.float32))).numpy())
    for model in (reference, fast):
        logits = backend.to_numpy(model.predict(backend.asarray(images)))
        assert relative_error(logits, expected) < parity_tolerance("float32")


def final_parameters(path):
    with numpy.load(path) as arrays:
        return {key: arrays[key] for key in arrays.files if not key.startswith("meta/") and arrays[key].ndim}


@pytest.mark.parametrize("name", MODELS)
def test_a_reference_run_trains_like_the_fast_run_and_its_checkpoint_evaluates(tiny_data, tmp_path, name):
    common = ("--model", name, "--data-dir", tiny_data, "--epochs", 2, "--batch-size", 32)
    paths = {}
    for layers in ("fast", "reference"):
        paths[layers] = tmp_path / f"{layers}.npz"
        result = run(*common, "--layers", layers, "--save", paths[layers])
        assert result.exit_code == 0, result.output
        if layers == "reference":
            assert f"Training {name} (nets, reference layers) on cpu" in result.output
            assert f"({name}, nets reference, mnist, cpu" in result.output
    records = {layers: json.loads(path.with_suffix(".json").read_text()) for layers, path in paths.items()}
    assert records["reference"]["layers"] == "reference" and records["fast"]["layers"] == "fast"
    losses = [epoch["train_loss"] for epoch in records["reference"]["epochs"]]
    assert losses[1] < losses[0] < numpy.log(10) + 0.1  # it learns
    for ours, theirs in zip(records["reference"]["epochs"], records["fast"]["epochs"]):
        assert ours["train_loss"] == pytest.approx(theirs["train_loss"], rel=1e-5)
        assert ours["test_accuracy"] == theirs["test_accuracy"]
    fast = final_parameters(paths["fast"])
    for key, value in final_parameters(paths["reference"]).items():  # weights and Adam's state, float32 rounding
        assert relative_error(value, fast[key]) < 1e-3, key
    with numpy.load(paths["reference"]) as arrays:
        assert json.loads(str(arrays["meta/config"]))["layers"] == "reference"
    scored = subprocess.run([sys.executable, str(ROOT / "scripts" / "evaluate.py"), str(paths["reference"]),
                             "--data-dir", str(tiny_data)], capture_output=True, text=True, timeout=300)
    assert scored.returncode == 0, scored.stderr
    hits = round(records["reference"]["test_accuracy"] * 64)
    assert f"test accuracy: {hits / 64:.2%} ({hits}/64)" in scored.stdout


def test_a_reference_run_resumes_exactly_and_its_checkpoint_resumes_with_the_fast_layers(tiny_data, tmp_path):
    common = ("--model", "cnn", "--data-dir", tiny_data, "--epochs", 2, "--batch-size", 32, "--quiet")
    assert run(*common, "--layers", "reference", "--save", tmp_path / "whole.npz").exit_code == 0
    result = run(*common, "--layers", "reference", "--save", tmp_path / "cut.npz", "--stop-after-steps", 11)
    assert result.exit_code == 130, result.output
    assert run("--resume", tmp_path / "cut.npz", "--quiet").exit_code == 0  # the checkpoint's strategy goes on
    whole, cut = final_parameters(tmp_path / "whole.npz"), final_parameters(tmp_path / "cut.npz")
    for key, value in whole.items():
        numpy.testing.assert_array_equal(cut[key], value, err_msg=key)
    result = run(*common, "--layers", "reference", "--save", tmp_path / "switch.npz", "--stop-after-steps", 11)
    assert result.exit_code == 130, result.output
    assert run("--resume", tmp_path / "switch.npz", "--layers", "fast", "--quiet").exit_code == 0
    with numpy.load(tmp_path / "switch.npz") as arrays:
        assert json.loads(str(arrays["meta/config"]))["layers"] == "fast"
    for key, value in final_parameters(tmp_path / "switch.npz").items():
        assert relative_error(value, whole[key]) < 1e-3, key


def test_the_reference_on_the_stand_in_runs_every_step_eagerly(tiny_data):
    result = run("--model", "cnn", "--data-dir", tiny_data, "--epochs", 1, "--batch-size", 64, "--device", "standin",
                 "--layers", "reference", "--no-save")
    assert result.exit_code == 0, result.output
    assert "training step runs eager (the reference layers allocate what they return)" in result.output
    assert "(cnn, nets reference, mnist, standin" in result.output


@pytest.mark.parametrize("options, message", [
    (("--graph", "on"), "error: --graph on captures the nets' fast training step on a GPU, but here the reference "
                        "layers allocate what they return; leave out --graph (auto), or give --graph off."),
    (("--impl", "torch"), "error: --layers reference trains the nets' reference layers; --impl torch trains "
                          "PyTorch's own. Use --impl nets with it."),
])
def test_what_the_reference_cannot_do_is_one_line(tiny_data, options, message):
    result = run("--model", "mlp", "--data-dir", tiny_data, "--epochs", 1, "--layers", "reference", *options)
    assert one_line_error(result) == message
