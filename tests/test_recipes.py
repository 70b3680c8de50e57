"""Recipes, overrides and learning-rate schedules."""

import pytest

from nets.data.augment import resolve as augmentation_for
from nets.train.settings import RECIPES, resolve_hyperparameters
from nets.optim.schedules import learning_rate, one_cycle_lr


def test_notebook_recipe_is_the_notebook():
    mlp, cnn = RECIPES["notebook"]["mlp"], RECIPES["notebook"]["cnn"]
    assert resolve_hyperparameters("notebook", "mlp") == mlp
    with pytest.raises(ValueError, match="unknown recipe 'seed'; choose one of default, notebook"):
        resolve_hyperparameters("seed", "mlp")
    assert (mlp.optimizer, mlp.lr, mlp.batch_size, mlp.epochs, mlp.init) == ("sgd", 0.01, 1, 5, "he")
    assert (cnn.optimizer, cnn.lr, cnn.batch_size, cnn.epochs, cnn.init) == ("adam", 0.01, 32, 5, "he")


def test_overrides_win_and_none_means_not_given():
    hyperparameters = resolve_hyperparameters("default", "cnn", lr=0.1, epochs=None, batch_size=7)
    assert (hyperparameters.lr, hyperparameters.batch_size, hyperparameters.epochs) == (
        0.1, 7, RECIPES["default"]["cnn"].epochs)


@pytest.mark.parametrize("bad", [{"recipe": "fast"}, {"model": "resnet"}])
def test_unknown_recipe_or_model_is_a_clear_error(bad):
    args = {"recipe": "default", "model": "cnn", **bad}
    with pytest.raises(ValueError, match="unknown"):
        resolve_hyperparameters(args["recipe"], args["model"])


def test_auto_augmentation_shifts_digits_and_flips_clothes_for_the_cnn():
    assert augmentation_for("auto", "fashion-mnist", "cnn") == "flip+shift:1"
    assert augmentation_for("auto", "fashion-mnist", "mlp") == "none"
    assert augmentation_for("auto", "mnist", "cnn") == augmentation_for("auto", "mnist", "mlp") == "shift:2"
    assert augmentation_for("none", "fashion-mnist", "cnn") == "none"
    assert augmentation_for("flip", "mnist", "mlp") == "flip"
    assert RECIPES["default"]["mlp"].augment == RECIPES["default"]["cnn"].augment == "auto"


def test_one_cycle_matches_torch_one_cycle_lr():
    torch = pytest.importorskip("torch", reason="torch is not installed; pip install -e .[test]")
    total = 57
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([parameter], lr=3e-3)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=total, cycle_momentum=False)
    for step in range(total + 1):  # OneCycleLR still answers at step == total_steps
        assert one_cycle_lr(3e-3, step, total) == pytest.approx(optimizer.param_groups[0]["lr"], rel=1e-12)
        optimizer.step()
        if step < total:
            scheduler.step()


def test_one_cycle_past_its_total_steps_raises_as_torch_does():
    torch = pytest.importorskip("torch", reason="torch is not installed; pip install -e .[test]")
    total = 5
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=total, cycle_momentum=False)
    for _ in range(total):
        optimizer.step()
        scheduler.step()
    optimizer.step()
    with pytest.raises(ValueError, match="Tried to step 6 times"):
        scheduler.step()
    with pytest.raises(ValueError, match=r"step 6 is outside the one-cycle schedule of 5 steps \(0..5\)"):
        one_cycle_lr(0.1, total + 1, total)
    with pytest.raises(ValueError, match="step -1 is outside"):
        one_cycle_lr(0.1, -1, total)
    with pytest.raises(ValueError, match="total_steps must be a whole number >= 1, got 0"):
        learning_rate("onecycle", 0.1, 0, 0)


def test_constant_schedule_and_unknown_schedule():
    assert learning_rate("constant", 0.5, 99, 100) == 0.5
    with pytest.raises(ValueError, match="unknown schedule"):
        learning_rate("cosine", 0.5, 0, 100)
