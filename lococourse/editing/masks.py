"""Masks Ω for local edits (Algorithm 1): rectangles, ellipses, arrays and images, validated.

A mask is a boolean tensor of the image's spatial shape (H, W), True inside Ω; it applies to every
channel.  :func:`as_mask` turns any accepted form into one, and refuses empty, all-true and
wrongly-sized masks with a message that names the value and what is allowed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from lococourse.data.images import read_image
from lococourse.jacobian.operator import check_mask

__all__ = ["rectangle", "ellipse", "as_mask", "parse_mask"]


def _check_size(size: Sequence[int]) -> tuple[int, int]:
    if len(size) != 2 or any(int(s) < 1 for s in size):
        raise ValueError(f"size must be (H, W) with H, W ≥ 1; got {tuple(size)}")
    return int(size[0]), int(size[1])


def rectangle(size: Sequence[int], x0: float, y0: float, x1: float, y1: float) -> torch.Tensor:
    """Pixels (x, y) with x0 ≤ x < x1 and y0 ≤ y < y1 (x = column, y = row), as an (H, W) mask."""
    H, W = _check_size(size)
    if not (0 <= x0 < x1 <= W and 0 <= y0 < y1 <= H):
        raise ValueError(f"rectangle ({x0}, {y0}, {x1}, {y1}) must satisfy 0 ≤ x0 < x1 ≤ W = {W} "
                         f"and 0 ≤ y0 < y1 ≤ H = {H}")
    yy, xx = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    return (xx >= x0) & (xx < x1) & (yy >= y0) & (yy < y1)


def ellipse(size: Sequence[int], cx: float, cy: float, rx: float, ry: float) -> torch.Tensor:
    """Pixel centres inside the ellipse ((x−cx)/rx)² + ((y−cy)/ry)² ≤ 1, as an (H, W) mask."""
    H, W = _check_size(size)
    if rx <= 0 or ry <= 0:
        raise ValueError(f"ellipse radii must be positive; got rx = {rx}, ry = {ry}")
    yy, xx = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    return ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1


def as_mask(mask, size: Sequence[int]) -> torch.Tensor:
    """A validated (H, W) boolean mask from a tensor/array (bool, or 0/1 values), or an image file path.

    Image files are read as grey levels, True where the level is above half the maximum.
    """
    H, W = _check_size(size)
    if isinstance(mask, (str, Path)):
        p = Path(mask)
        if not p.exists():
            raise FileNotFoundError(f"mask image {p} does not exist")
        img = read_image(p, channels=1)[0][..., 0]
        mask = torch.from_numpy(img > img.max() / 2 if img.max() > 0 else img > 0)
    m = torch.as_tensor(np.asarray(mask) if not torch.is_tensor(mask) else mask)
    if m.dtype != torch.bool:
        vals = torch.unique(m)
        if not bool(((vals == 0) | (vals == 1)).all()):
            raise ValueError(f"a mask must be boolean or hold only 0 and 1; got values {vals[:6].tolist()}")
        m = m.bool()
    if m.dim() == 3 and m.shape[0] == 1:
        m = m[0]
    if tuple(m.shape) != (H, W):
        raise ValueError(f"mask must have the image's spatial size (H, W) = {(H, W)}; got {tuple(m.shape)}")
    return check_mask(m, (H, W))


def parse_mask(spec: str, size: Sequence[int], named: dict | None = None) -> torch.Tensor:
    """A mask from a command-line string: a name in ``named`` (e.g. a face part), ``x0,y0,x1,y1``, or a path."""
    named = named or {}
    if spec in named:
        return as_mask(named[spec], size)
    parts = spec.split(",")
    if len(parts) == 4:
        try:
            return rectangle(size, *[float(p) for p in parts])
        except ValueError as e:
            if "rectangle" in str(e):
                raise
    if Path(spec).exists():
        return as_mask(spec, size)
    allowed = ", ".join(sorted(named)) or "none for this model"
    raise ValueError(f"mask {spec!r} is neither a named mask ({allowed}), nor x0,y0,x1,y1, nor an image file")
