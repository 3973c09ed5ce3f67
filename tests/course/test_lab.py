"""lococourse.course.lab against independent oracles: scipy densities, numpy SVD, finite differences, closed forms."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

from lococourse import SCHEDULE, MoLRG
from lococourse.course import lab


@pytest.fixture(scope="module")
def line_plane():
    return lab.coordinate_molrg([1, 2])


@pytest.fixture(scope="module")
def img_model():
    return lab.smooth_molrg((1, 6, 6), [2, 3, 4], seed=3)


def _fd_jacobian(model: MoLRG, x: torch.Tensor, t: float, h: float = 1e-6) -> np.ndarray:
    """Central finite differences of the posterior mean, column by column (d × d)."""
    d = model.d
    xf = x.reshape(d)
    E = torch.eye(d, dtype=torch.float64)
    plus = model.posterior_mean((xf + h * E).reshape(d, *model.shape), t).reshape(d, d)
    minus = model.posterior_mean((xf - h * E).reshape(d, *model.shape), t).reshape(d, d)
    return ((plus - minus) / (2 * h)).T.numpy()  # column j = ∂f/∂x_j


def _np_numerical_rank(S: np.ndarray, eta: float = 0.99) -> int:
    s2 = np.sort(S)[::-1] ** 2
    return int(np.argmax(np.cumsum(s2) / s2.sum() > eta ** 2)) + 1


# ---------------------------------------------------------------------------------------- models
def test_coordinate_molrg_bases_are_standard_basis_blocks():
    m = lab.coordinate_molrg([1, 2], d=4, weights=[0.3, 0.7])
    assert m.d == 4 and m.ranks == [1, 2]
    np.testing.assert_array_equal(m.M.numpy(), np.eye(4)[:, :3])
    np.testing.assert_allclose(m.weights.numpy(), [0.3, 0.7])


@pytest.mark.parametrize("ranks, d, match", [([], None, "non-empty"), ([0, 1], None, "≥ 1"), ([2, 2], 3, "Σ r_k")])
def test_coordinate_molrg_rejects_bad_ranks(ranks, d, match):
    with pytest.raises(ValueError, match=match):
        lab.coordinate_molrg(ranks, d)


def test_smooth_molrg_is_orthonormal_and_smooth(img_model):
    M = img_model.M.numpy()
    np.testing.assert_allclose(M.T @ M, np.eye(M.shape[1]), atol=1e-12)
    # Smoothness: neighbouring pixels are far more alike than for random orthonormal bases.
    imgs = M.T.reshape(-1, 6, 6)
    rough = MoLRG.random((1, 6, 6), [2, 3, 4], seed=3).M.numpy().T.reshape(-1, 6, 6)
    tv = lambda a: np.abs(np.diff(a, axis=-1)).mean() + np.abs(np.diff(a, axis=-2)).mean()
    assert tv(imgs) < 0.7 * tv(rough)


@pytest.mark.parametrize("kwargs, match", [
    (dict(shape=(6, 6), ranks=[1]), "shape must be"),
    (dict(shape=(1, 2, 2), ranks=[3, 2]), "Σ r_k"),
    (dict(shape=(1, 4, 4), ranks=[1], width=0), "width"),
    (dict(shape=(1, 4, 4), ranks=[1], seed=-1), "seed"),
])
def test_smooth_molrg_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        lab.smooth_molrg(**kwargs)


def test_noisy_samples_follow_the_forward_process(img_model):
    s = lab.noisy_samples(img_model, 0.3, n=50, seed=1)
    ab = float(SCHEDULE.alpha_bar(0.3))
    np.testing.assert_allclose(s.x_t.numpy(), math.sqrt(ab) * s.x0.numpy() + math.sqrt(1 - ab) * s.eps.numpy(), atol=1e-14)
    # each x₀ lies in the span of its own class basis
    x0 = s.x0.reshape(50, -1)
    for k, Mk in enumerate(img_model.bases):
        xk = x0[s.labels == k]
        np.testing.assert_allclose((xk - xk @ Mk @ Mk.T).numpy(), 0, atol=1e-12)
    s2 = lab.noisy_samples(img_model, 0.3, n=50, seed=1)
    assert torch.equal(s.x_t, s2.x_t)


def test_relative_error_checks():
    assert lab.relative_error(torch.ones(3), torch.ones(3)) == 0.0
    with pytest.raises(ValueError, match="equal shapes"):
        lab.relative_error(torch.ones(3), torch.ones(4))
    with pytest.raises(ValueError, match="zero"):
        lab.relative_error(torch.ones(3), torch.zeros(3))


# ---------------------------------------------------------------------------------------- 01: Lemma 1
def test_dropped_log_terms_closed_form_and_role(line_plane):
    skew = lab.coordinate_molrg([1, 2], weights=[0.8, 0.2])
    t = 0.25
    terms = lab.dropped_log_terms(skew, t).numpy()
    one_m = 1 - float(SCHEDULE.alpha_bar(t))
    np.testing.assert_allclose(terms, np.log([0.8, 0.2]) + 0.5 * np.array([1, 2]) * np.log(one_m), rtol=1e-12)
    # adding the dropped terms to the paper's logits restores Bayes' rule
    x = lab.noisy_samples(skew, t, n=20, seed=0).x_t
    restored = torch.softmax(skew.log_weights(x, t, "paper") + torch.as_tensor(terms), -1)
    np.testing.assert_allclose(restored.numpy(), skew.log_weights(x, t, "bayes").exp().numpy(), atol=1e-13)


def test_bayes_weights_match_scipy_densities(line_plane):
    """w_k ∝ π_k N(x_t; 0, ᾱ M_k M_kᵀ + (1−ᾱ) I), evaluated with scipy."""
    t = 0.2
    cmp = lab.compare_weight_rules(line_plane, t, n_points=6, n_mc=1000, seed=0)
    ab = float(SCHEDULE.alpha_bar(t))
    x = cmp.x_t.numpy()
    dens = np.stack([
        0.5 * multivariate_normal(np.zeros(3), ab * (Mk @ Mk.T).numpy() + (1 - ab) * np.eye(3)).pdf(x)
        for Mk in line_plane.bases
    ], axis=1)
    np.testing.assert_allclose(cmp.weights_bayes.numpy(), dens / dens.sum(1, keepdims=True), rtol=1e-10)


def test_compare_weight_rules_against_monte_carlo(line_plane):
    cmp = lab.compare_weight_rules(line_plane, 0.2, n_points=8, n_mc=100_000, seed=0)
    assert cmp.err_bayes < 0.03
    assert cmp.err_paper > 3 * cmp.err_bayes
    assert cmp.gap == pytest.approx(lab.relative_error(cmp.mean_paper, cmp.mean_bayes))
    assert cmp.x0.shape == cmp.x_t.shape == cmp.mean_mc.shape == (8, 3)


def test_compare_weight_rules_equal_ranks_agree():
    cmp = lab.compare_weight_rules(lab.coordinate_molrg([2, 2]), 0.3, n_points=8, n_mc=1000, seed=0)
    assert cmp.gap < 1e-12
    np.testing.assert_allclose(cmp.weights_bayes.numpy(), cmp.weights_paper.numpy(), atol=1e-12)


def test_weight_gap_vs_t(line_plane):
    ts = [0.1, 0.3, 0.9]
    sw = lab.weight_gap_vs_t(line_plane, ts, n_points=64, seed=2)
    # total variation recomputed directly for one t
    xt = lab.noisy_samples(line_plane, 0.3, n=64, seed=2).x_t  # the same x₀ and ε as the sweep
    wb = line_plane.log_weights(xt, 0.3, "bayes").exp().numpy()
    wp = line_plane.log_weights(xt, 0.3, "paper").exp().numpy()
    assert float(sw.tv[1]) == pytest.approx(0.5 * np.abs(wb - wp).sum(1).mean(), rel=1e-12)
    assert ((sw.tv >= 0) & (sw.tv <= 1)).all()
    assert sw.class_bayes.shape == (3, 2)


def test_weight_gap_law_of_total_probability():
    """E_{x_t ~ p_t}[w_k(x_t)] = π_k for Bayes' weights at every t (within sampling error)."""
    skew = lab.coordinate_molrg([1, 2], weights=[0.8, 0.2])
    sw = lab.weight_gap_vs_t(skew, [0.05, 0.3, 1.0], n_points=4000, seed=0)
    np.testing.assert_allclose(sw.class_bayes.numpy(), np.tile([0.8, 0.2], (3, 1)), atol=0.03)
    assert abs(float(sw.class_paper[-1, 0]) - 0.5) < 0.01  # the printed weights forget π as t → 1


@pytest.mark.parametrize("ts, match", [([], "at least one"), ([0.0], "t must lie"), ([0.5, 1.2], "t must lie"),
                                      ([float("nan")], "t must lie")])
def test_sweeps_reject_bad_times(line_plane, ts, match):
    with pytest.raises(ValueError, match=match):
        lab.weight_gap_vs_t(line_plane, ts)


def test_compare_weight_rules_rejects_bad_counts(line_plane):
    with pytest.raises(ValueError, match="n must be a positive integer"):
        lab.compare_weight_rules(line_plane, 0.2, n_points=0)
    with pytest.raises(ValueError, match="n_mc"):
        lab.compare_weight_rules(line_plane, 0.2, n_mc=0)


# ---------------------------------------------------------------------------------------- 02: the Jacobian
@pytest.mark.parametrize("t", [0.2, 0.6])
@pytest.mark.parametrize("rule", ["bayes", "paper"])
def test_check_jacobian(img_model, t, rule):
    c = lab.check_jacobian(img_model, t, seed=0, rule=rule)
    assert c.rel_err_autograd < 1e-12
    assert c.symmetry < 1e-12
    assert c.min_eig_ratio > -1e-12
    assert c.exact_rank <= c.rank_bound == 9
    # eq. 10 recomputed from a finite-difference Jacobian and numpy's SVD
    if rule == "bayes":
        x = lab.noisy_samples(img_model, t, n=1, seed=0).x_t[0]
        S = np.linalg.svd(_fd_jacobian(img_model, x, t), compute_uv=False)
        assert c.numerical_rank == _np_numerical_rank(S)


def test_spectrum_vs_t_against_numpy(img_model):
    ts = [0.1, 0.5, 0.9]
    sw = lab.spectrum_vs_t(img_model, ts, n_samples=2, seed=4)
    assert sw.singular_values.shape == (3, 2, 36) and sw.r == 9 and sw.d == 36
    M = img_model.M.numpy()
    for i, t in enumerate(ts):
        xt = lab.noisy_samples(img_model, t, n=2, seed=4).x_t  # the same x₀ and ε at every t
        for j in range(2):
            U, S, _ = np.linalg.svd(_fd_jacobian(img_model, xt[j], t))
            np.testing.assert_allclose(sw.singular_values[i, j, :9].numpy(), S[:9], rtol=1e-6, atol=1e-9 * S[0])
            assert int(sw.numerical_rank[i, j]) == _np_numerical_rank(S)
            if t >= 0.5:  # Theorem 1: the top-r left singular subspace is span(M)
                Ur = U[:, :9]
                oracle = np.linalg.norm(M - Ur @ (Ur.T @ M)) / np.linalg.norm(M)
                assert oracle < 1e-6 and float(sw.alignment[i, j]) < 1e-8
    np.testing.assert_allclose(sw.rank_ratio.numpy(), sw.numerical_rank.double().mean(1).numpy() / 36)
    assert (sw.numerical_rank <= sw.r).all()


def test_power_vs_svd(img_model):
    p = lab.power_vs_svd(img_model, 0.7, seed=0)  # k = r: σ_{r+1} = 0
    assert p.k == 9 and p.rel_err_S < 1e-10 and p.dist_V < 1e-10 and p.converged
    p1 = lab.power_vs_svd(img_model, 0.5, k=1, seed=0)
    assert p1.converged and p1.rel_err_S < 1e-6 and p1.gap_ratio < 1
    with pytest.raises(ValueError, match="k"):
        lab.power_vs_svd(img_model, 0.5, k=36)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        lab.power_vs_svd(img_model, 0.5, k=0)


# ---------------------------------------------------------------------------------------- 03: linearity
def test_unit_direction(img_model):
    v = lab.unit_direction(img_model, "random", seed=5)
    assert v.shape == img_model.shape and float(v.norm()) == pytest.approx(1.0)
    assert torch.equal(v, lab.unit_direction(img_model, "random", seed=5))
    w = lab.unit_direction(img_model, "in_subspace", seed=5).reshape(-1)
    M = img_model.M
    assert float((w - M @ (M.T @ w)).norm()) < 1e-12
    g = lab.unit_direction(img_model, 3 * torch.ones(36, dtype=torch.float64))
    np.testing.assert_allclose(g.reshape(-1).numpy(), np.full(36, 1 / 6))
    with pytest.raises(ValueError, match="direction must be"):
        lab.unit_direction(img_model, "sideways")
    with pytest.raises(ValueError, match="non-zero"):
        lab.unit_direction(img_model, torch.zeros(36))
    with pytest.raises(ValueError, match="36 entries"):
        lab.unit_direction(img_model, torch.ones(5))


def test_linearity_vs_t_against_closed_form_jacobian(img_model):
    ts, lams = [0.3, 0.8], [0.0, 1.0, 5.0]
    sw = lab.linearity_vs_t(img_model, ts, lams, n_samples=2, seed=0, direction="in_subspace")
    dx = lab.unit_direction(img_model, "in_subspace", 1).reshape(-1).numpy()
    for i, t in enumerate(ts):
        xt = lab.noisy_samples(img_model, t, n=2, seed=0).x_t
        nr, cos, err = [], [], []
        for x in xt:
            J = img_model.jacobian(x, t).reshape(36, 36).numpy()
            f0 = img_model.posterior_mean(x, t).reshape(-1).numpy()
            fl = np.stack([img_model.posterior_mean(x + lam * torch.as_tensor(dx).reshape(x.shape), t).reshape(-1).numpy()
                           for lam in lams])
            lin = f0 + np.outer(lams, J @ dx)
            nr.append(np.linalg.norm(fl, axis=1) / np.linalg.norm(lin, axis=1))
            cos.append((fl * lin).sum(1) / (np.linalg.norm(fl, axis=1) * np.linalg.norm(lin, axis=1)))
            err.append(np.linalg.norm(fl - lin, axis=1))
        np.testing.assert_allclose(sw.norm_ratio[i].numpy(), np.mean(nr, 0), rtol=1e-10)
        np.testing.assert_allclose(sw.cosine[i].numpy(), np.mean(cos, 0), rtol=1e-10)
        np.testing.assert_allclose(sw.error[i].numpy(), np.mean(err, 0), rtol=1e-8, atol=1e-13)
    assert sw.norm_ratio.shape == (2, 3) and (sw.error[:, 0] < 1e-13).all()
    np.testing.assert_allclose(sw.snr.numpy(), SCHEDULE.snr(torch.tensor(ts, dtype=torch.float64)).numpy())


def test_linearity_vs_t_rejects_bad_lambdas(img_model):
    with pytest.raises(ValueError, match="lambdas"):
        lab.linearity_vs_t(img_model, [0.5], [1.0, float("nan")])
    with pytest.raises(ValueError, match="at least one step"):
        lab.linearity_vs_t(img_model, [0.5], [])


def test_error_scaling_is_quadratic(img_model):
    s = lab.error_scaling(img_model, 0.6, seed=0)
    assert s.slope == pytest.approx(2.0, abs=0.05)
    ab = float(SCHEDULE.alpha_bar(0.6))
    np.testing.assert_allclose(s.kappa.numpy(), (s.error / s.lambdas ** 2).numpy() / (math.sqrt(ab) * ab / (1 - ab)), rtol=1e-10)
    np.testing.assert_allclose(s.error_over_lambda.numpy(), (s.error / s.lambdas).numpy())
    with pytest.raises(ValueError, match="positive λ"):
        lab.error_scaling(img_model, 0.6, lambdas=[0.0, 0.1])


def test_error_scaling_refuses_an_exactly_linear_map():
    # one class: f(x) = √ᾱ P x is linear, the error is exactly 0 (up to round-off at most)
    m = lab.coordinate_molrg([2], d=3)
    try:
        s = lab.error_scaling(m, 0.5, seed=0)
    except ValueError as e:
        assert "exactly 0" in str(e)
    else:
        assert float(s.error.max()) < 1e-14


def test_linearized_images(img_model):
    li = lab.linearized_images(img_model, 0.5, 3.0, seed=2, direction="random")
    dx = lab.unit_direction(img_model, "random", 3)
    J = img_model.jacobian(li.x_t, 0.5).reshape(36, 36)
    expected = li.f0.reshape(-1) + 3.0 * J @ dx.reshape(-1)
    np.testing.assert_allclose(li.linearized.reshape(-1).numpy(), expected.numpy(), atol=1e-13)
    np.testing.assert_allclose(li.f_perturbed.numpy(), img_model.posterior_mean(li.x_t + 3.0 * dx, 0.5).numpy(), atol=1e-14)
    assert li.rel_error == pytest.approx(lab.relative_error(li.linearized, li.f_perturbed))
    with pytest.raises(ValueError, match="lam must be finite"):
        lab.linearized_images(img_model, 0.5, float("inf"))
    with pytest.raises(ValueError, match="t must lie"):
        lab.linearized_images(img_model, 0.0, 1.0)


# ---------------------------------------------------------------------------------------- second-order Tweedie
def _posterior_cov_by_conditioning(model: MoLRG, x: np.ndarray, ab: float) -> np.ndarray:
    """Cov[x₀|x_t] by Gaussian conditioning per class and the law of total covariance (numpy, no Lemma)."""
    d = len(x)
    logp, means, covs = [], [], []
    for M, w in zip([m.numpy() for m in model.bases], model.weights.tolist()):
        P = M @ M.T
        S = ab * P + (1 - ab) * np.eye(d)
        logp.append(math.log(w) - 0.5 * x @ np.linalg.solve(S, x) - 0.5 * np.linalg.slogdet(S)[1])
        C = math.sqrt(ab) * P
        means.append(C @ np.linalg.solve(S, x))
        covs.append(P - C @ np.linalg.solve(S, C.T))
    logp = np.array(logp)
    wk = np.exp(logp - logp.max())
    wk /= wk.sum()
    mean = sum(a * m for a, m in zip(wk, means))
    return sum(a * (c + np.outer(m, m)) for a, m, c in zip(wk, means, covs)) - np.outer(mean, mean)


@pytest.mark.parametrize("t", [0.2, 0.5])
def test_monte_carlo_posterior_cov_against_gaussian_conditioning(t):
    model = lab.smooth_molrg((1, 3, 3), [2, 3], seed=1)
    x = lab.noisy_samples(model, t, n=1, seed=4).x_t[0]
    exact = _posterior_cov_by_conditioning(model, x.numpy().reshape(-1), float(SCHEDULE.alpha_bar(t)))
    mc = lab.monte_carlo_posterior_cov(model, x, t, n=200_000, seed=0).numpy()
    assert np.linalg.norm(mc - exact) / np.linalg.norm(exact) < 0.03
    assert np.allclose(mc, mc.T)


def test_tweedie_check_agrees_with_conditioning_and_finite_differences():
    """J = √ᾱ/(1−ᾱ) Cov: the closed-form J by finite differences, Cov by Gaussian conditioning — no lococourse Lemma."""
    model, t = lab.smooth_molrg((1, 3, 3), [2, 3], seed=1), 0.4
    c = lab.tweedie_check(model, t, seed=2, n_mc=100_000)
    x = lab.noisy_samples(model, t, n=1, seed=2).x_t[0]
    ab = float(SCHEDULE.alpha_bar(t))
    scaled = math.sqrt(ab) / (1 - ab) * _posterior_cov_by_conditioning(model, x.numpy().reshape(-1), ab)
    np.testing.assert_allclose(_fd_jacobian(model, x, t), scaled, atol=1e-6)
    np.testing.assert_allclose(c.J.numpy(), scaled, atol=1e-8)
    assert c.rel_error < 0.05 and c.mc_noise < 0.05 and c.effective_samples > 1000


def test_gaussian_rank_vs_t_against_autograd_of_the_gaussian_posterior_mean():
    """For x₀ ~ N(0, diag(s)) the posterior mean is √ᾱ Σ(ᾱΣ + (1−ᾱ)I)⁻¹ x (numpy); its Jacobian by autograd."""
    s = torch.tensor([1.0, 0.5, 1e-3, 0.0], dtype=torch.float64)
    ts = [0.002, 0.05, 0.5]
    sw = lab.gaussian_rank_vs_t(s, ts)
    for t, sv, rank in zip(ts, sw.singular_values, sw.numerical_rank):
        ab = float(SCHEDULE.alpha_bar(t))
        Sig = torch.diag(s)
        A = math.sqrt(ab) * Sig @ torch.linalg.inv(ab * Sig + (1 - ab) * torch.eye(4, dtype=torch.float64))
        J = torch.autograd.functional.jacobian(lambda x: A @ x, torch.ones(4, dtype=torch.float64))
        S = np.linalg.svd(J.numpy(), compute_uv=False)
        np.testing.assert_allclose(sv.numpy(), S, atol=1e-12)
        assert int(rank) == _np_numerical_rank(S)
    assert float(sw.rank_ratio[0]) > float(sw.rank_ratio[-1])  # the small variance counts only near t = 0


@pytest.mark.parametrize("bad, match", [([], "spectrum"), ([-1.0, 1.0], "spectrum"), ([0.0, 0.0], "at least one positive")])
def test_gaussian_rank_vs_t_rejects_bad_spectra(bad, match):
    with pytest.raises(ValueError, match=match):
        lab.gaussian_rank_vs_t(bad, [0.5])


def test_linearity_sweep_keeps_the_points_behind_the_mean(img_model):
    sw = lab.linearity_vs_t(img_model, [0.3, 0.7], [0.0, 5.0, 10.0], n_samples=3, seed=0, direction="in_subspace")
    assert sw.rel_error_points.shape == (2, 3, 3)
    torch.testing.assert_close(sw.rel_error_points.mean(1), sw.rel_error)
