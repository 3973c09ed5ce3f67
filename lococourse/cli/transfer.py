"""``lococourse transfer``: apply a saved editing direction to another image (homogeneity, §3.2).

    lococourse transfer --direction DIR.safetensors (--image PATH | --seed N) --strength L --out OUT.png
                        [--model NAME] [--t T] [--overwrite]

The direction (written by ``lococourse edit``) is added unchanged to the new image's x_t, as in the
paper: x₀' = DDIM(DDIM-Inv(x₀, t) + λ v, 0), at the direction's own t unless ``--t`` is given.  The
model is ``--model`` if given, else the direction's registered model name, else the folder it was found
in (when that folder still exists here) — so a direction found on a course or hub model travels to any
machine; one found on a local folder needs ``--model`` once the folder has moved.  A model whose name or
image size does not match the direction's is refused.  The direction file is validated before anything
else (keys, dtypes, shape, unit norm, finite values, the mask, its checksum).
"""
from __future__ import annotations

import math
from pathlib import Path

from lococourse.cli.common import (
    CLIError,
    Outputs,
    check_seed_arg,
    check_strength_arg,
    check_t_arg,
    integer,
    number,
    png_array,
    progress,
    read_png,
)
from lococourse.cli.edit import (
    check_out_png,
    describe_faces_change,
    fitted_parts,
    is_faces_model,
    is_faces_spec,
    model_dirs,
    pixel_model,
    sample_source,
    spec_shape,
)
from lococourse.data.faces import sample_faces
from lococourse.data.images import write_png as write_array_png
from lococourse.editing.direction import Direction
from lococourse.editing.loco import transfer
from lococourse.editing.metrics import edit_report
from lococourse.models.registry import PREDICTION_TYPES, all_models, check_available, load_model


def add_arguments(p) -> None:
    p.add_argument("--direction", required=True, help="a direction saved by `lococourse edit` (.safetensors)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", help="the image to edit: a PNG of the model's size")
    src.add_argument("--seed", type=integer, help="a generated image (as in `lococourse edit --seed`)")
    p.add_argument("--strength", type=number, required=True, help="λ")
    p.add_argument("--out", required=True, help="the edited image, OUT.png")
    p.add_argument("--overwrite", action="store_true", help="replace OUT.png if it exists")
    p.add_argument("--model", default=None, help="the model (default: the one the direction was found on)")
    p.add_argument("--prediction-type", choices=PREDICTION_TYPES, default=None,
                   help="what the UNet predicts, for a model folder that does not say")
    p.add_argument("--t", type=number, default=None, help="edit time (default: the direction's)")
    p.add_argument("--quiet", action="store_true", help="no progress messages")


def direction_model(direction: Direction, path: str) -> str:
    """Where to load the direction's model from: its registered name, else the folder it was found in."""
    name = direction.model
    if name and name in all_models():
        return name
    found = direction.found_at or str(direction.extra.get("model_source", ""))
    if found and Path(found).is_dir():
        return found
    if not name and not found:
        raise CLIError(f"--direction {path} does not say which model it was found on; pass --model NAME_OR_FOLDER")
    raise CLIError(f"--direction {path} was found on model {name!r}" + (f" (in {found})" if found else "") +
                   ", which is neither a registered model nor a folder here; pass --model with that model's "
                   "name or folder")


def run(args) -> int:
    # ---- everything that needs no model weights
    out = check_out_png(args.out)
    lam = check_strength_arg(args.strength)
    check_seed_arg(args.seed)
    if args.t is not None:
        check_t_arg(args.t)
    if not str(args.direction).strip():
        raise CLIError("--direction '' is empty; give the .safetensors file written by `lococourse edit`")
    direction = Direction.load(args.direction)
    dpath = Path(args.direction).with_suffix(".safetensors")
    name = args.model if args.model is not None else direction_model(direction, args.direction)
    spec, ptype = pixel_model(name, args.prediction_type)
    try:
        direction.check_compatible(spec.name, spec_shape(spec))
    except ValueError as e:
        raise CLIError(f"--direction {dpath}: {e}") from e
    if tuple(direction.mask.shape[-2:]) != spec_shape(spec)[1:]:
        raise CLIError(f"--direction {dpath}: its mask is {tuple(direction.mask.shape)} but model {spec.name} makes "
                       f"{spec_shape(spec)[1:]} images")
    t = direction.t if args.t is None else args.t
    if not math.isfinite(t):
        raise CLIError(f"--direction {dpath} records no time t (NaN); pass --t")
    check_t_arg(t, "--t" if args.t is not None else f"the direction's t (in {dpath})")
    check_available(spec)
    outputs = Outputs([("--out", out)], overwrite=args.overwrite,
                      inputs=[("--image", args.image), ("--direction", dpath), ("--direction", dpath.with_suffix(".json"))],
                      model_dirs=model_dirs(spec))
    faces = is_faces_spec(spec)
    part = direction.extra.get("mask_part")
    x0, named = None, {}
    if args.image is not None:
        x0, source = read_png(args.image, spec_shape(spec)), str(args.image)
        if faces and part:
            named = fitted_parts(x0, spec.resolution, args)
    elif faces:
        fb = sample_faces(1, args.seed, size=spec.resolution)
        x0, named, source = fb.images[0], {p: m[0] for p, m in fb.masks.items()}, f"faces seed {args.seed}"
    else:
        source = f"model sample, seed {args.seed}"

    # ---- the model, the computation, the output
    with outputs:
        progress(args, f"loading model {name}")
        model = load_model(name, prediction_type=ptype)
        if x0 is None:
            x0 = sample_source(model, args.seed, args)[0]
        progress(args, f"transferring the direction found on {direction.extra.get('source', 'another image')} to {source}")
        res = transfer(model, direction, x0, [lam], t=t, progress=lambda msg: progress(args, msg))
        recon, edited = res.reconstruction, res.edited[0]
        arr = png_array(edited)
        outputs.stage(out, lambda tmp: write_array_png(arr, tmp))
        outputs.commit()
    print(f"edited image: {out}")
    mask = named.get(part, direction.mask) if part else direction.mask
    rep = edit_report(recon, edited, mask)
    where = f"the {part} of this image" if part in named else "the direction's mask"
    print(f"against the λ = 0 reconstruction, with {where}: leakage {rep['leakage']:.3f}, "
          f"SSIM outside {rep['ssim_outside']:.4f}")
    if is_faces_model(model):
        print(describe_faces_change(model, recon, edited, part if part in named else None))
    return 0
