"""Shared by the tests of benchmarks/*.py: load a benchmark script (not a package module) by its file name, and check
that it refuses bad arguments and an existing output before any work."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load_bench(name: str):
    """The module of benchmarks/<name>.py, registered in sys.modules under ``name``."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _forbid(bench, names: tuple[str, ...], monkeypatch) -> None:
    """Make each of the benchmark module's ``names`` (what starts the real work) fail the test if it is called."""
    def no_work(*a, **k):
        raise AssertionError(f"the benchmark started work ({', '.join(names)}) before checking its arguments")

    for name in names:
        monkeypatch.setattr(bench, name, no_work)


def assert_refused(bench, argv: list, message: str, capsys, monkeypatch, forbid: tuple[str, ...]) -> None:
    """``bench.main(argv)`` exits with argparse's status 2 and ``message`` on stderr, before calling any of ``forbid``."""
    _forbid(bench, forbid, monkeypatch)
    with pytest.raises(SystemExit) as e:
        bench.main(argv)
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def assert_keeps_existing_output(bench, tmp_path, capsys, monkeypatch, forbid: tuple[str, ...]) -> None:
    """An existing ``--out`` is refused (status 2, "exists; pass --overwrite") and left as it was, before any work."""
    _forbid(bench, forbid, monkeypatch)
    out = tmp_path / "old.md"
    out.write_text("earlier result")
    with pytest.raises(SystemExit) as e:
        bench.main(["--out", str(out)])
    assert e.value.code == 2 and "exists; pass --overwrite" in capsys.readouterr().err
    assert out.read_text() == "earlier result"
