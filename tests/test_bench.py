"""scripts/bench.py on tiny settings: it runs, writes the documented JSON, prints the markdown tables,
skips the torch rows without torch, and refuses --device gpu in one line where there is no GPU."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import backend
from nets.bench import flops

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCH = REPO_ROOT / "scripts" / "bench.py"
TINY = ["--device", "cpu", "--batch-sizes", "4", "--repeats", "1", "--warmup", "1",
        "--sample-seconds", "0.001", "--gemm-size", "32"]
ROW_FIELDS = {"model", "impl", "device", "batch_size", "train_images_per_second", "infer_images_per_second",
              "peak_memory_mb"}

pytestmark = pytest.mark.slow


def torch_importable() -> bool:
    return importlib.util.find_spec("torch") is not None


def run_bench(*arguments, env=None, timeout=300):
    return subprocess.run(
        [sys.executable, str(BENCH), *arguments],
        capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=timeout,
    )


def test_bench_writes_json_and_prints_tables(tmp_path):
    json_path = tmp_path / "bench.json"
    arguments = [*TINY, "--models", "mlp,cnn", "--json", str(json_path), "--seed-loop", "20"]
    if importlib.util.find_spec("matplotlib") is not None:
        arguments += ["--plot", str(tmp_path / "bench.png")]
    result = run_bench(*arguments)
    assert result.returncode == 0, result.stderr

    report = json.loads(json_path.read_text())
    for key in ("rows", "machine", "versions", "blas", "date", "command", "peak_memory_method", "floor", "gemm"):
        assert key in report, key
    assert report["machine"]["cpu"] and report["machine"]["logical_cores"] >= 1
    assert {"python", "numpy", "torch", "cupy"} <= set(report["versions"])
    assert "cpu" in report["peak_memory_method"]
    assert "--batch-sizes" in report["command"]

    impls = {"nets", "torch"} if torch_importable() else {"nets"}
    assert {(row["model"], row["impl"]) for row in report["rows"]} == {(m, i) for m in ("mlp", "cnn") for i in impls}
    for row in report["rows"]:
        assert ROW_FIELDS <= set(row)
        assert row["device"] == "cpu" and row["batch_size"] == 4
        assert row["train_images_per_second"] > 0 and row["infer_images_per_second"] > 0

    assert report["seed_loop"]["samples"] == 20 and report["seed_loop"]["epoch_seconds_extrapolated"] > 0

    stdout = result.stdout
    assert "| model | device | batch |" in stdout and "train epoch nets/torch" in stdout
    assert "| mlp | cpu | 4 |" in stdout and "| cnn | cpu | 4 |" in stdout
    if torch_importable():
        floors = {floor["model"]: floor for floor in report["floor"]}
        # the CNN's training arithmetic is about 280 GFLOP per 60k epoch (see benchmarks/README.md)
        assert floors["cnn"]["gflop_per_epoch"] == pytest.approx(280, rel=0.02)
        assert floors["mlp"]["gflop_per_epoch"] == pytest.approx(27.3, rel=0.01)
        assert "Arithmetic floor" in stdout
    if "--plot" in arguments:
        assert (tmp_path / "bench.png").stat().st_size > 0


def test_bench_skips_torch_rows_without_torch(tmp_path):
    hidden = tmp_path / "no_torch" / "torch"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError('torch is hidden for this test')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(hidden.parent), os.environ.get("PYTHONPATH", "")]))
    json_path = tmp_path / "bench.json"
    result = run_bench(*TINY, "--models", "mlp", "--json", str(json_path), env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(json_path.read_text())
    assert [row["impl"] for row in report["rows"]] == ["nets"]
    assert report["versions"]["torch"] is None
    assert any("torch is not installed" in line for line in report["skipped"])
    assert "| mlp | cpu | 4 |" in result.stdout


@pytest.mark.skipif(backend.gpu_problem() is None, reason="a GPU is usable here")
def test_bench_gpu_without_gpu_is_one_line():
    result = run_bench("--device", "gpu", "--models", "mlp", "--batch-sizes", "4", timeout=120)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--device gpu is not available" in lines[0], result.stderr
    assert backend.gpu_problem() in lines[0]


def test_training_flops_count_first_layer_without_input_gradient():
    gemms = [{"name": "fc1", "m": 1, "k": 784, "n": 128}, {"name": "fc2", "m": 1, "k": 128, "n": 10}]
    shapes = flops.train_step_gemm_shapes(gemms, batch_size=32)
    assert shapes == [(32, 784, 128), (784, 32, 128), (32, 128, 10), (128, 32, 10), (32, 10, 128)]
    assert flops.train_flops_per_image(gemms) == 2 * 784 * 128 * 2 + 2 * 128 * 10 * 3


def test_count_launches_without_a_gpu_tables_them_per_layer_and_pass(tmp_path):
    pytest.importorskip("cupy", reason="the stand-in needs cupy importable (pip install -e .[gpu])")
    json_path = tmp_path / "bench.json"
    result = run_bench(*TINY, "--models", "mlp", "--count-launches", "--json", str(json_path))
    assert result.returncode == 0, result.stderr
    (entry,) = json.loads(json_path.read_text())["launches_standin"]
    assert (entry["model"], entry["batch_size"], entry["syncs"], entry["transfers"]) == ("mlp", 4, 0, 0)
    parts = {row["part"]: row for row in entry["rows"]}
    assert list(parts) == ["fc1", "relu1", "fc2", "relu2", "fc3", "loss", "optimizer"]  # every launch placed
    assert sum(row["forward"] + row["backward"] for row in entry["rows"]) == entry["train_step"] <= 40
    assert parts["optimizer"]["backward"] == 12 and parts["loss"]["forward"] == 12
    assert "Kernel launches per step on a GPU" in result.stdout and "| fc1 | 1 | 1 |" in result.stdout


def test_standin_launches_attributes_every_cnn_launch():
    pytest.importorskip("cupy", reason="the stand-in needs cupy importable (pip install -e .[gpu])")
    from nets.bench.launches import standin_launches

    entry = standin_launches("cnn", 16)
    assert [row["part"] for row in entry["rows"]][-2:] == ["loss", "optimizer"]
    assert sum(row["forward"] + row["backward"] for row in entry["rows"]) == entry["train_step"] <= 70
    assert entry["predict"] <= 18


@pytest.mark.parametrize("models", ["resnet", "mlp,resnet", ","])
def test_bench_unknown_model_is_a_usage_error(models):
    result = run_bench(*TINY, "--models", models, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "Invalid value for '--models'" in result.stderr and "give a comma-separated list of mlp, cnn" in result.stderr
    assert "Traceback" not in result.stderr


def test_bench_unwritable_json_is_refused_before_timing(tmp_path):
    (tmp_path / "blocker").write_text("a file where a folder should be")
    target = tmp_path / "blocker" / "bench.json"
    result = run_bench(*TINY, "--models", "mlp", "--json", str(target), timeout=120)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: --json {target}: ")
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_profile_step_times_every_part_of_the_real_step():
    script = REPO_ROOT / "scripts" / "profile_step.py"
    result = subprocess.run([sys.executable, str(script), "--models", "mlp", "--batch-size", "8", "--repeats", "2",
                             "--no-torch"], capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    for part in ("fc1", "relu1", "fc2", "relu2", "fc3", "loss", "optimizer", "sum", "whole step: nets"):
        assert part in result.stdout, part
    help_text = subprocess.run([sys.executable, str(script), "-h"], capture_output=True, text=True, cwd=REPO_ROOT)
    assert help_text.returncode == 0 and "Time each layer" in help_text.stdout
    bad = subprocess.run([sys.executable, str(script), "--models", "resnet"], capture_output=True, text=True,
                         cwd=REPO_ROOT)
    assert bad.returncode == 2 and "'resnet' is not a model" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize("model_name", ["mlp", "cnn"])
def test_the_bench_runner_runs_through_the_standin(standin_gpu, model_name):
    from nets.bench.runners import make_batch, nets_runner

    shape = (784,) if model_name == "mlp" else (1, 28, 28)
    runner = nets_runner(model_name, standin_gpu, *make_batch(shape, 16))
    for _ in range(3):
        runner.train_step()
    counter = standin_gpu.xp.counter
    mark = counter.mark()
    runner.train_step()
    runner.infer_step()
    step = counter.since(mark)
    assert step.syncs == 0 and step.transfers == 0 and step.launches > 0
    mark = counter.mark()
    runner.synchronize()
    assert counter.since(mark).syncs == 1


def test_the_torch_runner_times_the_torch_engine_train_py_uses():
    torch = pytest.importorskip("torch", reason="torch is not installed; pip install -e .[test]")
    from nets.baseline.engine import TorchEngine
    from nets.bench.runners import make_batch, torch_runner

    for channels_last, impl in ((False, "torch"), (True, "torch_channels_last")):
        runner = torch_runner("cnn", "cpu", *make_batch((1, 28, 28), 8), channels_last=channels_last)
        assert isinstance(runner.engine, TorchEngine) and runner.impl == impl
        runner.train_step()
        runner.infer_step()
        assert runner.engine.totals() == (0.0, 0)  # a bare eager step: no running totals, as before the engine
        assert runner.engine.model.conv2.weight.is_contiguous(memory_format=torch.channels_last) == channels_last
