"""Edit quality on procedural faces, measured: which factors an edit changed, by analysis by synthesis.

The faces of :mod:`lococourse.data.faces` are a known, differentiable function of 9 factors,
each belonging to one of 5 parts.  So "did the edit change only the eyes?" — the question the
paper's human raters answered (Appendix G.2, Table 1) — has a measurable answer here:

1. **Estimate** the factors of any face image by analysis by synthesis (:func:`estimate_factors`):
   find θ ∈ [0, 1]⁹ minimising ‖render(θ) − x‖² with

   a. a seeded quasi-random pool of rendered candidates (the best ``n_starts`` per image by MSE),
   b. projected Adam on every start (batched: all images × all starts in one rendering),
   c. a coordinate grid sweep of each factor of the best fit (escapes the local minima of small,
      edge-only features such as the gaze), and a second Adam polish.

   ``bg_hue`` is periodic (the background palette is a cosine of period 1), so it is optimised
   modulo 1 and compared on the circle (:func:`factor_delta`).
2. **Compare** two images by their estimated factors (:func:`factor_changes`), always against the
   model's own λ = 0 reconstruction so that the model's reconstruction error cancels.
3. **Decide** with per-factor thresholds set from the estimator's measured noise
   (:func:`calibrate_thresholds`, :data:`DEFAULT_THRESHOLDS`): a factor *changed* when
   |Δθ_i| > τ_i.

   * :func:`local_edit_success` — some factor of the masked part changed and no factor of any other
     part did (the paper's "only one major feature is edited").
   * :func:`transfer_success` — the transferred edit changed the same factors as the source edit, in
     the same directions (the paper's "the two edited images have the same features changed").
   * :func:`transfer_main_success` — looser: the source edit's main factor changes the same way.
   * :func:`factor_linearity` — R² of the main factor's change against λ.
   * :func:`factor_composability` — ‖Δθ_composite − Σ Δθ_i‖ / ‖Σ Δθ_i‖.
4. **Edit** generated faces through a model (Algorithm 1, and the ablations of the benchmark):
   :func:`prepare_faces` (DDIM-Inv, reconstructions), :func:`face_directions` (every method × part
   from one linearisation, :class:`JacobianViews`), :func:`edit_face`; and the property studies of
   notebook 07 (:func:`transfer_study`, :func:`composition_study`, :func:`linearity_study`,
   :func:`t_study`, :func:`r_null_study`).

No plotting here (see :mod:`lococourse.course.viz_edit`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from lococourse.core.checks import check_strength
from lococourse.data.faces import FACTOR_NAMES, PARTS, render_faces, sample_faces
from lococourse.editing.loco import SAMPLER_STEPS, find_directions, invert, linearize, sampler_map
from lococourse.editing.metrics import leakage, psnr_outside, ssim_outside
from lococourse.editing.strength import StrengthChoice, strength_for_target
from lococourse.eval.decisions import Thresholds, changed, local_edit_success, thresholds_for
from lococourse.eval.factors import (
    CIRCULAR,
    EstimatorConfig,
    FactorFit,
    as_theta,
    check_part,
    estimate_factors,
    factor_changes,
    factors_of_part,
    theta_dict,
)
from lococourse.models.ddim import ddim_grid, ddim_sample


# ---------------------------------------------------------------------------------------- faces through a model
@dataclass
class FaceSet:
    """Generated faces (one per seed, ``sample_faces(1, seed)``), DDIM-inverted to t through a model."""

    seeds: list
    x0: torch.Tensor  # (n, 3, S, S) the generated faces
    masks: dict  # part -> (n, S, S) bool, the ground-truth part masks of x0
    factors: torch.Tensor  # (n, 9) the true factors of x0
    x_t: torch.Tensor  # (n, 3, S, S) DDIM-Inv(x0, t)
    t: float  # the DDIM grid time
    alpha_bar: float  # ᾱ at t
    recon: torch.Tensor  # (n, 3, S, S) DDIM(x_t, 0): the λ = 0 reference of every edit
    recon_fit: FactorFit | None  # estimated factors of the reconstructions
    sample_steps: int | None = None  # DDIM steps of step 9 (None: the paper's 100-step grid, t·100 steps from t)

    def __len__(self) -> int:
        return len(self.seeds)


def model_size(model) -> int:
    """The side S of a faces model's (3, S, S) images (clear error for other models)."""
    shape = tuple(model.shape)
    if len(shape) != 3 or shape[0] != 3 or shape[1] != shape[2] or shape[1] < 8:
        raise ValueError(f"a faces model makes (3, S, S) images; this model's shape is {shape}")
    return shape[1]


def sample_edits(model, x: torch.Tensor, t: float, batch: int = 128, steps: int | None = None) -> torch.Tensor:
    """DDIM(x, 0) from the grid time t for a batch of (edited) x_t, in chunks of ``batch``: Algorithm 1 step 9.

    ``steps``: None samples on the paper's 100-step grid (t·100 steps from t); a number samples in that many
    steps on levels of the same grid (:meth:`~lococourse.models.ddim.DDIMGrid.subgrid`: same start, coarser)."""
    grid = ddim_grid() if steps is None else ddim_grid().subgrid(t, steps)
    eps = model.eps_model()
    with torch.no_grad():
        return torch.cat([ddim_sample(eps, x[i:i + batch], t, 0.0, grid=grid) for i in range(0, len(x), batch)])


def prepare_faces(model, seeds: Sequence[int], t: float = 0.6, *, estimate: bool = True,
                  config: EstimatorConfig | None = None, sample_steps: int | None = None) -> FaceSet:
    """Faces for ``seeds``, their ground truth, x_t = DDIM-Inv(x₀, t) (Algorithm 1 step 3), and the
    reconstructions DDIM(x_t, 0) with their estimated factors (the reference of every edit)."""

    size = model_size(model)
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must name at least one face")
    fbs = [sample_faces(1, s, size=size) for s in seeds]
    x0 = torch.cat([fb.images for fb in fbs])
    masks = {p: torch.cat([fb.masks[p] for fb in fbs]) for p in PARTS}
    factors = torch.cat([as_theta(fb.factors) for fb in fbs])
    x_t, t_grid = invert(model, x0, t)
    grid = ddim_grid()
    alpha_bar = float(grid.alpha_bar[grid.index(t_grid)])
    recon = sample_edits(model, x_t, t_grid, steps=sample_steps)
    fit = estimate_factors(recon, config) if estimate else None
    return FaceSet(seeds, x0, masks, factors, x_t, t_grid, alpha_bar, recon, fit, sample_steps)


#: The rim (px) of a hole of Ω that the ``loco_cores*`` methods leave out of the complement while keeping its core
#: (:func:`~lococourse.editing.loco.outside` ``rim``).  benchmarks/explore_nullspace_variants.py ring, 20 faces: the
#: refine row's face edits 0.53 → 0.72 local at t = 0.6 and 0.20 → 0.45 at t = 0.4 (whole holes kept: 0.40 / 0.40).
CORE_RIM_PX = 1
#: The ways of finding an editing direction compared in the benchmark (Table 1 and Appendix G.2).
METHODS: dict[str, str] = {
    "loco": "LOCO Edit: masked PMP Jacobian + nullspace projection (Algorithm 1, r' = 5)",
    "no_projection": "masked PMP Jacobian without nullspace projection (r' = 0)",
    "eps_unmasked": "∂ε/∂x_t, unmasked, no projection (Appendix G.2)",
    "pmp_unmasked": "∂x̂₀/∂x_t, unmasked, no projection",
    "loco_band": "LOCO with a 2 px guard band around Ω left out of the complement (ours)",
    "loco_sampler": f"LOCO with the complement nullspace of the whole sampler x_t ↦ DDIM(x_t, 0), {SAMPLER_STEPS} steps (ours)",
    "loco_band_sampler": "LOCO with both: guard band and the sampler's complement nullspace (ours)",
    "loco_band_sampler_ridge": "band + sampler, with step 7's projection replaced by the soft (ridge) projection (ours)",
    "loco_band_sampler_ridge_refine": "band + sampler + ridge, then one step of inverse iteration on the sampler's "
                                      "inside/outside quotient (find_direction refine=1, ours)",
    "loco_cores": "band + sampler, with the band keeping the cores of Ω's holes (the face's eyes) in the complement "
                  f"(find_direction band_spare=True, spare_rim={CORE_RIM_PX}, ours)",
    "loco_cores_ridge": "loco_cores with the ridge projection (ours)",
    "loco_cores_refine": "loco_cores with the ridge projection and one refine step (ours)",
}
#: The paper's recipe and its ablations (Table 1, Appendix G.2): the methods of the faithful baseline rows.
PAPER_METHODS = ("loco", "no_projection", "eps_unmasked", "pmp_unmasked")
#: The guard band (px) of the "ours" methods (their sampler steps: editing.loco.SAMPLER_STEPS).
BAND_PX = 2


@dataclass
class FaceDirections:
    """Directions of one image: (method, part) → Direction, and what they cost."""

    directions: dict
    linearize_s: float  # one JacobianOperator (shared by every method and part)
    power_s: dict  # (method, part) → seconds of the power method(s) that method needs for that direction
    skipped: list  # parts whose mask is empty or all true in this image

    def learning_seconds(self, method: str, part: str) -> float:
        """What finding this one direction costs on its own: the linearisation plus its power methods."""
        return self.linearize_s + self.power_s[(method, part)]


#: How each method of :data:`METHODS` calls Algorithm 1 (:func:`~lococourse.editing.loco.find_direction`).
METHOD_OPTIONS: dict[str, dict] = {
    "loco": {},
    "no_projection": {"r_null": 0},
    "pmp_unmasked": {"r_null": 0, "masked_jacobian": False, "select": "mask_energy"},
    "eps_unmasked": {"r_null": 0, "masked_jacobian": False, "select": "mask_energy", "jacobian": "eps"},
    "loco_band": {"band": BAND_PX},
    "loco_sampler": {"nullspace": "sampler"},
    "loco_band_sampler": {"band": BAND_PX, "nullspace": "sampler"},
    "loco_band_sampler_ridge": {"band": BAND_PX, "nullspace": "sampler", "projection": "ridge"},
    "loco_band_sampler_ridge_refine": {"band": BAND_PX, "nullspace": "sampler", "projection": "ridge", "refine": 1},
    "loco_cores": {"band": BAND_PX, "band_spare": True, "spare_rim": CORE_RIM_PX, "nullspace": "sampler"},
    "loco_cores_ridge": {"band": BAND_PX, "band_spare": True, "spare_rim": CORE_RIM_PX, "nullspace": "sampler",
                         "projection": "ridge"},
    "loco_cores_refine": {"band": BAND_PX, "band_spare": True, "spare_rim": CORE_RIM_PX, "nullspace": "sampler",
                          "projection": "ridge", "refine": 1},
}


def face_directions(model, faces: FaceSet, i: int, *, methods: Sequence[str] = tuple(METHODS), parts: Sequence[str] = PARTS,
                    index: int = 0, r: int = 5, r_null: int = 5, seed: int = 0, tol: float = 1e-3,
                    max_iter: int = 30, sampler_steps: int = SAMPLER_STEPS) -> FaceDirections:
    """Editing directions for image ``i`` of ``faces``, every method × part, from one linearisation.

    Every direction is Algorithm 1 steps 4–8 (:func:`~lococourse.editing.loco.find_direction`) on one shared
    :func:`~lococourse.editing.loco.linearize` of the PMP at x_t, so the forward pass and every power method
    (the masked one shared by ``loco`` and ``no_projection``, the unmasked ones by every part) run once:

    * ``loco``: v = Ṽ[:, k] of ∇P_Ω f, projected off the top-r' V̄ of ∇P_{Ω^c} f;
    * ``no_projection``: the same v, unprojected (r' = 0);
    * ``pmp_unmasked`` / ``eps_unmasked``: the top-r right singular vectors of ∇f (resp. ∂ε/∂x_t).  They know
      no region, so for each part they get their most favourable reading: the one of the r whose left
      singular vector u_k puts the largest fraction of its energy inside the part's mask.

    ``sampler_steps``: the DDIM grid from t to 0 of the sampler whose complement nullspace the ``*_sampler``
    methods use (:func:`~lococourse.editing.loco.sampler_map`).
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {list(METHODS)}")
    for p in parts:
        check_part(p)
    need_sampler = [m for m in methods if METHOD_OPTIONS[m].get("nullspace") == "sampler"]
    if need_sampler and not callable(getattr(model, "eps_model", None)):
        raise TypeError(f"methods {need_sampler} linearise the whole DDIM sampler, which needs model.eps_model(); "
                        f"{type(model).__name__} has only a PMP: drop those methods or pass a DiffusionModel")
    name = getattr(getattr(model, "spec", None), "name", "") or getattr(model, "name", "")
    views = linearize(model.pmp(faces.t), faces.x_t[i], alpha_bar=faces.alpha_bar)
    sampler = None  # the whole sampler's linearisation, shared by every part (only if a method needs it)
    if need_sampler:
        sampler = linearize(sampler_map(model, faces.t, sampler_steps), faces.x_t[i])
    out, power_s, skipped = {}, {}, []
    used = []
    for part in parts:
        mask = faces.masks[part][i]
        if not mask.any() or mask.all():
            skipped.append(part)
        else:
            used.append(part)
    for method in methods if used else ():  # one find_directions call per method: its ridge solves batch over the parts
        opts = {"index": index, "r_null": r_null, **METHOD_OPTIONS[method]}
        if opts.pop("nullspace", "pmp") == "sampler":
            opts["nullspace_map"] = sampler
        extras = [{"method": method, "part": part, "masked": opts.get("masked_jacobian", True),
                   "image_seed": faces.seeds[i], "linearize_s": round(views.seconds, 4)} for part in used]
        found = find_directions(views, None, [faces.masks[part][i] for part in used], r=r, seed=seed, tol=tol,
                                max_iter=max_iter, model=name, extras=extras, **opts)
        for part, d in zip(used, found):
            d.t = faces.t
            out[(method, part)] = d
            power_s[(method, part)] = d.seconds - views.seconds
    return FaceDirections(out, views.seconds, power_s, skipped)


# ---------------------------------------------------------------------------------------- one edit, measured
def edit_metrics(reference: torch.Tensor, edited: torch.Tensor, mask: torch.Tensor) -> dict:
    """Pixel metrics of one edit against its λ = 0 reference: leakage, PSNR and SSIM outside Ω."""

    return {"leakage": leakage(reference, edited, mask), "psnr_outside_db": psnr_outside(reference, edited, mask),
            "ssim_outside": ssim_outside(reference, edited, mask)}


@dataclass
class FaceEdit:
    """One LOCO edit of a generated face, with everything measured about it."""

    seed: int
    part: str
    method: str
    t: float
    strength: float
    original: torch.Tensor  # (3, S, S) x₀
    reconstruction: torch.Tensor  # (3, S, S) DDIM(x_t, 0)
    edited: torch.Tensor  # (3, S, S) DDIM(x_t + λ v, 0)
    mask: torch.Tensor  # (S, S)
    direction: object  # the Direction
    changes: torch.Tensor  # (9,) estimated factor changes, edited vs reconstruction
    changed_factors: list  # names of the factors that changed beyond their threshold
    local_success: bool
    metrics: dict  # leakage, psnr_outside_db, ssim_outside

    @property
    def difference(self) -> torch.Tensor:
        return self.edited - self.reconstruction

    def summary(self) -> str:
        ch = ", ".join(f"{n} {float(self.changes[FACTOR_NAMES.index(n)]):+.2f}" for n in self.changed_factors) or "none"
        return (f"{self.method} edit of the {self.part} (seed {self.seed}, t = {self.t:.2f}, λ = {self.strength:g}): "
                f"changed {ch}; local success {self.local_success}; leakage {self.metrics['leakage']:.3f}, "
                f"SSIM outside {self.metrics['ssim_outside']:.3f}")




def fit_row(faces: FaceSet, i) -> FactorFit | None:
    """The reconstruction fits of rows ``i`` (an int or a list) of ``faces``."""
    if faces.recon_fit is None:
        return None
    idx = [i] if isinstance(i, int) else list(i)
    return FactorFit(faces.recon_fit.theta[idx], faces.recon_fit.mse[idx], faces.recon_fit.size)


def resolve_thresholds(thresholds, model) -> Thresholds | torch.Tensor:
    return thresholds if thresholds is not None else thresholds_for(model_size(model))


def find_face_direction(model, seed: int, part: str, *, t: float = 0.6, index: int = 0, r: int = 5, r_null: int = 5,
                        method: str = "loco", max_iter: int = 30, config: EstimatorConfig | None = None):
    """(FaceSet of the one face ``sample_faces(1, seed)``, the ``method``'s direction for ``part``): steps 3–8."""
    check_part(part)
    faces = prepare_faces(model, [seed], t, config=config)
    dirs = face_directions(model, faces, 0, methods=[method], parts=[part], index=index, r=r, r_null=r_null,
                           max_iter=max_iter)
    if part in dirs.skipped:
        raise ValueError(f"the {part} mask of face {seed} is empty or the whole image at {model_size(model)} px; "
                         "choose another part or seed")
    return faces, dirs.directions[(method, part)]


def apply_face_edit(model, faces: FaceSet, direction, strength: float, *, i: int = 0, thresholds=None,
                    config: EstimatorConfig | None = None) -> FaceEdit:
    """Step 9 for face ``i`` of ``faces`` at strength λ, and everything measured about the edit."""
    lam = check_strength(strength)
    part, method = direction.extra.get("part"), direction.extra.get("method", "loco")
    th = resolve_thresholds(thresholds, model)
    edited = sample_edits(model, (faces.x_t[i] + lam * direction.v).unsqueeze(0), faces.t, steps=faces.sample_steps)[0]
    ch = factor_changes(faces.recon[i], edited, config, reference=fit_row(faces, i))
    mask = faces.masks[part][i]
    names = [n for n, c in zip(FACTOR_NAMES, changed(ch, th).tolist()) if c]
    return FaceEdit(faces.seeds[i], part, method, faces.t, lam, faces.x0[i], faces.recon[i], edited, mask, direction,
                    ch, names, bool(local_edit_success(ch, part, th)), edit_metrics(faces.recon[i], edited, mask))


def edit_face(model, seed: int, part: str, *, t: float = 0.6, index: int = 0, strength: float = 8.0, r: int = 5,
              r_null: int = 5, method: str = "loco", thresholds=None, max_iter: int = 30,
              config: EstimatorConfig | None = None) -> FaceEdit:
    """LOCO Edit (or an ablation ``method``) of the ``part`` of the face ``sample_faces(1, seed)``, measured."""
    check_strength(strength)
    faces, d = find_face_direction(model, seed, part, t=t, index=index, r=r, r_null=r_null, method=method,
                                   max_iter=max_iter, config=config)
    return apply_face_edit(model, faces, d, strength, thresholds=thresholds, config=config)




# ---------------------------------------------------------------------------------------- λ per direction
#: The default target of λ-by-target: the edited part's main factor moves by this much (factors live in [0, 1]).
TARGET_CHANGE = 0.12
#: The default target of λ-by-target in units of the thresholds (``target_strengths(..., thresholds=τ)``): the part's
#: main factor moves by this many times its own τ — twice the change the metric can tell from estimator noise.
TARGET_TAU = 2.0


def part_response(changes: torch.Tensor, part: str, thresholds: Thresholds | None = None) -> torch.Tensor:
    """How strongly an edit changed its own part: max over the factors i of ``part`` of |Δθ_i| (factor units), or of
    |Δθ_i| / τ_i with ``thresholds`` (units of each factor's τ).  changes: (…, 9) → (…)."""
    idx = [FACTOR_NAMES.index(n) for n in factors_of_part(part)]
    c = as_theta(changes)[..., idx].abs()
    if _checked(thresholds) is not None:
        c = c / thresholds.tau[idx].to(c)
    return c.max(-1).values


def _checked(thresholds: Thresholds | None) -> Thresholds | None:
    if thresholds is not None and not isinstance(thresholds, Thresholds):
        raise TypeError(f"thresholds must be a lococourse.eval.Thresholds; got {type(thresholds).__name__}")
    return thresholds


def strength_from_sweep(changes: torch.Tensor, part: str, grid: Sequence[float], target: float,
                        thresholds: Thresholds | None = None) -> StrengthChoice:
    """λ-by-target from a sweep already sampled: ``changes`` (L, 9) are the factor changes of the +λ edits at the L
    λ of ``grid``; the response is :func:`part_response` (in units of τ with ``thresholds``) and λ its linear
    interpolation at ``target`` (:func:`~lococourse.editing.strength.strength_for_target`)."""
    resp = part_response(changes, part, thresholds).tolist()
    return strength_for_target(lambda _lams: resp, target, grid)


def target_strengths(model, faces: FaceSet, i: int, directions: dict, grid: Sequence[float], *,
                     target: float = TARGET_CHANGE, thresholds: Thresholds | None = None,
                     config: EstimatorConfig | None = None) -> dict:
    """λ per direction (``directions``: (method, part) → Direction on face ``i``) at which the direction's edit
    at +λ moves its part's main factor by ``target`` (:func:`~lococourse.editing.strength.strength_for_target`),
    from one batched sweep over ``grid``.  Records the choice in each Direction (``extra["strength"]``, with
    ``unit``).

    ``target`` is in factor units (default :data:`TARGET_CHANGE`); with ``thresholds`` it is in units of each factor's
    τ (:func:`part_response`; e.g. :data:`TARGET_TAU`), so an edit of a part whose factors the estimator reads less
    precisely (a larger τ, e.g. the mouth's width at small t) is driven further, and one read precisely no further
    than it takes to be seen.  Neither is the paper's: it picks λ by hand per edit (Appendix G)."""
    _checked(thresholds)
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not target > 0 or target == float("inf"):
        raise ValueError(f"the target change must be a positive finite number; got {target!r}")
    keys = list(directions)
    lams = [float(v) for v in grid]
    if not keys:
        return {}
    xs = torch.stack([faces.x_t[i] + lam * directions[k].v for k in keys for lam in lams])
    out = sample_edits(model, xs, faces.t, steps=faces.sample_steps)
    ch = factor_changes(faces.recon[[i] * len(xs)], out, config, reference=fit_row(faces, [i] * len(xs)))
    chosen = {}
    for a, k in enumerate(keys):
        choice = strength_from_sweep(ch[a * len(lams):(a + 1) * len(lams)], k[1], lams, target, thresholds)
        directions[k].extra["strength"] = {**choice.as_dict(), "unit": "factor" if thresholds is None else "tau"}
        chosen[k] = choice
    return chosen


# ---------------------------------------------------------------------------------------- the upper bound
def true_factor_edits(model, faces: FaceSet, i: int, part: str, delta: float = 0.2) -> tuple[torch.Tensor, list]:
    """What a perfect direction could do: face ``i`` re-rendered with one factor of ``part`` moved by ±delta (both
    signs where the factor stays in [0, 1]; no clipping), DDIM-inverted to t and resampled through the model — the
    same pipeline an edit goes through.  Returns (edited images (m, 3, S, S), [(factor name, signed delta)])."""
    check_part(part)
    if not (isinstance(delta, (int, float)) and 0 < delta < 1):
        raise ValueError(f"delta must lie in (0, 1) (factor units); got {delta!r}")
    theta = faces.factors[i]
    rows, meta = [], []
    for name in factors_of_part(part):
        j = FACTOR_NAMES.index(name)
        for s in (-1.0, 1.0):
            v = float(theta[j]) + s * delta
            if 0.0 <= v <= 1.0 or name in CIRCULAR:
                th = theta.clone()
                th[j] = v % 1.0 if name in CIRCULAR else v
                rows.append(th)
                meta.append((name, s * delta))
    if not rows:
        return torch.empty(0, *faces.x0.shape[1:]), []
    return resample_factors(model, faces.t, torch.stack(rows), faces.sample_steps), meta


def resample_factors(model, t: float, theta: torch.Tensor, steps: int | None = None) -> torch.Tensor:
    """Render factors θ (m, 9), DDIM-invert the faces to t (the paper's grid) and resample them (``steps`` as in
    :func:`sample_edits`): (m, 3, S, S)."""
    size = model_size(model)
    imgs = render_faces(theta_dict(theta), size=size).images.float()
    x_t, t_grid = invert(model, imgs, t)
    return sample_edits(model, x_t, t_grid, steps=steps)
