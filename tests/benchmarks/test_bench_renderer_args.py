"""benchmarks/bench_renderer.py refuses bad arguments, and an existing output, before rendering anything."""
from __future__ import annotations

import pytest
from bench_loader import assert_keeps_existing_output, assert_refused, load_bench

bench = load_bench("bench_renderer")


@pytest.mark.parametrize("argv, message", [
    (["--rounds", "0"], "--rounds must be at least 1; got 0"),
    (["--rows", "-3"], "--rows must be at least 1; got -3"),
    (["--images", "0"], "--images must be at least 1; got 0"),
    (["--threads", "0"], "--threads must be at least 1; got 0"),
    (["--rows", "many"], "invalid int value: 'many'"),
])
def test_bad_arguments_fail_before_any_rendering(argv, message, capsys, monkeypatch, tmp_path):
    assert_refused(bench, [*argv, "--out", str(tmp_path / "x.md")], message, capsys, monkeypatch, ("sample_faces",))


def test_an_existing_output_is_kept_unless_overwrite(capsys, monkeypatch, tmp_path):
    assert_keeps_existing_output(bench, tmp_path, capsys, monkeypatch, ("sample_faces",))


def test_a_tiny_run_writes_its_table(tmp_path, capsys, monkeypatch):
    """One round on 8 rows and 2 images: the table names both columns, the estimates agree, and the estimator's own
    renderer is back in place afterwards."""
    monkeypatch.setattr(bench.torch, "set_num_threads", lambda n: None)  # keep this test process's threads
    out = tmp_path / "r.md"
    assert bench.main(["--rounds", "1", "--rows", "8", "--images", "2", "--out", str(out)]) == 0
    text = out.read_text()
    assert "| render 8 faces, forward + backward (ms) |" in text and "estimate_factors of 2 noisy faces" in text
    diff = float(text.split("differ by at most ")[1].split(" ")[0])
    assert diff < 1e-3
    assert bench.factors_module.render_faces is bench.render_faces
