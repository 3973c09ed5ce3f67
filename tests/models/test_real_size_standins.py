"""Tests of the random-weight stand-ins of lococourse.models.real_size (standin_model, standin_t2i).

Oracles: diffusers' own schedulers built from the transcribed configs (the ᾱ table the stand-ins'
ε-models must use), the registry's specs (shapes, edit times), the transcribed configs (channels, widths),
and seeded rebuilds (same seed → equal weights, another seed → different ones).  Anything that allocates a
real-size network is marked slow (tens of seconds to build on one CPU thread).
"""
import pytest
import torch

from lococourse.core.schedule import SCHEDULE
from lococourse.models import real_size as rs
from lococourse.models.adapters import alphas_cumprod_of
from lococourse.models.registry import HUB_MODELS, LoadedModel
from lococourse.models.t2i import T2IPipeline

DDPM_NAMES = ["ddpm-celebahq-256", "ddpm-church-256", "ddpm-bedroom-256"]
T2I_NAMES = ["sd-2.1-base", "deepfloyd-if-i-m", "lcm-dreamshaper-v7"]


# ----------------------------------------------------------------------------- fast: names, seeds, schedules
def test_standin_names_cover_the_registry_families():
    assert sorted(rs._standin_names(("unet2d",))) == sorted(DDPM_NAMES)
    assert sorted(rs._standin_names(("sd", "if", "lcm"))) == sorted(T2I_NAMES)


def test_unknown_or_wrong_family_names_are_refused_before_any_build():
    with pytest.raises(ValueError, match="standin_model has no stand-in named 'sd-2.1-base'") as err:
        rs.standin_model("sd-2.1-base")
    assert all(n in str(err.value) for n in DDPM_NAMES)
    with pytest.raises(ValueError, match="standin_t2i has no stand-in named 'ddpm-church-256'") as err:
        rs.standin_t2i("ddpm-church-256")
    assert all(n in str(err.value) for n in T2I_NAMES)
    with pytest.raises(ValueError, match="registry names"):
        rs.standin_model("google/ddpm-ema-celebahq-256")  # the hub id is not a registry name
    with pytest.raises(ValueError, match="seed must be an integer"):
        rs.standin_model("ddpm-church-256", seed=1.5)
    with pytest.raises(ValueError, match="seed must be an integer"):
        rs.standin_t2i("sd-2.1-base", seed=True)


@pytest.mark.parametrize("name", DDPM_NAMES)
def test_ddpm_checkpoint_schedule_is_the_one_the_standin_eps_model_uses(name):
    """LoadedModel.eps_model() uses the package's linear-β SCHEDULE: it must be the checkpoint's ᾱ table."""
    from diffusers import DDPMScheduler

    sched = DDPMScheduler.from_config(rs.real_config(HUB_MODELS[name].source, "scheduler"))
    torch.testing.assert_close(alphas_cumprod_of(sched), SCHEDULE.alphas_cumprod, rtol=1e-6, atol=0)


def test_token_ids_are_checked_against_the_vocabulary():
    cfg = rs.text_encoder_config("stabilityai/stable-diffusion-2-1-base", vocab_size=514,
                                 token_ids={"bos_token_id": 512, "eos_token_id": 513, "pad_token_id": 513})
    assert (cfg.vocab_size, cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id) == (514, 512, 513, 513)
    with pytest.raises(ValueError, match="eos_token_id must be an integer in 0..513"):
        rs.text_encoder_config("stabilityai/stable-diffusion-2-1-base", vocab_size=514, token_ids={"eos_token_id": 600})
    with pytest.raises(ValueError, match="unknown token id 'sep_token_id'"):
        rs.text_encoder_config("stabilityai/stable-diffusion-2-1-base", token_ids={"sep_token_id": 3})


# ----------------------------------------------------------------------------- slow: real-size builds
@pytest.mark.slow
def test_ddpm_standin_is_a_seeded_random_loaded_model_with_a_working_pmp():
    torch.set_num_threads(1)
    state = torch.random.get_rng_state()
    a = rs.standin_model("ddpm-celebahq-256", seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is untouched
    assert isinstance(a, LoadedModel) and a.random_weights is True
    assert a.spec.extra["random_weights"] is True and a.spec.notes.startswith("RANDOM WEIGHTS")
    assert a.name == "ddpm-celebahq-256" and a.spec.edit_t == HUB_MODELS["ddpm-celebahq-256"].edit_t
    assert a.shape == (3, 256, 256) and a.prediction_type == "epsilon"
    assert not any(p.requires_grad for p in a.unet.parameters()) and not a.unet.training
    b = rs.standin_model("ddpm-celebahq-256", seed=3)
    c = rs.standin_model("ddpm-celebahq-256", seed=4)
    w = [m.unet.conv_in.weight for m in (a, b, c)]
    assert torch.equal(w[0], w[1]) and not torch.equal(w[0], w[2])
    # the PMP is eq. 2 of the ε-model at the same timestep (oracle: the two adapters combined by hand)
    x = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    f = a.pmp(0.6)
    with torch.no_grad():
        x0, eps = f(x), a.eps_model()(x, f.timestep)
    ab = float(SCHEDULE.alphas_cumprod[f.timestep])
    torch.testing.assert_close(x0, (x - (1 - ab) ** 0.5 * eps) / ab ** 0.5, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_if_standin_pipeline_has_the_real_shapes_and_reduced_t5():
    torch.set_num_threads(1)
    pipe = rs.standin_t2i("deepfloyd-if-i-m", seed=0, num_steps=10)
    assert isinstance(pipe, T2IPipeline) and pipe.random_weights is True and pipe.family == "if"
    assert all(m.random_weights is True for m in (pipe.unet, pipe.text_encoder)) and pipe.vae is None
    assert pipe.text_encoder.reduced_text_encoder is True and pipe.num_steps == 10
    assert pipe.latent_shape == pipe.image_shape == (3, 64, 64)
    assert pipe.unet.config.out_channels == 6  # learned variance
    emb = pipe.encode("a photo of a cat")
    assert emb.shape == (1, rs.STANDIN_MAX_LENGTH, rs.text_encoder_config("DeepFloyd/IF-I-M-v1.0").d_model)
    again = rs.standin_t2i("deepfloyd-if-i-m", seed=0).encode("a photo of a cat")
    other = rs.standin_t2i("deepfloyd-if-i-m", seed=1).encode("a photo of a cat")
    torch.testing.assert_close(emb, again)
    assert not torch.allclose(emb, other)
    assert rs.standin_t2i("deepfloyd-if-i-m").num_steps == 100  # the family default (the paper's 100 DDIM steps)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sd-2.1-base", "lcm-dreamshaper-v7"])
def test_latent_standin_pipelines_decode_to_the_real_image_size(name):
    torch.set_num_threads(1)
    pipe = rs.standin_t2i(name, seed=0)
    source = HUB_MODELS[name].source
    unet_cfg = rs.real_config(source, "unet")
    size = unet_cfg["sample_size"]
    assert pipe.latent_shape == (4, size, size)
    assert pipe.image_shape == (3, size * rs.latent_scale(source), size * rs.latent_scale(source))
    assert all(m.random_weights is True for m in (pipe.unet, pipe.vae, pipe.text_encoder))
    emb = pipe.encode("a red car")
    assert emb.shape == (1, rs.STANDIN_MAX_LENGTH, unet_cfg["cross_attention_dim"])
    # every layer after the embedding is the hub's: parameters differ only by the 514-row vocabulary
    hub = rs.real_size_summary(source)["params"]["text_encoder"]
    width = rs.real_config(source, "text_encoder")["hidden_size"]
    got = sum(p.numel() for p in pipe.text_encoder.parameters())
    assert hub - got == (rs.real_config(source, "text_encoder")["vocab_size"] - 514) * width
