"""≥ 100 bad command lines, every subcommand: each answered at once with exit status 2 and one line
``lococourse <cmd>: error: …`` that names the offending value and what is allowed; no traceback; no output
file appears; no input changes (the autouse fixture hashes every input before and after).  How fast they
fail is measured by benchmarks/bench_bad_inputs.py, not asserted here."""
import re
import subprocess
import sys

import pytest
import torch
from robustness_cases import CLI_CASES

from lococourse.cli.main import main

LINE = re.compile(r"^lococourse( [a-z-]+)?: error: ")


def _run(argv, capsys):
    rc = main(argv)
    cap = capsys.readouterr()
    return rc, cap.err


@pytest.mark.parametrize("case", CLI_CASES, ids=[c.id for c in CLI_CASES])
def test_bad_command_line(case, inputs, tmp_path, capsys):
    if case.needs_no_cuda and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    for name in case.existing:  # an earlier output, which must survive
        (tmp_path / name).write_text("earlier output")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    rc, err = _run(case.argv(inputs, tmp_path), capsys)
    last = [line for line in err.splitlines() if line.strip()][-1]
    assert rc == case.rc, err
    assert LINE.match(last), err
    cmd = case.argv(inputs, tmp_path)[0]
    if LINE.match(last).group(1) is not None:
        assert last.startswith(f"lococourse {cmd}: error: ") or cmd == "frobnicate", err
    for s in case.names:
        assert s in err, f"{s!r} not in: {err}"
    assert "Traceback" not in err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before, "an output was written"


def test_enough_cases_across_every_subcommand():
    from lococourse.cli.main import SUBCOMMANDS

    assert len(CLI_CASES) >= 60 and len({c.id for c in CLI_CASES}) == len(CLI_CASES)
    covered = {c.id.split("-")[0] if not c.id.startswith(("t-edit", "rank-curve", "verify-theory")) else
               "-".join(c.id.split("-")[:2]) for c in CLI_CASES}
    assert set(SUBCOMMANDS) <= covered, set(SUBCOMMANDS) - covered


@pytest.mark.parametrize("argv, fragment", [
    (["edit", "--model", "nope", "--seed", "1", "--mask", "hair", "--strength", "1", "--out", "x.png"], "'nope'"),
    (["rank-curve", "--model", "faces16", "--ts", "0,0.5"], "t = 0"),
    (["transfer", "--direction", "missing.safetensors", "--seed", "1", "--strength", "1", "--out", "x.png"],
     "no direction file"),
])
def test_installed_command_prints_no_traceback_unless_debug(argv, fragment, tmp_path):
    """The real process: one error line and exit 2; with --debug the traceback as well."""
    plain = subprocess.run([sys.executable, "-m", "lococourse.cli", *argv], capture_output=True, text=True, cwd=tmp_path,
                           timeout=300)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr and fragment in plain.stderr
    assert len(plain.stderr.strip().splitlines()) == 1 and plain.stdout == ""
    debug = subprocess.run([sys.executable, "-m", "lococourse.cli", *argv, "--debug"], capture_output=True, text=True,
                           cwd=tmp_path, timeout=300)
    assert debug.returncode != 0 and "Traceback" in debug.stderr and fragment in debug.stderr
    assert list(tmp_path.iterdir()) == []
