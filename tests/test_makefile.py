"""The Makefile's set-up: PyTorch's CPU build through its own index when asked (make -n, nothing installed)."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def dry_run(tmp_path, *variables):
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    finished = subprocess.run(["make", "-n", "setup", f"VENV={tmp_path / 'venv'}", *variables], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
    assert finished.returncode == 0, finished.stderr
    return [line for line in finished.stdout.splitlines() if "pip install" in line and "\"torch==" in line]


def test_torch_index_installs_the_cpu_build_first(tmp_path):
    (line,) = dry_run(tmp_path, "TORCH_INDEX=https://download.pytorch.org/whl/cpu")
    assert line.endswith('pip install --quiet "torch==2.13.0" --index-url "https://download.pytorch.org/whl/cpu"')


def test_without_torch_index_torch_comes_from_pips_own_index(tmp_path):
    (line,) = dry_run(tmp_path)
    assert line.rstrip().endswith('pip install --quiet "torch==2.13.0"') and "--index-url" not in line
