"""Image-shaped MoLRG data (Assumption 1): x₀ = M_k a reshaped to (C, H, W), via lococourse.theory.molrg.MoLRG."""
from __future__ import annotations

import os
from typing import Sequence

import torch

from lococourse.theory.molrg import MoLRG

__all__ = ["molrg_image_model", "molrg_sampler", "save_molrg", "load_molrg"]


def molrg_image_model(shape: Sequence[int], ranks: Sequence[int], seed: int = 0, weights=None) -> MoLRG:
    """A MoLRG on images of shape (C, H, W) with seeded orthonormal bases of the given ranks."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3:
        raise ValueError(f"shape must be (C, H, W); got {shape}")
    return MoLRG.random(shape, ranks, weights=weights, seed=seed)


def molrg_sampler(model: MoLRG):
    """A training sampler (batch size, generator) → x₀ (B, C, H, W) in float32."""
    def sampler(batch: int, generator: torch.Generator) -> torch.Tensor:
        return model.sample(batch, generator)[0].to(torch.float32)
    return sampler


def save_molrg(model: MoLRG, path) -> None:
    """Write a MoLRG's bases, weights and shape to a safetensors file (float64, exact)."""
    from safetensors.torch import save_file

    tensors = {f"M_{k}": m.contiguous() for k, m in enumerate(model.bases)}
    tensors["weights"] = model.weights.contiguous()
    tensors["shape"] = torch.tensor(model.shape, dtype=torch.int64)
    save_file(tensors, str(path), metadata={"format": "lococourse MoLRG", "K": str(model.K)})
    os.chmod(path, 0o644)  # readable like the other package data


def load_molrg(path) -> MoLRG:
    """Rebuild the exact MoLRG saved by :func:`save_molrg` (for example a course model's molrg_bases.safetensors)."""
    from safetensors.torch import load_file

    t = load_file(str(path))
    K = sum(1 for k in t if k.startswith("M_"))
    return MoLRG([t[f"M_{k}"] for k in range(K)], tuple(t["shape"].tolist()), t["weights"])
