"""``lococourse rank-curve --model NAME``: the paper's Figure 2 for any registered or local model.

(a) rank ratio of the PMP Jacobian (eq. 10) against t, at points along DDIM sampling trajectories
(Appendix D.1); (b) norm ratio and cosine (eq. 4) against λ at one t (default 0.7).  Writes a PNG
with both panels and the numbers as JSON and CSV (all three at the end, or none; refused if they exist
unless ``--overwrite``); ``--json`` prints the numbers.

Panel (a) takes one dense d × d Jacobian per time and point: seconds for the MoLRG models (d = 48, 192),
a few minutes on a CPU for ``faces16`` (d = 768, 9 times × 2 points), much longer for ``faces32``
(d = 3072); a progress bar shows where it is.  Every argument is checked before the model loads.
"""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from lococourse.cli.common import (
    CLIError,
    Outputs,
    check_count_arg,
    check_seed_arg,
    check_strength_arg,
    check_t_arg,
    integer,
    number,
    progress,
)
from lococourse.cli.edit import model_dirs, pixel_model, spec_shape
from lococourse.course.figure2 import figure2_run
from lococourse.course.viz import figure2_panels
from lococourse.jacobian.operator import MAX_DENSE_ENTRIES
from lococourse.models.ddim import ddim_grid
from lococourse.models.registry import PREDICTION_TYPES, check_available, load_model

#: At most this many trajectories per t (each point costs one dense Jacobian per t).
MAX_POINTS = 64


def add_arguments(p) -> None:
    p.add_argument("--model", required=True, help="a registered model name (see `lococourse models`) or a local diffusers folder")
    p.add_argument("--ts", default="0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9", help="comma-separated times in (0, 1]")
    p.add_argument("--n", type=integer, default=2, help=f"trajectories (points per t) to average over (1 … {MAX_POINTS})")
    p.add_argument("--seed", type=integer, default=0)
    p.add_argument("--linearity-t", type=number, default=0.7, help="t of panel (b)")
    p.add_argument("--lambdas", default="0,5,10,15,20,25,30,35,40", help="comma-separated λ of panel (b)")
    p.add_argument("--out", default="rank_curve", help="output stem: writes STEM.png, STEM.json, STEM.csv")
    p.add_argument("--overwrite", action="store_true", help="replace STEM.png, STEM.json and STEM.csv if they exist")
    p.add_argument("--prediction-type", choices=PREDICTION_TYPES, default=None,
                   help="what the UNet predicts, for a model folder that does not say")
    p.add_argument("--json", action="store_true", help="print the numbers as JSON")
    p.add_argument("--no-progress", action="store_true")


def parse_floats(s: str, flag: str, example: str) -> list[float]:
    """``"a,b,c"`` as floats; an empty list, a non-number or a non-finite value is refused, naming it."""
    items = [v.strip() for v in str(s).split(",")]
    if not any(items):
        raise CLIError(f"{flag} {s!r} holds no number; give comma-separated numbers, e.g. {example}")
    out = []
    for v in items:
        if not v:
            raise CLIError(f"{flag} {s!r} has an empty entry; give comma-separated numbers, e.g. {example}")
        try:
            x = float(v)
        except ValueError:
            raise CLIError(f"{flag} {s!r}: {v!r} is not a number; give comma-separated numbers, e.g. {example}") from None
        if not math.isfinite(x):
            raise CLIError(f"{flag} {s!r}: {v} is not finite; every value must be a finite number")
        out.append(x)
    return out


def compute(model: str, ts, n: int = 2, seed: int = 0, linearity_t: float = 0.7, lambdas=(0, 10, 20, 30, 40),
            progress: bool = True) -> dict:
    """The numbers of both panels for ``model`` (a name, a folder or a loaded model), as a JSON-ready dict
    (:func:`~lococourse.course.figure2.figure2_run`)."""
    return figure2_run(model, ts, n=n, seed=seed, linearity_t=linearity_t, lambdas=lambdas, progress=progress).as_dict()


def _csv_text(res: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["panel", "x", "rank_ratio_or_norm_ratio", "cosine"])
    for t, r in zip(res["rank_curve"]["t"], res["rank_curve"]["rank_ratio"]):
        w.writerow(["a", t, r, ""])
    lin = res["linearity"]
    for lam, nr, c in zip(lin["lambda"], lin["norm_ratio"], lin["cosine"]):
        w.writerow(["b", lam, nr, c])
    return buf.getvalue()


def run(args) -> int:
    # ---- everything that needs no model weights
    ts = parse_floats(args.ts, "--ts", "0.1,0.5,0.9")
    for t in ts:
        check_t_arg(t, f"--ts {args.ts!r}: t =")
    grid = ddim_grid()
    snapped = [grid.snap(t) for t in ts]
    dup = sorted({s for s in snapped if snapped.count(s) > 1})
    if dup:
        raise CLIError(f"--ts {args.ts!r} names the DDIM grid time{'s' if len(dup) > 1 else ''} "
                       f"{', '.join(f'{s:g}' for s in dup)} more than once (times snap to the 100-step grid, 0.01 apart); "
                       "give distinct times")
    lambdas = parse_floats(args.lambdas, "--lambdas", "0,10,20,40")
    for lam in lambdas:
        check_strength_arg(lam, f"--lambdas {args.lambdas!r}: λ =")
    check_t_arg(args.linearity_t, "--linearity-t")
    check_count_arg(args.n, "--n", 1, MAX_POINTS, "the number of trajectories")
    check_seed_arg(args.seed)
    spec, ptype = pixel_model(args.model, args.prediction_type)
    d = math.prod(spec_shape(spec))
    if d * d > MAX_DENSE_ENTRIES:
        raise CLIError(f"--model {args.model} has d = {d} pixels·channels; panel (a) needs dense d × d = {d * d:,} Jacobians, "
                       f"more than {MAX_DENSE_ENTRIES:,} entries: use a course model (faces16, faces32, molrg_*)")
    check_available(spec)
    if not str(args.out).strip():
        raise CLIError("--out '' is empty; give an output stem such as rank_curve (writes .png, .json, .csv)")
    stem = Path(args.out)
    files = {ext: stem.with_suffix(ext) for ext in (".png", ".json", ".csv")}
    outputs = Outputs([("--out", files[".png"]), ("numbers", files[".json"]), ("table", files[".csv"])],
                      overwrite=args.overwrite, model_dirs=model_dirs(spec))

    # ---- the model, the computation, the outputs
    with outputs:
        if not args.no_progress:
            progress(args, f"loading model {args.model}; then {len(ts)} times × {args.n} points, one dense {d}×{d} "
                           "Jacobian each (faces16: a few minutes on a CPU)")
        model = load_model(args.model, prediction_type=ptype)
        res = compute(model, ts, args.n, args.seed, args.linearity_t, lambdas, progress=not args.no_progress)
        fig = figure2_panels(res)
        outputs.stage(files[".json"], lambda tmp: tmp.write_text(json.dumps(res, indent=2)))
        outputs.stage(files[".csv"], lambda tmp: tmp.write_text(_csv_text(res)))
        outputs.stage(files[".png"], lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight"))
        outputs.commit()
    lin = res["linearity"]
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(f"{res['model']}: min rank ratio {res['min_rank_ratio']:.4f} at t = {res['t_at_min']:.3f}; "
              f"at t = {args.linearity_t}, λ = {lin['lambda'][-1]:g}: norm ratio {lin['norm_ratio'][-1]:.4f}, "
              f"cosine {lin['cosine'][-1]:.4f}")
        print(f"wrote {files['.png']}, {files['.json']}, {files['.csv']}")
    return 0
