"""The generalized power method (Algorithm 2 of Chen et al. 2024): top-k singular triplets of a Jacobian, matrix-free."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal, Sequence

import torch

from lococourse.core.checks import check_finite, check_positive_int, check_real
from lococourse.core.interfaces import PMP, LinearOperator
from lococourse.jacobian.operator import JacobianOperator
from lococourse.jacobian.subspace import subspace_distance
from lococourse.jacobian.views import OperatorView, RowMaskedView


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
    :func:`power_methods` runs several of these at once.
    """
    op = f if isinstance(f, LinearOperator) else JacobianOperator(f, x)
    return power_methods([op], k, seeds=[seed], max_iter=max_iter, tol=tol, V0s=[V0], oversample=oversample, stop=stop,
                         monitors=[monitor])[0]


def power_methods(
    ops: Sequence[LinearOperator],
    k: int = 5,
    *,
    seeds: Sequence[int] | None = None,
    max_iter: int = 100,
    tol: float = 1e-4,
    V0s: Sequence[torch.Tensor | None] | None = None,
    oversample: int = 0,
    stop: Literal["tail", "step"] = "tail",
    monitors: Sequence[Callable[[torch.Tensor], torch.Tensor] | None] | None = None,
) -> list[TopSVD]:
    """:func:`power_method` (Algorithm 2) on P operators at once, one TopSVD each, in order.

    Each problem has its own start (``seeds[i]``, ``V0s[i]``), its own ``monitors[i]`` and stops on its own; while
    more than one is running, the masked views of one linearisation (:class:`~lococourse.jacobian.views.OperatorView`
    s with the same base and ᾱ, e.g. the complements of an image's parts) share one batched J·V and one Jᵀ·U call
    per iteration (:class:`~lococourse.jacobian.views.RowMaskedView`: P·p vectors in one call, which a CPU runs
    faster per vector than P calls of p).  Other operators are iterated one by one.  Each result is what
    :func:`power_method` alone would return, up to floating-point rounding.
    """
    ops = list(ops)
    P = len(ops)
    if P == 0:
        raise ValueError("power_methods needs at least one operator")
    seeds = [0] * P if seeds is None else list(seeds)
    V0s = [None] * P if V0s is None else list(V0s)
    monitors = [None] * P if monitors is None else list(monitors)
    if not len(seeds) == len(V0s) == len(monitors) == P:
        raise ValueError(f"seeds, V0s and monitors must have one entry per operator ({P}); "
                         f"got {len(seeds)}, {len(V0s)}, {len(monitors)}")
    if stop not in ("tail", "step"):
        raise ValueError(f"stop must be 'tail' or 'step'; got {stop!r}")
    if oversample < 0:
        raise ValueError(f"oversample must be ≥ 0; got {oversample}")
    check_positive_int(max_iter, "max_iter")
    check_real(tol, "tol", low=0, low_open=True)
    for op in ops:
        check_positive_int(k, "k", upper=min(op.d_in, op.d_out), upper_name="the dimension d")
    if not _shared_base(ops):
        return [_power_methods_batched([op], k, [s], max_iter, tol, [v0], oversample, stop, [m])[0]
                for op, s, v0, m in zip(ops, seeds, V0s, monitors)]
    return _power_methods_batched(ops, k, seeds, max_iter, tol, V0s, oversample, stop, monitors)


def _shared_base(ops: list) -> bool:
    """Whether ``ops`` are masked views of one base operator with one ᾱ (so their products batch in one call)."""
    if len(ops) == 1:
        return True
    first = ops[0]
    return all(isinstance(op, OperatorView) and op.m is not None and op.base is first.base
               and op.alpha_bar == first.alpha_bar for op in ops)


def _power_methods_batched(ops, k, seeds, max_iter, tol, V0s, oversample, stop, monitors) -> list[TopSVD]:
    op0 = ops[0]
    d_in, shape_in, dtype = op0.d_in, op0.shape_in, op0.dtype
    p = min(k + oversample, d_in, op0.d_out)

    def batched(active: list[int]):
        """The operator on the stacked vectors of the ``active`` problems: the op itself for one problem."""
        if len(active) == 1:
            return ops[active[0]]
        return RowMaskedView(op0.base, [ops[i].m.bool() for i in active for _ in range(p)], op0.alpha_bar)

    # Step 1: an orthonormal start per problem.
    Vs = []
    for seed, V0 in zip(seeds, V0s):
        if V0 is None:
            g = torch.Generator().manual_seed(seed)
            V = torch.randn(d_in, p, generator=g, dtype=torch.float64).to(dtype)
        else:
            V = _warm_start(V0, shape_in, d_in, dtype)
            if V.shape[1] < p:  # pad a warm start with seeded random columns
                g = torch.Generator().manual_seed(seed)
                V = torch.cat([V, torch.randn(d_in, p - V.shape[1], generator=g, dtype=torch.float64).to(dtype)], 1)
            V = V[:, :p]
        Vs.append(torch.linalg.qr(V)[0])
    P = len(ops)
    histories: list[list[float]] = [[] for _ in range(P)]
    converged, n_iters = [False] * P, [0] * P
    active = list(range(P))
    # Step 2: subspace iteration, the active problems in one batch.
    for it in range(1, max_iter + 1):
        op = batched(active)
        U = op.mv(torch.cat([Vs[i].T.reshape(p, *shape_in) for i in active]))  # (P_a·p, *S_out) = (J V)ᵀ
        V_hat = op.rmv(U).reshape(len(active), p, d_in)  # (P_a, p, d_in) = (Jᵀ J V)ᵀ
        still = []
        for j, i in enumerate(active):
            V_new = torch.linalg.svd(V_hat[j].T, full_matrices=False)[0]
            m = monitors[i]
            delta = subspace_distance(Vs[i][:, :k], V_new[:, :k]) if m is None else _change(m(Vs[i]), m(V_new))
            histories[i].append(delta)
            Vs[i], n_iters[i] = V_new, it
            if _done(histories[i], stop, tol):
                converged[i] = True
            else:
                still.append(i)
        active = still
        if not active:
            break
    # Step 3: Rayleigh–Ritz on span(V) and orthonormal U, all problems in one batch.
    everyone = list(range(P))
    JV = batched(everyone).mv(torch.cat([Vs[i].T.reshape(p, *shape_in) for i in everyone])).reshape(P, p, op0.d_out)
    out = []
    for i in everyone:
        Ut, St, Wt = torch.linalg.svd(JV[i].T, full_matrices=False)  # (d_out, p)
        U, V = _sign_fix(Ut[:, :k], (Vs[i] @ Wt.T)[:, :k])
        out.append(TopSVD(St[:k].detach(), U.detach(), V.detach(), op0.shape_in, op0.shape_out, n_iters[i], converged[i],
                          histories[i]))
    return out


def _done(history: list[float], stop: str, tol: float) -> bool:
    """The stopping rule of :func:`power_method` on the successive distances so far."""
    delta = history[-1]
    if stop == "step":
        return delta < tol
    if len(history) >= 2 and history[-2] > 0:
        rho = min(max(history[-1] / history[-2], history[-2] / history[-3] if len(history) >= 3 and history[-3] > 0 else 0.0), 0.999)
        return delta * rho / (1 - rho) < tol
    return delta == 0.0
