"""How fast checkable bad inputs fail (issue 11): every case of the robustness suite, timed, printed.

    python benchmarks/bench_bad_inputs.py [--repeat 3] [--subprocess 3]

For each bad command line of ``tests/robustness/robustness_cases.py`` (the same table the tests use): the
seconds from ``main(argv)`` to its exit status inside one warm process (the median of ``--repeat`` runs), beside
one *good* run of ``lococourse edit`` on the same tiny model (the work a late check would have wasted), and the
wall time of a few cases as a fresh process (``python -m lococourse.cli``: interpreter, torch and diffusers
imports included).  Measured, not asserted: the tests only check what the answer is.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("robustness_cases", ROOT / "tests" / "robustness" / "robustness_cases.py")
cases = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = cases  # dataclasses look their module up there
_spec.loader.exec_module(cases)


def _quiet_main(argv: list[str]) -> tuple[int, float]:
    from lococourse.cli.main import main

    err, out = io.StringIO(), io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        rc = main(argv)
    return rc, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="runs per case (the median is printed)")
    ap.add_argument("--subprocess", type=int, default=5, help="cases also timed as a fresh process")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="bench_bad_inputs_"))
    inputs = cases.make_inputs(work / "in")
    _quiet_main(["models", "--json"])  # warm the imports once

    rows = []
    for case in cases.CLI_CASES:
        if case.needs_no_cuda and torch.cuda.is_available():
            continue
        times, rc = [], None
        for i in range(args.repeat):
            out = work / "out" / f"{case.id}-{i}"
            out.mkdir(parents=True)
            for name in case.existing:
                (out / name).write_text("earlier output")
            rc, s = _quiet_main(case.argv(inputs, out))
            times.append(s)
        rows.append((case.id, rc, statistics.median(times)))

    good_out = work / "good"
    good_out.mkdir()
    rc, good_s = _quiet_main(["edit", "--model", str(inputs.faces), "--seed", "3", "--mask", "hair", "--strength", "2",
                              "--max-iter", "8", "--quiet", "--out", str(good_out / "x.png")])
    assert rc == 0, "the good run failed"

    w = max(len(r[0]) for r in rows)
    print(f"{'case':<{w}}  rc  seconds (median of {args.repeat}, warm process)")
    for cid, rc, s in rows:
        print(f"{cid:<{w}}  {rc:>2}  {s:8.4f}")
    secs = sorted(s for _, _, s in rows)
    print(f"\n{len(rows)} bad inputs: median {statistics.median(secs):.4f} s, 90th percentile "
          f"{secs[int(0.9 * (len(secs) - 1))]:.4f} s, slowest {secs[-1]:.4f} s "
          f"({max(rows, key=lambda r: r[2])[0]})")
    print(f"a good `lococourse edit` on the same 16×16 model (--max-iter 8): {good_s:.2f} s; slowest bad input / good run "
          f"= {secs[-1] / good_s:.3f}, median / good run = {statistics.median(secs) / good_s:.4f}")

    print("\nas a fresh process (python -m lococourse.cli …, imports included), beside `python -c 'import torch'`:")
    picks = [c for c in cases.CLI_CASES if c.id in ("edit-strength-1e30", "transfer-direction-flipped-bytes",
                                                     "rank-curve-ts-zero", "t-edit-model-unknown", "edit-out-in-model-folder")]
    for case in picks[: args.subprocess]:
        out = work / "sub" / case.id
        out.mkdir(parents=True)
        t0 = time.perf_counter()
        p = subprocess.run([sys.executable, "-m", "lococourse.cli", *case.argv(inputs, out)], capture_output=True, text=True)
        wall = time.perf_counter() - t0
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import torch"], capture_output=True)
        torch_s = time.perf_counter() - t0
        print(f"  {case.id:<{w}}  rc {p.returncode}  {wall:6.2f} s   (import torch alone: {torch_s:.2f} s)")

if __name__ == "__main__":
    main()
