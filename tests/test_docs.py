"""The documentation: the site builds with warnings as errors, README stays a front page, and no page speaks of
how the project was made."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import need_service

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "README.md"]


def test_the_site_builds_with_warnings_as_errors(tmp_path):
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or shutil.which("mkdocs")
    need_service(mkdocs is not None, "mkdocs absent: pip install -e '.[docs]'")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    built = subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    front = (tmp_path / "site" / "index.html").read_text()
    assert "A tour" in front and 'src="img/instructions.jpg"' in front  # README is the front page, links relative
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    assert "build_stimuli" in api and "ExclusionCriteria" in api  # generated from the docstrings


def test_readme_is_a_front_page_and_every_picture_exists():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    assert readme.index("make demo") < readme.index("## The pipeline")
    for page in PAGES:
        for target in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", page.read_text()):
            assert (page.parent / target).is_file(), f"{page.name}: missing picture {target}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_pages_speak_of_the_software_not_of_how_it_was_made(page):
    text = page.read_text().lower()
    for phrase in ("the issue", "this stop", "lent to", "none lent", "not drawn", "this session's"):
        assert phrase not in text, f"{page.name} says {phrase!r}"
