"""Subspaces of Jacobians: principal angles, alignment (Theorem 1), symmetry (Lemma 3), numerical rank (eq. 10),
and the one nullspace projection v − V̄(V̄ᵀv) of Algorithm 1 step 7 (Algorithm 3 step 9, Algorithm 4).
"""
from __future__ import annotations

import torch

from lococourse.core.checks import check_positive_int, check_real


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




def project_out(v: torch.Tensor, Vbar: torch.Tensor | None) -> torch.Tensor:
    """v − V̄(V̄ᵀv): v with its component in span(V̄) removed (Algorithm 1 step 7; never forms I − V̄V̄ᵀ).

    v: (d,) or (d, m) columns; V̄: (d, r') with orthonormal columns, or ``None`` (r' = 0: v unchanged).
    """
    if Vbar is None:
        return v
    if Vbar.dim() != 2 or Vbar.shape[0] != v.shape[0]:
        raise ValueError(f"V̄ must be a d × r' matrix with d = {v.shape[0]} rows; got shape {tuple(Vbar.shape)}")
    Vbar = Vbar.to(v.dtype)
    return v - Vbar @ (Vbar.T @ v)


def ridge_project(A, v: torch.Tensor, c: float, *, max_iter: int = 20, rtol: float = 1e-4) -> tuple[torch.Tensor, dict]:
    """A soft nullspace projection of v against a matrix-free operator A (our option for Algorithm 1 step 7):

        v' = argmin_u ‖A u‖² + μ ‖u − v̂‖²,   i.e.  (AᵀA + μ I) v' = μ v̂,   μ = c · ‖A v̂‖²,   v̂ = v / ‖v‖,

    solved by conjugate gradients (one A·u and one Aᵀ·w per iteration, never d × d), started at v̂.  In A's SVD
    A = Σ σ_i a'_i a_iᵀ it is v' = Σ_i μ / (σ_i² + μ) ⟨a_i, v̂⟩ a_i: every direction is kept by the filter factor
    μ / (σ_i² + μ), where step 7 of the paper keeps 0 for i ≤ r' and 1 beyond.  ``c`` (> 0) sets μ relative to how
    strongly v̂ itself moves A's output: small c removes more.

    ``A``: a LinearOperator (``mv``: (k, *S_in) → (k, *S_out), ``rmv`` back; e.g. P_{Ω^c} J); ``v``: of A's input
    shape or flat (d,).  Returns (v' / ‖v'‖ in v's shape, info) with info = {"mu", "n_iter", "converged",
    "residual"} (the relative residual ‖μv̂ − (AᵀA + μI)v'‖ / ‖μv̂‖; converged when ≤ ``rtol``).
    """
    check_real(c, "the ridge c (μ / ‖A v̂‖²)", low=0, low_open=True)
    check_positive_int(max_iter, "max_iter")
    if v.numel() != A.d_in:
        raise ValueError(f"v has {v.numel()} entries but A acts on d = {A.d_in}")
    n = torch.linalg.norm(v)
    if not n > 0:
        raise ValueError("v is zero: there is no direction to project")
    x = (v / n).reshape(1, *A.shape_in).to(A.dtype)
    mu = c * float((A.mv(x) ** 2).sum())
    if not mu > 0:  # v̂ does not move A at all: it already lies in A's nullspace
        return (x / torch.linalg.norm(x)).reshape(v.shape), {"mu": 0.0, "n_iter": 0, "converged": True, "residual": 0.0}

    def op(u):
        return A.rmv(A.mv(u)) + mu * u

    b = mu * x
    nb = float(torch.linalg.norm(b))
    r = b - op(x)
    p, rs, it = r.clone(), float((r * r).sum()), 0
    while rs ** 0.5 > rtol * nb and it < max_iter:
        Ap = op(p)
        alpha = rs / float((p * Ap).sum())
        x, r = x + alpha * p, r - alpha * Ap
        rs_new = float((r * r).sum())
        p, rs, it = r + (rs_new / rs) * p, rs_new, it + 1
    res = rs ** 0.5 / nb
    return (x / torch.linalg.norm(x)).reshape(v.shape), {"mu": mu, "n_iter": it, "converged": res <= rtol, "residual": res}
