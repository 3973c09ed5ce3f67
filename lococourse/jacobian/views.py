"""Views of one Jacobian J = ∂f/∂x_t at x_t: fixed linear maps of its output that share J's one forward pass.

Algorithm 1 needs ∇P_Ω f (step 4) and ∇P_{Ω^c} f (step 5) for a mask Ω; its ablations (Appendix G.2) need the
unmasked ∇f and ∂ε/∂x_t.  All are J followed by a fixed linear map of the output, so one
:class:`~lococourse.jacobian.operator.JacobianOperator` (one forward pass, one stored backward graph) serves all:

    P_Ω J v = m ⊙ (J v),   (P_Ω J)ᵀ u = Jᵀ (m ⊙ u),   ∂ε/∂x_t = (I − √ᾱ J)/√(1−ᾱ)

(ε̂ = (x_t − √ᾱ x̂₀)/√(1−ᾱ), eq. 2, holds for every parameterisation).  :func:`pooled` is the other output
map T-LOCO uses at real sizes: an average-pooled PMP output (a lower-resolution Jacobian).
"""
from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F

from lococourse.core.checks import check_positive_int
from lococourse.core.interfaces import PMP, LinearOperator
from lococourse.jacobian.operator import JacobianOperator, check_mask

__all__ = ["OperatorView", "RowMaskedView", "JacobianViews", "pooled"]


class OperatorView:
    """P_mask J (``mask``), or P_mask ∂ε/∂x_t (``alpha_bar`` given), on a base operator: no forward pass of its own.

    A :class:`~lococourse.core.interfaces.LinearOperator` like its base.  ``mask=None``: no output mask.
    """

    def __init__(self, base: LinearOperator, mask: torch.Tensor | None = None, alpha_bar: float | None = None):
        if alpha_bar is not None and not 0 < alpha_bar < 1:
            raise ValueError(f"alpha_bar (ᾱ at the PMP's time) must lie in (0, 1); got {alpha_bar!r}")
        self.base = base
        self.shape_in, self.shape_out, self.d_in, self.d_out = base.shape_in, base.shape_out, base.d_in, base.d_out
        self.dtype = base.dtype
        self.m = None if mask is None else check_mask(torch.as_tensor(mask), base.shape_out).to(base.dtype)
        self.alpha_bar = alpha_bar

    def mv(self, V: torch.Tensor) -> torch.Tensor:
        """(P_mask J) V, or (P_mask ∂ε/∂x_t) V: (k, *S_in) → (k, *S_out)."""
        U = self.base.mv(V)
        if self.alpha_bar is not None:
            U = (V.to(U.dtype) - math.sqrt(self.alpha_bar) * U) / math.sqrt(1 - self.alpha_bar)
        return U if self.m is None else U * self.m

    def rmv(self, U: torch.Tensor) -> torch.Tensor:
        """(P_mask J)ᵀ U = Jᵀ (m ⊙ U), or the same for ∂ε/∂x_t: (k, *S_out) → (k, *S_in)."""
        U = U if self.m is None else U * self.m
        out = self.base.rmv(U)
        if self.alpha_bar is not None:
            out = (U.to(out.dtype) - math.sqrt(self.alpha_bar) * out) / math.sqrt(1 - self.alpha_bar)
        return out


class RowMaskedView(OperatorView):
    """P masked views of one base operator at once, row i of a batch through mask i: (P_{mask_i} J)_{i=1…P}.

    ``mv`` maps (P, *S_in) → (P, *S_out) with one base J·V call for all P rows (``rmv`` likewise), so P separate
    problems — the complement of each part of an image — run as one batch.  A row-wise LinearOperator for
    :func:`~lococourse.jacobian.subspace.ridge_project_rows`.
    """

    def __init__(self, base: LinearOperator, masks, alpha_bar: float | None = None):
        super().__init__(base, None, alpha_bar)
        masks = list(masks)
        if not masks:
            raise ValueError("RowMaskedView needs at least one mask")
        self.m = torch.stack([check_mask(torch.as_tensor(mk), base.shape_out) for mk in masks]).to(base.dtype)
        self.rows = len(masks)

    def _check_rows(self, X: torch.Tensor) -> None:
        if X.shape[0] != self.rows:
            raise ValueError(f"this view has {self.rows} masks, one per row; got {X.shape[0]} rows")

    def mv(self, V: torch.Tensor) -> torch.Tensor:
        self._check_rows(V)
        return super().mv(V)

    def rmv(self, U: torch.Tensor) -> torch.Tensor:
        self._check_rows(U)
        return super().rmv(U)


class JacobianViews:
    """One linearisation of a PMP f at x_t (:class:`JacobianOperator`), seen through output masks.

    ``view(mask)`` is P_mask J, ``view(mask, eps=True)`` P_mask ∂ε/∂x_t; ``seconds`` is the shared cost of the
    forward pass, which every view reuses.
    """

    def __init__(self, f: PMP, x_t: torch.Tensor, alpha_bar: float | None = None, *, chunk: int | None = None,
                 forward_mode: str = "transpose"):
        t0 = time.perf_counter()
        self.base = JacobianOperator(f, x_t, forward_mode=forward_mode, chunk=chunk)
        self.seconds = time.perf_counter() - t0
        self.alpha_bar = alpha_bar

    def view(self, mask: torch.Tensor | None = None, eps: bool = False) -> OperatorView:
        """P_mask J, or P_mask ∂ε/∂x_t (``eps=True``, needs ``alpha_bar``)."""
        if eps and self.alpha_bar is None:
            raise ValueError("∂ε/∂x_t needs alpha_bar (ᾱ at the PMP's time)")
        return OperatorView(self.base, mask, self.alpha_bar if eps else None)

    def rows(self, masks, eps: bool = False) -> RowMaskedView:
        """P_{mask_i} J for row i of a batch (:class:`RowMaskedView`), or the same of ∂ε/∂x_t (``eps=True``)."""
        if eps and self.alpha_bar is None:
            raise ValueError("∂ε/∂x_t needs alpha_bar (ᾱ at the PMP's time)")
        return RowMaskedView(self.base, masks, self.alpha_bar if eps else None)


def pooled(f: PMP, pool: int) -> PMP:
    """x ↦ avg_pool(f(x), pool): a lower-resolution PMP output for the Jacobian (the PMP itself runs in full)."""
    check_positive_int(pool, "jacobian_pool")
    if pool == 1:
        return f

    def f_pooled(x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(f(x), pool)

    f_pooled.t = getattr(f, "t", None)
    return f_pooled
