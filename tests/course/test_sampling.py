"""lococourse.course.sampling (the DDIM lesson of notebook 06) against diffusers' schedulers and numpy."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lococourse.course import lab, sampling
from lococourse.models.ddim import ddim_grid


@pytest.fixture(scope="module")
def molrg():
    return lab.smooth_molrg((1, 4, 4), [2, 3], seed=0)


def _alpha_bar_np() -> np.ndarray:
    """ᾱ_k in numpy: cumulative product of 1 − β, β linear from 1e-4 to 0.02 over 1000 steps."""
    return np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))


@pytest.mark.parametrize("level", [1, 37, 100])
def test_ddim_step_check_is_eq_1_with_numpy_alpha_bar(molrg, level):
    x = lab.noisy_samples(molrg, 0.5, n=2, seed=1).x_t
    c = sampling.ddim_step_check(molrg.eps_model(), x, level)
    ab = _alpha_bar_np()
    k = 10 * (level - 1)
    a_s, a_u = ab[k], (ab[k - 10] if k >= 10 else 1.0)
    assert c.timestep == k and math.isclose(c.alpha_bar_from, a_s, rel_tol=1e-12)
    assert math.isclose(c.alpha_bar_to, a_u, rel_tol=1e-12)
    eps = molrg.eps_model()(x, k).numpy()
    x0 = (x.numpy() - math.sqrt(1 - a_s) * eps) / math.sqrt(a_s)
    np.testing.assert_allclose(c.by_hand.numpy(), math.sqrt(a_u) * x0 + math.sqrt(1 - a_u) * eps, rtol=1e-10, atol=1e-12)
    # diffusers keeps ᾱ in float32: at level 1 (ᾱ = 0.9999) 1 − ᾱ loses four digits to cancellation
    assert c.err_lococourse < 1e-12 and c.err_diffusers < (1e-3 if level == 1 else 1e-5)


def test_ddim_step_check_rejects_bad_levels(molrg):
    x = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    for bad in (0, 101, 2.5, True):
        with pytest.raises(ValueError, match="level must be an integer in 1..100"):
            sampling.ddim_step_check(molrg.eps_model(), x, bad)


def test_inversion_error_vs_t_against_diffusers_loops(molrg):
    """DDIMInverseScheduler up to t, DDIMScheduler back (diffusers' own loops, float64) give the same reconstruction."""
    from diffusers import DDIMInverseScheduler, DDIMScheduler

    x0 = lab.noisy_samples(molrg, 0.5, n=3, seed=2).x0
    sw = sampling.inversion_error_vs_t(molrg.eps_model(), x0, [0.3, 0.7])
    cfg = dict(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear", clip_sample=False,
               set_alpha_to_one=True, steps_offset=0)
    eps = molrg.eps_model()
    for i, t_top in enumerate((300, 700)):
        inv, fwd = DDIMInverseScheduler(**cfg), DDIMScheduler(**cfg)
        inv.set_timesteps(100)
        fwd.set_timesteps(100)
        x = x0.clone()
        for k in inv.timesteps.tolist():
            if k > t_top:
                break
            x = inv.step(eps(x, k), k, x).prev_sample
        np.testing.assert_allclose(sw.x_t[i].numpy(), x.numpy(), rtol=1e-5, atol=1e-6)
        for k in fwd.timesteps.tolist():
            if k <= t_top:
                x = fwd.step(eps(x, k), k, x).prev_sample
        np.testing.assert_allclose(sw.reconstructions[i].numpy(), x.numpy(), rtol=1e-5, atol=1e-6)
        mse = ((sw.reconstructions[i] - x0) ** 2).flatten(1).mean(1).numpy()
        np.testing.assert_allclose(sw.psnr[i].numpy(), 10 * np.log10(4 / mse), rtol=1e-9)
    assert sw.ts == [0.301, 0.701] and sw.num_steps == [31, 71]


def test_inversion_error_vs_t_rejects_bad_input(molrg):
    x0 = torch.zeros(2, 1, 4, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="at least one time"):
        sampling.inversion_error_vs_t(molrg.eps_model(), x0, [])
    with pytest.raises(ValueError, match="t must lie"):
        sampling.inversion_error_vs_t(molrg.eps_model(), x0, [1.5])
    with pytest.raises(ValueError, match="snaps to levels"):
        sampling.inversion_error_vs_t(molrg.eps_model(), x0, [0.0001])
    with pytest.raises(ValueError, match="batch"):
        sampling.inversion_error_vs_t(molrg.eps_model(), torch.zeros(4), [0.5])


def test_coarser_grid_is_the_same_formula(molrg):
    x = lab.noisy_samples(molrg, 0.5, n=1, seed=1).x_t
    c = sampling.ddim_step_check(molrg.eps_model(), x, 3, ddim_grid(10))
    assert c.timestep == 200 and c.err_lococourse < 1e-12 and c.err_diffusers < 1e-5
