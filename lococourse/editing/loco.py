"""LOCO Edit (Algorithm 1 of Chen et al. 2024): the one implementation of its steps 3–9.

A *model* is a :class:`~lococourse.core.interfaces.DiffusionModel` (``pmp(t)``, ``eps_model()``, ``shape``, a name):
a :class:`~lococourse.models.registry.LoadedModel`, a :class:`~lococourse.theory.molrg.MoLRG`, a T-LOCO
:class:`~lococourse.models.t2i.T2IModel`.  Directions live in x_t-space; masks live in the PMP's output space.
Nothing here forms a d × d matrix.  :func:`find_directions` is the only place steps 4–8 happen: the CLI, the
benchmark, the notebooks and T-LOCO's unsupervised variant (Algorithm 3) call it for one mask through
:func:`find_direction`; the faces evaluation calls it for all of an image's parts at once, in one batch.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from typing import Callable, Sequence

import torch

from lococourse.core.checks import check_finite, check_index, check_real, check_strength
from lococourse.core.interfaces import PMP, DiffusionModel, LinearOperator
from lococourse.core.schedule import check_t
from lococourse.editing.direction import Direction, model_name
from lococourse.editing.select import most_local, plane
from lococourse.jacobian.operator import check_mask
from lococourse.jacobian.power import TopSVD, power_methods
from lococourse.jacobian.subspace import project_out, ridge_project_rows
from lococourse.jacobian.views import JacobianViews
from lococourse.models.ddim import ddim_grid, ddim_invert, ddim_map, ddim_sample

__all__ = ["find_direction", "find_directions", "complement_basis", "complement_bases", "linearize", "invert", "apply_directions", "loco_edit", "transfer",
           "select_direction", "EditResult"]

JACOBIANS = ("pmp", "eps")
NULLSPACES = ("pmp", "sampler")
#: The default accuracy of find_direction with stop_on="direction": the distance still to go of v_k and of v_p,
#: relative.  Measured (benchmarks/results/direction_speed.md, faces32, t = 0.6, λ = √d/16): edits within 58.9–71.5 dB
#: PSNR of the converged edit, 15× faster than the paper's routine structure in the same run.
DIRECTION_TOL = 1e-2
SELECT = ("index", "mask_energy")
PROJECTIONS = ("subspace", "ridge")
#: μ / ‖A v̂‖² of ``projection="ridge"`` (our option for step 7; :func:`~lococourse.jacobian.ridge_project`).
#: Chosen on faces32 at t = 0.6 (benchmarks/explore_nullspace_variants.py ridge): c = 0.01 from the unprojected v
#: scored local 0.70 on 20 faces against 0.57 for band + sampler with step 7's projection; c = 0.1 gave 0.57.
RIDGE_C = 0.01


def linearize(f: PMP | JacobianViews | LinearOperator, x_t: torch.Tensor | None = None, *, alpha_bar: float | None = None,
              chunk: int | None = None, forward_mode: str = "transpose") -> JacobianViews:
    """The one linearisation of f at x_t that steps 4 and 5 share (a :class:`JacobianViews`; returned as is if given)."""
    if isinstance(f, JacobianViews):
        views = f
    elif isinstance(f, LinearOperator):
        views = JacobianViews.__new__(JacobianViews)
        views.base, views.seconds, views.alpha_bar = f, 0.0, alpha_bar
    else:
        if x_t is None:
            raise ValueError("x_t is needed to linearise a PMP; give x_t or a JacobianViews / JacobianOperator")
        check_finite(x_t, "x_t")
        views = JacobianViews(f, x_t, alpha_bar, chunk=chunk, forward_mode=forward_mode)
        views.t = getattr(f, "t", None)
        if hasattr(f, "label"):
            views.label = f.label  # what a Direction records as its nullspace map ("sampler:N")
    if x_t is not None and tuple(x_t.shape) != tuple(views.base.shape_in):
        raise ValueError(f"x_t has shape {tuple(x_t.shape)} but the Jacobian was taken at shape {views.base.shape_in}")
    if not hasattr(views, "cache"):
        views.cache = {}  # power-method results per (view, k, seed, tol, max_iter): shared across calls
    return views


def _top(views: JacobianViews, mask: torch.Tensor | None, eps: bool, k: int, seed: int, tol: float,
         max_iter: int, monitor=None, monitor_key=None) -> tuple[TopSVD, float]:
    """Top-k SVD of P_mask J (or P_mask ∂ε/∂x_t) by Algorithm 2, memoised on the linearisation; (result, seconds).
    ``monitor`` (with a hashable ``monitor_key`` naming it): the power method's stopping quantity."""
    return _tops(views, [mask], eps, k, seed, tol, max_iter, [monitor], [monitor_key])[0]


def _tops(views: JacobianViews, masks: list, eps: bool, k: int, seed: int, tol: float, max_iter: int,
          monitors: list, monitor_keys: list) -> list[tuple[TopSVD, float]]:
    """:func:`_top` for several masks: the ones not yet memoised run as one batch (:func:`power_methods`), each
    charged its 1/P share of the batch's seconds."""
    keys = [(None if m is None else hash(m.numpy().tobytes()), eps, k, seed, tol, max_iter, mk)
            for m, mk in zip(masks, monitor_keys)]
    todo = _pending(keys, views.cache)
    if todo:
        t0 = time.perf_counter()
        found = power_methods([views.view(masks[j], eps=eps) for j in todo], k, seeds=[seed] * len(todo), tol=tol,
                              max_iter=max_iter, monitors=[monitors[j] for j in todo])
        share = (time.perf_counter() - t0) / len(todo)
        for j, top in zip(todo, found):
            views.cache[keys[j]] = (top, share)
    return [views.cache[key] for key in keys]


def _pending(keys: list, cache: dict) -> list[int]:
    """Indices of the first occurrence of each key not yet in ``cache``: what a batch still has to compute."""
    seen, todo = set(), []
    for j, key in enumerate(keys):
        if key not in cache and key not in seen:
            seen.add(key)
            todo.append(j)
    return todo


def outside(mask: torch.Tensor, band: int = 0, spare: bool = False, rim: int = 0) -> torch.Tensor:
    """The complement region of step 5: Ω^c (``band`` = 0, the paper's), or Ω^c less a guard band of ``band`` pixels
    around Ω (Ω dilated by a (2b+1)×(2b+1) square), so that the part's own soft-edge spill-over across the mask
    border is not counted as "outside" (our departure from Algorithm 1; issue 13's measurements).

    ``spare`` (with ``band`` > 0): a 4-connected region of Ω^c that the band would remove more than half of — a small
    hole of Ω, like the eyes and the mouth inside the face's mask — stays in the complement, so that the features it
    holds are still protected by step 7 (with a 2 px band the face's complement loses its eyes and its mouth
    entirely).  ``rim`` (with ``spare``): such a hole stays less its pixels within ``rim`` px of Ω (its core), so
    that its soft rim, which blends Ω's own colour, may follow Ω's change while the core is held (with the whole
    hole held, the face's own change around the eyes is projected away).  Each (H, W) plane is treated on its own.
    ``mask``: boolean of shape (..., H, W).  Refuses a band that leaves no pixel outside."""
    if isinstance(band, bool) or not isinstance(band, int) or band < 0:
        raise ValueError(f"band must be a non-negative integer number of pixels; got {band!r}")
    if not isinstance(spare, bool):
        raise ValueError(f"spare must be True or False; got {spare!r}")
    if isinstance(rim, bool) or not isinstance(rim, int) or rim < 0:
        raise ValueError(f"rim must be a non-negative integer number of pixels; got {rim!r}")
    if rim and not spare:
        raise ValueError(f"rim = {rim} px applies to the holes that spare=True keeps; give spare=True or rim = 0")
    if band == 0:
        return ~mask
    keep = ~_dilated(mask, band)
    if spare:
        holes = _spared(mask, keep)
        keep = keep | (holes & ~_dilated(mask, rim) if rim else holes)
    if not keep.any():
        H, W = mask.shape[-2:]
        raise ValueError(f"band = {band} px around Ω covers the whole {H}×{W} image: the complement Ω^c would be empty; "
                         f"use a band below {band}")
    return keep


def _dilated(mask: torch.Tensor, px: int) -> torch.Tensor:
    """Ω dilated by a (2·px + 1)² square, per (H, W) plane."""
    H, W = mask.shape[-2:]
    m = mask.reshape(-1, 1, H, W).float()
    return torch.nn.functional.max_pool2d(m, 2 * px + 1, stride=1, padding=px).reshape(mask.shape) > 0


def _spared(mask: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """The regions of Ω^c (4-connected, per (H, W) plane) of which ``keep`` holds less than half: ``outside``'s spare."""
    from scipy import ndimage

    H, W = mask.shape[-2:]
    comp = (~mask).reshape(-1, H, W).numpy()
    kept = keep.reshape(-1, H, W).numpy()
    out = torch.zeros(comp.shape, dtype=torch.bool)
    for j in range(comp.shape[0]):
        labels, n = ndimage.label(comp[j])  # default structure: 4-connectivity
        if n == 0:
            continue
        size = torch.bincount(torch.from_numpy(labels).reshape(-1), minlength=n + 1)
        left = torch.bincount(torch.from_numpy(labels[kept[j]]).reshape(-1), minlength=n + 1)
        small = 2 * left < size
        small[0] = False  # label 0 is Ω itself
        out[j] = small[torch.from_numpy(labels)]
    return out.reshape(mask.shape)


def complement_basis(views: JacobianViews, mask: torch.Tensor, r_null: int, *, band: int = 0, spare: bool = False,
                     rim: int = 0, seed: int = 0, tol: float = 1e-4, max_iter: int = 50, eps: bool = False,
                     v: torch.Tensor | None = None) -> tuple[TopSVD | None, float]:
    """Step 5: the top-r' SVD of ∇P_{Ω^c} g (power seed ``seed + 1``), whose ``V`` is V̄ (d × r'); None for r' = 0.

    g is the map ``views`` linearises (the PMP f in Algorithm 1; the sampler with ``nullspace="sampler"``); ``mask``
    is Ω in g's full output shape; Ω^c less a guard band of ``band`` px (:func:`outside`, with ``spare`` and ``rim``).
    With ``v`` (the direction of step 6, flat), the power method stops when v − V̄(V̄ᵀv) has settled (what step 7
    needs) rather than span(V̄) (which has no gap at r' for some masks).  Returns (the TopSVD, seconds).
    :func:`complement_bases` does several masks in one batch.
    """
    return complement_bases(views, [mask], r_null, band=band, spare=spare, rim=rim, seed=seed, tol=tol, max_iter=max_iter,
                            eps=eps, vs=None if v is None else [v])[0]


def complement_bases(views: JacobianViews, masks: Sequence[torch.Tensor], r_null: int, *, band: int = 0,
                     spare: bool = False, rim: int = 0, seed: int = 0, tol: float = 1e-4, max_iter: int = 50,
                     eps: bool = False, vs: Sequence[torch.Tensor] | None = None) -> list[tuple[TopSVD | None, float]]:
    """:func:`complement_basis` for several masks Ω_i (with ``vs[i]`` each, or none): the power methods not yet
    memoised run as one batch (:func:`~lococourse.jacobian.power_methods`)."""
    masks = list(masks)
    if r_null == 0:
        return [(None, 0.0)] * len(masks)
    outs = [outside(mask, band, spare, rim) for mask in masks]
    if vs is None:
        return _tops(views, outs, eps, r_null, seed + 1, tol, max_iter, [None] * len(masks), [None] * len(masks))
    vs = [v.detach() for v in vs]
    monitors = [lambda V, v=v: project_out(v.to(V.dtype), V[:, :r_null]) for v in vs]
    return _tops(views, outs, eps, r_null, seed + 1, tol, max_iter, monitors,
                 [("v_p", hash(v.numpy().tobytes())) for v in vs])


#: DDIM steps of the sampler whose Jacobian gives the complement nullspace (``nullspace="sampler"``, our option).
#: Six, not twelve: on faces32's 20-face tables (benchmarks/results/loco_table_t0{4,6}_20faces.md) a 6-step sampler
#: scored as well or better (band + sampler local 0.53 / 0.56 at t = 0.4 / 0.6, against 0.53 / 0.52 with 12 steps)
#: and learned its directions 3–4× faster (its complement power method also needs fewer iterations).
SAMPLER_STEPS = 6


def sampler_map(model: DiffusionModel, t: float, steps: int = SAMPLER_STEPS) -> PMP:
    """x_t ↦ DDIM(x_t, 0) from the edit time t in ``steps`` DDIM steps on levels of the paper's 100-step grid: the
    whole sampler as a differentiable map, for ``find_direction(..., nullspace_map=…)`` (our departure from
    Algorithm 1, whose step 5 uses the one-step PMP: what the sampler does after t is what moves the rest of the
    image).  Matrix-free: its Jacobian is only ever applied through VJPs/JVPs."""
    check_t(t)
    grid = ddim_grid().subgrid(t, steps)
    f = ddim_map(model.eps_model(), t, grid=grid)
    f.label = f"sampler:{grid.num_steps}"
    return f


def check_refine(refine: int, projection: str) -> None:
    """``refine`` of :func:`find_direction`: a non-negative int of inverse-iteration steps, > 0 only with the ridge."""
    if isinstance(refine, bool) or not isinstance(refine, int) or refine < 0:
        raise ValueError(f"refine must be a non-negative integer number of inverse-iteration steps; got {refine!r}")
    if refine and projection != "ridge":
        raise ValueError(f"refine = {refine} needs projection='ridge' (its steps are ridge solves); got projection={projection!r}")


def find_direction(
    f: PMP | JacobianViews | LinearOperator, x_t: torch.Tensor | None, mask: torch.Tensor, *, index: int = 0,
    r: int = 5, r_null: int = 5, seed: int = 0, tol: float | None = None, max_iter: int = 50, model: str = "",
    jacobian: str = "pmp", masked_jacobian: bool = True, select: str = "index", alpha_bar: float | None = None,
    chunk: int | None = None, forward_mode: str = "transpose", band: int = 0, band_spare: bool = False,
    spare_rim: int = 0, nullspace_map: PMP | None = None,
    projection: str = "subspace", ridge: float = RIDGE_C, refine: int = 0, stop_on: str = "direction",
    extra: dict | None = None,
) -> Direction:
    """Steps 4–8 of Algorithm 1 at x_t (and Algorithm 3's steps 6–10, the same computation):

      4. top-r SVD (Ũ, Σ̃, Ṽ) of J̃ = ∇_{x_t} P_Ω f(x_t)           (generalized power method, Alg. 2)
      5. top-r' SVD (Ū, Σ̄, V̄) of J̄ = ∇_{x_t} P_{Ω^c} f(x_t)      (r' = ``r_null``; 0 skips 5 and 7)
      6. v ← Ṽ[:, k]                                              (k = ``index``)
      7. v_p ← v − V̄ (V̄ᵀ v)                                       (:func:`~lococourse.jacobian.project_out`)
      8. v_p ← v_p / ‖v_p‖

    ``f`` is a PMP (linearised here at ``x_t``) or an existing linearisation (:func:`linearize`, a
    :class:`JacobianViews` or a :class:`JacobianOperator`; ``x_t`` may then be ``None``): several calls on one
    linearisation share its forward pass and its power methods.  ``mask`` is Ω, boolean, of the output shape or
    its trailing (H, W); empty and all-true masks are refused.

    Ablations (Appendix G.2, defaults are the paper's): ``masked_jacobian=False`` uses the unmasked J in step 4;
    ``jacobian="eps"`` uses ∂ε/∂x_t = (I − √ᾱ J)/√(1−ᾱ) instead of ∂x̂₀/∂x_t (needs ``alpha_bar``);
    ``select="mask_energy"`` (only with the unmasked J) takes for k the one of the top r whose left singular
    vector u_k puts the largest fraction of its energy inside Ω.  ``chunk``/``forward_mode``: see
    :class:`~lococourse.jacobian.JacobianOperator`.  The singular vectors' sign ambiguity is fixed by
    :func:`~lococourse.jacobian.power_method` (largest entry positive).

    Method options beyond the paper (defaults are the paper's; both apply to steps 5 and 7 only):
    ``band`` — leave a guard band of b pixels around Ω out of the complement Ω^c (:func:`outside`); with
    ``band_spare``, a small region of Ω^c the band would mostly remove (the eyes inside the face's mask) stays,
    less its ``spare_rim`` px next to Ω (:func:`outside`'s ``spare`` and ``rim``);
    ``nullspace_map`` — take V̄ from the Jacobian of another map with f's output shape, linearised at the same x_t,
    e.g. the whole sampler x_t ↦ DDIM(x_t, 0) (:func:`sampler_map`) instead of the one-step PMP;
    ``projection="ridge"`` — replace steps 5 and 7 by a soft projection (:func:`~lococourse.jacobian.ridge_project`):
    v_p = argmin_u ‖J̄ u‖² + μ‖u − v‖², μ = ``ridge`` · ‖J̄ v‖², with J̄ = ∇P_{Ω^c} g (g = f, or ``nullspace_map``;
    Ω^c less ``band``).  It damps every direction of v by μ / (σ̄_i² + μ) instead of removing the top r' exactly
    (``r_null`` is not used), so a part whose own change spills into the complement's top modes keeps what the
    complement barely sees.  Solved by conjugate gradients, ≤ 20 J̄·u and J̄ᵀ·w.
    ``refine`` (with ``projection="ridge"``; default 0, the paper's step 4 unchanged) — n steps of inverse iteration
    for the generalised eigenproblem  max_u ‖J̃_g u‖² / (‖J̄ u‖² + μ‖u‖²),  J̃_g = ∇P_Ω g, started at the ridge's v_p:
    u ← (J̄ᵀJ̄ + μI)⁻¹ J̃_gᵀJ̃_g u (each solve is the ridge's CG, μ = ``ridge`` · ‖J̄ ŵ‖² for the current right-hand side
    ŵ).  With g the sampler, the direction whose *final* image changes most inside Ω for what it changes outside;
    the paper's step 4 reads v off the one-step PMP only.  Each step costs one J̃_g·u, one J̃_gᵀ·w and one CG.

    ``stop_on``: "direction" (default) stops step 4's power method when v_k has settled and step 5's when
    v_p = v − V̄(V̄ᵀv) has (the accuracy the edit needs, even with no spectral gap at r or r'); "subspace" waits for
    the whole top-r and top-r' subspaces (slower; never, where σ_r ≈ σ_{r+1}).  ``tol`` defaults to
    :data:`DIRECTION_TOL` (a relative accuracy of v_k and v_p) with "direction" and to 1e-4 with "subspace";
    benchmarks/bench_direction_speed.py measures what it costs and how close the edit stays to the converged one.

    ``Direction.seconds`` is what this direction costs on its own: the linearisation plus the power methods it
    used, whether or not they were shared with an earlier call.  :func:`find_directions` is the same for several
    masks at one x_t (this is its one-mask case).
    """
    return find_directions(f, x_t, [mask], index=index, r=r, r_null=r_null, seed=seed, tol=tol, max_iter=max_iter,
                           model=model, jacobian=jacobian, masked_jacobian=masked_jacobian, select=select,
                           alpha_bar=alpha_bar, chunk=chunk, forward_mode=forward_mode, band=band, band_spare=band_spare,
                           spare_rim=spare_rim, nullspace_map=nullspace_map, projection=projection, ridge=ridge, refine=refine,
                           stop_on=stop_on, extras=[extra])[0]


def find_directions(
    f: PMP | JacobianViews | LinearOperator, x_t: torch.Tensor | None, masks: Sequence[torch.Tensor], *, index: int = 0,
    r: int = 5, r_null: int = 5, seed: int = 0, tol: float | None = None, max_iter: int = 50, model: str = "",
    jacobian: str = "pmp", masked_jacobian: bool = True, select: str = "index", alpha_bar: float | None = None,
    chunk: int | None = None, forward_mode: str = "transpose", band: int = 0, band_spare: bool = False,
    spare_rim: int = 0, nullspace_map: PMP | None = None,
    projection: str = "subspace", ridge: float = RIDGE_C, refine: int = 0, stop_on: str = "direction",
    extras: Sequence[dict | None] | None = None,
) -> list[Direction]:
    """Steps 4–8 of Algorithm 1 (:func:`find_direction`, every option the same) for P masks Ω_1…Ω_P at one x_t —
    the parts of one image — returning one Direction per mask, in order: the one implementation of those steps.

    Every step batches across the masks, and each mask gets what its own call would (up to floating-point
    rounding): step 4's P power methods and step 5's run in lockstep (:func:`~lococourse.jacobian.power_methods`:
    one J·V and one Jᵀ·U call of P·r vectors per iteration, each problem stopping on its own), and so do the P
    ridge solves of ``projection="ridge"`` and ``refine`` (:func:`~lococourse.jacobian.ridge_project_rows` on
    :meth:`~lococourse.jacobian.JacobianViews.rows`) — a CPU runs one call of many vectors faster per vector than
    many calls of few.  Power methods and ridge solves are memoised on the linearisation, so calls sharing one (the
    refine step starts from the plain ridge's solve) compute each once.  A direction's ``seconds`` counts its 1/P
    share of a batch.  ``extras``: one ``extra`` dict per mask.
    """
    masks = list(masks)
    if not masks:
        raise ValueError("masks must hold at least one mask Ω")
    extras = [None] * len(masks) if extras is None else list(extras)
    if len(extras) != len(masks):
        raise ValueError(f"extras must hold one dict per mask: {len(masks)} masks, {len(extras)} extras")
    if jacobian not in JACOBIANS:
        raise ValueError(f"jacobian must be one of {JACOBIANS}; got {jacobian!r}")
    if select not in SELECT:
        raise ValueError(f"select must be one of {SELECT}; got {select!r}")
    if select == "mask_energy" and masked_jacobian:
        raise ValueError("select='mask_energy' ranks the unmasked Jacobian's vectors; use it with masked_jacobian=False")
    if projection not in PROJECTIONS:
        raise ValueError(f"projection must be one of {PROJECTIONS}; got {projection!r}")
    if projection == "ridge":
        check_real(ridge, "ridge (μ / ‖J̄ v‖² of projection='ridge')", low=0, low_open=True)
    check_refine(refine, projection)
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise ValueError(f"r must be a positive integer; got {r!r}")
    check_index(index, "index k", r, what="r")
    if stop_on not in ("direction", "subspace"):
        raise ValueError(f"stop_on must be 'direction' or 'subspace'; got {stop_on!r}")
    views = linearize(f, x_t, alpha_bar=alpha_bar, chunk=chunk, forward_mode=forward_mode)
    base = views.base
    check_index(r, "r", min(base.d_in, base.d_out) + 1, low=1, what="d + 1")
    check_index(r_null, "r' (r_null)", base.d_in, what="d")
    if jacobian == "eps" and views.alpha_bar is None:
        views.alpha_bar = alpha_bar
    fulls = [check_mask(torch.as_tensor(mask).cpu(), base.shape_out) for mask in masks]
    for mask_full in fulls:
        outside(mask_full, band, band_spare, spare_rim)  # refuse a bad band, or one that leaves no complement, even for r' = 0
    eps = jacobian == "eps"
    if tol is None:
        tol = DIRECTION_TOL if stop_on == "direction" else 1e-4
    by_vector = stop_on == "direction" and select == "index"
    soft = projection == "ridge"
    null_views, s_lin = views, 0.0
    if nullspace_map is not None and (r_null > 0 or soft):
        null_views = linearize(nullspace_map, base.x if hasattr(base, "x") else x_t, chunk=chunk, forward_mode=forward_mode)
        s_lin = null_views.seconds
        if tuple(null_views.base.shape_out) != tuple(base.shape_out):
            raise ValueError(f"nullspace_map's output shape {null_views.base.shape_out} differs from the PMP's "
                             f"{base.shape_out}; the mask Ω must apply to both")
    eps_null = eps and nullspace_map is None
    # Step 4, every mask in one batch (memoised on the linearisation).
    found = _tops(views, [mk if masked_jacobian else None for mk in fulls], eps, r, seed, tol, max_iter,
                  [(lambda V: V[:, index]) if by_vector else None] * len(fulls),
                  [("v_k", index) if by_vector else None] * len(fulls))
    tops, s_tops = [top for top, _ in found], [s_top for _, s_top in found]
    # Step 6.
    ks = [index if select == "index" else _most_inside(top, mk) for top, mk in zip(tops, fulls)]
    vs = [top.V[:, k] for top, k in zip(tops, ks)]
    if not soft:  # Steps 5 and 7, every mask's step 5 in one batch.
        nulls_s = complement_bases(null_views, fulls, r_null, band=band, spare=band_spare, rim=spare_rim, seed=seed, tol=tol,
                                   max_iter=max_iter, eps=eps_null, vs=vs if stop_on == "direction" else None)
        nulls, s_nulls = [n for n, _ in nulls_s], [s for _, s in nulls_s]
        vs = [project_out(v, None if null is None else null.V) for v, null in zip(vs, nulls)]
    soft_infos = [None] * len(fulls)
    if soft:  # our option, steps 5 and 7 as v_p = argmin ‖J̄u‖² + μ‖u − v‖² (no top-r' SVD), batched over the masks
        outs = [outside(mk, band, band_spare, spare_rim) for mk in fulls]
        solved = _ridge_rows(null_views, outs, vs, float(ridge), eps_null)
        vs, soft_infos, s_nulls = [v for v, _, _ in solved], [i for _, i, _ in solved], [s for _, _, s in solved]
        nulls = [None] * len(fulls)
        if refine:  # our option: inverse iteration for max ‖J̃_g u‖² / (‖J̄u‖² + μ‖u‖²), from the ridge's v_p
            t0 = time.perf_counter()
            A_in, A = null_views.rows(fulls, eps=eps_null), null_views.rows(outs, eps=eps_null)
            V = torch.stack(vs).reshape(len(fulls), *base.shape_in)
            for _ in range(refine):
                W = A_in.rmv(A_in.mv(V))  # J̃_gᵀ J̃_g u per mask, (P, *S_in)
                V, soft_infos = ridge_project_rows(A, W, float(ridge))
            vs = list(V.reshape(len(fulls), -1))
            share = (time.perf_counter() - t0) / len(fulls)
            s_nulls = [s + share for s in s_nulls]
    t = getattr(views, "t", None)
    out = []
    for mask, top, k, v, null, soft_info, s_top, s_null, extra in zip(masks, tops, ks, vs, nulls, soft_infos, s_tops,
                                                                       s_nulls, extras):
        # Step 8.
        n = torch.linalg.norm(v)
        if not n > 0:
            raise ValueError("the projected direction is zero: v lies in span(V̄); use a smaller r' or another index")
        v = (v / n).reshape(base.shape_in)
        # a power method that stopped at max_iter without meeting its tolerance says so here (and in the saved Direction)
        info = {"converged": bool(top.converged) and (null is None or bool(null.converged))
                and (soft_info is None or bool(soft_info["converged"])), "stop_on": stop_on,
                "n_iter": int(top.n_iter),
                "n_iter_null": int(soft_info["n_iter"]) if soft else (0 if null is None else int(null.n_iter)), "band": band,
                **({"band_spare": True} if band_spare else {}), **({"spare_rim": spare_rim} if spare_rim else {}),
                "nullspace": "pmp" if nullspace_map is None else getattr(nullspace_map, "label", "map"),
                "projection": projection, **({"ridge": float(ridge), "ridge_mu": soft_info["mu"]} if soft else {}),
                **({"refine": refine} if refine else {}),
                **(extra or {})}
        seconds = views.seconds + s_top + s_lin + s_null
        out.append(Direction(v.detach(), float("nan") if t is None else float(t), torch.as_tensor(mask).cpu().clone(), k,
                             r, 0 if soft else r_null, float(top.S[k]), model, seed, jacobian, seconds, info))
    return out


def _ridge_rows(views: JacobianViews, outs: list, vs: list, c: float, eps: bool) -> list:
    """The ridge solves v_p = argmin ‖P_out J u‖² + μ‖u − v‖² for each (complement ``out``, v), batched over the ones
    not yet memoised on the linearisation; [(v_p flat, info, seconds: its share of the batch)] in order."""
    keys = [("ridge", hash(o.numpy().tobytes()), hash(v.detach().numpy().tobytes()), c, eps) for o, v in zip(outs, vs)]
    todo = _pending(keys, views.cache)
    if todo:
        t0 = time.perf_counter()
        A = views.rows([outs[j] for j in todo], eps=eps)
        V, infos = ridge_project_rows(A, torch.stack([vs[j].reshape(-1) for j in todo]), c)
        share = (time.perf_counter() - t0) / len(todo)
        for n, j in enumerate(todo):
            views.cache[keys[j]] = (V[n], infos[n], share)
    return [views.cache[key] for key in keys]

def _most_inside(top: TopSVD, mask_full: torch.Tensor) -> int:
    """The k whose u_k has the largest fraction of its energy inside Ω (the unmasked ablations' reading of a part)."""
    U = top.U.T.reshape(top.U.shape[1], *top.shape_out)  # (r, *S_out)
    frac = (U ** 2 * mask_full).flatten(1).sum(1) / (U ** 2).flatten(1).sum(1)
    return int(frac.argmax())


def invert(model: DiffusionModel, x0: torch.Tensor, t: float, *, num_steps: int = 100) -> tuple[torch.Tensor, float]:
    """Step 3 of Algorithm 1: x_t = DDIM-Inv(x₀, t) on the paper's 100-step grid (``num_steps``: another DDIM grid,
    e.g. fewer steps for real-size models on a CPU); returns (x_t, grid t)."""

    check_t(t)
    grid = ddim_grid(num_steps)
    single = x0.dim() == len(model.shape)  # one image (*S): the ε-model takes batches
    x_t = ddim_invert(model.eps_model(), x0.unsqueeze(0) if single else x0, t, grid=grid)
    return (x_t[0] if single else x_t), grid.snap(t)


def apply_directions(model: DiffusionModel, x_t: torch.Tensor, t: float, terms: Sequence[tuple[Direction, float]] | None = None,
                     strengths: Sequence[float] | None = None, direction: Direction | None = None, *,
                     num_steps: int = 100) -> torch.Tensor:
    """Step 9: x₀' = DDIM(x_t + Σ λ_i v_i, 0), in one batch.

    Either ``terms`` [(direction, λ), …] (composition: one image) or ``direction`` with a list of
    ``strengths`` (a linearity sweep: one image per λ, all from the same x_t).  x_t: (*S).
    ``num_steps``: the DDIM grid (the paper's 100 steps; the grid :func:`invert` used).
    """

    if terms is not None:
        for dirn, lam in terms:
            check_strength(lam)
            dirn.check_compatible("", x_t.shape)
        x = (x_t + sum(lam * dirn.v.to(x_t.dtype) for dirn, lam in terms)).unsqueeze(0)
    elif direction is not None and strengths is not None:
        for lam in strengths:
            check_strength(lam)
        direction.check_compatible("", x_t.shape)
        lam = torch.as_tensor(list(strengths), dtype=x_t.dtype).reshape(-1, *[1] * x_t.dim())
        x = x_t.unsqueeze(0) + lam * direction.v.to(x_t.dtype)
    else:
        raise ValueError("give either terms=[(direction, strength), …] or direction= with strengths=[…]")
    with torch.no_grad():
        return ddim_sample(model.eps_model(), x, t, 0.0, grid=ddim_grid(num_steps))


def select_direction(model: DiffusionModel, x_t: torch.Tensor, t: float, candidates: Sequence[Direction],
                     strengths: Sequence[float] | Sequence[Sequence[float]], *, labels: Sequence[str] | None = None,
                     num_steps: int = 100) -> Direction:
    """Step 9 for each candidate direction (same mask Ω, same x_t), then the most local one (:func:`most_local`).

    ``strengths``: the λ at which every candidate is sampled (e.g. ``[-λ, λ]``), or one list per candidate (λ chosen
    per direction, :mod:`lococourse.editing.strength`).  ``labels``: a name per candidate (default: its
    ``extra["method"]`` or its position).  Returns a copy of the chosen Direction whose ``extra["selected"]``
    records every label, every mean leakage, the strengths and the choice, and whose ``seconds`` adds the
    candidates' own learning times (they share no work that this function can see) and the sampling here.
    """
    candidates = list(candidates)
    if not candidates:
        raise ValueError("candidates must hold at least one Direction")
    mask = torch.as_tensor(candidates[0].mask)
    for c, d in enumerate(candidates):
        if not isinstance(d, Direction):
            raise TypeError(f"candidates[{c}] must be a Direction; got {type(d).__name__}")
        if tuple(d.mask.shape) != tuple(mask.shape) or not torch.equal(torch.as_tensor(d.mask), mask):
            raise ValueError(f"candidates[{c}] was found for another mask Ω than candidates[0]; the candidates must "
                             "all edit the same region")
    per = list(strengths)
    if per and all(isinstance(s, (list, tuple)) for s in per):
        if len(per) != len(candidates):
            raise ValueError(f"strengths must hold one list per candidate ({len(candidates)}); got {len(per)}")
        lams = [[check_strength(x) for x in s] for s in per]
    else:
        lams = [[check_strength(x) for x in per]] * len(candidates)
    if any(not s for s in lams):
        raise ValueError("every candidate needs at least one strength λ")
    names = [str(d.extra.get("method", c)) for c, d in enumerate(candidates)] if labels is None else list(labels)
    if len(names) != len(candidates):
        raise ValueError(f"labels must hold one name per candidate ({len(candidates)}); got {len(names)}")
    return _select(model, x_t, t, candidates, lams, names, plane(mask), num_steps)[0]


def _select(model: DiffusionModel, x_t: torch.Tensor, t: float, candidates: list, lams: list, names: list,
            mask: torch.Tensor, num_steps: int) -> tuple[Direction, torch.Tensor, torch.Tensor]:
    """:func:`select_direction` on checked arguments: (the chosen Direction, the λ = 0 reference, its edits)."""
    t0 = time.perf_counter()
    out = apply_directions(model, x_t, t, direction=candidates[0], strengths=[0.0, *lams[0]], num_steps=num_steps)
    reference, edits = out[0], [out[1:]]
    for d, s in zip(candidates[1:], lams[1:]):
        edits.append(apply_directions(model, x_t, t, direction=d, strengths=s, num_steps=num_steps))
    sel = most_local(reference, edits, mask)
    chosen = candidates[sel.index]
    record = {"by": "leakage", "labels": names, "leakages": [round(x, 6) for x in sel.leakages],
              "strengths": lams, "chosen": names[sel.index]}
    seconds = sum(d.seconds for d in candidates) + time.perf_counter() - t0
    return replace(chosen, extra={**chosen.extra, "selected": record}, seconds=seconds), reference, edits[sel.index]


@dataclass
class EditResult:
    x0: torch.Tensor  # (*S) the original image
    x_t: torch.Tensor  # (*S) its DDIM inversion at t
    t: float  # grid time of the edit
    direction: Direction
    strengths: list
    edited: torch.Tensor  # (L, *S): DDIM(x_t + λ v_p, 0) per λ
    reconstruction: torch.Tensor  # (*S): DDIM(x_t, 0), the λ = 0 image


def loco_edit(model: DiffusionModel, x0: torch.Tensor, mask: torch.Tensor, t: float, *, index: int = 0,
              strengths: Sequence[float] = (-6.0, 6.0), r: int = 5, r_null: int = 5, seed: int = 0,
              tol: float | None = None, max_iter: int = 50, masked_jacobian: bool = True,
              progress: Callable[[str], None] | None = None, num_steps: int = 100, band: int = 0,
              band_spare: bool = False, spare_rim: int = 0, nullspace: str = "pmp", sampler_steps: int = SAMPLER_STEPS, projection: str = "subspace",
              ridge: float = RIDGE_C, refine: int = 0, select: bool = False) -> EditResult:
    """Unsupervised LOCO Edit, Algorithm 1 of Chen et al. (2024), end to end.

      3. x_t ← DDIM-Inv(x₀, t)
      4–8. v_p from the masked Jacobian and nullspace projection (:func:`find_direction`)
      9. x₀' ← DDIM(x_t + λ v_p, 0) for each λ in ``strengths`` (one batch, with λ = 0 as reference)

    ``num_steps``: the DDIM grid of steps 3 and 9 (the paper's 100; fewer for real-size models on a CPU).
    ``band`` (with ``band_spare`` and ``spare_rim``) and ``nullspace`` ("pmp", the paper's; "sampler": the whole sampler x_t ↦ DDIM(x_t, 0) in
    ``sampler_steps`` steps, :func:`sampler_map`), ``projection`` and ``ridge`` ("subspace", the paper's step 7;
    "ridge": the soft projection) and ``refine`` (inverse-iteration steps after the ridge) are the options of
    :func:`find_direction` beyond the paper.  ``select=True`` (ours; with the default ``projection`` and ``refine``):
    steps 4–8 three ways — step 7's projection, the ridge, the ridge + one refine step, each with ``band`` and
    ``nullspace`` — and the one whose edits at ``strengths`` leak least in pixels is kept (:func:`select_direction`;
    the choice is in ``direction.extra["selected"]``).
    """
    if not isinstance(select, bool):
        raise ValueError(f"select must be True or False; got {select!r}")
    if select and (projection != "subspace" or refine):
        raise ValueError(f"select=True tries projection 'subspace', 'ridge' and 'ridge' with refine = 1 itself; leave "
                         f"projection and refine at their defaults (got projection={projection!r}, refine={refine!r})")
    if nullspace not in NULLSPACES:
        raise ValueError(f"nullspace must be one of {NULLSPACES}; got {nullspace!r}")
    if projection not in PROJECTIONS:
        raise ValueError(f"projection must be one of {PROJECTIONS}; got {projection!r}")
    if projection == "ridge":
        check_real(ridge, "ridge (μ / ‖J̄ v‖² of projection='ridge')", low=0, low_open=True)
    check_refine(refine, projection)
    outside(torch.as_tensor(mask), band, band_spare, spare_rim)  # a bad band fails before any model work
    check_finite(x0, "x0")
    for lam in strengths:
        check_strength(lam)
    say = progress or (lambda msg: None)
    say(f"DDIM-inverting the image to t = {t} (Algorithm 1 step 3)")
    x_t, t_grid = invert(model, x0, t, num_steps=num_steps)  # Step 3.
    say(f"finding the direction at t = {t_grid:.3f}: top-{r} of the masked Jacobian, "
        + (f"top-{r_null} of its complement projected out (steps 4–8)" if projection == "subspace" else
           f"its complement damped by the ridge c = {ridge:g} (steps 4–8, our option)")
        + (f", then {refine} inverse-iteration step(s) (our option)" if refine else ""))
    null_map = sampler_map(model, t_grid, sampler_steps) if nullspace == "sampler" else None
    ways = [("subspace", 0), ("ridge", 0), ("ridge", 1)] if select else [(projection, refine)]
    # one linearisation of the PMP (and of the sampler) shared by every candidate
    f = linearize(model.pmp(t_grid), x_t)
    if null_map is not None and (r_null > 0 or projection == "ridge" or select):
        null_map = linearize(null_map, x_t)
    cands = [find_direction(f, None, mask, index=index, r=r, r_null=r_null, seed=seed, tol=tol, max_iter=max_iter,
                            model=model_name(model), masked_jacobian=masked_jacobian, band=band, band_spare=band_spare,
                            spare_rim=spare_rim, nullspace_map=null_map,
                            projection=proj, ridge=ridge, refine=ref) for proj, ref in ways]
    for c in cands:
        c.t = t_grid
    lams = [0.0, *[float(s) for s in strengths]]
    if select:  # the candidates' edits are sampled to choose; the chosen one's are step 9's
        say("sampling the three candidates' edits; keeping the one that leaks least outside the mask (our option)")
        direction, reference, edited = _select(model, x_t, t_grid, cands, [lams[1:]] * 3,
                                               ["projection", "ridge", "ridge + refine 1"],
                                               plane(torch.as_tensor(cands[0].mask)), num_steps)
        say(f"direction found in {direction.seconds:.1f} s (σ_k = {direction.sigma:.4f}), its edits sampled (step 9)")
        return EditResult(x0, x_t, t_grid, direction, list(lams[1:]), edited, reference)
    direction = cands[0]
    say(f"direction found in {direction.seconds:.1f} s (σ_k = {direction.sigma:.4f}); sampling the edit (step 9)")
    out = apply_directions(model, x_t, t_grid, direction=direction, strengths=lams, num_steps=num_steps)  # Step 9.
    return EditResult(x0, x_t, t_grid, direction, list(lams[1:]), out[1:], out[0])


def transfer(model: DiffusionModel, direction: Direction, x0: torch.Tensor, strengths: Sequence[float], *, t: float | None = None,
             reproject: bool = False, seed: int = 0, progress: Callable[[str], None] | None = None) -> EditResult:
    """Apply a direction found on one image to another (homogeneity, §3.2): invert x₀ to t, add λ v, sample.

    As in the paper the direction is added unchanged; ``reproject=True`` first projects it onto the
    target image's own complement nullspace (top-r' of ∇ P_{Ω^c} f at the target x_t) and renormalises.
    """
    t = direction.t if t is None else t
    say = progress or (lambda msg: None)
    direction.check_compatible(model_name(model), x0.shape)
    for lam in strengths:
        check_strength(lam)
    say(f"DDIM-inverting the image to t = {t:.3f}")
    x_t, t_grid = invert(model, x0, t)
    used = direction
    if reproject and direction.r_null > 0:
        views = linearize(model.pmp(t_grid), x_t)
        mask_full = check_mask(direction.mask, views.base.shape_out)
        Vbar = complement_basis(views, mask_full, direction.r_null, seed=seed)[0].V
        v = project_out(direction.v.reshape(-1).to(Vbar.dtype), Vbar)
        used = Direction(**{**asdict(direction), "v": (v / v.norm()).reshape(direction.shape), "t": t_grid})
    lams = [0.0, *[float(s) for s in strengths]]
    say("adding λ × the direction and sampling (step 9)")
    out = apply_directions(model, x_t, t_grid, direction=used, strengths=lams)
    return EditResult(x0, x_t, t_grid, used, list(lams[1:]), out[1:], out[0])
