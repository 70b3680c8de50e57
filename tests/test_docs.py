"""The README is a user's manual of about 160 lines, and neither it nor docs/ tells how the project was developed;
every link between them resolves; every command they print works as printed after the two set-up commands (each
runs `.venv/bin/python`); the course notebook has one name; the project has the licence setup.cfg names."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# words of a development log, not of a manual: issue numbers, sessions, reworks, testers, machines lent
HISTORY = re.compile(r"\bissues? #?\d+|\bsessions?\b|\brework|\bwas lent\b|\ba tester\b|\bthe recipe until now\b|"
                     r"\bbefore the\b.*\b(change|rework|session)", re.IGNORECASE)


def test_the_readme_is_a_manual_of_about_160_lines():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 170, len(lines)
    headings = [line for line in lines if line.startswith("## ")]
    for wanted in ("## Two commands", "## The command line", "## Data", "## Results", "## Layout", "## Tests"):
        assert wanted in headings, headings


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_no_page_tells_how_the_project_was_developed(page):
    found = [line.strip() for line in page.read_text().splitlines() if HISTORY.search(line)]
    assert not found, found


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_local_link_resolves(page):
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", page.read_text()):
        if "://" not in target:
            assert (page.parent / target).exists(), f"{page.name} links to {target}, which is missing"


def code_of(page: Path) -> str:
    """The commands a page prints: its fenced code blocks and its inline code spans."""
    text = page.read_text()
    blocks = re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)
    spans = re.findall(r"`([^`]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
    return "\n".join(blocks + spans)


# `python scripts/x.py`, `python -m pytest`, `python - <<EOF`, `pip install ...` run by whatever Python is first on
# PATH: outside an activated .venv that lacks the project's packages (a traceback). `python3 -m venv` makes .venv.
BARE_PYTHON = re.compile(r"(?<![/\w.-])(python3?\s+(?!-m venv\b)(scripts/|-m\b|-c\b|-\s)|(?<!-m )pip3?\s+install\b)")


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_command_runs_the_checkouts_python(page):
    bare = [line.strip() for line in code_of(page).splitlines() if BARE_PYTHON.search(line)]
    assert not bare, bare


def test_the_next_steps_after_make_train_name_no_dataset_of_their_own():
    """Where MNIST downloads, make train writes runs/mnist-cnn-nets.npz, elsewhere runs/fashion-mnist-...: the next
    steps must work with either, so they take the newest checkpoint instead of naming one."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Two commands"):text.index("## The command line")]
    steps = [line for line in section.splitlines() if re.search(r"scripts/(evaluate|predict|plot)\.py", line)]
    assert len(steps) == 3 and not any("runs/" in line or ".npz" in line for line in steps), steps


def test_the_course_notebook_is_introduced_once_and_named_alike_everywhere():
    readme = (ROOT / "README.md").read_text()
    assert "is a university course's notebook: a per-sample\nNumPy MLP 784-128-64-10" in readme
    for page in PAGES:
        prose = re.sub(r"`[^`]*`", "", re.sub(r"```.*?```", "", page.read_text(), flags=re.S))
        others = [match.group(0) for match in re.finditer(r"(\S+\s+)?notebook", prose, re.IGNORECASE)
                  if not re.match(r"course('s)?\s", match.group(1) or "", re.IGNORECASE)]
        assert not others, (page.name, others)  # the recipe is `notebook`, in code


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_the_openblas_prefix_is_explained_where_it_appears(page):
    text = page.read_text()
    if "env -u OPENBLAS_CORETYPE" in text:
        prose = re.sub(r"`[^`]*`", "", re.sub(r"```.*?```", "", text, flags=re.S))
        assert re.search(r"OpenBLAS[^.]*(slower|kernel)", prose), page.name


def test_the_licence_is_the_one_setup_cfg_names():
    licence = (ROOT / "LICENSE").read_text()
    assert re.search(r"^license = MIT$", (ROOT / "setup.cfg").read_text(), re.MULTILINE)
    assert licence.startswith("MIT License") and "Copyright (c)" in licence and "the nets authors" in licence
    assert "THE SOFTWARE IS PROVIDED \"AS IS\"" in licence
