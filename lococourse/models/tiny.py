"""Tiny random-weight text-to-image pipelines for offline tests, the CLI and notebooks on a CPU.

Each builder makes the networks of one family from a config, with seeded random weights (nothing is
downloaded, nothing pretrained: the images they make are noise-like patterns, not photos):

* ``"sd"``  — Stable Diffusion layout: a latent ``UNet2DConditionModel`` (4 × 8 × 8) + ``AutoencoderKL``
  (16 × 16 pixels) + ``CLIPTextModel``; DDIM with SD's scaled-linear β, steps_offset 1.
* ``"if"``  — DeepFloyd IF stage I layout: a pixel UNet (3 × 8 × 8) with learned variance
  (out_channels = 2 × in_channels) + ``T5EncoderModel`` (through ``encoder_hid_dim``); cosine β.
* ``"lcm"`` — Latent Consistency Model layout: as ``"sd"`` with ``time_cond_proj_dim`` for the
  guidance-scale (w) embedding, and diffusers' ``LCMScheduler``.

The tokenizer is a ``CLIPTokenizer`` over a hand-written byte-level vocabulary (every byte, no merges:
one token per character), written to a temporary folder; the T5 encoder shares it.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

from lococourse.models.t2i import FAMILIES, T2IPipeline

__all__ = ["TINY_MODELS", "tiny_tokenizer", "tiny_text_encoder", "tiny_unet", "tiny_vae", "tiny_scheduler",
           "tiny_pipeline"]

#: CLI / registry-style names of the tiny pipelines → family.
TINY_MODELS = {"tiny-sd": "sd", "tiny-if": "if", "tiny-lcm": "lcm"}

MAX_LENGTH = 16  # tokens per prompt
TEXT_DIM = 32  # CLIP hidden size = the UNet's cross_attention_dim
T5_DIM = 24  # T5 d_model = the IF UNet's encoder_hid_dim (projected to cross_attention_dim)
W_DIM = 16  # LCM time_cond_proj_dim


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte → printable-character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def tiny_tokenizer(max_length: int = MAX_LENGTH):
    """A ``CLIPTokenizer`` from a hand-written vocab.json (512 byte tokens + BOS/EOS) and an empty merges.txt."""
    from transformers import CLIPTokenizer

    chars = list(_bytes_to_unicode().values())
    vocab = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}))
        (Path(d) / "merges.txt").write_text("#version: 0.2\n")
        return CLIPTokenizer(str(Path(d) / "vocab.json"), str(Path(d) / "merges.txt"), model_max_length=max_length)


def _frozen(module):
    return module.requires_grad_(False).eval()


def tiny_text_encoder(family: str, vocab_size: int = 514):
    """CLIPTextModel (sd, lcm) or T5EncoderModel (if) from a small config (weights: the current RNG)."""
    if family == "if":
        from transformers import T5Config, T5EncoderModel

        cfg = T5Config(vocab_size=vocab_size, d_model=T5_DIM, d_kv=6, d_ff=48, num_layers=2, num_heads=4,
                       pad_token_id=513, eos_token_id=513, decoder_start_token_id=0)
        return _frozen(T5EncoderModel(cfg))
    from transformers import CLIPTextConfig, CLIPTextModel

    cfg = CLIPTextConfig(vocab_size=vocab_size, hidden_size=TEXT_DIM, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=MAX_LENGTH, bos_token_id=512,
                         eos_token_id=513, pad_token_id=513)
    return _frozen(CLIPTextModel(cfg))


def tiny_unet(family: str):
    """A two-level UNet2DConditionModel of the family's layout (weights: the current RNG)."""
    from diffusers import UNet2DConditionModel

    common = dict(layers_per_block=1, block_out_channels=(16, 32), norm_num_groups=8, attention_head_dim=4,
                  down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                  up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=TEXT_DIM)
    if family == "if":  # pixels, learned variance, T5 embeddings projected by encoder_hid_dim
        unet = UNet2DConditionModel(sample_size=8, in_channels=3, out_channels=6, encoder_hid_dim=T5_DIM, **common)
    elif family == "lcm":
        unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, time_cond_proj_dim=W_DIM, **common)
    else:
        unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, **common)
    return _frozen(unet)


def tiny_vae():
    """An AutoencoderKL with 4 latent channels and a factor-2 decoder (8 × 8 latents ↔ 16 × 16 pixels)."""
    from diffusers import AutoencoderKL

    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16),
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        layers_per_block=1, norm_num_groups=8, sample_size=16, scaling_factor=0.18215)
    return _frozen(vae)


def tiny_scheduler(family: str):
    """The family's diffusers scheduler (its ᾱ table, DDIM offsets, LCM timesteps), as the real pipelines use."""
    from diffusers import DDIMScheduler, DDPMScheduler, LCMScheduler

    if family == "if":
        return DDPMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type="epsilon")
    if family == "lcm":
        return LCMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", original_inference_steps=50,
                            timestep_scaling=10.0, prediction_type="epsilon")
    return DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1,
                         set_alpha_to_one=False, clip_sample=False, prediction_type="epsilon")


def tiny_pipeline(family: str, seed: int = 0, *, num_steps: int | None = None):
    """A seeded tiny :class:`~lococourse.editing.tloco.T2IPipeline` of a family ("sd", "if", "lcm"; or "tiny-sd", …).

    The weights are random (``torch.manual_seed(seed)`` in a forked RNG: the global RNG is untouched).
    ``num_steps``: DDIM steps (default 20 for sd/if, to keep CPU runs short; the paper uses 100) or LCM
    steps (default 4).
    """

    family = TINY_MODELS.get(family, family)
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; tiny pipelines exist for {', '.join(FAMILIES)} "
                         f"(or the names {', '.join(TINY_MODELS)})")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        tokenizer = tiny_tokenizer()
        text_encoder = tiny_text_encoder(family)
        unet = tiny_unet(family)
        vae = None if family == "if" else tiny_vae()
    steps = num_steps if num_steps is not None else (4 if family == "lcm" else 20)
    return T2IPipeline(family, unet, vae, text_encoder, tokenizer, tiny_scheduler(family), name=f"tiny-{family}",
                       num_steps=steps)
