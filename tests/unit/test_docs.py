"""The docs describe the code as it is: the code map, the configuration reference, the links.

Runnable code blocks of README.md and docs/ are run against a real cluster
by tests/integration/test_readme.py; these checks need no cluster.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.readme_blocks import runnable_blocks

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
REFERENCE = [sys.executable, str(ROOT / "scripts" / "config_reference.py"), "--check"]
CODE_MAP_LINE = re.compile(r"^- `([^`]+)` — \S")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def code_map() -> list[str]:
    """The paths of the code map in docs/architecture.md, in order."""
    text = (DOCS / "architecture.md").read_text()
    section = text.split("\n## Code map\n", 1)[1].split("\n## ", 1)[0]
    return [m[1] for line in section.splitlines() if (m := CODE_MAP_LINE.match(line))]


def test_every_path_in_the_code_map_exists_once() -> None:
    paths = code_map()
    assert len(paths) > 50
    assert [p for p in paths if not (ROOT / p).exists()] == []
    assert len(set(paths)) == len(paths), "a path listed twice"


def test_every_module_of_the_package_is_in_the_code_map() -> None:
    modules = {str(p.relative_to(ROOT)) for p in (ROOT / "gossip_registry").rglob("*.py")}
    assert sorted(modules - set(code_map())) == []


def test_the_configuration_reference_is_what_the_code_generates() -> None:
    done = subprocess.run(REFERENCE, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_configuration_reference_that_drifted_from_the_code_is_refused(tmp_path: Path) -> None:
    page = tmp_path / "configuration.md"
    text = (DOCS / "configuration.md").read_text()
    page.write_text(
        text.replace("| `probe_interval` | duration |", "| `probe_interval` | integer |")
    )
    done = subprocess.run(
        [*REFERENCE, "--doc", str(page)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 1
    assert "+| `probe_interval` | duration |" in done.stdout


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    outside_code = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {slug(m[1]) for m in re.finditer(r"^#{1,6} (.+)$", outside_code, flags=re.M)}


@pytest.mark.parametrize("page", [ROOT / "README.md", *PAGES], ids=lambda p: p.name)
def test_every_relative_link_reaches_a_file_and_heading_that_exist(page: Path) -> None:
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # a URL
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists() or (anchor and anchor not in anchors(file)):
            broken.append(target)
    assert broken == []


def test_the_readme_and_the_docs_index_link_every_page_and_blocks_are_well_formed() -> None:
    readme, index = (ROOT / "README.md").read_text(), (DOCS / "README.md").read_text()
    assert [p.name for p in PAGES if f"(docs/{p.name})" not in readme] == []
    assert [p.name for p in PAGES if f"({p.name})" not in index and p.name != "README.md"] == []
    for page in [ROOT / "README.md", *PAGES]:
        runnable_blocks(page.read_text())  # raises on a malformed block
