"""DDIM sampling and DDIM inversion on the paper's grid (§2, eq. 1; Appendix G).

One DDIM step between noise levels ᾱ_s → ᾱ_u (eq. 1, deterministic when η = 0):

    x̂₀ = (x_s − √(1−ᾱ_s) ε_θ(x_s, s)) / √ᾱ_s                                             (eq. 2)
    x_u = √ᾱ_u x̂₀ + √(1 − ᾱ_u − σ²) ε_θ(x_s, s) + σ z,   σ = η √((1−ᾱ_u)/(1−ᾱ_s)) √(1 − ᾱ_s/ᾱ_u)

Sampling (``DDIM(x_t, 0)``) runs it down the grid; inversion (``DDIM-Inv(x₀, t)``) runs the same
formula up the grid, with ε evaluated at the current point but labelled with the target timestep,
exactly as diffusers' ``DDIMInverseScheduler`` does.

The grid (diffusers ``DDIMScheduler``/``DDIMInverseScheduler`` with ``timestep_spacing="leading"``):
N steps over T training steps, ratio r = T // N, timesteps k_i = i·r + steps_offset for i = 0 … N−1
(990, 980, …, 0 for the paper's N = 100, T = 1000, offset 0).  We number its noise levels
j = 0 … N: level j ≥ 1 is timestep k_{j−1} at time t_j = (k_{j−1} + 1)/T; level 0 is the clean end,
t_0 = 0, with ᾱ = 1 (``set_alpha_to_one=True``, diffusers' default) or ᾱ_0 of the table.  A time
t_edit ∈ [0, 1] maps to the nearest level, so inversion to t_edit ends exactly where sampling from
t_edit starts.  Nothing is clipped.

ε-models are callables ``eps_model(x, timestep: int) → ε̂`` (:class:`~lococourse.models.adapters.UNetEps`,
:class:`~lococourse.models.adapters.GuidedEps`, :class:`MoLRGEps`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from lococourse.core.checks import check_finite, check_positive_int
from lococourse.core.interfaces import EpsModel
from lococourse.core.schedule import SCHEDULE, check_t
from lococourse.models.adapters import UNetEps, alphas_cumprod_of

__all__ = [
    "DDIMGrid", "ddim_grid", "ddim_step", "ddim_invert", "ddim_sample", "ddim_map", "unet_eps",
    "psnr", "EpsModel",
]



# ---------------------------------------------------------------------------------------- the grid
@dataclass(frozen=True)
class DDIMGrid:
    """The DDIM grid's N + 1 noise levels j = 0 … N (0 = clean, N = noisiest).

    ``timesteps`` (N,) are diffusers' integer timesteps in ascending order (level j ≥ 1 is
    ``timesteps[j − 1]``); ``alpha_bar`` (N+1,) and ``t`` (N+1,) are float64 per level.
    """

    timesteps: torch.Tensor  # (N,) long, ascending
    alpha_bar: torch.Tensor  # (N+1,) float64: [final ᾱ, ᾱ_{k_0}, …, ᾱ_{k_{N−1}}]
    t: torch.Tensor  # (N+1,) float64: [0, (k_0+1)/T, …, (k_{N−1}+1)/T]
    num_train_timesteps: int

    @property
    def num_steps(self) -> int:
        return len(self.timesteps)

    def index(self, t_edit) -> int:
        """The level nearest to t_edit ∈ [0, 1] (ties go to the less noisy level)."""
        if torch.as_tensor(t_edit, dtype=torch.float64).numel() != 1:
            raise ValueError(f"t must be one number in [0, 1]; got {torch.as_tensor(t_edit, dtype=torch.float64).tolist()}")
        check_t(t_edit, allow_zero=True)
        return int(torch.argmin((self.t - float(t_edit)).abs()))

    def snap(self, t_edit) -> float:
        """The grid time nearest to t_edit: where DDIM-Inv(x₀, t_edit) ends and DDIM(x_t, ·) starts."""
        return float(self.t[self.index(t_edit)])

    def subgrid(self, t_start, steps: int) -> "DDIMGrid":
        """A coarser grid of ``steps`` DDIM steps from this grid's level of ``t_start`` down to level 0, on this
        grid's own levels (evenly spaced in level index), so that it starts exactly where an edit at t_start does."""
        j_start = self.index(t_start)
        check_positive_int(steps, "steps", upper=max(j_start, 1), upper_name=f"the {j_start} levels below t = {t_start}")
        if j_start == 0:
            raise ValueError(f"t_start = {t_start} is the clean end of the grid; a sampler needs t_start > 0")
        levels = torch.linspace(0, j_start, steps + 1).round().long().unique()  # ascending, starts at 0
        return DDIMGrid(self.timesteps[levels[1:] - 1], self.alpha_bar[levels], self.t[levels], self.num_train_timesteps)

    def timestep(self, j: int) -> int:
        """diffusers' integer timestep of level j ≥ 1 (the label the ε-model gets at that level)."""
        if not 1 <= j <= self.num_steps:
            raise ValueError(f"level must lie in 1..{self.num_steps} (level 0 is the clean end); got {j}")
        return int(self.timesteps[j - 1])


def ddim_grid(num_steps: int = 100, schedule=SCHEDULE, *, steps_offset: int | None = None,
              set_alpha_to_one: bool | None = None) -> DDIMGrid:
    """The "leading" DDIM grid of diffusers' ``DDIMScheduler.set_timesteps(num_steps)``.

    ``schedule`` is a :class:`DDPMSchedule` (default: the paper's linear β), a diffusers scheduler or a
    1-D tensor of ᾱ_k.  ``steps_offset`` and ``set_alpha_to_one`` default to a diffusers scheduler's
    config, else to diffusers' defaults 0 and True.  The paper: 100 steps over T = 1000 (Appendix G).
    """
    config = getattr(schedule, "config", None)
    spacing = getattr(config, "timestep_spacing", "leading")
    if spacing != "leading":
        raise ValueError(f"only diffusers' 'leading' timestep spacing (the paper's grid) is supported; "
                         f"the scheduler has timestep_spacing = {spacing!r}")
    if steps_offset is None:
        steps_offset = getattr(config, "steps_offset", 0) or 0
    if set_alpha_to_one is None:
        set_alpha_to_one = getattr(config, "set_alpha_to_one", True)
    table = alphas_cumprod_of(schedule)
    T = len(table)
    check_positive_int(num_steps, "num_steps", upper=T, upper_name="the number of training timesteps T")
    if isinstance(steps_offset, bool) or not isinstance(steps_offset, int) or steps_offset < 0:
        raise ValueError(f"steps_offset must be a non-negative integer; got {steps_offset!r}")
    ratio = T // num_steps
    timesteps = torch.arange(num_steps, dtype=torch.long) * ratio + steps_offset
    if int(timesteps[-1]) > T - 1:
        raise ValueError(f"steps_offset = {steps_offset} puts the last timestep at {int(timesteps[-1])} > T − 1 = {T - 1}")
    final = torch.ones((), dtype=torch.float64) if set_alpha_to_one else table[0]
    alpha_bar = torch.cat([final.reshape(1), table[timesteps]])
    t = torch.cat([torch.zeros(1, dtype=torch.float64), (timesteps.double() + 1) / T])
    return DDIMGrid(timesteps, alpha_bar, t, T)


# ---------------------------------------------------------------------------------------- one step
def ddim_step(eps: torch.Tensor, x: torch.Tensor, alpha_from: float, alpha_to: float, *, eta: float = 0.0,
              noise: torch.Tensor | None = None, clip_sample: float | None = None) -> torch.Tensor:
    """One DDIM step ᾱ_from → ᾱ_to with the ε-prediction ``eps`` at x (eq. 1; η > 0 adds σ·noise).

    ``clip_sample`` clips x̂₀ to [−c, c] (diffusers' ``clip_sample``; ε is not recomputed).
    """
    sa_from, sb_from = math.sqrt(alpha_from), math.sqrt(1.0 - alpha_from)
    x0 = (x - sb_from * eps) / sa_from  # eq. 2
    if clip_sample is not None:
        x0 = x0.clamp(-clip_sample, clip_sample)
    if eta == 0:
        return math.sqrt(alpha_to) * x0 + math.sqrt(1.0 - alpha_to) * eps  # eq. 1
    if noise is None:
        raise ValueError(f"a stochastic DDIM step (eta = {eta}) needs noise; got noise=None")
    variance = (1.0 - alpha_to) / (1.0 - alpha_from) * (1.0 - alpha_from / alpha_to)
    sigma = eta * math.sqrt(variance)
    return math.sqrt(alpha_to) * x0 + math.sqrt(1.0 - alpha_to - sigma ** 2) * eps + sigma * noise


def _check_state(x: torch.Tensor, name: str) -> None:
    if not torch.is_tensor(x) or not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point torch.Tensor; got {type(x).__name__}"
                        + (f" of dtype {x.dtype}" if torch.is_tensor(x) else ""))
    check_finite(x, name)


# ---------------------------------------------------------------------------------------- inversion
@torch.no_grad()
def ddim_invert(eps_model: EpsModel, x0: torch.Tensor, t_edit, *, grid: DDIMGrid | None = None,
                return_trajectory: bool = False):
    """x_t = DDIM-Inv(x₀, t_edit): deterministic DDIM steps up the grid from level 0 to the level of t_edit.

    Step j − 1 → j uses ε = eps_model(x_{j−1}, timestep of level j) (diffusers' ``DDIMInverseScheduler``).
    Returns x_t (the shape of x₀), or (x_t, [x at levels 0 … j]) with ``return_trajectory``.
    """
    grid = ddim_grid() if grid is None else grid
    _check_state(x0, "x0")
    j_end = grid.index(t_edit)
    x, traj = x0, [x0]
    for j in range(1, j_end + 1):
        eps = eps_model(x, grid.timestep(j))
        x = ddim_step(eps, x, float(grid.alpha_bar[j - 1]), float(grid.alpha_bar[j]))
        traj.append(x)
    return (x, traj) if return_trajectory else x


# ---------------------------------------------------------------------------------------- sampling
def _ddim_down(eps_model: EpsModel, x_t: torch.Tensor, t_start, t_end=0.0, *, grid: DDIMGrid | None = None,
                eta: float = 0.0, boost_below: float | None = None, generator: torch.Generator | None = None,
                clip_sample: float | None = None, return_trajectory: bool = False):
    """The DDIM loop shared by :func:`ddim_sample` (no autograd) and :func:`ddim_map` (differentiable).

    x = DDIM(x_t, t_end): DDIM steps down the grid from the level of t_start to that of t_end (eq. 1).

    Step j → j − 1 uses ε = eps_model(x_j, timestep of level j) (diffusers' ``DDIMScheduler.step``).
    Deterministic (η = 0) unless ``eta`` > 0 or ``boost_below`` is set: the "quality boosting" of
    Appendix G (Kwon et al. 2023), η = 1 for the steps that start at t_j < ``boost_below`` (the paper:
    0.2).  Stochastic steps draw their noise from ``generator`` (required) in order, as diffusers does,
    so a seeded generator reproduces the result.  ``clip_sample`` clips x̂₀ to [−c, c] (default: none).
    Returns x (the shape of x_t), or (x, [x at levels j_start … j_end]) with ``return_trajectory``.
    """
    grid = ddim_grid() if grid is None else grid
    _check_state(x_t, "x_t")
    j_start, j_end = grid.index(t_start), grid.index(t_end)
    if j_end > j_start:
        raise ValueError(f"t_end = {t_end} must not lie above t_start = {t_start} (grid levels {j_end} > {j_start})")
    if not (isinstance(eta, (int, float)) and 0 <= eta <= 1):
        raise ValueError(f"eta must lie in [0, 1]; got {eta!r}")
    if boost_below is not None:
        check_t(boost_below, allow_zero=True)
    stochastic = eta > 0 or (boost_below is not None and bool((grid.t[j_end + 1: j_start + 1] < boost_below).any()))
    if stochastic and generator is None:
        raise ValueError("stochastic DDIM steps (eta > 0 or quality boosting) draw noise: pass an explicit "
                         "generator=torch.Generator().manual_seed(...) so the result reproduces")
    x, traj = x_t, [x_t]
    for j in range(j_start, j_end, -1):
        eps = eps_model(x, grid.timestep(j))
        eta_j = 1.0 if boost_below is not None and float(grid.t[j]) < boost_below else float(eta)
        noise = None
        if eta_j > 0:
            noise = torch.randn(eps.shape, generator=generator, dtype=eps.dtype, device=eps.device)
        x = ddim_step(eps, x, float(grid.alpha_bar[j]), float(grid.alpha_bar[j - 1]), eta=eta_j, noise=noise,
                      clip_sample=clip_sample)
        traj.append(x)
    return (x, traj) if return_trajectory else x


@torch.no_grad()
def ddim_sample(eps_model: EpsModel, x_t: torch.Tensor, t_start, t_end=0.0, *, grid: DDIMGrid | None = None,
                eta: float = 0.0, boost_below: float | None = None, generator: torch.Generator | None = None,
                clip_sample: float | None = None, return_trajectory: bool = False):
    """x = DDIM(x_t, t_end) (eq. 1), without autograd: see :func:`_ddim_down` for the arguments."""
    return _ddim_down(eps_model, x_t, t_start, t_end, grid=grid, eta=eta, boost_below=boost_below, generator=generator,
                      clip_sample=clip_sample, return_trajectory=return_trajectory)


def ddim_map(eps_model: EpsModel, t_start, *, grid: DDIMGrid | None = None):
    """The deterministic sampler x_t ↦ DDIM(x_t, 0) from the level of ``t_start`` as a differentiable map
    (B, *S) → (B, *S), for Jacobians of the whole sampler.  ``grid`` must end at t = 0 (all grids do) and hold
    the level of ``t_start``; a coarse one is :meth:`DDIMGrid.subgrid`.  The map carries ``t`` = the start time."""
    grid = ddim_grid() if grid is None else grid
    if float(grid.t[0]) != 0.0:
        raise ValueError(f"a sampler grid must end at t = 0; this one ends at t = {float(grid.t[0])}")
    t0 = grid.snap(t_start)
    if t0 == 0.0:
        raise ValueError(f"t_start = {t_start} snaps to the clean end t = 0 of the grid; the sampler would do nothing")

    def sampler(x_t: torch.Tensor) -> torch.Tensor:
        return _ddim_down(eps_model, x_t, t0, 0.0, grid=grid)

    sampler.t = t0
    sampler.grid = grid
    return sampler


# ---------------------------------------------------------------------------------------- ε-models
def unet_eps(unet, prediction_type: str | None = None, schedule=SCHEDULE, **unet_kwargs) -> UNetEps:
    """A diffusers UNet as an ε-model (any parameterisation; see :class:`~lococourse.models.adapters.UNetEps`)."""
    return UNetEps(unet, prediction_type, schedule, **unet_kwargs)


def psnr(x: torch.Tensor, ref: torch.Tensor, data_range: float | None = None) -> float:
    """Peak signal-to-noise ratio 10 log₁₀(R² / MSE) in dB, with R = ``data_range`` or ref's max − min."""
    if x.shape != ref.shape:
        raise ValueError(f"x and ref must have the same shape; got {tuple(x.shape)} and {tuple(ref.shape)}")
    x, ref = x.double(), ref.double()
    r = float(ref.max() - ref.min()) if data_range is None else float(data_range)
    if not r > 0:
        raise ValueError(f"the data range must be positive; got {r}")
    mse = float(((x - ref) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(r * r / mse)
