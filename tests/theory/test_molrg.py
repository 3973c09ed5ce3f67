"""The exact MoLRG (Assumption 1, Lemmas 1–2): against Monte Carlo, autograd, scipy, and bad input."""
import math

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from lococourse.core.schedule import SCHEDULE
from lococourse.jacobian.operator import dense_jacobian
from lococourse.theory.molrg import MoLRG, random_orthonormal_bases

DT = torch.float64


@pytest.fixture(scope="module")
def equal():
    return MoLRG.random((3, 4, 4), [6, 6], seed=0)


@pytest.fixture(scope="module")
def unequal():
    return MoLRG.random((1, 8, 8), [2, 10, 4], weights=[0.5, 0.2, 0.3], seed=1)


def noisy_points(m: MoLRG, t: float, n: int = 4, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x0, _ = m.sample(n, g)
    return m.noise(x0, t, g)[0]


def scipy_weights(m: MoLRG, x: torch.Tensor, t: float) -> np.ndarray:
    """Bayes' rule with full covariances ᾱ M_k M_kᵀ + (1−ᾱ) I and priors π_k; returns (B, K)."""
    ab, om = float(SCHEDULE.alpha_bar(t)), float(SCHEDULE.one_minus_alpha_bar(t))
    xf = x.reshape(x.shape[0], -1).numpy()
    logits = np.stack([math.log(float(p)) + multivariate_normal.logpdf(xf, np.zeros(m.d), ab * (B @ B.T).numpy()
                                                                       + om * np.eye(m.d))
                       for p, B in zip(m.weights, m.bases)], axis=1)
    return logits


# ------------------------------------------------------------------------------------------ construction
def test_random_bases_are_orthonormal_and_mutually_orthogonal():
    bases = random_orthonormal_bases(20, [3, 5, 2], seed=4)
    M = torch.cat(bases, 1)
    assert [b.shape for b in bases] == [(20, 3), (20, 5), (20, 2)]
    assert torch.allclose(M.T @ M, torch.eye(10, dtype=DT), atol=1e-14)
    assert torch.equal(torch.cat(random_orthonormal_bases(20, [3, 5, 2], seed=4), 1), M)  # seeded


def test_sizes(unequal):
    assert unequal.d == 64 and unequal.ranks == [2, 10, 4] and unequal.K == 3 and unequal.M.shape == (64, 16)
    assert torch.allclose(unequal.weights, torch.tensor([0.5, 0.2, 0.3], dtype=DT))
    assert torch.allclose(MoLRG.random(10, [2, 2]).weights, torch.tensor([0.5, 0.5], dtype=DT))


# ------------------------------------------------------------------------------------------ Lemma 1
@pytest.mark.parametrize("t", [0.05, 0.3, 0.6, 0.95])
def test_bayes_weights_match_scipy_oracle(unequal, t):
    x = noisy_points(unequal, t)
    logits = scipy_weights(unequal, x, t)
    lw = unequal.log_weights(x, t)
    assert np.allclose(lw.numpy(), logits - logsumexp(logits, axis=1, keepdims=True), atol=1e-9, rtol=1e-12)
    assert torch.allclose(lw.exp().sum(-1), torch.ones(len(x), dtype=DT), atol=1e-15)


@pytest.mark.parametrize("t", [0.05, 0.4, 0.9])
def test_log_density_matches_scipy_mixture(unequal, t):
    x = noisy_points(unequal, t)
    logits = scipy_weights(unequal, x, t)
    assert np.allclose(unequal.log_density(x, t).numpy(), logsumexp(logits, axis=1), rtol=1e-12)
    assert float(unequal.log_density(x[0], t)) == pytest.approx(float(logsumexp(logits[0])), rel=1e-12)  # unbatched


@pytest.mark.parametrize("t", [0.1, 0.5, 0.9])
def test_paper_weights_equal_bayes_when_ranks_and_priors_equal(equal, t):
    x = noisy_points(equal, t)
    assert torch.allclose(equal.log_weights(x, t, "paper"), equal.log_weights(x, t), atol=1e-12, rtol=0)
    assert torch.allclose(equal.posterior_mean(x, t, "paper"), equal.posterior_mean(x, t), atol=1e-12, rtol=0)


def test_paper_weights_differ_from_bayes_when_ranks_differ(unequal):
    x = noisy_points(unequal, 0.3)
    dw = (unequal.log_weights(x, 0.3, "paper").exp() - unequal.log_weights(x, 0.3).exp()).abs().max()
    assert dw > 0.2
    # Only the rank term differs with uniform π: the offset of the log-odds is exactly (r_k − r_l)/2 · log(1−ᾱ).
    m = MoLRG(unequal.bases, unequal.shape)
    lw, lp = m.log_weights(x, 0.3), m.log_weights(x, 0.3, "paper")
    shift = 0.5 * torch.tensor(m.ranks, dtype=DT) * torch.log(SCHEDULE.one_minus_alpha_bar(0.3))
    d = (lw - lp) - shift
    assert torch.allclose(d - d[:, :1], torch.zeros_like(d), atol=1e-12)


def _mc_z(m: MoLRG, x: torch.Tensor, t: float, rule: str, n: int = 160_000, batches: int = 16) -> torch.Tensor:
    """‖f − f_MC‖ in units of the MC standard error (batch means), per point."""
    est = torch.stack([m.monte_carlo_posterior_mean(x, t, n=n // batches, generator=torch.Generator().manual_seed(b))
                       for b in range(batches)]).flatten(2)
    se = (est.std(0) / math.sqrt(batches)).norm(dim=-1)
    return (m.posterior_mean(x, t, rule).flatten(1) - est.mean(0)).norm(dim=-1) / se


@pytest.mark.parametrize("name", ["equal", "unequal"])
def test_posterior_mean_matches_monte_carlo(name, request):
    m = request.getfixturevalue(name)
    x = noisy_points(m, 0.4, n=3, seed=5)
    z = _mc_z(m, x, 0.4, "bayes")
    assert (z < 4).all(), z  # z ≈ 1 for the true mean (measured 0.9–1.6)
    if name == "unequal":
        assert (_mc_z(m, x, 0.4, "paper") > 8).all()  # the paper's weights are rejected (measured 15–60)


def test_posterior_mean_formula_and_shapes(unequal):
    t = 0.5
    x = noisy_points(unequal, t)
    w = unequal.log_weights(x, t).exp()
    xf = x.flatten(1)
    manual = SCHEDULE.sqrt_alpha_bar(t) * sum(w[:, k:k + 1] * (xf @ B @ B.T) for k, B in enumerate(unequal.bases))
    f = unequal.posterior_mean(x, t)
    assert f.shape == x.shape and f.dtype == DT
    assert torch.allclose(f.flatten(1), manual, rtol=1e-14, atol=1e-15)
    assert torch.allclose(unequal.posterior_mean(x[1], t), f[1], rtol=1e-14)  # unbatched
    assert torch.allclose(unequal.posterior_mean(x.float(), t), unequal.posterior_mean(x.float().double(), t))
    pmp = unequal.pmp(t)
    assert torch.equal(pmp(x), f) and pmp.shape == unequal.shape and "MoLRG" in repr(pmp)


# ------------------------------------------------------------------------------------------ score, Tweedie
@pytest.mark.parametrize("t", [0.1, 0.5, 0.9])
def test_score_matches_autograd_of_log_density(unequal, t):
    x = noisy_points(unequal, t).requires_grad_(True)
    g = torch.autograd.grad(unequal.log_density(x, t).sum(), x)[0]
    assert torch.allclose(unequal.score(x.detach(), t), g, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("t", [0.1, 0.5, 0.9])
def test_tweedie_and_eps(unequal, t):
    x = noisy_points(unequal, t)
    ab, om = SCHEDULE.alpha_bar(t), SCHEDULE.one_minus_alpha_bar(t)
    f = unequal.posterior_mean(x, t)
    # eq. 13: E[x0|x_t] = (x_t + (1−ᾱ)∇log p_t)/√ᾱ; round-off is amplified ~1/ᾱ by the cancellation.
    tw = (x + om * unequal.score(x, t)) / ab.sqrt()
    assert float((f - tw).norm() / f.norm()) < 1e-13 / float(ab)
    # x_t = √ᾱ E[x0|x_t] + √(1−ᾱ) E[ε|x_t]
    assert torch.allclose(ab.sqrt() * f + om.sqrt() * unequal.eps(x, t), x, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------------------ Lemma 2
@pytest.mark.parametrize("rule", ["bayes", "paper"])
@pytest.mark.parametrize("t", [0.05, 0.3, 0.7, 0.95])
def test_closed_form_jacobian_matches_autograd(unequal, t, rule):
    x = noisy_points(unequal, t, n=2)
    J = unequal.jacobian(x, t, rule)
    assert J.shape == (2, 64, 64) and J.dtype == DT
    for i in range(2):
        Ja = dense_jacobian(unequal.pmp(t, rule), x[i])
        assert float((J[i] - Ja).norm() / Ja.norm()) < 1e-8  # measured ~1e-15
        assert torch.allclose(unequal.jacobian(x[i], t, rule), J[i])  # unbatched


def test_jacobian_is_scaled_posterior_covariance(equal):
    # J = √ᾱ/(1−ᾱ) · Cov[x0 | x_t]: check the second moment against Monte Carlo-free closed form per class.
    t = 0.4
    x = noisy_points(equal, t, n=1)[0]
    ab, om = SCHEDULE.alpha_bar(t), SCHEDULE.one_minus_alpha_bar(t)
    w = equal.log_weights(x, t).exp()
    xf = x.flatten()
    means = [ab.sqrt() * B @ (B.T @ xf) for B in equal.bases]  # E[x0 | x_t, k]
    mean = sum(wk * mk for wk, mk in zip(w, means))
    cov = sum(wk * (om * B @ B.T + torch.outer(mk, mk)) for wk, B, mk in zip(w, equal.bases, means))
    cov = cov - torch.outer(mean, mean)
    assert torch.allclose(equal.jacobian(x, t), ab.sqrt() / om * cov, rtol=1e-10, atol=1e-13)


# ------------------------------------------------------------------------------------------ sampling
def test_sampling_statistics(unequal):
    n = 40_000
    x0, labels = unequal.sample(n, torch.Generator().manual_seed(3))
    assert x0.shape == (n, 1, 8, 8) and labels.shape == (n,) and x0.dtype == DT
    freq = torch.bincount(labels, minlength=3).double() / n
    se = (unequal.weights * (1 - unequal.weights) / n).sqrt()
    assert ((freq - unequal.weights).abs() < 5 * se).all()
    xf = x0.flatten(1)
    for k, B in enumerate(unequal.bases):
        xk = xf[labels == k]
        assert torch.allclose(xk - (xk @ B) @ B.T, torch.zeros_like(xk), atol=1e-12)  # x0 ∈ range(M_k)
        a = xk @ B  # coefficients ~ N(0, I_{r_k})
        cov = a.T @ a / len(a)
        assert (cov - torch.eye(B.shape[1], dtype=DT)).abs().max() < 6 / math.sqrt(len(a))


def test_forward_noise_statistics(equal):
    n, t = 40_000, 0.5
    g = torch.Generator().manual_seed(1)
    x0, _ = equal.sample(n, g)
    xt, eps = equal.noise(x0, t, g)
    ab, om = SCHEDULE.alpha_bar(t), SCHEDULE.one_minus_alpha_bar(t)
    assert torch.allclose(xt, ab.sqrt() * x0 + om.sqrt() * eps)
    cov = xt.flatten(1).T @ xt.flatten(1) / n
    expected = ab * sum(w * B @ B.T for w, B in zip(equal.weights, equal.bases)) + om * torch.eye(equal.d, dtype=DT)
    assert (cov - expected).abs().max() < 6 * math.sqrt(2 / n)


def test_sampling_is_seeded(equal):
    a = equal.sample(5, torch.Generator().manual_seed(9))
    b = equal.sample(5, torch.Generator().manual_seed(9))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


# ------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("bad_t", [0.0, -0.2, 1.5, float("nan")])
def test_t_outside_unit_interval_raises(equal, bad_t):
    x = torch.zeros(equal.shape, dtype=DT)
    for call in (lambda: equal.posterior_mean(x, bad_t), lambda: equal.jacobian(x, bad_t),
                 lambda: equal.log_weights(x, bad_t), lambda: equal.score(x, bad_t), lambda: equal.pmp(bad_t),
                 lambda: equal.log_density(x, bad_t), lambda: equal.noise(x, bad_t),
                 lambda: equal.monte_carlo_posterior_mean(x, bad_t, n=10)):
        with pytest.raises(ValueError, match="t must lie in"):
            call()


def test_ranks_exceeding_d_raise():
    with pytest.raises(ValueError, match=r"Σ r_k ≤ d; got Σ r_k = 12 > d = 10"):
        MoLRG.random(10, [6, 6])
    with pytest.raises(ValueError, match=r"Σ r_k = 11 > d = 10"):
        MoLRG(list(torch.eye(10, dtype=DT).repeat(1, 2)[:, :11].split([5, 6], 1)), (10,))
    with pytest.raises(ValueError, match="rank r_k must be ≥ 1"):
        random_orthonormal_bases(10, [3, 0])


def test_non_orthonormal_basis_raises():
    bases = random_orthonormal_bases(16, [3, 3])
    with pytest.raises(ValueError, match="orthonormal"):
        MoLRG([2.0 * bases[0], bases[1]], (16,))


def test_non_orthogonal_bases_raise():
    bases = random_orthonormal_bases(16, [3, 3])
    B1 = torch.linalg.qr(bases[1] + 0.3 * bases[0])[0]  # orthonormal itself, but not ⟂ M_0
    with pytest.raises(ValueError, match="mutually orthogonal"):
        MoLRG([bases[0], B1], (16,))


@pytest.mark.parametrize("weights", [[0.5, 0.6], [1.0, 0.0], [-0.1, 1.1], [0.2, 0.3, 0.5], [float("nan"), 0.5], [1.0]])
def test_bad_weights_raise(weights):
    with pytest.raises(ValueError, match="weights π must be K = 2 positive numbers summing to 1"):
        MoLRG.random(16, [3, 3], weights=weights)


def test_mismatched_shapes_raise(equal):
    bases = random_orthonormal_bases(16, [3, 3])
    with pytest.raises(ValueError, match=r"basis M_0 must have shape \(d, r_k\) with d = 15"):
        MoLRG(bases, (3, 5))
    with pytest.raises(ValueError, match=r"basis M_1 must have shape"):
        MoLRG([bases[0], bases[1].flatten()], (16,))
    with pytest.raises(ValueError, match="at least one basis"):
        MoLRG([], (16,))
    with pytest.raises(ValueError, match=r"x_t must have shape \(3, 4, 4\) or \(B, \*\(3, 4, 4\)\); got \(2, 48\)"):
        equal.posterior_mean(torch.zeros(2, 48, dtype=DT), 0.5)
    with pytest.raises(ValueError, match="x_t must have shape"):
        equal.jacobian(torch.zeros(4, 4, 3, dtype=DT), 0.5)
    with pytest.raises(ValueError, match="x0 must have shape"):
        equal.noise(torch.zeros(5, dtype=DT), 0.5)


def test_nan_in_x_t_raises(equal):
    x = torch.zeros(2, *equal.shape, dtype=DT)
    x[1, 0, 0, 0] = float("nan")
    for call in (equal.posterior_mean, equal.jacobian, equal.score, equal.log_weights, equal.log_density):
        with pytest.raises(ValueError, match="x_t contains 1 NaN and 0 infinite entries"):
            call(x, 0.5)
    x[1, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="0 NaN and 1 infinite"):
        equal.pmp(0.5)(x)


def test_bad_rule_raises(equal):
    with pytest.raises(ValueError, match="rule must be 'bayes' or 'paper'; got 'Bayes'"):
        equal.posterior_mean(torch.zeros(equal.shape, dtype=DT), 0.5, rule="Bayes")
