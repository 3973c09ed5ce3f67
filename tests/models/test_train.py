"""lococourse.models.train.diffusion_loss: the DDPM objective and its SNR-clipped x₀ weighting, recomputed by hand
with diffusers' noise table."""
import pytest
import torch

from lococourse.models.train import diffusion_loss


class _Affine(torch.nn.Module):
    """A stand-in 'UNet': out = 0.5·x_t (any fixed map will do; the loss is what is checked)."""

    def forward(self, x, k):
        return type("Out", (), {"sample": 0.5 * x})()


def _by_hand(x0, seed, gamma):
    from diffusers import DDPMScheduler

    ab_table = DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02,
                             beta_schedule="linear").alphas_cumprod.double()
    g = torch.Generator().manual_seed(seed)
    k = torch.randint(0, 1000, (x0.shape[0],), generator=g)
    eps = torch.randn(x0.shape, generator=g, dtype=x0.dtype)
    ab = ab_table[k].to(x0.dtype).reshape(-1, 1, 1, 1)
    xt = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    per = ((0.5 * xt - x0) ** 2).flatten(1).mean(1)
    w = torch.minimum(torch.maximum(ab / (1 - ab), torch.ones_like(ab)), torch.full_like(ab, gamma)).flatten()
    return float((w * per).mean())


@pytest.mark.parametrize("gamma", [1.0, 5.0, 20.0])
def test_snr_clipped_x0_loss_matches_hand_computation(gamma):
    x0 = torch.randn(64, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    got = diffusion_loss(_Affine(), x0, "sample", torch.Generator().manual_seed(7), snr_weight_max=gamma)
    assert float(got) == pytest.approx(_by_hand(x0, 7, gamma), rel=1e-5)


def test_snr_weighting_moves_weight_to_small_t():
    x0 = torch.randn(256, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    plain = float(diffusion_loss(_Affine(), x0, "sample", torch.Generator().manual_seed(3)))
    heavy = float(diffusion_loss(_Affine(), x0, "sample", torch.Generator().manual_seed(3), snr_weight_max=50.0))
    assert heavy > plain  # every weight is ≥ 1 and those of small t are > 1


@pytest.mark.parametrize("bad", [0.5, float("nan"), float("inf")])
def test_bad_snr_weight_is_refused(bad):
    with pytest.raises(ValueError, match="snr_weight_max"):
        diffusion_loss(_Affine(), torch.zeros(2, 3, 4, 4), "sample", torch.Generator(), snr_weight_max=bad)


def test_snr_weight_only_for_x0_prediction():
    with pytest.raises(ValueError, match="'sample' only"):
        diffusion_loss(_Affine(), torch.zeros(2, 3, 4, 4), "epsilon", torch.Generator(), snr_weight_max=5.0)
