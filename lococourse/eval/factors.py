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
from typing import Mapping

import torch

from lococourse.core.checks import check_finite
from lococourse.data.faces import FACTOR_NAMES, FACTOR_PARTS, PARTS, render_faces

#: Factors that live on a circle (period 1): compared by the shortest signed arc.
CIRCULAR = ("bg_hue",)
_CIRC = torch.tensor([n in CIRCULAR for n in FACTOR_NAMES])
#: factor index → part index (PARTS order)
PART_OF = torch.tensor([PARTS.index(FACTOR_PARTS[n]) for n in FACTOR_NAMES])


def part_of_factor(name: str) -> str:
    if name not in FACTOR_PARTS:
        raise ValueError(f"unknown factor {name!r}; factors are {list(FACTOR_NAMES)}")
    return FACTOR_PARTS[name]


def factors_of_part(part: str) -> list[str]:
    check_part(part)
    return [n for n in FACTOR_NAMES if FACTOR_PARTS[n] == part]


def check_part(part: str) -> int:
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


def theta_dict(theta: torch.Tensor) -> dict:
    return {k: theta[:, i] for i, k in enumerate(FACTOR_NAMES)}


def _project(theta: torch.Tensor) -> torch.Tensor:
    """Back into [0, 1]⁹: circular factors modulo 1, the others clamped."""
    return torch.where(_CIRC, torch.remainder(theta, 1.0), theta.clamp(0.0, 1.0))


#: Rows rendered at once: the renderer's intermediates for more rows than this fall out of the CPU caches (a
#: 4352-row sweep of 32 px faces ran 3× slower in one piece than in chunks of 256).
CHUNK_ROWS = 256


def _mse(theta: torch.Tensor, images: torch.Tensor, size: int) -> torch.Tensor:
    """(B,) mean squared error of render(θ_b) against images_b (rows are independent: rendered in chunks)."""
    if len(theta) > CHUNK_ROWS:
        return torch.cat([_mse(theta[i:i + CHUNK_ROWS], images[i:i + CHUNK_ROWS], size)
                          for i in range(0, len(theta), CHUNK_ROWS)])
    return ((render_faces(theta_dict(theta), size, masks=False).images - images) ** 2).flatten(1).mean(1)


_POOL_CACHE: dict = {}


def _pool(n: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(θ (n, 9), images (n, 3·size²)): a seeded scrambled-Sobol pool of rendered faces (cached)."""
    key = (n, size, seed)
    if key not in _POOL_CACHE:
        theta = torch.quasirandom.SobolEngine(len(FACTOR_NAMES), scramble=True, seed=seed).draw(n).float()
        with torch.no_grad():
            imgs = render_faces(theta_dict(theta), size, masks=False).images.flatten(1)
        _POOL_CACHE[key] = (theta, imgs)
    return _POOL_CACHE[key]


def _adam(theta: torch.Tensor, images: torch.Tensor, size: int, steps: int, lr: float) -> torch.Tensor:
    """Projected Adam on ‖render(θ) − x‖², every row independently (the loss is a sum over rows, and Adam's
    update is elementwise, so chunks of rows are optimised one after another with the same result)."""
    if len(theta) > CHUNK_ROWS:
        return torch.cat([_adam(theta[i:i + CHUNK_ROWS], images[i:i + CHUNK_ROWS], size, steps, lr)
                          for i in range(0, len(theta), CHUNK_ROWS)])
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


def check_images(images: torch.Tensor) -> tuple[torch.Tensor, int]:
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
    x, size = check_images(images)
    n, k = x.shape[0], cfg.n_starts
    pool_theta, pool_img = _pool(cfg.n_pool, size, cfg.seed)
    with torch.no_grad():  # (a) the best k pool candidates per image
        d2 = torch.cdist(x.flatten(1), pool_img) ** 2  # (n, pool)
        starts = pool_theta[d2.topk(k, dim=1, largest=False).indices]  # (n, k, 9)
    if init is not None:
        init = _project(as_theta(init).reshape(n, 1, -1).to(starts.dtype))
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
def as_theta(x) -> torch.Tensor:
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
    a, b = as_theta(before), as_theta(after)
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
    o, _ = check_images(original)
    e, _ = check_images(edited)
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


