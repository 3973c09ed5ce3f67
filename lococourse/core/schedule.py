"""The DDPM noise schedule of the paper, as a function of continuous time t in [0, 1].

β_n is linear from 1e-4 to 0.02 over T = 1000 steps (Ho et al. 2020; the paper's Appendix G uses
the same "linear schedule"). With n = t·T,

    log ᾱ(t) = Σ_{i ≤ n} log(1 − β_i)          (summed with log1p, interpolated linearly between steps)
    1 − ᾱ(t) = −expm1(log ᾱ(t))                (no cancellation for small t)

Time and diffusers' integer timesteps are tied by t = (k + 1) / T: `alphas_cumprod[k]` of a
diffusers `DDPMScheduler(beta_schedule="linear")` equals ᾱ((k + 1)/T).  ᾱ(0) = 1 and
ᾱ(1) = Π(1 − β_i) ≈ 4e-5 (the paper's α₁ = 0 is an idealisation).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch

__all__ = ["DDPMSchedule", "SCHEDULE", "check_t"]


def check_t(t, *, allow_zero: bool = False) -> None:
    """Raise a ValueError unless every t lies in (0, 1] (or [0, 1] with ``allow_zero``) and is finite (a TypeError
    if t is not numbers at all, e.g. the string ``'0.5'``)."""
    interval = "[0, 1]" if allow_zero else "(0, 1]"
    if isinstance(t, (str, bytes, bool)):
        raise TypeError(f"t must be a number in {interval}; got {t!r} ({type(t).__name__})")
    try:
        tt = torch.as_tensor(t, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as e:
        raise TypeError(f"t must be a number (or a tensor of numbers) in {interval}; got {t!r}") from e
    lo_ok = (tt >= 0) if allow_zero else (tt > 0)
    if not torch.isfinite(tt).all() or not (lo_ok & (tt <= 1)).all():
        bad = tt.flatten()[~(torch.isfinite(tt.flatten()) & lo_ok.flatten() & (tt.flatten() <= 1))]
        raise ValueError(f"t must lie in {interval}; got t = {bad.tolist()[:5]}")


@dataclass(frozen=True)
class DDPMSchedule:
    """Linear-β DDPM schedule ᾱ(t) on t ∈ [0, 1], computed in float64."""

    beta_start: float = 1e-4
    beta_end: float = 0.02
    num_steps: int = 1000

    @cached_property
    def betas(self) -> torch.Tensor:
        """β_1 … β_T (float64, shape (T,)); the same numbers as diffusers' linear schedule."""
        return torch.linspace(self.beta_start, self.beta_end, self.num_steps, dtype=torch.float64)

    @cached_property
    def _log_alpha_bar_steps(self) -> torch.Tensor:
        """log ᾱ at n = 0 … T (shape (T+1,)), with log ᾱ_0 = 0."""
        cum = torch.cumsum(torch.log1p(-self.betas), 0)
        return torch.cat([torch.zeros(1, dtype=torch.float64), cum])

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        """ᾱ at diffusers timesteps k = 0 … T−1 (that is, t = (k + 1)/T)."""
        return self._log_alpha_bar_steps[1:].exp()

    def log_alpha_bar(self, t) -> torch.Tensor:
        """log ᾱ(t) for t ∈ [0, 1] (float64 tensor of t's shape)."""
        check_t(t, allow_zero=True)
        t = torch.as_tensor(t, dtype=torch.float64)
        s = t * self.num_steps  # continuous step index in [0, T]
        lo = s.floor().clamp(max=self.num_steps - 1).long()
        frac = s - lo
        table = self._log_alpha_bar_steps
        return table[lo] + frac * (table[lo + 1] - table[lo])

    def alpha_bar(self, t) -> torch.Tensor:
        """ᾱ(t)."""
        return self.log_alpha_bar(t).exp()

    def one_minus_alpha_bar(self, t) -> torch.Tensor:
        """1 − ᾱ(t), by expm1 so that it keeps full precision as t → 0."""
        return -torch.expm1(self.log_alpha_bar(t))

    def snr(self, t) -> torch.Tensor:
        """ᾱ/(1 − ᾱ), the factor in Lemma 2 and eq. 8."""
        return self.alpha_bar(t) / self.one_minus_alpha_bar(t)

    def t_of_timestep(self, k) -> torch.Tensor:
        """Continuous t of a diffusers integer timestep k ∈ {0, …, T−1}: t = (k + 1)/T."""
        k = torch.as_tensor(k)
        if ((k < 0) | (k >= self.num_steps)).any():
            raise ValueError(f"timestep must lie in 0..{self.num_steps - 1}; got {k.tolist()}")
        return (k.to(torch.float64) + 1) / self.num_steps

    def timestep_of_t(self, t) -> torch.Tensor:
        """Nearest diffusers integer timestep of t ∈ (0, 1]: k = round(t·T) − 1, at least 0."""
        check_t(t)
        t = torch.as_tensor(t, dtype=torch.float64)
        return (torch.round(t * self.num_steps) - 1).clamp(min=0).long()

    def sqrt_alpha_bar(self, t) -> torch.Tensor:
        return self.alpha_bar(t).sqrt()

    def sqrt_one_minus_alpha_bar(self, t) -> torch.Tensor:
        return self.one_minus_alpha_bar(t).sqrt()


#: The paper's schedule, used everywhere in lococourse unless a model brings its own.
SCHEDULE = DDPMSchedule()
