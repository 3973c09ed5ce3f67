"""The generalized power method (Algorithm 2 of Chen et al. 2024): top-k singular triplets of a Jacobian, matrix-free."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal

import torch

from lococourse.core.checks import check_finite, check_positive_int, check_real
from lococourse.core.interfaces import PMP, LinearOperator
from lococourse.jacobian.operator import JacobianOperator
from lococourse.jacobian.subspace import subspace_distance


# ---------------------------------------------------------------------------------------- power method
@dataclass
class TopSVD:
    """Top-k singular triplets J ≈ U diag(S) Vᵀ of a Jacobian, with how they were found."""

    S: torch.Tensor  # (k,)
    U: torch.Tensor  # (d_out, k)
    V: torch.Tensor  # (d_in, k)
    shape_in: tuple
    shape_out: tuple
    n_iter: int
    converged: bool
    history: list = field(default_factory=list)  # successive-subspace distance per iteration

    def v(self, i: int) -> torch.Tensor:
        """The i-th right singular vector as an image of shape ``shape_in``."""
        return self.V[:, i].reshape(self.shape_in)

    def u(self, i: int) -> torch.Tensor:
        """The i-th left singular vector as an image of shape ``shape_out``."""
        return self.U[:, i].reshape(self.shape_out)


def _sign_fix(U: torch.Tensor, V: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Make the largest-magnitude entry of each v_i positive (and flip u_i with it)."""
    idx = V.abs().argmax(dim=0)
    s = torch.sign(V[idx, torch.arange(V.shape[1])])
    s[s == 0] = 1
    return U * s, V * s


def _warm_start(V0, shape_in: tuple, d_in: int, dtype: torch.dtype) -> torch.Tensor:
    """A warm start as a d_in × k matrix: from a d_in × k matrix (``TopSVD.V``) or k directions (k, *S_in)."""
    V0 = torch.as_tensor(V0)
    if V0.dim() == 2 and V0.shape[0] == d_in:
        V = V0
    elif V0.dim() == len(shape_in) + 1 and tuple(V0.shape[1:]) == tuple(shape_in):
        V = V0.reshape(V0.shape[0], d_in).T  # batch-first directions are columns of V
    else:
        raise ValueError(f"V0 must be a d_in × k matrix (d_in = {d_in}) or k directions of shape "
                         f"(k, *{tuple(shape_in)}); got {tuple(V0.shape)}")
    check_finite(V, "V0")
    return V.to(dtype)


def _change(a: torch.Tensor, b: torch.Tensor) -> float:
    """min(‖b − a‖, ‖b + a‖) / ‖b‖: the relative change of a monitored vector, blind to its sign."""
    nb = float(torch.linalg.norm(b))
    if nb == 0:
        return 0.0 if float(torch.linalg.norm(a)) == 0 else 1.0
    return min(float(torch.linalg.norm(b - a)), float(torch.linalg.norm(b + a))) / nb


def power_method(
    f: PMP | LinearOperator,
    x: torch.Tensor | None = None,
    k: int = 5,
    *,
    seed: int = 0,
    max_iter: int = 100,
    tol: float = 1e-4,
    V0: torch.Tensor | None = None,
    oversample: int = 0,
    stop: Literal["tail", "step"] = "tail",
    monitor: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> TopSVD:
    """Top-k singular triplets of J = ∂f/∂x by the generalized power method (Algorithm 2 of Chen et al. 2024).

    Subspace iteration on JᵀJ, matrix-free:
      1. y ← f(x) (once: the operator stores the forward pass);  V ← QR(V0 or seeded Gaussian)
      2. repeat: U ← J V (one batched JVP);  V̂ ← Jᵀ U (one batched VJP);  V, Σ², · ← SVD(V̂)
      3. finish with a Rayleigh–Ritz step: J V = Ũ Σ Wᵀ, V ← V W, U ← Ũ; sign-fix.

    Stopping, with δ_i the sine of the largest principal angle between successive top-k bases:
    ``stop="step"`` stops when δ_i < tol; ``stop="tail"`` (default) estimates the distance still to
    go from the observed contraction ρ = δ_i/δ_{i−1} as δ_i ρ/(1 − ρ) and stops when that is < tol.
    ``V0`` (warm start) is a d_in × k' matrix such as a previous ``TopSVD.V``, or k' directions of shape
    (k', *S_in); k' < k + oversample is padded with seeded random columns.
    ``oversample`` extra columns speed convergence from (σ_{k+1}/σ_k)² to (σ_{k+p+1}/σ_k)² per step.
    ``monitor``: stop on what the caller needs instead of the whole top-k subspace — δ_i is then the relative change
    ‖m(V_i) − m(V_{i−1})‖ / ‖m(V_i)‖ (up to sign) of ``monitor(V)`` (V: d_in × p, current basis), e.g. one singular
    vector, or a vector projected off span(V).  Where σ_k ≈ σ_{k+1} (no gap at k) the subspace never settles but
    such a quantity may: the stopping rule then measures the accuracy that matters.
    """
    op = f if isinstance(f, LinearOperator) else JacobianOperator(f, x)
    d_in = op.d_in
    check_positive_int(k, "k", upper=min(d_in, op.d_out), upper_name="the dimension d")
    if oversample < 0:
        raise ValueError(f"oversample must be ≥ 0; got {oversample}")
    check_positive_int(max_iter, "max_iter")
    check_real(tol, "tol", low=0, low_open=True)
    p = min(k + oversample, d_in, op.d_out)
    dtype = op.dtype
    # Step 1: an orthonormal start.
    if V0 is None:
        g = torch.Generator().manual_seed(seed)
        V = torch.randn(d_in, p, generator=g, dtype=torch.float64).to(dtype)
    else:
        V = _warm_start(V0, op.shape_in, d_in, dtype)
        if V.shape[1] < p:  # pad a warm start with seeded random columns
            g = torch.Generator().manual_seed(seed)
            V = torch.cat([V, torch.randn(d_in, p - V.shape[1], generator=g, dtype=torch.float64).to(dtype)], 1)
        V = V[:, :p]
    V = torch.linalg.qr(V)[0]
    history: list[float] = []
    converged = False
    n_iter = 0
    # Step 2: subspace iteration.
    for n_iter in range(1, max_iter + 1):
        U = op.mv(V.T.reshape(p, *op.shape_in))  # (p, *S_out) = (J V)ᵀ
        V_hat = op.rmv(U).reshape(p, d_in).T  # (d_in, p) = Jᵀ J V
        V_new = torch.linalg.svd(V_hat, full_matrices=False)[0]
        delta = subspace_distance(V[:, :k], V_new[:, :k]) if monitor is None else _change(monitor(V), monitor(V_new))
        history.append(delta)
        V = V_new
        if stop == "step":
            done = delta < tol
        elif stop == "tail":
            if len(history) >= 2 and history[-2] > 0:
                rho = min(max(history[-1] / history[-2], history[-2] / history[-3] if len(history) >= 3 and history[-3] > 0 else 0.0), 0.999)
                done = delta * rho / (1 - rho) < tol
            else:
                done = delta == 0.0
        else:
            raise ValueError(f"stop must be 'tail' or 'step'; got {stop!r}")
        if done:
            converged = True
            break
    # Step 3: Rayleigh–Ritz on span(V) and orthonormal U.
    JV = op.mv(V.T.reshape(p, *op.shape_in)).reshape(p, op.d_out).T  # (d_out, p)
    Ut, St, Wt = torch.linalg.svd(JV, full_matrices=False)
    V = V @ Wt.T
    U, V = _sign_fix(Ut[:, :k], V[:, :k])
    return TopSVD(St[:k].detach(), U.detach(), V.detach(), op.shape_in, op.shape_out, n_iter, converged, history)


