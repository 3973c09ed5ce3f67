"""Edit quality, measured: how much an edit changes inside vs outside its mask, and how linear and
composable it is.  Images are tensors (C, H, W) (or batches (B, C, H, W)) in [-1, 1]; masks (H, W) bool.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

__all__ = ["leakage", "psnr_outside", "ssim_outside", "linearity_r2", "composability", "edit_report"]


def _pair(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if a.shape != b.shape:
        raise ValueError(f"images must have the same shape; got {tuple(a.shape)} and {tuple(b.shape)}")
    mask = torch.as_tensor(mask, dtype=torch.bool)
    if tuple(mask.shape) != tuple(a.shape[-2:]):
        raise ValueError(f"mask must have the images' spatial size {tuple(a.shape[-2:])}; got {tuple(mask.shape)}")
    if not mask.any() or mask.all():
        raise ValueError("mask must be neither empty nor all true")
    return a.double(), b.double(), mask


def leakage(original: torch.Tensor, edited: torch.Tensor, mask: torch.Tensor) -> float:
    """‖Δ_out‖/‖Δ_in‖ per pixel: RMS change outside Ω over RMS change inside Ω (0 = perfectly local)."""
    a, b, m = _pair(original, edited, mask)
    d = (b - a) ** 2
    rms_in = d[..., m].mean().sqrt()
    rms_out = d[..., ~m].mean().sqrt()
    return float(rms_out / rms_in) if rms_in > 0 else float("inf")


def psnr_outside(original: torch.Tensor, edited: torch.Tensor, mask: torch.Tensor, data_range: float = 2.0) -> float:
    """PSNR (dB) of the edited image against the original over the pixels outside Ω."""
    a, b, m = _pair(original, edited, mask)
    mse = ((b - a) ** 2)[..., ~m].mean()
    return float("inf") if mse == 0 else float(10 * torch.log10(data_range ** 2 / mse))


def ssim_outside(original: torch.Tensor, edited: torch.Tensor, mask: torch.Tensor, data_range: float = 2.0) -> float:
    """SSIM (scikit-image, 7×7 windows) between the original and the edited image with Ω pasted back
    from the original — so only changes outside Ω count, and windows straddling the border see no
    change from inside Ω."""
    from skimage.metrics import structural_similarity

    a, b, m = _pair(original, edited, mask)
    if a.dim() != 3:
        raise ValueError(f"ssim_outside takes single images (C, H, W); got {tuple(a.shape)}")
    win = min(7, *(s if s % 2 else s - 1 for s in a.shape[-2:]))
    b = torch.where(m, a, b)
    return float(structural_similarity(a.numpy(), b.numpy(), data_range=data_range, channel_axis=0, win_size=win))


def linearity_r2(strengths: Sequence[float], changes: np.ndarray) -> float:
    """R² of a straight-line fit of a measured change (e.g. a factor, or the projection of the image
    change on its largest-λ change) against λ: 1 = the edit is exactly linear in its strength."""
    x = np.asarray(strengths, dtype=float)
    y = np.asarray(changes, dtype=float)
    if x.shape != y.shape or len(x) < 3:
        raise ValueError(f"need ≥ 3 strengths and one change per strength; got {x.shape} and {y.shape}")
    A = np.stack([x, np.ones_like(x)], 1)
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    ss_res = float(((y - A @ coef) ** 2).sum())
    ss_tot = float(((y - y.mean()) ** 2).sum())
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")


def composability(reference: torch.Tensor, composite: torch.Tensor, parts: Sequence[torch.Tensor]) -> float:
    """How close the composite edit is to the sum of its parts: ‖Δ_comp − Σ Δ_i‖ / ‖Σ Δ_i‖ (0 = additive)."""
    ref = reference.double()
    summed = sum(p.double() - ref for p in parts)
    denom = torch.linalg.norm(summed)
    return float(torch.linalg.norm(composite.double() - ref - summed) / denom) if denom > 0 else float("nan")


def edit_report(original: torch.Tensor, edited: torch.Tensor, mask: torch.Tensor) -> dict:
    """The mask-based metrics of one edit, rounded for display."""
    return {"leakage": round(leakage(original, edited, mask), 4),
            "psnr_outside_db": round(psnr_outside(original, edited, mask), 2),
            "ssim_outside": round(ssim_outside(original, edited, mask), 4)}
