"""Tests of lococourse.models.real_size: the paper's architectures at real size, random weights.

Independent oracles used here:

* published float32 weight-file sizes on the hub listings (cited per row in
  PUBLISHED_FP32_BYTES and in configs/SOURCES.md): 4 bytes per parameter, the
  listing rounded to 3 significant digits;
* hand-written parameter formulas for the CLIP and T5 text encoders;
* image sizes stated by the paper / model cards (256 px DDPMs, 512 px
  SD-2.1-base, 768 px LCM-Dreamshaper-v7, 64 px IF stage I).

Fast tests build only on the meta device (no weights allocated); anything that
allocates a real-size model is marked slow.
"""
import pytest
import torch

from lococourse.models import real_size as rs

NAMES = sorted(rs.REAL_ARCHITECTURES)
DDPMS = ["google/ddpm-ema-celebahq-256", "google/ddpm-ema-church-256", "google/ddpm-ema-bedroom-256"]
SD, IF, LCM = "stabilityai/stable-diffusion-2-1-base", "DeepFloyd/IF-I-M-v1.0", "SimianLuo/LCM_Dreamshaper_v7"

# (name, component) -> (displayed size in bytes, half-width of the display rounding, source)
PUBLISHED_FP32_BYTES = {
    **{(n, "unet"): (455e6, 0.5e6, f"hf.co/{n} diffusion_pytorch_model.bin '455 MB'") for n in DDPMS},
    (SD, "unet"): (3.46e9, 0.005e9, "hf.co/stabilityai/stable-diffusion-2-1-base unet .bin '3.46 GB'"),
    (SD, "vae"): (335e6, 0.5e6, "hf.co/stabilityai/stable-diffusion-2-1-base vae .bin '335 MB'"),
    (LCM, "unet"): (3.44e9, 0.005e9, "hf.co/SimianLuo/LCM_Dreamshaper_v7 unet .safetensors '3.44 GB'"),
}
CONTAINER_OVERHEAD = 2e6  # bytes of pickle/safetensors headers a file may add beyond 4 bytes/param


def meta_params(component, name, **kw):
    builder = {"unet": rs.build_real_unet, "vae": rs.build_real_vae, "text_encoder": rs.build_real_text_encoder}
    module = builder[component](name, device="meta", **kw)
    return sum(p.numel() for p in module.parameters())


# ----------------------------------------------------------------------------- building
@pytest.mark.parametrize("name", NAMES)
def test_every_component_builds_on_meta_and_is_marked_random(name):
    built = 0
    for component in ("unet", "vae", "text_encoder"):
        if not rs.has_component(name, component):
            continue
        builder = {"unet": rs.build_real_unet, "vae": rs.build_real_vae,
                   "text_encoder": rs.build_real_text_encoder}[component]
        kw = {"reduced_text_encoder": True} if (name == IF and component == "text_encoder") else {}
        module = builder(name, device="meta", **kw)
        assert module.random_weights is True and module.real_size_name == name
        assert all(p.is_meta for p in module.parameters())
        built += 1
    assert built == {SD: 3, LCM: 3, IF: 2}.get(name, 1)
    assert rs.build_real_scheduler(name).config.num_train_timesteps == 1000


@pytest.mark.parametrize("name", NAMES)
def test_summary_is_marked_random_and_allocates_nothing(name):
    s = rs.real_size_summary(name)
    assert s["random_weights"] is True and s["name"] == name
    assert s["params"]["unet"] == meta_params("unet", name)


# ----------------------------------------------------------------------------- counts vs published
@pytest.mark.parametrize("key", sorted(PUBLISHED_FP32_BYTES), ids=lambda k: f"{k[0]}:{k[1]}")
def test_parameter_count_matches_published_float32_file_size(key):
    name, component = key
    shown, half, source = PUBLISHED_FP32_BYTES[key]
    nbytes = 4 * meta_params(component, name)
    assert shown - half - CONTAINER_OVERHEAD <= nbytes <= shown + half, (source, nbytes)


def test_sd21_text_encoder_matches_published_file_bytes():
    """SD-2.1 text_encoder/pytorch_model.bin is 1 361 678 941 bytes (git-lfs pointer, see SOURCES.md)."""
    nbytes = 4 * meta_params("text_encoder", SD)
    assert 0 <= 1_361_678_941 - nbytes <= CONTAINER_OVERHEAD


def clip_text_params(cfg):
    """Hand count of a CLIP text transformer: embeddings, L x (attn, 2 LN, MLP), final LN."""
    d, ff, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    embed = cfg["vocab_size"] * d + cfg["max_position_embeddings"] * d
    layer = 4 * (d * d + d) + 2 * (2 * d) + (d * ff + ff) + (ff * d + d)
    return embed + L * layer + 2 * d


def t5_encoder_params(cfg):
    """Hand count of a gated-GELU T5 encoder: shared embedding, L x (attn, FF, 2 RMS norms), rel. bias, final norm."""
    d, ff, L, inner = cfg["d_model"], cfg["d_ff"], cfg["num_layers"], cfg["num_heads"] * cfg["d_kv"]
    layer = 4 * d * inner + 3 * d * ff + 2 * d
    return cfg["vocab_size"] * d + L * layer + cfg["relative_attention_num_buckets"] * cfg["num_heads"] + d


@pytest.mark.parametrize("name", [SD, LCM])
def test_clip_text_encoder_count_matches_hand_formula(name):
    assert meta_params("text_encoder", name) == clip_text_params(rs.real_config(name, "text_encoder"))


def test_t5_encoder_counts_match_hand_formula_full_and_reduced():
    cfg = rs.real_config(IF, "text_encoder")
    assert meta_params("text_encoder", IF) == t5_encoder_params(cfg)
    assert 4.7e9 < t5_encoder_params(cfg) < 4.8e9  # T5-v1.1-XXL encoder, ~4.76B
    reduced = dict(cfg, **rs.REDUCED_T5_OVERRIDES, vocab_size=1000)
    assert meta_params("text_encoder", IF, reduced_text_encoder=True, vocab_size=1000) == t5_encoder_params(reduced)


def test_if_topology_at_xl_width_matches_published_if_i_xl():
    """The inferred IF-I-M file reuses IF-I-XL's topology: at XL width it must give XL's 17.2 GB fp32 file."""
    from diffusers import UNet2DConditionModel

    cfg = rs.real_config(IF, "unet")
    cfg.update(block_out_channels=[704, 1408, 2112, 2816], cross_attention_dim=2816)  # IF-I-XL config.yml
    with torch.device("meta"):
        n = sum(p.numel() for p in UNet2DConditionModel.from_config(cfg).parameters())
    assert 17.15e9 - CONTAINER_OVERHEAD <= 4 * n <= 17.25e9


# ----------------------------------------------------------------------------- shapes between components
def test_sd21_base_latent_is_64x64_for_512px():
    unet, vae = rs.real_config(SD, "unet"), rs.real_config(SD, "vae")
    assert unet["in_channels"] == unet["out_channels"] == vae["latent_channels"] == 4
    assert unet["sample_size"] == 64 and rs.latent_scale(SD) == 8
    assert rs.real_size_summary(SD)["image_size"] == 512  # "-base" = the 512 px model
    assert unet["cross_attention_dim"] == rs.real_config(SD, "text_encoder")["hidden_size"]


def test_lcm_latent_is_96x96_for_768px():
    unet, vae = rs.real_config(LCM, "unet"), rs.real_config(LCM, "vae")
    assert unet["in_channels"] == vae["latent_channels"] == 4
    assert unet["sample_size"] * rs.latent_scale(LCM) == vae["sample_size"] == 768
    assert unet["cross_attention_dim"] == rs.real_config(LCM, "text_encoder")["hidden_size"]
    assert unet["time_cond_proj_dim"] == 256  # guidance-scale embedding of LCM


def test_if_stage_one_is_64px_pixel_space_with_learned_variance():
    unet = rs.real_config(IF, "unet")
    assert not rs.has_component(IF, "vae")
    assert (unet["sample_size"], unet["in_channels"], unet["out_channels"]) == (64, 3, 6)
    assert unet["encoder_hid_dim"] == rs.text_encoder_config(IF, reduced_text_encoder=True).d_model == 4096
    assert rs.real_config(IF, "scheduler")["variance_type"] == "learned_range"


@pytest.mark.parametrize("name", DDPMS)
def test_ddpms_are_256px_rgb_unconditional(name):
    unet = rs.real_config(name, "unet")
    assert (unet["sample_size"], unet["in_channels"], unet["out_channels"]) == (256, 3, 3)
    assert not rs.has_component(name, "vae") and not rs.has_component(name, "text_encoder")


# ----------------------------------------------------------------------------- errors
def test_unknown_name_lists_allowed_names():
    with pytest.raises(ValueError) as err:
        rs.build_real_unet("google/ddpm-cifar10-32")
    assert "google/ddpm-cifar10-32" in str(err.value)
    assert all(n in str(err.value) for n in NAMES)
    with pytest.raises(ValueError, match="allowed"):
        rs.real_size_summary("runwayml/stable-diffusion-v1-5")


def test_bad_component_dtype_and_options_are_rejected():
    with pytest.raises(ValueError, match="has no 'vae'; its components are: unet, scheduler"):
        rs.build_real_vae(DDPMS[0], device="meta")
    with pytest.raises(ValueError, match="unknown component 'tokenizer'"):
        rs.has_component(SD, "tokenizer")
    with pytest.raises(ValueError, match="only defined for the T5 encoder"):
        rs.build_real_text_encoder(SD, device="meta", reduced_text_encoder=True)
    with pytest.raises(ValueError, match="floating torch.dtype"):
        rs.build_real_unet(DDPMS[0], dtype=torch.int8, device="meta")
    with pytest.raises(ValueError, match="vocab_size"):
        rs.build_real_text_encoder(SD, device="meta", vocab_size=0)


# ----------------------------------------------------------------------------- real allocation (slow)
@pytest.mark.slow
def test_ddpm_unet_real_build_is_seeded_and_runs():
    torch.set_num_threads(1)
    a = rs.build_real_unet(DDPMS[0], seed=0)
    b = rs.build_real_unet(DDPMS[0], seed=0)
    c = rs.build_real_unet(DDPMS[0], seed=1)
    pa, pb, pc = (next(m.down_blocks[0].resnets[0].conv1.parameters()) for m in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)
    with torch.no_grad():
        out = a(torch.randn(1, 3, 256, 256), torch.tensor([500])).sample
    assert out.shape == (1, 3, 256, 256) and torch.isfinite(out).all()


@pytest.mark.slow
def test_sd21_text_encoder_and_unet_run_together():
    torch.set_num_threads(1)
    text = rs.build_real_text_encoder(SD, vocab_size=1000)
    unet = rs.build_real_unet(SD)
    with torch.no_grad():
        states = text(torch.randint(0, 1000, (1, 77))).last_hidden_state  # (1, 77, 1024)
        eps = unet(torch.randn(1, 4, 64, 64), torch.tensor([500]), encoder_hidden_states=states).sample
    assert states.shape == (1, 77, 1024) and eps.shape == (1, 4, 64, 64)


@pytest.mark.slow
def test_if_unet_runs_on_the_reduced_t5_states():
    torch.set_num_threads(1)
    text = rs.build_real_text_encoder(IF, reduced_text_encoder=True, vocab_size=1000)
    unet = rs.build_real_unet(IF)
    assert text.reduced_text_encoder is True
    with torch.no_grad():
        states = text(torch.randint(0, 1000, (1, 77))).last_hidden_state  # (1, 77, 4096)
        out = unet(torch.randn(1, 3, 64, 64), torch.tensor([500]), encoder_hidden_states=states).sample
    assert out.shape == (1, 6, 64, 64)
