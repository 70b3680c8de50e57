"""Every script, interrupted while it is still importing (numpy, torch, ...): one line and exit 130, as Ctrl-C
later gives, never a traceback and a death by SIGINT. A stand-in numpy on PYTHONPATH sends the SIGINT itself, the
moment the first heavy import begins, so the test does not depend on timing."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ["train", "evaluate", "predict", "plot", "bench", "profile_step", "compare_layers"]


@pytest.fixture(scope="module")
def interrupting_numpy(tmp_path_factory):
    folder = tmp_path_factory.mktemp("interrupting")
    (folder / "numpy").mkdir()
    (folder / "numpy" / "__init__.py").write_text(
        "import os, signal, time\n"
        "os.kill(os.getpid(), signal.SIGINT)\n"
        "time.sleep(30)\n"
        "raise ImportError('this numpy only interrupts')\n")
    return folder


@pytest.mark.parametrize("script", SCRIPTS)
def test_ctrl_c_while_importing_is_one_line_and_exit_130(interrupting_numpy, script):
    environment = dict(os.environ, PYTHONPATH=str(interrupting_numpy))
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / f"{script}.py"), "--help"], capture_output=True,
                            text=True, timeout=60, env=environment, cwd=ROOT)
    assert (result.returncode, result.stderr) == (130, "error: interrupted while starting; nothing was done.\n")
    assert result.stdout == ""
