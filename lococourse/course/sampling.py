"""The DDIM lesson of notebook 06 (§2 of Chen et al. 2024, eqs. 1–2): one step by hand, checked against
lococourse and against diffusers; DDIM inversion and its reconstruction error against t.

Notation (paper ↔ course ↔ diffusers): the paper's α_t (§2–4) is the *cumulative* signal fraction, which the
course writes ᾱ_t (``SCHEDULE.alpha_bar(t)``) and diffusers stores as ``scheduler.alphas_cumprod[k]`` at the
integer timestep k, with t = (k + 1)/T (T = 1000).  diffusers' ``scheduler.alphas[k]`` = 1 − β_k is the
per-step factor, a different thing.  One DDIM step from level s to level u < s (eq. 1 with η = 0):

    x̂₀ = (x_s − √(1−ᾱ_s) ε_θ(x_s, s)) / √ᾱ_s                          (eq. 2: the PMP f_θ,s)
    x_u = √ᾱ_u x̂₀ + √(1−ᾱ_u) ε_θ(x_s, s)                               (eq. 1)

Pure compute (no plotting); the figures are in :mod:`lococourse.course.viz`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from lococourse.core.checks import check_positive_int
from lococourse.core.schedule import SCHEDULE, check_t
from lococourse.models.ddim import DDIMGrid, ddim_grid, ddim_invert, ddim_sample, ddim_step, psnr

__all__ = ["StepCheck", "ddim_step_check", "diffusers_ddim_step", "InversionSweep", "inversion_error_vs_t"]


@dataclass
class StepCheck:
    """One DDIM step s → u computed three ways: by hand (eqs. 1–2), by lococourse and by diffusers."""

    level: int  # grid level s (the step goes to level s − 1)
    timestep: int  # diffusers' integer timestep of level s
    t_from: float
    t_to: float
    alpha_bar_from: float
    alpha_bar_to: float
    x0_hat: torch.Tensor  # eq. 2 by hand
    by_hand: torch.Tensor  # eq. 1 by hand
    lococourse: torch.Tensor  # lococourse.models.ddim.ddim_step
    diffusers: torch.Tensor  # diffusers.DDIMScheduler.step(...).prev_sample
    err_lococourse: float  # max |by_hand − lococourse| / max |by_hand|
    err_diffusers: float  # max |by_hand − diffusers| / max |by_hand|


def _rel_max(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


def diffusers_ddim_step(eps: torch.Tensor, x: torch.Tensor, timestep: int, num_steps: int = 100) -> torch.Tensor:
    """diffusers' ``DDIMScheduler.step`` (η = 0, no clipping) on the paper's linear schedule and 100-step grid."""
    from diffusers import DDIMScheduler

    sched = DDIMScheduler(num_train_timesteps=SCHEDULE.num_steps, beta_start=SCHEDULE.beta_start,
                          beta_end=SCHEDULE.beta_end, beta_schedule="linear", clip_sample=False,
                          set_alpha_to_one=True, steps_offset=0, timestep_spacing="leading")
    sched.set_timesteps(num_steps)
    return sched.step(eps, int(timestep), x, eta=0.0).prev_sample


def ddim_step_check(eps_model, x: torch.Tensor, level: int, grid: DDIMGrid | None = None) -> StepCheck:
    """One DDIM step from grid level ``level`` to ``level − 1`` at x (a batch (B, *S)): eqs. 2 and 1 written out
    with ᾱ from the grid, next to :func:`~lococourse.models.ddim.ddim_step` and diffusers' scheduler."""
    grid = ddim_grid() if grid is None else grid
    if isinstance(level, bool) or not isinstance(level, int) or not 1 <= level <= grid.num_steps:
        raise ValueError(f"level must be an integer in 1..{grid.num_steps} (level 0 is the clean end); got {level!r}")
    k = grid.timestep(level)
    ab_s, ab_u = float(grid.alpha_bar[level]), float(grid.alpha_bar[level - 1])
    with torch.no_grad():
        eps = eps_model(x, k)
    x0_hat = (x - math.sqrt(1 - ab_s) * eps) / math.sqrt(ab_s)  # eq. 2
    by_hand = math.sqrt(ab_u) * x0_hat + math.sqrt(1 - ab_u) * eps  # eq. 1
    loco = ddim_step(eps, x, ab_s, ab_u)
    diff = diffusers_ddim_step(eps.float(), x.float(), k, grid.num_steps)
    return StepCheck(level, k, float(grid.t[level]), float(grid.t[level - 1]), ab_s, ab_u, x0_hat, by_hand, loco, diff,
                     _rel_max(loco, by_hand), _rel_max(diff, by_hand))


@dataclass
class InversionSweep:
    """DDIM(DDIM-Inv(x₀, t), 0) against x₀ for several t: how well inversion followed by sampling reconstructs."""

    ts: list  # grid times
    num_steps: list  # DDIM steps each way (the grid level of t)
    psnr: torch.Tensor  # (T, n) dB, data range 2 (images in [−1, 1])
    rel_error: torch.Tensor  # (T, n) ‖x̂ − x₀‖ / ‖x₀‖
    x0: torch.Tensor  # (n, *S)
    reconstructions: torch.Tensor  # (T, n, *S)
    x_t: torch.Tensor  # (T, n, *S) the inverted points

    def mean_psnr(self) -> list[float]:
        return [float(v) for v in self.psnr.mean(1)]


def inversion_error_vs_t(eps_model, x0: torch.Tensor, ts: Sequence[float], grid: DDIMGrid | None = None,
                         data_range: float = 2.0) -> InversionSweep:
    """Invert x₀ (n, *S) once up to the largest t (keeping the trajectory), then sample back to 0 from each t.

    Inversion is not exact: step j − 1 → j uses ε at x_{j−1}, not at the unknown x_j (diffusers'
    ``DDIMInverseScheduler`` does the same), so the error grows with the number of steps and with how fast ε
    changes along the path.
    """
    grid = ddim_grid() if grid is None else grid
    ts = [float(t) for t in ts]
    if not ts:
        raise ValueError("ts must hold at least one time")
    check_t(ts)
    if x0.dim() < 2:
        raise ValueError(f"x0 must be a batch (n, *S); got shape {tuple(x0.shape)}")
    check_positive_int(len(x0), "the number of images")
    levels = [grid.index(t) for t in ts]
    if min(levels) == 0:
        raise ValueError(f"every t must snap to a grid level above 0; {ts} snaps to levels {levels}")
    _, traj = ddim_invert(eps_model, x0, grid.t[max(levels)], grid=grid, return_trajectory=True)
    recons, psnrs, rels, xts = [], [], [], []
    for j in levels:
        x_t = traj[j]
        rec = ddim_sample(eps_model, x_t, float(grid.t[j]), 0.0, grid=grid)
        recons.append(rec)
        xts.append(x_t)
        psnrs.append(torch.tensor([psnr(r, x, data_range) for r, x in zip(rec, x0)], dtype=torch.float64))
        rels.append(((rec - x0).flatten(1).double().norm(dim=1) / x0.flatten(1).double().norm(dim=1)))
    return InversionSweep([float(grid.t[j]) for j in levels], levels, torch.stack(psnrs), torch.stack(rels), x0,
                          torch.stack(recons), torch.stack(xts))
