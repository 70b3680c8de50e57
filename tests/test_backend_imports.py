"""Every import of one backend module by another is at the top of the file, where a circle could not hide (the
circles themselves, in backend/ and everywhere else, are tests/test_house.py's)."""

import ast
from pathlib import Path

BACKEND = Path(__file__).resolve().parents[1] / "backend"


def module_name(path: Path) -> str:
    parts = path.relative_to(BACKEND.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in BACKEND.rglob("*.py")}


def imported(path: Path):
    """(backend module imported, at the top of the file or not) for every import in `path`, nested ones included."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    top = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1 if node.level else 0):
                base = base.rpartition(".")[0]
            base = (f"{base}.{node.module}" if node.module else base) if node.level else node.module
            submodules = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES]
            targets = submodules if len(submodules) == len(node.names) else [base, *submodules]
        else:
            continue
        for target in targets:
            if target in MODULES:
                yield target, id(node) in top


def test_every_import_of_a_backend_module_is_at_the_top_of_its_file():
    nested = [(name, target) for name, path in MODULES.items() for target, at_top in imported(path) if not at_top]
    assert not nested, nested
