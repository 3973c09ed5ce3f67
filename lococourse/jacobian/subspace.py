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
    :func:`ridge_project_rows` solves several such problems in one batch.
    """
    if v.numel() != A.d_in:
        raise ValueError(f"v has {v.numel()} entries but A acts on d = {A.d_in}")
    out, infos = ridge_project_rows(A, v.reshape(1, -1), c, max_iter=max_iter, rtol=rtol)
    return out[0].reshape(v.shape), infos[0]


def ridge_project_rows(A, V: torch.Tensor, c: float, *, max_iter: int = 20, rtol: float = 1e-4) -> tuple[torch.Tensor, list]:
    """:func:`ridge_project` for P independent problems at once: row i of ``V`` (P, d) or (P, *S_in) against row i
    of ``A``, each with its own μ_i = c‖A_i v̂_i‖² and its own conjugate-gradient scalars, in lockstep so that every
    iteration is one batched A·U and one batched Aᵀ·W (P vectors per call, which a CPU runs faster per vector
    than P calls of one).  A row stops updating when its own residual is ≤ ``rtol`` (or at ``max_iter``): each row
    gets what :func:`ridge_project` alone would.

    ``A``: a LinearOperator acting row-wise — ``mv`` maps (P, *S_in) → (P, *S_out), row i through A_i; one mask for
    every row (an :class:`~lococourse.jacobian.views.OperatorView`) or one mask per row
    (:meth:`~lococourse.jacobian.views.JacobianViews.rows`).  Returns (V' with unit rows, in V's shape; P infos).
    """
    check_real(c, "the ridge c (μ / ‖A v̂‖²)", low=0, low_open=True)
    check_positive_int(max_iter, "max_iter")
    if V.dim() < 2 or V[0].numel() != A.d_in:
        raise ValueError(f"V must hold P rows of d = {A.d_in} entries each, (P, d) or (P, *{tuple(A.shape_in)}); "
                         f"got shape {tuple(V.shape)}")
    P = V.shape[0]
    n = torch.linalg.norm(V.reshape(P, -1), dim=1)
    if not bool((n > 0).all()):
        raise ValueError(f"row(s) {(n > 0).logical_not().nonzero().flatten().tolist()} of V are zero: "
                         "there is no direction to project")
    shape = (P, *A.shape_in)
    x = (V.reshape(P, -1) / n[:, None]).reshape(shape).to(A.dtype)

    def dot(a, b):  # row-wise ⟨a_i, b_i⟩, (P,) in float64
        return (a * b).reshape(P, -1).sum(1, dtype=torch.float64)

    mu = c * (A.mv(x).reshape(P, -1) ** 2).sum(1, dtype=torch.float64)
    trivial = ~(mu > 0)  # v̂ does not move A at all: it already lies in A's nullspace
    mu_t = mu.to(A.dtype).reshape(P, *[1] * len(A.shape_in))

    def op(u):
        return A.rmv(A.mv(u)) + mu_t * u

    b = mu_t * x
    nb = torch.linalg.norm(b.reshape(P, -1), dim=1).double()
    r = b - op(x)
    p, rs = r.clone(), dot(r, r)
    it = torch.zeros(P, dtype=torch.long)
    active = ~trivial & (rs.sqrt() > rtol * nb)
    while bool(active.any()):
        Ap = op(p)
        pAp = dot(p, Ap)
        alpha = torch.where(active, rs / torch.where(active, pAp, torch.ones_like(pAp)), torch.zeros_like(rs))
        a_t = alpha.to(A.dtype).reshape(mu_t.shape)
        x, r = x + a_t * p, r - a_t * Ap
        rs_new = dot(r, r)
        beta = torch.where(active, rs_new / torch.where(active, rs, torch.ones_like(rs)), torch.zeros_like(rs))
        p = torch.where(active.reshape(mu_t.shape), r + beta.to(A.dtype).reshape(mu_t.shape) * p, p)
        rs = torch.where(active, rs_new, rs)
        it = it + active.long()
        active = active & (rs.sqrt() > rtol * nb) & (it < max_iter)
    x = x / torch.linalg.norm(x.reshape(P, -1), dim=1).reshape(mu_t.shape)
    infos = []
    for i in range(P):
        if trivial[i]:
            infos.append({"mu": 0.0, "n_iter": 0, "converged": True, "residual": 0.0})
        else:
            res = float(rs[i].sqrt() / nb[i])
            infos.append({"mu": float(mu[i]), "n_iter": int(it[i]), "converged": res <= rtol, "residual": res})
    return x.reshape(V.shape), infos
