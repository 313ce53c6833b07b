"""A small run of the load test (benchmarks/load.py), so that it cannot go stale: simulated participants on MTurk
(the local stand-in) answer each practice round's own draw and every trial while the server and `crowd watch`
are SIGKILLed once midway; every acknowledged answer is stored once and every submission approved once."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

LOAD = Path(__file__).resolve().parents[1] / "benchmarks" / "load.py"

pytestmark = pytest.mark.slow


def test_load_run_loses_nothing_through_a_kill(stimulus_package, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("load_benchmark", LOAD)
    load = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = load  # its dataclasses look their module up
    spec.loader.exec_module(load)
    out = load.run(stimulus_package, participants=4, kill="app", kills=1, platform="mturk", workdir=tmp_path)
    printed = capsys.readouterr().out
    assert "killed (SIGKILL) 1 time(s)" in printed
    assert out["acked"] > 4 * 6 and out["stored"] == out["acked"]
    assert (out["lost"], out["duplicated"]) == (0, 0)
    assert (out["approved_once"], out["approved_twice"]) == (4, 0)
    assert out["open_places"] == out["free_tasks"]
