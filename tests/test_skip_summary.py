"""The end of `make test` on a machine without a GPU: the gpu skips in one line, other skips each in theirs."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CONFTEST = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
from tests.conftest import pytest_runtest_makereport  # noqa: F401  the hook under test (a conftest of its own here)
"""

TESTS = """
import pytest

@pytest.fixture(params=["cpu", "standin", "gpu"])
def backend(request):
    if request.param == "gpu":
        pytest.skip("no GPU backend here: CUDA is missing in this test")
    return request.param

def test_one(backend):
    pass

@pytest.mark.parametrize("size", [1, 2, 3])
def test_two(backend, size):
    pass

def test_needs_the_network():
    pytest.skip("no network here")

@pytest.mark.skip(reason="not written yet")
def test_later():
    pass
"""


def test_gpu_skips_are_one_line_with_their_count_and_other_skips_stay_visible(tmp_path):
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_example.py").write_text(TESTS)
    finished = subprocess.run([sys.executable, "-m", "pytest", "-q", "-ra", "-p", "no:cacheprovider", str(tmp_path)],
                              cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    skipped = [line for line in finished.stdout.splitlines() if line.startswith("SKIPPED")]
    gpu = [line for line in skipped if "no GPU backend here" in line]
    assert len(gpu) == 1, skipped
    assert gpu[0].startswith("SKIPPED [4] ") and gpu[0].endswith(
        "conftest.py: the gpu cases (cpu and standin ran): no GPU backend here: CUDA is missing in this test")
    assert any("test_example.py" in line and line.endswith("no network here") for line in skipped), skipped
    assert any(line.endswith("not written yet") for line in skipped), skipped
    assert len(skipped) == 3
    assert "8 passed, 6 skipped" in finished.stdout
