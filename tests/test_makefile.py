"""The Makefile's set-up, as `make -n` prints it (nothing installed): PyTorch's CPU build where no NVIDIA GPU is
found (no nvidia-smi, or nvidia-smi lists no GPU), the CUDA build from the public index where one is, TORCH_INDEX
over both, one line saying which; `make train` without torch; `make test-quick` without the slow cases."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
FAKE_NVIDIA_SMI = {
    "gpu": 'echo "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-2b3c4d5e-0000-0000-0000-000000000000)"',
    "no gpu": 'echo "No devices were found"; exit 6',
}


def path_without_nvidia_smi() -> str:
    return os.pathsep.join(folder for folder in os.environ.get("PATH", "").split(os.pathsep)
                           if folder and not os.path.exists(os.path.join(folder, "nvidia-smi")))


def dry_run(tmp_path, *variables, target="setup", nvidia_smi=None):
    """The lines `make -n TARGET` prints, on a PATH whose nvidia-smi is a fake one that finds `nvidia_smi` ("gpu",
    "no gpu"), or that has none (None)."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    path = path_without_nvidia_smi()
    if nvidia_smi is not None:
        fake = tmp_path / "bin" / "nvidia-smi"
        fake.parent.mkdir(exist_ok=True)
        fake.write_text(f"#!/bin/sh\n{FAKE_NVIDIA_SMI[nvidia_smi]}\n")
        fake.chmod(0o755)
        path = f"{fake.parent}{os.pathsep}{path}"
    inherited = ("TORCH_INDEX", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")
    env = {key: value for key, value in os.environ.items() if key not in inherited}
    # Run from inside `make test`, a sub-make would print "Entering/Leaving directory" lines around its own.
    command = ["make", "-n", "--no-print-directory", target, f"VENV={tmp_path / 'venv'}", *variables]
    finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60, env={**env, "PATH": path})
    assert finished.returncode == 0, finished.stderr
    return finished.stdout.splitlines()


def torch_lines(lines):
    """(the line that says which torch, the pip line that installs it)."""
    (said,) = [line for line in lines if line.startswith('echo "Installing torch')]
    (pip,) = [line for line in lines if "pip install" in line and '"torch==' in line]
    return said, pip


@pytest.mark.parametrize("nvidia_smi, why", [(None, "there is no nvidia-smi here"),
                                             ("no gpu", "nvidia-smi lists no GPU")])
def test_without_an_nvidia_gpu_make_test_takes_the_cpu_build_and_says_so(tmp_path, nvidia_smi, why):
    said, pip = torch_lines(dry_run(tmp_path, nvidia_smi=nvidia_smi))
    assert pip.endswith(f'pip install --quiet "torch==2.13.0" --index-url "{CPU_INDEX}"')
    assert said == f'echo "Installing torch==2.13.0: the CPU build from {CPU_INDEX} (190 MB), as {why}"'


def test_with_an_nvidia_gpu_make_test_takes_the_cuda_build_from_the_public_index(tmp_path):
    said, pip = torch_lines(dry_run(tmp_path, nvidia_smi="gpu"))
    assert pip.rstrip().endswith('pip install --quiet "torch==2.13.0"') and "--index-url" not in pip
    assert said == ('echo "Installing torch==2.13.0: the CUDA build from the public index (about 2.6 GB), as '
                    'nvidia-smi lists an NVIDIA GPU"')


@pytest.mark.parametrize("nvidia_smi", [None, "gpu"])
def test_torch_index_chooses_over_what_nvidia_smi_finds(tmp_path, nvidia_smi):
    said, pip = torch_lines(dry_run(tmp_path, f"TORCH_INDEX={CPU_INDEX}", nvidia_smi=nvidia_smi))
    assert pip.endswith(f'pip install --quiet "torch==2.13.0" --index-url "{CPU_INDEX}"')
    assert said == f'echo "Installing torch==2.13.0: from {CPU_INDEX}, as TORCH_INDEX says"'
    said, pip = torch_lines(dry_run(tmp_path, "TORCH_INDEX=", nvidia_smi=nvidia_smi))  # empty: the public index
    assert "--index-url" not in pip
    assert said == 'echo "Installing torch==2.13.0: from the public index, as TORCH_INDEX says"'


def test_make_train_installs_what_predict_and_plot_need_and_not_torch(tmp_path):
    lines = [line for line in dry_run(tmp_path, target="setup-train") if "pip install" in line]
    assert [line.split(" -m ", 1)[1] for line in lines] == ["pip install --quiet --upgrade pip",
                                                            'pip install --quiet -e ".[plot]"']


def test_make_test_quick_leaves_out_the_slow_cases(tmp_path):
    lines = dry_run(tmp_path, target="test-quick")
    assert lines[-1].rstrip().endswith('-m pytest -q -m "not slow"')
    assert dry_run(tmp_path, target="test")[-1].rstrip().endswith("-m pytest -q")
