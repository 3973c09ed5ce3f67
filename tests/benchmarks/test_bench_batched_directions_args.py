"""benchmarks/bench_batched_directions.py refuses bad arguments, and an existing output, before loading any model."""
from __future__ import annotations

import pytest
from bench_loader import assert_keeps_existing_output, assert_refused, load_bench

bench = load_bench("bench_batched_directions")


@pytest.mark.parametrize("argv, message", [
    (["--faces", "0"], "--faces must be at least 1; got 0"),
    (["--threads", "0"], "--threads must be at least 1; got 0"),
    (["--faces", "two"], "invalid int value: 'two'"),
])
def test_bad_arguments_fail_before_any_model_work(argv, message, capsys, monkeypatch, tmp_path):
    assert_refused(bench, [*argv, "--out", str(tmp_path / "x.md")], message, capsys, monkeypatch, ("load_model",))


def test_an_existing_output_is_kept_unless_overwrite(capsys, monkeypatch, tmp_path):
    assert_keeps_existing_output(bench, tmp_path, capsys, monkeypatch, ("load_model",))
