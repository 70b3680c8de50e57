"""scripts/gpu_check.sh --standin: the device check's dry run on the strict stand-in, under a short deadline and a
Python where hypothesis cannot be imported: the summary is written, the output folder stays within its limits, the
deadline cuts or skips what it must and says so, and the suite's collection goes on without hypothesis."""

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"
NAME = re.compile(r"^[A-Za-z0-9._-]+$")
STEPS = ["environment", "cublas lookup and gemm", "captured against eager", "the suite's standin cases",
         "warm-up mlp", "warm-up cnn", "train cnn_nets", "train mlp_nets", "train cnn_torch", "train mlp_torch",
         "train cnn_nets_eager", "train mlp_notebook", "launches (stand-in)"]


@pytest.fixture(scope="module")
def without_hypothesis(tmp_path_factory):
    """A PYTHONPATH folder whose `hypothesis` raises ImportError, as where it is not installed."""
    folder = tmp_path_factory.mktemp("without-hypothesis")
    (folder / "hypothesis").mkdir()
    (folder / "hypothesis" / "__init__.py").write_text("raise ImportError('No module named hypothesis (hidden)')\n")
    return folder


def environment(without_hypothesis, **limits):
    """This Python, with hypothesis hidden (and its pytest plugin, which a Python without hypothesis lacks)."""
    return dict(os.environ, PYTHONPATH=str(without_hypothesis), PYTHON=sys.executable,
                PYTEST_ADDOPTS="-p no:hypothesispytest", **{name: str(value) for name, value in limits.items()})


def test_collection_goes_on_where_hypothesis_cannot_be_imported(without_hypothesis, tmp_path):
    files = ["tests/test_conv.py", "tests/test_idx.py", "tests/test_reference.py", "tests/test_properties.py"]
    result = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *files],
                            capture_output=True, text=True, timeout=300, cwd=ROOT, env=environment(without_hypothesis))
    assert result.returncode == 0, result.stdout + result.stderr
    collected = [line for line in result.stdout.splitlines() if "::" in line]
    assert {line.split("::")[0] for line in collected} == set(files[:3]), result.stdout  # all but the properties
    assert "ERROR" not in result.stdout and "error" not in result.stdout.splitlines()[-1], result.stdout


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None, reason="needs bash and timeout")
def test_the_standin_dry_run_keeps_to_its_deadline_and_always_writes_its_summary(without_hypothesis, tmp_path):
    """Steps 2 and 3 fail by their own 1 s limits (every Python of the run starts 2 s late here, so they cannot
    finish in time on any machine), the stand-in suite of step 4 (minutes long) is cut by the 45 s deadline, and
    what comes after is skipped for it: each said so in the summary."""
    pytest.importorskip("cupy", reason="the stand-in needs cupy importable (pip install -e .[standin])")
    slow = tmp_path / "slow-start"
    shutil.copytree(without_hypothesis, slow)
    (slow / "sitecustomize.py").write_text("import time\ntime.sleep(2)\n")
    out = tmp_path / "out"
    result = subprocess.run(["bash", str(SCRIPT), "--standin", str(out)], capture_output=True, text=True, timeout=300,
                            cwd=tmp_path, env=environment(slow, GPU_CHECK_SECONDS=45, GEMM_SECONDS=1,
                                                          CAPTURE_SECONDS=1))
    assert result.returncode == 1, result.stdout + result.stderr
    summary = (out / "summary.txt").read_text()
    assert "hypothesis     MISSING (ImportError: No module named hypothesis (hidden))" in summary, summary
    table = summary.split("== summary: the strict CuPy stand-in, ")[1]
    lines = {step: next(line for line in table.splitlines() if line.startswith(step)) for step in STEPS}
    assert [table.index(lines[step]) for step in STEPS] == sorted(table.index(lines[step]) for step in STEPS)
    assert " PASS " in lines["environment"]
    assert "FAIL (its 1 s limit)" in lines["cublas lookup and gemm"] and "FAIL (its 1 s limit)" in lines[
        "captured against eager"], table
    assert re.search(r"CUT \(deadline, after \d+ s\)", lines["the suite's standin cases"]), table
    for step in STEPS[4:]:
        reason = "torch trains on a GPU only" if "torch" in step else "deadline: 0 s left"
        assert f"SKIP ({reason})" in lines[step], table
    assert "SOME STEPS DID NOT PASS" in table
    found = list(out.rglob("*"))
    assert len([path for path in found if path.is_file()]) <= 8, found
    for path in found:
        parts = path.relative_to(out).parts
        assert len(parts) <= 3 and all(NAME.match(part) for part in parts), path
    assert not [path for path in tmp_path.iterdir() if path.name not in ("out", "slow-start")]  # nothing beside it


def test_the_summary_is_written_when_a_signal_stops_the_script(tmp_path):
    pytest.importorskip("cupy", reason="the stand-in needs cupy importable (pip install -e .[standin])")
    out = tmp_path / "out"
    process = subprocess.Popen(["bash", str(SCRIPT), "--standin", str(out)], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
                               env=dict(os.environ, PYTHON=sys.executable))
    for line in process.stdout:  # the first step has passed: the second starts now
        if line.strip().startswith("environment"):
            break
    while not (out / "gemm.log").exists():  # its log's first line is written just before it starts
        time.sleep(0.1)
    time.sleep(1)
    process.terminate()
    rest = process.communicate(timeout=60)[0]
    assert process.returncode == 128 + 15, rest
    summary = (out / "summary.txt").read_text()
    assert re.search(r"cublas lookup and gemm +FAIL \(signal TERM\)", summary), summary
    assert "SOME STEPS DID NOT PASS" in summary and "captured against eager" not in summary, summary
