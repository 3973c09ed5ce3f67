"""The Jacobian engine: works on any posterior-mean predictor (PMP) f: x_t ↦ x̂₀.

A PMP is a callable on a batch, (B, *S_in) → (B, *S_out), whose batch entries are independent:
the exact MoLRG posterior mean, a diffusers UNet behind an adapter, a latent model that decodes.
Everything here is matrix-free (JVPs and VJPs through torch.func) except :func:`dense_jacobian`,
which refuses sizes it cannot hold.  Vectors are batched first: k directions are a tensor of
shape (k, *S); the SVD results are returned as matrices U (d_out × k), V (d_in × k) as in the paper.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Callable, Literal, Sequence

import torch
from torch.func import jvp as _jvp, linearize as _linearize, vjp as _vjp, vmap

from ._checks import check_finite, check_positive_int

__all__ = [
    "JacobianOperator", "jvp", "vjp", "dense_jacobian", "dense_jacobian_loop", "masked", "check_mask",
    "power_method", "TopSVD", "numerical_rank", "rank_ratio", "local_linearity", "Linearity",
    "subspace_distance", "alignment", "symmetry", "MAX_DENSE_ENTRIES",
]

PMP = Callable[[torch.Tensor], torch.Tensor]

#: The largest dense Jacobian (d_out · d_in entries) that :func:`dense_jacobian` builds unless told otherwise:
#: 64M entries = 256 MB in float32 (d ≈ 8000).
MAX_DENSE_ENTRIES = 64_000_000


def _single(f: PMP) -> Callable[[torch.Tensor], torch.Tensor]:
    """The PMP as a function of one image (*S) → (*S), for torch.func."""
    return lambda x: f(x.unsqueeze(0)).squeeze(0)


def _check_point(x: torch.Tensor) -> torch.Tensor:
    check_finite(x, "x_t")
    return x.detach()


def _check_directions(V: torch.Tensor, shape: Sequence[int], name: str) -> torch.Tensor:
    shape = tuple(shape)
    if V.dim() != len(shape) + 1 or tuple(V.shape[1:]) != shape:
        raise ValueError(f"{name} must have shape (k, *{shape}) (k directions, batch first); got {tuple(V.shape)}")
    check_finite(V, name)
    return V


class JacobianOperator:
    """J = ∂f/∂x at one point x, as a matrix-free operator.

    The forward pass runs once, here.  ``mv(V)`` is J·V for k directions in one batched call
    (by default as the VJP of the linear map u ↦ Jᵀu, a double backward through the stored graph:
    no forward-mode AD, no trace; benchmarks/README.md measures the modes); ``rmv(U)`` is Jᵀ·U for k covectors in one batched VJP that reuses the stored
    backward graph.  Parameters of an ``nn.Module`` PMP should be frozen (``requires_grad_(False)``).

    ``forward_mode``: ``"linearize"`` (cheapest J·V per call, but the trace costs seconds for a
    UNet: worth it only for many calls), ``"jvp"`` (forward-mode AD each call, forward pass
    included), or ``"transpose"`` (J·V as the VJP of the linear map u ↦ Jᵀu held by the stored
    backward graph, a double backward: no forward-mode AD and no trace; needs twice-differentiable
    ops).  See benchmarks/README.md for timings.
    """

    def __init__(self, f: PMP, x: torch.Tensor, forward_mode: Literal["linearize", "jvp", "transpose"] = "transpose"):
        x = _check_point(x)
        self.f, self.x = f, x
        g = _single(f)
        self.y, self._vjp_fn = _vjp(g, x)
        self.y = self.y.detach()
        if forward_mode == "linearize":
            with warnings.catch_warnings():  # torch's const-folding pass warns about its own internals
                warnings.simplefilter("ignore", UserWarning)
                _, self._jvp_fn = _linearize(g, x)
        elif forward_mode == "jvp":
            self._jvp_fn = lambda v: _jvp(g, (x,), (v,))[1]
        elif forward_mode == "transpose":  # u ↦ Jᵀu is linear, so its VJP (at any u) is v ↦ J v
            _, transposed = _vjp(lambda u: self._vjp_fn(u)[0], torch.zeros_like(self.y))
            self._jvp_fn = lambda v: transposed(v)[0]
        else:
            raise ValueError(f"forward_mode must be 'linearize' or 'jvp' or 'transpose'; got {forward_mode!r}")
        self.shape_in, self.shape_out = tuple(x.shape), tuple(self.y.shape)
        self.d_in, self.d_out = math.prod(self.shape_in), math.prod(self.shape_out)

    def mv(self, V: torch.Tensor) -> torch.Tensor:
        """J·v for each of k directions: (k, *S_in) → (k, *S_out)."""
        V = _check_directions(V, self.shape_in, "V")
        return vmap(self._jvp_fn)(V.to(self.x.dtype))

    def rmv(self, U: torch.Tensor) -> torch.Tensor:
        """Jᵀ·u for each of k covectors: (k, *S_out) → (k, *S_in)."""
        U = _check_directions(U, self.shape_out, "U")
        return vmap(lambda u: self._vjp_fn(u)[0])(U.to(self.y.dtype))


def jvp(f: PMP, x: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    """Batched Jacobian-vector products J(x)·v_i for V = (k, *S) in one vmapped forward-mode call."""
    x = _check_point(x)
    V = _check_directions(V, x.shape, "V")
    g = _single(f)
    return vmap(lambda v: _jvp(g, (x,), (v,))[1])(V.to(x.dtype))


def vjp(f: PMP, x: torch.Tensor, U: torch.Tensor) -> torch.Tensor:
    """Batched vector-Jacobian products J(x)ᵀ·u_i for U = (k, *S_out): one forward, one vmapped backward."""
    return JacobianOperator(f, x, forward_mode="jvp").rmv(U)


def _check_dense_size(d_out: int, d_in: int, max_entries: int) -> None:
    if d_out * d_in > max_entries:
        raise ValueError(
            f"a dense Jacobian of {d_out} × {d_in} = {d_out * d_in:,} entries exceeds max_entries = {max_entries:,}; "
            "use power_method() for the top singular vectors, or raise max_entries if you have the memory"
        )


def dense_jacobian(f: PMP, x: torch.Tensor, chunk_size: int = 256, max_entries: int = MAX_DENSE_ENTRIES) -> torch.Tensor:
    """The full Jacobian (d_out × d_in) by VJPs of the standard basis, ``chunk_size`` rows per vmapped backward."""
    x = _check_point(x)
    check_positive_int(chunk_size, "chunk_size")
    g = _single(f)
    y, vjp_fn = _vjp(g, x)
    d_in, d_out = x.numel(), y.numel()
    _check_dense_size(d_out, d_in, max_entries)
    rows = []
    eye = torch.eye(d_out, dtype=y.dtype)
    for start in range(0, d_out, chunk_size):
        E = eye[start:start + chunk_size].reshape(-1, *y.shape)  # (c, *S_out)
        rows.append(vmap(lambda u: vjp_fn(u)[0])(E).reshape(-1, d_in).detach())
    return torch.cat(rows)


def dense_jacobian_loop(f: PMP, x: torch.Tensor, max_entries: int = MAX_DENSE_ENTRIES) -> torch.Tensor:
    """The same Jacobian one row per backward pass (the slow reference the benchmark compares with)."""
    x = _check_point(x).clone().requires_grad_(True)
    y = _single(f)(x)
    d_in, d_out = x.numel(), y.numel()
    _check_dense_size(d_out, d_in, max_entries)
    yf = y.reshape(-1)
    rows = [torch.autograd.grad(yf[i], x, retain_graph=True)[0].reshape(-1) for i in range(d_out)]
    return torch.stack(rows).detach()


# ---------------------------------------------------------------------------------------- masks
def check_mask(mask, shape: Sequence[int]) -> torch.Tensor:
    """Validate a boolean mask Ω over an output of shape ``shape`` and return it broadcast to that shape.

    A mask may have the full shape (C, H, W) or the spatial shape (H, W), which applies to every
    channel.  Empty and all-true masks are refused: Ω must select a proper, non-empty region.
    """
    shape = tuple(shape)
    mask = torch.as_tensor(mask)
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be a boolean tensor (True inside Ω); got dtype {mask.dtype}")
    spatial_ok = mask.dim() < len(shape) and tuple(mask.shape) == shape[len(shape) - mask.dim():]
    if tuple(mask.shape) != shape and not spatial_ok:
        raise ValueError(f"mask must have the output shape {shape} or a trailing part of it such as {shape[1:]}; "
                         f"got {tuple(mask.shape)}")
    n_in = int(mask.sum())
    if n_in == 0:
        raise ValueError(f"mask is empty (no True entry among {mask.numel()}); Ω must select at least one pixel")
    if n_in == mask.numel():
        raise ValueError(f"mask is all True ({n_in} of {mask.numel()}); its complement Ω^c would be empty")
    return mask.expand(shape)


def masked(f: PMP, mask: torch.Tensor, shape: Sequence[int] | None = None) -> PMP:
    """P_Ω f: the PMP with its output zeroed outside Ω.  ``masked(f, ~mask)`` is P_{Ω^c} f.

    Zeroing keeps the output shape, so ∇ P_Ω f has the rows of J inside Ω and zero rows elsewhere:
    the same singular triplets as the Jacobian of the selected entries alone.
    """
    mask = torch.as_tensor(mask)
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be a boolean tensor (True inside Ω); got dtype {mask.dtype}")
    checked = {} if shape is None else {tuple(shape): check_mask(mask, shape)}

    def f_masked(x: torch.Tensor) -> torch.Tensor:
        y = f(x)
        out_shape = tuple(y.shape[1:])
        if out_shape not in checked:
            checked[out_shape] = check_mask(mask, out_shape)
        return y * checked[out_shape].to(y.dtype)

    f_masked.__name__ = "masked_pmp"
    return f_masked


# ---------------------------------------------------------------------------------------- subspaces
def _orth(A: torch.Tensor) -> torch.Tensor:
    return torch.linalg.qr(A)[0]


def subspace_distance(A: torch.Tensor, B: torch.Tensor) -> float:
    """sin of the largest principal angle between span(A) and span(B) (A, B: d × k, any basis)."""
    if A.shape != B.shape:
        raise ValueError(f"subspaces must have the same shape (d × k); got {tuple(A.shape)} and {tuple(B.shape)}")
    Qa, Qb = _orth(A.to(torch.float64)), _orth(B.to(torch.float64))
    return float(torch.linalg.matrix_norm(Qb - Qa @ (Qa.T @ Qb), ord=2))


def alignment(U: torch.Tensor, M: torch.Tensor) -> float:
    """‖(I − UUᵀ) M‖_F / ‖M‖_F: how much of span(M) lies outside span(U) (Theorem 1, third claim)."""
    if U.shape[0] != M.shape[0]:
        raise ValueError(f"U and M must have the same number of rows d; got {U.shape[0]} and {M.shape[0]}")
    U, M = _orth(U.to(torch.float64)), M.to(torch.float64)
    return float(torch.linalg.norm(M - U @ (U.T @ M)) / torch.linalg.norm(M))


def symmetry(J: torch.Tensor) -> float:
    """‖J − Jᵀ‖_F / ‖J‖_F (Lemma 3: zero for an exact posterior mean)."""
    if J.dim() != 2 or J.shape[0] != J.shape[1]:
        raise ValueError(f"symmetry needs a square matrix; got shape {tuple(J.shape)}")
    return float(torch.linalg.norm(J - J.T) / torch.linalg.norm(J))


def numerical_rank(S: torch.Tensor, eta: float = 0.99) -> int:
    """Eq. 10: the smallest r with Σ_{i≤r} σ_i² / Σ_i σ_i² > η²  (S: all singular values)."""
    if not 0 < eta < 1:
        raise ValueError(f"eta must lie in (0, 1); got {eta}")
    s2 = torch.sort(torch.as_tensor(S, dtype=torch.float64).flatten() ** 2, descending=True).values
    total = s2.sum()
    if total <= 0:
        return 0
    frac = torch.cumsum(s2, 0) / total
    return int((frac > eta ** 2).nonzero()[0]) + 1


def rank_ratio(S: torch.Tensor, d: int | None = None, eta: float = 0.99) -> float:
    """numerical_rank(S) / d, with d = len(S) unless given (the paper's "rank ratio")."""
    d = len(torch.as_tensor(S).flatten()) if d is None else d
    return numerical_rank(S, eta) / d


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


def power_method(
    f: PMP | JacobianOperator,
    x: torch.Tensor | None = None,
    k: int = 5,
    *,
    seed: int = 0,
    max_iter: int = 100,
    tol: float = 1e-4,
    V0: torch.Tensor | None = None,
    oversample: int = 0,
    stop: Literal["tail", "step"] = "tail",
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
    """
    op = f if isinstance(f, JacobianOperator) else JacobianOperator(f, x)
    d_in = op.d_in
    check_positive_int(k, "k", upper=min(d_in, op.d_out), upper_name="the dimension d")
    if oversample < 0:
        raise ValueError(f"oversample must be ≥ 0; got {oversample}")
    check_positive_int(max_iter, "max_iter")
    if not tol > 0:
        raise ValueError(f"tol must be positive; got {tol}")
    p = min(k + oversample, d_in, op.d_out)
    dtype = op.x.dtype
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
        delta = subspace_distance(V[:, :k], V_new[:, :k])
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
    x = _check_point(x)
    if tuple(dx.shape) != tuple(x.shape):
        raise ValueError(f"dx must have the shape of x_t {tuple(x.shape)}; got {tuple(dx.shape)}")
    check_finite(dx, "dx")
    n = torch.linalg.norm(dx)
    if n == 0:
        raise ValueError("dx must be a non-zero direction; got the zero vector")
    dx = (dx / n).to(x.dtype)
    lam = torch.as_tensor(lambdas, dtype=x.dtype).flatten()
    check_finite(lam, "lambdas")
    f0, Jdx = _jvp(_single(f), (x,), (dx,))
    with torch.no_grad():
        fl = f(x.unsqueeze(0) + lam.reshape(-1, *[1] * x.dim()) * dx)  # (L, *S)
    lin = f0.unsqueeze(0) + lam.reshape(-1, *[1] * x.dim()) * Jdx  # (L, *S)
    fl, lin = fl.reshape(len(lam), -1).double(), lin.reshape(len(lam), -1).double()
    nf, nl = fl.norm(dim=1), lin.norm(dim=1)
    return Linearity(lam.double(), nf / nl, (fl * lin).sum(1) / (nf * nl), (fl - lin).norm(dim=1))
