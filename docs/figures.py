"""Make the pictures of README.md and docs/ from a run of the demo, so that none goes stale.

    python docs/figures.py [--demo DIR]      # `make figures`; runs `vizprobe demo --out DIR` when DIR is missing

Writes docs/img/demo-overview.png, demo-accuracy.png, demo-sheet-blocks8-12.png, trial-synthetic.png (copied from
the demo's outputs), instructions.jpg (instruction page 3 of the demo's study, served and photographed in
headless Chromium) and explorer-index.jpg, explorer-unit.jpg (the demo's unit explorer, photographed there too).
The methods picture comes from `python benchmarks/methods.py picture docs/img/methods.jpg`;
the pictures of docs/own-method.md from the commands shown on that page.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from PIL import Image

IMG = Path(__file__).resolve().parent / "img"
CHROMIUM = "/usr/bin/chromium"
COPIED = {
    "overview.png": "demo-overview.png",
    "report/figures/accuracy.png": "demo-accuracy.png",
    "sheets/_blocks.8_0012.png": "demo-sheet-blocks8-12.png",
    "stimuli/inspect/trial_synthetic.png": "trial-synthetic.png",
}


def copy_demo_pictures(demo: Path) -> None:
    for source, name in COPIED.items():
        shutil.copyfile(demo / source, IMG / name)
        print(f"wrote docs/img/{name}  (from {demo / source})")


def instruction_picture(stimuli: Path, out: Path, port: int = 8765) -> None:
    """Instruction page 3 (the example images) of the first session of a study of `stimuli`: the server hands the
    first participant the first condition alphabetically, `blur` in a five-condition package."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        serve = ["serve", "--stimuli", str(stimuli), "--db", f"{tmp}/study.db", "--port", str(port)]
        command = [sys.executable, "-m", "vizprobe.cli", *serve]
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/api/config", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox"])
                page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
                page.goto(f"http://127.0.0.1:{port}/")
                page.get_by_role("button", name="I agree").click()
                for _ in range(3):  # the welcome page, instruction pages 1 and 2
                    page.get_by_role("button", name="Next >").click()
                page.locator(".vp-illustration img").first.wait_for()
                page.wait_for_timeout(500)
                shot = Path(tmp) / "page.png"
                page.screenshot(path=str(shot))
                browser.close()
            Image.open(shot).convert("RGB").crop((250, 80, 1030, 710)).save(out, quality=82)
            print(f"wrote {out}")
        finally:
            server.terminate()
            server.wait(timeout=10)


def explorer_pictures(site: Path, unit: str = "_blocks.8_0012") -> None:
    """The explorer's index (top of the page) and one unit's page, as a reader sees them."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox"])
        page = browser.new_context(viewport={"width": 1100, "height": 760}).new_page()
        for url, name, full in (
            ("index.html", "explorer-index.jpg", False),
            (f"units/{unit}.html", "explorer-unit.jpg", True),
        ):
            page.goto((site / url).resolve().as_uri())
            page.wait_for_timeout(300)
            shot = Path(tmp) / "page.png"
            page.screenshot(path=str(shot), full_page=full)
            image = Image.open(shot).convert("RGB")
            if full:
                image = image.crop((0, 0, image.width, min(image.height, 1290)))
            image.save(IMG / name, quality=80)
            print(f"wrote docs/img/{name}")
        browser.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", default="demo-output", help="a `vizprobe demo` output folder (made when missing)")
    args = parser.parse_args()
    demo = Path(args.demo)
    if not (demo / "report" / "results.json").is_file():
        subprocess.run([sys.executable, "-m", "vizprobe.cli", "demo", "--out", str(demo)], check=True)
    copy_demo_pictures(demo)
    instruction_picture(demo / "stimuli", IMG / "instructions.jpg")
    if not (demo / "explorer" / "index.html").is_file():  # a demo run from before the explorer was part of it
        vizprobe = [sys.executable, "-m", "vizprobe.cli", "-q"]
        scores = ["score", "--scan", str(demo / "scan"), "--layers", "all", "--out", str(demo / "scores")]
        subprocess.run([*vizprobe, *scores], check=True)
        site = ["explore", str(demo / "scan"), str(demo / "scores"), "--visualizations", str(demo / "visualizations")]
        subprocess.run([*vizprobe, *site, "--out", str(demo / "explorer")], check=True)
    explorer_pictures(demo / "explorer")
    return 0


if __name__ == "__main__":
    sys.exit(main())
