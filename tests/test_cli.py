"""The thin CLI: verbs call the API; bad input gives one line naming cause and fix."""

from __future__ import annotations

import json

import pandas as pd

from vizprobe.cli import main


def test_layers_json(capsys):
    assert main(["layers", "--model", "efficientnet-lite0", "--device", "cpu", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    layers = {row["path"]: row for row in data["layers"]}
    assert layers["_blocks.8"]["shape"][1:] == [14, 14]
    assert "block8" in layers["_blocks.8"]["aliases"]
    assert layers["_conv_head"]["shape"] == [1280, 7, 7]


def test_models_lists_zoo(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "efficientnet-lite0" in out and "googlenet" in out


def test_bad_layer_is_one_line_error(capsys, tmp_path, photos_dir):
    code = main(
        [
            "-q",
            "scan",
            "--device",
            "cpu",
            "--images",
            str(photos_dir),
            "--layers",
            "_blocks.88",
            "--out",
            str(tmp_path / "run"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "_blocks.8" in err and "close matches" in err
    assert not (tmp_path / "run").exists()


def test_scan_cli_with_sheet(capsys, tmp_path, subset_dir):
    folder = subset_dir(10)
    code = main(
        [
            "-q",
            "scan",
            "--device",
            "cpu",
            "--images",
            str(folder),
            "--layers",
            "_blocks.2",
            "--top-k",
            "5",
            "--sheet",
            "--out",
            str(tmp_path / "run"),
        ]
    )
    assert code == 0
    sheets = sorted((tmp_path / "run" / "sheets").glob("*.png"))
    assert len(sheets) == 24  # one per channel of _blocks.2
    assert "scanned 10 images" in capsys.readouterr().out


def test_demo_runs_end_to_end(tmp_path, capsys):
    args = ["-q", "demo", "--out", str(tmp_path / "demo"), "--device", "cpu", "--steps", "8", "--image-sets", "2"]
    assert main([*args, "--stride", "32", "--participants", "3"]) == 0
    assert len(list((tmp_path / "demo" / "sheets").glob("*.png"))) == 4
    from vizprobe.stimuli import Manifest

    manifest = Manifest.load(tmp_path / "demo" / "stimuli", check_images=True).data
    roles = [u["role"] for u in manifest["units"]]
    assert roles == ["main"] * 4 + ["catch"] * 3 + ["practice"] * 10  # the authors' practice pool of 10
    # 9 per unit (main, catch and practice units), and the separate batch of 4 for the mixed condition
    assert len(list((tmp_path / "demo" / "visualizations").glob("*/*.png"))) == len(roles) * (9 + 4)
    assert {t["condition"] for t in manifest["tasks"]} == {"synthetic", "natural", "mixed", "blur", "none"}
    assert (tmp_path / "demo" / "stimuli" / "inspect" / "trial_synthetic.png").is_file()
    out = capsys.readouterr().out
    assert "vizprobe serve --stimuli" in out
    results = json.loads((tmp_path / "demo" / "report" / "results.json").read_text())
    assert (tmp_path / "demo" / "report" / "report.html").is_file()
    assert set(results["accuracy"]) == {"synthetic", "natural", "mixed", "blur", "none"}  # simulated participants
    assert all(entry["n_participants"] >= 1 for entry in results["accuracy"].values())
    assert {"center", "variance", "saliency", "random", "oracle"} <= set(results["baselines"])
    assert results["baselines"]["oracle"]["accuracy"] == 1.0
    machines = set(results["observers"])
    assert any("similarity" in name for name in machines)
    labels = set(results["kappa"])
    assert any("similarity" in name for name in labels) and "natural" in labels  # machines beside humans
    units = 24 + 80 + 112 + 192  # every channel of the demo layers
    assert len(pd.read_csv(tmp_path / "demo" / "scores" / "scores.csv")) == units
    assert len(list((tmp_path / "demo" / "explorer" / "units").glob("*.html"))) == units
    assert "unit explorer" in out and (tmp_path / "demo" / "explorer" / "index.html").is_file()
    # the exemplar task: a package, simulated participants and a report with accuracy per unit
    exemplar = Manifest.load(tmp_path / "demo" / "exemplar")
    assert exemplar.task == "exemplar" and len(exemplar.units_of("main")) == 12
    by_unit = json.loads((tmp_path / "demo" / "exemplar-report" / "results.json").read_text())["accuracy_by_unit"]
    assert set().union(*map(set, by_unit.values())) == {u.unit for u in exemplar.units_of("main")}
    # the score validated against simulated people: each group ranks first the observer it was made from
    by_colour = json.loads((tmp_path / "demo" / "validation-colour" / "validation.json").read_text())
    by_embedder = json.loads((tmp_path / "demo" / "validation-embedder" / "validation.json").read_text())
    assert by_colour["colour"]["spearman"] > by_colour["machine"]["spearman"]
    assert by_embedder["machine"]["spearman"] > by_embedder["colour"]["spearman"]
