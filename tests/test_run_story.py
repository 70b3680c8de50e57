"""What a run says about itself: a resumed partial epoch says how many images it covered, a resume keeps the output
options of the run it continues, every epoch records its test loss, and a run that learns nothing says so."""

import json

import pytest

from nets.train.loop import Lines, format_epoch
from test_train_cli import in_a_fresh_directory, run, tiny_data  # noqa: F401  (fixtures)


def test_a_resumed_partial_epoch_says_how_many_images_it_covered(tiny_data, tmp_path):
    common = ("--model", "mlp", "--data-dir", tiny_data, "--epochs", 2, "--batch-size", 32)
    cut = run(*common, "--save", tmp_path / "c.npz", "--stop-after-steps", 3)
    assert cut.exit_code == 130, cut.output
    resumed = run("--resume", tmp_path / "c.npz")
    assert resumed.exit_code == 0, resumed.output
    lines = [line for line in resumed.output.splitlines() if line.startswith("epoch ")]
    assert lines[0].startswith("epoch 1/2 (last 160 of 256 images)  loss "), lines  # 3 of 8 steps were done
    assert lines[1].startswith("epoch 2/2  loss "), lines


def test_format_epoch_of_a_whole_epoch_says_nothing_of_images():
    record = {"epoch": 1, "train_loss": 0.5, "train_accuracy": 0.8, "test_accuracy": 0.7, "seconds": 1.0,
              "images_per_second": 256.0}
    assert format_epoch(record, 2, 256).startswith("epoch 1/2  loss 0.5000")
    assert format_epoch({**record, "partial_epoch_images": 96}, 2, 256).startswith("epoch 1/2 (last 96 of 256 images)")


def test_a_resume_keeps_the_plots_and_the_metrics_path_of_the_run_it_continues(tiny_data, tmp_path):
    pytest.importorskip("matplotlib", reason="the plots need matplotlib (pip install -e .[plot])")
    metrics, plots = tmp_path / "elsewhere.json", tmp_path / "plots"
    cut = run("--model", "mlp", "--data-dir", tiny_data, "--epochs", 2, "--batch-size", 32, "--save",
              tmp_path / "c.npz", "--metrics-json", metrics, "--plot", plots, "--stop-after-steps", 3)
    assert cut.exit_code == 130, cut.output
    metrics.unlink()
    resumed = run("--resume", tmp_path / "c.npz", "--quiet")
    assert resumed.exit_code == 0, resumed.output
    written = json.loads(metrics.read_text())
    assert [record["epoch"] for record in written["epochs"]] == [1, 2]
    assert sorted(path.suffix for path in plots.iterdir()) and all(path.suffix == ".png" for path in plots.iterdir())
    assert not (tmp_path / "c.json").exists()  # the metrics went where the first run sent them


def test_every_epoch_records_its_test_loss(tiny_data, tmp_path):
    result = run("--model", "mlp", "--data-dir", tiny_data, "--epochs", 2, "--batch-size", 32, "--metrics-json",
                 tmp_path / "m.json", "--no-save", "--quiet")
    assert result.exit_code == 0, result.output
    epochs = json.loads((tmp_path / "m.json").read_text())["epochs"]
    assert all(0 < record["test_loss"] < 10 for record in epochs)


def test_a_run_at_chance_for_two_epochs_says_so_once():
    said = []
    lines = Lines(said.append)
    history = []
    for accuracy in (0.101, 0.095, 0.099, 0.6):
        history.append({"train_accuracy": accuracy})
        lines.warn_at_chance(history, 10)
    assert said == ["warning: the training accuracy has stayed at chance (9.50%, 1 in 10) for 2 epochs: the model is "
                    "not learning; try a smaller --lr."]


@pytest.mark.parametrize("accuracies", [(0.101, 0.35, 0.099), (0.13, 0.125), (0.5,)])
def test_a_run_that_learns_or_has_one_epoch_at_chance_says_nothing(accuracies):
    said = []
    lines = Lines(said.append)
    history = []
    for accuracy in accuracies:
        history.append({"train_accuracy": accuracy})
        lines.warn_at_chance(history, 10)
    assert said == []


def test_the_warning_reaches_the_run_output(tiny_data, monkeypatch):
    import nets.train.loop as loop

    monkeypatch.setattr(loop, "CHANCE_MARGIN", 1.0)  # every epoch counts as at chance: the line's path, not the maths
    result = run("--model", "mlp", "--data-dir", tiny_data, "--epochs", 3, "--batch-size", 64, "--no-save")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    warnings = [index for index, line in enumerate(lines) if line.startswith("warning: the training accuracy")]
    assert len(warnings) == 1 and lines[warnings[0] - 1].startswith("epoch 2/3"), result.output
