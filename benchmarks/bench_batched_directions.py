"""Benchmark: every part's direction of an image in one batch (find_directions) against one part at a time.

    python benchmarks/bench_batched_directions.py [--faces 2] [--t 0.6] [--threads 1] [--out results/batched_directions.md]

Issue 13, item 5 (the table's time): the table learns 9 methods × 5 parts of directions per face, and the sampler's
J·V / Jᵀ·U of one or five vectors at a time run slowly per vector on a CPU.  lococourse.editing.loco.find_directions
runs Algorithm 1 steps 4–8 for all of an image's masks at once: the power methods of step 4 and step 5 in lockstep
(lococourse.jacobian.power_methods) and the ridge / refine conjugate gradients in lockstep
(lococourse.jacobian.ridge_project_rows).  Side by side, in one run, per face of ``sample_faces(1, seed)`` inverted to t:

1. **One part at a time**: one linearisation of the PMP and one of the 6-step sampler, shared by every call (with
   their memo: a power method or ridge solve computed for one method is reused by the next), then
   ``find_direction`` for each part × method, the methods in ``METHODS`` order (what face_directions did before).
2. **Batched**: fresh linearisations, then one ``find_directions`` per method over the five parts (what
   face_directions does now).

Per method: seconds for the face's five directions both ways and their ratio; the smallest |cos| between the two
ways' directions (they solve the same problems, so they agree up to floating-point rounding and the iterative
solvers' tolerances).  Then the totals.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from lococourse.data.faces import PARTS
from lococourse.data.images import atomic_write
from lococourse.editing.loco import SAMPLER_STEPS, find_direction, find_directions, linearize, sampler_map
from lococourse.eval.faces import METHOD_OPTIONS, METHODS, prepare_faces
from lococourse.models.registry import load_model

ROOT = Path(__file__).resolve().parent


def _options(method: str, sampler) -> dict:
    opts = {"index": 0, "r_null": 5, **METHOD_OPTIONS[method]}
    if opts.pop("nullspace", "pmp") == "sampler":
        opts["nullspace_map"] = sampler
    return opts


def _linearisations(model, faces, i: int):
    views = linearize(model.pmp(faces.t), faces.x_t[i], alpha_bar=faces.alpha_bar)
    sampler = linearize(sampler_map(model, faces.t, SAMPLER_STEPS), faces.x_t[i])
    return views, sampler


def one_face(model, faces, i: int, tol, max_iter: int) -> dict:
    """(method → (seconds one part at a time, seconds batched, min |cos|)) for face ``i``."""
    parts = [p for p in PARTS if faces.masks[p][i].any() and not faces.masks[p][i].all()]
    masks = [faces.masks[p][i] for p in parts]
    kw = {"r": 5, "seed": 0, "tol": tol, "max_iter": max_iter}
    views, sampler = _linearisations(model, faces, i)
    single, t_single = {}, {}
    for method in METHODS:
        t0 = time.perf_counter()
        single[method] = [find_direction(views, None, m, **kw, **_options(method, sampler)) for m in masks]
        t_single[method] = time.perf_counter() - t0
    views, sampler = _linearisations(model, faces, i)
    out = {}
    for method in METHODS:
        t0 = time.perf_counter()
        batch = find_directions(views, None, masks, **kw, **_options(method, sampler))
        dt = time.perf_counter() - t0
        cos = min(abs(float(a.v.reshape(-1) @ b.v.reshape(-1))) for a, b in zip(single[method], batch))
        out[method] = (t_single[method], dt, cos)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="faces32")
    p.add_argument("--faces", type=int, default=2)
    p.add_argument("--t", type=float, default=0.6)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--tol", type=float, default=None, help="power-method tolerance (default: find_direction's)")
    p.add_argument("--max-iter", type=int, default=30, help="power-method iterations (the table's 30)")
    p.add_argument("--out", default=str(ROOT / "results" / "batched_directions.md"))
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    args = p.parse_args(argv)
    if args.faces < 1:
        p.error(f"--faces must be at least 1; got {args.faces}")
    if args.threads < 1:
        p.error(f"--threads must be at least 1; got {args.threads}")
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        p.error(f"{out} exists; pass --overwrite to replace it or choose another --out")
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    faces = prepare_faces(model, list(range(args.faces)), args.t, estimate=False)
    rows = {m: [0.0, 0.0, 1.0] for m in METHODS}
    t_start = time.perf_counter()
    for i in range(args.faces):
        for m, (a, b, c) in one_face(model, faces, i, args.tol, args.max_iter).items():
            rows[m][0] += a
            rows[m][1] += b
            rows[m][2] = min(rows[m][2], c)
        print(f"face {i + 1}/{args.faces} done ({time.perf_counter() - t_start:.0f} s)", file=sys.stderr, flush=True)
    lines = [
        "# Every part's direction in one batch, against one part at a time",
        "",
        f"Model `{args.model}`, t = {faces.t:.3f}, faces {list(range(args.faces))} × {len(PARTS)} parts, "
        f"{args.threads} torch thread(s), power methods ≤ {args.max_iter} iterations; "
        f"produced by `python benchmarks/bench_batched_directions.py --faces {args.faces} --t {args.t}` "
        "(protocol in its docstring).",
        "",
        "| method | one part at a time (s) | batched (s) | speed-up | min \\|cos\\| between the two |",
        "|---|---|---|---|---|",
    ]
    for m, (a, b, c) in rows.items():
        lines.append(f"| {m} | {a:.1f} | {b:.1f} | {a / b:.2f}× | {c:.6f} |")
    ta, tb = sum(r[0] for r in rows.values()), sum(r[1] for r in rows.values())
    lines += [f"| **all methods** | **{ta:.1f}** | **{tb:.1f}** | **{ta / tb:.2f}×** | "
              f"{min(r[2] for r in rows.values()):.6f} |", ""]
    text = "\n".join(lines)
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda tmp: tmp.write_text(text))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
