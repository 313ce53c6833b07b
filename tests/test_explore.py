"""`vizprobe explore`: the static unit explorer, checked against the scan and scores it shows, with bad input,
a missing photo, and in a real browser (Chromium via Playwright): no console errors or failed requests, the
filter, every link, and axe-core's accessibility rules."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import pandas as pd
import pytest
from conftest import need_service
from PIL import Image

from vizprobe.cli import main
from vizprobe.errors import VizprobeError
from vizprobe.explore import ExploreSettings, explore
from vizprobe.score.exemplar import ScoreSettings
from vizprobe.score.layers import score_layers

pytestmark = pytest.mark.slow

SMALL = ScoreSettings(references=3, tasks=6, pool=8)
LAYERS = ["_blocks.2", "_blocks.5"]
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def scores(photo_scan, tmp_path_factory):
    out = tmp_path_factory.mktemp("scores") / "scores"
    score_layers([photo_scan[0]], ["_blocks.2"], out, SMALL, device="cpu", progress=False)
    return out


@pytest.fixture(scope="module")
def site(photo_scan, scores, visualizations, stimulus_package, tmp_path_factory):
    out = tmp_path_factory.mktemp("site") / "site"
    record = explore(
        photo_scan[0],
        out,
        scores,
        visualizations=[visualizations],
        stimuli=stimulus_package,
        layers=LAYERS,
        settings=ExploreSettings(exemplars=5),
        progress=False,
    )
    return out, record


def test_the_index_lists_every_unit_by_score(photo_scan, scores, site):
    out, record = site
    assert record["units"] == 24 + 80 and record["missing"] == []
    index = (out / "index.html").read_text()
    rows = re.findall(r'<tr data-layer="([^"]+)" data-unit="([^ "]+) [^"]*" data-score="([^"]*)"', index)
    assert len(rows) == 104
    expected = pd.read_csv(scores / "scores.csv").sort_values("score", ascending=False, kind="stable")
    first_layer = [(unit, float(score)) for layer, unit, score in rows if layer == "_blocks.2"]
    assert [u for u, _ in first_layer] == list(expected["unit"])
    assert [s for _, s in first_layer] == pytest.approx(list(expected["score"]), abs=1e-4)
    assert all(score == "" for layer, _, score in rows if layer == "_blocks.5")  # not scored: no score shown
    assert 'role="img" aria-label="scores of _blocks.2: 24 values' in index


def test_a_unit_page_shows_its_exemplars_visualizations_and_sweeps(photo_scan, site, visualizations):
    scan = photo_scan[0]
    out, _ = site
    page = (out / "units" / "_blocks.5_0010.html").read_text()
    for rank, exemplar in enumerate(scan.top("_blocks.5:10", 5), start=1):
        assert f"#{rank}: {exemplar.activation:.3g}</figcaption>" in page
        assert f'src="../img/p/{exemplar.index}.jpg"' in page
    bottom = scan.bottom("_blocks.5:10", 5)
    assert f'src="../img/p/{bottom[0].index}.jpg"' in page and f"#1: {bottom[0].activation:.3g}" in page
    index = json.loads((visualizations / "visualizations.json").read_text())
    entry = next(e for e in index["units"] if e["unit"] == "_blocks.5:10")
    shown = re.findall(r'src="\.\./img/v/[^/]+/_blocks\.5_0010-(\d+)\.jpg"', page)
    assert len(shown) == len(entry["images"])
    assert page.count("occlusion heatmap of _blocks.5:10") == 2  # the package's two main queries (exact sweeps)
    assert 'aria-label="activation of _blocks.5:10 over ' in page
    assert '<a href="../units/_blocks.5_0009.html" rel="prev">previous: _blocks.5:9</a>' in page
    assert '<a href="../units/_blocks.5_0011.html" rel="next">next: _blocks.5:11</a>' in page
    # every image once: one thumbnail per distinct exemplar of all pages, each at most 128 px (full: 512)
    wanted = set()
    for layer, channels in (("_blocks.2", 24), ("_blocks.5", 80)):
        for c in range(channels):
            wanted |= {e.index for e in scan.top(f"{layer}:{c}", 5) + scan.bottom(f"{layer}:{c}", 5)}
    thumbs = {int(p.stem) for p in (out / "img" / "p").glob("*.jpg") if not p.stem.endswith("-full")}
    assert thumbs == wanted
    some = next(iter(wanted))
    with (
        Image.open(out / "img" / "p" / f"{some}.jpg") as thumb,
        Image.open(out / "img" / "p" / f"{some}-full.jpg") as full,
    ):
        assert max(thumb.size) == 128 and max(full.size) <= 512


def test_bad_input(photo_scan, scores, tmp_path, small_scan):
    scan = photo_scan[0]
    with pytest.raises(VizprobeError, match="holds scores of .*, not of the scan"):
        explore(small_scan, tmp_path / "a", scores, progress=False)
    assert not (tmp_path / "a").exists()
    with pytest.raises(VizprobeError, match="layer '_blocks.99' is not in this scan"):
        explore(scan, tmp_path / "b", layers=["_blocks.99"], progress=False)
    forged = tmp_path / "forged"
    shutil.copytree(scores, forged)
    table = pd.read_csv(forged / "scores.csv")
    table.loc[0, "unit"] = "_blocks.2:999"
    table.to_csv(forged / "scores.csv", index=False)
    with pytest.raises(VizprobeError, match=r"name 1 units that are not in the scan \(_blocks.2:999\)"):
        explore(scan, tmp_path / "c", forged, progress=False)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.txt").write_text("keep")
    with pytest.raises(VizprobeError, match="exists and is not an explorer site; .* --force"):
        explore(small_scan, tmp_path / "taken", layers=["_blocks.1"], progress=False)
    assert (tmp_path / "taken" / "mine.txt").is_file()
    record = explore(small_scan, tmp_path / "taken", layers=["_blocks.1"], force=True, progress=False)
    assert record["units"] == 24 and not (tmp_path / "taken" / "mine.txt").exists()


@pytest.fixture(scope="module")
def small_scan(photo_files, tmp_path_factory):
    """A scan of 24 photos (copies), one of which is deleted after the scan."""
    from vizprobe.scan import scan

    root = tmp_path_factory.mktemp("small")
    (root / "photos").mkdir()
    for photo in photo_files[:24]:
        shutil.copy(photo, root / "photos" / photo.name)
    result, _ = scan("efficientnet-lite0", root / "photos", ["_blocks.1"], root / "run", device="cpu", progress=False)
    return result


def test_a_missing_photo_gets_a_placeholder_and_is_listed(small_scan, tmp_path, capsys):
    lost = small_scan.top("_blocks.1:0", 1)[0].path
    kept = lost.read_bytes()
    lost.unlink()
    try:
        code = main(["-q", "explore", str(small_scan.run_dir), "--layers", "_blocks.1", "--out", str(tmp_path / "s")])
    finally:
        lost.write_bytes(kept)
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "1 image files could not be read" in printed.out and str(lost) in printed.out
    page = (tmp_path / "s" / "units" / "_blocks.1_0000.html").read_text()
    assert "(file missing)" in page
    assert str(lost) in (tmp_path / "s" / "index.html").read_text()


def _local_links(page) -> list[str]:
    """Every file the page links to or loads (data: URLs, such as the empty icon, are not files)."""
    selector, script = "a[href], img[src], link[href], script[src]", "els => els.map(e => e.href || e.src)"
    return [link for link in page.eval_on_selector_all(selector, script) if not link.startswith("data:")]


@pytest.fixture
def static_host(site):
    """The site served by a plain static HTTP server (as any static host would), on a free port."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(site[0]))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_the_site_in_a_browser(site, static_host):
    """From the file system: no console errors or failed requests, the filter works, every link resolves. From a
    static host: the same, and axe-core finds no serious or critical accessibility violation (axe reads the
    stylesheets over HTTP, which a file:// page does not allow it)."""
    need_service(CHROMIUM.is_file(), "/usr/bin/chromium absent: apt-get install chromium")
    from axe_playwright_python.sync_playwright import Axe
    from playwright.sync_api import sync_playwright

    out, _ = site
    errors, failed, checked = [], [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        page = browser.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        # a lazy image still loading when the test moves to the next page is aborted (net::ERR_ABORTED): not a
        # failure of the site; a missing file is net::ERR_FILE_NOT_FOUND (or a 404 over HTTP)
        page.on("requestfailed", lambda r: None if "ERR_ABORTED" in (r.failure or "") else failed.append(r.url))
        page.goto((out / "index.html").as_uri())
        assert page.locator("#f-count").inner_text() == "104 of 104 units"
        page.select_option("#f-layer", "_blocks.2")
        assert page.locator("#f-count").inner_text() == "24 of 104 units"
        page.fill("#f-min", "0.9")
        visible = page.locator("table.units tbody tr:visible")
        scores = [float(s) for s in visible.evaluate_all("rows => rows.map(r => r.dataset.score)")]
        assert scores and min(scores) >= 0.9
        assert len(scores) == int(page.locator("#f-count").inner_text().split()[0])
        page.fill("#f-min", "0")
        page.fill("#f-unit", "_blocks.2:7")
        assert page.locator("#f-count").inner_text() == "1 of 104 units"
        pages = ["index.html", "units/_blocks.5_0010.html", "units/_blocks.2_0000.html"]
        for name in pages:
            page.goto((out / name).as_uri())
            page.wait_for_load_state("networkidle")
            for link in _local_links(page):
                target = Path(unquote(urlparse(link).path))
                assert target.is_file(), f"{name} links to missing {target}"
                checked.append(target)
        assert not errors and not failed, (errors, failed)
        for name in pages:
            page.goto(f"{static_host}/{name}")
            page.wait_for_load_state("networkidle")
            results = Axe().run(page)
            serious = [v for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
            assert not serious, [(v["id"], v["help"], len(v["nodes"])) for v in serious]
        browser.close()
    assert len(checked) > 50
    assert not errors and not failed, (errors, failed)
