"""Input validation shared by every module: clear errors that name the value and what is allowed."""
from __future__ import annotations

import math
from typing import Sequence

import torch


def check_finite(x: torch.Tensor, name: str = "x_t") -> None:
    """Raise ValueError if ``x`` holds NaN or ±inf (nothing is silently cleaned)."""
    if not torch.is_tensor(x):
        raise TypeError(f"{name} must be a torch.Tensor; got {type(x).__name__}")
    if not x.is_floating_point():
        return
    try:
        finite = bool(torch.isfinite(x).all())
    except RuntimeError:
        # Under a torch.func transform or tracing (vmap, linearize) the value is symbolic; the
        # Jacobian engine checks its input point once before it transforms, so skip here.
        return
    if not finite:
        n_nan = int(torch.isnan(x).sum())
        n_inf = int(torch.isinf(x).sum())
        raise ValueError(f"{name} contains {n_nan} NaN and {n_inf} infinite entries; all entries must be finite")


def as_batch(x: torch.Tensor, shape: Sequence[int], name: str = "x_t") -> tuple[torch.Tensor, bool]:
    """View ``x`` of shape ``shape`` or ``(B, *shape)`` as ``(B, *shape)``; also return whether it was unbatched."""
    check_finite(x, name)
    shape = tuple(shape)
    if tuple(x.shape) == shape:
        return x.unsqueeze(0), True
    if x.dim() == len(shape) + 1 and tuple(x.shape[1:]) == shape:
        return x, False
    raise ValueError(f"{name} must have shape {shape} or (B, *{shape}); got {tuple(x.shape)}")


def check_positive_int(value, name: str, *, upper: int | None = None, upper_name: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}")
    if upper is not None and value > upper:
        raise ValueError(f"{name} = {value} exceeds {upper_name or 'the allowed maximum'} = {upper}")
    return value


def check_strength(lam, name: str = "strength λ") -> float:
    """A finite real number (not a bool): an edit strength λ of Algorithm 1 step 9."""
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not math.isfinite(lam):
        raise ValueError(f"{name} must be a finite number; got {lam!r}")
    return float(lam)


def check_index(value, name: str, upper: int, *, low: int = 0, what: str = "") -> int:
    """An integer in low..upper−1 (ranks r, r', singular-vector indices k); names the range when it is not."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value < upper:
        raise ValueError(f"{name} must be an integer with {low} ≤ {name} < {what or upper}"
                         f"{f' = {upper}' if what else ''}; got {value!r}")
    return value
