"""``lococourse verify-theory``: every claim of Lemmas 1–3 and Theorem 1 checked numerically (a table or JSON)."""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict

from lococourse.cli.common import CLIError, check_seed_arg, integer
from lococourse.theory import verify

#: The most Monte Carlo samples per (t, instance): 10⁷ (50× the default) already takes minutes.
MAX_MC_SAMPLES = 10_000_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=integer, default=0, help="seed of the random MoLRG instances and points (default 0)")
    parser.add_argument("--mc-samples", type=integer, default=200_000,
                        help="Monte Carlo samples per (t, instance) for the Lemma 1 oracle (default 200000)")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON instead of a table")
    parser.add_argument("-v", "--verbose", action="store_true", help="also print how each value was measured")


def _num(v: float):
    return v if math.isfinite(v) else str(v)


def _fmt(v: float) -> str:
    if not math.isfinite(v):
        return str(v)
    if v == int(v) and abs(v) < 1e6:
        return f"{int(v)}"
    return f"{v:.3g}"


def run(args: argparse.Namespace) -> int:
    if not verify.MIN_MC_SAMPLES <= args.mc_samples <= MAX_MC_SAMPLES:
        raise CLIError(f"--mc-samples {args.mc_samples} is out of range; --mc-samples must be at least "
                       f"{verify.MIN_MC_SAMPLES} and at most {MAX_MC_SAMPLES} (the Monte Carlo oracle's run time grows "
                       "with it)")
    check_seed_arg(args.seed)
    t0 = time.perf_counter()
    claims = verify.verify_theory(seed=args.seed, mc_samples=args.mc_samples)
    seconds = time.perf_counter() - t0
    n_pass = sum(c.passed for c in claims)
    if args.json:
        rows = [{**asdict(c), "measured": _num(c.measured), "tolerance": _num(c.tolerance)} for c in claims]
        summary = {"passed": n_pass, "total": len(claims), "all_passed": n_pass == len(claims),
                   "seed": args.seed, "seconds": round(seconds, 2)}
        print(json.dumps({"claims": rows, "summary": summary}, indent=2))
    else:
        width = max(len(c.name) for c in claims)
        print(f"{'claim':<{width}}  {'measured':>10}  {'tolerance':>13}  result")
        for c in claims:
            print(f"{c.name:<{width}}  {_fmt(c.measured):>10}  {c.comparison + ' ' + _fmt(c.tolerance):>13}  "
                  f"{'PASS' if c.passed else 'FAIL'}")
            if args.verbose and c.detail:
                print(f"    {c.detail}")
        print(f"(seed {args.seed}, {seconds:.1f} s)")
        print(f"{n_pass}/{len(claims)} claims verified")
    sys.stdout.flush()
    return 0 if n_pass == len(claims) else 1
