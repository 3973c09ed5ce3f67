"""Exploration (issue 13): other complements for step 5 and step 7, tried on faces32 beside band + sampler.

    python benchmarks/explore_nullspace_variants.py parts --t 0.6 --images 6
    python benchmarks/explore_nullspace_variants.py rnull --t 0.6 --images 6 --r-null 5,10,20
    python benchmarks/explore_nullspace_variants.py target --t 0.6 --images 6 --targets 0.08,0.12,0.16
    python benchmarks/explore_nullspace_variants.py steps --t 0.6 --images 6 --sampler-steps 3,6,12
    python benchmarks/explore_nullspace_variants.py ridge --t 0.6 --images 6 --ridge-c 0.1,0.01
    python benchmarks/explore_nullspace_variants.py ridge --t 0.6 --first 6 --images 14 --ridge-c 0.01 --ridge-from raw
    python benchmarks/explore_nullspace_variants.py spare --t 0.6 --images 20 --parts face
    python benchmarks/explore_nullspace_variants.py transfer --t 0.6 --images 6
    python benchmarks/explore_nullspace_variants.py retarget --t 0.6 --images 6
    python benchmarks/explore_nullspace_variants.py band --t 0.6 --images 6 --bands 1,2,3
    python benchmarks/explore_nullspace_variants.py geig --t 0.6 --images 6
    python benchmarks/explore_nullspace_variants.py refine_spare --t 0.6 --images 20 --parts face
    python benchmarks/explore_nullspace_variants.py ring --t 0.6 --images 20 --parts face [--rim 1]

Both score local-edit success (lococourse.eval.local_edit_success, the table's primary metric and thresholds) of
±λ edits, λ per direction by target (lococourse.eval.target_strengths, the table's default), on the faces
``sample_faces(1, seed)`` for seeds 0 … n−1, inverted to t, with 12 DDIM steps in step 9:

* ``parts`` — instead of the complement Ω^c, project v (step 4's Ṽ[:, 0] of ∇P_Ω f) off the union of the
  top-r masked subspaces of every *other* part (each part's own ∇P_{Ω_q} g, g the one-step PMP or the 12-step
  sampler; uses every part's mask, which the paper's user does not give).  Beside it: the paper's LOCO and
  LOCO + 2 px band + sampler nullspace (``loco_band_sampler``).
* ``rnull`` — ``loco_band_sampler`` with r' = 5 (the default) against larger r'.
* ``target`` — ``loco_band_sampler`` with λ-by-target aiming at other main-factor changes than the default 0.12.
* ``steps`` — ``loco_band_sampler`` with the sampler of its complement nullspace on coarser DDIM grids than
  ``SAMPLER_STEPS`` (the sampler's JVPs/VJPs are most of the table's learning time; their cost is ∝ steps).
* ``spare`` — ``loco_band_sampler_ridge`` beside the same with ``band_spare=True``: the 2 px band of the complement
  spares the regions of Ω^c it would mostly remove (the face's mask has holes at the eyes and the mouth, which a
  2 px band deletes from the complement, so nothing in step 7 protects them; the face's edits leak into the eye
  size in 14 of 40 cases at t = 0.6).
* ``band`` — ``loco_band_sampler_ridge`` with other guard bands than 2 px.
* ``retarget`` — ``transfer`` without the re-projections, beside the direction transferred unchanged at a λ chosen
  again by target on the target face.
* ``geig`` — directions read off the sampler's Jacobian: step 4 on P_Ω J_s, and inverse iteration for
  max ‖P_Ω J_s u‖² / (‖P_(Ω^c less 2 px) J_s u‖² + μ‖u‖²) started at band + sampler + ridge (:func:`geig_directions`).
* ``refine_spare`` — the refine row beside the same with the refine step's complement sparing Ω's holes (the face's
  eyes and mouth) while its first ridge solve keeps the plain band (:func:`refine_spare_directions`).
* ``ring`` — the refine row beside the same with a complement that keeps the *cores* of Ω's holes: the regions the
  2 px band would mostly remove (the face's eyes and mouth) stay, less their ``--rim`` px next to Ω
  (:func:`ring_directions`; now ``find_direction(band_spare=True, spare_rim=1)``).
* ``ridge`` — step 7 replaced by a soft projection (:func:`lococourse.jacobian.ridge_project`): v' = argmin
  ‖A u‖² + μ‖u − v‖², μ = c‖A v̂‖², A = P_(Ω^c less 2 px) J_sampler, from the unprojected v (``raw``) or from band
  + sampler's projected v (``proj``).

Prints one line per variant: overall local success and per part.  Measured here (2026-12-02, 6 faces, t = 0.6):
the per-part subspaces 0.35 (PMP) and 0.25 (sampler) against 0.60 for band + sampler and 0.28 for the paper's
LOCO; r' = 10 and 20 gave 0.43 and 0.38 against 0.60 at r' = 5 — removing more of v leaves less of the part's
own change and more of what the projection cannot see.  λ-by-target at 0.08 / 0.12 / 0.16 gave 0.62 / 0.60 / 0.48:
a gentler edit does not make band + sampler local.  The ridge, faces 0–5: raw c = 0.1 / 0.01 gave 0.57 / 0.67, proj
0.62 / 0.53, band + sampler 0.60; faces 6–19 (``--first 6 --images 14``): raw c = 0.01 0.71 (background 0.43,
hair 0.93, face 0.50, eyes 0.96, mouth 0.71) against 0.56 (0.32, 0.86, 0.50, 0.82, 0.32) — over the 20 faces 0.70
against 0.57, so it became ``find_direction(projection="ridge")`` (default c: ``editing.loco.RIDGE_C``) and the
table's ``loco_band_sampler_ridge`` row.  ``spare --parts face`` on 20 faces: band + sampler + ridge 0.55, with the
band sparing the eyes and the mouth 0.25 (t = 0.6); 0.25 and 0.28 at t = 0.4 — keeping the holes in the complement
projects away the face's own change around them, so ``band_spare`` stays an option, off, and no table row.
A stronger ridge, ``ridge --images 6 --ridge-c 0.01,0.003,0.001 --ridge-from raw``: 0.67 / 0.58 / 0.57 (background
0.17 / 0.08 / 0.00, face 0.67 / 0.42 / 0.33), so c = 0.01 stays; weaker, ``--ridge-c 0.03,0.02`` (2026-12-03, the CG
then in this file, now the library's ridge_project): 0.68 and 0.68 (background 0.25, hair 1.0, face 0.67, eyes 1.0, mouth 0.50), one edit in 60
from c = 0.01 — no reason to move it.  ``transfer --images 6`` (t = 0.6, 120 transfers): unchanged strict 0.18 / main 0.60 (0.28 strict from local source
edits); re-projected with the source's mask 0.04 / 0.17, with the target's mask 0.07 / 0.20 — worse: at the
source's λ the second projection removes most of the edit on the target.
``band --bands 1,2,3`` (2026-12-03, faces 0–5, t = 0.6): 0.62 / 0.67 / 0.65 (face 0.50 / 0.67 / 0.58, the other parts
equal within one edit), so the 2 px band (BAND_PX) stays.  ``geig`` (same faces): band + sampler + ridge 0.67,
sampler_v_ridge 0.67, geig1 0.73 and geig2 0.73 (mouth 0.83, background 0.25, face 0.58) — now
``find_direction(projection="ridge", refine=1)``, the table's ``loco_band_sampler_ridge_refine`` row (20 faces:
0.71 / 0.57 local at t = 0.6 / 0.4, against 0.68 / 0.56 without the refine step).
``spare --images 20 --parts face --method loco_band_sampler_ridge_refine`` (2026-12-03): the refine row's face 0.53 /
0.20 at t = 0.6 / 0.4, with the band sparing the eyes and the mouth 0.40 / 0.40 — better at 0.4, worse at 0.6, each
on 40 edits (a standard error of about 0.08), so ``band_spare`` stays off.
``band --images 20 --parts background,face --bands 0,2 --method loco_band_sampler_ridge_refine``: no band at all
scored background 0.30 / 0.17 and face 0.40 / 0.33 at t = 0.6 / 0.4, against 0.35 / 0.20 and 0.53 / 0.20 with 2 px —
the background's leak into the head's geometry is not the band's doing.
``retarget --images 6 --method loco_band_sampler_ridge_refine`` (t = 0.6, 120 transfers): the direction unchanged at
the source's λ, strict 0.30 / main factor 0.72 (0.41 strict from local source edits); at a λ chosen again by target on
the target face 0.26 / 0.72 (0.35) — the transfer's extra factors are not a matter of strength on the target.
``refine_spare --images 20 --parts face`` (2026-12-03): the refine row's face 0.53 / 0.20 at t = 0.6 / 0.4, with the
refine step's complement sparing the eyes and the mouth 0.33 / 0.23 — worse at 0.6, one edit in 40 better at 0.4, so
it stays an exploration.
``ring --images 20 --parts face`` (2026-12-04, one thread each, beside each other): the refine row's face 0.53 / 0.20
at t = 0.6 / 0.4; keeping the holes' cores (rim 1 px) in both solves 0.72 / 0.45, in the refine step only 0.70 / 0.50.
Keeping the whole holes had frozen their soft rim, which blends the skin colour, so the face's own change was projected
away around the eyes, and the estimator read the frozen rim as an eye-size change (the refine row's face edits moved
eye_size past τ in 17 of 40, with the opposite sign to skin_tone, ratio −0.22).  It became the option
``find_direction(band_spare=True, spare_rim=1)`` and the table's ``loco_cores*`` rows.
``band --images 10 --parts background --method loco_cores_refine --target-unit tau --bands 0,2,4`` (2026-12-06, λ by
2 τ, the table's ``--target-unit tau``; t = 0.4 and 0.6 beside each other): background 0.25 / 0.35 / 0.40 at t = 0.4
(``--bands 6,8``: 0.40 / 0.40) and 0.40 / 0.50 / 0.55 at t = 0.6, 20 edits each — within the noise, so the 2 px band
stays for the background too.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import torch

from lococourse.data.faces import PARTS
from lococourse.editing.loco import RIDGE_C, SAMPLER_STEPS, find_direction, linearize, outside, sampler_map
from lococourse.editing.strength import default_strength_grid
from lococourse.eval.decisions import local_edit_success, thresholds_for, transfer_main_success, transfer_success
from lococourse.eval.faces import (
    METHOD_OPTIONS,
    TARGET_TAU,
    face_directions,
    fit_row,
    prepare_faces,
    sample_edits,
    target_strengths,
)
from lococourse.eval.factors import factor_changes
from lococourse.jacobian.operator import check_mask
from lococourse.jacobian.power import power_method
from lococourse.jacobian.subspace import project_out, ridge_project
from lococourse.models.registry import load_model


def parts_directions(model, faces, i: int, r_q: int) -> dict:
    """(variant, part) → Direction: the paper's, band + sampler, and v projected off the other parts' subspaces."""
    fd = face_directions(model, faces, i, methods=["loco", "no_projection", "loco_band_sampler"], tol=None)
    views = linearize(model.pmp(faces.t), faces.x_t[i], alpha_bar=faces.alpha_bar)
    sampler = linearize(sampler_map(model, faces.t, SAMPLER_STEPS), faces.x_t[i])
    tops = {}
    for name, vw in (("pmp", views), ("sampler", sampler)):
        for q in PARTS:
            mk = check_mask(faces.masks[q][i], vw.base.shape_out)
            if mk.any() and not mk.all():
                tops[(name, q)] = power_method(vw.view(mk), k=r_q, seed=0, tol=1e-2, max_iter=15).V
    dirs = {}
    for p in PARTS:
        if ("loco", p) not in fd.directions:
            continue
        dirs[("paper", p)] = fd.directions[("loco", p)]
        dirs[("band_sampler", p)] = fd.directions[("loco_band_sampler", p)]
        d = fd.directions[("no_projection", p)]
        v = d.v.reshape(-1)
        for name in ("pmp", "sampler"):
            Q = torch.linalg.qr(torch.cat([tops[(name, q)] for q in PARTS if q != p and (name, q) in tops], 1).double())[0]
            vp = project_out(v, Q.float())
            dirs[(f"parts_{name}", p)] = dataclasses.replace(d, v=(vp / vp.norm()).reshape(d.v.shape), extra=dict(d.extra))
    return dirs


def rnull_directions(model, faces, i: int, r_nulls: list[int]) -> dict:
    dirs = {}
    for rn in r_nulls:
        fd = face_directions(model, faces, i, methods=["loco_band_sampler"], tol=None, r_null=rn)
        dirs.update({(f"band_sampler_r{rn}", p): d for (_, p), d in fd.directions.items()})
    return dirs


def steps_directions(model, faces, i: int, steps: list[int]) -> dict:
    dirs = {}
    for n in steps:
        fd = face_directions(model, faces, i, methods=["loco_band_sampler"], tol=None, sampler_steps=n)
        dirs.update({(f"band_sampler_{n}steps", p): d for (_, p), d in fd.directions.items()})
        secs = sum(fd.learning_seconds("loco_band_sampler", p) for (_, p) in fd.directions)
        print(f"  {n} sampler steps: {secs:.1f} s for {len(fd.directions)} directions", file=sys.stderr, flush=True)
    return dirs


def ridge_directions(model, faces, i: int, cs: list[float], sources=("raw", "proj")) -> dict:
    """band + sampler (the table's best) beside v' = ridge(v) with A = P_(Ω^c less 2 px) J_sampler, from the
    unprojected v (``ridge_raw``) and from band + sampler's projected v (``ridge_proj``)."""
    fd = face_directions(model, faces, i, methods=["no_projection", "loco_band_sampler"], tol=None)
    sampler = linearize(sampler_map(model, faces.t, SAMPLER_STEPS), faces.x_t[i])
    dirs = {}
    for p in PARTS:
        if ("loco_band_sampler", p) not in fd.directions:
            continue
        dirs[("band_sampler", p)] = fd.directions[("loco_band_sampler", p)]
        mk = check_mask(faces.masks[p][i], sampler.base.shape_out)
        A = sampler.view(outside(mk, 2))
        for src, key in (("raw", "no_projection"), ("proj", "loco_band_sampler")):
            if src not in sources:
                continue
            d = fd.directions[(key, p)]
            for c in cs:
                vr, _ = ridge_project(A, d.v, c)
                dirs[(f"ridge_{src}_c{c:g}", p)] = dataclasses.replace(d, v=vr, extra=dict(d.extra))
    return dirs


def spare_directions(model, faces, i: int, parts, method: str = "loco_band_sampler_ridge") -> dict:
    """band + sampler + ridge (the table's best, ``loco_band_sampler_ridge``) beside the same with the band sparing
    the regions of Ω^c it would mostly remove (``find_direction(band_spare=True)``: the eyes and the mouth inside the
    face's mask), both from one linearisation of the PMP and one of the sampler."""
    fd = face_directions(model, faces, i, methods=[method], parts=parts, tol=None)
    views = linearize(model.pmp(faces.t), faces.x_t[i], alpha_bar=faces.alpha_bar)
    sampler = linearize(sampler_map(model, faces.t, SAMPLER_STEPS), faces.x_t[i])
    dirs = {}
    for (_, p), d in fd.directions.items():
        dirs[(method, p)] = d
        opts = {**METHOD_OPTIONS[method], "band_spare": True}
        opts.pop("nullspace")
        dirs[(f"{method}+spare", p)] = find_direction(views, None, faces.masks[p][i], r=5, seed=0, tol=None,
                                                          max_iter=30, nullspace_map=sampler, **opts)
    return dirs


def refine_spare_directions(model, faces, i: int, parts) -> dict:
    """The refine row (``loco_band_sampler_ridge_refine``) beside the same with its refine step's complement sparing the
    holes of Ω (``outside(..., spare=True)``: the face's eyes and mouth) while the ridge before it keeps the plain
    2 px band: the face's own change around the holes survives the first solve, and the refine step's quotient then
    counts what the final image changes in the eyes and the mouth as "outside"."""
    method = "loco_band_sampler_ridge_refine"
    fd = face_directions(model, faces, i, methods=[method], parts=parts, tol=None)
    views = linearize(model.pmp(faces.t), faces.x_t[i], alpha_bar=faces.alpha_bar)
    sampler = linearize(sampler_map(model, faces.t, SAMPLER_STEPS), faces.x_t[i])
    opts = {k: v for k, v in METHOD_OPTIONS[method].items() if k not in ("nullspace", "refine")}
    dirs = {}
    for (_, p), d in fd.directions.items():
        dirs[(method, p)] = d
        ridge = find_direction(views, None, faces.masks[p][i], r=5, seed=0, tol=None, max_iter=30,
                               nullspace_map=sampler, **opts)
        mk = check_mask(faces.masks[p][i], sampler.base.shape_out)
        A_in = sampler.view(mk)
        w = A_in.rmv(A_in.mv(ridge.v.reshape(1, *ridge.v.shape))).reshape(-1)
        v, _ = ridge_project(sampler.view(outside(mk, opts["band"], spare=True)), w, opts.get("ridge", RIDGE_C))
        dirs[(f"{method}, spare in refine", p)] = dataclasses.replace(d, v=(v / v.norm()).reshape(d.v.shape),
                                                                       extra=dict(d.extra))
    return dirs


def ring_directions(model, faces, i: int, parts, rim: int = 1) -> dict:
    """The refine row (``loco_band_sampler_ridge_refine``) beside the same with a complement that keeps the *cores*
    of Ω's holes: Ω^c less the 2 px band, plus the regions the band would mostly remove (``outside(..., spare=True)``:
    the face's eyes and mouth) less their ``rim`` px next to Ω.  ``spare`` kept the holes whole, so the ridge also
    froze their soft rim, which blends the face's own colour ("keeping the holes projects away the face's own change
    around them"); here the rim may follow the face while the eyes' and the mouth's cores are protected.
    ``ring`` uses that complement in both solves (the ridge and the refine step), ``ring in refine`` in the refine
    step only."""
    method = "loco_band_sampler_ridge_refine"
    fd = face_directions(model, faces, i, methods=[method], parts=parts, tol=None)
    views = linearize(model.pmp(faces.t), faces.x_t[i], alpha_bar=faces.alpha_bar)
    sampler = linearize(sampler_map(model, faces.t, SAMPLER_STEPS), faces.x_t[i])
    opts = METHOD_OPTIONS[method]
    c, band = opts.get("ridge", RIDGE_C), opts["band"]
    dirs = {}
    for (_, p), d in fd.directions.items():
        dirs[(method, p)] = d
        mk = check_mask(faces.masks[p][i], sampler.base.shape_out)
        plain, ring = outside(mk, band), outside(mk, band, spare=True, rim=rim)
        raw = find_direction(views, None, faces.masks[p][i], r=5, r_null=0, seed=0, tol=None, max_iter=30)
        A_in = sampler.view(mk)
        for name, first, second in (("ring", ring, ring), ("ring in refine", plain, ring)):
            v1, _ = ridge_project(sampler.view(first), raw.v, c)
            w = A_in.rmv(A_in.mv(v1.reshape(1, *v1.shape))).reshape(-1)
            v2, _ = ridge_project(sampler.view(second), w, c)
            dirs[(f"{method}, {name} {rim}", p)] = dataclasses.replace(d, v=(v2 / v2.norm()).reshape(d.v.shape),
                                                                       extra=dict(d.extra))
    return dirs


def transfer_study(model, faces, i: int, th, grid, transfers: int = 2, reproject: bool = True,
                   method: str = "loco_band_sampler_ridge") -> dict:
    """Transfer of band + sampler + ridge (the table's best) from face ``i`` to the next ``transfers`` faces at the
    source's ±λ (λ by target on the source): the direction unchanged (the table's transfer), and re-projected on the
    target — v' = ridge_project(P_(Ω^c less 2 px) J_sampler(x_t'), v), the same soft step 7 through the *target's*
    sampler Jacobian — with the source's mask Ω (no annotation of the target needed) or the target's own mask Ω'
    (``reproject``); and the direction unchanged at a λ chosen again by target on the target face (``retarget_lambda``).
    Returns variant → list of (local success of the source edit, strict transfer success, main-factor transfer)."""
    n = len(faces)
    fd = face_directions(model, faces, i, methods=[method], tol=None)
    chosen = target_strengths(model, faces, i, fd.directions, grid)
    c = METHOD_OPTIONS[method].get("ridge", RIDGE_C)
    xs, meta = [], []
    for (_, p), d in fd.directions.items():
        lam = chosen[(method, p)].strength
        for sgn in (-1, 1):
            xs.append(faces.x_t[i] + sgn * lam * d.v)
            meta.append(("source", p, sgn, i))
    for j in range(1, transfers + 1):
        tg = (i + j) % n
        sampler = linearize(sampler_map(model, faces.t, SAMPLER_STEPS), faces.x_t[tg]) if reproject else None
        for (_, p), d in fd.directions.items():
            lam = chosen[(method, p)].strength
            vs = {"unchanged": d.v}
            for name, mask in () if not reproject else (("reproject_source_mask", faces.masks[p][i]), ("reproject_target_mask", faces.masks[p][tg])):
                if not mask.any() or mask.all():
                    continue
                A = sampler.view(outside(check_mask(mask, sampler.base.shape_out), 2))
                v, _ = ridge_project(A, d.v.reshape(-1), c)
                vs[name] = (v / v.norm()).reshape(d.v.shape)
            for name, v in vs.items():
                for sgn in (-1, 1):
                    xs.append(faces.x_t[tg] + sgn * lam * v)
                    meta.append((name, p, sgn, tg))
            # the direction unchanged, λ chosen again by target on the target face (a sweep there, no mask needed)
            copy = {("retarget", p): dataclasses.replace(d, extra=dict(d.extra))}
            lam_t = target_strengths(model, faces, tg, copy, grid)[("retarget", p)].strength
            for sgn in (-1, 1):
                xs.append(faces.x_t[tg] + sgn * lam_t * d.v)
                meta.append(("retarget_lambda", p, sgn, tg))
    out = sample_edits(model, torch.stack(xs), faces.t, steps=12)
    refs = [m[3] for m in meta]
    ch = factor_changes(faces.recon[refs], out, reference=fit_row(faces, refs))
    src = {(p, sgn): ch[k] for k, (name, p, sgn, _) in enumerate(meta) if name == "source"}
    res: dict = {}
    for k, (name, p, sgn, _) in enumerate(meta):
        if name == "source":
            continue
        s_ch = src[(p, sgn)]
        res.setdefault(name, []).append((bool(local_edit_success(s_ch, p, th)), bool(transfer_success(s_ch, ch[k], th)),
                                         bool(transfer_main_success(s_ch, ch[k], th))))
    return res


def band_directions(model, faces, i: int, bands: list[int], method: str = "loco_band_sampler_ridge",
                    parts=PARTS) -> dict:
    """``method`` (default band + sampler + ridge) with guard bands of other widths than BAND_PX, all from one
    linearisation of the PMP and one of the sampler (find_direction's ``band``)."""
    views = linearize(model.pmp(faces.t), faces.x_t[i], alpha_bar=faces.alpha_bar)
    sampler = linearize(sampler_map(model, faces.t, SAMPLER_STEPS), faces.x_t[i])
    opts = dict(METHOD_OPTIONS[method])
    opts.pop("nullspace")
    opts.pop("band", None)
    dirs = {}
    for p in parts:
        mask = faces.masks[p][i]
        if not mask.any() or mask.all():
            continue
        for b in bands:
            dirs[(f"{method} band {b}", p)] = find_direction(views, None, mask, r=5, seed=0, tol=None, max_iter=30,
                                                                 nullspace_map=sampler, band=b, **opts)
    return dirs


def geig_directions(model, faces, i: int, outer: int = 2) -> dict:
    """Directions read off the sampler's Jacobian J_s (x_t ↦ DDIM(x_t, 0), 6 steps) rather than the one-step PMP's:

    * ``sampler_v_ridge`` — step 4 on J_s: v = top right singular vector of P_Ω J_s, then the table's ridge against
      A_c = P_(Ω^c less 2 px) J_s;
    * ``geig{n}`` — from band + sampler + ridge (the table's best), n steps of u ← (A_cᵀA_c + μI)⁻¹ A_Ωᵀ A_Ω u
      (A_Ω = P_Ω J_s; each solve is ridge_project's CG): inverse iteration for the generalised eigenproblem
      max ‖P_Ω J_s u‖² / (‖A_c u‖² + μ‖u‖²), the direction whose *final* image changes most inside Ω for what it
      changes outside.  Matrix-free."""
    views = linearize(model.pmp(faces.t), faces.x_t[i], alpha_bar=faces.alpha_bar)
    sampler = linearize(sampler_map(model, faces.t, SAMPLER_STEPS), faces.x_t[i])
    opts = dict(METHOD_OPTIONS["loco_band_sampler_ridge"])
    opts.pop("nullspace")
    c = opts.get("ridge", RIDGE_C)
    dirs = {}
    for p in PARTS:
        mask = faces.masks[p][i]
        if not mask.any() or mask.all():
            continue
        d = find_direction(views, None, mask, r=5, seed=0, tol=None, max_iter=30, nullspace_map=sampler, **opts)
        dirs[("band_sampler_ridge", p)] = d
        mk = check_mask(mask, sampler.base.shape_out)
        top = power_method(sampler.view(mk), k=1, seed=0, tol=1e-2, max_iter=15)
        vs, _ = ridge_project(sampler.view(outside(mk, opts["band"])), top.V[:, 0], c)
        dirs[("sampler_v_ridge", p)] = dataclasses.replace(d, v=vs.reshape(d.v.shape), extra=dict(d.extra))
        for n in range(1, outer + 1):  # the library's option: find_direction(projection="ridge", refine=n)
            dirs[(f"geig{n}", p)] = find_direction(views, None, mask, r=5, seed=0, tol=None, max_iter=30,
                                                   nullspace_map=sampler, refine=n, **opts)
    return dirs


def target_directions(model, faces, i: int):
    fd = face_directions(model, faces, i, methods=["loco_band_sampler"], tol=None)
    return {(None, p): d for (_, p), d in fd.directions.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("variant", choices=["parts", "rnull", "target", "steps", "ridge", "spare", "transfer", "retarget", "band", "geig",
                                            "refine_spare", "ring"])
    ap.add_argument("--t", type=float, default=0.6)
    ap.add_argument("--images", type=int, default=6)
    ap.add_argument("--r-q", type=int, default=5, help="parts: top-r of each other part's masked Jacobian")
    ap.add_argument("--r-null", default="5,10,20", help="rnull: comma-separated r'")
    ap.add_argument("--sampler-steps", default="3,6,12", help="steps: comma-separated DDIM steps of the sampler")
    ap.add_argument("--first", type=int, default=0, help="the first face's seed (faces first … first + images − 1)")
    ap.add_argument("--ridge-from", default="raw,proj", help="ridge: start from the unprojected v (raw) and/or "
                    "band + sampler's v (proj)")
    ap.add_argument("--ridge-c", default="1,0.1", help="ridge: comma-separated μ / ‖A v̂‖²")
    ap.add_argument("--targets", default="0.08,0.12,0.16", help="target: comma-separated main-factor changes")
    ap.add_argument("--parts", default=",".join(PARTS), help="spare, band: comma-separated parts to edit")
    ap.add_argument("--rim", type=int, default=1, help="ring: px of each hole's rim left out of the complement")
    ap.add_argument("--bands", default="1,2,3", help="band: comma-separated guard bands (px)")
    ap.add_argument("--target-unit", choices=("factor", "tau"), default="factor",
                    help="every variant but target and transfer: λ-by-target in factor units (0.12) or in units of "
                         "each factor's τ (--tau-target × τ; the table's --target-unit tau)")
    ap.add_argument("--tau-target", type=float, default=TARGET_TAU, help="with --target-unit tau: the target in τ units")
    ap.add_argument("--method", default="loco_band_sampler_ridge",
                    help="spare, band, transfer, retarget: the table's method they start from (a METHODS row)")
    a = ap.parse_args(argv)
    parts = a.parts.split(",")
    if any(p not in PARTS for p in parts):
        ap.error(f"--parts must list parts among {list(PARTS)}; got {a.parts!r}")
    if a.first < 0:
        ap.error(f"--first must be a non-negative seed; got {a.first}")
    if a.images < 1:
        ap.error(f"--images must be at least 1; got {a.images}")
    r_nulls = [int(x) for x in a.r_null.split(",")]
    if any(r < 0 for r in r_nulls):
        ap.error(f"--r-null must list non-negative integers; got {a.r_null!r}")
    steps = [int(x) for x in a.sampler_steps.split(",")]
    if any(n < 1 for n in steps):
        ap.error(f"--sampler-steps must list positive integers; got {a.sampler_steps!r}")
    try:
        bands = [int(x) for x in a.bands.split(",")]
    except ValueError:
        bands = [-1]
    if any(b < 0 for b in bands):
        ap.error(f"--bands must list non-negative integers (px); got {a.bands!r}")
    targets = [float(x) for x in a.targets.split(",")]
    if any(not x > 0 for x in targets):
        ap.error(f"--targets must list positive changes; got {a.targets!r}")
    if not a.tau_target > 0:
        ap.error(f"--tau-target must be positive; got {a.tau_target}")
    if a.method not in METHOD_OPTIONS:
        ap.error(f"--method must be one of {list(METHOD_OPTIONS)}; got {a.method!r}")
    torch.set_num_threads(1)
    model = load_model("faces32")
    faces = prepare_faces(model, list(range(a.first, a.first + a.images)), a.t, sample_steps=12)
    th = thresholds_for(32)
    grid = default_strength_grid(3 * 32 * 32, 6)
    res: dict = {}
    t0 = time.perf_counter()
    if a.variant in ("transfer", "retarget"):
        tr: dict = {}
        for i in range(len(faces)):
            for name, rows in transfer_study(model, faces, i, th, grid, reproject=a.variant == "transfer",
                                                 method=a.method).items():
                tr.setdefault(name, []).extend(rows)
            print(f"face {i} done in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
        for name, rows in tr.items():
            print(name, f"strict {sum(r[1] for r in rows) / len(rows):.2f}", f"main {sum(r[2] for r in rows) / len(rows):.2f}",
                  f"strict from local sources {sum(r[1] for r in rows if r[0]) / max(1, sum(r[0] for r in rows)):.2f}",
                  f"({len(rows)} transfers)")
        return 0
    for i in range(len(faces)):
        xs, keys = [], []
        if a.variant == "target":
            base = target_directions(model, faces, i)
            for tgt in targets:
                chosen = target_strengths(model, faces, i, base, grid, target=tgt)
                for k, d in base.items():
                    for s in (-1, 1):
                        xs.append(faces.x_t[i] + s * chosen[k].strength * d.v)
                        keys.append((f"target {tgt:g}", k[1]))
        else:
            if a.variant == "parts":
                dirs = parts_directions(model, faces, i, a.r_q)
            elif a.variant == "ridge":
                dirs = ridge_directions(model, faces, i, [float(x) for x in a.ridge_c.split(",")], a.ridge_from.split(","))
            elif a.variant == "geig":
                dirs = geig_directions(model, faces, i)
            elif a.variant == "band":
                dirs = band_directions(model, faces, i, bands, a.method, parts)
            elif a.variant == "ring":
                dirs = ring_directions(model, faces, i, parts, a.rim)
            elif a.variant == "refine_spare":
                dirs = refine_spare_directions(model, faces, i, parts)
            elif a.variant == "spare":
                dirs = spare_directions(model, faces, i, parts, a.method)
            elif a.variant == "steps":
                dirs = steps_directions(model, faces, i, steps)
            else:
                dirs = rnull_directions(model, faces, i, r_nulls)
            tau = dict(target=a.tau_target, thresholds=th) if a.target_unit == "tau" else {}
            chosen = target_strengths(model, faces, i, dirs, grid, **tau)
            for k, d in dirs.items():
                for s in (-1, 1):
                    xs.append(faces.x_t[i] + s * chosen[k].strength * d.v)
                    keys.append(k)
        out = sample_edits(model, torch.stack(xs), faces.t, steps=12)
        ch = factor_changes(faces.recon[[i] * len(xs)], out, reference=fit_row(faces, [i] * len(xs)))
        for j, (variant, part) in enumerate(keys):
            res.setdefault(variant, {}).setdefault(part, []).append(bool(local_edit_success(ch[j], part, th)))
        print(f"face {i} done in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    for variant, per in res.items():
        every = [x for v in per.values() for x in v]
        print(variant, f"{sum(every) / len(every):.2f}", {p: round(sum(v) / len(v), 2) for p, v in per.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
