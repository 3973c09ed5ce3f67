"""``lococourse transfer``: apply a saved editing direction to another image (homogeneity, §3.2).

    lococourse transfer --direction DIR.safetensors (--image PATH | --seed N) --strength L --out OUT.png
                        [--model NAME] [--t T]

The direction (written by ``lococourse edit``) is added unchanged to the new image's x_t, as in the
paper: x₀' = DDIM(DDIM-Inv(x₀, t) + λ v, 0), at the direction's own t unless ``--t`` is given.  The
model is the one the direction was found on (its metadata), unless ``--model`` names another — which
is refused if its name or image size does not match the direction's.
"""
from __future__ import annotations

from lococourse.cli.edit import (
    CLIError,
    check_out,
    check_strength,
    describe_faces_change,
    handle_errors,
    is_faces_model,
    progress,
    source_image,
    write_png,
)
from lococourse.core.schedule import check_t
from lococourse.editing.direction import Direction
from lococourse.editing.loco import transfer
from lococourse.editing.metrics import edit_report
from lococourse.models.registry import load_model


def add_arguments(p) -> None:
    p.add_argument("--direction", required=True, help="a direction saved by `lococourse edit` (.safetensors)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", help="the image to edit: a PNG of the model's size")
    src.add_argument("--seed", type=int, help="a generated image (as in `lococourse edit --seed`)")
    p.add_argument("--strength", type=float, required=True, help="λ")
    p.add_argument("--out", required=True, help="the edited image, OUT.png")
    p.add_argument("--model", default=None, help="the model (default: the one the direction was found on)")
    p.add_argument("--t", type=float, default=None, help="edit time (default: the direction's)")
    p.add_argument("--quiet", action="store_true", help="no progress messages")


def _transfer(args) -> int:


    lam = check_strength(args.strength)
    out = check_out(args.out)
    direction = Direction.load(args.direction)
    name = args.model or direction.extra.get("model_source") or direction.model
    if not name:
        raise CLIError(f"{args.direction} does not say which model it was found on; pass --model")
    progress(args, f"loading model {name}")
    model = load_model(name)
    direction.check_compatible(model.spec.name, model.shape)
    t = direction.t if args.t is None else args.t
    check_t(t)
    x0, named, source = source_image(model, args)
    progress(args, f"transferring the direction found on {direction.extra.get('source', 'another image')} to {source}")
    res = transfer(model, direction, x0, [lam], t=t, progress=lambda msg: progress(args, msg))
    recon, edited = res.reconstruction, res.edited[0]
    write_png(edited, out)
    print(f"edited image: {out}")
    part = direction.extra.get("mask_part")
    mask = named.get(part, direction.mask) if part else direction.mask
    rep = edit_report(recon, edited, mask)
    where = f"the {part} of this image" if part in named else "the direction's mask"
    print(f"against the λ = 0 reconstruction, with {where}: leakage {rep['leakage']:.3f}, "
          f"SSIM outside {rep['ssim_outside']:.4f}")
    if is_faces_model(model):
        print(describe_faces_change(model, recon, edited, part if part in named else None))
    return 0


def run(args) -> int:
    return handle_errors("transfer", _transfer, args)
