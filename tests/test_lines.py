"""No line of the source is over 120 characters: ruff checks it, with the setting in pyproject.toml."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECKED = ["backend", "nets", "scripts", "tests"]


@pytest.mark.skipif(importlib.util.find_spec("ruff") is None,
                    reason="ruff is not installed (pip install -e '.[test]' brings it)")
def test_no_line_is_over_the_length_limit():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "json", *CHECKED],
                            cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode in (0, 1), f"ruff could not run (exit {result.returncode}):\n{result.stderr}"
    long_lines = [f"{os.path.relpath(found['filename'], ROOT)}:{found['location']['row']}: {found['message']}"
                  for found in json.loads(result.stdout)]
    if long_lines:
        pytest.fail("lines over the limit in pyproject.toml's [tool.ruff]:\n" + "\n".join(long_lines), pytrace=False)
    assert result.returncode == 0, result.stdout
