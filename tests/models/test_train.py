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


# ---------------------------------------------------------------------------------------- configuration checks (issue 11)
@pytest.mark.parametrize("field, value, match", [
    ("steps", -5, "TrainConfig.steps must be a positive integer; got -5"),
    ("steps", 0, "TrainConfig.steps must be a positive integer; got 0"),
    ("steps", 2.5, "TrainConfig.steps must be a positive integer; got 2.5"),
    ("batch_size", 0, "TrainConfig.batch_size"),
    ("checkpoint_every", 0, "TrainConfig.checkpoint_every"),
    ("warmup", -1, "TrainConfig.warmup must be an integer ≥ 0"),
    ("lr", 0.0, r"TrainConfig.lr must be a finite number > 0; got 0.0"),
    ("lr", float("nan"), "TrainConfig.lr"),
    ("ema_decay", 5, r"TrainConfig.ema_decay must be a finite number in \[0, 1\); got 5"),
    ("ema_decay", 1.0, r"TrainConfig.ema_decay must be a finite number in \[0, 1\); got 1.0"),
    ("ema_decay", -0.1, "TrainConfig.ema_decay"),
    ("seed", -1, "TrainConfig.seed must be an integer in 0 … 2⁶⁴ − 1"),
    ("seed", 2 ** 64, "TrainConfig.seed"),
    ("prediction_type", "x0", "TrainConfig.prediction_type must be one of epsilon, v_prediction, sample; got 'x0'"),
    ("snr_weight_max", 0.5, "TrainConfig.snr_weight_max"),
])
def test_bad_train_config_is_refused_on_construction(field, value, match):
    from lococourse.models.train import TrainConfig

    with pytest.raises((ValueError, TypeError), match=match):
        TrainConfig(**{field: value})


def test_snr_weight_needs_x0_prediction_in_the_config():
    from lococourse.models.train import TrainConfig

    with pytest.raises(ValueError, match="'sample' only; got snr_weight_max = 5.0 with 'epsilon'"):
        TrainConfig(prediction_type="epsilon", snr_weight_max=5.0)


@pytest.mark.parametrize("kw, match", [
    (dict(block_out_channels=(8, 12, 16), norm_num_groups=8), r"multiples of norm_num_groups = 8; \[12\] are not"),
    (dict(block_out_channels=(8, 16), down_block_types=("DownBlock2D",) * 3), "one block per entry"),
    (dict(sample_size=0), "UNetConfig.sample_size must be a positive integer; got 0"),
    (dict(block_out_channels=()), "block_out_channels must be positive integers"),
])
def test_bad_unet_config_is_refused(kw, match):
    from lococourse.models.train import UNetConfig

    with pytest.raises(ValueError, match=match):
        UNetConfig(**kw)


def test_train_rechecks_a_config_changed_after_construction(tmp_path):
    """The issue: train(steps=-5) saved an untrained model.  Now nothing is written."""
    from lococourse.models.train import TrainConfig, train

    cfg = TrainConfig()
    cfg.steps = -5
    with pytest.raises(ValueError, match="TrainConfig.steps must be a positive integer; got -5"):
        train(cfg, lambda b, g: torch.zeros(b, 3, 16, 16), tmp_path / "run", log=lambda s: None)
    assert not (tmp_path / "run").exists()
    cfg.steps, cfg.ema_decay = 3, 5.0
    with pytest.raises(ValueError, match="ema_decay"):
        train(cfg, lambda b, g: torch.zeros(b, 3, 16, 16), tmp_path / "run", log=lambda s: None)
    for kw, match in ((dict(time_limit_s=0), "time_limit_s"), (dict(log_every=0), "log_every")):
        with pytest.raises(ValueError, match=match):
            train(TrainConfig(), lambda b, g: torch.zeros(b, 3, 16, 16), tmp_path / "run", log=lambda s: None, **kw)
    with pytest.raises(TypeError, match="sampler must be a callable"):
        train(TrainConfig(), None, tmp_path / "run", log=lambda s: None)
    assert not (tmp_path / "run").exists()
