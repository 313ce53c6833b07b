"""Build hook: the wheel and the sdist carry the participant page (src/vizprobe/experiment/static/).

The page is built from frontend/ with Node and npm when they are present and the built page is missing or older
than its sources; without Node an already built page is used (an sdist carries one), and with neither the build
stops with a message saying what to install, rather than shipping a server without its page.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

ROOT = Path(__file__).resolve().parent
FRONTEND = ROOT / "frontend"
STATIC = ROOT / "src" / "vizprobe" / "experiment" / "static"
STAMP = STATIC / "index.html"  # written last by frontend/build.mjs


def _sources() -> list[Path]:
    names = ["package.json", "package-lock.json", "build.mjs"]
    return [FRONTEND / n for n in names if (FRONTEND / n).is_file()] + sorted((FRONTEND / "src").glob("*"))


def _stale() -> bool:
    if not STAMP.is_file():
        return True
    built = STAMP.stat().st_mtime
    return any(p.stat().st_mtime > built for p in _sources())


def build_page() -> None:
    """Build the participant page when it is missing or older than frontend/ and npm is at hand."""
    has_sources = (FRONTEND / "package.json").is_file()
    npm = shutil.which("npm")
    if has_sources and npm and _stale():
        if not (FRONTEND / "node_modules").is_dir():
            subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=FRONTEND, check=True)
        subprocess.run([npm, "run", "build"], cwd=FRONTEND, check=True)
    if not STAMP.is_file():
        raise SystemExit(
            "vizprobe: the participant page (src/vizprobe/experiment/static/) is not built and npm is not on PATH: "
            "install Node >= 18 with npm (https://nodejs.org) and build again, or build from an sdist that "
            "carries the page"
        )


class BuildPyWithPage(build_py):
    def run(self) -> None:
        build_page()
        super().run()


class SdistWithPage(sdist):
    def run(self) -> None:
        build_page()
        super().run()


setup(cmdclass={"build_py": BuildPyWithPage, "sdist": SdistWithPage})
