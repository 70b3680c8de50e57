"""Every script answers -h with what it does and an example to start from."""

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


@pytest.mark.parametrize("script, says, example", [
    ("compare_layers.py", "Count the launches and time each layer", "python scripts/compare_layers.py"),
    ("profile_step.py", "Time each layer's forward and backward", "python scripts/profile_step.py"),
    ("bench.py", "Time training and inference", "python scripts/bench.py --models cnn --batch-sizes 128 --repeats 2"),
    ("train.py", "Train the MLP or the CNN", "python scripts/train.py --recipe notebook --model mlp"),
    ("evaluate.py", "Print the test accuracy", None),
    ("predict.py", "Print the TOP most probable classes", None),
])
@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_every_script_explains_itself(script, says, example, flag):
    finished = subprocess.run([sys.executable, str(SCRIPTS / script), flag], capture_output=True, text=True,
                              timeout=120)
    assert finished.returncode == 0, finished.stderr
    assert says in " ".join(finished.stdout.split())
    if example:
        assert example in finished.stdout
