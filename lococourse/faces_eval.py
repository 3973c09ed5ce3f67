"""Edit quality on procedural faces, measured: which factors an edit changed, by analysis by synthesis.

The faces of :mod:`lococourse.synthetic.faces` are a known, differentiable function of 9 factors,
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

No plotting here (see :mod:`lococourse.viz_edit`).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import torch

from ._checks import check_finite
from .jacobian import JacobianOperator, check_mask, power_method
from .synthetic.faces import FACTOR_NAMES, FACTOR_PARTS, PARTS, render_faces

__all__ = [
    "FACTOR_NAMES", "FACTOR_PARTS", "PARTS", "CIRCULAR", "part_of_factor", "factors_of_part",
    "EstimatorConfig", "FactorFit", "estimate_factors", "factor_delta", "factor_error", "factor_changes",
    "Thresholds", "inject_factor_changes", "calibrate_thresholds", "DEFAULT_THRESHOLDS", "thresholds_for",
    "changed", "changed_parts", "local_edit_success", "transfer_success", "transfer_main_success", "main_factor",
    "factor_linearity", "factor_composability", "JacobianViews", "FaceSet", "model_size", "sample_edits", "prepare_faces", "METHODS",
    "FaceDirections", "face_directions", "edit_metrics", "FaceEdit", "find_face_direction", "apply_face_edit",
    "edit_face", "TransferStudy", "transfer_study", "CompositionStudy", "composition_study", "LinearityStudy",
    "linearity_study", "SweepStudy", "t_study", "r_null_study",
]

#: Factors that live on a circle (period 1): compared by the shortest signed arc.
CIRCULAR = ("bg_hue",)
_CIRC = torch.tensor([n in CIRCULAR for n in FACTOR_NAMES])
#: factor index → part index (PARTS order)
_PART_OF = torch.tensor([PARTS.index(FACTOR_PARTS[n]) for n in FACTOR_NAMES])


def part_of_factor(name: str) -> str:
    if name not in FACTOR_PARTS:
        raise ValueError(f"unknown factor {name!r}; factors are {list(FACTOR_NAMES)}")
    return FACTOR_PARTS[name]


def factors_of_part(part: str) -> list[str]:
    _check_part(part)
    return [n for n in FACTOR_NAMES if FACTOR_PARTS[n] == part]


def _check_part(part: str) -> int:
    if part not in PARTS:
        raise ValueError(f"part must be one of {list(PARTS)}; got {part!r}")
    return PARTS.index(part)


# ---------------------------------------------------------------------------------------- the estimator
@dataclass
class EstimatorConfig:
    """Analysis-by-synthesis settings (defaults: mean abs error < 0.01 per factor on clean faces)."""

    n_pool: int = 1024  # rendered candidates (scrambled Sobol points in [0, 1]⁹), seeded
    n_starts: int = 2  # best pool candidates refined per image (plus ``init`` if given)
    steps: int = 60  # Adam steps of each refinement
    lr: float = 0.02
    grid: int = 33  # values per factor in the coordinate sweep
    sweeps: int = 1  # coordinate sweeps (each followed by an Adam polish of ``steps // 2``)
    seed: int = 0


@dataclass
class FactorFit:
    """Estimated factors of n images."""

    theta: torch.Tensor  # (n, 9) in [0, 1], columns in FACTOR_NAMES order
    mse: torch.Tensor  # (n,) mean squared pixel error of the rendering of θ against the image
    size: int

    def as_dict(self) -> dict:
        return {k: self.theta[:, i] for i, k in enumerate(FACTOR_NAMES)}

    def render(self) -> torch.Tensor:
        return render_faces(self.as_dict(), self.size).images


def _theta_dict(theta: torch.Tensor) -> dict:
    return {k: theta[:, i] for i, k in enumerate(FACTOR_NAMES)}


def _project(theta: torch.Tensor) -> torch.Tensor:
    """Back into [0, 1]⁹: circular factors modulo 1, the others clamped."""
    return torch.where(_CIRC, torch.remainder(theta, 1.0), theta.clamp(0.0, 1.0))


def _mse(theta: torch.Tensor, images: torch.Tensor, size: int) -> torch.Tensor:
    """(B,) mean squared error of render(θ_b) against images_b."""
    return ((render_faces(_theta_dict(theta), size).images - images) ** 2).flatten(1).mean(1)


_POOL_CACHE: dict = {}


def _pool(n: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(θ (n, 9), images (n, 3·size²)): a seeded scrambled-Sobol pool of rendered faces (cached)."""
    key = (n, size, seed)
    if key not in _POOL_CACHE:
        theta = torch.quasirandom.SobolEngine(len(FACTOR_NAMES), scramble=True, seed=seed).draw(n).float()
        with torch.no_grad():
            imgs = render_faces(_theta_dict(theta), size).images.flatten(1)
        _POOL_CACHE[key] = (theta, imgs)
    return _POOL_CACHE[key]


def _adam(theta: torch.Tensor, images: torch.Tensor, size: int, steps: int, lr: float) -> torch.Tensor:
    """Projected Adam on ‖render(θ) − x‖², every row independently (the loss is a sum over rows)."""
    theta = theta.clone().requires_grad_(True)
    opt = torch.optim.Adam([theta], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss = _mse(theta, images, size).sum()
        loss.backward()
        opt.step()
        with torch.no_grad():
            theta.copy_(_project(theta))
    return theta.detach()


@torch.no_grad()
def _coordinate_sweep(theta: torch.Tensor, images: torch.Tensor, size: int, grid: int) -> torch.Tensor:
    """For each factor in turn: try ``grid`` values (and keep the current one), keep the best per image."""
    n = theta.shape[0]
    values = torch.linspace(0, 1, grid)
    for i in range(len(FACTOR_NAMES)):
        cand = theta.repeat_interleave(grid + 1, 0)  # (n·(g+1), 9)
        cand[:, i] = torch.cat([values, theta[:, i:i + 1].new_zeros(1)]).repeat(n)
        cand[grid::grid + 1, i] = theta[:, i]  # the current value is the last candidate
        err = _mse(cand, images.repeat_interleave(grid + 1, 0), size).reshape(n, grid + 1)
        theta = cand.reshape(n, grid + 1, -1)[torch.arange(n), err.argmin(1)]
    return theta


def _check_images(images: torch.Tensor) -> tuple[torch.Tensor, int]:
    if not torch.is_tensor(images):
        raise TypeError(f"images must be a torch.Tensor; got {type(images).__name__}")
    x = images.unsqueeze(0) if images.dim() == 3 else images
    if x.dim() != 4 or x.shape[1] != 3 or x.shape[2] != x.shape[3] or x.shape[2] < 8:
        raise ValueError(f"images must be faces of shape (n, 3, S, S) or (3, S, S) with S ≥ 8; got {tuple(images.shape)}")
    check_finite(x, "images")
    return x.detach().float(), int(x.shape[-1])


def estimate_factors(images: torch.Tensor, config: EstimatorConfig | None = None,
                     init: torch.Tensor | None = None) -> FactorFit:
    """The factors θ ∈ [0, 1]⁹ whose rendering best matches each image (least squares over pixels).

    images: (n, 3, S, S) or (3, S, S) in [-1, 1].  ``init`` (n, 9): an extra start per image (e.g. the
    estimate of the unedited image when estimating an edit).  Deterministic for a given ``config.seed``.
    """
    cfg = config or EstimatorConfig()
    x, size = _check_images(images)
    n, k = x.shape[0], cfg.n_starts
    pool_theta, pool_img = _pool(cfg.n_pool, size, cfg.seed)
    with torch.no_grad():  # (a) the best k pool candidates per image
        d2 = torch.cdist(x.flatten(1), pool_img) ** 2  # (n, pool)
        starts = pool_theta[d2.topk(k, dim=1, largest=False).indices]  # (n, k, 9)
    if init is not None:
        init = _project(_as_theta(init).reshape(n, 1, -1).to(starts.dtype))
        starts, k = torch.cat([init, starts], 1), k + 1
    starts = starts.reshape(n * k, -1)
    xs = x.repeat_interleave(k, 0)
    theta = _adam(starts, xs, size, cfg.steps, cfg.lr)  # (b)
    with torch.no_grad():
        err = _mse(theta, xs, size).reshape(n, k)
        theta = theta.reshape(n, k, -1)[torch.arange(n), err.argmin(1)]
    for _ in range(cfg.sweeps):  # (c)
        theta = _coordinate_sweep(theta, x, size, cfg.grid)
        theta = _adam(theta, x, size, max(cfg.steps // 2, 1), cfg.lr / 2)
    with torch.no_grad():
        mse = _mse(theta, x, size)
    return FactorFit(theta, mse, size)


# ---------------------------------------------------------------------------------------- changes
def _as_theta(x) -> torch.Tensor:
    if isinstance(x, FactorFit):
        return x.theta
    if isinstance(x, Mapping):
        return torch.stack([torch.as_tensor(x[k], dtype=torch.float32).reshape(-1) for k in FACTOR_NAMES], 1)
    x = torch.as_tensor(x, dtype=torch.float32)
    if x.shape[-1] != len(FACTOR_NAMES):
        raise ValueError(f"factors must have {len(FACTOR_NAMES)} columns ({', '.join(FACTOR_NAMES)}); got shape {tuple(x.shape)}")
    return x


def factor_delta(before, after) -> torch.Tensor:
    """Signed factor change after − before, (n, 9); circular factors by the shortest arc in [−½, ½)."""
    a, b = _as_theta(before), _as_theta(after)
    d = b - a
    return torch.where(_CIRC, torch.remainder(d + 0.5, 1.0) - 0.5, d)


def factor_error(estimate, truth) -> torch.Tensor:
    """|estimate − truth| per image and factor, (n, 9) (circular for ``bg_hue``)."""
    return factor_delta(truth, estimate).abs()


def factor_changes(original: torch.Tensor, edited: torch.Tensor, config: EstimatorConfig | None = None,
                   reference: FactorFit | None = None) -> torch.Tensor:
    """Estimated factor change of each edit, θ̂(edited) − θ̂(original): (n, 9), or (9,) for two single images.

    ``edited`` may be (L, 3, S, S) against one ``original`` (a λ sweep).  The original's estimate
    (or ``reference``, if already computed) is an extra start of each edited image's estimate, so an
    edit that leaves a factor alone does not send it to another equally good fit.
    """
    o, _ = _check_images(original)
    e, _ = _check_images(edited)
    if o.shape[0] == 1 and e.shape[0] > 1:
        o = o.expand(e.shape[0], -1, -1, -1)
    if o.shape != e.shape:
        raise ValueError(f"original and edited must have the same shape; got {tuple(o.shape)} and {tuple(e.shape)}")
    ref = reference.theta if reference is not None else None
    if ref is None:
        uniq = original.dim() == 3 or original.shape[0] == 1
        ref = estimate_factors(o[:1] if uniq else o, config).theta
    ref = ref.expand(len(e), -1) if ref.shape[0] == 1 else ref
    d = factor_delta(ref, estimate_factors(e, config, init=ref).theta)
    return d[0] if original.dim() == 3 and edited.dim() == 3 else d


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
    base = render_faces(_theta_dict(th), fit.size).images
    new = render_faces(_theta_dict(moved.reshape(-1, k)), fit.size).images
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
    x, _ = _check_images(images)
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
    return _as_theta(changes).abs() > _tau(thresholds)


def changed_parts(changes: torch.Tensor, thresholds) -> torch.Tensor:
    """Which parts changed (any of their factors did), (…, 5) bool in PARTS order."""
    c = changed(changes, thresholds)
    return torch.stack([c[..., _PART_OF == p].any(-1) for p in range(len(PARTS))], -1)


def local_edit_success(changes: torch.Tensor, part: str, thresholds) -> torch.Tensor:
    """A local edit of ``part`` succeeded: a factor of that part changed beyond τ and no other part's did."""
    p = _check_part(part)
    cp = changed_parts(changes, thresholds)
    others = torch.cat([cp[..., :p], cp[..., p + 1:]], -1)
    return cp[..., p] & ~others.any(-1)


def transfer_success(source: torch.Tensor, target: torch.Tensor, thresholds) -> torch.Tensor:
    """A transferred edit succeeded: it changed exactly the factors the source edit changed (a non-empty
    set), each in the same direction.  source, target: (…, 9) factor changes (broadcast)."""
    s, t = _as_theta(source), _as_theta(target)
    cs, ct = changed(s, thresholds), changed(t, thresholds)
    same_set = (cs == ct).all(-1) & cs.any(-1)
    same_sign = ((torch.sign(s) == torch.sign(t)) | ~cs).all(-1)
    return same_set & same_sign


def transfer_main_success(source: torch.Tensor, target: torch.Tensor, thresholds) -> torch.Tensor:
    """A looser reading of transfer: the source edit's main factor (largest |Δθ_i|/τ_i, and beyond τ)
    also changed beyond τ in the target, in the same direction — whatever else changed in either."""
    s, t = _as_theta(source), _as_theta(target)
    tau = _tau(thresholds)
    s, t = torch.broadcast_tensors(s, t)
    i = (s.abs() / tau).argmax(-1, keepdim=True)
    si, ti, taui = s.gather(-1, i)[..., 0], t.gather(-1, i)[..., 0], tau[i[..., 0]]
    return (si.abs() > taui) & (ti.abs() > taui) & (torch.sign(si) == torch.sign(ti))


def main_factor(changes: torch.Tensor, thresholds=None) -> int:
    """Index of the factor with the largest |Δθ_i| / τ_i (τ = 1 without thresholds) over all rows."""
    c = _as_theta(changes).reshape(-1, len(FACTOR_NAMES)).abs()
    if thresholds is not None:
        c = c / _tau(thresholds)
    return int(c.max(0).values.argmax())


def factor_linearity(strengths: Sequence[float], changes: torch.Tensor, factor: int | str | None = None) -> tuple[float, str]:
    """(R² of a straight line through (λ, Δθ_main(λ)), the main factor's name).

    ``changes`` (L, 9) for the L strengths; the main factor is the one with the largest change over
    the sweep unless ``factor`` (index or name) is given.
    """
    from .metrics import linearity_r2

    c = _as_theta(changes)
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
    comp = _as_theta(composite).double()
    summed = sum(_as_theta(p).double() for p in parts)
    den = float(torch.linalg.norm(summed))
    return float(torch.linalg.norm(comp - summed)) / den if den > 0 else float("nan")


# ---------------------------------------------------------------------------------------- shared Jacobians
class JacobianViews:
    """One linearisation of a PMP f at x_t, seen through output masks: J, P_Ω J, P_{Ω^c} J and ∂ε/∂x_t.

    Algorithm 1 needs ∇P_Ω f and ∇P_{Ω^c} f for every mask, and the ablations the unmasked ∇f and
    ∂ε/∂x_t.  All are J = ∂f/∂x_t followed by a fixed linear map of the output, so one
    :class:`~lococourse.jacobian.JacobianOperator` (one forward pass, one traced tangent map)
    serves them all:

        P_Ω J v = m ⊙ (J v),   (P_Ω J)ᵀ u = Jᵀ (m ⊙ u),   ∂ε/∂x_t = (I − √ᾱ J)/√(1−ᾱ)

    (ε̂ = (x_t − √ᾱ x̂₀)/√(1−ᾱ), eq. 2, holds for every parameterisation).
    """

    def __init__(self, f, x_t: torch.Tensor, alpha_bar: float | None = None):
        t0 = time.perf_counter()
        self.base = JacobianOperator(f, x_t)
        self.seconds = time.perf_counter() - t0  # the forward pass and tracing, shared by every view
        self.alpha_bar = alpha_bar

    def view(self, mask: torch.Tensor | None = None, eps: bool = False) -> JacobianOperator:
        """An operator (for :func:`~lococourse.jacobian.power_method`) of P_mask J, or of P_mask ∂ε/∂x_t (eps=True)."""
        if eps and self.alpha_bar is None:
            raise ValueError("∂ε/∂x_t needs alpha_bar (ᾱ at the PMP's time)")
        return _View(self.base, mask, self.alpha_bar if eps else None)


class _View(JacobianOperator):
    """P_mask J (or P_mask ∂ε/∂x_t) on a shared base operator: no forward pass of its own."""

    def __init__(self, base: JacobianOperator, mask, alpha_bar: float | None):  # noqa: super().__init__ not called
        self.base, self.f, self.x, self.y = base, base.f, base.x, base.y
        self.shape_in, self.shape_out, self.d_in, self.d_out = base.shape_in, base.shape_out, base.d_in, base.d_out
        self.m = None if mask is None else check_mask(torch.as_tensor(mask), base.shape_out).to(base.y.dtype)
        self.ab = alpha_bar

    def mv(self, V: torch.Tensor) -> torch.Tensor:
        U = self.base.mv(V)
        if self.ab is not None:
            U = (V.to(U.dtype) - math.sqrt(self.ab) * U) / math.sqrt(1 - self.ab)
        return U if self.m is None else U * self.m

    def rmv(self, U: torch.Tensor) -> torch.Tensor:
        U = U if self.m is None else U * self.m
        out = self.base.rmv(U)
        if self.ab is not None:
            out = (U.to(out.dtype) - math.sqrt(self.ab) * out) / math.sqrt(1 - self.ab)
        return out


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

    def __len__(self) -> int:
        return len(self.seeds)


def model_size(model) -> int:
    """The side S of a faces model's (3, S, S) images (clear error for other models)."""
    shape = tuple(model.shape)
    if len(shape) != 3 or shape[0] != 3 or shape[1] != shape[2] or shape[1] < 8:
        raise ValueError(f"a faces model makes (3, S, S) images; this model's shape is {shape}")
    return shape[1]


def sample_edits(model, x: torch.Tensor, t: float, batch: int = 128) -> torch.Tensor:
    """DDIM(x, 0) from the grid time t for a batch of (edited) x_t, in chunks of ``batch``: Algorithm 1 step 9."""
    from .ddim import ddim_sample

    eps = model.eps_model()
    with torch.no_grad():
        return torch.cat([ddim_sample(eps, x[i:i + batch], t, 0.0) for i in range(0, len(x), batch)])


def prepare_faces(model, seeds: Sequence[int], t: float = 0.6, *, estimate: bool = True,
                  config: EstimatorConfig | None = None) -> FaceSet:
    """Faces for ``seeds``, their ground truth, x_t = DDIM-Inv(x₀, t) (Algorithm 1 step 3), and the
    reconstructions DDIM(x_t, 0) with their estimated factors (the reference of every edit)."""
    from .ddim import ddim_grid
    from .loco import invert
    from .synthetic.faces import sample_faces

    size = model_size(model)
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must name at least one face")
    fbs = [sample_faces(1, s, size=size) for s in seeds]
    x0 = torch.cat([fb.images for fb in fbs])
    masks = {p: torch.cat([fb.masks[p] for fb in fbs]) for p in PARTS}
    factors = torch.cat([_as_theta(fb.factors) for fb in fbs])
    x_t, t_grid = invert(model, x0, t)
    grid = ddim_grid()
    alpha_bar = float(grid.alpha_bar[grid.index(t_grid)])
    recon = sample_edits(model, x_t, t_grid)
    fit = estimate_factors(recon, config) if estimate else None
    return FaceSet(seeds, x0, masks, factors, x_t, t_grid, alpha_bar, recon, fit)


#: The ways of finding an editing direction compared in the benchmark (Table 1 and Appendix G.2).
METHODS: dict[str, str] = {
    "loco": "LOCO Edit: masked PMP Jacobian + nullspace projection (Algorithm 1, r' = 5)",
    "no_projection": "masked PMP Jacobian without nullspace projection (r' = 0)",
    "eps_unmasked": "∂ε/∂x_t, unmasked, no projection (Appendix G.2)",
    "pmp_unmasked": "∂x̂₀/∂x_t, unmasked, no projection",
}


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


def _unit(v: torch.Tensor) -> torch.Tensor:
    n = torch.linalg.norm(v)
    if not n > 0:
        raise ValueError("the projected direction is zero: v lies in span(V̄); use a smaller r' or another index")
    return v / n


def face_directions(model, faces: FaceSet, i: int, *, methods: Sequence[str] = tuple(METHODS), parts: Sequence[str] = PARTS,
                    index: int = 0, r: int = 5, r_null: int = 5, seed: int = 0, tol: float = 1e-3,
                    max_iter: int = 30) -> FaceDirections:
    """Editing directions for image ``i`` of ``faces``, every method × part, from one linearisation.

    * ``loco``: v = Ṽ[:, k] of ∇P_Ω f, projected off the top-r' V̄ of ∇P_{Ω^c} f (Algorithm 1, steps 4–8);
    * ``no_projection``: the same v, unprojected (shares the masked power method with ``loco``);
    * ``pmp_unmasked`` / ``eps_unmasked``: the top-r right singular vectors of ∇f (resp. ∂ε/∂x_t), found
      once per image.  They know no region, so for each part we give them their most favourable
      reading: the one of the r whose left singular vector u_k puts the largest fraction of its
      energy inside the part's mask.
    """
    from .loco import Direction

    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {list(METHODS)}")
    for p in parts:
        _check_part(p)
    name = getattr(getattr(model, "spec", None), "name", "") or getattr(model, "name", "")
    views = JacobianViews(model.pmp(faces.t), faces.x_t[i], faces.alpha_bar)
    out, power_s, skipped = {}, {}, []
    S = faces.x_t.shape[1:]

    def make(method, part, v, k, sigma, rn, jac, masked_, mask):
        out[(method, part)] = Direction(v.reshape(S).detach(), faces.t, mask.clone(), k, r, rn, float(sigma), name, seed,
                                        jac, 0.0, {"method": method, "part": part, "masked": masked_,
                                                   "image_seed": faces.seeds[i]})

    unmasked = {}
    for method, eps in (("pmp_unmasked", False), ("eps_unmasked", True)):
        if method in methods:
            t0 = time.perf_counter()
            unmasked[method] = power_method(views.view(eps=eps), k=r, seed=seed, tol=tol, max_iter=max_iter)
            unmasked[method + "_s"] = time.perf_counter() - t0
    for part in parts:
        mask = faces.masks[part][i]
        if not mask.any() or mask.all():
            skipped.append(part)
            continue
        if "loco" in methods or "no_projection" in methods:
            t0 = time.perf_counter()
            top = power_method(views.view(mask), k=r, seed=seed, tol=tol, max_iter=max_iter)
            t_top = time.perf_counter() - t0
            v = top.V[:, index]
            if "no_projection" in methods:
                make("no_projection", part, _unit(v), index, top.S[index], 0, "pmp", True, mask)
                power_s[("no_projection", part)] = t_top
            if "loco" in methods:
                t0 = time.perf_counter()
                Vb = power_method(views.view(~mask), k=r_null, seed=seed + 1, tol=tol, max_iter=max_iter).V if r_null else None
                vp = v if Vb is None else v - Vb @ (Vb.T @ v)
                make("loco", part, _unit(vp), index, top.S[index], r_null, "pmp", True, mask)
                power_s[("loco", part)] = t_top + time.perf_counter() - t0
        for method in ("pmp_unmasked", "eps_unmasked"):
            if method in methods:
                top = unmasked[method]
                U = top.U.T.reshape(r, *S)  # (r, C, H, W)
                frac = (U ** 2 * mask).flatten(1).sum(1) / (U ** 2).flatten(1).sum(1)
                k = int(frac.argmax())
                make(method, part, top.V[:, k], k, top.S[k], 0, "eps" if method.startswith("eps") else "pmp", False, mask)
                power_s[(method, part)] = unmasked[method + "_s"]
    for key, d in out.items():
        d.seconds = views.seconds + power_s[key]
        d.extra["linearize_s"] = round(views.seconds, 4)
    return FaceDirections(out, views.seconds, power_s, skipped)


# ---------------------------------------------------------------------------------------- one edit, measured
def edit_metrics(reference: torch.Tensor, edited: torch.Tensor, mask: torch.Tensor) -> dict:
    """Pixel metrics of one edit against its λ = 0 reference: leakage, PSNR and SSIM outside Ω."""
    from .metrics import leakage, psnr_outside, ssim_outside

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


def _check_strength(lam) -> float:
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not math.isfinite(lam):
        raise ValueError(f"strength λ must be a finite number; got {lam!r}")
    return float(lam)


def _fit_row(faces: FaceSet, i) -> FactorFit | None:
    """The reconstruction fits of rows ``i`` (an int or a list) of ``faces``."""
    if faces.recon_fit is None:
        return None
    idx = [i] if isinstance(i, int) else list(i)
    return FactorFit(faces.recon_fit.theta[idx], faces.recon_fit.mse[idx], faces.recon_fit.size)


def _thresholds(thresholds, model) -> Thresholds | torch.Tensor:
    return thresholds if thresholds is not None else thresholds_for(model_size(model))


def find_face_direction(model, seed: int, part: str, *, t: float = 0.6, index: int = 0, r: int = 5, r_null: int = 5,
                        method: str = "loco", max_iter: int = 30, config: EstimatorConfig | None = None):
    """(FaceSet of the one face ``sample_faces(1, seed)``, the ``method``'s direction for ``part``): steps 3–8."""
    _check_part(part)
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
    lam = _check_strength(strength)
    part, method = direction.extra.get("part"), direction.extra.get("method", "loco")
    th = _thresholds(thresholds, model)
    edited = sample_edits(model, (faces.x_t[i] + lam * direction.v).unsqueeze(0), faces.t)[0]
    ch = factor_changes(faces.recon[i], edited, config, reference=_fit_row(faces, i))
    mask = faces.masks[part][i]
    names = [n for n, c in zip(FACTOR_NAMES, changed(ch, th).tolist()) if c]
    return FaceEdit(faces.seeds[i], part, method, faces.t, lam, faces.x0[i], faces.recon[i], edited, mask, direction,
                    ch, names, bool(local_edit_success(ch, part, th)), edit_metrics(faces.recon[i], edited, mask))


def edit_face(model, seed: int, part: str, *, t: float = 0.6, index: int = 0, strength: float = 8.0, r: int = 5,
              r_null: int = 5, method: str = "loco", thresholds=None, max_iter: int = 30,
              config: EstimatorConfig | None = None) -> FaceEdit:
    """LOCO Edit (or an ablation ``method``) of the ``part`` of the face ``sample_faces(1, seed)``, measured."""
    _check_strength(strength)
    faces, d = find_face_direction(model, seed, part, t=t, index=index, r=r, r_null=r_null, method=method,
                                   max_iter=max_iter, config=config)
    return apply_face_edit(model, faces, d, strength, thresholds=thresholds, config=config)


# ---------------------------------------------------------------------------------------- properties (notebook 07)
def _edits(model, faces: FaceSet, rows: Sequence[int], xs: Sequence[torch.Tensor], config=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample edited x_t's of faces ``rows`` and estimate their factor changes against their reconstructions."""
    out = sample_edits(model, torch.stack(list(xs)), faces.t)
    ch = factor_changes(faces.recon[list(rows)], out, config, reference=_fit_row(faces, list(rows)))
    return out, ch


@dataclass
class TransferStudy:
    """One direction found on a source face, added unchanged to other faces' x_t (homogeneity, §3.2)."""

    part: str
    strength: float
    seeds: list  # [source, *targets]
    reconstructions: torch.Tensor  # (n, 3, S, S)
    edited: torch.Tensor  # (2, n, 3, S, S): at −λ and +λ
    changes: torch.Tensor  # (2, n, 9)
    success: torch.Tensor  # (2, n − 1) transfer success per sign and target (same factors, same signs)
    main_success: torch.Tensor  # (2, n − 1) the source's main factor changes the same way (transfer_main_success)
    source_local: torch.Tensor  # (2,) local-edit success of the source edits

    @property
    def rate(self) -> float:
        return float(self.success.float().mean())

    @property
    def main_rate(self) -> float:
        return float(self.main_success.float().mean())


def transfer_study(model, source_seed: int, target_seeds: Sequence[int], part: str, *, strength: float = 8.0,
                   t: float = 0.6, index: int = 0, r: int = 5, r_null: int = 5, method: str = "loco",
                   thresholds=None, max_iter: int = 30, config: EstimatorConfig | None = None) -> TransferStudy:
    """Find the direction on ``source_seed``'s face; apply it at ±λ to it and to every target face."""
    lam = _check_strength(strength)
    th = _thresholds(thresholds, model)
    seeds = [int(source_seed), *[int(s) for s in target_seeds]]
    faces = prepare_faces(model, seeds, t, config=config)
    d = face_directions(model, faces, 0, methods=[method], parts=[part], index=index, r=r, r_null=r_null,
                        max_iter=max_iter).directions[(method, part)]
    n = len(seeds)
    rows = [j for _ in (-1, 1) for j in range(n)]
    xs = [faces.x_t[j] + s * lam * d.v for s in (-1, 1) for j in range(n)]
    out, ch = _edits(model, faces, rows, xs, config)
    out, ch = out.reshape(2, n, *out.shape[1:]), ch.reshape(2, n, -1)
    success = transfer_success(ch[:, :1], ch[:, 1:], th)
    main = transfer_main_success(ch[:, :1], ch[:, 1:], th)
    return TransferStudy(part, lam, seeds, faces.recon, out, ch, success, main, local_edit_success(ch[:, 0], part, th))


@dataclass
class CompositionStudy:
    """Directions for several parts of one face, applied alone and together: x_t + Σ λ_i v_i."""

    parts: list
    strengths: list
    reconstruction: torch.Tensor  # (3, S, S)
    singles: torch.Tensor  # (k, 3, S, S)
    composite: torch.Tensor  # (3, S, S)
    single_changes: torch.Tensor  # (k, 9)
    composite_changes: torch.Tensor  # (9,)
    pixel_composability: float  # ‖Δ_comp − Σ Δ_i‖ / ‖Σ Δ_i‖ in pixels
    factor_composability: float  # the same in factor space


def composition_study(model, seed: int, parts: Sequence[str] = ("hair", "face"), strengths: Sequence[float] = (8.0, 8.0), *,
                      t: float = 0.6, index: int = 0, r: int = 5, r_null: int = 5, max_iter: int = 30,
                      config: EstimatorConfig | None = None) -> CompositionStudy:
    """LOCO directions for ``parts`` of one face (one linearisation), each alone at its λ and all together."""
    from .metrics import composability

    if len(parts) != len(strengths) or len(parts) < 2:
        raise ValueError(f"give ≥ 2 parts and one strength each; got parts {list(parts)} and strengths {list(strengths)}")
    lams = [_check_strength(v) for v in strengths]
    faces = prepare_faces(model, [seed], t, config=config)
    fd = face_directions(model, faces, 0, methods=["loco"], parts=list(parts), index=index, r=r, r_null=r_null,
                         max_iter=max_iter)
    missing = [p for p in parts if ("loco", p) not in fd.directions]
    if missing:
        raise ValueError(f"the masks of {missing} are empty or the whole image for face {seed}")
    vs = [fd.directions[("loco", p)].v for p in parts]
    xs = [faces.x_t[0] + lam * v for lam, v in zip(lams, vs)] + [faces.x_t[0] + sum(lam * v for lam, v in zip(lams, vs))]
    out, ch = _edits(model, faces, [0] * len(xs), xs, config)
    k = len(parts)
    return CompositionStudy(list(parts), lams, faces.recon[0], out[:k], out[k], ch[:k], ch[k],
                            composability(faces.recon[0], out[k], list(out[:k])), factor_composability(ch[k], list(ch[:k])))


@dataclass
class LinearityStudy:
    """One direction swept over λ: how linearly the image and the main factor follow λ (Appendix C.1)."""

    part: str
    strengths: list
    reconstruction: torch.Tensor  # (3, S, S)
    edited: torch.Tensor  # (L, 3, S, S)
    changes: torch.Tensor  # (L, 9)
    main_factor: str
    factor_r2: float  # R² of Δθ_main against λ
    pixel_r2: float  # R² of the projection of each image change on the largest-|λ| change, against λ


def linearity_study(model, seed: int, part: str, strengths: Sequence[float] = (-8, -4, -2, 2, 4, 8), *, t: float = 0.6,
                    index: int = 0, r: int = 5, r_null: int = 5, max_iter: int = 30,
                    config: EstimatorConfig | None = None) -> LinearityStudy:
    """x₀'(λ) = DDIM(x_t + λ v_p, 0) over ``strengths``; R² of the pixel change and of the change of the
    part's main factor (the one of the part's factors that moves most over the sweep)."""
    from .metrics import linearity_r2

    lams = [_check_strength(v) for v in strengths]
    faces, d = find_face_direction(model, seed, part, t=t, index=index, r=r, r_null=r_null, max_iter=max_iter, config=config)
    out, ch = _edits(model, faces, [0] * len(lams), [faces.x_t[0] + lam * d.v for lam in lams], config)
    own = [FACTOR_NAMES.index(n) for n in factors_of_part(part)]
    main = own[int(ch[:, own].abs().max(0).values.argmax())]  # the part's factor that moved most
    r2, name = factor_linearity(lams, ch, main)
    delta = (out - faces.recon[0]).flatten(1).double()
    ref = delta[max(range(len(lams)), key=lambda j: abs(lams[j]))]
    proj = (delta @ ref / ref.norm()).numpy()
    return LinearityStudy(part, lams, faces.recon[0], out, ch, name, r2, linearity_r2(lams, proj))


@dataclass
class SweepStudy:
    """One edit (face, part, λ) repeated over the values of one parameter (t or r')."""

    parameter: str
    values: list
    part: str
    strength: float
    reconstructions: torch.Tensor  # (m, 3, S, S) the λ = 0 reference per value (t changes it)
    edited: torch.Tensor  # (m, 3, S, S)
    changes: torch.Tensor  # (m, 9)
    local_success: list
    leakage: list
    ssim_outside: list
    masked_change: list  # the largest |Δθ| among the part's factors


def _sweep(parameter, values, part, lam, recons, out, ch, mask, th) -> SweepStudy:
    from .metrics import leakage, ssim_outside

    own = [FACTOR_NAMES.index(n) for n in factors_of_part(part)]
    return SweepStudy(parameter, list(values), part, lam, recons, out, ch,
                      [bool(local_edit_success(c, part, th)) for c in ch],
                      [leakage(a, b, mask) for a, b in zip(recons, out)],
                      [ssim_outside(a, b, mask) for a, b in zip(recons, out)],
                      [float(c[own].abs().max()) for c in ch])


def t_study(model, seed: int, part: str, ts: Sequence[float] = (0.4, 0.6, 0.8), *, strength: float = 8.0, index: int = 0,
            r: int = 5, r_null: int = 5, thresholds=None, max_iter: int = 30, config: EstimatorConfig | None = None) -> SweepStudy:
    """The same edit at several edit times t (Appendix C.1, "noise levels"): invert, find, edit at each t."""
    lam = _check_strength(strength)
    th = _thresholds(thresholds, model)
    edits = [edit_face(model, seed, part, t=t, index=index, strength=lam, r=r, r_null=r_null, thresholds=th,
                       max_iter=max_iter, config=config) for t in ts]
    return _sweep("t", [e.t for e in edits], part, lam, torch.stack([e.reconstruction for e in edits]),
                  torch.stack([e.edited for e in edits]), torch.stack([e.changes for e in edits]), edits[0].mask, th)


def r_null_study(model, seed: int, part: str, r_nulls: Sequence[int] = (0, 1, 5, 10, 20), *, strength: float = 8.0,
                 t: float = 0.6, index: int = 0, r: int = 5, thresholds=None, max_iter: int = 30,
                 config: EstimatorConfig | None = None) -> SweepStudy:
    """The same edit with r' = 0, 1, …: one masked SVD, one top-max(r') complement SVD, projected on prefixes."""
    lam = _check_strength(strength)
    th = _thresholds(thresholds, model)
    if any(int(v) != v or v < 0 for v in r_nulls):
        raise ValueError(f"r' values must be non-negative integers; got {list(r_nulls)}")
    faces = prepare_faces(model, [seed], t, config=config)
    mask = faces.masks[part][0]
    if not mask.any() or mask.all():
        raise ValueError(f"the {part} mask of face {seed} is empty or the whole image")
    views = JacobianViews(model.pmp(faces.t), faces.x_t[0], faces.alpha_bar)
    v = power_method(views.view(mask), k=r, seed=0, tol=1e-3, max_iter=max_iter).V[:, index]
    kmax = max(int(x) for x in r_nulls)
    Vb = power_method(views.view(~mask), k=kmax, seed=1, tol=1e-3, max_iter=max_iter).V if kmax else None
    xs = []
    for rn in r_nulls:
        vp = v if not rn else v - Vb[:, :rn] @ (Vb[:, :rn].T @ v)
        xs.append(faces.x_t[0] + lam * _unit(vp).reshape(faces.x_t.shape[1:]))
    out, ch = _edits(model, faces, [0] * len(xs), xs, config)
    recons = faces.recon[[0] * len(xs)]
    return _sweep("r'", [int(x) for x in r_nulls], part, lam, recons, out, ch, mask, th)
