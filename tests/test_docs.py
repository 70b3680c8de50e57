"""The README is a user's manual of about 150 lines, and neither it nor docs/ tells how the project was developed;
every link between them resolves."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# words of a development log, not of a manual: issue numbers, sessions, reworks, testers, machines lent
HISTORY = re.compile(r"\bissues? #?\d+|\bsessions?\b|\brework|\bwas lent\b|\ba tester\b|\bthe recipe until now\b|"
                     r"\bbefore the\b.*\b(change|rework|session)", re.IGNORECASE)


def test_the_readme_is_a_manual_of_about_150_lines():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 160, len(lines)
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
