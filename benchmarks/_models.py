"""The benchmark's model: a small diffusers ``UNet2DModel`` briefly trained on image-shaped MoLRG data,
cached under ``runs/bench_unet/`` (git-ignored), and its posterior-mean predictor (PMP) at a time t:

    x̂₀ = (x_t − √(1−ᾱ) ε̂(x_t, k)) / √ᾱ,     k = round(t·T) − 1,  ᾱ = alphas_cumprod[k]      (Tweedie)

with ε̂ = ε_θ for an ε-prediction network and ε̂ = √(1−ᾱ) x_t + √ᾱ v_θ for a v-prediction one
(then x̂₀ = √ᾱ x_t − √(1−ᾱ) v_θ: the same function).  Written inline on purpose: the benchmark does
not depend on lococourse's adapters.

The data is a MoLRG with one class of rank 5 whose basis is five smooth images (low-frequency 2-D
cosines, one colour pattern each), samples scaled by SCALE = 10 (per-pixel std ≈ 0.4, like images in
[−1, 1]).  Its exact PMP has J = s²√ᾱ/(s²ᾱ + 1 − ᾱ) · M Mᵀ ≈ 3.2 P at t = 0.5: rank 5, a gap at 5
(and, as Lemma 2 says for one class, five equal singular values; the trained net splits them a little).

Why not the obvious choice, measured at t = 0.5 after 1000 steps (see benchmarks/README.md):
  * ε-prediction on unit-variance ``MoLRG.random`` data (five rank-1 classes): the data's singular
    values √ᾱ π_k ≈ 0.03–0.08 drown under network errors, which x̂₀ amplifies by √(1−ᾱ)/√ᾱ ≈ 3.4; and
    GroupNorm makes the UNet ignore the per-channel mean of x_t, and an ignored direction gives
    J = 1/√ᾱ ≈ 3.6 under ε-prediction, the largest value any data direction can reach.  Spectrum
    3.38 2.94 2.47 2.05 | 0.99 0.97 …: three DC images and an artefact, a gap at 4 made by the net.
  * v-prediction (an ignored direction gives J = √ᾱ ≈ 0.28 instead) on scaled ``MoLRG.random`` data:
    a small convolutional UNet does not learn projections onto random dense 3072-pixel bases in a
    short fit: three rank-5 classes gave a flat 1.36 1.22 1.19 1.14 1.09 1.05 …; one rank-5 class
    gave a gap at 4 of directions that are not the data's.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch

from lococourse.core.schedule import SCHEDULE
from lococourse.models.train import TrainConfig, UNetConfig, train
from lococourse.theory.molrg import MoLRG

ROOT = Path(__file__).resolve().parents[1]
RUN_DIR = ROOT / "runs" / "bench_unet"

SHAPE = (3, 32, 32)
SCALE = 10.0
#: (vertical, horizontal) cosine frequencies and RGB colour pattern of the five basis images
_FREQS = [(0, 1), (1, 0), (1, 1), (0, 2), (2, 0)]
_COLOURS = [[1, 1, 1], [1, -1, 0], [1, 1, -2], [1, 0, -1], [1, 1, 1]]

TRAIN = TrainConfig(
    unet=UNetConfig(sample_size=32, block_out_channels=(16, 32, 32), add_attention=False), prediction_type="v_prediction",
    steps=1000, batch_size=64, lr=2e-3, warmup=50, ema_decay=0.99, seed=0, checkpoint_every=100,
)


def smooth_basis() -> torch.Tensor:
    """Five orthonormal smooth images as columns, (3072, 5), float64: c ⊗ cos_a ⊗ cos_b (2-D DCT-II)."""
    def dct1(n: int, k: int) -> torch.Tensor:
        v = torch.cos(math.pi * (torch.arange(n, dtype=torch.float64) + 0.5) * k / n)
        return v / v.norm()

    cols = []
    for (a, b), c in zip(_FREQS, torch.tensor(_COLOURS, dtype=torch.float64)):
        img = (c / c.norm())[:, None, None] * torch.outer(dct1(SHAPE[1], a), dct1(SHAPE[2], b))[None]
        cols.append(img.reshape(-1))
    return torch.linalg.qr(torch.stack(cols, 1))[0]


def molrg() -> MoLRG:
    """The (unscaled) MoLRG: one class, rank 5, basis :func:`smooth_basis`."""
    return MoLRG([smooth_basis()], SHAPE)


def sampler(data: MoLRG):
    """(batch size, generator) → x₀ = SCALE · (MoLRG sample), shape (B, 3, 32, 32), float32."""
    return lambda n, g: (SCALE * data.sample(n, g)[0]).float()


def trained_unet(run_dir: Path = RUN_DIR, log=print):
    """The EMA UNet after ``TRAIN.steps`` steps: trained once (a few minutes on 2 CPU cores), then loaded."""
    from diffusers import UNet2DModel

    state = run_dir / "state.json"
    done = state.exists() and json.loads(state.read_text())["step"] >= TRAIN.steps
    if not done:
        t0 = time.time()
        log(f"training the benchmark UNet ({TRAIN.steps} steps) into {run_dir} ...")
        summary = train(TRAIN, sampler(molrg()), run_dir, log=log, log_every=50)
        log(f"trained: {summary['params']:,} parameters, final loss {summary['final_loss']:.4f}, "
            f"{time.time() - t0:.0f} s")
    unet = UNet2DModel.from_pretrained(run_dir / "model")
    return freeze(unet)


class PlainAttnProcessor:
    """Self-attention of a ``UNet2DModel`` block in plain matmul + softmax (no fused kernel, no baddbmm).

    diffusers' default processor calls the fused ``scaled_dot_product_attention``, which has no
    forward-mode AD rule on CPU; its classic ``AttnProcessor`` uses ``baddbmm`` on an empty tensor,
    which crashes ``torch.func.linearize``'s tracer (torch 2.13).  This is the same function,
    softmax(Q Kᵀ · scale) V with group norm, output projection and residual, returned contiguous
    (the next GroupNorm views its input).  :func:`freeze` checks it against the default processor.
    """

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None):
        if encoder_hidden_states is not None or attention_mask is not None or attn.spatial_norm is not None:
            raise NotImplementedError("PlainAttnProcessor covers UNet2DModel self-attention only")
        residual = hidden_states
        b, c, h, w = hidden_states.shape
        hs = hidden_states.reshape(b, c, h * w).transpose(1, 2)  # (B, N, C)
        if attn.group_norm is not None:
            hs = attn.group_norm(hs.transpose(1, 2)).transpose(1, 2)
        q, k, v = (z.reshape(b, h * w, attn.heads, -1).transpose(1, 2) for z in (attn.to_q(hs), attn.to_k(hs), attn.to_v(hs)))
        out = torch.softmax((q @ k.transpose(-1, -2)) * attn.scale, dim=-1) @ v  # (B, heads, N, d_head)
        out = attn.to_out[1](attn.to_out[0](out.transpose(1, 2).reshape(b, h * w, -1)))
        out = out.transpose(1, 2).reshape(b, c, h, w)
        if attn.residual_connection:
            out = out + residual
        return (out / attn.rescale_output_factor).contiguous()


def freeze(unet):
    """Frozen (requires_grad False), eval mode, attention through :class:`PlainAttnProcessor`.

    ``UNet2DModel``'s mid-block has one self-attention layer by default (``add_attention=True``;
    lococourse.models.train.build_unet keeps it).  The swap is checked: same output to 1e-5.
    """
    from diffusers.models.attention_processor import Attention

    unet.requires_grad_(False).eval()
    x = torch.randn(2, unet.config.in_channels, 16, 16, generator=torch.Generator().manual_seed(0))
    k = torch.tensor([100, 700])
    with torch.no_grad():
        before = unet(x, k).sample
        for m in unet.modules():
            if isinstance(m, Attention):
                m.set_processor(PlainAttnProcessor())
        after = unet(x, k).sample
    err = float((before - after).abs().max() / before.abs().max())
    if err > 1e-5:
        raise RuntimeError(f"PlainAttnProcessor disagrees with diffusers' processor: relative error {err:.2e}")
    return unet


class PMP(torch.nn.Module):
    """x_t ↦ x̂₀ of an ε- or v-prediction UNet at time t: (B, C, H, W) → (B, C, H, W), network frozen."""

    def __init__(self, unet, t: float, prediction_type: str = TRAIN.prediction_type):
        super().__init__()
        if prediction_type not in ("epsilon", "v_prediction"):
            raise ValueError(f"prediction_type must be 'epsilon' or 'v_prediction'; got {prediction_type!r}")
        self.unet, self.t, self.prediction_type = unet, float(t), prediction_type
        k = SCHEDULE.timestep_of_t(t)
        ab = SCHEDULE.alphas_cumprod[k]
        self.register_buffer("timestep", k.reshape(()), persistent=False)
        self.sqrt_ab, self.sqrt_1mab = float(ab.sqrt()), float((1 - ab).sqrt())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.unet(x, self.timestep).sample
        eps = out if self.prediction_type == "epsilon" else self.sqrt_1mab * x + self.sqrt_ab * out
        return (x - self.sqrt_1mab * eps) / self.sqrt_ab


def pmp(t: float, unet=None) -> PMP:
    unet = trained_unet() if unet is None else unet
    return PMP(unet, t).requires_grad_(False).eval()


def point(t: float, seed: int = 1) -> torch.Tensor:
    """A test point x_t (3, 32, 32), float32: a (scaled) MoLRG sample noised to time t, seeded."""
    data = molrg()
    g = torch.Generator().manual_seed(seed)
    x0, _ = data.sample(1, g)
    xt, _ = data.noise(SCALE * x0, t, g)
    return xt[0].float()
