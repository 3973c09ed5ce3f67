"""benchmarks/bench_batched_directions.py refuses bad arguments, and an existing output, before loading any model."""
from __future__ import annotations

import pytest
from bench_loader import load_bench

bench = load_bench("bench_batched_directions")


@pytest.mark.parametrize("argv, message", [
    (["--faces", "0"], "--faces must be at least 1; got 0"),
    (["--threads", "0"], "--threads must be at least 1; got 0"),
    (["--faces", "two"], "invalid int value: 'two'"),
])
def test_bad_arguments_fail_before_any_model_work(argv, message, capsys, monkeypatch, tmp_path):
    def no_model(*a, **k):
        raise AssertionError("a model was loaded before the arguments were checked")

    monkeypatch.setattr(bench, "load_model", no_model)
    with pytest.raises(SystemExit) as e:
        bench.main([*argv, "--out", str(tmp_path / "x.md")])
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_an_existing_output_is_kept_unless_overwrite(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(bench, "load_model", lambda *a, **k: (_ for _ in ()).throw(AssertionError("model loaded")))
    out = tmp_path / "old.md"
    out.write_text("earlier result")
    with pytest.raises(SystemExit) as e:
        bench.main(["--out", str(out)])
    assert e.value.code == 2 and "exists; pass --overwrite" in capsys.readouterr().err
    assert out.read_text() == "earlier result"
