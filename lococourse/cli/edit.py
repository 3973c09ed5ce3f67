"""``lococourse edit``: unsupervised LOCO Edit (Algorithm 1) of one image, from the command line.

    lococourse edit --model NAME (--image PATH | --seed N) --mask NAME|x0,y0,x1,y1|PATH
                    --t T --index K --strength L --out OUT.png [--r R] [--r-null R']

1. the image: a PNG of the model's size (``--image``), or, for ``--seed N``, the face
   ``sample_faces(1, N)`` of a procedural-faces model (any other model: its own DDIM sample from
   seeded noise);
2. the mask Ω: a named part (``background``, ``hair``, ``face``, ``eyes``, ``mouth``) of a faces
   model — the ground-truth part mask of the generated face, or for ``--image`` the part masks of
   the face fitted to it by analysis by synthesis (lococourse.eval) — or a rectangle
   ``x0,y0,x1,y1`` (pixels, x = column), or a mask image;
3. x_t = DDIM-Inv(x₀, t), v_p from the masked Jacobian and the nullspace projection (top-r, top-r'),
   x₀' = DDIM(x_t + λ v_p, 0).

Writes OUT.png (the edited image, clamped to [-1, 1] for the PNG), and the direction beside it:
OUT.safetensors + OUT.json (its metadata: model, t, k, r, r', σ, the mask, the source image, λ),
which ``lococourse transfer --direction OUT.safetensors`` applies to other images.
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from lococourse.core.schedule import check_t
from lococourse.data.faces import FACTOR_NAMES, render_faces, sample_faces
from lococourse.data.images import ImageError, read_image
from lococourse.data.images import write_png as write_image
from lococourse.editing.loco import loco_edit
from lococourse.editing.masks import parse_mask
from lococourse.editing.metrics import edit_report
from lococourse.eval.decisions import changed, local_edit_success, thresholds_for
from lococourse.eval.factors import estimate_factors, factor_changes
from lococourse.models.ddim import ddim_sample
from lococourse.models.registry import ModelNotAvailableError, load_model

FACES_GENERATOR = "lococourse.data.faces.render_faces"


class CLIError(ValueError):
    """A bad command line: printed as one line, exit status 2."""


def add_arguments(p) -> None:
    p.add_argument("--model", required=True, help="a registered model (see `lococourse models`) or a local diffusers folder")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", help="the image to edit: a PNG of the model's size")
    src.add_argument("--seed", type=int, help="edit a generated image: the face sample_faces(1, SEED) of a faces "
                                              "model, else the model's DDIM sample from seeded noise")
    p.add_argument("--mask", required=True, help="a part name of a faces model (background, hair, face, eyes, mouth), "
                                                 "a rectangle x0,y0,x1,y1 in pixels, or a mask image")
    p.add_argument("--t", type=float, default=None, help="edit time in (0, 1] (default: the model card's, else 0.6)")
    p.add_argument("--index", type=int, default=0, help="k: which singular vector of the masked Jacobian (0-based)")
    p.add_argument("--strength", type=float, required=True, help="λ: how far to move x_t along the direction")
    p.add_argument("--r", type=int, default=5, help="top-r singular vectors of the masked Jacobian (k < r)")
    p.add_argument("--r-null", type=int, default=5, help="r': complement directions projected out (0: no projection)")
    p.add_argument("--out", required=True, help="OUT.png; the direction goes to OUT.safetensors and OUT.json")
    p.add_argument("--tol", type=float, default=1e-3, help="power-method tolerance")
    p.add_argument("--max-iter", type=int, default=50, help="power-method iterations at most")
    p.add_argument("--quiet", action="store_true", help="no progress messages")


# ---------------------------------------------------------------------------------------- shared helpers
def progress(args, msg: str) -> None:
    if not getattr(args, "quiet", False):
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def check_strength(lam) -> float:
    if not math.isfinite(lam):
        raise CLIError(f"--strength λ must be a finite number; got {lam}")
    return float(lam)


def check_out(out: str) -> Path:
    path = Path(out)
    if path.suffix.lower() != ".png":
        raise CLIError(f"--out must name a .png file; got {out!r}")
    return path


def model_card(model) -> dict:
    card = Path(model.spec.source) / "card.json"
    return json.loads(card.read_text()) if card.exists() else {}


def is_faces_model(model) -> bool:
    """A model trained on lococourse.data.faces (its card says so) with (3, S, S) images."""
    data = model_card(model).get("data", {})
    c, h, w = model.shape
    return isinstance(data, dict) and data.get("generator") == FACES_GENERATOR and c == 3 and h == w


def load(args):
    """The model named by --model, with a progress message."""

    progress(args, f"loading model {args.model}")
    return load_model(args.model)


def read_png(path: str, shape, args=None) -> torch.Tensor:
    """An image file as a (C, H, W) tensor in [-1, 1]; refuses another size; says what it converted."""
    c, h, w = shape
    try:
        arr, notes = read_image(path, channels=c)
    except ImageError as e:
        raise CLIError(str(e)) from e
    if arr.shape[:2] != (h, w):
        raise CLIError(f"image {path} is {arr.shape[1]}×{arr.shape[0]} pixels but the model makes {w}×{h} images; "
                       f"resize it to {w}×{h} first")
    for note in notes:
        print(f"lococourse: note: {path}: {note}", file=sys.stderr)
    x = torch.from_numpy(arr.astype(np.float32) * 2.0 - 1.0)  # (H, W, C) in [-1, 1]
    return x.permute(2, 0, 1).contiguous()


def write_png(x, path: Path) -> None:
    """A (C, H, W) image in [-1, 1] as a PNG, written atomically (values clamped to [-1, 1] for the file only)."""
    arr = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    write_image(arr, path)


def source_image(model, args) -> tuple["torch.Tensor", dict, str]:
    """(x₀ (C, H, W), named masks, a description) from --image or --seed."""

    faces = is_faces_model(model)
    size = model.shape[-1]
    if args.image is not None:
        x0 = read_png(args.image, model.shape)
        named = {}
        if faces:

            progress(args, "fitting a face to the image (for the named part masks)")
            fit = estimate_factors(x0)
            named = {p: m[0] for p, m in render_faces(fit.as_dict(), size).masks.items()}
            progress(args, f"fitted face: RMS pixel error {float(fit.mse[0]) ** 0.5:.3f}")
        return x0, named, str(args.image)
    if faces:

        fb = sample_faces(1, args.seed, size=size)
        return fb.images[0], {p: m[0] for p, m in fb.masks.items()}, f"faces seed {args.seed}"

    progress(args, f"sampling an image from seed {args.seed} (DDIM, 100-step grid)")
    g = torch.Generator().manual_seed(args.seed)
    x_T = torch.randn(1, *model.shape, generator=g)
    with torch.no_grad():
        x0 = ddim_sample(model.eps_model(), x_T, 1.0, 0.0)[0]
    return x0, {}, f"model sample, seed {args.seed}"


def describe_faces_change(model, reference, edited, part: str | None = None) -> str:
    """The factors an edit changed (faces models): estimated against the λ = 0 reconstruction."""

    th = thresholds_for(model.shape[-1])
    ch = factor_changes(reference, edited)
    names = [f"{n} {float(ch[i]):+.2f}" for i, (n, c) in enumerate(zip(FACTOR_NAMES, changed(ch, th).tolist())) if c]
    msg = "factors changed: " + (", ".join(names) if names else "none beyond their thresholds")
    if part is not None:
        msg += f"; local edit of the {part}: {'success' if bool(local_edit_success(ch, part, th)) else 'no'}"
    return msg


def handle_errors(name: str, fn, args) -> int:
    """Run fn(args); a bad input prints ``lococourse NAME: error: …`` and returns 2."""

    try:
        return fn(args)
    except (CLIError, ValueError, FileNotFoundError, ModelNotAvailableError) as e:
        print(f"lococourse {name}: error: {e}", file=sys.stderr)
        return 2


# ---------------------------------------------------------------------------------------- edit
def _check_ranks(args, d: int) -> None:
    if args.r < 1 or args.r > d:
        raise CLIError(f"--r must lie in 1..d = {d}; got {args.r}")
    if not 0 <= args.index < args.r:
        raise CLIError(f"--index k must lie in 0..r−1 = 0..{args.r - 1}; got {args.index}")
    if not 0 <= args.r_null < d:
        raise CLIError(f"--r-null r' must satisfy 0 ≤ r' < d = {d} (the image's number of entries); got {args.r_null}")


def _edit(args) -> int:


    lam = check_strength(args.strength)
    out = check_out(args.out)
    model = load(args)
    spec = model.spec
    t = args.t if args.t is not None else (spec.edit_t or 0.6)
    check_t(t)
    d = math.prod(model.shape)
    _check_ranks(args, d)
    x0, named, source = source_image(model, args)
    mask = parse_mask(args.mask, model.shape[1:], named)
    progress(args, f"mask {args.mask!r}: {int(mask.sum())} of {mask.numel()} pixels")
    res = loco_edit(model, x0, mask, t, index=args.index, strengths=[lam], r=args.r, r_null=args.r_null, tol=args.tol,
                    max_iter=args.max_iter, progress=lambda msg: progress(args, msg))
    direction, recon, edited = res.direction, res.reconstruction, res.edited[0]
    direction.model = spec.name
    direction.extra.update({"source": source, "mask_spec": args.mask, "strength": lam, "model_source": spec.source,
                            "edited_image": out.name, "mask_part": args.mask if args.mask in named else None})
    write_png(edited, out)
    saved = direction.save(out.with_suffix(".safetensors"))
    report = edit_report(recon, edited, mask)
    print(f"edited image: {out}")
    print(f"direction: {saved} (+ {saved.with_suffix('.json').name})")
    print(f"against the λ = 0 reconstruction: leakage {report['leakage']:.3f}, PSNR outside the mask "
          f"{report['psnr_outside_db']:.2f} dB, SSIM outside {report['ssim_outside']:.4f}")
    if is_faces_model(model):
        print(describe_faces_change(model, recon, edited, args.mask if args.mask in named else None))
    return 0


def run(args) -> int:
    return handle_errors("edit", _edit, args)
