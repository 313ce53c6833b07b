"""docs/own-model.md runs as written, and its model's scan agrees with a hand computation."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

DOC = Path(__file__).resolve().parents[1] / "docs" / "own-model.md"


def test_the_own_model_guide_runs_and_scans_correctly(tmp_path, monkeypatch, capsys):
    code = "\n".join(re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S))
    assert "register_model" in code
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, str(DOC), "exec"), namespace)  # noqa: S102 (the guide's own code)
    model, result = namespace["model"], namespace["result"]
    assert model.name == "tiny-net" and "conv2" in capsys.readouterr().out
    assert {layer.path: layer.aliases for layer in model.layers}["features.3"] == ("conv2",)
    from vizprobe.images import load_rgb

    images = torch.stack([model.preprocessing(load_rgb(result.root / name)) for name in result.images])
    with torch.no_grad():
        by_hand = model.net.features(images)[:, 5].mean(dim=(1, 2)).numpy()
    np.testing.assert_allclose(result.unit_activations("conv2:5"), by_hand, rtol=1e-4, atol=1e-5)
    strongest = np.argsort(-by_hand, kind="stable")[:3]
    assert [e.path.name for e in namespace["top"]] == [result.images[i] for i in strongest]
