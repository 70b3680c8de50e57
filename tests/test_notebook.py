"""notebooks/course.ipynb: kept without outputs in git, and every cell runs (nbclient, a fresh kernel, on the CPU)
to the end, in well under the three minutes it may take on two cores."""

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "course.ipynb"


def test_the_notebook_is_kept_without_outputs():
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    code = [cell for cell in cells if cell["cell_type"] == "code"]
    assert len(code) >= 8
    assert all(cell["outputs"] == [] and cell["execution_count"] is None for cell in code)


def test_the_notebook_tells_the_course_story():
    text = "\n".join("".join(cell["source"]) for cell in json.loads(NOTEBOOK.read_text())["cells"])
    for wanted in ("load_dataset(", "Linear(", "build_reference_model(", "TorchEngine(", "fit(",
                   "training_curves_figure(", "confusion_matrix_figure(", "load_picture(", '"gpu"'):
        assert wanted in text, wanted


@pytest.mark.slow
def test_every_cell_runs(tmp_path):
    nbformat = pytest.importorskip("nbformat", reason="the test extra installs nbformat (pip install -e .[test])")
    nbclient = pytest.importorskip("nbclient", reason="the test extra installs nbclient (pip install -e .[test])")
    pytest.importorskip("ipykernel", reason="the test extra installs ipykernel (pip install -e .[test])")
    pytest.importorskip("torch", reason="the notebook trains the PyTorch twin; pip install -e .[test]")
    pytest.importorskip("matplotlib", reason="the notebook draws; pip install -e .[plot]")
    from nets.data.datasets import DataError, load_dataset

    try:
        load_dataset("mnist", download=False)
    except DataError:
        try:
            load_dataset("fashion-mnist", download=False)
        except DataError:
            pytest.skip("neither MNIST nor Fashion-MNIST is here (apt-get install dataset-fashion-mnist)")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()
    printed = "".join(output.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                      for output in cell.outputs if output.get("output_type") == "stream")
    assert "largest difference between backward and the finite difference" in printed
    assert "mlp nets :" in printed and "cnn torch:" in printed and "CNN test accuracy" in printed
    images = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs
              if "image/png" in output.get("data", {})]
    assert len(images) >= 4  # the pictures, the curves, the confusion matrix, the prediction
