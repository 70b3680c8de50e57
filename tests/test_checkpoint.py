"""Checkpoints: exact round trips (parameters, optimizer, epoch, RNG, config), atomic writes,
one-line errors for every bad input, no pickles, and PyTorch state_dicts in and out."""

import datetime
import json
import os
import pickle
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy
import pytest

import backend as backend_module
import nets.checkpoint.format as format_module
import nets.checkpoint.record as record_module
from conftest import torch_or_skip
from crafted_files import (MEMORY_BOUND, members_of, npy_header, peak_of, stored, write_zip, zeros_deflate, zeros_npz,
                           zeros_of_layers)
from nets.baseline.checkpoint import (export_torch_state_dict, load_any_checkpoint, load_torch_state_dict,
                                      save_torch_state_dict)
from nets.checkpoint import CheckpointError, load_checkpoint, restore_model, restore_rng, save_checkpoint
from nets.nn.architecture import config_from_shapes
from nets.nn.models import build_model
from nets.optim import SGD, Adam

# Small versions of the two models, so every test runs in milliseconds.
SMALL = {
    "mlp": {"name": "mlp", "sizes": [12, 8, 6, 4]},
    "cnn": {"name": "cnn", "in_channels": 1, "channels": [3, 4], "hidden": 5, "classes": 4, "image_size": 12},
}


def small_model(name, backend, dtype="float64", seed=0):
    return build_model(SMALL[name], backend=backend, dtype=dtype, init="torch", rng=numpy.random.default_rng(seed))


def batches(name, dtype, count, seed=3):
    rng = numpy.random.default_rng(seed)
    shape = (5, 12) if name == "mlp" else (5, 1, 12, 12)
    return [(rng.random(shape).astype(dtype), rng.integers(0, 4, size=5)) for _ in range(count)]


def train(model, optimizer, batch_list):
    for x, labels in batch_list:
        model.loss_and_gradients(model.backend.asarray(x), model.backend.asarray(labels))
        optimizer.step(model.gradients())


def message_of(error_info) -> str:
    text = str(error_info.value)
    assert "\n" not in text, text
    return text


def says(error_info, *parts) -> bool:
    """The error is one line holding every part (the file, the field, the advice): what matters, not the wording."""
    text = message_of(error_info)
    return all(str(part) in text for part in parts)


def save(path, model, optimizer=None, rng=None, **meta):
    """A nets model (and its optimizer and shuffling generator) saved as train.py saves them."""
    return save_checkpoint(path, model.state_dict(), model.config(),
                           optimizer_state=None if optimizer is None else optimizer.state_dict(),
                           rng_state=None if rng is None else rng.bit_generator.state, **meta)


@pytest.fixture
def saved_mlp(tmp_path, backend):
    """An mlp checkpoint after 2 Adam steps, with epoch, RNG, config and metrics."""
    model = small_model("mlp", backend)
    optimizer = Adam(model.parameters(), lr=0.01)
    train(model, optimizer, batches("mlp", "float64", 2))
    path = tmp_path / "mlp.npz"
    save(path, model, optimizer, numpy.random.default_rng(7), epoch=2,
                    config={"lr": 0.01, "dataset": "synthetic"}, metrics=[{"epoch": 1, "loss": 1.5}])
    return path, model


# ---------------------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_round_trip_keeps_everything(tmp_path, backend, dtype, name):
    model = small_model(name, backend, dtype)
    optimizer = Adam(model.parameters(), lr=0.01, weight_decay=1e-3)
    train(model, optimizer, batches(name, dtype, 2))
    rng = numpy.random.default_rng(11)
    rng.random(3)
    epoch_rng_state = rng.bit_generator.state
    rng.random(5)
    config = {"optimizer": "adam", "lr": 0.01, "batch_size": 5, "dataset": {"name": "synthetic", "size": 10}}
    metrics = [{"epoch": 1, "test_accuracy": 0.5}]
    path = save(tmp_path / "run.npz", model, optimizer, rng, epoch=4, step_in_epoch=3,
                epoch_rng_state=epoch_rng_state, config=config, metrics=metrics)
    assert path == str(tmp_path / "run.npz") and os.listdir(tmp_path) == ["run.npz"]

    loaded = load_checkpoint(path)
    assert (loaded.model_name, loaded.dtype, loaded.epoch, loaded.step_in_epoch) == (name, dtype.name, 4, 3)
    assert loaded.model_config == model.config()
    assert loaded.config == config and loaded.metrics == metrics
    assert list(loaded.params) == list(model.parameters())
    for key, array in model.state_dict().items():
        assert loaded.params[key].dtype == dtype
        numpy.testing.assert_array_equal(loaded.params[key], array)
    assert loaded.optimizer_state["step"] == 2 and loaded.optimizer_state["name"] == "adam"
    for state_name, per_param in optimizer.state_dict()["state"].items():
        for key, array in per_param.items():
            numpy.testing.assert_array_equal(loaded.optimizer_state["state"][state_name][key], array)
    assert loaded.epoch_rng_state == epoch_rng_state

    restored_rng = numpy.random.default_rng(0)
    restore_rng(loaded, restored_rng)
    numpy.testing.assert_array_equal(restored_rng.random(4), rng.random(4))

    restored = restore_model(loaded, backend)
    assert restored.name == name and restored.dtype == dtype and restored.config() == model.config()
    for key, array in restored.parameters().items():
        assert type(array) is type(model.parameters()[key])  # on the backend's device
        numpy.testing.assert_array_equal(backend.to_numpy(array), model.state_dict()[key])


@pytest.mark.parametrize("make", [
    lambda params: Adam(params, lr=0.01, weight_decay=1e-3),
    lambda params: SGD(params, lr=0.05, momentum=0.9, nesterov=True),
])
def test_resuming_from_a_checkpoint_continues_bit_exactly(tmp_path, backend, dtype, make):
    steps = batches("mlp", dtype, 6)
    straight = small_model("mlp", backend, dtype)
    optimizer = make(straight.parameters())
    train(straight, optimizer, steps[:3])
    save(tmp_path / "half.npz", straight, optimizer, epoch=1)
    train(straight, optimizer, steps[3:])

    checkpoint = load_checkpoint(tmp_path / "half.npz")
    resumed = restore_model(checkpoint, backend)
    resumed_optimizer = make(resumed.parameters())
    resumed_optimizer.load_state_dict(checkpoint.optimizer_state)
    assert resumed_optimizer.step_count == 3
    train(resumed, resumed_optimizer, steps[3:])
    for key, array in straight.state_dict().items():
        numpy.testing.assert_array_equal(resumed.state_dict()[key], array)


def test_restore_model_converts_to_an_explicitly_asked_dtype(saved_mlp, backend):
    path, model = saved_mlp
    restored = restore_model(load_checkpoint(path), backend, dtype="float32")
    assert restored.dtype == numpy.float32
    numpy.testing.assert_allclose(restored.state_dict()["fc1.weight"], model.state_dict()["fc1.weight"], rtol=1e-7)


def test_restoring_a_model_leaves_the_backend_rng_alone(saved_mlp, backend):
    path, _ = saved_mlp
    before = backend.rng.bit_generator.state
    restore_model(load_checkpoint(path), backend)
    assert backend.rng.bit_generator.state == before


def test_a_model_config_that_does_not_fit_the_parameters_is_not_saved(tmp_path, backend):
    model = small_model("cnn", backend)
    with pytest.raises(CheckpointError) as info:
        save_checkpoint(tmp_path / "c.npz", model.state_dict(), {**model.config(), "hidden": 6})
    assert says(info, "fc1.weight", "(5, 16)", "(6, 16)")
    with pytest.raises(CheckpointError) as info:
        save_checkpoint(tmp_path / "c.npz", small_model("mlp", backend).state_dict(), model.config())
    assert says(info, "an MLP", "not a CNN")
    assert not os.listdir(tmp_path)


# ---------------------------------------------------------------------------------------------- the file


def test_the_file_is_plain_npz_without_pickles_and_parameters_use_torch_names(saved_mlp):
    path, model = saved_mlp
    with numpy.load(path, allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    assert all(array.dtype != object for array in arrays.values())
    parameter_keys = [key for key in arrays if "/" not in key]
    assert parameter_keys == list(model.parameters()) == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias",
                                                          "fc3.weight", "fc3.bias"]
    others = sorted(key for key in arrays if "/" in key)
    assert all(key.startswith(("meta/", "optim/")) for key in others)
    assert {"meta/format", "meta/version", "meta/model_config", "meta/epoch",
            "meta/config", "meta/metrics", "meta/rng_state", "optim/name", "optim/step",
            "optim/hyperparameters", "optim/exp_avg/fc1.weight", "optim/exp_avg_sq/fc3.bias"} <= set(others)
    assert str(arrays["meta/format"]) == "nets-checkpoint" and int(arrays["meta/version"]) == 3
    assert "meta/model" not in arrays and "meta/dtype" not in arrays  # the config and the parameters say both
    assert list(load_any_checkpoint(path).params) == parameter_keys


@pytest.mark.parametrize("older", [
    {"meta/version": numpy.array(1), "meta/model": numpy.array("mlp"), "meta/model_config": numpy.array("{}")},
    {"meta/version": numpy.array(2), "meta/model": numpy.array("mlp"), "meta/dtype": numpy.array("float64")},
    {"meta/version": numpy.array(2)},
    {"meta/version": None},  # no version at all: from before versions were written
])
def test_a_file_of_an_older_format_is_refused_in_one_line_saying_so(saved_mlp, older):
    path, _ = saved_mlp

    def as_older(arrays):
        for key, value in older.items():
            if value is None:
                del arrays[key]
            else:
                arrays[key] = value

    _rewrite(path, as_older)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    version = 0 if older["meta/version"] is None else int(older["meta/version"])
    assert says(info, path, f"format version {version}, an older format", "reads version 3", "train the model again")


@pytest.mark.parametrize("entry", ["meta/input_mean", "meta/model", "meta/dtype"])
def test_an_entry_no_version_3_file_has_is_not_read(saved_mlp, entry):
    path, _ = saved_mlp
    _rewrite(path, lambda arrays: arrays.update({entry: numpy.array(0.13 if entry == "meta/input_mean" else "mlp")}))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert says(info, path, f"an entry {entry}", "not a checkpoint this version reads")


# ---------------------------------------------------------------------------------------------- atomic writes


def _fail_partway(file, *args, **kwargs):
    file.write(b"PK\x03\x04 half a checkpoint")
    raise OSError("disk full")


@pytest.mark.parametrize("breakage", ["savez", "fsync", "replace"])
def test_a_failed_save_leaves_the_previous_checkpoint_intact(saved_mlp, backend, monkeypatch, breakage):
    path, model = saved_mlp
    before = path.read_bytes()
    if breakage == "savez":
        monkeypatch.setattr(format_module.numpy, "savez", _fail_partway)
    elif breakage == "fsync":
        monkeypatch.setattr(os, "fsync", lambda descriptor: (_ for _ in ()).throw(OSError("io error")))
    else:
        monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError("rename failed")))
    changed = small_model("mlp", backend, seed=99)
    with pytest.raises(OSError):
        save(path, changed, epoch=9)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(path.parent) == [path.name]  # no temporary file left behind
    assert load_checkpoint(path).epoch == 2


def test_a_save_replaces_the_previous_checkpoint(saved_mlp, backend):
    path, _ = saved_mlp
    save(path, small_model("mlp", backend, seed=5), epoch=3)
    assert load_checkpoint(path).epoch == 3 and load_checkpoint(path).optimizer_state is None
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~_umask()


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ---------------------------------------------------------------------------------------------- bad inputs


def _rewrite(path, mutate):
    """Rewrite an npz with mutate(arrays) applied, as a plain np.savez would."""
    with numpy.load(path, allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    mutate(arrays)
    numpy.savez(path, **arrays)


def test_a_missing_path_or_a_directory(tmp_path):
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path / "nowhere.npz")
    assert says(info, f"no checkpoint at {tmp_path / 'nowhere.npz'}", "check the path")
    with pytest.raises(CheckpointError) as info:
        load_any_checkpoint(tmp_path)
    assert says(info, tmp_path, "is not a file", "give the path of a .npz (or PyTorch .pt) checkpoint")


def test_an_unreadable_file_is_named_as_such(saved_mlp, monkeypatch):
    path, _ = saved_mlp

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    # as for a file without read permission (not root)
    monkeypatch.setattr(record_module, "open", refuse, raising=False)
    with pytest.raises(CheckpointError) as info:
        load_any_checkpoint(path)
    assert says(info, path, "cannot be read (Permission denied)", "check its permissions")


def test_not_an_npz(tmp_path):
    for name, content in (("notes.npz", b"hello, I am text\n"), ("empty.npz", b"")):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CheckpointError) as info:
            load_any_checkpoint(tmp_path / name)
        assert says(info, tmp_path / name, "is not an .npz checkpoint", "not a zip archive")
    numpy.save(tmp_path / "array.npy", numpy.zeros(3))
    with pytest.raises(CheckpointError, match="is not an .npz checkpoint"):
        load_checkpoint(tmp_path / "array.npy")


def test_a_truncated_checkpoint(saved_mlp):
    path, _ = saved_mlp
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as info:
        load_any_checkpoint(path)
    assert says(info, path, "is not an .npz checkpoint", "truncated")


def test_a_corrupt_member(saved_mlp):
    path, _ = saved_mlp
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        member = archive.getinfo("fc2.weight.npy")
    middle = member.header_offset + 30 + len(member.filename) + 128 + 8  # inside the array data
    data[middle] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert says(info, path, "is a corrupt .npz checkpoint", "CRC", "save it again")


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "pickled.npz"
    numpy.savez(path, **{"fc1.weight": numpy.array([{"evil": 1}], dtype=object)})
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert says(info, path, "pickled Python objects", "not loaded")


def test_missing_and_unexpected_parameters(saved_mlp, backend):
    path, _ = saved_mlp
    _rewrite(path, lambda arrays: arrays.pop("fc2.bias"))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert says(info, path, "meta/model_config", "lack", "fc2.bias", "save it again")

    _rewrite(path, lambda arrays: arrays.update({"fc2.bias": numpy.zeros(6), "fc9.weight": numpy.zeros((2, 2))}))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert says(info, path, "fc9.weight", "save it again")


def test_wrong_shape_names_both(saved_mlp):
    path, _ = saved_mlp
    _rewrite(path, lambda arrays: arrays.update({"fc2.weight": numpy.zeros((7, 8))}))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert says(info, path, "fc2.weight", "(7, 8)", "(6, 8)", "save it again")


def test_inconsistent_dtypes_in_the_file(saved_mlp):
    path, _ = saved_mlp
    _rewrite(path, lambda arrays: arrays.update({"fc1.bias": arrays["fc1.bias"].astype("float32")}))
    with pytest.raises(CheckpointError, match="mixes parameter dtypes"):
        load_checkpoint(path)


def test_a_checkpoint_of_the_other_model(tmp_path, backend):
    path = save(tmp_path / "cnn.npz", small_model("cnn", backend))
    with pytest.raises(CheckpointError) as info:
        restore_model(load_checkpoint(path), backend, model_name="mlp")
    assert says(info, "holds a CNN", "an MLP was asked for", "use an MLP checkpoint")
    assert "--model" not in message_of(info)  # evaluate.py and predict.py have no --model option
    with pytest.raises(ValueError) as info:
        small_model("mlp", backend).load_state_dict(load_checkpoint(path).params)
    assert says(info, "those of a CNN, not an MLP")


def test_a_newer_format_version(saved_mlp):
    path, _ = saved_mlp
    _rewrite(path, lambda arrays: arrays.update({"meta/version": numpy.array(4)}))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert says(info, path, "version 4", "reads up to 3", "update nets")


def test_rng_state_problems(tmp_path, saved_mlp, backend):
    path, model = saved_mlp
    bare = save(tmp_path / "bare.npz", model)
    assert load_checkpoint(bare).optimizer_state is None
    with pytest.raises(CheckpointError, match="holds no RNG state"):
        restore_rng(load_checkpoint(bare), numpy.random.default_rng())
    with pytest.raises(CheckpointError,
                       match="its meta/rng_state is a state of PCG64, but training shuffles with MT19937"):
        restore_rng(load_checkpoint(path), numpy.random.Generator(numpy.random.MT19937()))


def test_unstorable_config_is_refused(tmp_path, backend):
    with pytest.raises(CheckpointError) as info:
        save(tmp_path / "x.npz", small_model("mlp", backend), config={"callback": print})
    assert says(info, "config cannot be stored as JSON")
    assert not os.listdir(tmp_path)


def test_parameters_of_no_known_model(tmp_path):
    numpy.savez(tmp_path / "odd.npz", **{"encoder.weight": numpy.zeros((2, 2))})
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path / "odd.npz")
    assert says(info, tmp_path / "odd.npz", "cannot tell which model", "encoder.weight", "fc1.weight, ... (mlp)")


# ---------------------------------------------------------------------------------------------- PyTorch interop


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_a_bare_npz_of_parameters_loads_with_its_model_read_off_the_shapes(tmp_path, backend, name):
    for config in (SMALL[name], name):
        model = build_model(config, backend=backend)
        numpy.savez(tmp_path / "bare.npz", **model.state_dict())
        loaded = load_checkpoint(tmp_path / "bare.npz")
        expected = {key: value for key, value in model.config().items() if key != "init"}
        shapes = {k: v.shape for k, v in model.state_dict().items()}
        assert loaded.model_config == config_from_shapes(shapes) == expected
        assert loaded.optimizer_state is None and loaded.dataset is None


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_torch_state_dict_round_trip(tmp_path, backend, dtype, name):
    torch = torch_or_skip()
    model = small_model(name, backend, dtype)
    exported = export_torch_state_dict(model)
    assert list(exported) == list(model.parameters())
    for key, tensor in exported.items():
        assert isinstance(tensor, torch.Tensor) and tensor.dtype == getattr(torch, dtype.name)
        numpy.testing.assert_array_equal(tensor.numpy(), model.state_dict()[key])
    exported["fc1.weight"].zero_()  # a copy: the model is untouched
    assert numpy.any(model.state_dict()["fc1.weight"] != 0)

    path = save_torch_state_dict(tmp_path / f"{name}.pt", model)
    assert os.listdir(tmp_path) == [f"{name}.pt"]
    checkpoint = load_any_checkpoint(path)
    assert checkpoint.source == "torch" and checkpoint.model_name == name and checkpoint.dtype == dtype.name
    assert checkpoint.optimizer_state is None and checkpoint.epoch == 0
    restored = restore_model(checkpoint, backend)
    assert restored.config()["name"] == name
    for key, array in model.state_dict().items():
        numpy.testing.assert_array_equal(restored.state_dict()[key], array)


def test_load_torch_state_dict_accepts_wrappers_and_module_prefixes(tmp_path, backend):
    torch = torch_or_skip()
    model = small_model("mlp", backend)
    wrapped = {"epoch": 3, "model_state_dict": {f"module.{k}": v for k, v in export_torch_state_dict(model).items()}}
    torch.save(wrapped, tmp_path / "wrapped.pt")
    params = load_torch_state_dict(tmp_path / "wrapped.pt")
    assert list(params) == list(model.parameters())
    assert all(type(array) is numpy.ndarray for array in params.values())
    assert list(load_torch_state_dict(export_torch_state_dict(model))) == list(model.parameters())


def test_bad_torch_files(tmp_path):
    torch = torch_or_skip()
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    with pytest.raises(CheckpointError) as info:
        load_any_checkpoint(tmp_path / "tensor.pt")
    assert says(info, tmp_path / "tensor.pt", "holds a Tensor", "not a state_dict")
    torch.save({"fc1.weight": torch.zeros(2, 2), "note": "hi"}, tmp_path / "note.pt")
    with pytest.raises(CheckpointError) as info:
        load_any_checkpoint(tmp_path / "note.pt")
    assert says(info, tmp_path / "note.pt", "entry note is a str", "not a tensor")
    (tmp_path / "broken.pt").write_bytes(b"\x80\x02 not really a pickle")
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    torch.save({"fc1.weight": torch.zeros(2, 2), "when": datetime.date(2024, 1, 1)}, tmp_path / "objects.pt")
    torch.save({"fc1.weight": torch.empty(2, 2, device="meta")}, tmp_path / "meta.pt")
    with (tmp_path / "pickle.pt").open("wb") as file:
        pickle.dump({"fc1.weight": [1.0, 2.0]}, file, protocol=4)
    expected = {
        "broken.pt": ("cannot be read as a PyTorch file (damaged, truncated, or another kind of file; a pickle that "
                      "torch.save does not write)"),
        "pickle.pt": "cannot be read as a PyTorch file",
        "list.pt": "holds a list, not a state_dict",
        "objects.pt": "holds pickled Python objects besides tensors (datetime.date), which are not loaded",
        "meta.pt": "parameter fc1.weight is a meta-device tensor, which has a shape but no values",
    }
    for name, part in expected.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(CheckpointError) as info:
                load_any_checkpoint(tmp_path / name)
        assert says(info, tmp_path / name, part)
        assert "a PyTorch state_dict" not in message_of(info)
        assert "weights_only" not in message_of(info) and not caught, (name, [str(w.message) for w in caught])


def test_load_any_checkpoint_reads_nets_checkpoints_too(saved_mlp):
    path, model = saved_mlp
    checkpoint = load_any_checkpoint(path)
    assert checkpoint.source == "npz" and checkpoint.epoch == 2 and checkpoint.model_config == model.config()


# -------------------------------------------------------------------------------------------- metadata, checked on load


def _set(arrays, key, value):
    arrays[key] = numpy.array(value)


def _set_json(arrays, key, mutate):
    value = json.loads(str(arrays[key][()]))
    arrays[key] = numpy.array(json.dumps(mutate(value)))


@pytest.mark.parametrize("mutate, field", [
    (lambda a: _set(a, "meta/epoch", -1), "meta/epoch = -1"),
    (lambda a: _set(a, "meta/step_in_epoch", 1), "has no meta/epoch_rng_state"),
    (lambda a: _set(a, "meta/rng_state", json.dumps({"bit_generator": "PCG64", "state": "garbage"})),
     "unusable meta/rng_state"),
    (lambda a: _set(a, "meta/rng_state", "[1, 2]"), "meta/rng_state that is not a numpy random generator state"),
    (lambda a: _set(a, "meta/epoch_rng_state", json.dumps({"bit_generator": "Mersenne"})), "meta/epoch_rng_state"),
    (lambda a: _set_json(a, "optim/hyperparameters", lambda h: {**h, "betas": [0.9, 1.5]}),
     "optim/hyperparameters betas[1] = 1.5"),
    (lambda a: _set_json(a, "optim/hyperparameters", lambda h: {**h, "lr": float("nan")}),
     "optim/hyperparameters lr = nan"),
    (lambda a: _set_json(a, "optim/hyperparameters", lambda h: {**h, "lr": -0.1}), "optim/hyperparameters lr = -0.1"),
    (lambda a: _set_json(a, "optim/hyperparameters", lambda h: {**h, "weight_decay": float("inf")}),
     "optim/hyperparameters weight_decay = inf"),
    (lambda a: _set_json(a, "optim/hyperparameters", lambda h: {**h, "momentum": 0.9}),
     "optim/hyperparameters that adam cannot use (adam has no hyperparameter momentum)"),
    (lambda a: _set(a, "optim/name", "rmsprop"), "optim/name = 'rmsprop'"),
    (lambda a: _set(a, "optim/step", -3), "optim/step = -3"),
    (lambda a: a.update({"optim/exp_avg/fc9.weight": numpy.zeros((2, 2))}), "no parameter fc9.weight"),
    (lambda a: a.update({"optim/exp_avg/fc1.weight": numpy.zeros((2, 2))}), "optim/exp_avg/fc1.weight of shape (2, 2)"),
    (lambda a: a.update({"optim/momentum_buffer/fc1.weight": a["fc1.weight"]}), "optim/momentum_buffer/..."),
    (lambda a: _set_json(a, "meta/model_config", lambda c: {**c, "init": "xavier"}), "init 'xavier'"),
    (lambda a: _set_json(a, "meta/model_config", lambda c: {**c, "name": "cnn"}),
     "meta/model_config: the cnn config has unknown keys sizes"),
    (lambda a: _set(a, "meta/model_config", json.dumps({"name": "cnn"})), "the parameters are those of an MLP"),
    (lambda a: _set(a, "meta/version", "one"), "meta/version of shape () and dtype <U3"),
    (lambda a: _set(a, "meta/config", "[1]"), "meta/config = [1]"),
    (lambda a: a.update({"meta/notes": numpy.array("hi")}), "an entry meta/notes"),
])
def test_every_metadata_field_is_checked_on_load(saved_mlp, mutate, field):
    path, _ = saved_mlp
    _rewrite(path, mutate)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert field in message_of(info) and str(path) in message_of(info)


def test_a_member_that_is_not_an_array_is_refused(saved_mlp):
    path, _ = saved_mlp
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("notes.txt", b"trained on a Tuesday")
    with pytest.raises(CheckpointError) as info:
        load_any_checkpoint(path)
    assert says(info, path, "'notes.txt'", "not a numpy array", "save it again")


@pytest.mark.parametrize("where", ["fc2.weight", "optim/exp_avg/fc1.weight"])
def test_nan_or_infinite_weights_are_refused(saved_mlp, where):
    path, _ = saved_mlp

    def poison(arrays):
        arrays[where] = arrays[where].copy()
        arrays[where][0, :2] = [numpy.nan, numpy.inf]

    _rewrite(path, poison)
    if where.startswith("optim/"):  # optimizer buffers are not weights; they load (and a NaN would show as a NaN loss)
        load_checkpoint(path)
        return
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert says(info, path, "parameter fc2.weight holds 2 NaN or infinite values", "use an earlier checkpoint")


def test_nan_weights_in_a_torch_state_dict_are_refused(tmp_path, backend):
    torch = torch_or_skip()
    state = export_torch_state_dict(small_model("mlp", backend))
    state["fc1.bias"][0] = float("nan")
    torch.save(state, tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match="parameter fc1.bias holds 1 NaN or infinite value; the model diverged"):
        load_any_checkpoint(tmp_path / "nan.pt")


def test_a_torch_file_given_as_npz_checkpoint_says_what_it_is(tmp_path, backend):
    torch_or_skip()
    path = save_torch_state_dict(tmp_path / "m.pt", small_model("mlp", backend))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert says(info, path, "is a PyTorch file", "not an .npz checkpoint")


# ---------------------------------------------------------------------------------------------- small files, big claims
# Each crafted file is a few MB at most but claims a model or an entry of a gigabyte or more (crafted_files.py).


def _cpu_mlp_checkpoint(path):
    import backend as backend_module

    model = small_model("mlp", backend_module.get_backend("cpu"))
    return save(path, model, Adam(model.parameters(), lr=0.01), numpy.random.default_rng(0),
                config={"dataset": "mnist"})


@pytest.mark.parametrize("declared", [2**30, 60 * 2**20], ids=["1GiB", "60MiB"])
def test_a_small_member_declaring_much_data_is_refused_before_its_data_is_read(tmp_path, declared):
    """fc1.weight swapped for a member of zeros deflated to at most 1 MiB: 1 GiB is refused as a bomb at once; 60 MiB
    (under the bomb threshold) by its shape, read from the header, before any of its data is inflated."""
    path = Path(_cpu_mlp_checkpoint(tmp_path / "bomb.npz"))
    members = members_of(path)
    header = npy_header((declared // 4,), "<f4")
    stream, crc = zeros_deflate(header, declared)
    members["fc1.weight.npy"] = (stream, crc, len(header) + declared)
    write_zip(path, members)
    assert path.stat().st_size < 2 * 2**20
    expected = {2**30: (path, "entry fc1.weight declares 1.0 GiB of data in 1.0 MiB", "it was not loaded"),
                60 * 2**20: (path, "meta/model_config", "fc1.weight has shape (15728640,)", "(8, 12)",
                             "save it again")}[declared]

    def load():
        with pytest.raises(CheckpointError) as info:
            load_any_checkpoint(path)
        assert says(info, *expected)

    assert peak_of(load) < MEMORY_BOUND


def test_a_consistent_gibibyte_model_in_a_tiny_file_is_refused_as_a_bomb(tmp_path):
    """A bare npz whose shapes all agree (an MLP 1024-262144-10) but whose 1 GiB of weights deflate to 1 MiB."""
    path = zeros_npz(tmp_path / "bare.npz", {"fc1.weight": (2**18, 1024), "fc1.bias": (2**18,),
                                             "fc2.weight": (10, 2**18), "fc2.bias": (10,)})

    def load():
        with pytest.raises(CheckpointError) as info:
            load_any_checkpoint(path)
        assert says(info, path, "entry fc1.weight declares 1.0 GiB of data", "it was not loaded")

    assert peak_of(load) < MEMORY_BOUND


def test_many_members_each_under_the_bound_are_refused_together(tmp_path):
    """14 zero layers of 4000x4000 (61 MiB each, under the per-member bound), 0.8 MiB in all: the file's total."""
    path = zeros_of_layers(tmp_path / "layers.npz")
    assert path.stat().st_size < 2**20

    def load():
        with pytest.raises(CheckpointError) as info:
            load_any_checkpoint(path)
        assert says(info, path, "its 30 entries together declare 854.9 MiB of data in 868.4 KiB of compressed bytes",
                    "it was not loaded")

    assert peak_of(load) < MEMORY_BOUND


def test_a_pytorch_file_whose_storage_inflates_is_refused_unread(tmp_path):
    """A .pt whose one storage is 1 GiB of zeros deflated to 1 MiB: refused from the zip directory, before torch reads
    it (torch's memory is not traced by tracemalloc, so the process's peak resident memory is measured)."""
    torch = torch_or_skip()
    small = tmp_path / "small.pt"
    torch.save({"fc1.weight": torch.zeros(4)}, small)
    members = members_of(small)
    storage = next(name for name in members if name.endswith("/data/0"))
    members[storage] = (*zeros_deflate(b"", 2**30), 2**30)
    path = write_zip(tmp_path / "bomb.pt", members)
    program = ("import sys, torch\n"
               "from nets.baseline.checkpoint import load_any_checkpoint\n"
               "def peak(): return next(int(l.split()[1]) for l in open('/proc/self/status') "
               "if l.startswith('VmHWM'))\n"
               "before = peak()\n"
               "try:\n    load_any_checkpoint(sys.argv[1])\nexcept Exception as error:\n    print(error)\n"
               "print((peak() - before) * 1024)\n")
    result = subprocess.run([sys.executable, "-c", program, str(path)], capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).resolve().parents[1])
    message, grown = result.stdout.strip().splitlines()
    assert f"{path}: entry {storage} declares 1.0 GiB of data in 1.0 MiB of compressed bytes" in message
    assert int(grown) < MEMORY_BOUND, result.stdout
    assert result.stderr == ""


def test_a_big_endian_checkpoint_loads_in_the_machines_byte_order(saved_mlp):
    path, model = saved_mlp
    _rewrite(path, lambda arrays: arrays.update({key: value.astype(value.dtype.newbyteorder(">"))
                                                 for key, value in arrays.items() if value.dtype.kind == "f"}))
    checkpoint = load_checkpoint(path)
    for name, array in model.state_dict().items():
        assert checkpoint.params[name].dtype.isnative and numpy.array_equal(checkpoint.params[name], array)
    assert all(buffer.dtype.isnative for state in checkpoint.optimizer_state["state"].values()
               for buffer in state.values())


@pytest.mark.parametrize("hidden", [30_000, 10**9])
def test_a_model_config_that_disagrees_with_the_stored_shapes_is_refused_before_building(tmp_path, hidden):
    import backend as backend_module

    path = save(tmp_path / "cnn.npz", build_model("cnn", backend=backend_module.get_backend("cpu")))
    _rewrite(path, lambda arrays: _set_json(arrays, "meta/model_config", lambda c: {**c, "hidden": hidden}))

    def load():
        with pytest.raises(CheckpointError) as info:
            restore_model(load_any_checkpoint(path), backend_module.get_backend("cpu"))
        assert says(info, path, "meta/model_config", "fc1.weight has shape (48, 3200)", f"({hidden}, 3200)",
                    "save it again")

    assert peak_of(load) < MEMORY_BOUND


def test_a_member_whose_header_disagrees_with_its_size_is_refused(saved_mlp):
    path, _ = saved_mlp
    members = members_of(path)
    data = npy_header((8, 12), "<f8") + bytes(8 * 12 * 8 - 16)  # 16 bytes short
    members["fc1.weight.npy"] = stored(data)
    write_zip(path, members)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert says(info, path, "entry fc1.weight declares 768 bytes", "holds 752 bytes", "save it again")


# ---------------------------------------------------------------------------------------------- dataset and classes


FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


@pytest.fixture
def saved_fashion(tmp_path):
    model = build_model("mlp", backend=backend_module.get_backend("cpu"), rng=numpy.random.default_rng(0))
    path = tmp_path / "fashion.npz"
    save(path, model, config={"dataset": "fashion-mnist"}, dataset="fashion-mnist")
    return path


def test_a_checkpoint_carries_its_dataset_and_class_names(saved_fashion):
    with numpy.load(saved_fashion, allow_pickle=False) as arrays:
        assert str(arrays["meta/dataset"]) == "fashion-mnist" and int(arrays["meta/version"]) == 3
        assert json.loads(str(arrays["meta/class_names"])) == FASHION
    loaded = load_checkpoint(saved_fashion)
    assert (loaded.dataset, loaded.class_names) == ("fashion-mnist", FASHION)


@pytest.mark.parametrize("config, dataset", [({"dataset": "fashion-mnist"}, "fashion-mnist"),
                                             ({"dataset": "synthetic"}, None), ({}, None)])
def test_a_checkpoint_saved_without_meta_dataset_names_the_dataset_of_its_config(saved_fashion, config, dataset):
    """save_checkpoint without dataset=: the dataset, when there is one, is the one meta/config names."""
    def without_dataset(arrays):
        del arrays["meta/dataset"], arrays["meta/class_names"]
        arrays["meta/config"] = numpy.array(json.dumps(config))

    _rewrite(saved_fashion, without_dataset)
    loaded = load_checkpoint(saved_fashion)
    assert loaded.dataset == dataset
    assert loaded.class_names == (FASHION if dataset else None)


@pytest.mark.parametrize("mutate, field", [
    (lambda a: _set(a, "meta/dataset", "cifar10"), "meta/dataset = 'cifar10'; it must be one of mnist, fashion-mnist"),
    (lambda a: _set(a, "meta/dataset", "mnist"), "meta/dataset = 'mnist' but meta/config says 'fashion-mnist'"),
    (lambda a: _set(a, "meta/class_names", json.dumps([str(k) for k in range(10)])),
     "meta/class_names that are not fashion-mnist's classes (T-shirt/top, Trouser,"),
    (lambda a: _set(a, "meta/class_names", json.dumps(FASHION[::-1])), "meta/class_names that are not"),
    (lambda a: _set(a, "meta/class_names", "[T-shirt"), "unreadable meta/class_names entry"),
    (lambda a: a.pop("meta/dataset"), "meta/class_names but no meta/dataset"),
    (lambda a: _set(a, "meta/dataset", 3), "meta/dataset of shape () and dtype int64"),
])
def test_the_dataset_and_class_names_are_checked_on_load(saved_fashion, mutate, field):
    _rewrite(saved_fashion, mutate)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(saved_fashion)
    assert field in message_of(info) and str(saved_fashion) in message_of(info)


def test_class_names_must_fit_the_models_outputs(tmp_path):
    model = build_model({"name": "mlp", "sizes": [784, 8, 5]}, backend=backend_module.get_backend("cpu"))
    with pytest.raises(CheckpointError, match="mnist has 10 classes, but the model has 5 outputs"):
        save(tmp_path / "five.npz", model, dataset="mnist")
    with pytest.raises(CheckpointError, match="dataset 'cifar10' is not one of mnist, fashion-mnist"):
        save(tmp_path / "c.npz", model, dataset="cifar10")
    save(tmp_path / "five.npz", model)
    _rewrite(tmp_path / "five.npz", lambda a: _set(a, "meta/dataset", "mnist"))
    with pytest.raises(CheckpointError, match="has meta/dataset 'mnist', whose 10 classes do not fit a model with 5 "):
        load_checkpoint(tmp_path / "five.npz")
