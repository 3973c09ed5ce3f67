"""Masks Ω for local edits (Algorithm 1): rectangles, ellipses, arrays and images, validated.

A mask is a boolean tensor of the image's spatial shape (H, W), True inside Ω; it applies to every
channel.  :func:`as_mask` turns any accepted form into one, and refuses empty, all-true and
wrongly-sized masks with a message that names the value and what is allowed.  Rectangles and ellipses
that cover no pixel centre are refused where they are made (fractions such as ``0.2,0.2,0.8,0.8`` are
not pixels); every conversion of a mask image (colour to grey, grey levels thresholded) is reported in
``notes`` when a list is given.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from lococourse.data.images import read_image
from lococourse.jacobian.operator import check_mask

__all__ = ["rectangle", "ellipse", "as_mask", "parse_mask", "parse_rectangle"]


def _check_size(size: Sequence[int]) -> tuple[int, int]:
    if len(size) != 2 or any(isinstance(s, bool) or int(s) != s or int(s) < 1 for s in size):
        raise ValueError(f"size must be (H, W) with integers H, W ≥ 1; got {tuple(size)}")
    return int(size[0]), int(size[1])


def _finite(name: str, values: Sequence[float]) -> None:
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(v):
            raise ValueError(f"{name} must be finite numbers; got {tuple(values)}")


def rectangle(size: Sequence[int], x0: float, y0: float, x1: float, y1: float) -> torch.Tensor:
    """Pixels (x, y) with x0 ≤ x < x1 and y0 ≤ y < y1 (x = column, y = row), as an (H, W) mask."""
    H, W = _check_size(size)
    _finite("rectangle corners (x0, y0, x1, y1)", (x0, y0, x1, y1))
    if not (0 <= x0 < x1 <= W and 0 <= y0 < y1 <= H):
        raise ValueError(f"rectangle ({x0:g}, {y0:g}, {x1:g}, {y1:g}) must satisfy 0 ≤ x0 < x1 ≤ W = {W} "
                         f"and 0 ≤ y0 < y1 ≤ H = {H} (pixels; x = column)")
    yy, xx = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    m = (xx >= x0) & (xx < x1) & (yy >= y0) & (yy < y1)
    if not bool(m.any()):
        hint = ""
        if x1 <= 1 and y1 <= 1:  # fractions of the image, most likely
            hint = (f"; for the fractions {x0:g}–{x1:g} × {y0:g}–{y1:g} of the image give "
                    f"{round(x0 * W)},{round(y0 * H)},{round(x1 * W)},{round(y1 * H)}")
        raise ValueError(f"rectangle ({x0:g}, {y0:g}, {x1:g}, {y1:g}) covers no pixel: its corners are in pixels "
                         f"(whole columns 0 … {W - 1}, rows 0 … {H - 1}) and it must contain at least one{hint}")
    return m


def ellipse(size: Sequence[int], cx: float, cy: float, rx: float, ry: float) -> torch.Tensor:
    """Pixel centres inside the ellipse ((x−cx)/rx)² + ((y−cy)/ry)² ≤ 1, as an (H, W) mask."""
    H, W = _check_size(size)
    _finite("ellipse (cx, cy, rx, ry)", (cx, cy, rx, ry))
    if rx <= 0 or ry <= 0:
        raise ValueError(f"ellipse radii must be positive; got rx = {rx}, ry = {ry}")
    yy, xx = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    m = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
    if not bool(m.any()):
        raise ValueError(f"ellipse (cx = {cx:g}, cy = {cy:g}, rx = {rx:g}, ry = {ry:g}) contains no pixel centre of "
                         f"the {W}×{H} image (centres at 0.5 … {W - 0.5} × 0.5 … {H - 0.5}); move it inside or enlarge it")
    return m


def _mask_from_image(p: Path, notes: list | None) -> torch.Tensor:
    arr, local = read_image(p, channels=1)
    img = arr[..., 0]
    levels = np.unique(img)
    top = float(img.max())
    if top <= 0:
        raise ValueError(f"mask image {p} is black everywhere: the mask would be empty; white (or any non-zero "
                         "level) marks Ω")
    m = img > top / 2
    if len(levels) > 2:
        local.append(f"{len(levels)} grey levels thresholded at half the brightest ({top / 2:.3f}): "
                     f"{int(m.sum())} of {m.size} pixels in Ω")
    if notes is not None:
        notes.extend(f"mask {p}: {n}" for n in local)
    return torch.from_numpy(m)


def as_mask(mask, size: Sequence[int], *, notes: list | None = None) -> torch.Tensor:
    """A validated (H, W) boolean mask from a tensor/array (bool, or 0/1 values), or an image file path.

    Image files are read as grey levels, True where the level is above half the brightest one (a two-level
    image is taken as it is; more levels are thresholded, with a note in ``notes``).
    """
    H, W = _check_size(size)
    if isinstance(mask, (str, Path)):
        p = Path(mask)
        if not str(mask).strip():
            raise ValueError("mask image path '' is empty; give a mask image file (white = Ω)")
        if not p.exists():
            raise FileNotFoundError(f"mask image {p} does not exist")
        mask = _mask_from_image(p, notes)
    m = torch.as_tensor(np.asarray(mask) if not torch.is_tensor(mask) else mask)
    if m.dtype != torch.bool:
        if m.is_floating_point() and not bool(torch.isfinite(m).all()):
            raise ValueError("a mask must be boolean or hold only 0 and 1; got NaN or infinite values")
        vals = torch.unique(m)
        if not bool(((vals == 0) | (vals == 1)).all()):
            raise ValueError(f"a mask must be boolean or hold only 0 and 1; got values {vals[:6].tolist()}")
        m = m.bool()
    if m.dim() == 3 and m.shape[0] == 1:
        m = m[0]
    if tuple(m.shape) != (H, W):
        raise ValueError(f"mask must have the image's spatial size (H, W) = {(H, W)}; got {tuple(m.shape)}")
    return check_mask(m, (H, W))


def parse_rectangle(spec: str) -> tuple[float, float, float, float] | None:
    """``"x0,y0,x1,y1"`` as four numbers, or None when ``spec`` is not four comma-separated numbers."""
    parts = spec.split(",")
    if len(parts) != 4:
        return None
    try:
        vals = tuple(float(p) for p in parts)
    except ValueError:
        return None
    if not all(math.isfinite(v) for v in vals):
        raise ValueError(f"rectangle {spec!r} must be four finite numbers x0,y0,x1,y1 (pixels; x = column)")
    return vals  # type: ignore[return-value]


def parse_mask(spec: str, size: Sequence[int], named: dict | None = None, *, notes: list | None = None) -> torch.Tensor:
    """A mask from a command-line string: a name in ``named`` (e.g. a face part), ``x0,y0,x1,y1``, or a path.

    Whatever the form, the result is a proper mask (neither empty nor the whole image) of spatial size ``size``."""
    named = named or {}
    if not isinstance(spec, str):
        raise TypeError(f"a mask spec must be a string (a name, x0,y0,x1,y1 or a path); got {type(spec).__name__}")
    allowed = ", ".join(sorted(named)) or "none for this model"
    if not spec.strip():
        raise ValueError(f"mask '' is empty; give a named mask ({allowed}), a rectangle x0,y0,x1,y1 in pixels, "
                         "or a mask image file")
    if spec in named:
        return as_mask(named[spec], size)
    rect = parse_rectangle(spec)
    if rect is not None:
        return as_mask(rectangle(size, *rect), size)
    p = Path(spec)
    if p.is_dir():
        raise ValueError(f"mask {spec!r} is a folder; give a named mask ({allowed}), x0,y0,x1,y1, or a mask image file")
    if p.exists():
        return as_mask(p, size, notes=notes)
    raise ValueError(f"mask {spec!r} is neither a named mask ({allowed}), nor x0,y0,x1,y1, nor an image file")
