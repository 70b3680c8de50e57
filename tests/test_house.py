"""The house rules of nets/ (README, "Layout"): a few wings, arrows that point down only, torch imported by the
baseline and the bench alone, small files, and the training options written once."""

import ast
import json
from dataclasses import FrozenInstanceError, fields
from pathlib import Path

import pytest

from nets.train.settings import Hyperparameters, RunOptions, RunSettings, hyperparameter_overrides, resolve_settings

ROOT = Path(__file__).resolve().parents[1]
NETS = ROOT / "nets"
MAX_LINES = 400
MAX_FUNCTION_LINES = 60
FAST_CODE = ("nets.nn.layers", "nets.nn.models", "nets.nn.losses", "nets.nn.parameters")
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
    flagged = [spec.name for spec in fields(RunOptions) if spec.metadata["hyperparameter"]]
    assert sorted(flagged) == sorted(spec.name for spec in fields(Hyperparameters))
    assert all(spec.metadata["help"] or spec.metadata["hidden"] for spec in fields(RunOptions))
    assert hyperparameter_overrides(RunOptions(lr=0.1, epochs=2, seed=3)) == {"lr": 0.1, "epochs": 2}


def test_settings_do_not_change_once_resolved():
    settings = resolve_settings(RunOptions(model="mlp", epochs=2), None)
    assert (settings.model, settings.hyperparameters.epochs, settings.hyperparameters.optimizer) == ("mlp", 2, "adam")
    with pytest.raises(FrozenInstanceError):
        settings.dataset = "fashion-mnist"
    with pytest.raises(FrozenInstanceError):
        RunOptions().model = "cnn"


def test_a_checkpoints_config_keeps_the_hyperparameters_under_hyper():
    """meta/config (RunSettings.as_dict) stores RunSettings.hyperparameters under "hyper", the key every checkpoint
    keeps them under, and from_dict reads them back from there."""
    settings = resolve_settings(RunOptions(model="cnn", lr=0.5), None)
    stored = json.loads(json.dumps(settings.as_dict()))
    assert "hyperparameters" not in stored and stored["hyper"]["lr"] == 0.5
    assert RunSettings.from_dict(stored) == settings


def test_no_source_file_anywhere_is_over_400_lines():
    files = [*ROOT.glob("backend/**/*.py"), *ROOT.glob("nets/**/*.py"), *ROOT.glob("scripts/*.py")]
    counts = {str(path.relative_to(ROOT)): len(path.read_text().splitlines()) for path in files}
    long = {name: count for name, count in counts.items() if count > MAX_LINES}
    assert len(files) > 50 and not long, long


def test_no_function_in_nets_is_over_60_lines():
    long = [f"{path.relative_to(ROOT)}:{node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for path in NETS.rglob("*.py") for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, long


def test_only_backend_imports_cupy():
    for path in [*ROOT.glob("nets/**/*.py"), *ROOT.glob("scripts/*.py")]:
        assert not [name for name in imports_of(path) if name.split(".")[0] in ("cupy", "cupyx", "cupy_backends")], \
            str(path)


def test_the_reference_imports_nothing_of_the_fast_code_it_judges():
    for path in (NETS / "nn" / "reference").rglob("*.py"):
        wrong = [name for name in imports_of(path) if name.startswith(FAST_CODE)]
        assert not wrong, (str(path), wrong)


def project_modules() -> dict:
    """{dotted module name: path} of backend/ and nets/."""
    modules = {}
    for path in [*ROOT.glob("backend/**/*.py"), *ROOT.glob("nets/**/*.py")]:
        parts = path.relative_to(ROOT).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imported_modules(name: str, path: Path, modules: dict) -> set:
    """The project modules `path` imports anywhere in it (function-level imports too), relative ones resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def test_no_import_circle_anywhere():
    modules = project_modules()
    edges = {name: sorted(imported_modules(name, path, modules)) for name, path in modules.items()}
    assert edges["nets.train.run"] and edges["backend.gemm"]  # the walk finds imports at all
    done, path = set(), []

    def visit(name):
        if name in path:
            raise AssertionError("import circle: " + " -> ".join(path[path.index(name):] + [name]))
        if name not in done:
            path.append(name)
            for target in edges[name]:
                visit(target)
            path.pop()
            done.add(name)

    for name in sorted(edges):
        visit(name)
