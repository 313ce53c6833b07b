"""Reading state dicts from local files (nothing is ever downloaded)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from vizprobe.errors import VizprobeError


def read_state_dict(path: str | Path, *, hint: str = "") -> dict[str, torch.Tensor]:
    """Load a state dict saved with `torch.save(model.state_dict(), PATH)`; unwrap common wrappers."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise VizprobeError(f"weights file {path} does not exist; {hint or 'pass --weights PATH to a state dict'}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise VizprobeError(
            f"cannot read weights {path} ({first[:120]}); save them with torch.save(model.state_dict(), PATH)"
        ) from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(torch.is_tensor(v) for v in obj.values()):
        raise VizprobeError(f"{path} is not a state dict; save one with torch.save(model.state_dict(), PATH)")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_weights(net: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load `state` strictly, with an error that names the first mismatching keys."""
    try:
        result = net.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        detail = next((ln.strip() for ln in str(exc).splitlines() if "size mismatch" in ln), str(exc)[:120])
        raise VizprobeError(
            f"weights {source} do not fit this architecture ({detail}); pass the state dict of the same model"
        ) from None
    problems = []
    if result.missing_keys:
        problems.append(f"missing {', '.join(result.missing_keys[:3])}")
    if result.unexpected_keys:
        problems.append(f"unexpected {', '.join(result.unexpected_keys[:3])}")
    if problems:
        raise VizprobeError(
            f"weights {source} do not fit this architecture ({'; '.join(problems)}); "
            "pass the state dict of the same model"
        )
