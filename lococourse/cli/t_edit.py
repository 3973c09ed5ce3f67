"""``lococourse t-edit``: T-LOCO Edit (Algorithms 3 and 4) of one generated image, from the command line.

    lococourse t-edit --model NAME --prompt P [--edit-prompt E] --mask x0,y0,x1,y1 --t T
                      --strength L --seed N --out OUT.png

NAME is a registry text-to-image model (sd-2.1-base, deepfloyd-if-i-m, lcm-dreamshaper-v7: loaded from the
local Hugging Face cache, else a clear "not available" error) or an offline tiny random-weight pipeline
(tiny-sd, tiny-if, tiny-lcm).  Without --edit-prompt the edit is unsupervised (Algorithm 3, singular
vector --index of the masked Jacobian); with it, text-supervised (Algorithm 4).  The mask is a rectangle
in pixels of the decoded image (x = column).  --t defaults to the paper's (0.7 SD, 0.75 IF; LCM: its
second step).  Writes OUT.png (the edit), OUT_source.png (λ = 0: the plain sample) and the direction
as OUT.safetensors + OUT.json.
"""
from __future__ import annotations

from lococourse.cli.edit import CLIError, check_out, check_strength, handle_errors, progress, write_png
from lococourse.editing.masks import parse_mask
from lococourse.editing.tloco import t_loco_text, t_loco_unsupervised
from lococourse.models.registry import load_t2i


def add_arguments(p) -> None:
    p.add_argument("--model", required=True, help="sd-2.1-base | deepfloyd-if-i-m | lcm-dreamshaper-v7 | tiny-sd | tiny-if | tiny-lcm")
    p.add_argument("--prompt", required=True, help="the source prompt c_o (sampling uses only this prompt)")
    p.add_argument("--edit-prompt", default=None, help="the edit prompt c_e: text-supervised T-LOCO (Algorithm 4)")
    p.add_argument("--mask", required=True, help="rectangle x0,y0,x1,y1 in pixels of the decoded image")
    p.add_argument("--t", type=float, default=None, help="edit time in (0, 1] (default: the paper's for the family)")
    p.add_argument("--strength", type=float, required=True, help="λ: how far to move x_t along the direction")
    p.add_argument("--seed", type=int, default=0, help="seed of x_T (and of the power method)")
    p.add_argument("--out", required=True, help="OUT.png")
    p.add_argument("--index", type=int, default=0, help="k: which singular vector (unsupervised only)")
    p.add_argument("--r", type=int, default=5, help="top-r singular vectors of the masked Jacobian (unsupervised)")
    p.add_argument("--r-null", type=int, default=5, help="r': complement directions projected out (0: none)")
    p.add_argument("--edit-scale", type=float, default=None, help="m of eq. 12 (default: the guidance scale)")
    p.add_argument("--guidance-scale", type=float, default=None, help="s (LCM: w); default the family's")
    p.add_argument("--num-steps", type=int, default=None, help="sampling steps (default: 100 DDIM; LCM 4; tiny 20)")
    p.add_argument("--max-iter", type=int, default=30, help="power-method iterations at most")
    p.add_argument("--tol", type=float, default=1e-3, help="power-method tolerance")
    p.add_argument("--chunk", type=int, default=None, help="at most this many JVP/VJP directions per batched call")
    p.add_argument("--jacobian-pool", type=int, default=1, help="avg-pool the decoded output by this factor for the Jacobian")
    p.add_argument("--device", default="cpu", help="cpu | cuda (fp16/bf16 only on cuda)")
    p.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"))
    p.add_argument("--quiet", action="store_true", help="no progress messages")


def _t_edit(args) -> int:
    import torch


    out = check_out(args.out)
    lam = check_strength(args.strength)
    if len(args.mask.split(",")) != 4:
        raise CLIError(f"--mask must be a rectangle x0,y0,x1,y1 in pixels; got {args.mask!r}")
    progress(args, f"loading {args.model}")
    pipe = load_t2i(args.model, device=args.device, dtype=getattr(torch, args.dtype), num_steps=args.num_steps)
    model = pipe.with_prompts(args.prompt, args.edit_prompt, edit_scale=args.edit_scale,
                              guidance_scale=args.guidance_scale)
    mask = parse_mask(args.mask, pipe.image_shape[1:])
    kw = dict(seed=args.seed, r_null=args.r_null, tol=args.tol, max_iter=args.max_iter, chunk=args.chunk,
              jacobian_pool=args.jacobian_pool)
    if args.edit_prompt is None:
        progress(args, "unsupervised T-LOCO (Algorithm 3)")
        res = t_loco_unsupervised(model, mask, args.t, [lam], index=args.index, r=args.r, **kw)
    else:
        progress(args, "text-supervised T-LOCO (Algorithm 4)")
        res = t_loco_text(model, mask, args.t, [lam], **kw)
    write_png(res.edited[0].cpu(), out)
    write_png(res.original.cpu(), out.with_name(out.stem + "_source.png"))
    res.direction.extra.update(strength=lam, seed=args.seed)
    res.direction.save(out.with_suffix(".safetensors"))
    print(f"{out} (t = {res.t:.3f}, λ = {lam:g}, σ = {res.direction.sigma:.4g}, "
          f"{res.direction.seconds:.1f} s for the direction)")
    return 0


def run(args) -> int:
    return handle_errors("t-edit", _t_edit, args)
