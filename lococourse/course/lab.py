"""Pure compute helpers for the course notebooks and widgets (torch, float64, no plotting).

Each function takes a :class:`~lococourse.theory.molrg.MoLRG` (or builds one), runs an experiment of the
paper (Chen et al., NeurIPS 2024) on its exact posterior mean, and returns a small dataclass of
tensors that :mod:`lococourse.course.viz` draws and the tests check against independent oracles.

* Notebook 01, Assumption 1 and Lemma 1: :func:`coordinate_molrg`, :func:`smooth_molrg`, :func:`noisy_samples`,
  :func:`dropped_log_terms`, :func:`compare_weight_rules`, :func:`weight_gap_vs_t`.
* Notebook 02, Lemmas 2–3, Theorem 1 (rank, alignment), eq. 10, Algorithm 2:
  :func:`check_jacobian`, :func:`spectrum_vs_t`, :func:`power_vs_svd`; the second-order Tweedie identity
  J = √ᾱ/(1−ᾱ)·Cov[x₀|x_t] against a Monte Carlo covariance (:func:`monte_carlo_posterior_cov`,
  :func:`tweedie_check`); Gaussian data that is *not* exactly low-rank (:func:`gaussian_rank_vs_t`).
* Notebook 03, eq. 4 and Theorem 1 eq. 8: :func:`linearity_vs_t`, :func:`error_scaling`,
  :func:`linearized_images`.

Points along t share their noise: x_t = √ᾱ(t) x₀ + √(1−ᾱ(t)) ε with x₀ and ε drawn once from
``seed``, so curves against t follow one sample path of the forward process.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

import torch

from lococourse.core.checks import check_finite, check_positive_int
from lococourse.core.schedule import SCHEDULE, check_t
from lococourse.jacobian.linearity import local_linearity
from lococourse.jacobian.operator import dense_jacobian
from lococourse.jacobian.power import power_method
from lococourse.jacobian.subspace import alignment, numerical_rank, subspace_distance
from lococourse.theory.molrg import MoLRG

__all__ = [
    "coordinate_molrg", "smooth_molrg", "NoisySamples", "noisy_samples", "relative_error",
    "dropped_log_terms", "RuleComparison", "compare_weight_rules", "WeightGapSweep", "weight_gap_vs_t",
    "JacobianCheck", "check_jacobian", "SpectrumSweep", "spectrum_vs_t", "PowerVsSVD", "power_vs_svd",
    "unit_direction", "LinearitySweep", "linearity_vs_t", "ErrorScaling", "error_scaling",
    "LinearizedImages", "linearized_images", "monte_carlo_posterior_cov", "TweedieCheck", "tweedie_check",
    "GaussianRankSweep", "gaussian_rank_vs_t",
]

_DT = torch.float64
#: How a probe direction Δx of the linearity studies is chosen (not an editing direction: see lococourse.editing.direction).
ProbeDirection = Literal["random", "in_subspace"]


# ---------------------------------------------------------------------------------------- validation
def _check_ts(ts) -> torch.Tensor:
    """A non-empty 1-D float64 tensor of times, each in (0, 1]."""
    ts = torch.as_tensor(ts, dtype=_DT).flatten()
    if ts.numel() == 0:
        raise ValueError("ts must hold at least one time; got an empty sequence")
    check_t(ts)
    return ts


def _check_lambdas(lambdas) -> torch.Tensor:
    lam = torch.as_tensor(lambdas, dtype=_DT).flatten()
    if lam.numel() == 0:
        raise ValueError("lambdas must hold at least one step size; got an empty sequence")
    check_finite(lam, "lambdas")
    return lam


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    return seed


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """‖a − b‖_F / ‖b‖_F over all entries (b is the reference)."""
    if a.shape != b.shape:
        raise ValueError(f"relative_error needs equal shapes; got {tuple(a.shape)} and {tuple(b.shape)}")
    nb = torch.linalg.norm(b.to(_DT))
    if nb == 0:
        raise ValueError("relative_error: the reference b is zero")
    return float(torch.linalg.norm(a.to(_DT) - b.to(_DT)) / nb)


# ---------------------------------------------------------------------------------------- 01: MoLRG, Lemma 1
def coordinate_molrg(ranks: Sequence[int], d: int | None = None, weights=None) -> MoLRG:
    """A MoLRG (Assumption 1) whose bases are consecutive blocks of the standard basis of ℝ^d.

    M_1 = [e_1 … e_{r_1}], M_2 = [e_{r_1+1} …], …: in d = 3, ranks (1, 2) is the x-axis and the
    (y, z)-plane, and ranks (1, 1) two lines.  ``d`` defaults to Σ r_k.  For pictures in 2-D/3-D.
    """
    ranks = [int(r) for r in ranks]
    if len(ranks) == 0 or any(r < 1 for r in ranks):
        raise ValueError(f"ranks must be a non-empty list of integers ≥ 1; got {ranks}")
    d = sum(ranks) if d is None else d
    check_positive_int(d, "d")
    if sum(ranks) > d:
        raise ValueError(f"the ranks must satisfy Σ r_k ≤ d; got Σ r_k = {sum(ranks)} > d = {d}")
    eye = torch.eye(d, dtype=_DT)
    bases = list(torch.split(eye[:, :sum(ranks)], ranks, dim=1))
    return MoLRG([b.clone() for b in bases], (d,), weights)


def smooth_molrg(shape: Sequence[int], ranks: Sequence[int], weights=None, seed: int = 0, width: float = 1.5) -> MoLRG:
    """An image-shaped MoLRG whose basis images are smooth, so samples look like blurry pictures, not noise.

    Σ r_k seeded Gaussian images of shape (C, H, W) are blurred (circular Gaussian filter, std
    ``width`` pixels), flattened and orthonormalised together by QR (positive diag(R)), then split
    into M_1, …, M_K: mutually orthogonal orthonormal bases as Assumption 1 requires.  Columns of Q
    are combinations of smooth images, hence smooth.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"shape must be (C, H, W) with positive sizes; got {shape}")
    if not width > 0:
        raise ValueError(f"width must be positive; got {width}")
    ranks = [int(r) for r in ranks]
    if len(ranks) == 0 or any(r < 1 for r in ranks):
        raise ValueError(f"ranks must be a non-empty list of integers ≥ 1; got {ranks}")
    d = math.prod(shape)
    if sum(ranks) > d:
        raise ValueError(f"the ranks must satisfy Σ r_k ≤ d; got Σ r_k = {sum(ranks)} > d = {d}")
    C, H, W = shape
    g = torch.Generator().manual_seed(_check_seed(seed))
    z = torch.randn(sum(ranks), C, H, W, generator=g, dtype=_DT)
    # Gaussian blur as a product of circular 1-D filters, in Fourier space.
    fy, fx = torch.fft.fftfreq(H, dtype=_DT), torch.fft.fftfreq(W, dtype=_DT)
    gain = torch.exp(-2 * (math.pi * width) ** 2 * (fy[:, None] ** 2 + fx[None, :] ** 2))
    z = torch.fft.ifft2(torch.fft.fft2(z) * gain).real
    q, r = torch.linalg.qr(z.reshape(sum(ranks), d).T)
    q = q * torch.sign(torch.diagonal(r))
    return MoLRG([b.contiguous() for b in torch.split(q, ranks, dim=1)], shape, weights)


@dataclass
class NoisySamples:
    """x₀ ~ p_data (Assumption 1), its class, the noise ε and x_t = √ᾱ x₀ + √(1−ᾱ) ε."""

    t: float
    x0: torch.Tensor  # (n, *shape)
    labels: torch.Tensor  # (n,)
    eps: torch.Tensor  # (n, *shape)
    x_t: torch.Tensor  # (n, *shape)


def _draw(model: MoLRG, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x₀, labels and ε from one seeded generator (ε independent of t)."""
    check_positive_int(n, "n")
    g = torch.Generator().manual_seed(_check_seed(seed))
    x0, labels = model.sample(n, g)
    eps = torch.randn(x0.shape, generator=g, dtype=_DT)
    return x0, labels, eps


def _forward(model: MoLRG, x0: torch.Tensor, eps: torch.Tensor, t: float) -> torch.Tensor:
    """x_t = √ᾱ(t) x₀ + √(1−ᾱ(t)) ε."""
    return model.schedule.sqrt_alpha_bar(t) * x0 + model.schedule.sqrt_one_minus_alpha_bar(t) * eps


def noisy_samples(model: MoLRG, t: float, n: int = 500, seed: int = 0) -> NoisySamples:
    """n samples of the forward process at time t (seeded)."""
    check_t(t)
    x0, labels, eps = _draw(model, n, seed)
    return NoisySamples(float(t), x0, labels, eps, _forward(model, x0, eps, t))


def dropped_log_terms(model: MoLRG, t: float) -> torch.Tensor:
    """log π_k + (r_k/2) log(1−ᾱ): the per-class logit terms that Lemma 1's printed weights drop, shape (K,).

    Only differences between classes matter (softmax), so the paper's weights equal Bayes' rule
    exactly when these K numbers are all equal, e.g. equal ranks and π_k = 1/K.
    """
    check_t(t)
    ranks = torch.tensor(model.ranks, dtype=_DT)
    return model.weights.log() + 0.5 * ranks * torch.log(model.schedule.one_minus_alpha_bar(t))


@dataclass
class RuleComparison:
    """Lemma 1 with Bayes' weights and with the paper's printed weights, against Monte Carlo."""

    t: float
    x0: torch.Tensor  # (B, *shape) the clean samples behind the points
    x_t: torch.Tensor  # (B, *shape) points, drawn from p_t
    labels: torch.Tensor  # (B,) the class each point came from
    weights_bayes: torch.Tensor  # (B, K)
    weights_paper: torch.Tensor  # (B, K)
    mean_bayes: torch.Tensor  # (B, *shape)
    mean_paper: torch.Tensor  # (B, *shape)
    mean_mc: torch.Tensor  # (B, *shape)
    err_bayes: float  # ‖bayes − MC‖_F / ‖MC‖_F over the batch
    err_paper: float  # ‖paper − MC‖_F / ‖MC‖_F
    gap: float  # ‖paper − bayes‖_F / ‖bayes‖_F (exact, no sampling)
    n_mc: int


def compare_weight_rules(model: MoLRG, t: float, n_points: int = 16, n_mc: int = 200_000, seed: int = 0) -> RuleComparison:
    """E[x₀|x_t] by Lemma 1 with ``rule="bayes"`` and ``rule="paper"``, and by Monte Carlo.

    The points x_t are drawn from p_t with ``seed``; the Monte Carlo oracle
    (:meth:`MoLRG.monte_carlo_posterior_mean`, self-normalised importance sampling with ``n_mc``
    draws of x₀) uses ``seed + 1``.  Its error shrinks like 1/√n_mc and grows as t → 0, where the
    likelihood N(x_t; √ᾱ x₀, (1−ᾱ) I) becomes narrow.
    """
    check_t(t)
    check_positive_int(n_mc, "n_mc")
    s = noisy_samples(model, t, n_points, seed)
    mb = model.posterior_mean(s.x_t, t, "bayes")
    mp = model.posterior_mean(s.x_t, t, "paper")
    mc = model.monte_carlo_posterior_mean(s.x_t, t, n=n_mc, generator=torch.Generator().manual_seed(seed + 1))
    return RuleComparison(
        float(t), s.x0, s.x_t, s.labels, model.log_weights(s.x_t, t, "bayes").exp(), model.log_weights(s.x_t, t, "paper").exp(),
        mb, mp, mc, relative_error(mb, mc), relative_error(mp, mc), relative_error(mp, mb), n_mc,
    )


@dataclass
class WeightGapSweep:
    """How far Lemma 1's printed weights are from Bayes' rule, against t (exact, no sampling)."""

    ts: torch.Tensor  # (T,)
    tv: torch.Tensor  # (T,) mean over points of the total variation ½ Σ_k |w_k^bayes − w_k^paper|
    mean_gap: torch.Tensor  # (T,) ‖E_paper − E_bayes‖_F / ‖E_bayes‖_F over the points
    class_bayes: torch.Tensor  # (T, K) mean Bayes weight of each class (→ π_k on average)
    class_paper: torch.Tensor  # (T, K) mean paper weight of each class


def weight_gap_vs_t(model: MoLRG, ts, n_points: int = 256, seed: int = 0) -> WeightGapSweep:
    """For each t, compare the two weight rules on the same x₀, ε pushed to time t."""
    ts = _check_ts(ts)
    x0, _, eps = _draw(model, n_points, seed)
    tv, gap, cb, cp = [], [], [], []
    for t in ts.tolist():
        xt = _forward(model, x0, eps, t)
        wb, wp = model.log_weights(xt, t, "bayes").exp(), model.log_weights(xt, t, "paper").exp()
        tv.append(0.5 * (wb - wp).abs().sum(-1).mean())
        gap.append(relative_error(model.posterior_mean(xt, t, "paper"), model.posterior_mean(xt, t, "bayes")))
        cb.append(wb.mean(0))
        cp.append(wp.mean(0))
    return WeightGapSweep(ts, torch.stack(tv), torch.tensor(gap, dtype=_DT), torch.stack(cb), torch.stack(cp))


# ---------------------------------------------------------------------------------------- 02: the Jacobian
@dataclass
class JacobianCheck:
    """Lemma 2 (closed form vs autograd), Lemma 3 (symmetry), PSD-ness and Theorem 1's rank bound at one x_t."""

    t: float
    rel_err_autograd: float  # ‖J_closed − J_autograd‖_F / ‖J_autograd‖_F
    symmetry: float  # ‖J − Jᵀ‖_F / ‖J‖_F
    min_eig_ratio: float  # λ_min(J) / λ_max(J) (≥ 0 up to round-off for a PSD J)
    numerical_rank: int  # eq. 10 with η
    exact_rank: int  # #{σ_i > 1e-10 σ_1}
    rank_bound: int  # Σ r_k (Theorem 1)
    d: int


def _one_point(model: MoLRG, t: float, seed: int, n: int = 1) -> torch.Tensor:
    """n points x_t (n, *shape) from the forward process at t."""
    x0, _, eps = _draw(model, n, seed)
    return _forward(model, x0, eps, t)


def check_jacobian(model: MoLRG, t: float, seed: int = 0, rule: str = "bayes", eta: float = 0.99) -> JacobianCheck:
    """Closed-form Jacobian (Lemma 2) against autograd (:func:`dense_jacobian` of the PMP) at one seeded x_t."""
    check_t(t)
    x = _one_point(model, t, seed)[0]
    J = model.jacobian(x, t, rule).reshape(model.d, model.d)
    J_ad = dense_jacobian(model.pmp(t, rule), x).reshape(model.d, model.d)
    sym = 0.5 * (J + J.T)
    eig = torch.linalg.eigvalsh(sym)
    S = torch.linalg.svdvals(J)
    return JacobianCheck(
        float(t), relative_error(J, J_ad), float(torch.linalg.norm(J - J.T) / torch.linalg.norm(J)),
        float(eig[0] / eig[-1]), numerical_rank(S, eta), int((S > 1e-10 * S[0]).sum()), sum(model.ranks), model.d,
    )


@dataclass
class SpectrumSweep:
    """Spectrum of the exact Jacobian along t, over a few seeded points (the paper's Figure 2a, Appendix D.1)."""

    ts: torch.Tensor  # (T,)
    singular_values: torch.Tensor  # (T, n, d), descending
    numerical_rank: torch.Tensor  # (T, n) eq. 10
    alignment: torch.Tensor  # (T, n) ‖(I − U_r U_rᵀ) M‖_F / ‖M‖_F, r = Σ r_k (Theorem 1)
    r: int
    d: int
    eta: float

    @property
    def rank_ratio(self) -> torch.Tensor:
        """(T,) mean numerical rank / d (the paper averages over its 15 samples)."""
        return self.numerical_rank.to(_DT).mean(1) / self.d

    @property
    def relative_singular_values(self) -> torch.Tensor:
        """(T, n, d) σ_i / σ_1."""
        return self.singular_values / self.singular_values[..., :1]


def spectrum_vs_t(model: MoLRG, ts, n_samples: int = 4, seed: int = 0, eta: float = 0.99) -> SpectrumSweep:
    """Dense SVD of the closed-form Jacobian at x_t(t) for each t; numerical rank (eq. 10) and alignment."""
    ts = _check_ts(ts)
    x0, _, eps = _draw(model, n_samples, seed)
    r, M = sum(model.ranks), model.M
    svals, ranks, align = [], [], []
    for t in ts.tolist():
        J = model.jacobian(_forward(model, x0, eps, t), t).reshape(n_samples, model.d, model.d)
        U, S, _ = torch.linalg.svd(J, full_matrices=False)
        svals.append(S)
        ranks.append(torch.tensor([numerical_rank(s, eta) for s in S]))
        align.append(torch.tensor([alignment(u[:, :r], M) for u in U], dtype=_DT))
    return SpectrumSweep(ts, torch.stack(svals), torch.stack(ranks), torch.stack(align), r, model.d, eta)


@dataclass
class PowerVsSVD:
    """Algorithm 2 (generalized power method, matrix-free) against a dense SVD of the closed-form J."""

    t: float
    k: int
    S_power: torch.Tensor  # (k,)
    S_dense: torch.Tensor  # (k + 1,) the top k + 1 dense singular values (the last one sets the gap)
    rel_err_S: float  # max_i |σ_i^power − σ_i^dense| / σ_1^dense
    dist_V: float  # sin of the largest principal angle between the top-k right singular subspaces
    gap_ratio: float  # σ_{k+1} / σ_k: the convergence factor per iteration is its square
    n_iter: int
    converged: bool
    history: list


def power_vs_svd(model: MoLRG, t: float, k: int | None = None, seed: int = 0, **power_kwargs) -> PowerVsSVD:
    """Run :func:`power_method` on the exact PMP at a seeded x_t and compare with ``torch.linalg.svd``.

    ``k`` defaults to r = Σ r_k, where σ_{r+1} = 0 (Theorem 1) and the top-k subspace is span(M).
    Inside a class the exact Jacobian has repeated singular values (√ᾱ w_k, about r_k − 1 times),
    so for other k the top-k subspace may not be unique (``gap_ratio`` = 1): then only the
    singular values are comparable, not ``dist_V``.
    """
    check_t(t)
    k = sum(model.ranks) if k is None else k
    check_positive_int(k, "k", upper=model.d - 1, upper_name="d − 1")
    x = _one_point(model, t, seed)[0]
    res = power_method(model.pmp(t), x, k=k, seed=seed, **power_kwargs)
    _, S, Vh = torch.linalg.svd(model.jacobian(x, t).reshape(model.d, model.d), full_matrices=False)
    return PowerVsSVD(
        float(t), k, res.S, S[:k + 1], float((res.S - S[:k]).abs().max() / S[0]),
        subspace_distance(res.V, Vh[:k].T), float(S[k] / S[k - 1]), res.n_iter, res.converged, res.history,
    )


# ---------------------------------------------------------------------------------------- 03: local linearity
def unit_direction(model: MoLRG, direction: ProbeDirection | torch.Tensor = "random", seed: int = 0) -> torch.Tensor:
    """A unit perturbation Δx ∈ S^{d−1} of shape ``model.shape`` (eq. 4).

    ``"random"``: a seeded Gaussian direction (almost all of it orthogonal to the data subspaces).
    ``"in_subspace"``: M a / ‖M a‖ for a seeded Gaussian a, a direction inside span(M), like the
    semantic editing directions of Theorem 1.  A tensor is normalised and returned.
    """
    g = torch.Generator().manual_seed(_check_seed(seed))
    if isinstance(direction, torch.Tensor):
        if direction.numel() != model.d:
            raise ValueError(f"direction must have {model.d} entries (shape {model.shape}); got shape {tuple(direction.shape)}")
        check_finite(direction, "direction")
        v = direction.to(_DT).reshape(model.d)
    elif direction == "random":
        v = torch.randn(model.d, generator=g, dtype=_DT)
    elif direction == "in_subspace":
        v = model.M @ torch.randn(sum(model.ranks), generator=g, dtype=_DT)
    else:
        raise ValueError(f"direction must be 'random', 'in_subspace' or a tensor; got {direction!r}")
    n = torch.linalg.norm(v)
    if n == 0:
        raise ValueError("direction must be non-zero; got the zero vector")
    return (v / n).reshape(model.shape)


@dataclass
class LinearitySweep:
    """Eq. 4 diagnostics on a (t, λ) grid, averaged over seeded points (the paper's Figure 2b, Figure 10)."""

    ts: torch.Tensor  # (T,)
    lambdas: torch.Tensor  # (L,)
    norm_ratio: torch.Tensor  # (T, L) mean of ‖f(x+λΔx)‖ / ‖l(x;λΔx)‖
    cosine: torch.Tensor  # (T, L) mean cosine between f(x+λΔx) and l(x;λΔx)
    error: torch.Tensor  # (T, L) mean raw error ‖f(x+λΔx) − l(x;λΔx)‖
    rel_error: torch.Tensor  # (T, L) mean of error / ‖f(x)‖
    snr: torch.Tensor  # (T,) ᾱ/(1−ᾱ), the factor in eq. 8
    direction: str
    rel_error_points: torch.Tensor | None = None  # (T, n, L) error / ‖f(x)‖ at each point (the spread behind the mean)


def linearity_vs_t(model: MoLRG, ts, lambdas, n_samples: int = 4, seed: int = 0,
                   direction: ProbeDirection | torch.Tensor = "random") -> LinearitySweep:
    """:func:`~lococourse.jacobian.local_linearity` of the exact PMP for each t, on points x_t(t) from ``seed``.

    The direction Δx is the same at every t and point (from ``seed + 1``, see :func:`unit_direction`).
    """
    ts, lam = _check_ts(ts), _check_lambdas(lambdas)
    x0, _, eps = _draw(model, n_samples, seed)
    dx = unit_direction(model, direction, seed + 1)
    nr, cos, err, rel = [], [], [], []
    for t in ts.tolist():
        f = model.pmp(t)
        xt = _forward(model, x0, eps, t)
        lins = [local_linearity(f, x, dx, lam) for x in xt]
        f0 = torch.linalg.norm(f(xt).reshape(n_samples, -1), dim=1)  # (n,)
        nr.append(torch.stack([li.norm_ratio for li in lins]).mean(0))
        cos.append(torch.stack([li.cosine for li in lins]).mean(0))
        e = torch.stack([li.error for li in lins])  # (n, L)
        err.append(e.mean(0))
        rel.append(e / f0[:, None])
    name = direction if isinstance(direction, str) else "given"
    rel = torch.stack(rel)  # (T, n, L)
    return LinearitySweep(ts, lam, torch.stack(nr), torch.stack(cos), torch.stack(err), rel.mean(1),
                          model.schedule.snr(ts), name, rel)


@dataclass
class ErrorScaling:
    """Theorem 1 eq. 8: ‖f(x+λΔx) − f(x) − λJΔx‖ = λ · ᾱ/(1−ᾱ) · O(λ), so error ∝ λ² for small λ.

    ``kappa`` = error / (λ² √ᾱ ᾱ/(1−ᾱ)): for the exact PMP the second derivative carries the factor
    √ᾱ · ᾱ/(1−ᾱ) of Lemma 2's rank-one terms, so κ tends to a constant as t → 1 (c = ᾱ/(1−ᾱ) → 0).
    """

    t: float
    lambdas: torch.Tensor  # (L,) > 0
    error: torch.Tensor  # (L,)
    error_over_lambda: torch.Tensor  # (L,)
    kappa: torch.Tensor  # (L,) error / (λ² √ᾱ ᾱ/(1−ᾱ))
    slope: float  # least-squares slope of log error against log λ (2 for a smooth f)
    snr: float


def error_scaling(model: MoLRG, t: float, lambdas=None, seed: int = 0,
                  direction: ProbeDirection | torch.Tensor = "in_subspace") -> ErrorScaling:
    """Linearisation error against small λ at one seeded point; the log-log slope should be 2."""
    check_t(t)
    lam = torch.logspace(-2, -0.5, 7, dtype=_DT) if lambdas is None else _check_lambdas(lambdas)
    if (lam <= 0).any():
        raise ValueError(f"error_scaling needs positive λ for a log-log fit; got {lam.tolist()}")
    x = _one_point(model, t, seed)[0]
    lin = local_linearity(model.pmp(t), x, unit_direction(model, direction, seed + 1), lam)
    if (lin.error <= 0).any():
        raise ValueError(f"the linearisation error is exactly 0 at some λ (t = {t}): f is linear there, no slope to fit")
    A = torch.stack([torch.log(lam), torch.ones_like(lam)], 1)
    slope = float(torch.linalg.lstsq(A, torch.log(lin.error)[:, None]).solution[0, 0])
    snr = model.schedule.snr(t)
    kappa = lin.error / (lam ** 2 * model.schedule.sqrt_alpha_bar(t) * snr)
    return ErrorScaling(float(t), lam, lin.error, lin.error / lam, kappa, slope, float(snr))


@dataclass
class LinearizedImages:
    """f(x+λΔx) next to its linearisation l(x;λΔx) = f(x) + λJΔx (eq. 4), as images."""

    t: float
    lam: float
    x_t: torch.Tensor  # (*shape)
    f0: torch.Tensor  # f(x_t)
    f_perturbed: torch.Tensor  # f(x_t + λΔx)
    linearized: torch.Tensor  # l(x_t; λΔx)
    rel_error: float  # ‖f(x+λΔx) − l‖ / ‖f(x+λΔx)‖


def linearized_images(model: MoLRG, t: float, lam: float, seed: int = 0,
                      direction: ProbeDirection | torch.Tensor = "random") -> LinearizedImages:
    """One seeded point: the PMP output after a step λΔx and its first-order prediction."""
    check_t(t)
    if not math.isfinite(lam):
        raise ValueError(f"lam must be finite; got {lam}")
    x = _one_point(model, t, seed)[0]
    dx = unit_direction(model, direction, seed + 1)
    f = model.pmp(t)
    f0, Jdx = torch.func.jvp(lambda z: f(z.unsqueeze(0)).squeeze(0), (x,), (dx,))
    fp = f((x + lam * dx).unsqueeze(0))[0]
    lin = f0 + lam * Jdx
    return LinearizedImages(float(t), float(lam), x, f0, fp, lin, relative_error(lin, fp))


# ---------------------------------------------------------------------------------------- 02: second-order Tweedie
def monte_carlo_posterior_cov(model: MoLRG, x_t: torch.Tensor, t: float, n: int = 200_000, seed: int = 0) -> torch.Tensor:
    """Cov[x₀|x_t] (d × d) by self-normalised importance sampling — an oracle that uses no Lemma and no derivative.

    Draws x₀⁽ⁱ⁾ ~ p_data (seeded) and weights each by the forward likelihood N(x_t; √ᾱ x₀⁽ⁱ⁾, (1−ᾱ) I):
    Cov ≈ Σ_i w_i x₀⁽ⁱ⁾x₀⁽ⁱ⁾ᵀ − m mᵀ with m = Σ_i w_i x₀⁽ⁱ⁾ (the same weights as
    :meth:`MoLRG.monte_carlo_posterior_mean`).  Its error shrinks like 1/√(effective sample size).
    """
    check_t(t)
    check_positive_int(n, "n")
    x = torch.as_tensor(x_t, dtype=_DT).reshape(1, model.d)
    x0, _ = model.sample(n, torch.Generator().manual_seed(_check_seed(seed)))
    x0 = x0.reshape(n, model.d)
    ab, one_m = model.schedule.alpha_bar(t), model.schedule.one_minus_alpha_bar(t)
    w = torch.softmax(-(torch.cdist(x, ab.sqrt() * x0) ** 2)[0] / (2 * one_m), 0)  # (n,)
    m = w @ x0
    return (x0 * w[:, None]).T @ x0 - torch.outer(m, m)


@dataclass
class TweedieCheck:
    """J (Lemma 2, closed form) against √ᾱ/(1−ᾱ)·Cov[x₀|x_t] with the covariance from Monte Carlo, at one point."""

    t: float
    J: torch.Tensor  # (d, d) closed form
    scaled_cov: torch.Tensor  # (d, d) √ᾱ/(1−ᾱ) · Cov_MC[x₀|x_t]
    rel_error: float  # ‖J − √ᾱ/(1−ᾱ) Cov_MC‖_F / ‖J‖_F
    mc_noise: float  # the same between two independent Monte Carlo estimates (how far sampling alone gets)
    effective_samples: float  # 1 / Σ w_i² of the importance weights


def tweedie_check(model: MoLRG, t: float, seed: int = 0, n_mc: int = 200_000) -> TweedieCheck:
    """The second-order Tweedie identity J = √ᾱ/(1−ᾱ)·Cov[x₀|x_t] at one seeded x_t, against Monte Carlo."""
    check_t(t)
    x = _one_point(model, t, seed)[0]
    J = model.jacobian(x, t).reshape(model.d, model.d)
    c = model.schedule.sqrt_alpha_bar(t) / model.schedule.one_minus_alpha_bar(t)
    cov_a = monte_carlo_posterior_cov(model, x, t, n=n_mc, seed=seed + 1)
    cov_b = monte_carlo_posterior_cov(model, x, t, n=n_mc, seed=seed + 2)
    x0, _ = model.sample(n_mc, torch.Generator().manual_seed(seed + 1))
    ab, one_m = model.schedule.alpha_bar(t), model.schedule.one_minus_alpha_bar(t)
    w = torch.softmax(-(torch.cdist(x.reshape(1, -1), ab.sqrt() * x0.reshape(n_mc, -1)) ** 2)[0] / (2 * one_m), 0)
    return TweedieCheck(float(t), J, c * cov_a, relative_error(c * cov_a, J), relative_error(c * cov_a, c * cov_b),
                        float(1 / (w ** 2).sum()))


# ---------------------------------------------------------------------------------------- 02: not exactly low-rank
@dataclass
class GaussianRankSweep:
    """Numerical rank of J for Gaussian data N(0, diag(s)) against t: J = √ᾱ · diag(s / (ᾱ s + 1 − ᾱ)) exactly."""

    ts: torch.Tensor  # (T,)
    spectrum: torch.Tensor  # (d,) the data variances s_i
    singular_values: torch.Tensor  # (T, d) of J, descending
    numerical_rank: torch.Tensor  # (T,) eq. 10
    eta: float

    @property
    def rank_ratio(self) -> torch.Tensor:
        return self.numerical_rank.to(_DT) / len(self.spectrum)


def gaussian_rank_vs_t(spectrum, ts, eta: float = 0.99) -> GaussianRankSweep:
    """Eq. 10 on the exact Jacobian of E[x₀|x_t] for x₀ ~ N(0, diag(spectrum)), at each t.

    For Gaussian data the posterior mean is linear, E[x₀|x_t] = √ᾱ Σ(ᾱΣ + (1−ᾱ)I)⁻¹ x_t, so J is that matrix:
    eigenvalues √ᾱ s_i/(ᾱ s_i + 1 − ᾱ).  A direction with s_i = 0 (exactly low-rank data) never contributes;
    one with s_i > 0, however small, tends to 1/√ᾱ → 1 as t → 0, so for data that is only *nearly* low-rank
    J → I and the rank ratio → 1 at small t.
    """
    s = torch.as_tensor(spectrum, dtype=_DT).flatten()
    if s.numel() == 0 or (s < 0).any() or not torch.isfinite(s).all() or not (s > 0).any():
        raise ValueError(f"spectrum must hold non-negative finite variances, at least one positive; got {s.tolist()[:6]}…")
    if not 0 < eta < 1:
        raise ValueError(f"eta must lie in (0, 1); got {eta}")
    ts = _check_ts(ts)
    ab = SCHEDULE.alpha_bar(ts)[:, None]
    sv = ab.sqrt() * s / (ab * s + (1 - ab))  # (T, d)
    sv = sv.sort(dim=1, descending=True).values
    ranks = torch.tensor([numerical_rank(row, eta) for row in sv])
    return GaussianRankSweep(ts, s, sv, ranks, float(eta))
