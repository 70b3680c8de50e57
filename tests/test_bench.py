"""scripts/bench.py on tiny settings: it runs, writes the documented JSON, prints the markdown tables,
skips the torch rows without torch, and refuses --device gpu in one line where there is no GPU."""

import importlib.util
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import backend
from nets.bench import flops
from nets.devices import gpu_unavailable
from nets.train.parallel import usable_cores

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
    assert len(report["load_average"]["start"]) == 3 and len(report["load_average"]["end"]) == 3
    assert isinstance(report["warnings"], list)

    impls = {"nets", "torch"} if torch_importable() else {"nets"}
    expected = {(m, i) for m in ("mlp", "cnn") for i in impls}
    if torch_importable():  # the strongest CPU reference for the CNN, by default
        expected.add(("cnn", "torch_channels_last"))
    assert {(row["model"], row["impl"]) for row in report["rows"]} == expected
    assert report["settings"]["isolation"].startswith("cpu: each implementation in a process of its own")
    for row in report["rows"]:
        assert ROW_FIELDS <= set(row)
        assert row["device"] == "cpu" and row["batch_size"] == 4
        assert row["train_images_per_second"] > 0 and row["infer_images_per_second"] > 0
        assert row["train_spread"] is None and row["infer_spread"] is None  # one sample (--repeats 1): unknown

    assert report["seed_loop"]["samples"] == 20 and report["seed_loop"]["epoch_seconds_extrapolated"] > 0

    stdout = result.stdout
    assert "| model | device | batch |" in stdout and "train epoch nets/torch" in stdout
    if torch_importable():
        assert "train epoch nets/channels_last" in stdout and "infer nets/channels_last" in stdout
    assert "| mlp | cpu | 4 |" in stdout and "| cnn | cpu | 4 |" in stdout
    if torch_importable():
        floors = {floor["model"]: floor for floor in report["floor"]}
        # the CNN's training arithmetic is about 280 GFLOP per 60k epoch (see docs/performance.md)
        assert floors["cnn"]["gflop_per_epoch"] == pytest.approx(280, rel=0.02)
        assert floors["mlp"]["gflop_per_epoch"] == pytest.approx(27.3, rel=0.01)
        assert "Arithmetic floor" in stdout
    if "--plot" in arguments:
        assert (tmp_path / "bench.png").stat().st_size > 0


def test_each_cpu_implementation_runs_in_a_process_of_its_own_and_the_rounds_alternate():
    """The nets' process never loads torch, torch's does; each process's peak is its own; every implementation gets
    one sample per round."""
    from nets.bench.isolated import ImplProcesses, ImplSpec

    impls = ["nets", "torch"] if torch_importable() else ["nets", "nets"]
    with ImplProcesses([ImplSpec(impl, "mlp", 4, warmup=1, threads=1) for impl in impls]) as processes:
        facts = processes.ready()
        samples = processes.samples("infer", repeats=3, sample_seconds=0.001, batch_size=4)
    assert len({fact["pid"] for fact in facts} | {os.getpid()}) == 3
    assert [fact["torch_loaded"] for fact in facts] == [impl != "nets" for impl in impls]
    assert all(fact["peak_mb"] is None or fact["peak_mb"] >= 0 for fact in facts)
    assert [len(values) for values in samples] == [3, 3] and all(value > 0 for row in samples for value in row)


def test_a_failing_bench_process_is_one_clear_error():
    from nets.bench.isolated import ImplProcesses, ImplSpec

    with pytest.raises(RuntimeError, match="the bench process of nets failed: ValueError: unknown model 'resnet'"):
        with ImplProcesses([ImplSpec("nets", "resnet", 4, warmup=1, threads=1)]) as processes:
            processes.ready()


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
def test_bench_gpu_without_gpu_is_one_line_as_in_the_other_scripts():
    result = run_bench("--device", "gpu", "--models", "mlp", "--batch-sizes", "4", timeout=120)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == f"error: --device gpu is not available: {gpu_unavailable()}\n"


@pytest.mark.parametrize("option, value, message", [
    ("--threads", str(usable_cores() + 1), f"{usable_cores() + 1} is not in the range 1<=x<={usable_cores()}"),
    ("--gemm-size", "4097", "4097 is not in the range 16<=x<=4096"),
    ("--gemm-size", "100000", "100000 is not in the range 16<=x<=4096"),
    ("--seed-loop", "60001", "60001 is not in the range 0<=x<=60000"),
    ("--seed-loop", "999999999999", "999999999999 is not in the range 0<=x<=60000"),
    ("--sample-seconds", "10.001", "'10.001' is not in (0, 10]."),
    ("--sample-seconds", "1e308", "'1e308' is not in (0, 10]."),
    ("--sample-seconds", "nan", "'nan' is not in (0, 10]."),
    ("--repeats", "101", "101 is not in the range 1<=x<=100"),
    ("--batch-sizes", "32,2049", "each batch size must be 1 to 2048"),
    ("--batch-sizes", ",".join(["8"] * 17), "give 1 to 16 batch sizes, each 1 to 2048"),
    ("--batch-sizes", "9" * 5000, "give whole numbers separated by commas"),
])
def test_bench_options_beyond_their_bounds_are_usage_errors(option, value, message):
    """A value just over each bound (never many threads started to test one)."""
    result = run_bench("--models", "mlp", option, value, timeout=120)
    assert result.returncode == 2 and result.stdout == "", result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"Error: Invalid value for '{option}': {message}")
    assert "Traceback" not in result.stderr


def test_each_figure_has_its_spread_and_untrustworthy_ones_are_warned_about():
    """The spread (fastest sample over slowest) of every figure and the load average, in the JSON and the tables;
    a warning line for a figure whose samples disagree by more than 1.5x, or a load above the cores."""
    from nets.bench.device import Row
    from nets.bench.report import print_tables, trust_warnings

    steady = Row("cnn", "nets", "cpu", 128, 100.0, 200.0, train_samples_images_per_second=[100.0, 101.0, 99.0],
                 infer_samples_images_per_second=[200.0, 204.0, 198.0]).as_json()
    shaken = Row("cnn", "torch", "cpu", 128, 90.0, 180.0, train_samples_images_per_second=[90.0, 30.0, 95.0],
                 infer_samples_images_per_second=[180.0, 181.0, 179.0]).as_json()
    assert steady["train_spread"] == pytest.approx(101 / 99) and shaken["train_spread"] == pytest.approx(95 / 30)
    report = {"rows": [steady, shaken], "machine": {"cpu": "a CPU", "usable_cores": 2}, "threads": 2, "floor": [],
              "seed_loop": None, "skipped": [], "load_average": {"start": [1.0, 1, 1], "end": [0.9, 1, 1]}}
    report["warnings"] = trust_warnings(report)
    assert report["warnings"] == ["cnn cpu batch 128 torch train: the samples range from 30 to 95 img/s (3.2x), so its "
                                  "median is not trustworthy; measure again on a quieter machine."]
    report["load_average"]["end"] = [2.5, 1, 1]
    assert trust_warnings(report)[-1] == ("the load average was 1.0 at the start and 2.5 at the end, above the 2 "
                                          "usable cores: other work competed with every figure, so none is "
                                          "trustworthy.")
    printed = io.StringIO()
    print_tables(report, file=printed)
    text = printed.getvalue()
    assert "load average 1.0 at the start, 2.5 at the end, 2 usable cores" in text
    assert "| 1.03 / 3.17! |" in text and f"warning: {report['warnings'][0]}" in text


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
    assert "Invalid value for '--models'" in result.stderr
    assert "give a comma-separated list of mlp, cnn" in result.stderr
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


def test_the_profile_times_every_part_on_the_device_paths_too(standin_gpu):
    from nets.bench.profile import profile_lines, profile_model

    profile = profile_model("cnn", standin_gpu, batch_size=4, dtype="float32", repeats=2, with_torch=False)
    expected = {(part, kind) for part in profile.part_names for kind in ("forward", "backward")
                if not (part == "loss" and kind == "backward") and not (part == "optimizer" and kind == "forward")}
    assert set(profile.parts) == expected and all(ms > 0 for ms in profile.parts.values())
    assert profile.nets_ms > 0 and profile.torch_ms is None
    lines = profile_lines(profile)
    assert lines[0].startswith("cnn: part") and "conv1" in lines[1] and lines[-1].startswith("  whole step: nets")
