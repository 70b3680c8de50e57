"""The house rules of nets/ (README, "Layout"): a few wings, arrows that point down only, torch imported by the
baseline and the bench alone, small files, and the training options written once."""

import ast
from dataclasses import FrozenInstanceError, fields
from pathlib import Path

import pytest

from nets.train.settings import Hyperparameters, RunOptions, hyper_overrides, resolve_settings

NETS = Path(__file__).resolve().parents[1] / "nets"
MAX_LINES = 400
# each wing builds only on the wings before it (and nets/outputs.py): the README's Layout, top to bottom
ORDER = ["data", "nn", "optim", "checkpoint", "report", "train", "baseline", "bench"]


def imports_of(path: Path) -> set:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_nets_is_a_few_wings_with_small_files():
    top = sorted(path.name for path in NETS.glob("*.py"))
    assert len(top) <= 8, top
    wings = [path for path in NETS.iterdir() if path.is_dir() and (path / "__init__.py").exists()]
    for wing in wings:  # each wing says in its docstring what it holds
        assert ast.get_docstring(ast.parse((wing / "__init__.py").read_text())), wing
    long = {str(path.relative_to(NETS)): count for path in NETS.rglob("*.py")
            if (count := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, long


@pytest.mark.parametrize("wing", ORDER)
def test_imports_point_down_only(wing):
    later = tuple(f"nets.{other}" for other in ORDER[ORDER.index(wing) + 1:])
    for path in (NETS / wing).rglob("*.py"):
        wrong = [name for name in imports_of(path) if name.startswith(later)]
        assert not wrong, (str(path), wrong)
    assert sorted(path.name for path in NETS.iterdir() if (path / "__init__.py").exists()) == sorted(ORDER)


def test_only_the_baseline_and_the_bench_import_torch():
    for path in NETS.rglob("*.py"):
        if path.relative_to(NETS).parts[0] in ("baseline", "bench"):
            continue
        assert not [name for name in imports_of(path) if name.split(".")[0] == "torch"], str(path)


def test_the_hyperparameter_options_are_the_hyperparameters():
    flagged = [spec.name for spec in fields(RunOptions) if spec.metadata["hyper"]]
    assert sorted(flagged) == sorted(spec.name for spec in fields(Hyperparameters))
    assert all(spec.metadata["help"] or spec.metadata["hidden"] for spec in fields(RunOptions))
    assert hyper_overrides(RunOptions(lr=0.1, epochs=2, seed=3)) == {"lr": 0.1, "epochs": 2}


def test_settings_do_not_change_once_resolved():
    settings = resolve_settings(RunOptions(model="mlp", epochs=2), None)
    assert (settings.model, settings.hyper.epochs, settings.hyper.optimizer) == ("mlp", 2, "adam")
    with pytest.raises(FrozenInstanceError):
        settings.dataset = "fashion-mnist"
    with pytest.raises(FrozenInstanceError):
        RunOptions().model = "cnn"
