"""Local linearity of a PMP along a direction (eq. 4 of Chen et al. 2024): f(x + λΔx) against f(x) + λ J Δx."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch.func import jvp as _jvp

from lococourse.core.checks import check_finite
from lococourse.core.interfaces import PMP
from lococourse.jacobian.operator import check_point, single_image


# ---------------------------------------------------------------------------------------- linearity
@dataclass
class Linearity:
    """Eq. 4 diagnostics over a list of λ: f(x + λΔx) against l(x; λΔx) = f(x) + λ J Δx."""

    lambdas: torch.Tensor
    norm_ratio: torch.Tensor  # ‖f(x+λΔx)‖ / ‖l(x;λΔx)‖
    cosine: torch.Tensor  # cos ∠(f(x+λΔx), l(x;λΔx))
    error: torch.Tensor  # ‖f(x+λΔx) − l(x;λΔx)‖ (raw)


def local_linearity(f: PMP, x: torch.Tensor, dx: torch.Tensor, lambdas: Sequence[float]) -> Linearity:
    """Local linearity of the PMP along a direction Δx (normalised to unit length), eq. 4 of Chen et al. 2024."""
    x = check_point(x)
    if tuple(dx.shape) != tuple(x.shape):
        raise ValueError(f"dx must have the shape of x_t {tuple(x.shape)}; got {tuple(dx.shape)}")
    check_finite(dx, "dx")
    n = torch.linalg.norm(dx)
    if n == 0:
        raise ValueError("dx must be a non-zero direction; got the zero vector")
    dx = (dx / n).to(x.dtype)
    lam = torch.as_tensor(lambdas, dtype=x.dtype).flatten()
    if lam.numel() == 0:
        raise ValueError(f"lambdas must hold at least one step size λ; got {list(lambdas)!r}")
    check_finite(lam, "lambdas")
    f0, Jdx = _jvp(single_image(f), (x,), (dx,))
    with torch.no_grad():
        fl = f(x.unsqueeze(0) + lam.reshape(-1, *[1] * x.dim()) * dx)  # (L, *S)
    lin = f0.unsqueeze(0) + lam.reshape(-1, *[1] * x.dim()) * Jdx  # (L, *S)
    fl, lin = fl.reshape(len(lam), -1).double(), lin.reshape(len(lam), -1).double()
    nf, nl = fl.norm(dim=1), lin.norm(dim=1)
    return Linearity(lam.double(), nf / nl, (fl * lin).sum(1) / (nf * nl), (fl - lin).norm(dim=1))
