"""benchmarks/bench_loco_table.py refuses bad arguments before loading any model (argparse errors name the value)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_loco_table.py"
_spec = importlib.util.spec_from_file_location("bench_loco_table", _PATH)
bench = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = bench
_spec.loader.exec_module(bench)


@pytest.mark.parametrize("argv, message", [
    (["--methods", "loco,nope"], "--methods must list methods among"),
    (["--methods", ","], "--methods must list methods among"),
    (["--target", "0"], "--target (the main-factor change λ-by-target aims at) must be positive; got 0.0"),
    (["--images", "2", "--transfers", "2"], "--images (2) must exceed --transfers (2)"),
])
def test_bad_arguments_fail_before_any_model_work(argv, message, capsys, monkeypatch):
    def no_model(*a, **k):
        raise AssertionError("a model was loaded before the arguments were checked")

    monkeypatch.setattr(bench, "load_model", no_model)
    with pytest.raises(SystemExit) as e:
        bench.main(argv)
    assert e.value.code == 2
    assert message in capsys.readouterr().err
