"""The scripts' guards: one line, never a traceback, for a Python without the project's packages, for unreadable
files, for PyTorch's overflow (exit 3, as the nets' NaN); and profile_step.py bounded as bench.py is."""

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import nets.bench
from idx_files import write_dataset

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
NAMES = ["train", "evaluate", "predict", "plot", "bench", "profile_step", "compare_layers"]


def load_script(name: str):
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))  # the scripts import their shared helper as `_cli`
    spec = importlib.util.spec_from_file_location(f"{name}_script", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("tiny"), n_train=128, n_test=32, gzip=True, seed=1)


# ---------------------------------------------------------------------------------------------- a bare Python


def expected_setup_line(script: str, *arguments) -> str:
    """The line, for a script run from the checkout's root with `arguments`."""
    lacks = f"error: this Python ({sys.executable}) lacks numpy, click, tqdm, threadpoolctl, which the project needs"
    command = " ".join([".venv/bin/python", f"scripts/{script}.py", *arguments])
    if (ROOT / ".venv" / "bin" / "python").is_file():
        return (f"{lacks}; run the script with the project's own Python: `{command}` (if that lacks them too, "
                "`.venv/bin/python -m pip install -e '.[plot]'` installs them).")
    return (f"{lacks}; set up the project's own Python with `make setup-train` (or `python3 -m venv .venv && "
            f".venv/bin/python -m pip install -e '.[plot]'`), then run `{command}`.")


@pytest.mark.parametrize("script", NAMES)
def test_a_python_without_the_projects_packages_is_told_how_to_set_them_up(script):
    """-S: no site-packages, so numpy, click, ... are not there (as for a system Python); -E: no PYTHONPATH."""
    result = subprocess.run([sys.executable, "-E", "-S", str(SCRIPTS / f"{script}.py"), "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == expected_setup_line(script, "--help") + "\n"


def test_a_fresh_venv_without_packages_is_told_the_same(tmp_path):
    venv = tmp_path / "bare"
    subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip", str(venv)],
                   check=True, timeout=120)
    python = venv / "bin" / "python"
    result = subprocess.run([str(python), "scripts/train.py", "--epochs", "1"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [expected_setup_line("train", "--epochs", "1").replace(
        sys.executable, str(python))]


# ---------------------------------------------------------------------------------------------- unreadable files


def bound_by_permissions(command: list) -> list:
    """`command`, run so that file permissions bind it: as root, where they do not, with the capabilities that
    override them dropped (setpriv, util-linux); as another user, as it is. Skips where neither can be had."""
    if os.geteuid() != 0:
        return command
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: mode 000 would not stop a read")
    dropped = "-dac_override,-dac_read_search"
    return [setpriv, f"--bounding-set={dropped}", f"--inh-caps={dropped}", *command]


@pytest.fixture
def locked(tmp_path):
    """Files and a folder of mode 000, and a check that they cannot be read under bound_by_permissions."""
    paths = {"file": tmp_path / "locked.bin", "folder": tmp_path / "locked-folder"}
    paths["file"].write_bytes(b"x")
    paths["folder"].mkdir()
    yield paths
    for path in paths.values():
        path.chmod(0o700)


def unreadable(path: Path) -> None:
    path.chmod(0o000)
    probe = subprocess.run(bound_by_permissions([sys.executable, "-c", f"import os; os.listdir({str(path)!r}) "
                                                 f"if os.path.isdir({str(path)!r}) else open({str(path)!r}).read()"]),
                           capture_output=True, text=True, timeout=60)
    assert "PermissionError" in probe.stderr  # the test is honest: permissions bind the scripts run the same way


@pytest.mark.parametrize("what", ["resumed checkpoint", "checkpoint in a locked folder", "data file", "data folder"])
def test_unreadable_files_are_one_line_and_exit_1(tiny_data, tmp_path, locked, what):
    checkpoint = tmp_path / "c.npz"
    trained = subprocess.run([sys.executable, str(SCRIPTS / "train.py"), "--model", "mlp", "--data-dir",
                              str(tiny_data), "--epochs", "1", "--save", str(checkpoint), "--quiet"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)
    assert trained.returncode == 0, trained.stderr
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    if what == "resumed checkpoint":
        arguments, locked_path = ["--resume", "c.npz"], checkpoint
        line = "error: c.npz cannot be read (Permission denied); check its permissions."
    elif what == "checkpoint in a locked folder":
        shutil.copy(checkpoint, locked["folder"] / "c.npz")
        arguments, locked_path = ["--resume", "locked-folder/c.npz"], locked["folder"]
        line = ("error: --resume locked-folder/c.npz cannot be reached (Permission denied); check the permissions of "
                "the folders on its path.")
    elif what == "data file":
        arguments, locked_path = ["--data-dir", "data"], data / "train-labels-idx1-ubyte.gz"
        line = f"error: {locked_path} cannot be read (Permission denied); check its permissions."  # absolute
    else:
        arguments, locked_path = ["--data-dir", "data"], data
        line = f"error: the folder {data} cannot be read (Permission denied); check its permissions, or pass another " \
               "--data-dir."
    unreadable(locked_path)
    try:
        result = subprocess.run(bound_by_permissions([sys.executable, str(SCRIPTS / "train.py"), "--model", "mlp",
                                                      "--epochs", "2", "--schedule", "constant", "--no-save",
                                                      *arguments]),
                                cwd=tmp_path, capture_output=True, text=True, timeout=120)
    finally:
        locked_path.chmod(0o700)
    assert (result.returncode, result.stderr) == (1, line + "\n")


# ---------------------------------------------------------------------------------------------- PyTorch's overflow


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_torchs_overflow_stops_like_the_nets_nan(tiny_data, tmp_path, optimizer):
    pytest.importorskip("torch")
    train = load_script("train")
    result = CliRunner().invoke(train.main, [
        "--impl", "torch", "--model", "mlp", "--optimizer", optimizer, "--lr", "1e39", "--schedule", "constant",
        "--data-dir", str(tiny_data), "--epochs", "1", "--batch-size", "32", "--save", str(tmp_path / "o.npz")])
    assert result.exit_code == 3, result.output
    assert result.stderr == ("error: PyTorch's optimizer step overflowed float32 at lr 1e+39 (value cannot be "
                             "converted to type float without overflow); training stopped. Try a smaller --lr. No "
                             "checkpoint was written.\n")
    assert not (tmp_path / "o.npz").exists()


# ---------------------------------------------------------------------------------------------- profile_step's bounds


def test_profile_step_takes_the_bounds_bench_takes():
    profile_step, bench = load_script("profile_step"), load_script("bench")
    assert bench.MAX_BATCH_SIZE is nets.bench.MAX_BATCH_SIZE == 2048  # one definition, shared
    runner = CliRunner()
    for option, value, bound in (("--batch-size", 2049, nets.bench.MAX_BATCH_SIZE),
                                 ("--repeats", 1001, nets.bench.MAX_STEP_REPEATS)):
        result = runner.invoke(profile_step.main, [option, str(value)])
        assert result.exit_code == 2 and f"{value} is not in the range 1<=x<={bound}" in result.output, result.output
    with pytest.raises(ValueError, match="batch_size must be 1 to 2048"):
        nets.bench.profile.profile_model("cnn", None, batch_size=20_000, dtype="float32", repeats=1)
