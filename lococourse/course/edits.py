"""Course helpers around LOCO edits (notebooks 06–07): what the figures and verdicts need beyond
:mod:`lococourse.eval` — per-factor R² of a λ sweep, RMS change inside and outside Ω, the ε-Jacobian
direction beside the PMP one (App. G.2), and Algorithm 1 on a coarser DDIM grid for the full-mode cells.

Pure compute; the figures are in :mod:`lococourse.course.viz_edit`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from lococourse.core.checks import check_strength
from lococourse.core.schedule import check_t
from lococourse.data.faces import FACTOR_NAMES
from lococourse.editing.direction import Direction, model_name
from lococourse.editing.loco import find_direction
from lococourse.editing.metrics import leakage, linearity_r2
from lococourse.eval.factors import factors_of_part
from lococourse.eval.studies import LinearityStudy, SweepStudy
from lococourse.models.ddim import ddim_grid, ddim_invert, ddim_sample

__all__ = ["changed_factors", "factor_r2", "rms_inside_outside", "ReducedEdit", "loco_edit_reduced", "sample_image"]


def changed_factors(changes: torch.Tensor, thresholds) -> dict[str, float]:
    """The factors whose estimated change exceeds its threshold τ, with their changes rounded to 2 decimals."""
    from lococourse.eval.decisions import changed

    flags = changed(torch.as_tensor(changes), thresholds).tolist()
    return {n: round(float(v), 2) for n, v, f in zip(FACTOR_NAMES, torch.as_tensor(changes).tolist(), flags) if f}


def factor_r2(study: LinearityStudy) -> dict[str, float]:
    """R² of a straight line through Δθ̂ against λ for *every* factor of the edited part (not only the main one)."""
    return {name: linearity_r2(study.strengths, study.changes[:, FACTOR_NAMES.index(name)].numpy())
            for name in factors_of_part(study.part)}


def _rms(x: torch.Tensor) -> float:
    return float(x.double().pow(2).mean().sqrt())


def rms_inside_outside(study: SweepStudy, mask: torch.Tensor) -> tuple[list[float], list[float]]:
    """RMS pixel change of each edit of a sweep inside and outside Ω; leakage is their ratio
    (:func:`lococourse.editing.metrics.leakage`), so a weaker edit inside Ω raises it without any more leaking out."""
    mask = torch.as_tensor(mask, dtype=torch.bool)
    inside, outside = [], []
    for rec, ed in zip(study.reconstructions, study.edited):
        d = ed - rec
        inside.append(_rms(d[:, mask]))
        outside.append(_rms(d[:, ~mask]))
    return inside, outside


@torch.no_grad()
def sample_image(model, seed: int = 0, num_steps: int = 100) -> torch.Tensor:
    """One image DDIM(x_T, 0) from seeded noise x_T on a ``num_steps`` grid (η = 0): a source image for full mode."""
    g = torch.Generator().manual_seed(int(seed))
    x_T = torch.randn((1, *model.shape), generator=g)
    p = next(model.unet.parameters())
    grid = ddim_grid(num_steps)
    return ddim_sample(model.eps_model(), x_T.to(p.device, p.dtype), float(grid.t[-1]), 0.0, grid=grid)[0]


@dataclass
class ReducedEdit:
    """Algorithm 1 on a ``num_steps`` DDIM grid: what :func:`lococourse.editing.loco.loco_edit` returns, plus the grid."""

    x0: torch.Tensor
    x_t: torch.Tensor
    t: float
    num_steps: int
    direction: Direction
    strengths: list
    edited: torch.Tensor  # (L, *S)
    reconstruction: torch.Tensor  # (*S) λ = 0
    leakage: list  # per λ, against the reconstruction


def loco_edit_reduced(model, x0: torch.Tensor, mask: torch.Tensor, t: float, strengths: Sequence[float], *,
                      num_steps: int = 100, r: int = 5, r_null: int = 5, max_iter: int = 50, tol: float = 1e-4,
                      seed: int = 0) -> ReducedEdit:
    """Algorithm 1 (steps 3–9) with DDIM on a ``num_steps`` grid instead of the paper's 100 steps.

    Step 3 DDIM-Inv(x₀, t) and step 9 DDIM(x_t + λv_p, 0) run on ``ddim_grid(num_steps)``; steps 4–8 are the one
    :func:`~lococourse.editing.loco.find_direction`.  With ``num_steps = 100`` this is exactly
    :func:`~lococourse.editing.loco.loco_edit` (tested); fewer steps make real-size stand-ins affordable on a CPU.
    """
    check_t(t)
    lams = [0.0, *[check_strength(s) for s in strengths]]
    grid = ddim_grid(num_steps)
    eps = model.eps_model()
    x_t = ddim_invert(eps, x0.unsqueeze(0), t, grid=grid)[0]
    t_grid = grid.snap(t)
    direction = find_direction(model.pmp(t_grid), x_t, mask, r=r, r_null=r_null, seed=seed, tol=tol, max_iter=max_iter,
                               model=model_name(model))
    direction.t = t_grid
    lam = torch.as_tensor(lams, dtype=x_t.dtype, device=x_t.device).reshape(-1, *[1] * x_t.dim())
    out = ddim_sample(eps, x_t.unsqueeze(0) + lam * direction.v.to(x_t), t_grid, 0.0, grid=grid)
    leaks = [leakage(out[0].cpu(), o.cpu(), mask) for o in out[1:]]
    return ReducedEdit(x0, x_t, t_grid, num_steps, direction, lams[1:], out[1:], out[0], leaks)
