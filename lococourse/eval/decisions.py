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

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import torch

from lococourse.data.faces import FACTOR_NAMES, PARTS, render_faces
from lococourse.editing.metrics import linearity_r2
from lococourse.eval.factors import (
    PART_OF,
    EstimatorConfig,
    FactorFit,
    as_theta,
    check_images,
    check_part,
    estimate_factors,
    factor_delta,
    part_of_factor,
    theta_dict,
)


# ---------------------------------------------------------------------------------------- thresholds
@dataclass
class Thresholds:
    """Per-factor change thresholds τ (a factor changed when |Δθ_i| > τ_i), with how they were set."""

    tau: torch.Tensor  # (9,)
    how: str = ""
    noise: dict = field(default_factory=dict)  # measured cross-talk quantile per factor
    accuracy: dict = field(default_factory=dict)  # mean |error| of a known injected change per factor

    def as_dict(self) -> dict:
        return {k: round(float(v), 4) for k, v in zip(FACTOR_NAMES, self.tau)}


def inject_factor_changes(images: torch.Tensor, fit: FactorFit, delta: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """Images with one known factor change each: x + render(θ̂ + δ_i e_i) − render(θ̂), for every image and factor.

    δ_i = +delta where θ̂_i < ½, else −delta (so θ̂ + δ_i e_i stays in [0, 1]).  Returns the
    (n·9, 3, S, S) images (image-major, factor-minor) and the (n, 9) injected δ.
    """
    th = fit.theta
    n, k = th.shape
    dlt = torch.where(th < 0.5, delta, -delta)  # (n, 9)
    moved = th.unsqueeze(1).repeat(1, k, 1)  # (n, i, 9)
    moved[:, torch.arange(k), torch.arange(k)] += dlt
    base = render_faces(theta_dict(th), fit.size).images
    new = render_faces(theta_dict(moved.reshape(-1, k)), fit.size).images
    return images.repeat_interleave(k, 0) + new - base.repeat_interleave(k, 0), dlt


def calibrate_thresholds(images: torch.Tensor, *, delta: float = 0.2, sigma: float = 0.03, quantile: float = 0.95,
                         factor: float = 2.0, floor: float = 0.05, seed: int = 0,
                         config: EstimatorConfig | None = None) -> Thresholds:
    """Thresholds from the estimator's measured noise on *model* images (e.g. DDIM reconstructions).

    For every image x and factor i we inject a known change δ_i of factor i (exactly, through the
    renderer: :func:`inject_factor_changes`) plus i.i.d. pixel noise of standard deviation ``sigma``,
    and estimate the change.  The estimated change of every *other* factor j ≠ i is noise (cross-talk
    of the estimator on an imperfect, blurry face); its ``quantile`` per factor, q_j, sets

        τ_j = max(floor, factor · q_j).

    The floor (default 0.05, 5 % of a factor's range) is the smallest change we call a feature
    change: colour factors are estimated to ±0.01, so noise alone would count sub-visible tints.

    Also reports the accuracy |Δθ̂_i − δ_i| of the injected factor (how well a real change is recovered).
    """
    x, _ = check_images(images)
    fit = estimate_factors(x, config)
    moved, dlt = inject_factor_changes(x, fit, delta)
    g = torch.Generator().manual_seed(seed)
    moved = moved + sigma * torch.randn(moved.shape, generator=g)
    k = len(FACTOR_NAMES)
    ref = fit.theta.repeat_interleave(k, 0)
    d = factor_delta(ref, estimate_factors(moved, config, init=ref).theta).reshape(len(x), k, k)  # (n, i, j)
    eye = torch.eye(k, dtype=torch.bool)
    acc = (d[:, eye] - dlt).abs().mean(0)  # (9,)
    cross = d.abs().masked_fill(eye, float("nan")).reshape(-1, k)  # rows: (image, injected i); NaN on i = j
    q = torch.nanquantile(cross, quantile, dim=0)
    tau = torch.maximum(factor * q, torch.full_like(q, floor))
    how = (f"τ_j = max({floor}, {factor} × the {quantile:.0%} quantile of |Δθ̂_j| when another factor i ≠ j of a "
           f"model image is changed by ±{delta} (and pixel noise σ = {sigma} is added); {len(x)} images × {k} factors")
    return Thresholds(tau, how, {n: round(float(v), 4) for n, v in zip(FACTOR_NAMES, q)},
                      {n: round(float(v), 4) for n, v in zip(FACTOR_NAMES, acc)})


#: Thresholds measured on the course models faces16 and faces32 with :func:`calibrate_thresholds` (its
#: defaults) on the DDIM reconstructions at t = 0.6 of the calibration faces, seeds 1000–1003 — the first
#: step of ``benchmarks/bench_loco_table.py``.  Keyed by image size.  Where the estimator's cross-talk
#: is larger than the floor (face width, eye size and the mouth at 16 px; mouth width at 32 px) τ = 2 × its
#: 95 % quantile.  faces32's entry is from its retrained version (9000 steps; the 1200-step model needed
#: face width 0.1634, hair length 0.0682 and mouth width 0.1136).
DEFAULT_THRESHOLDS: dict[int, dict[str, float]] = {
    16: {"bg_hue": 0.05, "hair_colour": 0.05, "hair_length": 0.05, "skin_tone": 0.05, "face_width": 0.1022,
         "eye_size": 0.1149, "gaze": 0.05, "mouth_curve": 0.1125, "mouth_width": 0.1552},
    32: {"bg_hue": 0.05, "hair_colour": 0.05, "hair_length": 0.05, "skin_tone": 0.05, "face_width": 0.05,
         "eye_size": 0.05, "gaze": 0.05, "mouth_curve": 0.05, "mouth_width": 0.0992},
}


def thresholds_for(size: int) -> Thresholds:
    """The default thresholds for faces of side ``size`` (0.05 per factor where none were measured)."""
    vals = DEFAULT_THRESHOLDS.get(int(size))
    if vals is None:
        return Thresholds(torch.full((len(FACTOR_NAMES),), 0.05), "0.05 per factor (not calibrated for this size)")
    return Thresholds(torch.tensor([vals[k] for k in FACTOR_NAMES]), f"DEFAULT_THRESHOLDS[{size}] (calibrate_thresholds)")


def _tau(thresholds) -> torch.Tensor:
    if isinstance(thresholds, Thresholds):
        return thresholds.tau
    if isinstance(thresholds, Mapping):
        return torch.tensor([float(thresholds[k]) for k in FACTOR_NAMES])
    t = torch.as_tensor(thresholds, dtype=torch.float32)
    if t.numel() == 1:
        t = t.reshape(1).expand(len(FACTOR_NAMES))
    if t.shape != (len(FACTOR_NAMES),) or not bool((t > 0).all()):
        raise ValueError(f"thresholds must be one positive number or 9 (one per factor); got {t.tolist()}")
    return t


# ---------------------------------------------------------------------------------------- decisions
def changed(changes: torch.Tensor, thresholds) -> torch.Tensor:
    """Which factors changed: |Δθ_i| > τ_i, (…, 9) bool."""
    return as_theta(changes).abs() > _tau(thresholds)


def changed_parts(changes: torch.Tensor, thresholds) -> torch.Tensor:
    """Which parts changed (any of their factors did), (…, 5) bool in PARTS order."""
    c = changed(changes, thresholds)
    return torch.stack([c[..., PART_OF == p].any(-1) for p in range(len(PARTS))], -1)


def local_edit_success(changes: torch.Tensor, part: str, thresholds) -> torch.Tensor:
    """A local edit of ``part`` succeeded: a factor of that part changed beyond τ and no other part's did."""
    p = check_part(part)
    cp = changed_parts(changes, thresholds)
    others = torch.cat([cp[..., :p], cp[..., p + 1:]], -1)
    return cp[..., p] & ~others.any(-1)


def transfer_success(source: torch.Tensor, target: torch.Tensor, thresholds) -> torch.Tensor:
    """A transferred edit succeeded: it changed exactly the factors the source edit changed (a non-empty
    set), each in the same direction.  source, target: (…, 9) factor changes (broadcast)."""
    s, t = as_theta(source), as_theta(target)
    cs, ct = changed(s, thresholds), changed(t, thresholds)
    same_set = (cs == ct).all(-1) & cs.any(-1)
    same_sign = ((torch.sign(s) == torch.sign(t)) | ~cs).all(-1)
    return same_set & same_sign


def transfer_main_success(source: torch.Tensor, target: torch.Tensor, thresholds) -> torch.Tensor:
    """A looser reading of transfer: the source edit's main factor (largest |Δθ_i|/τ_i, and beyond τ)
    also changed beyond τ in the target, in the same direction — whatever else changed in either."""
    s, t = as_theta(source), as_theta(target)
    tau = _tau(thresholds)
    s, t = torch.broadcast_tensors(s, t)
    i = (s.abs() / tau).argmax(-1, keepdim=True)
    si, ti, taui = s.gather(-1, i)[..., 0], t.gather(-1, i)[..., 0], tau[i[..., 0]]
    return (si.abs() > taui) & (ti.abs() > taui) & (torch.sign(si) == torch.sign(ti))


def transfer_part_success(source: torch.Tensor, target: torch.Tensor, thresholds) -> torch.Tensor:
    """A part-level reading of transfer: the transferred edit changed the same parts as the source edit (a
    non-empty set), and the source edit's main factor changed the same way in the target (beyond τ)."""
    s, t = as_theta(source), as_theta(target)
    ps, pt = changed_parts(s, thresholds), changed_parts(t, thresholds)
    same_parts = (ps == pt).all(-1) & ps.any(-1)
    return same_parts & transfer_main_success(s, t, thresholds)


def main_factor(changes: torch.Tensor, thresholds=None) -> int:
    """Index of the factor with the largest |Δθ_i| / τ_i (τ = 1 without thresholds) over all rows."""
    c = as_theta(changes).reshape(-1, len(FACTOR_NAMES)).abs()
    if thresholds is not None:
        c = c / _tau(thresholds)
    return int(c.max(0).values.argmax())


def factor_linearity(strengths: Sequence[float], changes: torch.Tensor, factor: int | str | None = None) -> tuple[float, str]:
    """(R² of a straight line through (λ, Δθ_main(λ)), the main factor's name).

    ``changes`` (L, 9) for the L strengths; the main factor is the one with the largest change over
    the sweep unless ``factor`` (index or name) is given.
    """

    c = as_theta(changes)
    if c.dim() != 2 or c.shape[0] != len(strengths):
        raise ValueError(f"changes must be (L, 9) for L = {len(strengths)} strengths; got {tuple(c.shape)}")
    if factor is None:
        i = main_factor(c)
    elif isinstance(factor, str):
        part_of_factor(factor)
        i = FACTOR_NAMES.index(factor)
    else:
        i = int(factor)
    return linearity_r2(list(strengths), c[:, i].numpy()), FACTOR_NAMES[i]


def factor_composability(composite: torch.Tensor, parts: Sequence[torch.Tensor]) -> float:
    """‖Δθ_comp − Σ_i Δθ_i‖ / ‖Σ_i Δθ_i‖ (0: the composite edit is the sum of its parts in factor space)."""
    comp = as_theta(composite).double()
    summed = sum(as_theta(p).double() for p in parts)
    den = float(torch.linalg.norm(summed))
    return float(torch.linalg.norm(comp - summed)) / den if den > 0 else float("nan")


