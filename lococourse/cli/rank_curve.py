"""``lococourse rank-curve --model NAME``: the paper's Figure 2 for any registered or local model.

(a) rank ratio of the PMP Jacobian (eq. 10) against t, at points along DDIM sampling trajectories
(Appendix D.1); (b) norm ratio and cosine (eq. 4) against λ at one t (default 0.7).  Writes a PNG
with both panels and the numbers as JSON (and CSV); ``--json`` prints the numbers.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

from lococourse.course.figure2 import figure2_run
from lococourse.course.viz import figure2_panels


def add_arguments(p) -> None:
    p.add_argument("--model", required=True, help="a registered model name (see `lococourse models`) or a local diffusers folder")
    p.add_argument("--ts", default="0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9", help="comma-separated times in (0, 1]")
    p.add_argument("--n", type=int, default=2, help="trajectories (points per t) to average over")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--linearity-t", type=float, default=0.7, help="t of panel (b)")
    p.add_argument("--lambdas", default="0,5,10,15,20,25,30,35,40", help="comma-separated λ of panel (b)")
    p.add_argument("--out", default="rank_curve", help="output stem: writes STEM.png, STEM.json, STEM.csv")
    p.add_argument("--json", action="store_true", help="print the numbers as JSON")
    p.add_argument("--no-progress", action="store_true")


def _floats(s: str, what: str) -> list[float]:
    try:
        return [float(v) for v in s.split(",") if v.strip()]
    except ValueError:
        raise SystemExit(f"--{what} must be comma-separated numbers; got {s!r}")


def compute(model: str, ts, n: int = 2, seed: int = 0, linearity_t: float = 0.7, lambdas=(0, 10, 20, 30, 40),
            progress: bool = True) -> dict:
    """The numbers of both panels for ``model`` (a name or folder), as a JSON-ready dict (:func:`figure2_run`)."""
    return figure2_run(model, ts, n=n, seed=seed, linearity_t=linearity_t, lambdas=lambdas, progress=progress).as_dict()


def run(args) -> int:
    ts = _floats(args.ts, "ts")
    lambdas = _floats(args.lambdas, "lambdas")
    res = compute(args.model, ts, args.n, args.seed, args.linearity_t, lambdas, progress=not args.no_progress)
    stem = Path(args.out)
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(res, indent=2))
    with open(stem.with_suffix(".csv"), "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["panel", "x", "rank_ratio_or_norm_ratio", "cosine"])
        for t, r in zip(res["rank_curve"]["t"], res["rank_curve"]["rank_ratio"]):
            w.writerow(["a", t, r, ""])
        lin = res["linearity"]
        for lam, nr, c in zip(lin["lambda"], lin["norm_ratio"], lin["cosine"]):
            w.writerow(["b", lam, nr, c])

    figure2_panels(res).savefig(stem.with_suffix(".png"), dpi=120, bbox_inches="tight")
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(f"{res['model']}: min rank ratio {res['min_rank_ratio']:.4f} at t = {res['t_at_min']:.3f}; "
              f"at t = {args.linearity_t}, λ = {lin['lambda'][-1]:g}: norm ratio {lin['norm_ratio'][-1]:.4f}, "
              f"cosine {lin['cosine'][-1]:.4f}")
        print(f"wrote {stem.with_suffix('.png')}, {stem.with_suffix('.json')}, {stem.with_suffix('.csv')}")
    return 0
