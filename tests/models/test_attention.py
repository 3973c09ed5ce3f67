"""The jvp-safe attention processor: same function as diffusers' processors, and forward-mode AD goes through.

Oracles: diffusers' own (fused) processors for the forward pass; central finite differences in
float64 for the JVP.
"""
import pytest
import torch
from diffusers import UNet2DConditionModel, UNet2DModel

from lococourse.models.attention import (
    JvpSafeAttnProcessor,
    attention_modules,
    jvp_safe_attention,
    restore_attention,
    use_jvp_safe_attention,
)


def tiny_unet() -> UNet2DModel:
    """UNet2DModel with self-attention (AttnDownBlock2D/AttnUpBlock2D, residual + rescale), seeded."""
    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(8, 16),
                       down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
                       norm_num_groups=4, attention_head_dim=4)
    return unet.requires_grad_(False).eval()


def tiny_sd_unet() -> UNet2DConditionModel:
    """Stable-Diffusion-like UNet2DConditionModel: transformer blocks with self- and cross-attention."""
    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(8, 16), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=12,
                                attention_head_dim=4, norm_num_groups=4)
    return unet.requires_grad_(False).eval()


def tiny_if_unet() -> UNet2DConditionModel:
    """DeepFloyd-IF-like UNet: added key/value attention (SimpleCrossAttn blocks), learned variance."""
    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=8, in_channels=3, out_channels=6, layers_per_block=1,
                                block_out_channels=(8, 16),
                                down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
                                mid_block_type="UNetMidBlock2DSimpleCrossAttn",
                                up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
                                encoder_hid_dim=10, cross_attention_dim=16, attention_head_dim=4, norm_num_groups=4,
                                addition_embed_type="text", addition_embed_type_num_heads=2)
    return unet.requires_grad_(False).eval()


def _case(kind: str, dtype=torch.float32):
    """(model, f(x) → output, input x) for one tiny model; conditioning is fixed and seeded."""
    g = torch.Generator().manual_seed(1)
    if kind == "unet2d":
        unet = tiny_unet().to(dtype)
        return unet, (lambda x: unet(x, 500).sample), torch.randn(2, 3, 8, 8, generator=g, dtype=dtype)
    if kind == "sd":
        unet = tiny_sd_unet().to(dtype)
        emb = torch.randn(2, 5, 12, generator=g, dtype=dtype)
        mask = torch.ones(2, 5, dtype=dtype)
        mask[0, 3:] = 0  # padded prompt tokens: exercises the additive attention mask
        return (unet, lambda x: unet(x, 500, encoder_hidden_states=emb, encoder_attention_mask=mask).sample,
                torch.randn(2, 4, 8, 8, generator=g, dtype=dtype))
    unet = tiny_if_unet().to(dtype)
    emb = torch.randn(2, 5, 10, generator=g, dtype=dtype)
    return unet, (lambda x: unet(x, 500, encoder_hidden_states=emb).sample), torch.randn(2, 3, 8, 8, generator=g, dtype=dtype)


KINDS = ["unet2d", "sd", "if"]


@pytest.mark.parametrize("kind", KINDS)
def test_forward_matches_diffusers_default_processor(kind):
    unet, f, x = _case(kind)
    y_default = f(x)
    with jvp_safe_attention(unet):
        y_safe = f(x)
    assert y_safe.is_contiguous()
    torch.testing.assert_close(y_safe, y_default, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_jvp_matches_central_finite_differences_float64(kind):
    unet, f, x = _case(kind, torch.float64)
    v = torch.randn(x.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    h = 1e-6
    with jvp_safe_attention(unet):
        y, jv = torch.func.jvp(f, (x,), (v,))
        fd = (f(x + h * v) - f(x - h * v)) / (2 * h)
    assert jv.abs().max() > 1e-3  # a non-trivial directional derivative
    torch.testing.assert_close(jv, fd, atol=1e-7 * float(fd.abs().max()), rtol=1e-6)


def test_vmapped_jvp_over_directions():
    """The Jacobian engine's pattern: vmap over k directions of a jvp through the UNet."""
    unet, f, x = _case("unet2d", torch.float64)
    x = x[:1]
    V = torch.randn(3, *x.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    with jvp_safe_attention(unet):
        batched = torch.func.vmap(lambda v: torch.func.jvp(f, (x,), (v,))[1])(V)
        looped = torch.stack([torch.func.jvp(f, (x,), (v,))[1] for v in V])
    torch.testing.assert_close(batched, looped, atol=1e-10, rtol=1e-9)


def test_context_manager_restores_processors_also_on_error():
    unet = tiny_unet()
    mods = attention_modules(unet)
    assert len(mods) > 0
    before = {name: m.processor for name, m in mods.items()}
    with jvp_safe_attention(unet) as model:
        assert model is unet
        assert all(isinstance(m.processor, JvpSafeAttnProcessor) for m in mods.values())
    assert all(mods[n].processor is p for n, p in before.items())
    with pytest.raises(RuntimeError, match="boom"):
        with jvp_safe_attention(unet):
            raise RuntimeError("boom")
    assert all(mods[n].processor is p for n, p in before.items())


def test_use_and_restore():
    unet = tiny_unet()
    previous = use_jvp_safe_attention(unet)
    assert set(previous) == set(attention_modules(unet))
    assert all(isinstance(m.processor, JvpSafeAttnProcessor) for m in attention_modules(unet).values())
    assert use_jvp_safe_attention(unet)  # installing twice is harmless
    restore_attention(unet, previous)
    assert all(attention_modules(unet)[n].processor is p for n, p in previous.items())


def test_model_without_attention_is_left_alone():
    net = torch.nn.Sequential(torch.nn.Linear(2, 2))
    assert use_jvp_safe_attention(net) == {}
    with jvp_safe_attention(net):
        pass


def test_refuses_a_processor_it_cannot_stand_in_for():
    class CustomProcessor:
        def __call__(self, attn, hidden_states, **kwargs):
            return hidden_states

    unet = tiny_unet()
    name, mod = next(iter(attention_modules(unet).items()))
    custom = CustomProcessor()
    mod.processor = custom
    others = {n: m.processor for n, m in attention_modules(unet).items()}
    with pytest.raises(ValueError, match="CustomProcessor"):
        use_jvp_safe_attention(unet)
    assert {n: m.processor for n, m in attention_modules(unet).items()} == others  # nothing changed


def test_not_a_module():
    with pytest.raises(TypeError, match="nn.Module"):
        use_jvp_safe_attention(lambda x: x)


@pytest.mark.parametrize("kind", KINDS)
def test_query_slicing_gives_the_same_attention_and_jvp(kind, monkeypatch):
    """Scores above MAX_SCORE_ELEMENTS are formed in slices of query rows: the same output and J·v as all at once
    (the sd case has a padded-prompt attention mask, which is sliced with the rows)."""
    from lococourse.models import attention as attention_module

    model, f, x = _case(kind, torch.float64)
    v = torch.randn(x.shape, generator=torch.Generator().manual_seed(5), dtype=x.dtype)

    def run():
        with jvp_safe_attention(model):
            return f(x), torch.func.jvp(f, (x,), (v,))[1]

    monkeypatch.setattr(attention_module, "MAX_SCORE_ELEMENTS", None)
    y_ref, jv_ref = run()
    monkeypatch.setattr(attention_module, "MAX_SCORE_ELEMENTS", 7)  # a row or a few per slice
    y, jv = run()
    torch.testing.assert_close(y, y_ref, atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(jv, jv_ref, atol=1e-12, rtol=1e-10)
