"""T-LOCO Edit: unsupervised and text-supervised editing in text-to-image diffusion models (§3.3; Appendix
E.2–E.3, Algorithms 3 and 4, eqs. 11–12; settings of Appendix G.3).

Three families, one interface (:class:`T2IModel`: a pipeline plus its prompts):

* ``"sd"``  — Stable Diffusion: latent z_t (4 × h × w); the PMP decodes ẑ₀ with the VAE, so the Jacobian
  maps latents to pixels and masks live in pixel space (:class:`~lococourse.models.adapters.GuidedPMP` with
  ``vae``).  DDIM on the scheduler's "leading" grid (the paper: 100 steps), CFG scale s (eq. 3).
* ``"if"``  — DeepFloyd IF stage I: pixels; the learned-variance half of the UNet's channels is split
  off (:class:`~lococourse.models.adapters.GuidedPMP` without ``vae``).  Its dynamic thresholding is not used.
* ``"lcm"`` — Latent Consistency Model: latent; guidance enters through the UNet's w-embedding
  (``timestep_cond``) instead of CFG, sampling is LCM's 4-step multistep consistency sampling (fresh
  seeded noise between steps), the PMP is the consistency function c_out·x̂₀ + c_skip·z_t decoded by
  the VAE (:class:`LCMPMP`), and the edit happens at the second step (G.3).

PMPs: ``pmp_source(t)`` is f^o (eq. 11); ``pmp_edit(t)`` is f^e (eq. 12) = f^o with the extra guidance
term m(ε(c_e) − ε(∅)) (for LCM: added to the w-guided ε(c_o); our reading of eq. 12 for a model without
CFG).  All PMPs here return float32 whatever the network dtype, so the power method and projections run
in float32; they never form a d × d matrix (projections use V̄ of shape d × r').

Algorithms (both: x_T seeded; x_t = DDIM(x_T, 1 → t) with the source prompt; one edit at t; the rest of
the sampling with the source prompt only; λ = 0 gives exactly the plain sample):

* :func:`t_loco_unsupervised` — Algorithm 3: top-r SVD of ∂P_Ω f^o/∂x_t (v = Ṽ[:, k]), nullspace
  projection from the top-r' of ∂P_{Ω^c} f^o/∂x_t, normalise, x_t + λ v_p.
* :func:`t_loco_text` — Algorithm 4: d = P_Ω(f^e(x_t) − f^o(x_t)) (held fixed), v = J_eᵀ d in one VJP,
  the same nullspace projection from f^o on Ω^c, normalise, x_t + λ v_p.

Speed/memory options for real sizes: ``device``/``dtype`` of :meth:`T2IPipeline.to` (fp16/bf16 opt-in,
CUDA only), ``chunk`` (at most this many JVP/VJP directions per batched call), ``jacobian_pool``
(avg-pool the decoded output by this factor before masking: the Jacobian's output and the power
method's U shrink by its square; the decoder itself still runs at full resolution), ``forward_mode``
of the Jacobian operator (default "transpose": J·V by double backward, no forward-mode trace; "jvp" or
"linearize" where an op lacks a double backward), and :meth:`T2IPipeline.enable_recompute
<lococourse.models.t2i.T2IPipeline.enable_recompute>` (recompute the UNet's and VAE's blocks in the backward pass
instead of storing them: SD-2.1-base's Jacobian then fits a 24 GB CPU machine; T-LOCO's default ``forward_mode``
becomes "jvp", the one mode recomputation supports).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from lococourse.core.checks import check_finite, check_index
from lococourse.editing.direction import Direction
from lococourse.editing.loco import complement_basis, find_direction, linearize
from lococourse.jacobian.operator import check_mask, vjp
from lococourse.jacobian.subspace import project_out
from lococourse.jacobian.views import pooled
from lococourse.models.t2i import T2IModel


# ---------------------------------------------------------------------------------------- masks and operators
def pixel_mask(mask, model: T2IModel | None = None, *, out_shape=None, latent_shape=None, pool: int = 1) -> torch.Tensor:
    """Ω as a boolean mask over the PMP's pixel output (C, H, W), avg-pooled by ``pool`` (≥ half inside stays in).

    A mask at the latent resolution is refused with a clear error: masks live in the decoded image.
    """
    out_shape = tuple(model.out_shape if model is not None else out_shape)
    latent_shape = tuple(model.shape if model is not None else (latent_shape or out_shape))
    m = torch.as_tensor(mask)
    if m.dtype != torch.bool:
        raise TypeError(f"mask must be a boolean tensor (True inside Ω); got dtype {m.dtype}")
    if tuple(m.shape[-2:]) == tuple(latent_shape[-2:]) and tuple(latent_shape[-2:]) != tuple(out_shape[-2:]):
        raise ValueError(f"mask has the latent resolution {tuple(m.shape[-2:])}, but masks live in pixel space: the "
                         f"decoded output is {out_shape[1]}×{out_shape[2]} (Appendix E.2); give an (H, W) = "
                         f"{tuple(out_shape[1:])} mask")
    m = check_mask(m, out_shape)
    if pool != 1:
        if isinstance(pool, bool) or not isinstance(pool, int) or pool < 1 or out_shape[1] % pool or out_shape[2] % pool:
            raise ValueError(f"jacobian_pool must be a positive integer dividing H = {out_shape[1]} and W = "
                             f"{out_shape[2]}; got {pool!r}")
        m = F.avg_pool2d(m.float().unsqueeze(0), pool)[0] >= 0.5
        m = check_mask(m, m.shape)
    return m


def unsupervised_direction(f, x_t: torch.Tensor, mask: torch.Tensor, *, index: int = 0, r: int = 5, r_null: int = 5,
                           seed: int = 0, tol: float = 1e-3, max_iter: int = 30, chunk: int | None = None,
                           forward_mode: str = "transpose") -> Direction:
    """Algorithm 3 steps 6–10 on any PMP f: the same computation as Algorithm 1 steps 4–8, so it *is*
    :func:`~lococourse.editing.loco.find_direction` (with T-LOCO's defaults: tol 1e-3, 30 iterations)."""
    return find_direction(f, x_t, mask, index=index, r=r, r_null=r_null, seed=seed, tol=tol, max_iter=max_iter,
                          chunk=chunk, forward_mode=forward_mode, extra={"variant": "unsupervised"})


@dataclass
class TextDirection:
    """Algorithm 4's pieces: d (masked f^e − f^o), v = J_eᵀ d (raw), V̄, and the unit v_p."""

    d: torch.Tensor  # (*S_out), zero outside Ω
    v_raw: torch.Tensor  # (*S_in) J_eᵀ d
    v_proj: torch.Tensor  # (*S_in) v_raw − V̄V̄ᵀ v_raw (before normalising)
    Vbar: torch.Tensor | None  # (d_in, r')
    direction: Direction  # v_p = v_proj/‖v_proj‖ with metadata


def text_direction(f_o, f_e, x_t: torch.Tensor, mask: torch.Tensor, *, r_null: int = 5, seed: int = 0,
                   tol: float = 1e-3, max_iter: int = 30, chunk: int | None = None,
                   forward_mode: str = "transpose") -> TextDirection:
    """Algorithm 4 on any pair of PMPs: d = P_Ω(f^e(x_t) − f^o(x_t)) held fixed; v = J_eᵀ d (one VJP of f^e);
    v_p = (I − V̄V̄ᵀ) v with V̄ the top-r' of ∂P_{Ω^c} f^o/∂x_t; v_p/‖v_p‖."""
    check_finite(x_t, "x_t")
    t0 = time.perf_counter()
    check_index(r_null, "r_null", x_t.numel(), what="d")
    x = x_t.detach()
    with torch.no_grad():
        y_o, y_e = f_o(x.unsqueeze(0))[0], f_e(x.unsqueeze(0))[0]
    mask = check_mask(mask, tuple(y_o.shape))
    d = ((y_e - y_o) * mask.to(y_o.dtype)).detach()
    if not torch.linalg.norm(d) > 0:
        raise ValueError("f^e(x_t) − f^o(x_t) is zero inside Ω: the edit prompt changes nothing there "
                         "(same prompt as the source, or m = 0?)")
    v_raw = vjp(f_e, x, d.unsqueeze(0))[0]  # one VJP: J_eᵀ d
    null, _ = complement_basis(linearize(f_o, x, chunk=chunk, forward_mode=forward_mode), mask, r_null, seed=seed,
                               tol=tol, max_iter=max_iter)
    Vbar = None if null is None else null.V
    v = project_out(v_raw.reshape(-1), Vbar)
    n = torch.linalg.norm(v)
    if not n > 0:
        raise ValueError("the projected direction J_eᵀd − V̄V̄ᵀJ_eᵀd is zero; use a smaller r_null")
    direction = Direction((v / n).reshape(x.shape).detach(), float(getattr(f_o, "t", float("nan")) or float("nan")),
                          mask.cpu(), 0, 0, r_null, float(torch.linalg.norm(v_raw)), seed=seed, jacobian="text-vjp",
                          seconds=time.perf_counter() - t0,
                          extra={"variant": "text", "d_norm": float(torch.linalg.norm(d))})
    return TextDirection(d, v_raw.detach(), v.reshape(x.shape).detach(), Vbar, direction)


# ---------------------------------------------------------------------------------------- Algorithms 3 and 4
@dataclass
class TEditResult:
    x_T: torch.Tensor  # (*S) seeded noise
    x_t: torch.Tensor  # (*S) DDIM(x_T, 1 → t) with the source prompt
    t: float  # the grid (LCM: step) time of the edit
    direction: Direction
    strengths: list
    edited: torch.Tensor  # (L, *S_out) pixel images, one per λ
    original: torch.Tensor  # (*S_out) the λ = 0 image = plain sampling
    text: TextDirection | None = None


def _check_strengths(strengths) -> list[float]:
    out = []
    for lam in strengths:
        if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not math.isfinite(lam):
            raise ValueError(f"strength λ must be a finite number; got {lam!r}")
        out.append(float(lam))
    return out


def _start(model: T2IModel, t, seed: int):
    if not isinstance(model, T2IModel):
        raise TypeError(f"model must be a T2IModel (pipeline.with_prompts(...)); got {type(model).__name__}")
    sampler = model.sampler(seed)
    t = model.default_t() if t is None else t
    if not isinstance(t, (int, float)) or isinstance(t, bool) or not 0 < t <= 1:
        raise ValueError(f"t must be a number in (0, 1]; got {t!r}")
    t_grid = sampler.snap(t)
    x_T = model.pipe.noise(seed)
    x_t = sampler.to_t(x_T, t_grid)
    return sampler, t_grid, x_T, x_t


@torch.no_grad()
def _finish(model, sampler, x_t, t_grid, v, strengths):
    lam = torch.tensor([0.0, *strengths], dtype=x_t.dtype, device=x_t.device).reshape(-1, 1, 1, 1)
    x0 = sampler.finish(x_t + lam * v.to(x_t), t_grid)  # (L+1, *S)
    return model.decode(x0)


def resample(model: T2IModel, result: TEditResult, strengths: Sequence[float], seed: int = 0) -> torch.Tensor:
    """Step 9 again at other strengths, with the direction already found: DDIM(x_t + λ v_p, t → 0, c_o) for
    each λ (the same sampler and ``seed`` as the edit that made ``result``): (L, *S_out) pixel images."""
    if not isinstance(model, T2IModel):
        raise TypeError(f"model must be a T2IModel (pipeline.with_prompts(...)); got {type(model).__name__}")
    if tuple(result.x_t.shape) != tuple(model.shape):
        raise ValueError(f"the result's x_t has shape {tuple(result.x_t.shape)}, the model's is {tuple(model.shape)}: "
                         "it belongs to another model")
    strengths = _check_strengths(strengths)
    return _finish(model, model.sampler(seed), result.x_t.unsqueeze(0), result.t, result.direction.v, strengths)[1:]


def sample(model: T2IModel, seed: int = 0) -> torch.Tensor:
    """Plain sampling with the source prompt from the seed's x_T: the (*S_out) pixel image."""
    sampler = model.sampler(seed)
    with torch.no_grad():
        return model.decode(sampler.finish(model.pipe.noise(seed), 1.0))[0]


def _prepare_mask(model, mask, pool):
    return pixel_mask(mask, model, pool=pool).to(model.pipe.device)


def _forward_mode(model: T2IModel, forward_mode: str | None) -> str:
    """The Jacobian's forward mode: the given one, else "jvp" for a pipeline that recomputes, else "transpose"."""
    from lococourse.models.recompute import RECOMPUTE_FORWARD_MODE

    recompute = model.pipe.recompute
    if forward_mode is None:
        return RECOMPUTE_FORWARD_MODE if recompute else "transpose"
    if recompute and forward_mode == "transpose":
        raise ValueError("forward_mode='transpose' (a double backward) does not go through recomputed blocks; this "
                         f"pipeline recomputes (enable_recompute()): use forward_mode={RECOMPUTE_FORWARD_MODE!r} "
                         "(or None), or pipe.disable_recompute()")
    return forward_mode


def t_loco_unsupervised(model: T2IModel, mask, t: float | None = None, strengths: Sequence[float] = (-5.0, 5.0), *,
                        seed: int = 0, index: int = 0, r: int = 5, r_null: int = 5, tol: float = 1e-3,
                        max_iter: int = 30, chunk: int | None = None, jacobian_pool: int = 1,
                        forward_mode: str | None = None) -> TEditResult:
    """Algorithm 3 (unsupervised T-LOCO Edit): x_t ← DDIM(x_T, 1 → t, c_o); v_p from ∂P_Ω f^o and the
    nullspace of ∂P_{Ω^c} f^o; x'₀ ← DDIM(x_t + λ v_p, t → 0, c_o) for each λ (one batch, λ = 0 first).
    ``forward_mode`` None: "jvp" if the pipeline recomputes (:meth:`T2IPipeline.enable_recompute`), else "transpose"."""
    strengths = _check_strengths(strengths)
    forward_mode = _forward_mode(model, forward_mode)
    m = _prepare_mask(model, mask, jacobian_pool)
    sampler, t_grid, x_T, x_t = _start(model, t, seed)
    f = model.pmp_source(t_grid)
    dirn = unsupervised_direction(pooled(f, jacobian_pool), x_t[0], m, index=index, r=r, r_null=r_null, seed=seed,
                                  tol=tol, max_iter=max_iter, chunk=chunk, forward_mode=forward_mode)
    dirn.t, dirn.model = t_grid, model.name
    dirn.extra.update(prompt=model.prompt, family=model.family, jacobian_pool=jacobian_pool)
    out = _finish(model, sampler, x_t, t_grid, dirn.v, strengths)
    return TEditResult(x_T[0], x_t[0], t_grid, dirn, strengths, out[1:], out[0])


def t_loco_text(model: T2IModel, mask, t: float | None = None, strengths: Sequence[float] = (-10.0, 10.0), *,
                seed: int = 0, r_null: int = 5, tol: float = 1e-3, max_iter: int = 30, chunk: int | None = None,
                jacobian_pool: int = 1, forward_mode: str | None = None) -> TEditResult:
    """Algorithm 4 (text-supervised T-LOCO Edit): d = P_Ω(f^e − f^o)(x_t), v = J_eᵀ d, nullspace projection
    from f^o on Ω^c, normalise; the edit prompt is used for the direction only, sampling uses c_o.
    ``forward_mode`` None: "jvp" if the pipeline recomputes (:meth:`T2IPipeline.enable_recompute`), else "transpose"."""
    if model.edit is None:
        raise ValueError("text-supervised T-LOCO needs an edit prompt: pipeline.with_prompts(prompt, edit_prompt)")
    strengths = _check_strengths(strengths)
    forward_mode = _forward_mode(model, forward_mode)
    m = _prepare_mask(model, mask, jacobian_pool)
    sampler, t_grid, x_T, x_t = _start(model, t, seed)
    f_o, f_e = pooled(model.pmp_source(t_grid), jacobian_pool), pooled(model.pmp_edit(t_grid), jacobian_pool)
    td = text_direction(f_o, f_e, x_t[0], m, r_null=r_null, seed=seed, tol=tol, max_iter=max_iter, chunk=chunk,
                        forward_mode=forward_mode)
    dirn = td.direction
    dirn.t, dirn.model = t_grid, model.name
    dirn.extra.update(prompt=model.prompt, edit_prompt=model.edit_prompt, edit_scale=model.edit_scale,
                      family=model.family, jacobian_pool=jacobian_pool)
    out = _finish(model, sampler, x_t, t_grid, dirn.v, strengths)
    return TEditResult(x_T[0], x_t[0], t_grid, dirn, strengths, out[1:], out[0], td)


