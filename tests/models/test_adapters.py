"""PMP adapters for diffusers models: eq. 2 (and its v/sample forms), eq. 9, eqs. 3/11/12; validation; torch.func.

Oracles: diffusers' DDIMScheduler.step(...).pred_original_sample for every parameterisation; eq. 2
written out by hand with the paper's schedule; the VAE decoder called directly; central finite
differences (float64) and the vjp/jvp adjoint identity for the transforms.
"""
import math

import pytest
import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel, UNet2DModel

from lococourse import jacobian
from lococourse.core.schedule import SCHEDULE
from lococourse.models.adapters import GuidedEps, GuidedPMP, LatentPMP, UNetEps, UNetPMP, alphas_cumprod_of


def tiny_unet(in_channels=3, out_channels=None, attention=True, dtype=torch.float32) -> UNet2DModel:
    torch.manual_seed(0)
    down = ("DownBlock2D", "AttnDownBlock2D") if attention else ("DownBlock2D", "DownBlock2D")
    up = ("AttnUpBlock2D", "UpBlock2D") if attention else ("UpBlock2D", "UpBlock2D")
    unet = UNet2DModel(sample_size=8, in_channels=in_channels, out_channels=out_channels or in_channels,
                       layers_per_block=1, block_out_channels=(8, 16), down_block_types=down, up_block_types=up,
                       norm_num_groups=4, attention_head_dim=4)
    return unet.requires_grad_(False).eval().to(dtype)


def tiny_sd_unet(dtype=torch.float32) -> UNet2DConditionModel:
    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(8, 16), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=12,
                                attention_head_dim=4, norm_num_groups=4)
    return unet.requires_grad_(False).eval().to(dtype)


def tiny_vae(dtype=torch.float32) -> AutoencoderKL:
    """4 latent channels, downsampling ×2: latents (4, 8, 8) ↔ images (3, 16, 16); mid-block attention."""
    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16),
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        norm_num_groups=4, layers_per_block=1, sample_size=16, scaling_factor=0.5)
    return vae.requires_grad_(False).eval().to(dtype)


def randn(*shape, seed=1, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def scheduler(prediction_type="epsilon", **kw):
    return DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02,
                         clip_sample=False, prediction_type=prediction_type, **kw)


# ---------------------------------------------------------------------------------------- UNetPMP
def test_eq2_with_the_paper_schedule():
    unet = tiny_unet()
    f = UNetPMP(unet, 0.6)
    assert f.timestep == 599 and f.t == pytest.approx(0.6) and f.shape == (3, 8, 8)
    x = randn(2, 3, 8, 8)
    eps = unet(x, 599).sample
    ab = float(SCHEDULE.alpha_bar(0.6))
    expected = (x - math.sqrt(1 - ab) * eps) / math.sqrt(ab)  # eq. 2
    torch.testing.assert_close(f(x), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(f.eps(x), eps, atol=1e-6, rtol=1e-6)
    assert "PMP" in f.name and "epsilon" in f.name


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_x0_matches_diffusers_pred_original_sample(prediction_type):
    """The scheduler's config gives the parameterisation; DDIMScheduler.step's x̂₀ is the oracle."""
    unet, sch = tiny_unet(), scheduler(prediction_type)
    sch.set_timesteps(100)
    k = 700
    f = UNetPMP(unet, (k + 1) / 1000, schedule=sch)
    assert f.denoiser.prediction_type == prediction_type and f.timestep == k
    x = randn(2, 3, 8, 8)
    expected = sch.step(unet(x, k).sample, k, x).pred_original_sample
    torch.testing.assert_close(f(x), expected, atol=2e-5, rtol=2e-5)


def test_prediction_type_given_overrides_and_eps_roundtrip():
    unet = tiny_unet()
    for pt in ("v_prediction", "sample"):
        d = UNetEps(unet, pt)
        x = randn(1, 3, 8, 8)
        eps, x0 = d.eps_and_x0(x, 300)
        ab = float(SCHEDULE.alphas_cumprod[300])
        torch.testing.assert_close(math.sqrt(ab) * x0 + math.sqrt(1 - ab) * eps, x, atol=1e-5, rtol=1e-5)


def test_learned_variance_half_is_dropped():
    unet = tiny_unet(out_channels=6)
    f = UNetPMP(unet, 0.5)
    x = randn(2, 3, 8, 8)
    eps = unet(x, f.timestep).sample[:, :3]
    expected = (x - math.sqrt(1 - f.alpha_bar) * eps) / math.sqrt(f.alpha_bar)
    out = f(x)
    assert out.shape == (2, 3, 8, 8)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_unbatched_input_and_batch_independence():
    f = UNetPMP(tiny_unet(), 0.7)
    x = randn(3, 3, 8, 8)
    out = f(x)
    torch.testing.assert_close(f(x[1]), out[1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.func.vmap(f)(x.unsqueeze(1)).squeeze(1), out, atol=1e-5, rtol=1e-5)


def test_snapped_time_and_schedule_table():
    f = UNetPMP(tiny_unet(attention=False), 0.70049)
    assert f.timestep == 699 and f.t == pytest.approx(0.7)
    assert UNetPMP(tiny_unet(attention=False), 1e-4).timestep == 0
    torch.testing.assert_close(alphas_cumprod_of(scheduler()), SCHEDULE.alphas_cumprod, atol=1e-6, rtol=1e-5)


# ---------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize("bad,match", [
    (randn(1, 4, 8, 8), r"4 channels .* takes 3"),
    (randn(1, 3, 16, 16), r"16×16 .* expects 8×8"),
    (randn(8, 8), r"must be a batch"),
])
def test_wrong_shape_names_expected_and_got(bad, match):
    with pytest.raises(ValueError, match=match):
        UNetPMP(tiny_unet(attention=False), 0.5)(bad)


@pytest.mark.parametrize("t", [0.0, -0.1, 1.5, float("nan")])
def test_t_outside_unit_interval(t):
    with pytest.raises(ValueError, match=r"t must lie in \(0, 1\]"):
        UNetPMP(tiny_unet(attention=False), t)


def test_nan_input_and_bad_options():
    unet = tiny_unet(attention=False)
    x = randn(1, 3, 8, 8)
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="1 NaN"):
        UNetPMP(unet, 0.5)(x)
    with pytest.raises(ValueError, match="prediction_type"):
        UNetPMP(unet, 0.5, prediction_type="noise")
    with pytest.raises(ValueError, match="out_channels = 5"):
        UNetPMP(tiny_unet(out_channels=5, attention=False), 0.5)
    with pytest.raises(ValueError, match="in_channels = 3"):
        UNetPMP(unet, 0.5, shape=(4, 8, 8))
    with pytest.raises(ValueError, match="timestep must be an integer"):
        UNetEps(unet)(randn(1, 3, 8, 8), 1000)
    f16 = UNetPMP(unet, 0.5, shape=(3, 16, 16))  # another resolution, on request
    assert f16(randn(1, 3, 16, 16)).shape == (1, 3, 16, 16)


def test_active_dropout_is_refused():
    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(8, 16),
                       down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2, norm_num_groups=4,
                       dropout=0.1)
    with pytest.raises(ValueError, match=r"\.eval\(\)"):
        UNetPMP(unet, 0.5)
    UNetPMP(unet.eval(), 0.5)


# ---------------------------------------------------------------------------------------- torch.func
def test_jvp_through_attention_matches_finite_differences_float64():
    f = UNetPMP(tiny_unet(dtype=torch.float64), 0.6)
    x = randn(3, 8, 8, dtype=torch.float64)
    V = randn(2, 3, 8, 8, seed=2, dtype=torch.float64)
    Jv = jacobian.jvp(f, x, V)  # vmap over jvp, as the power method does
    h = 1e-6
    fd = torch.stack([(f(x + h * v) - f(x - h * v)) / (2 * h) for v in V])
    torch.testing.assert_close(Jv, fd, atol=1e-7 * float(fd.abs().max()), rtol=1e-6)


def test_vjp_is_the_adjoint_of_jvp():
    f = UNetPMP(tiny_unet(dtype=torch.float64), 0.6)
    x = randn(3, 8, 8, dtype=torch.float64)
    v, u = randn(1, 3, 8, 8, seed=2, dtype=torch.float64), randn(1, 3, 8, 8, seed=3, dtype=torch.float64)
    lhs = (u * jacobian.jvp(f, x, v)).sum()
    rhs = (jacobian.vjp(f, x, u) * v).sum()
    torch.testing.assert_close(lhs, rhs, atol=1e-10, rtol=1e-9)


def test_linearize_operator():
    """JacobianOperator's default forward mode (torch.func.linearize) agrees with plain jvp.

    One resolution level (tracing time grows with the op count) but with the mid-block attention.
    """
    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(8,),
                       down_block_types=("DownBlock2D",), up_block_types=("UpBlock2D",), norm_num_groups=4,
                       attention_head_dim=4).requires_grad_(False).eval()
    f = UNetPMP(unet, 0.5)
    x = randn(3, 8, 8)
    V = randn(2, 3, 8, 8, seed=2)
    op = jacobian.JacobianOperator(f, x)
    torch.testing.assert_close(op.mv(V), jacobian.jvp(f, x, V), atol=1e-5, rtol=1e-4)


# ---------------------------------------------------------------------------------------- LatentPMP
def test_latent_pmp_decodes_eq9():
    unet, vae = tiny_unet(in_channels=4), tiny_vae()
    f = LatentPMP(unet, vae, 0.6)
    assert f.shape == (4, 8, 8) and f.out_shape == (3, 16, 16)
    z = randn(2, 4, 8, 8)
    z0 = UNetPMP(unet, 0.6)(z)
    expected = vae.decode(z0 / 0.5).sample  # Decoder(ẑ₀ / scaling_factor)
    out = f(z)
    assert out.shape == (2, 3, 16, 16)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(f.latent_x0(z), z0)
    assert f.encode(out).shape == (2, 4, 8, 8)


def test_latent_pmp_jvp_through_decoder_attention_float64():
    f = LatentPMP(tiny_unet(in_channels=4, dtype=torch.float64), tiny_vae(torch.float64), 0.6)
    z = randn(4, 8, 8, dtype=torch.float64)
    v = randn(1, 4, 8, 8, seed=2, dtype=torch.float64)
    Jv = jacobian.jvp(f, z, v)[0]
    assert Jv.shape == (3, 16, 16)
    h = 1e-6
    fd = (f(z + h * v[0]) - f(z - h * v[0])) / (2 * h)
    torch.testing.assert_close(Jv, fd, atol=1e-7 * float(fd.abs().max()), rtol=1e-6)


def test_latent_pmp_errors():
    unet = tiny_unet(in_channels=4, attention=False)
    with pytest.raises(ValueError, match="vae=None"):
        LatentPMP(unet, None, 0.5)
    with pytest.raises(ValueError, match="latent_channels = 4 but the UNet takes 3"):
        LatentPMP(tiny_unet(attention=False), tiny_vae(), 0.5)
    with pytest.raises(ValueError, match="3 channels but"):
        LatentPMP(unet, tiny_vae(), 0.5)(randn(1, 3, 8, 8))


# ---------------------------------------------------------------------------------------- GuidedPMP
@pytest.fixture(scope="module")
def prompts():
    return randn(1, 5, 12, seed=10), randn(1, 5, 12, seed=11), randn(1, 5, 12, seed=12)  # c_o, ∅, c_e


def test_guidance_eq3_limits_and_combination(prompts):
    cond, uncond, edit = prompts
    unet = tiny_sd_unet()
    t, s = 0.7, 7.5
    x = randn(2, 4, 8, 8)
    f_c = UNetPMP(unet, t, encoder_hidden_states=cond.expand(2, -1, -1))
    f_u = UNetPMP(unet, t, encoder_hidden_states=uncond.expand(2, -1, -1))
    torch.testing.assert_close(GuidedPMP(unet, t, cond, uncond, 1.0)(x), f_c(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(GuidedPMP(unet, t, cond, uncond, 0.0)(x), f_u(x), atol=1e-5, rtol=1e-5)
    # eq. 3 inside eq. 2 (= eq. 11), from separate UNet calls
    g = GuidedPMP(unet, t, cond, uncond, s)
    ab = g.alpha_bar
    e_c, e_u = f_c.eps(x), f_u.eps(x)
    eps_tilde = e_u + s * (e_c - e_u)
    torch.testing.assert_close(g.eps(x), eps_tilde, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(g(x), (x - math.sqrt(1 - ab) * eps_tilde) / math.sqrt(ab), atol=1e-4, rtol=1e-5)
    # eq. 12: f^e = f^o − √(1−ᾱ)/√ᾱ · m (ε(c_e) − ε(∅))
    m = 2.0
    e_e = UNetPMP(unet, t, encoder_hidden_states=edit.expand(2, -1, -1)).eps(x)
    f_e = GuidedPMP(unet, t, cond, uncond, s, edit=edit, edit_scale=m)
    torch.testing.assert_close(f_e(x), g(x) - math.sqrt(1 - ab) / math.sqrt(ab) * m * (e_e - e_u), atol=1e-4, rtol=1e-5)
    assert "s=7.5" in f_e.name and "m=2" in f_e.name


def test_guided_eps_model_and_latent_decoding(prompts):
    cond, uncond, _ = prompts
    unet, vae = tiny_sd_unet(), tiny_vae()
    d = GuidedEps(unet, cond, uncond, 3.0)
    g = GuidedPMP(unet, 0.5, cond, uncond, 3.0, vae=vae)
    z = randn(1, 4, 8, 8)
    torch.testing.assert_close(d(z, g.timestep), GuidedPMP(unet, 0.5, cond, uncond, 3.0).eps(z))
    z0 = GuidedPMP(unet, 0.5, cond, uncond, 3.0)(z)
    torch.testing.assert_close(g(z), vae.decode(z0 / 0.5).sample, atol=1e-5, rtol=1e-5)
    assert g.out_shape == (3, 16, 16)


def test_guided_jvp_through_cross_attention_float64(prompts):
    cond, uncond, _ = (p.double() for p in prompts)
    f = GuidedPMP(tiny_sd_unet(torch.float64), 0.6, cond, uncond, 5.0)
    x = randn(4, 8, 8, dtype=torch.float64)
    v = randn(1, 4, 8, 8, seed=2, dtype=torch.float64)
    Jv = jacobian.jvp(f, x, v)[0]
    h = 1e-6
    fd = (f(x + h * v[0]) - f(x - h * v[0])) / (2 * h)
    torch.testing.assert_close(Jv, fd, atol=1e-7 * float(fd.abs().max()), rtol=1e-6)


def test_guided_errors(prompts):
    cond, uncond, edit = prompts
    unet = tiny_sd_unet()
    with pytest.raises(ValueError, match="edit_scale"):
        GuidedPMP(unet, 0.5, cond, uncond, 5.0, edit_scale=1.0)
    with pytest.raises(ValueError, match="embedding size D = 7 but the UNet takes 12"):
        GuidedPMP(unet, 0.5, randn(1, 5, 7), uncond, 5.0)
    with pytest.raises(ValueError, match="pad the prompts"):
        GuidedPMP(unet, 0.5, cond, randn(1, 6, 12), 5.0)
    with pytest.raises(ValueError, match="guidance_scale"):
        GuidedPMP(unet, 0.5, cond, uncond, float("nan"))
    with pytest.raises(ValueError, match="batch size 3"):
        GuidedPMP(unet, 0.5, randn(3, 5, 12), uncond, 5.0)(randn(2, 4, 8, 8))
