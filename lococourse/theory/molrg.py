"""Mixture of low-rank Gaussians (MoLRG, Assumption 1 of Chen et al. 2024), generalised, and exact.

Data: pick class k with probability π_k, then x₀ = M_k a, a ~ N(0, I_{r_k}), where the bases
M_k ∈ St(d, r_k) are mutually orthogonal (M_iᵀ M_j = 0).  Forward process:
x_t = √ᾱ x₀ + √(1−ᾱ) ε.

Everything below is derived from first principles, in float64:

    p(x_t | k)    = N(0, Σ_k),  Σ_k = ᾱ M_k M_kᵀ + (1−ᾱ) I,  Σ_k⁻¹ = (I − ᾱ M_k M_kᵀ)/(1−ᾱ),
                    log det Σ_k = (d − r_k) log(1−ᾱ)
    w_k(x_t)      = softmax_k[ log π_k + ᾱ/(2(1−ᾱ)) ‖M_kᵀ x_t‖² + (r_k/2) log(1−ᾱ) ]     (Bayes' rule)
    E[x₀ | x_t]   = √ᾱ Σ_k w_k M_k M_kᵀ x_t                                                  (Lemma 1, corrected)
    ∇ log p_t     = −(x_t − ᾱ Σ_k w_k M_k M_kᵀ x_t)/(1−ᾱ)
    J = ∂E/∂x_t   = √ᾱ [ Σ_k w_k P_k + c (Σ_k w_k P_k x xᵀ P_k − m mᵀ) ],  P_k = M_k M_kᵀ,
                    m = Σ_k w_k P_k x,  c = ᾱ/(1−ᾱ)                                            (Lemma 2, corrected)

The paper's Lemma 1 prints the weights without log π_k (it assumes π_k = 1/K) and without the
normaliser term (r_k/2) log(1−ᾱ): right only when all r_k are equal.  ``rule="paper"`` gives
those weights as printed so the course can show the difference.  Lemma 2's proof also writes
the rank-one term transposed (∇w_k x_tᵀ P_k instead of P_k x_t ∇w_kᵀ); the final formula (and
ours) is symmetric, so the slip does not change the result.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Sequence

import torch

from lococourse.core.checks import as_batch
from lococourse.core.schedule import SCHEDULE, DDPMSchedule, check_t

__all__ = ["MoLRG", "MoLRGPMP", "random_orthonormal_bases"]

Rule = Literal["bayes", "paper"]
_DT = torch.float64


def random_orthonormal_bases(d: int, ranks: Sequence[int], seed: int = 0) -> list[torch.Tensor]:
    """Mutually orthogonal orthonormal bases M_k ∈ St(d, r_k), from the QR of a seeded Gaussian."""
    ranks = [int(r) for r in ranks]
    if any(r < 1 for r in ranks):
        raise ValueError(f"every rank r_k must be ≥ 1; got ranks = {ranks}")
    if sum(ranks) > d:
        raise ValueError(f"the ranks must satisfy Σ r_k ≤ d; got Σ r_k = {sum(ranks)} > d = {d}")
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(d, sum(ranks), generator=g, dtype=_DT))
    q = q * torch.sign(torch.diagonal(r))  # a unique Q: positive diagonal of R
    return list(torch.split(q, ranks, dim=1))


@dataclass
class MoLRG:
    """A mixture of low-rank Gaussians on images of shape ``shape`` (d = prod(shape)).

    Build one with :meth:`MoLRG.random` or from your own bases (validated: orthonormal, mutually
    orthogonal, Σ r_k ≤ d).  All computations run in float64.
    """

    bases: list[torch.Tensor]
    shape: tuple[int, ...]
    weights: torch.Tensor | None = None
    schedule: DDPMSchedule = field(default=SCHEDULE)
    atol: float = 1e-8

    def __post_init__(self) -> None:
        self.shape = tuple(int(s) for s in self.shape)
        d = math.prod(self.shape)
        if len(self.bases) == 0:
            raise ValueError("MoLRG needs at least one basis M_k; got none")
        bases = []
        for k, m in enumerate(self.bases):
            m = torch.as_tensor(m, dtype=_DT)
            if m.dim() != 2 or m.shape[0] != d or m.shape[1] < 1:
                raise ValueError(f"basis M_{k} must have shape (d, r_k) with d = {d} and r_k ≥ 1; got {tuple(m.shape)}")
            bases.append(m)
        ranks = [m.shape[1] for m in bases]
        if sum(ranks) > d:
            raise ValueError(f"the ranks must satisfy Σ r_k ≤ d; got Σ r_k = {sum(ranks)} > d = {d}")
        M = torch.cat(bases, dim=1)
        gram_err = (M.T @ M - torch.eye(M.shape[1], dtype=_DT)).abs().max().item()
        if gram_err > self.atol:
            raise ValueError(
                "the bases must be orthonormal and mutually orthogonal (MᵀM = I for M = [M_1 … M_K]); "
                f"max |MᵀM − I| = {gram_err:.3g} exceeds atol = {self.atol:g}"
            )
        self.bases = bases
        K = len(bases)
        if self.weights is None:
            w = torch.full((K,), 1.0 / K, dtype=_DT)
        else:
            w = torch.as_tensor(self.weights, dtype=_DT).flatten()
            if w.numel() != K or not torch.isfinite(w).all() or (w <= 0).any() or abs(float(w.sum()) - 1) > 1e-9:
                raise ValueError(f"weights π must be K = {K} positive numbers summing to 1; got {w.tolist()}")
        self.weights = w

    # ------------------------------------------------------------------ construction
    @classmethod
    def random(cls, shape: Sequence[int] | int, ranks: Sequence[int], weights=None, seed: int = 0,
               schedule: DDPMSchedule = SCHEDULE) -> "MoLRG":
        """A random MoLRG: seeded orthonormal, mutually orthogonal bases of the given ranks."""
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        return cls(random_orthonormal_bases(math.prod(shape), ranks, seed), shape, weights, schedule)

    # ------------------------------------------------------------------ sizes
    @property
    def d(self) -> int:
        return math.prod(self.shape)

    @property
    def ranks(self) -> list[int]:
        return [m.shape[1] for m in self.bases]

    @property
    def K(self) -> int:
        return len(self.bases)

    @property
    def M(self) -> torch.Tensor:
        """[M_1 … M_K], shape (d, Σ r_k)."""
        return torch.cat(self.bases, dim=1)

    # ------------------------------------------------------------------ sampling
    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw n images x₀ (shape (n, *shape)) and their classes k (shape (n,))."""
        labels = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        x0 = torch.zeros(n, self.d, dtype=_DT)
        for k, m in enumerate(self.bases):
            idx = (labels == k).nonzero().flatten()
            a = torch.randn(len(idx), m.shape[1], generator=generator, dtype=_DT)
            x0[idx] = a @ m.T
        return x0.reshape(n, *self.shape), labels

    def noise(self, x0: torch.Tensor, t, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward process: return (x_t, ε) with x_t = √ᾱ x₀ + √(1−ᾱ) ε."""
        check_t(t)
        x0b, _ = as_batch(x0.to(_DT), self.shape, "x0")
        eps = torch.randn(x0b.shape, generator=generator, dtype=_DT)
        xt = self.schedule.sqrt_alpha_bar(t) * x0b + self.schedule.sqrt_one_minus_alpha_bar(t) * eps
        return xt.reshape(x0.shape), eps.reshape(x0.shape)

    # ------------------------------------------------------------------ exact posterior
    def _flat(self, x: torch.Tensor) -> tuple[torch.Tensor, bool]:
        xb, single = as_batch(x, self.shape)
        return xb.to(_DT).reshape(xb.shape[0], self.d), single  # (B, d)

    def _unflat(self, y: torch.Tensor, single: bool) -> torch.Tensor:
        y = y.reshape(y.shape[0], *self.shape)
        return y[0] if single else y

    def log_weights(self, x_t: torch.Tensor, t, rule: Rule = "bayes") -> torch.Tensor:
        """log w_k(x_t): log posterior class probabilities, shape (B, K) (or (K,) unbatched).

        ``rule="bayes"`` is Bayes' rule; ``rule="paper"`` is Lemma 1's weights as printed
        (no π_k, no normaliser (1−ᾱ)^{r_k/2}).
        """
        check_t(t)
        x, single = self._flat(x_t)
        lw = self._log_weights(x, t, rule)
        return lw[0] if single else lw

    def _log_weights(self, x: torch.Tensor, t, rule: Rule = "bayes") -> torch.Tensor:
        """log w_k for flat x of shape (B, d).

        ‖M_kᵀx‖² overflows float64 once |x| ≳ 1e154 (and c‖M_kᵀx‖² sooner at small t), which made the
        softmax NaN.  So x is scaled by s = max|x| (a constant for autograd: the logits are exactly
        c s² ‖M_kᵀ(x/s)‖²/2, whatever s), and only the differences to the largest logit are formed:
        c s² (p_k − max_j p_j)/2 ≤ 0, which may round to −∞ (weight 0) but never to NaN; where even c s²
        overflows, the weights are the limit: one-hot on the largest ‖M_kᵀx‖ (shared on exact ties).
        """
        c = self.schedule.snr(t)  # ᾱ/(1−ᾱ)
        s = x.detach().abs().amax(-1, keepdim=True).clamp_min(torch.finfo(_DT).tiny)  # (B, 1)
        xs = x / s
        proj_sq = torch.stack([((xs @ m) ** 2).sum(-1) for m in self.bases], dim=-1)  # (B, K): ‖M_kᵀ x/s‖²
        gap = proj_sq - proj_sq.max(-1, keepdim=True).values.detach()  # ≤ 0; exactly 0 at the largest
        scale = 0.5 * c * s ** 2  # (B, 1), inf only for |x| ≳ 1e154: then the weights are one-hot
        finite = torch.isfinite(scale)
        one_hot = torch.where(gap == 0, torch.zeros_like(gap), torch.full_like(gap, -math.inf))
        logits = torch.where(finite, gap * torch.where(finite, scale, torch.zeros_like(scale)), one_hot)
        if rule == "bayes":
            ranks = torch.tensor(self.ranks, dtype=_DT)
            logits = logits + self.weights.log() + 0.5 * ranks * torch.log(self.schedule.one_minus_alpha_bar(t))
        elif rule != "paper":
            raise ValueError(f"rule must be 'bayes' or 'paper'; got {rule!r}")
        return torch.log_softmax(logits, dim=-1)

    def posterior_mean(self, x_t: torch.Tensor, t, rule: Rule = "bayes") -> torch.Tensor:
        """E[x₀ | x_t] = √ᾱ Σ_k w_k M_k M_kᵀ x_t (Lemma 1 with Bayes' weights by default)."""
        check_t(t)
        x, single = self._flat(x_t)
        w = self._log_weights(x, t, rule).exp()  # (B, K)
        s = x.detach().abs().amax(-1, keepdim=True).clamp_min(torch.finfo(_DT).tiny)  # as in _log_weights: no overflow
        mean = sum(w[:, k:k + 1] * (((x / s) @ m) @ m.T) for k, m in enumerate(self.bases)) * s
        return self._unflat(self.schedule.sqrt_alpha_bar(t) * mean, single)

    def log_density(self, x_t: torch.Tensor, t) -> torch.Tensor:
        """log p_t(x_t) = log Σ_k π_k N(x_t; 0, Σ_k), shape (B,) (or scalar)."""
        check_t(t)
        x, single = self._flat(x_t)
        ab, one_m = self.schedule.alpha_bar(t), self.schedule.one_minus_alpha_bar(t)
        sq = (x ** 2).sum(-1, keepdim=True)  # (B, 1)
        proj_sq = torch.stack([((x @ m) ** 2).sum(-1) for m in self.bases], dim=-1)  # (B, K)
        ranks = torch.tensor(self.ranks, dtype=_DT)
        quad = (sq - ab * proj_sq) / one_m  # xᵀ Σ_k⁻¹ x
        logdet = (self.d - ranks) * torch.log(one_m)
        logp = self.weights.log() - 0.5 * (quad + logdet + self.d * math.log(2 * math.pi))
        out = torch.logsumexp(logp, dim=-1)
        return out[0] if single else out

    def score(self, x_t: torch.Tensor, t) -> torch.Tensor:
        """∇ log p_t(x_t) = −(x_t − ᾱ Σ_k w_k P_k x_t)/(1−ᾱ)."""
        check_t(t)
        x, single = self._flat(x_t)
        w = self._log_weights(x, t).exp()
        mix = sum(w[:, k:k + 1] * ((x @ m) @ m.T) for k, m in enumerate(self.bases))
        s = -(x - self.schedule.alpha_bar(t) * mix) / self.schedule.one_minus_alpha_bar(t)
        return self._unflat(s, single)

    def eps(self, x_t: torch.Tensor, t) -> torch.Tensor:
        """The optimal ε-prediction E[ε | x_t] = −√(1−ᾱ) ∇ log p_t(x_t)  (Tweedie)."""
        return -self.schedule.sqrt_one_minus_alpha_bar(t) * self.score(x_t, t)

    def jacobian(self, x_t: torch.Tensor, t, rule: Rule = "bayes") -> torch.Tensor:
        """Closed-form ∂E[x₀|x_t]/∂x_t (Lemma 2 with the chosen weights), shape (B, d, d) or (d, d)."""
        check_t(t)
        x, single = self._flat(x_t)
        w = self._log_weights(x, t, rule).exp()  # (B, K)
        c = self.schedule.snr(t)
        y = torch.stack([(x @ m) @ m.T for m in self.bases], dim=1)  # (B, K, d): P_k x
        m_bar = torch.einsum("bk,bkd->bd", w, y)  # (B, d)
        proj = torch.stack([m @ m.T for m in self.bases])  # (K, d, d)
        J = torch.einsum("bk,kij->bij", w, proj)
        J = J + c * (torch.einsum("bk,bki,bkj->bij", w, y, y) - torch.einsum("bi,bj->bij", m_bar, m_bar))
        J = self.schedule.sqrt_alpha_bar(t) * J
        return J[0] if single else J

    def monte_carlo_posterior_mean(self, x_t: torch.Tensor, t, n: int = 200_000,
                                   generator: torch.Generator | None = None) -> torch.Tensor:
        """An independent oracle for E[x₀|x_t]: Bayes' rule by self-normalised importance sampling.

        Draws x₀⁽ⁱ⁾ from the data distribution and weights each by the forward-process likelihood
        N(x_t; √ᾱ x₀⁽ⁱ⁾, (1−ᾱ) I).  Uses neither Lemma 1 nor the marginal densities.
        """
        check_t(t)
        x, single = self._flat(x_t)
        x0, _ = self.sample(n, generator)
        x0 = x0.reshape(n, self.d)
        ab, one_m = self.schedule.alpha_bar(t), self.schedule.one_minus_alpha_bar(t)
        # log-likelihood up to a constant: −‖x_t − √ᾱ x₀‖²/(2(1−ᾱ)), shape (B, n)
        ll = -(torch.cdist(x, ab.sqrt() * x0) ** 2) / (2 * one_m)
        w = torch.softmax(ll, dim=-1)
        return self._unflat(w @ x0, single)

    # ------------------------------------------------------------------ the PMP
    @property
    def name(self) -> str:
        return f"MoLRG(shape={self.shape}, ranks={self.ranks})"

    def eps_model(self):
        """The exact ε-model (x, timestep) ↦ E[ε|x_t] for DDIM (:class:`lococourse.models.ddim.MoLRGEps`)."""

        return MoLRGEps(self)

    def pmp(self, t, rule: Rule = "bayes") -> "MoLRGPMP":
        """The exact posterior-mean predictor x_t ↦ E[x₀|x_t] at time t, as a batched callable."""
        check_t(t)
        return MoLRGPMP(self, float(t), rule)


class MoLRGPMP:
    """x_t ↦ E[x₀|x_t] of a :class:`MoLRG` at a fixed t: the canonical PMP interface.

    Called on a batch (B, *shape) it returns (B, *shape); it is built from plain torch ops, so
    torch.func transforms (jvp, vjp, vmap, linearize) apply.
    """

    def __init__(self, model: MoLRG, t: float, rule: Rule = "bayes"):
        self.model, self.t, self.rule = model, t, rule
        self.shape = model.shape
        self.name = f"MoLRG(d={model.d}, ranks={model.ranks}) exact PMP [{rule}]"
        self.dtype = _DT

    def __call__(self, x_t: torch.Tensor) -> torch.Tensor:
        return self.model.posterior_mean(x_t, self.t, self.rule)

    def __repr__(self) -> str:
        return f"<{self.name} at t={self.t:g}>"


class MoLRGEps:
    """The exact ε-prediction E[ε | x_t] = −√(1−ᾱ) ∇log p_t of a :class:`MoLRG`, at integer timesteps.

    Timestep k is time t = (k + 1)/T of the model's schedule, so ᾱ agrees with
    ``ddim_grid(schedule=model.schedule)``.  Float64, like the MoLRG.
    """

    def __init__(self, model: MoLRG):
        if not isinstance(model, MoLRG):
            raise TypeError(f"model must be a MoLRG; got {type(model).__name__}")
        self.model = model

    def __call__(self, x: torch.Tensor, timestep) -> torch.Tensor:
        t = self.model.schedule.t_of_timestep(int(timestep))
        return self.model.eps(x.to(torch.float64), t)

    def __repr__(self) -> str:
        return f"<MoLRGEps d={self.model.d} ranks={self.model.ranks}>"


def molrg_eps(model: MoLRG) -> MoLRGEps:
    """The exact ε-model of a MoLRG (for DDIM with ``grid=ddim_grid(schedule=model.schedule)``)."""
    return MoLRGEps(model)


