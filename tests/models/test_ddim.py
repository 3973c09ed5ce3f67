"""DDIM sampling and inversion (eq. 1) on the paper's grid.

Oracles: diffusers' DDIMScheduler / DDIMInverseScheduler (grid, every step, whole chains, the η = 1
steps of quality boosting with the same generator); the exact MoLRG ε-model for reconstruction.
"""
import pytest
import torch
from diffusers import DDIMInverseScheduler, DDIMScheduler, UNet2DModel

from lococourse.models.adapters import UNetEps
from lococourse.models.ddim import ddim_grid, ddim_invert, ddim_sample, ddim_step, psnr, unet_eps
from lococourse.theory.molrg import MoLRG, MoLRGEps, molrg_eps


@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(0)
    net = UNet2DModel(sample_size=8, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(8, 16),
                      down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
                      norm_num_groups=4, attention_head_dim=4)
    return net.requires_grad_(False).eval()


def schedulers(**kw):
    """diffusers' DDIM pair on the paper's schedule (linear β 1e-4 … 0.02 over T = 1000), no clipping."""
    args = dict(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02, clip_sample=False)
    args.update(kw)
    return DDIMScheduler(**args), DDIMInverseScheduler(**args)


def randn(*shape, seed=1):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def assert_rel_close(a, b, rel=1e-5):
    """|a − b| ≤ rel · max|b| entrywise (DDIM from t ≈ 1 with an untrained net reaches |x| ~ 10²)."""
    scale = max(float(b.abs().max()), 1.0)
    assert float((a - b).abs().max()) <= rel * scale, f"max |Δ| = {float((a - b).abs().max()):.3g}, scale {scale:.3g}"


# ---------------------------------------------------------------------------------------- the grid
def test_grid_is_diffusers_leading_grid():
    fwd, inv = schedulers()
    fwd.set_timesteps(100)
    inv.set_timesteps(100)
    g = ddim_grid(100)  # the paper's schedule, diffusers' defaults: steps_offset 0, set_alpha_to_one True
    assert g.timesteps.tolist() == list(range(0, 1000, 10))
    assert torch.equal(g.timesteps.flip(0), fwd.timesteps) and torch.equal(g.timesteps, inv.timesteps)
    assert g.alpha_bar[0] == 1.0 and g.t[0] == 0.0 and g.num_steps == 100
    torch.testing.assert_close(g.alpha_bar[1:], fwd.alphas_cumprod[g.timesteps].double(), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(g.t[1:], (g.timesteps.double() + 1) / 1000)


def test_grid_reads_offset_and_final_alpha_from_a_scheduler():
    fwd, _ = schedulers(steps_offset=1, set_alpha_to_one=False)
    fwd.set_timesteps(10)
    g = ddim_grid(10, fwd)
    assert torch.equal(g.timesteps.flip(0), fwd.timesteps)  # 901, 801, …, 1
    assert float(g.alpha_bar[0]) == pytest.approx(float(fwd.final_alpha_cumprod))
    with pytest.raises(ValueError, match="leading"):
        ddim_grid(10, DDIMScheduler(timestep_spacing="trailing"))
    with pytest.raises(ValueError, match="num_steps"):
        ddim_grid(0)
    with pytest.raises(ValueError, match="exceeds"):
        ddim_grid(1001)


def test_t_edit_maps_to_the_nearest_grid_level():
    g = ddim_grid()
    assert g.index(0.0) == 0 and g.index(1.0) == 100
    assert g.timestep(g.index(0.6)) == 600 and g.snap(0.6) == pytest.approx(0.601)
    assert g.timestep(g.index(0.5)) == 500
    for bad in (-0.01, 1.01, float("nan")):
        with pytest.raises(ValueError, match=r"t must lie in \[0, 1\]"):
            g.index(bad)


@pytest.mark.parametrize("bad", [-0.5, 1.5])
def test_invert_and_sample_refuse_t_outside_unit_interval(bad):
    e = molrg_eps(MoLRG.random((1, 4, 4), [2], seed=0))
    x = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ddim_invert(e, x, bad)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ddim_sample(e, x, bad)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ddim_sample(e, x, 0.5, t_end=bad)
    with pytest.raises(ValueError, match="must not lie above"):
        ddim_sample(e, x, 0.3, t_end=0.6)


# ---------------------------------------------------------------------------------------- vs diffusers
def test_sampling_matches_ddim_scheduler_step_by_step_and_whole_chain(unet):
    fwd, _ = schedulers()
    fwd.set_timesteps(100)
    g, eps = ddim_grid(100, fwd), UNetEps(unet, schedule=fwd)
    x = randn(2, 3, 8, 8)
    ref = [x]
    for j, k in zip(range(100, 0, -1), fwd.timesteps):
        e = unet(ref[-1], k).sample
        ref.append(fwd.step(e, k, ref[-1]).prev_sample)
        mine = ddim_step(e, ref[-2], float(g.alpha_bar[j]), float(g.alpha_bar[j - 1]))  # same input, same ε
        assert_rel_close(mine, ref[-1])
    out, traj = ddim_sample(eps, x, 1.0, grid=g, return_trajectory=True)
    assert len(traj) == 101
    for a, b in zip(traj, ref):
        assert_rel_close(a, b)
    assert_rel_close(out, ref[-1])


def test_inversion_matches_ddim_inverse_scheduler(unet):
    _, inv = schedulers()
    inv.set_timesteps(100)
    g, eps = ddim_grid(100, inv), UNetEps(unet, schedule=inv)
    x0 = randn(2, 3, 8, 8, seed=2)
    j_end = g.index(0.6)
    ref = [x0]
    for j, k in zip(range(1, j_end + 1), inv.timesteps):
        e = unet(ref[-1], k).sample
        ref.append(inv.step(e, k, ref[-1]).prev_sample)
        assert_rel_close(ddim_step(e, ref[-2], float(g.alpha_bar[j - 1]), float(g.alpha_bar[j])), ref[-1])
    assert int(inv.timesteps[j_end - 1]) == 600  # inversion to t = 0.6 ends at timestep 600 …
    xt, traj = ddim_invert(eps, x0, 0.6, grid=g, return_trajectory=True)
    for a, b in zip(traj, ref):
        assert_rel_close(a, b)
    # … where DDIM sampling from t = 0.6 starts: its first ε-call has label 600
    calls = []
    ddim_sample(lambda x, k: calls.append(k) or eps(x, k), xt, 0.6, t_end=0.58, grid=g)
    assert calls == [600, 590]


def test_offset_grid_and_v_prediction_match_diffusers(unet):
    fwd, inv = schedulers(steps_offset=1, set_alpha_to_one=False, prediction_type="v_prediction")
    fwd.set_timesteps(10)
    inv.set_timesteps(10)
    g, eps = ddim_grid(10, fwd), UNetEps(unet, schedule=fwd)
    assert eps.prediction_type == "v_prediction"
    x = randn(1, 3, 8, 8, seed=3)
    ref = x
    for k in fwd.timesteps:
        ref = fwd.step(unet(ref, k).sample, k, ref).prev_sample
    assert_rel_close(ddim_sample(eps, x, 1.0, grid=g), ref)
    # inversion: with ε-prediction (diffusers' inverse step converts v at the other end of the step)
    eps_e = UNetEps(unet)
    _, inv_e = schedulers(steps_offset=1, set_alpha_to_one=False)
    inv_e.set_timesteps(10)
    ref = x
    for k in inv_e.timesteps:
        ref = inv_e.step(unet(ref, k).sample, k, ref).prev_sample
    assert_rel_close(ddim_invert(eps_e, x, 1.0, grid=g), ref)


def test_quality_boosting_matches_eta_one_steps_with_the_same_generator(unet):
    fwd, _ = schedulers()
    fwd.set_timesteps(100)
    g, eps = ddim_grid(100, fwd), UNetEps(unet, schedule=fwd)
    x = randn(2, 3, 8, 8, seed=4)
    gen = torch.Generator().manual_seed(7)
    ref = x
    for k in fwd.timesteps[fwd.timesteps <= 300]:
        eta = 1.0 if (int(k) + 1) / 1000 < 0.2 else 0.0
        ref = fwd.step(unet(ref, k).sample, k, ref, eta=eta, generator=gen).prev_sample
    out = ddim_sample(eps, x, 0.3, grid=g, boost_below=0.2, generator=torch.Generator().manual_seed(7))
    assert_rel_close(out, ref)
    again = ddim_sample(eps, x, 0.3, grid=g, boost_below=0.2, generator=torch.Generator().manual_seed(7))
    other = ddim_sample(eps, x, 0.3, grid=g, boost_below=0.2, generator=torch.Generator().manual_seed(8))
    assert torch.equal(out, again) and not torch.allclose(out, other)
    with pytest.raises(ValueError, match="generator"):
        ddim_sample(eps, x, 0.3, grid=g, boost_below=0.2)
    deterministic = ddim_sample(eps, x, 0.5, t_end=0.3, grid=g, boost_below=0.2)  # no step below 0.2: no noise
    assert deterministic.shape == x.shape


# ---------------------------------------------------------------------------------------- exact ε-model
@pytest.fixture(scope="module")
def molrg():
    return MoLRG.random((1, 8, 8), [3, 5], seed=0)


def test_eps_model_adapters(molrg, unet):
    e = MoLRGEps(molrg)
    x = randn(2, 1, 8, 8).double()
    torch.testing.assert_close(e(x, 599), molrg.eps(x, 0.6))  # timestep k ↔ t = (k + 1)/T
    u = unet_eps(unet)
    assert isinstance(u, UNetEps) and u.prediction_type == "epsilon"
    y = randn(1, 3, 8, 8)
    torch.testing.assert_close(u(y, 500), unet(y, 500).sample, atol=1e-6, rtol=1e-5)


def test_invert_then_sample_reconstructs_on_the_exact_molrg(molrg, capsys):
    """DDIM-Inv then DDIM with the exact ε: only the inversion's ε(x_{j−1}, t_j) approximation remains.

    (For unit-variance low-rank Gaussians the exact probability-flow map barely moves a sample, so
    this checks the bookkeeping of the two chains — same grid, same levels — more than the ODE.)
    """
    g, e = ddim_grid(schedule=molrg.schedule), molrg_eps(molrg)
    x0, _ = molrg.sample(4, torch.Generator().manual_seed(0))
    report = {}
    for t in (0.2, 0.6, 1.0):
        xt = ddim_invert(e, x0, t, grid=g)
        rec = ddim_sample(e, xt, t, grid=g)
        report[t] = psnr(rec, x0)
    with capsys.disabled():
        print("\n  DDIM invert→sample PSNR on the exact MoLRG (100 steps): "
              + ", ".join(f"t={t}: {p:.1f} dB" for t, p in report.items()))
    assert min(report.values()) > 45
    assert torch.equal(ddim_invert(e, x0, 0.0, grid=g), x0)  # t_edit = 0: nothing to do
    assert torch.equal(ddim_sample(e, x0, 0.6, t_end=0.6, grid=g), x0)


def test_psnr_and_bad_state():
    x = torch.zeros(4)
    assert psnr(x, x + torch.tensor([0.0, 1.0, 0.0, 0.0])) == pytest.approx(10 * torch.log10(torch.tensor(4.0)).item())
    with pytest.raises(ValueError, match="same shape"):
        psnr(torch.zeros(2), torch.zeros(3))
    e = molrg_eps(MoLRG.random((1, 4, 4), [2], seed=0))
    with pytest.raises(ValueError, match="NaN"):
        ddim_invert(e, torch.full((1, 1, 4, 4), float("nan"), dtype=torch.float64), 0.5)
