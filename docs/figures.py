"""Make the pictures of README.md and docs/ from a run of the demo, so that none goes stale.

    python docs/figures.py [--demo DIR]      # `make figures`; runs `vizprobe demo --out DIR` when DIR is missing

Writes docs/img/demo-overview.png, demo-accuracy.png, demo-sheet-blocks8-12.png, trial-synthetic.png (copied from
the demo's outputs) and instructions.jpg (instruction page 3 of the demo's study, served and photographed in
headless Chromium). The methods picture comes from `python benchmarks/methods.py picture docs/img/methods.jpg`;
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
        command = [sys.executable, "-m", "vizprobe.cli", "serve", "--stimuli", str(stimuli), "--db",
                   f"{tmp}/study.db", "--port", str(port)]  # fmt: skip
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", default="demo-output", help="a `vizprobe demo` output folder (made when missing)")
    args = parser.parse_args()
    demo = Path(args.demo)
    if not (demo / "report" / "results.json").is_file():
        subprocess.run([sys.executable, "-m", "vizprobe.cli", "demo", "--out", str(demo)], check=True)
    copy_demo_pictures(demo)
    instruction_picture(demo / "stimuli", IMG / "instructions.jpg")
    return 0


if __name__ == "__main__":
    sys.exit(main())
