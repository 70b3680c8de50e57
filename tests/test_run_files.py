"""A run's files in evaluate.py, predict.py and plot.py: the newest checkpoint in runs/ when none is given, the run id
a checkpoint shares with its metrics JSON, metrics used only when they are the checkpoint's run's, evaluate --json
that never replaces training metrics unasked, metrics read defensively, unreadable files in one line, predict --show
and --prepare none, and evaluate's memory at its defaults."""

import builtins
import json
import os
import warnings

import numpy
import pytest
from click.testing import CliRunner

import backend as backend_module
from crafted_files import peak_of
from idx_files import write_dataset
from nets.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from nets.nn.models import build_model
from nets.report.runs import RunFilesError, holds_training_metrics, newest_checkpoint, other_run, read_metrics
from test_scripts_eval_predict import assert_one_line_error, digit_image, load_script

evaluate_script, predict_script, plot_script = (load_script(name) for name in ("evaluate", "predict", "plot"))
HISTORY = [{"epoch": 1, "train_loss": 0.9, "train_accuracy": 0.7, "test_accuracy": 0.25, "seconds": 1.0,
            "images_per_second": 64.0, "lr_end": 0.01}]


def invoke(script, *args):
    return CliRunner().invoke(script.main, [str(arg) for arg in args])


def save_run(path, run_id=None, history=HISTORY, metrics_run_id=None, dataset="mnist", model="mlp", json_too=True):
    """A checkpoint of a fresh model at `path`, and (json_too) the metrics JSON beside it, as train.py writes them."""
    net = build_model(model, backend=backend_module.get_backend("cpu"), rng=numpy.random.default_rng(0))
    save_checkpoint(path, net.state_dict(), net.config(), dataset=dataset, metrics=history, run_id=run_id)
    if json_too:
        metrics = {"model": model, "impl": "nets", "dataset": dataset, "schedule": "constant", "lr": 0.01,
                   "batch_size": 64, "test_accuracy": history[-1]["test_accuracy"], "epochs": history}
        if metrics_run_id is not None:
            metrics["run_id"] = metrics_run_id
        path.with_suffix(".json").write_text(json.dumps(metrics))
    return path


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("data") / "mnist", n_train=10, n_test=40, seed=0)


# ---------------------------------------------------------------------------------------------- the run id


def test_a_checkpoint_keeps_its_run_id_and_refuses_a_bad_one(tmp_path):
    path = save_run(tmp_path / "a.npz", run_id="2024-01-02T03:04:05-1234", json_too=False)
    assert load_checkpoint(path).run_id == "2024-01-02T03:04:05-1234"
    assert load_checkpoint(save_run(tmp_path / "b.npz", json_too=False)).run_id is None
    with pytest.raises(CheckpointError, match="is not a line of 1 to 200 printable characters"):
        save_run(tmp_path / "c.npz", run_id="two\nlines", json_too=False)
    with numpy.load(path) as archive:
        arrays = {key: archive[key] for key in archive.files}
    arrays["meta/run_id"] = numpy.array("")
    numpy.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(CheckpointError, match=r"d.npz has meta/run_id = ''; it must be a line of 1 to 200 printable"):
        load_checkpoint(tmp_path / "d.npz")


@pytest.mark.parametrize("ours, theirs, history, same", [
    ("a", "a", HISTORY, True),
    ("a", "b", HISTORY, False),
    ("a", None, HISTORY, False),  # a run writes its id into both files or neither
    (None, "b", HISTORY, False),
    (None, None, HISTORY, True),  # files from before run ids: the same epochs recorded
    (None, None, [{**HISTORY[0], "test_accuracy": 0.5}], False),
])
def test_metrics_belong_to_a_checkpoint_when_their_run_ids_or_epochs_say_so(tmp_path, ours, theirs, history, same):
    path = save_run(tmp_path / "run.npz", run_id=ours, history=history, metrics_run_id=theirs)
    metrics, _ = read_metrics(path.with_suffix(".json"))
    if history is not HISTORY:  # the JSON's epochs are the HISTORY; the checkpoint recorded others
        metrics["epochs"] = HISTORY
    assert (other_run(load_checkpoint(path), metrics) is None) == same


# ---------------------------------------------------------------------------------------------- the newest checkpoint


def test_the_newest_checkpoint_in_runs(tmp_path):
    with pytest.raises(RunFilesError, match=r"no checkpoint given, and none in .*runs/ to take; train one first: "):
        newest_checkpoint(tmp_path / "runs")
    (tmp_path / "runs").mkdir()
    for age, name in enumerate(["new.npz", "old.npz", ".hidden.npz", "notes.json"]):
        (tmp_path / "runs" / name).write_bytes(b"")
        os.utime(tmp_path / "runs" / name, (1e9 - 1000 * age,) * 2)
    os.utime(tmp_path / "runs" / ".hidden.npz", (2e9, 2e9))  # a temporary file of a save under way is no checkpoint
    assert newest_checkpoint(tmp_path / "runs") == tmp_path / "runs" / "new.npz"


@pytest.mark.parametrize("script", ["evaluate", "predict", "plot"])
def test_without_a_checkpoint_the_scripts_take_the_newest_and_say_which(script, data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    picture = digit_image(tmp_path / "seven.png")
    args = {"evaluate": ["--data-dir", data_dir, "--device", "cpu"], "predict": [picture, "--device", "cpu"],
            "plot": ["--data-dir", data_dir, "--device", "cpu", "--out", "plots"]}[script]
    if script == "plot":
        pytest.importorskip("matplotlib", reason="matplotlib is not installed; pip install -e .[plot]")
    module = {"evaluate": evaluate_script, "predict": predict_script, "plot": plot_script}[script]
    missing = invoke(module, *args)
    assert_one_line_error(missing, "error: no checkpoint given, and none in runs/ to take; train one first: ",
                          "scripts/train.py (or make train), or give a checkpoint's path.")
    (tmp_path / "runs").mkdir()
    save_run(tmp_path / "runs" / "older.npz")
    os.utime("runs/older.npz", (1e9, 1e9))
    save_run(tmp_path / "runs" / "newer.npz", json_too=False)
    result = invoke(module, *args)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "checkpoint: runs/newer.npz (the newest in runs/)"


def test_predict_takes_a_first_argument_that_is_a_checkpoint_or_checkpoint_option(tmp_path):
    checkpoint = save_run(tmp_path / "model.npz", json_too=False)
    picture = digit_image(tmp_path / "seven.png")
    for args in ([checkpoint, picture], ["--checkpoint", checkpoint, picture]):
        result = invoke(predict_script, *args, "--device", "cpu", "--top", 1)
        assert result.exit_code == 0, result.output
        assert "checkpoint:" not in result.stdout and result.stdout.splitlines()[2].startswith(f"{picture}: ")
    alone = invoke(predict_script, checkpoint, "--device", "cpu")
    assert alone.exit_code == 2 and alone.stderr == (f"error: no IMAGE after the checkpoint {checkpoint}; give one or "
                                                     "more pictures to classify.\n")


# ---------------------------------------------------------------------------------------------- metrics of the run


def test_plot_draws_the_metrics_beside_a_checkpoint_only_when_they_are_its_runs(data_dir, tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is not installed; pip install -e .[plot]")
    checkpoint = save_run(tmp_path / "run.npz", run_id="a", metrics_run_id="b")
    result = invoke(plot_script, checkpoint, "--data-dir", data_dir, "--device", "cpu", "--out", tmp_path / "p1")
    assert result.exit_code == 0, result.output
    beside = tmp_path / "run.json"
    assert result.stdout.splitlines()[0] == (f"metrics: none ({beside} is from another run: its run id is 'b', the "
                                             "checkpoint's 'a'), so no training curves; --metrics FILE draws them "
                                             "anyway")
    assert not (tmp_path / "p1" / "training_curves.png").exists()
    asked = invoke(plot_script, checkpoint, "--metrics", beside, "--data-dir", data_dir, "--device", "cpu", "--out",
                   tmp_path / "p2")
    assert asked.exit_code == 0, asked.output
    assert asked.stderr == (f"warning: --metrics {beside} is not from the run of {checkpoint} (its run id is 'b', the "
                            "checkpoint's 'a'); its curves are drawn as asked.\n")
    assert (tmp_path / "p2" / "training_curves.png").exists()
    save_run(checkpoint, run_id="a", metrics_run_id="a")
    same = invoke(plot_script, checkpoint, "--data-dir", data_dir, "--device", "cpu", "--out", tmp_path / "p3")
    assert same.stdout.splitlines()[0] == f"metrics: {beside} (beside the checkpoint, from the same run)"
    assert (tmp_path / "p3" / "training_curves.png").exists()


def test_evaluate_says_what_its_run_measured_only_from_the_runs_own_metrics(data_dir, tmp_path):
    checkpoint = save_run(tmp_path / "run.npz", run_id="a", metrics_run_id="a")
    result = invoke(evaluate_script, checkpoint, "--data-dir", data_dir, "--device", "cpu")
    assert result.exit_code == 0 and result.stderr == "", result.output
    assert result.stdout.splitlines()[-1] == f"its run measured 25.00% after epoch 1 ({tmp_path / 'run.json'})"
    save_run(checkpoint, run_id="a", metrics_run_id="b")
    other = invoke(evaluate_script, checkpoint, "--data-dir", data_dir, "--device", "cpu")
    assert other.exit_code == 0 and "its run measured" not in other.stdout
    assert other.stderr == (f"note: {tmp_path / 'run.json'} beside the checkpoint is another run's metrics (its run "
                            "id is 'b', the checkpoint's 'a'); scoring without it.\n")


def test_evaluate_never_replaces_training_metrics_unless_asked_by_name(data_dir, tmp_path):
    checkpoint = save_run(tmp_path / "run.npz", run_id="a", metrics_run_id="a")
    metrics = tmp_path / "run.json"
    before = metrics.read_bytes()
    assert holds_training_metrics(metrics)
    refused = invoke(evaluate_script, checkpoint, "--data-dir", data_dir, "--device", "cpu", "--json", metrics)
    assert_one_line_error(refused, f"error: --json {metrics} holds a run's training metrics (its epochs), and the "
                                   "report would replace them; give --json another path, or add --replace-metrics to "
                                   "replace them.")
    assert metrics.read_bytes() == before and refused.stdout == ""
    replaced = invoke(evaluate_script, checkpoint, "--data-dir", data_dir, "--device", "cpu", "--json", metrics,
                      "--replace-metrics")
    assert replaced.exit_code == 0, replaced.output
    report = json.loads(metrics.read_text())
    assert "confusion_matrix" in report and not holds_training_metrics(metrics)
    again = invoke(evaluate_script, checkpoint, "--data-dir", data_dir, "--device", "cpu", "--json", metrics)
    assert again.exit_code == 0, again.output  # an evaluation report may be written over


def test_plot_reads_a_metrics_file_defensively(data_dir, tmp_path):
    """Fields of the wrong type are left out with one warning line; NaN and infinity are left out without numpy's
    warnings (warnings are errors here, so one would fail the run)."""
    pytest.importorskip("matplotlib", reason="matplotlib is not installed; pip install -e .[plot]")
    checkpoint = save_run(tmp_path / "run.npz", json_too=False)
    metrics = tmp_path / "odd.json"
    metrics.write_text(json.dumps({"model": ["mlp"], "dataset": 7, "lr": "fast", "schedule": "onecycle", "epochs": [
        {"epoch": 1, "train_loss": "0.9", "train_accuracy": float("nan"), "test_accuracy": 0.5},
        {"epoch": 2, "train_loss": float("inf"), "train_accuracy": 0.6, "test_accuracy": [0.6]},
        "not a record",
        {"epoch": 3, "train_loss": 0.5, "train_accuracy": 0.7, "test_accuracy": 0.7, "lr_end": None}]}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = invoke(plot_script, checkpoint, "--metrics", metrics, "--data-dir", data_dir, "--device", "cpu",
                        "--out", tmp_path / "plots")
    assert result.exit_code == 0, (result.output, result.exception)
    assert result.stderr.splitlines() == [
        f"warning: {metrics}: left out what is not of the kind train.py writes: model (a list), dataset (a number), "
        "lr (text), epochs[0].train_loss (text), epochs[1].test_accuracy (a list) and 1 more.",
        f"warning: --metrics {metrics} is not from the run of {checkpoint} (its epochs are not those the checkpoint's "
        "run recorded); its curves are drawn as asked."]
    assert (tmp_path / "plots" / "training_curves.png").stat().st_size > 1000


# ---------------------------------------------------------------------------------------------- unreadable files


@pytest.fixture
def unreadable(monkeypatch):
    """Make paths unreadable as mode 000 makes them for a user without the right, also for root (who reads
    anything): os.access says no (what click's readable check asks), and opening them raises PermissionError."""
    denied = set()
    real_open, real_access = builtins.open, os.access

    def fake_open(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and os.path.abspath(file) in denied:
            raise PermissionError(13, "Permission denied", os.fspath(file))
        return real_open(file, *args, **kwargs)

    def fake_access(path, mode, *args, **kwargs):
        if os.path.abspath(path) in denied:
            return False
        return real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(os, "access", fake_access)
    return lambda path: denied.add(os.path.abspath(path)) or path


@pytest.mark.parametrize("script", ["evaluate", "predict", "plot"])
def test_an_unreadable_checkpoint_is_one_line_and_exit_1(script, data_dir, tmp_path, unreadable):
    checkpoint = unreadable(save_run(tmp_path / "run.npz", json_too=False))
    module = {"evaluate": evaluate_script, "predict": predict_script, "plot": plot_script}[script]
    extra = [digit_image(tmp_path / "seven.png")] if script == "predict" else ["--data-dir", data_dir]
    if script == "plot":
        pytest.importorskip("matplotlib", reason="matplotlib is not installed; pip install -e .[plot]")
    result = invoke(module, checkpoint, *extra, "--device", "cpu")
    assert_one_line_error(result, f"error: {checkpoint} cannot be read (Permission denied); check its permissions.")


def test_an_unreadable_picture_or_metrics_file_is_one_line_and_exit_1(data_dir, tmp_path, unreadable):
    checkpoint = save_run(tmp_path / "run.npz", json_too=False)
    picture = unreadable(digit_image(tmp_path / "seven.png"))
    result = invoke(predict_script, checkpoint, picture, "--device", "cpu")
    assert_one_line_error(result, f"error: {picture} cannot be read (Permission denied); check its permissions.")
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"epochs": HISTORY}))
    unreadable(metrics)
    pytest.importorskip("matplotlib", reason="matplotlib is not installed; pip install -e .[plot]")
    result = invoke(plot_script, checkpoint, "--metrics", metrics, "--data-dir", data_dir, "--out", tmp_path / "p")
    assert_one_line_error(result, f"error: --metrics {metrics} cannot be read (Permission denied); pass the file")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file of mode 000; the patched test above stands in")
def test_a_checkpoint_of_mode_000_is_one_line_and_exit_1(tmp_path):
    checkpoint = save_run(tmp_path / "run.npz", json_too=False)
    checkpoint.chmod(0)
    result = invoke(predict_script, checkpoint, digit_image(tmp_path / "seven.png"), "--device", "cpu")
    assert_one_line_error(result, f"error: {checkpoint} cannot be read (Permission denied)")


# ---------------------------------------------------------------------------------------------- predict --show


def test_predict_show_writes_each_prepared_picture_beside_its_answer(tmp_path):
    from PIL import Image

    checkpoint = save_run(tmp_path / "model.npz", json_too=False)
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    pictures = [digit_image(first / "seven.png"), digit_image(second / "seven.png")]
    (tmp_path / "seen").mkdir()
    digit_image(tmp_path / "seen" / "seven.png")
    result = invoke(predict_script, checkpoint, *pictures, "--device", "cpu", "--show", tmp_path / "seen")
    assert result.exit_code == 0, result.output
    shown = tmp_path / "seen"
    assert result.stdout.splitlines()[-1] == f"--show: 2 prepared pictures, each beside its answer, in {shown}"
    names = sorted(path.name for path in (tmp_path / "seen").iterdir())
    assert names == ["seven-as-seen-2.png", "seven-as-seen.png", "seven.png"]
    with Image.open(tmp_path / "seen" / "seven-as-seen.png") as shown:
        pixels = numpy.asarray(shown.convert("L"))
    from nets.data.digits import load_picture

    prepared = load_picture(pictures[0], "digits")
    expected = numpy.rint(prepared * 255)
    numpy.testing.assert_array_equal(pixels[:224:8, :224:8], expected)  # the 28x28, each pixel an 8x8 square
    assert pixels.shape[1] > 224 and (pixels[:, 224:] < 128).any()  # the answer written beside it
    mine = tmp_path / "seen" / "seven-as-seen.png"  # a picture of the user's where --show would write
    before = mine.read_bytes()
    over = invoke(predict_script, checkpoint, tmp_path / "seen" / "seven.png", mine, "--device", "cpu", "--show",
                  tmp_path / "seen")
    assert over.exit_code == 1 and over.stderr.splitlines()[-1] == (
        f"error: --show {mine} is the picture {mine}, and writing there would replace it; give --show another path.")
    assert mine.read_bytes() == before


def test_predict_prepare_none_takes_a_prepared_picture_as_it_is(tmp_path):
    from nets.data.digits import load_picture
    from PIL import Image

    image = numpy.zeros((28, 28), dtype=numpy.uint8)
    image[3:9, 20:27] = 200  # off-centre, not 20 pixels: any preparation but none would move or scale it
    Image.fromarray(image).save(tmp_path / "prepared.png")
    numpy.testing.assert_array_equal(load_picture(tmp_path / "prepared.png", "none"), image / numpy.float32(255))
    checkpoint = save_run(tmp_path / "model.npz", json_too=False)
    result = invoke(predict_script, checkpoint, tmp_path / "prepared.png", "--device", "cpu", "--prepare", "none")
    assert result.exit_code == 0 and result.stdout.splitlines()[1] == (
        "pictures: taken as they are: their grey levels, resized to 28x28 if need be, never inverted (as --prepare "
        "none says)")


# ---------------------------------------------------------------------------------------------- memory


@pytest.mark.slow
def test_evaluate_at_its_defaults_scores_10000_images_in_little_memory(tmp_path):
    """What evaluate.py allocates (traced: numpy reports its arrays to tracemalloc, so the figure does not depend on
    the machine) for a CNN on 10,000 test images at its defaults stays under 150 MB, so the whole process stays under
    300 MB with the interpreter and libraries; at a batch of 1,000 it was 750 MB."""
    data = write_dataset(tmp_path / "mnist", n_train=100, n_test=10_000, seed=0)
    checkpoint = save_run(tmp_path / "cnn.npz", model="cnn", json_too=False)
    results = []
    peak = peak_of(lambda: results.append(invoke(evaluate_script, checkpoint, "--data-dir", data, "--device", "cpu")))
    assert results[0].exit_code == 0, results[0].output
    assert "(10000 images" in results[0].stdout or "/10000)" in results[0].stdout
    assert peak < 150 * 2**20, f"{peak / 2**20:.0f} MB"
