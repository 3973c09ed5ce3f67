"""``lococourse t-edit``: T-LOCO Edit (Algorithms 3 and 4) of one generated image, from the command line.

    lococourse t-edit --model NAME --prompt P [--edit-prompt E] --mask x0,y0,x1,y1 --t T
                      --strength L --seed N --out OUT.png [--overwrite]

NAME is a registry text-to-image model (sd-2.1-base, deepfloyd-if-i-m, lcm-dreamshaper-v7: loaded from the
local Hugging Face cache, else a clear "not available" error) or an offline tiny random-weight pipeline
(tiny-sd, tiny-if, tiny-lcm).  Without --edit-prompt the edit is unsupervised (Algorithm 3, singular
vector --index of the masked Jacobian); with it, text-supervised (Algorithm 4).  The mask is a rectangle
in pixels of the decoded image (x = column).  --t defaults to the paper's (0.7 SD, 0.75 IF; LCM: its
second step).  Every argument (the device and dtype included) and the outputs are checked before the
pipeline loads.  Writes OUT.png (the edit), OUT_source.png (λ = 0: the plain sample) and the direction as
OUT.safetensors + OUT.json — all four at the end, or none.
"""
from __future__ import annotations

import math

import torch

from lococourse.cli.common import (
    CLIError,
    Outputs,
    check_count_arg,
    check_max_iter_arg,
    check_seed_arg,
    check_strength_arg,
    check_tol_arg,
    integer,
    number,
    png_array,
    progress,
)
from lococourse.cli.edit import check_out_png
from lococourse.data.images import write_png as write_array_png
from lococourse.editing.masks import as_mask, parse_rectangle, rectangle
from lococourse.editing.tloco import t_loco_text, t_loco_unsupervised
from lococourse.models.registry import (
    check_available,
    get_spec,
    load_t2i,
    t2i_image_shape,
    t2i_latent_shape,
    t2i_model_names,
)
from lococourse.models.t2i import check_device_dtype
from lococourse.models.tiny import TINY_MODELS

DTYPES = ("float32", "float16", "bfloat16")


def add_arguments(p) -> None:
    p.add_argument("--model", required=True, help="sd-2.1-base | deepfloyd-if-i-m | lcm-dreamshaper-v7 | tiny-sd | tiny-if | tiny-lcm")
    p.add_argument("--prompt", required=True, help="the source prompt c_o (sampling uses only this prompt)")
    p.add_argument("--edit-prompt", default=None, help="the edit prompt c_e: text-supervised T-LOCO (Algorithm 4)")
    p.add_argument("--mask", required=True, help="rectangle x0,y0,x1,y1 in pixels of the decoded image")
    p.add_argument("--t", type=number, default=None, help="edit time in (0, 1] (default: the paper's for the family)")
    p.add_argument("--strength", type=number, required=True, help="λ: how far to move x_t along the direction")
    p.add_argument("--seed", type=integer, default=0, help="seed of x_T (and of the power method)")
    p.add_argument("--out", required=True, help="OUT.png")
    p.add_argument("--overwrite", action="store_true", help="replace OUT.png, OUT_source.png, OUT.safetensors, OUT.json")
    p.add_argument("--index", type=integer, default=0, help="k: which singular vector (unsupervised only)")
    p.add_argument("--r", type=integer, default=5, help="top-r singular vectors of the masked Jacobian (unsupervised)")
    p.add_argument("--r-null", type=integer, default=5, help="r': complement directions projected out (0: none)")
    p.add_argument("--edit-scale", type=number, default=None, help="m of eq. 12 (default: the guidance scale)")
    p.add_argument("--guidance-scale", type=number, default=None, help="s (LCM: w); default the family's")
    p.add_argument("--num-steps", type=integer, default=None, help="sampling steps (default: 100 DDIM; LCM 4; tiny 20)")
    p.add_argument("--max-iter", type=integer, default=30, help="power-method iterations at most")
    p.add_argument("--tol", type=number, default=1e-3, help="power-method tolerance, in (0, 1)")
    p.add_argument("--chunk", type=integer, default=None, help="at most this many JVP/VJP directions per batched call")
    p.add_argument("--jacobian-pool", type=integer, default=1, help="avg-pool the decoded output by this factor for the Jacobian")
    p.add_argument("--device", default="cpu", help="cpu | cuda (fp16/bf16 only on cuda)")
    p.add_argument("--dtype", default="float32", choices=DTYPES)
    p.add_argument("--quiet", action="store_true", help="no progress messages")


def _finite_opt(value, flag: str, low: float = 0.0) -> None:
    if value is not None and (not math.isfinite(value) or value < low):
        raise CLIError(f"{flag} {value:g} is not allowed; it must be a finite number ≥ {low:g}")


def run(args) -> int:
    # ---- everything that needs no pipeline
    out = check_out_png(args.out)
    lam = check_strength_arg(args.strength)
    check_seed_arg(args.seed)
    names = t2i_model_names()
    if args.model not in names:
        raise CLIError(f"--model {args.model!r} is not a text-to-image model; t-edit takes {', '.join(names)}")
    if args.model not in TINY_MODELS:
        check_available(get_spec(args.model))  # a hub checkpoint that is not here: said now, not after the checks
    try:
        check_device_dtype(args.device, getattr(torch, args.dtype))
    except ValueError as e:
        raise CLIError(f"--device {args.device} --dtype {args.dtype}: {e}") from e
    for flag, text in (("--prompt", args.prompt), ("--edit-prompt", args.edit_prompt)):
        if text is not None and not text.strip():
            raise CLIError(f"{flag} {text!r} is empty; give a text prompt such as \"a photo of a man\"")
    if args.t is not None and (not math.isfinite(args.t) or not 0 < args.t <= 1):
        raise CLIError(f"--t {args.t:g} is out of range; t must lie in (0, 1]")
    _, H, W = t2i_image_shape(args.model)
    d = math.prod(t2i_latent_shape(args.model))
    try:
        rect = parse_rectangle(args.mask)
        if rect is None:
            raise CLIError(f"--mask {args.mask!r} is not a rectangle; t-edit takes x0,y0,x1,y1 in pixels of the "
                           f"{W}×{H} decoded image")
        mask = as_mask(rectangle((H, W), *rect), (H, W))
    except (ValueError, TypeError) as e:
        if isinstance(e, CLIError):
            raise
        raise CLIError(f"--mask {args.mask!r}: {e}") from e
    check_count_arg(args.r, "--r", 1, d, f"r for this model's d = {d}")
    if not 0 <= args.index < args.r:
        raise CLIError(f"--index {args.index} is out of range; k must lie in 0 … r − 1 = {args.r - 1}")
    if not 0 <= args.r_null < d:
        raise CLIError(f"--r-null {args.r_null} is out of range; r' must satisfy 0 ≤ r' < d = {d}")
    tol, max_iter = check_tol_arg(args.tol), check_max_iter_arg(args.max_iter)
    if args.num_steps is not None:
        check_count_arg(args.num_steps, "--num-steps", 1, 1000, "the number of sampling steps")
    if args.chunk is not None:
        check_count_arg(args.chunk, "--chunk", 1, None, "the chunk size")
    pool = check_count_arg(args.jacobian_pool, "--jacobian-pool", 1, min(H, W), "the pooling factor")
    if H % pool or W % pool:
        raise CLIError(f"--jacobian-pool {pool} does not divide the {W}×{H} image; give a divisor of {math.gcd(H, W)}")
    _finite_opt(args.edit_scale, "--edit-scale")
    _finite_opt(args.guidance_scale, "--guidance-scale")
    src, st = out.with_name(out.stem + "_source.png"), out.with_suffix(".safetensors")
    outputs = Outputs([("--out", out), ("source image", src), ("direction", st), ("metadata", out.with_suffix(".json"))],
                      overwrite=args.overwrite)

    # ---- the pipeline, the computation, the outputs
    with outputs:
        progress(args, f"loading {args.model}")
        pipe = load_t2i(args.model, device=args.device, dtype=getattr(torch, args.dtype), num_steps=args.num_steps)
        model = pipe.with_prompts(args.prompt, args.edit_prompt, edit_scale=args.edit_scale,
                                  guidance_scale=args.guidance_scale)
        kw = dict(seed=args.seed, r_null=args.r_null, tol=tol, max_iter=max_iter, chunk=args.chunk, jacobian_pool=pool)
        if args.edit_prompt is None:
            progress(args, "unsupervised T-LOCO (Algorithm 3)")
            res = t_loco_unsupervised(model, mask, args.t, [lam], index=args.index, r=args.r, **kw)
        else:
            progress(args, "text-supervised T-LOCO (Algorithm 4)")
            res = t_loco_text(model, mask, args.t, [lam], **kw)
        edited, original = png_array(res.edited[0].cpu()), png_array(res.original.cpu())
        res.direction.extra.update(strength=lam, seed=args.seed)
        res.direction.found_at = args.model
        outputs.stage(out, lambda tmp: write_array_png(edited, tmp))
        outputs.stage(src, lambda tmp: write_array_png(original, tmp))
        outputs.stage(st, res.direction.write_safetensors)
        outputs.stage(out.with_suffix(".json"), res.direction.write_json)
        outputs.commit()
    print(f"{out} (t = {res.t:.3f}, λ = {lam:g}, σ = {res.direction.sigma:.4g}, "
          f"{res.direction.seconds:.1f} s for the direction)")
    return 0

