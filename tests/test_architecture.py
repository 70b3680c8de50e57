"""What a model config describes without building the model (nets/nn/architecture.py): parameter shapes that
agree with the models built, configs read back off the shapes, and bad configs refused in one line."""

import numpy
import pytest

import backend as backend_module
from nets.nn.architecture import check_shapes, cnn_side, complete_config, config_from_shapes, parameter_shapes
from nets.nn.models import build_model

SMALL_MLP = {"name": "mlp", "sizes": [12, 8, 6, 4]}
SMALL_CNN = {"name": "cnn", "in_channels": 1, "channels": [3, 4], "hidden": 5, "classes": 4, "image_size": 12}
CONFIGS = [SMALL_MLP, {"name": "mlp", "sizes": [784, 128, 64, 10]}, {"name": "mlp", "sizes": [5, 3]}, "mlp",
           SMALL_CNN, {**SMALL_CNN, "image_size": 13}, {**SMALL_CNN, "in_channels": 3}, "cnn", {"name": "cnn"}]


@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_parameter_shapes_agree_with_the_models_built(config):
    model = build_model(config, backend=backend_module.get_backend("cpu"), rng=numpy.random.default_rng(0))
    shapes = {key: tuple(array.shape) for key, array in model.parameters().items()}
    assert parameter_shapes(config) == shapes
    assert list(parameter_shapes(config)) == list(shapes)  # state_dict order too
    assert model.config() == {**complete_config(config), "init": "he"}


@pytest.mark.parametrize("config", [SMALL_MLP, SMALL_CNN, "cnn", "mlp"], ids=str)
def test_a_config_is_read_back_off_its_parameter_shapes(config):
    assert config_from_shapes(parameter_shapes(config)) == complete_config(config)


def test_numpy_integers_are_sizes_too():
    config = complete_config({"name": "mlp", "sizes": list(numpy.array([784, 16, 10]))})
    assert config["sizes"] == [784, 16, 10] and all(type(size) is int for size in config["sizes"])
    model = build_model({**SMALL_CNN, "hidden": numpy.int32(5)}, backend=backend_module.get_backend("cpu"))
    assert model.config()["hidden"] == 5


def test_the_cnn_geometry():
    assert cnn_side(28) == 10 and cnn_side(12) == 2 and cnn_side(10) == 1
    with pytest.raises(ValueError, match="image_size 9 is too small"):
        cnn_side(9)


@pytest.mark.parametrize("config, message", [
    ({"name": "mlp", "sizes": [4, 0, 2]}, "an mlp size must be a whole number >= 1, got 0."),
    ({"name": "mlp", "sizes": [4, True]}, "an mlp size must be a whole number >= 1, got True."),
    ({**SMALL_CNN, "image_size": 7}, "image_size 7 is too small"),
    ({**SMALL_CNN, "depth": 3}, "unknown keys depth"),
    ({**SMALL_CNN, "channels": [3]}, "two numbers"),
    ({**SMALL_CNN, "init": "xavier"}, "init 'xavier'"),
    ({"name": "resnet"}, "unknown model 'resnet'"),
])
def test_bad_configs_are_refused_without_building_anything(config, message):
    with pytest.raises(ValueError, match=message):
        parameter_shapes(config)


def test_check_shapes_names_the_first_difference():
    expected = parameter_shapes(SMALL_MLP)
    with pytest.raises(ValueError, match="lack what an MLP needs: fc3.bias"):
        check_shapes({k: v for k, v in expected.items() if k != "fc3.bias"}, expected, "mlp")
    with pytest.raises(ValueError, match="have what an MLP does not: fc9.weight"):
        check_shapes({**expected, "fc9.weight": (2, 2)}, expected, "mlp")
    with pytest.raises(ValueError, match=r"fc2.weight has shape \(7, 8\), but an MLP of this size has \(6, 8\)"):
        check_shapes({**expected, "fc2.weight": (7, 8)}, expected, "mlp")
    with pytest.raises(ValueError, match="those of a CNN, not an MLP"):
        check_shapes(parameter_shapes(SMALL_CNN), expected, "mlp")
