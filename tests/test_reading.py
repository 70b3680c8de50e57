"""docs/reading.md teaches by running code: every Python block on the page runs here, in order, in one namespace,
and prints what the page shows under it. A percentage may differ by half a point (another BLAS rounds the last
bits of a product differently, and training carries that a little apart); everything else must match exactly."""

import contextlib
import io
import re
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[1] / "docs" / "reading.md"
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.S)
PERCENT = re.compile(r"(-?\d+(?:\.\d+)?)%")
PERCENT_TOLERANCE = 0.5


def blocks():
    """[(python source, the text shown under it, or None)] in page order."""
    found = [(match.group(1), match.group(2), match.end(), match.start()) for match in BLOCK.finditer(PAGE.read_text())]
    pairs = []
    for index, (language, body, end, _) in enumerate(found):
        if language != "python":
            continue
        following = found[index + 1] if index + 1 < len(found) else None
        shown = (following[1] if following and following[0] == "text"
                 and not PAGE.read_text()[end:following[3]].strip() else None)
        pairs.append((body, shown))
    return pairs


def same_output(printed: str, shown: str) -> bool:
    if PERCENT.sub("%", printed) != PERCENT.sub("%", shown):
        return False
    return all(abs(float(ours) - float(theirs)) <= PERCENT_TOLERANCE
               for ours, theirs in zip(PERCENT.findall(printed), PERCENT.findall(shown)))


def test_the_page_has_the_blocks_it_promises():
    sources = [source for source, _ in blocks()]
    assert len(sources) >= 6 and all(shown is not None for _, shown in blocks())
    assert any("im2col(image, 3, 3)" in source for source in sources)
    assert any("optimizer.step(model.gradients())" in source for source in sources)


def test_every_block_prints_what_the_page_shows():
    namespace = {}
    for source, shown in blocks():
        if "load_dataset(" in source:
            from nets.data.datasets import DataError, load_dataset

            try:
                load_dataset("fashion-mnist", download=False)
            except DataError:
                pytest.skip("Fashion-MNIST is not here (apt-get install dataset-fashion-mnist): the blocks before "
                            "the training loop ran and matched")
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(source, str(PAGE), "exec"), namespace)
        assert same_output(printed.getvalue(), shown), f"{source}\nprinted:\n{printed.getvalue()}\nshown:\n{shown}"


def test_the_tolerance_is_for_percentages_only():
    assert same_output("accuracy 84.4%\n", "accuracy 84.2%\n")
    assert not same_output("accuracy 85.0%\n", "accuracy 84.2%\n")
    assert not same_output("backward 0.01682956\n", "backward 0.01682955\n")
