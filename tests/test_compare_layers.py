"""scripts/compare_layers.py and nets/bench/reference.py: the reference beside the fast layers, part by part."""

import subprocess
import sys
from pathlib import Path

import pytest

import backend as backend_module
from nets.bench.reference import comparison_table, count_launches, time_parts

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_launches_and_times_cover_every_part_of_both_steps(name):
    launches = count_launches(name, 16)
    if launches is None:
        pytest.skip("cupy is not importable here; the stand-in cannot count launches")
    for strategy in ("reference", "fast"):
        counted = launches[strategy]
        assert sum(counted["parts"].values()) == counted["step"] > 0  # every launch of the step is placed
    assert launches["fast"]["allocations"] == 0 < launches["reference"]["allocations"]
    assert launches["fast"]["step"] < launches["reference"]["step"]
    assert launches["fast"]["parts"][("optimizer", "backward")] == 12 < launches["reference"]["parts"][
        ("optimizer", "backward")]
    times = time_parts(name, 16, backend_module.get_backend("cpu"), repeats=2)
    assert set(times["reference"]["parts"]) == set(times["fast"]["parts"]) == set(launches["fast"]["parts"])
    assert all(value > 0 for strategy in times.values() for value in strategy["parts"].values())
    table = comparison_table(name, launches, times)
    assert "| optimizer | backward |" in table and "| loss | forward |" in table
    if name == "cnn":  # the reference's ReLU and max-pool, in the fast model's fused row
        assert "| relu_pool1 | forward |" in table and "pool1 |" not in table.replace("relu_pool1 |", "")


def test_the_script_prints_a_table_per_model_and_refuses_bad_options():
    script = str(ROOT / "scripts" / "compare_layers.py")
    finished = subprocess.run([sys.executable, script, "--models", "mlp", "--batch-size", "8", "--repeats", "1"],
                              capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    assert "\nmlp\n" in finished.stdout and "| **whole step** |" in finished.stdout
    for options, says in ((["--models", "rnn"], "'rnn' is not a model"), (["--batch-size", "2049"], "2049")):
        refused = subprocess.run([sys.executable, script, *options], capture_output=True, text=True, timeout=120)
        assert refused.returncode == 2 and says in refused.stderr and "Traceback" not in refused.stderr
