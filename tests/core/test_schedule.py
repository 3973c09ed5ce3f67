"""The linear-β DDPM schedule ᾱ(t): against diffusers' DDPMScheduler, precision near t = 0, and bad t."""
import math

import pytest
import torch

from lococourse.core.schedule import SCHEDULE, DDPMSchedule, check_t


@pytest.fixture(scope="module")
def diffusers_alphas_cumprod():
    from diffusers import DDPMScheduler

    sched = DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear")
    return sched.alphas_cumprod.to(torch.float64)  # diffusers computes these in float32


def test_alpha_bar_matches_diffusers_at_every_timestep(diffusers_alphas_cumprod):
    k = torch.arange(1000)
    t = SCHEDULE.t_of_timestep(k)
    assert torch.allclose(t, (k.double() + 1) / 1000)
    ours = SCHEDULE.alpha_bar(t)
    # diffusers' float32 cumprod over 1000 factors: relative error ≲ 1e-5 (ᾱ(1) ≈ 4e-5 still agrees).
    assert torch.allclose(ours, diffusers_alphas_cumprod, rtol=2e-5, atol=0)
    assert torch.allclose(SCHEDULE.alphas_cumprod, ours, rtol=1e-14, atol=0)


def test_betas_match_diffusers():
    from diffusers import DDPMScheduler

    d = DDPMScheduler(beta_schedule="linear").betas.double()
    assert torch.allclose(SCHEDULE.betas, d, rtol=1e-6, atol=0)


def test_endpoints_and_monotonicity():
    assert float(SCHEDULE.alpha_bar(0.0)) == 1.0
    a1 = float(SCHEDULE.alpha_bar(1.0))
    assert a1 == pytest.approx(math.prod(1 - b for b in torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64).tolist()),
                               rel=1e-12)
    assert 3e-5 < a1 < 5e-5
    t = torch.linspace(0, 1, 2001, dtype=torch.float64)
    assert (SCHEDULE.alpha_bar(t).diff() < 0).all()


def test_interpolates_log_alpha_bar_linearly_between_steps():
    # Halfway between steps n and n+1, log ᾱ is the mean of the two step values.
    n = 123
    lo, hi = SCHEDULE.log_alpha_bar(n / 1000), SCHEDULE.log_alpha_bar((n + 1) / 1000)
    assert float(SCHEDULE.log_alpha_bar((n + 0.5) / 1000)) == pytest.approx(float((lo + hi) / 2), rel=1e-13)


@pytest.mark.parametrize("t", [1e-9, 1e-6, 1e-4, 1e-3])
def test_one_minus_alpha_bar_is_accurate_at_small_t(t):
    # For t < 1/T, log ᾱ(t) = t·T·log(1 − β₁) exactly (interpolation from 0), so 1 − ᾱ = −expm1(t·T·log1p(−β₁)).
    exact = -math.expm1(t * 1000 * math.log1p(-1e-4)) if t < 1e-3 else -math.expm1(math.log1p(-1e-4))
    got = float(SCHEDULE.one_minus_alpha_bar(t))
    assert got == pytest.approx(exact, rel=1e-13)  # 1 − ᾱ computed as 1 − exp(·) would be off by ~1e-16/(1 − ᾱ)


def test_snr_and_square_roots_consistent():
    t = torch.tensor([0.01, 0.3, 0.7, 1.0], dtype=torch.float64)
    ab, om = SCHEDULE.alpha_bar(t), SCHEDULE.one_minus_alpha_bar(t)
    assert torch.allclose(ab + om, torch.ones_like(t), rtol=1e-15)
    assert torch.allclose(SCHEDULE.snr(t), ab / om, rtol=1e-15)
    assert torch.allclose(SCHEDULE.sqrt_alpha_bar(t) ** 2, ab, rtol=1e-14)
    assert torch.allclose(SCHEDULE.sqrt_one_minus_alpha_bar(t) ** 2, om, rtol=1e-14)


def test_timestep_round_trip():
    k = torch.arange(1000)
    assert torch.equal(SCHEDULE.timestep_of_t(SCHEDULE.t_of_timestep(k)), k)
    assert int(SCHEDULE.timestep_of_t(1e-6)) == 0


def test_custom_schedule():
    s = DDPMSchedule(beta_start=1e-3, beta_end=1e-3, num_steps=10)
    assert float(s.alpha_bar(1.0)) == pytest.approx((1 - 1e-3) ** 10, rel=1e-13)


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.0000001, 2.0, float("nan"), float("inf")])
def test_t_outside_unit_interval_raises(bad):
    with pytest.raises(ValueError, match=r"t must lie in \(0, 1\]"):
        check_t(bad)
    with pytest.raises(ValueError, match="t must lie in"):
        SCHEDULE.timestep_of_t(bad)


@pytest.mark.parametrize("bad", [-1e-9, 1.5, float("nan")])
def test_alpha_bar_rejects_t_outside_closed_interval(bad):
    with pytest.raises(ValueError, match=r"t must lie in \[0, 1\]"):
        SCHEDULE.alpha_bar(bad)
    with pytest.raises(ValueError, match="t must lie in"):
        SCHEDULE.alpha_bar(torch.tensor([0.5, bad], dtype=torch.float64))


@pytest.mark.parametrize("bad", [-1, 1000])
def test_timestep_outside_range_raises(bad):
    with pytest.raises(ValueError, match="timestep must lie in 0..999"):
        SCHEDULE.t_of_timestep(bad)
