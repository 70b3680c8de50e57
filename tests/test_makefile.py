"""The Makefile's set-up: PyTorch's CPU build through its own index when asked (make -n, nothing installed)."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def dry_run(tmp_path, *variables, target="setup"):
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    finished = subprocess.run(["make", "-n", target, f"VENV={tmp_path / 'venv'}", *variables], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
    assert finished.returncode == 0, finished.stderr
    if target != "setup":
        return [line for line in finished.stdout.splitlines() if "pip install" in line]
    return [line for line in finished.stdout.splitlines() if "pip install" in line and "\"torch==" in line]


def test_torch_index_installs_the_cpu_build_first(tmp_path):
    (line,) = dry_run(tmp_path, "TORCH_INDEX=https://download.pytorch.org/whl/cpu")
    assert line.endswith('pip install --quiet "torch==2.13.0" --index-url "https://download.pytorch.org/whl/cpu"')


def test_without_torch_index_torch_comes_from_pips_own_index(tmp_path):
    (line,) = dry_run(tmp_path)
    assert line.rstrip().endswith('pip install --quiet "torch==2.13.0"') and "--index-url" not in line


def test_make_train_installs_what_predict_and_plot_need_and_not_torch(tmp_path):
    lines = dry_run(tmp_path, target="setup-train")
    assert [line.split(" -m ", 1)[1] for line in lines] == ["pip install --quiet --upgrade pip",
                                                            'pip install --quiet -e ".[plot]"']
