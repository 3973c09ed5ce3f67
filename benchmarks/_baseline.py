"""The baseline: the paper's public generalized-power-method routine structure (Algorithm 2, Appendix E.1),
re-implemented from its description, with its own stopping rule.  Benchmark code, not library code.

Per iteration i = 1 … max_iter:
  * U = J·V by forward-mode AD over the k directions: one ``torch.func.jvp`` of a ↦ f(x + a·V) at a = 0,
    where x + a·V is a batch of k images, so the forward pass is recomputed every iteration;
  * V̂ᵀ = Uᵀ·J by k separate backward passes: one forward y = f(x) with its graph, then one
    ``torch.autograd.grad`` of ⟨u_j, y⟩ per direction j;
  * V ← the right singular vectors of V̂ (reduced SVD), copied to the CPU (``.cpu()``) as the routine does;
  * stop when ``torch.allclose(V_new, V_old, atol=1e-4)`` (torch's default rtol = 1e-5), checked from iteration ``min_iter`` = 10 on
    (1-based), at most ``max_iter`` = 50 iterations.
The start is a seeded Gaussian d × k, orthonormalised by a reduced QR.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch


@dataclass
class BaselineResult:
    S: torch.Tensor  # (k,) singular values (from the last SVD: σ_j² of JᵀJ V → σ_j)
    U: torch.Tensor  # (d_out, k) orthonormalised J·V of the last iteration
    V: torch.Tensor  # (d_in, k) top-k right singular vectors (columns)
    n_iter: int
    converged: bool


def baseline_power_method(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, k: int = 5, *,
                          seed: int = 0, min_iter: int = 10, max_iter: int = 50, atol: float = 1e-4, rtol: float = 1e-5,
                          align_signs: bool = False, record: list | None = None) -> BaselineResult:
    """Top-k right singular subspace of J = ∂f/∂x for a batched PMP f: (B, *S) → (B, *S) and one point x (*S).

    ``align_signs=False`` is the routine as published: LAPACK may return a converged singular vector
    with the opposite sign on every other iteration, and then the elementwise test never passes
    (it runs ``max_iter`` iterations).  ``align_signs=True`` is a charitable variant that flips each
    new v_j to agree with the previous one before the test (a stronger baseline).
    ``record``, if a list, receives (time.perf_counter(), V as d × k) after every iteration, so a
    benchmark can find when the iterate first came within a distance of a reference (an oracle stop).
    """
    x = x.detach()
    shape, d = tuple(x.shape), x.numel()
    g = torch.Generator().manual_seed(seed)
    V = torch.linalg.qr(torch.randn(d, k, generator=g, dtype=torch.float64).to(x.dtype))[0].T.contiguous()  # (k, d)
    V = V.reshape(k, *shape)
    a0, da = torch.zeros((), dtype=x.dtype), torch.ones((), dtype=x.dtype)
    converged, S, U = False, None, None
    for i in range(max_iter):
        V_prev = V.detach().cpu().clone()
        # U = J V: forward-mode AD over the k directions (a batch of k images), forward recomputed.
        U = torch.func.jvp(lambda a: f(x.unsqueeze(0) + a * V), (a0,), (da,))[1].detach().cpu()  # (k, *S_out)
        # V̂ = Jᵀ U: one forward with its graph, then k separate backward passes.
        xg = x.clone().requires_grad_(True)
        y = f(xg.unsqueeze(0))[0]
        rows = [torch.autograd.grad((U[j] * y).sum(), xg, retain_graph=j < k - 1)[0].reshape(-1) for j in range(k)]
        V_hat = torch.stack(rows)  # (k, d)
        _, s, Vh = torch.linalg.svd(V_hat, full_matrices=False)
        Vh = Vh.cpu()
        if align_signs:
            flip = torch.where((Vh * V_prev.reshape(k, -1)).sum(1) < 0, -1.0, 1.0).to(Vh.dtype)
            Vh = Vh * flip[:, None]
        S, V = s.sqrt().cpu(), Vh.reshape(k, *shape)
        if record is not None:
            record.append((time.perf_counter(), Vh.T.clone()))
        if i + 1 >= min_iter and torch.allclose(V_prev, V, rtol=rtol, atol=atol):
            converged = True
            break
    Uq = torch.linalg.qr(U.reshape(k, -1).T)[0]
    return BaselineResult(S, Uq, V.reshape(k, d).T.contiguous(), i + 1, converged)
