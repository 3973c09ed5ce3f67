"""``lococourse edit``: unsupervised LOCO Edit (Algorithm 1) of one image, from the command line.

    lococourse edit --model NAME (--image PATH | --seed N) --mask NAME|x0,y0,x1,y1|PATH
                    --t T --index K --strength L --out OUT.png [--r R] [--r-null R'] [--overwrite]
                    [--band B] [--nullspace pmp|sampler] [--projection subspace|ridge [--ridge C] [--refine N]]
                    [--keep-holes RIM] [--select] [--strength auto [--target C]]

1. the image: a PNG of the model's size (``--image``), or, for ``--seed N``, the face
   ``sample_faces(1, N)`` of a procedural-faces model (any other model: its own DDIM sample from
   seeded noise);
2. the mask Ω: a named part (``background``, ``hair``, ``face``, ``eyes``, ``mouth``) of a faces
   model — the ground-truth part mask of the generated face, or for ``--image`` the part masks of
   the face fitted to it by analysis by synthesis (lococourse.eval) — or a rectangle
   ``x0,y0,x1,y1`` (pixels, x = column), or a mask image;
3. x_t = DDIM-Inv(x₀, t), v_p from the masked Jacobian and the nullspace projection (top-r, top-r'),
   x₀' = DDIM(x_t + λ v_p, 0).  ``--strength auto`` (faces models, a named part; ours): step 9 at the 6 λ of
   ``default_strength_grid``, the part's factors read off each edit, and λ where the part's main factor moves by
   ``--target`` × its threshold τ (:func:`lococourse.eval.strength_from_sweep`), sampled once more.

Every argument, the mask, the image and the outputs are checked before the model is loaded.  Writes
OUT.png (the edited image, clamped to [-1, 1] for the PNG), and the direction beside it: OUT.safetensors +
OUT.json (its metadata: model, t, k, r, r', σ, the mask, the source image, λ; its ``seed`` is the power method's,
``extra.power_method_seed`` repeats it and ``extra.image_seed`` is ``--seed``), which ``lococourse transfer
--direction OUT.safetensors`` applies to other images.  The three files appear together at the end or not
at all; none of them may exist already unless ``--overwrite``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from lococourse.cli.common import (
    CLIError,
    Outputs,
    check_count_arg,
    check_max_iter_arg,
    check_seed_arg,
    check_strength_arg,
    check_t_arg,
    check_tol_arg,
    integer,
    note,
    number,
    png_array,
    progress,
    read_png,
)
from lococourse.data.faces import FACTOR_NAMES, PARTS, render_faces, sample_faces
from lococourse.data.images import write_png as write_array_png
from lococourse.editing.loco import NULLSPACES, PROJECTIONS, RIDGE_C, SAMPLER_STEPS, apply_directions, loco_edit, outside
from lococourse.editing.masks import parse_mask
from lococourse.editing.metrics import edit_report
from lococourse.editing.strength import default_strength_grid
from lococourse.eval.decisions import changed, local_edit_success, thresholds_for
from lococourse.eval.faces import TARGET_TAU, strength_from_sweep
from lococourse.eval.factors import estimate_factors, factor_changes
from lococourse.models.ddim import ddim_grid, ddim_sample
from lococourse.models.registry import (
    PREDICTION_TYPES,
    ModelNotAvailableError,
    ModelSpec,
    check_available,
    get_spec,
    load_model,
    prediction_type_of,
    read_card,
)

FACES_GENERATOR = "lococourse.data.faces.render_faces"
AUTO = "auto"


def strength_arg(s: str) -> float | str:
    """argparse type of --strength: a decimal number, or 'auto' (λ by a target, faces models)."""
    return AUTO if s.strip().lower() == AUTO else number(s)


def add_arguments(p) -> None:
    p.add_argument("--model", required=True, help="a registered model (see `lococourse models`) or a local diffusers folder")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", help="the image to edit: a PNG of the model's size")
    src.add_argument("--seed", type=integer, help="edit a generated image: the face sample_faces(1, SEED) of a faces "
                                                  "model, else the model's DDIM sample from seeded noise")
    p.add_argument("--mask", required=True, help="a part name of a faces model (background, hair, face, eyes, mouth), "
                                                 "a rectangle x0,y0,x1,y1 in pixels, or a mask image")
    p.add_argument("--t", type=number, default=None, help="edit time in (0, 1] (default: the model card's, else 0.6)")
    p.add_argument("--index", type=integer, default=0, help="k: which singular vector of the masked Jacobian (0-based)")
    p.add_argument("--strength", type=strength_arg, required=True,
                   help="λ: how far to move x_t along the direction, or 'auto' (faces models, a named part; ours): the "
                        "λ at which the part's main factor moves by --target × its threshold τ, by a sweep of 6 edits")
    p.add_argument("--target", type=number, default=None,
                   help=f"with --strength auto: the main factor's change in units of its τ (default {TARGET_TAU})")
    p.add_argument("--r", type=integer, default=5, help="top-r singular vectors of the masked Jacobian (k < r)")
    p.add_argument("--r-null", type=integer, default=5, help="r': complement directions projected out (0: no projection)")
    p.add_argument("--out", required=True, help="OUT.png; the direction goes to OUT.safetensors and OUT.json")
    p.add_argument("--overwrite", action="store_true", help="replace OUT.png, OUT.safetensors and OUT.json if they exist")
    p.add_argument("--prediction-type", choices=PREDICTION_TYPES, default=None,
                   help="what the UNet predicts, for a model folder that does not say (no card.json / scheduler_config.json)")
    p.add_argument("--band", type=integer, default=0,
                   help="leave a guard band of this many pixels around the mask out of the complement (0: the paper's)")
    p.add_argument("--keep-holes", type=integer, default=None, metavar="RIM",
                   help="with --band: a hole of the mask that the band would mostly remove (the eyes inside the face) "
                        "stays in the complement, less its RIM px next to the mask (0: the whole hole; 1 is the table's "
                        "loco_cores rows)")
    p.add_argument("--nullspace", choices=NULLSPACES, default="pmp",
                   help="the complement nullspace of step 5: 'pmp' (the paper's one-step PMP) or 'sampler' (the whole "
                        "sampler x_t ↦ DDIM(x_t, 0), matrix-free)")
    p.add_argument("--sampler-steps", type=integer, default=None,
                   help=f"DDIM steps of the sampler with --nullspace sampler (default {SAMPLER_STEPS})")
    p.add_argument("--projection", choices=PROJECTIONS, default="subspace",
                   help="step 7: 'subspace' (the paper's: remove the top-r' complement directions) or 'ridge' (ours: "
                        "damp each by μ/(σ²+μ), μ = c·‖J̄v‖²; --r-null is then not used)")
    p.add_argument("--ridge", type=number, default=None,
                   help=f"c of --projection ridge, > 0 (default {RIDGE_C}; smaller removes more)")
    p.add_argument("--refine", type=integer, default=0,
                   help="with --projection ridge: steps of inverse iteration on the inside/outside change quotient "
                        "after the ridge (0: none; 1 is the table's loco_band_sampler_ridge_refine with --band 2 "
                        "--nullspace sampler)")
    p.add_argument("--select", action="store_true",
                   help="ours: find the direction three ways (step 7's projection, --projection ridge, and ridge with "
                        "--refine 1, each with --band and --nullspace), sample each at --strength and keep the one "
                        "that changes least outside the mask for what it changes inside (pixel leakage)")
    p.add_argument("--tol", type=number, default=1e-3, help="power-method tolerance, in (0, 1)")
    p.add_argument("--max-iter", type=integer, default=50, help="power-method iterations at most")
    p.add_argument("--quiet", action="store_true", help="no progress messages")


# ---------------------------------------------------------------------------------------- shared with transfer
def check_out_png(out: str, flag: str = "--out") -> Path:
    if not str(out).strip():
        raise CLIError(f"{flag} '' is empty; give a file name ending in .png")
    path = Path(out)
    if path.suffix.lower() != ".png":
        raise CLIError(f"{flag} {out!r} does not end in .png; give a file name ending in .png")
    return path


def pixel_model(name: str, prediction_type: str | None = None, flag: str = "--model") -> tuple[ModelSpec, str]:
    """The spec of a pixel-space model and what its UNet predicts, checked without loading its weights."""
    try:
        spec = get_spec(name)
    except (ValueError, TypeError, ModelNotAvailableError) as e:
        raise CLIError(f"{flag} {name!r}: {e}") from e
    if spec.family != "unet2d":
        raise CLIError(f"{flag} {name} is a text-to-image model (family {spec.family!r}); this command takes "
                       "pixel-space models (course models, ddpm-*, local diffusers folders): use `lococourse t-edit`")
    try:
        ptype = prediction_type_of(spec, prediction_type)
    except (ValueError, ModelNotAvailableError) as e:
        raise CLIError(f"{flag} {name}: {e}") from e
    return spec, ptype


def spec_shape(spec: ModelSpec) -> tuple[int, int, int]:
    return (spec.channels, spec.resolution, spec.resolution)


def spec_card(spec: ModelSpec) -> dict:
    card = Path(spec.source) / "card.json"
    return read_card(card) if spec.kind != "hub" and card.exists() else {}


def is_faces_spec(spec: ModelSpec) -> bool:
    """A model trained on lococourse.data.faces (its card says so) with (3, S, S) images."""
    data = spec_card(spec).get("data", {})
    return isinstance(data, dict) and data.get("generator") == FACES_GENERATOR and spec.channels == 3


def is_faces_model(model) -> bool:
    return is_faces_spec(model.spec)


def model_dirs(spec: ModelSpec) -> list[Path]:
    return [Path(spec.source)] if spec.kind != "hub" else []


def sample_source(model, seed: int, args) -> tuple[torch.Tensor, str]:
    """A non-faces model's own DDIM sample from seeded noise."""
    progress(args, f"sampling an image from seed {seed} (DDIM, 100-step grid)")
    g = torch.Generator().manual_seed(seed)
    x_T = torch.randn(1, *model.shape, generator=g)
    with torch.no_grad():
        x0 = ddim_sample(model.eps_model(), x_T, 1.0, 0.0)[0]
    return x0, f"model sample, seed {seed}"


def fitted_parts(x0: torch.Tensor, size: int, args) -> dict:
    progress(args, "fitting a face to the image (for the named part masks)")
    fit = estimate_factors(x0)
    progress(args, f"fitted face: RMS pixel error {float(fit.mse[0]) ** 0.5:.3f}")
    return {p: m[0] for p, m in render_faces(fit.as_dict(), size).masks.items()}


def resolve_mask(spec_str: str, spec: ModelSpec, named: dict, *, where: str) -> torch.Tensor:
    """--mask as an (H, W) mask of the model's image size; every problem named with the value."""
    if spec_str in PARTS and spec_str not in named and not is_faces_spec(spec):
        raise CLIError(f"--mask {spec_str!r} is a face part, but model {spec.name} has no parts (it is not a faces "
                       "model); give a rectangle x0,y0,x1,y1 in pixels or a mask image")
    notes: list[str] = []
    try:
        mask = parse_mask(spec_str, (spec.resolution, spec.resolution), named, notes=notes)
    except (ValueError, TypeError, OSError) as e:
        what = f"the {spec_str} of {where}: " if spec_str in named else ""
        raise CLIError(f"--mask {spec_str!r}: {what}{e}") from e
    for n in notes:
        note("--mask", n)
    return mask


def describe_faces_change(model, reference, edited, part: str | None = None) -> str:
    """The factors an edit changed (faces models): estimated against the λ = 0 reconstruction."""
    th = thresholds_for(model.shape[-1])
    ch = factor_changes(reference, edited)
    names = [f"{n} {float(ch[i]):+.2f}" for i, (n, c) in enumerate(zip(FACTOR_NAMES, changed(ch, th).tolist())) if c]
    msg = "factors changed: " + (", ".join(names) if names else "none beyond their thresholds")
    if part is not None:
        msg += f"; local edit of the {part}: {'success' if bool(local_edit_success(ch, part, th)) else 'no'}"
    return msg


# ---------------------------------------------------------------------------------------- edit
@dataclass
class EditPlan:
    spec: ModelSpec
    prediction_type: str
    t: float
    strength: float | None  # None: --strength auto (λ by target, chosen after the direction is found)
    out: Path
    outputs: Outputs
    x0: torch.Tensor | None  # None: sampled from --seed by the model after loading
    mask: torch.Tensor | None  # None: a part of the face sampled from --seed (known before loading too)
    named: dict
    source: str
    tol: float
    max_iter: int


def plan_edit(args) -> EditPlan:
    """Everything that can be checked without the model's weights, checked; raises CLIError naming the value."""
    out = check_out_png(args.out)
    auto = args.strength == AUTO
    lam = None if auto else check_strength_arg(args.strength)
    if args.target is not None and not auto:
        raise CLIError(f"--target {args.target:g} applies only with --strength auto (λ is --strength {args.strength:g}); "
                       "drop it or give --strength auto")
    if auto:
        if args.target is None:
            args.target = TARGET_TAU
        if not (math.isfinite(args.target) and args.target > 0):
            raise CLIError(f"--target {args.target:g} is out of range; give a finite change > 0 in units of τ "
                           f"(default {TARGET_TAU})")
    check_seed_arg(args.seed)
    tol, max_iter = check_tol_arg(args.tol), check_max_iter_arg(args.max_iter)
    if not isinstance(args.mask, str) or not args.mask.strip():
        raise CLIError("--mask '' is empty; give a part name (faces models), a rectangle x0,y0,x1,y1 in pixels, "
                       "or a mask image")
    spec, ptype = pixel_model(args.model, args.prediction_type)
    t = check_t_arg(args.t if args.t is not None else (spec.edit_t or 0.6))
    c, h, w = spec_shape(spec)
    d = c * h * w
    check_count_arg(args.r, "--r", 1, d, f"r (top singular vectors) for this model's d = {d}")
    if not 0 <= args.index < args.r:
        raise CLIError(f"--index {args.index} is out of range; k must lie in 0 … r − 1 = {args.r - 1}")
    if not 0 <= args.r_null < d:
        raise CLIError(f"--r-null {args.r_null} is out of range; r' must satisfy 0 ≤ r' < d = {d} (the image's number "
                       "of entries)")
    check_available(spec)  # a hub checkpoint that is neither cached nor downloadable: said before the outputs
    mask_file = args.mask if Path(args.mask).is_file() else None
    outputs = Outputs([("--out", out), ("direction", out.with_suffix(".safetensors")), ("metadata", out.with_suffix(".json"))],
                      overwrite=args.overwrite, inputs=[("--image", args.image), ("--mask", mask_file)],
                      model_dirs=model_dirs(spec))
    faces = is_faces_spec(spec)
    x0, named, mask = None, {}, None
    if args.image is not None:
        x0, source = read_png(args.image, (c, h, w)), str(args.image)
        if faces and args.mask in PARTS:
            named = fitted_parts(x0, h, args)
    elif faces:
        fb = sample_faces(1, args.seed, size=h)
        x0, named, source = fb.images[0], {p: m[0] for p, m in fb.masks.items()}, f"faces seed {args.seed}"
    else:
        source = f"model sample, seed {args.seed}"
    mask = resolve_mask(args.mask, spec, named, where=source)
    if auto and not (faces and args.mask in PARTS):
        why = (f"model {spec.name} is not a faces model" if not faces else
               f"--mask {args.mask!r} is not one of the face's parts {list(PARTS)}")
        raise CLIError(f"--strength auto reads the edited part's factors off the image, so it needs a faces model and a "
                       f"named part; {why}. Give --strength a number instead")
    if isinstance(args.band, bool) or not isinstance(args.band, int) or args.band < 0:
        raise CLIError(f"--band {args.band} is out of range; give a number of pixels ≥ 0")
    if args.keep_holes is not None:
        if isinstance(args.keep_holes, bool) or not isinstance(args.keep_holes, int) or args.keep_holes < 0:
            raise CLIError(f"--keep-holes {args.keep_holes} is out of range; give a rim of pixels ≥ 0")
        if args.band == 0:
            raise CLIError(f"--keep-holes {args.keep_holes} applies only with a guard band (--band > 0); the band is 0")
    if mask is not None:
        try:
            outside(mask, args.band, args.keep_holes is not None, args.keep_holes or 0)
        except ValueError as e:
            raise CLIError(f"--band {args.band}: {e}") from e
    if args.sampler_steps is not None and args.nullspace != "sampler":
        raise CLIError(f"--sampler-steps {args.sampler_steps} applies only with --nullspace sampler (the nullspace is "
                       f"--nullspace {args.nullspace}); drop it or add --nullspace sampler")
    if args.ridge is not None and args.projection != "ridge":
        raise CLIError(f"--ridge {args.ridge} applies only with --projection ridge (the projection is "
                       f"--projection {args.projection}); drop it or add --projection ridge")
    if isinstance(args.refine, bool) or not isinstance(args.refine, int) or args.refine < 0:
        raise CLIError(f"--refine {args.refine} is out of range; give a number of inverse-iteration steps ≥ 0")
    if args.refine and args.projection != "ridge":
        raise CLIError(f"--refine {args.refine} applies only with --projection ridge (the projection is "
                       f"--projection {args.projection}); drop it or add --projection ridge")
    if args.select and (args.projection != "subspace" or args.ridge is not None or args.refine):
        given = " ".join(f for f, on in (("--projection ridge", args.projection != "subspace"),
                                          (f"--ridge {args.ridge}", args.ridge is not None),
                                          (f"--refine {args.refine}", bool(args.refine))) if on)
        raise CLIError(f"--select tries step 7's projection, the ridge (c = {RIDGE_C}) and the ridge with one refine "
                       f"step itself; drop {given}")
    if args.projection == "ridge":
        if args.ridge is None:
            args.ridge = RIDGE_C
        if not (math.isfinite(args.ridge) and args.ridge > 0):
            raise CLIError(f"--ridge {args.ridge} is out of range; give a finite number > 0 (default {RIDGE_C})")
    if args.nullspace == "sampler":
        if args.sampler_steps is None:
            args.sampler_steps = SAMPLER_STEPS
        check_count_arg(args.sampler_steps, "--sampler-steps", 1, ddim_grid().index(t),
                        f"sampler steps, at most the {ddim_grid().index(t)} DDIM levels below t = {t}")
    return EditPlan(spec, ptype, t, lam, out, outputs, x0, mask, named, source, tol, max_iter)


def run(args) -> int:
    plan = plan_edit(args)
    with plan.outputs as outputs:
        progress(args, f"loading model {args.model}")
        model = load_model(args.model, prediction_type=plan.prediction_type)
        x0 = plan.x0 if plan.x0 is not None else sample_source(model, args.seed, args)[0]
        progress(args, f"mask {args.mask!r}: {int(plan.mask.sum())} of {plan.mask.numel()} pixels")
        auto = plan.strength is None
        grid = default_strength_grid(math.prod(model.shape)) if auto else None  # √d·2^(−6 … −1), 6 points
        res = loco_edit(model, x0, plan.mask, plan.t, index=args.index, strengths=grid if auto else [plan.strength], r=args.r,
                        r_null=args.r_null, tol=plan.tol, max_iter=plan.max_iter, band=args.band,
                        band_spare=args.keep_holes is not None, spare_rim=args.keep_holes or 0, nullspace=args.nullspace,
                        sampler_steps=args.sampler_steps or SAMPLER_STEPS, projection=args.projection,
                        ridge=args.ridge or RIDGE_C, refine=args.refine, select=bool(args.select),
                        progress=lambda msg: progress(args, msg))
        direction, recon, edited = res.direction, res.reconstruction, res.edited[0]
        if auto:  # λ by target (ours): the sweep's edits were step 9 at the grid's λ; the chosen λ is sampled once more
            ch = factor_changes(res.reconstruction.expand_as(res.edited), res.edited)
            choice = strength_from_sweep(ch, args.mask, grid, args.target, thresholds_for(model.shape[-1]))
            plan.strength = choice.strength
            direction.extra["strength_choice"] = {**choice.as_dict(), "unit": "tau"}
            progress(args, f"λ by target: {choice.strength:.3f} moves the {args.mask}'s main factor by {args.target:g} τ"
                     + ("" if choice.reached else " — NOT reached on the grid: its largest λ is used"))
            edited = apply_directions(model, res.x_t, res.t, direction=direction, strengths=[choice.strength])[0]
        direction.model, direction.found_at = plan.spec.name, plan.spec.source
        part = args.mask if args.mask in plan.named else None
        # "seed" of the direction is the power method's; say so, and keep the image's --seed apart from it
        direction.extra.update({"source": plan.source, "mask_spec": args.mask, "strength": plan.strength,
                                "edited_image": plan.out.name, "mask_part": part,
                                "image_seed": args.seed if args.image is None else None,
                                "power_method_seed": direction.seed})
        arr = png_array(edited)  # refuses a non-finite edit before anything is written
        st, js = plan.out.with_suffix(".safetensors"), plan.out.with_suffix(".json")
        outputs.stage(plan.out, lambda tmp: write_array_png(arr, tmp))
        outputs.stage(st, direction.write_safetensors)
        outputs.stage(js, direction.write_json)
        outputs.commit()
    report = edit_report(recon, edited, plan.mask)
    print(f"edited image: {plan.out}")
    print(f"direction: {st} (+ {js.name})")
    print(f"against the λ = 0 reconstruction: leakage {report['leakage']:.3f}, PSNR outside the mask "
          f"{report['psnr_outside_db']:.2f} dB, SSIM outside {report['ssim_outside']:.4f}")
    if is_faces_model(model):
        print(describe_faces_change(model, recon, edited, part))
    return 0
