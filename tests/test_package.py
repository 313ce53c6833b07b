"""The distribution: a wheel built from the tracked files carries the participant page, installs where no Node is,
and its `vizprobe serve` serves the page; without Node and without a built page the build stops with a message."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import pytest
from conftest import free_port, need_service

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _clean_tree(dest: Path) -> Path:
    """The repository's tracked files only (what a fresh clone holds: no built page, no node_modules)."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def _build_wheel(tree: Path, out: Path, path_env: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": path_env}
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(out), str(tree)]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


def _without_node() -> str:
    """PATH with every folder that holds node or npm left out (the Python interpreter stays reachable)."""
    keep = [p for p in os.environ["PATH"].split(os.pathsep) if not any((Path(p) / n).exists() for n in ("node", "npm"))]
    return os.pathsep.join(keep)


def test_a_wheel_from_a_clean_tree_carries_the_page_and_serves_it_without_node(tmp_path, stimulus_package):
    need_service(shutil.which("npm") is not None, "npm absent: install Node >= 18 to build the participant page")
    tree = _clean_tree(tmp_path / "clone")
    assert not (tree / "src/vizprobe/experiment/static").exists()
    built = _build_wheel(tree, tmp_path / "dist", os.environ["PATH"])
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("vizprobe-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for page in ("index.html", "app.js", "app.css"):
        assert f"vizprobe/experiment/static/{page}" in names
    assert any(n.endswith("licenses/LICENSE") for n in names)

    # Installed on its own (its dependencies from this environment), run where neither node nor the source is.
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
    )
    env = {**os.environ, "PATH": _without_node(), "PYTHONPATH": str(site)}
    port, run = free_port(), tmp_path / "run"
    run.mkdir()
    where = subprocess.run(
        [sys.executable, "-c", "import vizprobe; print(vizprobe.__file__)"],
        cwd=run,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert where.startswith(str(site)), where
    command = [
        sys.executable,
        "-m",
        "vizprobe.cli",
        "serve",
        "--stimuli",
        str(stimulus_package),
        "--db",
        str(run / "study.db"),
        "--port",
        str(port),
    ]
    with (run / "serve.log").open("w") as log:
        server = subprocess.Popen(command, cwd=run, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except httpx.TransportError:
                assert server.poll() is None, (run / "serve.log").read_text()
                assert time.monotonic() < deadline, (run / "serve.log").read_text()
                time.sleep(0.2)
        assert page.status_code == 200 and 'id="vp-root"' in page.text
        script = httpx.get(f"http://127.0.0.1:{port}/static/app.js", timeout=5)
        assert script.status_code == 200 and "Welcome to this experiment!" in script.text
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_a_wheel_without_node_and_without_a_built_page_stops_with_a_message(tmp_path):
    tree = _clean_tree(tmp_path / "clone")
    built = _build_wheel(tree, tmp_path / "dist", _without_node())
    assert built.returncode != 0
    assert "participant page" in built.stdout + built.stderr and "install Node >= 18" in built.stdout + built.stderr
    assert not list((tmp_path / "dist").glob("*.whl"))
