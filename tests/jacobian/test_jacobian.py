"""The Jacobian engine: JVP/VJP, dense Jacobians, Algorithm 2 (power method), eq. 10, eq. 4, masks, errors."""
import math

import numpy as np
import pytest
import scipy.linalg
import torch

from lococourse.jacobian.linearity import local_linearity
from lococourse.jacobian.operator import (
    MAX_DENSE_ENTRIES,
    JacobianOperator,
    check_mask,
    dense_jacobian,
    dense_jacobian_loop,
    jvp,
    masked,
    vjp,
)
from lococourse.jacobian.power import power_method
from lococourse.jacobian.subspace import alignment, numerical_rank, rank_ratio, subspace_distance, symmetry
from lococourse.theory.molrg import MoLRG

DT = torch.float64
S_IN, S_OUT = (3, 4, 4), (2, 4, 4)  # d_in = 48, d_out = 32


def known_svd(d_out=32, d_in=48, sigmas=(10.0, 8.0, 6.0, 4.0, 2.0, 1.0), seed=0):
    """A = U diag(σ) Vᵀ with seeded orthonormal U, V and the given σ (then 0.5·0.8^i for the rest)."""
    g = torch.Generator().manual_seed(seed)
    n = min(d_out, d_in)
    s = torch.tensor(list(sigmas) + [0.5 * 0.8 ** i for i in range(n - len(sigmas))], dtype=DT)
    U = torch.linalg.qr(torch.randn(d_out, n, generator=g, dtype=DT))[0]
    V = torch.linalg.qr(torch.randn(d_in, n, generator=g, dtype=DT))[0]
    return U @ torch.diag(s) @ V.T, U, s, V


def linear_pmp(A, s_in=S_IN, s_out=S_OUT):
    """f(x) = A x on batches (B, *s_in) → (B, *s_out)."""
    return lambda x: (x.reshape(x.shape[0], -1) @ A.T).reshape(x.shape[0], *s_out)


def nonlinear_pmp(A):
    """f(x) = tanh(A x) + 0.1 (A x)², a smooth map with a non-trivial, non-symmetric Jacobian."""
    def f(x):
        y = x.reshape(x.shape[0], -1) @ A.T
        return (torch.tanh(y) + 0.1 * y ** 2).reshape(x.shape[0], *S_OUT)
    return f


@pytest.fixture(scope="module")
def molrg():
    return MoLRG.random((1, 8, 8), [2, 10, 4], weights=[0.5, 0.2, 0.3], seed=1)


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=DT)


# ------------------------------------------------------------------------------------------ JVP / VJP / dense
def test_dense_jacobian_of_linear_map_is_the_matrix():
    A = known_svd()[0]
    J = dense_jacobian(linear_pmp(A), rand(*S_IN))
    assert J.shape == (32, 48) and torch.allclose(J, A, rtol=0, atol=1e-14)


def test_dense_matches_loop_and_chunking():
    A = known_svd()[0] * 0.3
    f, x = nonlinear_pmp(A), rand(*S_IN)
    J = dense_jacobian(f, x)
    assert torch.allclose(J, dense_jacobian_loop(f, x), rtol=0, atol=1e-14)
    assert torch.allclose(J, dense_jacobian(f, x, chunk_size=7), rtol=0, atol=1e-14)


def test_jvp_vjp_match_dense_and_finite_differences():
    A = known_svd()[0] * 0.3
    f, x = nonlinear_pmp(A), rand(*S_IN)
    J = dense_jacobian(f, x)
    V, U = rand(5, *S_IN, seed=1), rand(4, *S_OUT, seed=2)
    Jv, JtU = jvp(f, x, V), vjp(f, x, U)
    assert Jv.shape == (5, *S_OUT) and JtU.shape == (4, *S_IN)
    assert torch.allclose(Jv.reshape(5, -1), V.reshape(5, -1) @ J.T, atol=1e-12)
    assert torch.allclose(JtU.reshape(4, -1), U.reshape(4, -1) @ J, atol=1e-12)
    # Central differences: O(h²) truncation + O(eps/h) round-off ≈ 1e-9 relative at h = 1e-5.
    h = 1e-5
    fd = (f(x + h * V) - f(x - h * V)) / (2 * h)  # V as a batch of perturbed points
    assert float((fd - Jv).norm() / Jv.norm()) < 1e-8
    # ⟨u, J v⟩ = ⟨Jᵀ u, v⟩
    assert torch.allclose((U.reshape(4, -1) @ Jv.reshape(5, -1).T), (JtU.reshape(4, -1) @ V.reshape(5, -1).T),
                          atol=1e-12)


@pytest.mark.parametrize("mode", ["linearize", "jvp", "transpose"])
def test_operator_mv_rmv(mode, molrg):
    x = molrg.noise(molrg.sample(1, torch.Generator().manual_seed(0))[0][0], 0.4)[0]
    op = JacobianOperator(molrg.pmp(0.4), x, forward_mode=mode)
    J = molrg.jacobian(x, 0.4)
    V = rand(3, *molrg.shape, seed=3)
    assert torch.allclose(op.mv(V).reshape(3, -1), V.reshape(3, -1) @ J.T, atol=1e-13)
    assert torch.allclose(op.rmv(V).reshape(3, -1), V.reshape(3, -1) @ J, atol=1e-13)
    assert op.d_in == op.d_out == 64 and torch.allclose(op.y, molrg.posterior_mean(x, 0.4))


def test_molrg_jvp_matches_finite_differences(molrg):
    t, x = 0.3, molrg.noise(molrg.sample(1, torch.Generator().manual_seed(2))[0][0], 0.3)[0]
    V = rand(2, *molrg.shape, seed=4)
    h = 1e-5
    f = molrg.pmp(t)
    fd = (f(x + h * V) - f(x - h * V)) / (2 * h)
    assert float((fd - jvp(f, x, V)).norm() / fd.norm()) < 1e-8


# ------------------------------------------------------------------------------------------ power method
def test_power_method_recovers_known_svd_of_linear_map():
    A, U, s, V = known_svd()
    k = 4  # σ5/σ4 = 0.5: well separated
    top = power_method(linear_pmp(A), rand(*S_IN), k=k, tol=1e-6)
    assert top.converged and top.U.shape == (32, k) and top.V.shape == (48, k) and top.S.shape == (k,)
    assert subspace_distance(top.U, U[:, :k]) < 1e-4 and subspace_distance(top.V, V[:, :k]) < 1e-4
    assert torch.allclose(top.S, s[:k], rtol=1e-8)
    # Against numpy's and scipy's SVD of the dense Jacobian, singular vector by singular vector (up to sign).
    J = dense_jacobian(linear_pmp(A), rand(*S_IN)).numpy()
    for Un, Sn, Vhn in (np.linalg.svd(J), scipy.linalg.svd(J)):
        assert np.allclose(top.S.numpy(), Sn[:k], rtol=1e-8)
        for i in range(k):
            assert abs(abs(float(top.V[:, i] @ torch.from_numpy(Vhn[i]))) - 1) < 1e-8
            assert abs(abs(float(top.U[:, i] @ torch.from_numpy(Un[:, i]))) - 1) < 1e-8
    # The top vectors as images, and the sign convention (largest-magnitude entry of v_i positive).
    assert top.v(0).shape == S_IN and top.u(0).shape == S_OUT
    for i in range(k):
        assert float(top.V[top.V[:, i].abs().argmax(), i]) > 0
    assert torch.allclose(top.U * top.S, A @ top.V, atol=1e-6)  # J v_i = σ_i u_i


def test_power_method_default_tol_on_separated_spectrum():
    A, U, s, V = known_svd()
    top = power_method(linear_pmp(A), rand(*S_IN), k=4)  # tol = 1e-4, stop = "tail"
    assert top.converged and subspace_distance(top.V, V[:, :4]) < 1e-4


def test_power_method_matches_dense_svd_on_molrg(molrg):
    t = 0.3
    x = molrg.noise(molrg.sample(1, torch.Generator().manual_seed(1))[0][0], t, torch.Generator().manual_seed(2))[0]
    J = dense_jacobian(molrg.pmp(t), x)
    Un, Sn, Vhn = np.linalg.svd(J.numpy())
    ratios = Sn[1:16] / Sn[:15]
    k = int(np.argmin(ratios[1:])) + 2  # the clearest gap with k ≥ 2
    assert ratios[k - 1] < 0.6
    top = power_method(molrg.pmp(t), x, k=k, tol=1e-8)
    assert subspace_distance(top.U, torch.from_numpy(Un[:, :k])) < 1e-4
    assert subspace_distance(top.V, torch.from_numpy(Vhn[:k].T)) < 1e-4
    assert np.allclose(top.S.numpy(), Sn[:k], rtol=1e-8)


def test_warm_start_converges_faster():
    A, U, s, V = known_svd(sigmas=(10.0, 9.0, 8.0, 7.0, 6.0))  # σ5/σ4 = 6/7: slow
    f, x = linear_pmp(A), rand(*S_IN)
    cold = power_method(f, x, k=4, tol=1e-6, max_iter=500)
    assert cold.converged and cold.n_iter > 20
    # As a d_in × k matrix (a previous TopSVD.V) and as k batch-first directions (k, *S_in).
    for V0 in (cold.V, V[:, :4], V[:, :4].T.reshape(4, *S_IN)):
        warm = power_method(f, x, k=4, tol=1e-6, max_iter=500, V0=V0)
        assert warm.converged and warm.n_iter <= 3
        assert subspace_distance(warm.V, V[:, :4]) < 2e-6
    # A partial warm start (2 of 4 columns) is padded with seeded random columns.
    part = power_method(f, x, k=4, tol=1e-6, max_iter=500, V0=V[:, :2])
    assert part.converged and subspace_distance(part.V, V[:, :4]) < 2e-6
    with pytest.raises(ValueError, match=r"V0 must be a d_in × k matrix \(d_in = 48\) or k directions"):
        power_method(f, x, k=4, V0=V[:, :4].T)  # k × d_in: neither layout


def test_oversampling_converges_faster():
    A, U, s, V = known_svd(sigmas=(10.0, 9.5, 9.0, 8.5, 8.0, 1.0))  # σ4/σ3 = 0.94, σ6/σ3 = 0.11
    f, x = linear_pmp(A), rand(*S_IN)
    plain = power_method(f, x, k=3, tol=1e-6, max_iter=500)
    over = power_method(f, x, k=3, tol=1e-6, max_iter=500, oversample=2)
    assert over.U.shape == (32, 3) and over.S.shape == (3,)
    assert over.n_iter * 3 < plain.n_iter
    assert subspace_distance(over.V, V[:, :3]) < 1e-4 and torch.allclose(over.S, s[:3], rtol=1e-8)


@pytest.mark.parametrize("tol", [1e-4, 1e-5, 1e-6])
def test_stop_rules(tol):
    # Contraction ρ = (σ5/σ4)² = 0.73 per step: the distance still to go is ≈ δ ρ/(1 − ρ) ≈ 2.7 δ.
    A, U, s, V = known_svd(sigmas=(10.0, 9.0, 8.0, 7.0, 6.0))
    f, x = linear_pmp(A), rand(*S_IN)
    step = power_method(f, x, k=4, tol=tol, max_iter=500, stop="step")
    tail = power_method(f, x, k=4, tol=tol, max_iter=500, stop="tail")
    assert step.converged and tail.converged
    assert len(step.history) == step.n_iter and len(tail.history) == tail.n_iter
    # "step" stops at the first step below tol, while still more than tol from the answer;
    assert step.history[-1] < tol <= step.history[-2]
    assert subspace_distance(step.V, V[:, :4]) > tol
    # "tail" runs on until the extrapolated remaining distance is below tol, and lands within it
    # (measured 0.75–1.0 × tol).
    assert tail.n_iter > step.n_iter
    assert subspace_distance(tail.V, V[:, :4]) < 1.5 * tol
    h = np.array(tail.history[3:])
    assert np.all(np.diff(h) < 0) and abs(np.median(h[1:] / h[:-1]) - (6 / 7) ** 2) < 0.05


def test_max_iter_reached_is_not_converged():
    A = known_svd(sigmas=(10.0, 9.9, 9.8, 9.7, 9.6))[0]
    top = power_method(linear_pmp(A), rand(*S_IN), k=4, tol=1e-12, max_iter=3)
    assert not top.converged and top.n_iter == 3


def test_power_method_accepts_an_operator_and_is_seeded():
    A = known_svd()[0]
    op = JacobianOperator(linear_pmp(A), rand(*S_IN))
    a, b = power_method(op, k=3, seed=5), power_method(op, k=3, seed=5)
    assert torch.equal(a.V, b.V) and torch.equal(a.S, b.S)


# ------------------------------------------------------------------------------------------ eq. 10
def test_numerical_rank_by_hand():
    S = torch.tensor([3.0, 2.0, 1.0, 0.5, 0.1])
    # σ² = 9, 4, 1, 0.25, 0.01 (total 14.26); cumulative fractions 0.6311, 0.9116, 0.98177, 0.99930, 1.
    # Eq. 10: the smallest r whose fraction exceeds η².
    assert numerical_rank(S, eta=0.5) == 1  # 0.6311 > 0.25
    assert numerical_rank(S, eta=0.9) == 2  # 0.9116 > 0.81
    assert numerical_rank(S, eta=0.99) == 3  # 0.98177 > 0.9801 (the paper's η)
    assert numerical_rank(S, eta=0.995) == 4  # 0.98177 ≤ 0.990025 < 0.99930
    assert numerical_rank(S, eta=0.9995) == 4  # 0.99930 > 0.99900
    assert numerical_rank(S, eta=0.99999) == 5  # 0.99930 ≤ 0.99998
    assert numerical_rank(torch.zeros(4)) == 0
    assert numerical_rank(S[[4, 2, 0, 3, 1]], eta=0.9) == 2  # order does not matter
    assert rank_ratio(S, eta=0.9) == pytest.approx(2 / 5) and rank_ratio(S, d=100, eta=0.9) == pytest.approx(0.02)


@pytest.mark.parametrize("eta", [0.0, 1.0, -0.5, 1.5])
def test_numerical_rank_rejects_eta_outside_unit_interval(eta):
    with pytest.raises(ValueError, match=r"eta must lie in \(0, 1\)"):
        numerical_rank(torch.ones(3), eta)


# ------------------------------------------------------------------------------------------ eq. 4
def test_local_linearity_exact_for_linear_map():
    A = known_svd()[0]
    L = local_linearity(linear_pmp(A), rand(*S_IN), rand(*S_IN, seed=1), [0.1, 1.0, 40.0])
    assert torch.allclose(L.norm_ratio, torch.ones(3, dtype=DT), atol=1e-13)
    assert torch.allclose(L.cosine, torch.ones(3, dtype=DT), atol=1e-13)
    assert (L.error < 1e-11).all() and torch.equal(L.lambdas, torch.tensor([0.1, 1.0, 40.0], dtype=DT))


def test_local_linearity_error_is_lambda_squared_for_quadratic():
    # f(x) = x ⊙ x: f(x + λd) − f(x) − λ·2x⊙d = λ² d⊙d exactly, with d normalised to unit length.
    f = lambda x: x * x  # noqa: E731
    x, dx = rand(*S_IN), rand(*S_IN, seed=1)
    lam = [1e-3, 1e-2, 0.1, 1.0, 10.0]
    L = local_linearity(f, x, dx, lam)
    d = dx / dx.norm()
    expected = torch.tensor(lam, dtype=DT) ** 2 * (d * d).norm()
    assert torch.allclose(L.error, expected, rtol=1e-6)
    assert (L.cosine <= 1 + 1e-15).all() and L.cosine[-1] < L.cosine[0]


def test_local_linearity_molrg_error_order(molrg):
    t = 0.4
    x = molrg.noise(molrg.sample(1, torch.Generator().manual_seed(3))[0][0], t)[0]
    lam = np.logspace(-3, -1, 5)
    L = local_linearity(molrg.pmp(t), x, rand(*molrg.shape, seed=2), lam)
    slope = np.polyfit(np.log(lam), np.log(L.error.numpy()), 1)[0]
    assert abs(slope - 2) < 0.05  # eq. 8: error = λ·O(λ)


# ------------------------------------------------------------------------------------------ masks
def test_masked_pmp_keeps_rows_inside_the_mask():
    A = known_svd()[0] * 0.3
    f, x = nonlinear_pmp(A), rand(*S_IN)
    spatial = torch.zeros(4, 4, dtype=torch.bool)
    spatial[1:3, :2] = True
    J = dense_jacobian(f, x)
    rows = spatial.expand(S_OUT).reshape(-1)
    Jm = dense_jacobian(masked(f, spatial), x)
    assert torch.equal(Jm[rows], J[rows]) and (Jm[~rows] == 0).all()
    Jc = dense_jacobian(masked(f, ~spatial, shape=S_OUT), x)  # P_{Ω^c} f
    assert torch.allclose(Jm + Jc, J)
    # Singular values of P_Ω f = those of the selected rows alone.
    top = power_method(masked(f, spatial), x, k=3, tol=1e-8)
    assert torch.allclose(top.S, torch.linalg.svdvals(J[rows])[:3], rtol=1e-6)
    assert top.U[~rows].abs().max() < 1e-12


def test_full_shape_mask_and_check_mask():
    m = torch.zeros(S_OUT, dtype=torch.bool)
    m[0, 0, 0] = True
    assert torch.equal(check_mask(m, S_OUT), m)
    assert check_mask(m[0], S_OUT).shape == S_OUT


@pytest.mark.parametrize("bad, err, match", [
    (torch.zeros(4, 4, dtype=torch.bool), ValueError, "mask is empty"),
    (torch.ones(4, 4, dtype=torch.bool), ValueError, "all True"),
    (torch.ones(5, 4, dtype=torch.bool), ValueError, r"mask must have the output shape \(2, 4, 4\)"),
    (torch.ones(3, 4, 4, dtype=torch.bool), ValueError, "mask must have the output shape"),
    (torch.ones(4, 4), TypeError, "mask must be a boolean tensor"),
    (torch.ones(4, 4, dtype=torch.uint8), TypeError, "got dtype torch.uint8"),
])
def test_bad_masks_raise(bad, err, match):
    with pytest.raises(err, match=match):
        check_mask(bad, S_OUT)
    with pytest.raises(err, match=match):
        masked(lambda x: x, bad, shape=S_OUT)
    if err is ValueError:  # without a shape the mask is checked on the first call
        f = masked(linear_pmp(known_svd()[0]), bad)
        with pytest.raises(err, match=match):
            f(rand(1, *S_IN))


# ------------------------------------------------------------------------------------------ subspaces
def test_subspace_distance_alignment_symmetry():
    Q = torch.linalg.qr(rand(10, 4))[0]
    assert subspace_distance(Q[:, :2], Q[:, :2] @ torch.tensor([[0.0, 2.0], [3.0, 1.0]], dtype=DT)) < 1e-14
    assert subspace_distance(Q[:, :2], Q[:, 2:]) == pytest.approx(1.0)
    theta = 0.3
    B = torch.stack([Q[:, 0], math.cos(theta) * Q[:, 1] + math.sin(theta) * Q[:, 2]], 1)
    assert subspace_distance(Q[:, :2], B) == pytest.approx(math.sin(theta), rel=1e-12)
    assert alignment(Q[:, :3], Q[:, :2]) < 1e-14
    assert alignment(Q[:, :1], Q[:, :2]) == pytest.approx(1 / math.sqrt(2), rel=1e-12)
    S = rand(5, 5)
    assert symmetry(S + S.T) < 1e-15 and symmetry(S - S.T) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="same shape"):
        subspace_distance(Q[:, :2], Q[:, :3])
    with pytest.raises(ValueError, match="same number of rows"):
        alignment(Q[:5], Q)
    with pytest.raises(ValueError, match="square matrix"):
        symmetry(Q)


# ------------------------------------------------------------------------------------------ errors
def test_k_larger_than_d_raises():
    A = known_svd()[0]
    with pytest.raises(ValueError, match="k = 33 exceeds the dimension d = 32"):
        power_method(linear_pmp(A), rand(*S_IN), k=33)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        power_method(linear_pmp(A), rand(*S_IN), k=0)


@pytest.mark.parametrize("kwargs, match", [
    ({"oversample": -1}, "oversample must be ≥ 0"),
    ({"tol": 0.0}, "tol must be a finite number > 0; got 0.0"),
    ({"max_iter": 0}, "max_iter must be a positive integer"),
    ({"stop": "never"}, "stop must be 'tail' or 'step'"),
])
def test_bad_power_method_options_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        power_method(linear_pmp(known_svd()[0]), rand(*S_IN), k=2, **kwargs)


def test_dense_jacobian_above_max_entries_raises():
    A = known_svd()[0]
    with pytest.raises(ValueError, match="32 × 48 = 1,536 entries exceeds max_entries = 1,000"):
        dense_jacobian(linear_pmp(A), rand(*S_IN), max_entries=1000)
    with pytest.raises(ValueError, match="exceeds max_entries"):
        dense_jacobian_loop(linear_pmp(A), rand(*S_IN), max_entries=1000)
    assert MAX_DENSE_ENTRIES == 64_000_000
    with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
        dense_jacobian(linear_pmp(A), rand(*S_IN), chunk_size=0)


def test_nan_in_x_t_raises():
    A = known_svd()[0]
    x = rand(*S_IN)
    x[0, 1, 2] = float("nan")
    f = linear_pmp(A)
    V = rand(2, *S_IN)
    for call in (lambda: dense_jacobian(f, x), lambda: dense_jacobian_loop(f, x), lambda: jvp(f, x, V),
                 lambda: vjp(f, x, rand(2, *S_OUT)), lambda: power_method(f, x, k=2),
                 lambda: JacobianOperator(f, x), lambda: local_linearity(f, x, V[0], [1.0])):
        with pytest.raises(ValueError, match="x_t contains 1 NaN and 0 infinite entries"):
            call()
    with pytest.raises(ValueError, match="V contains 1 NaN"):
        jvp(f, rand(*S_IN), torch.where(V == V[0, 0, 0, 0], float("nan"), V))


def test_wrong_direction_shapes_raise():
    A = known_svd()[0]
    f, x = linear_pmp(A), rand(*S_IN)
    with pytest.raises(ValueError, match=r"V must have shape \(k, \*\(3, 4, 4\)\)"):
        jvp(f, x, rand(*S_IN))  # unbatched direction
    with pytest.raises(ValueError, match="V must have shape"):
        jvp(f, x, rand(2, 48))
    with pytest.raises(ValueError, match=r"U must have shape \(k, \*\(2, 4, 4\)\)"):
        vjp(f, x, rand(2, *S_IN))  # an input-shaped covector
    with pytest.raises(ValueError, match=r"dx must have the shape of x_t \(3, 4, 4\)"):
        local_linearity(f, x, rand(48), [1.0])
    with pytest.raises(ValueError, match="dx must be a non-zero direction"):
        local_linearity(f, x, torch.zeros(S_IN, dtype=DT), [1.0])
    with pytest.raises(ValueError, match="forward_mode must be 'linearize' or 'jvp'"):
        JacobianOperator(f, x, forward_mode="fd")


def test_power_methods_batch_masked_views_and_each_gets_its_own_svd():
    """power_methods on the views P_Ω J of three masks (one J·V call of 3·k vectors per iteration while all run):
    each result is numpy's SVD of its own masked matrix and what power_method alone returns, with its own stop."""
    from lococourse.jacobian import JacobianViews, power_methods

    A, _, _, _ = known_svd()
    views = JacobianViews(linear_pmp(A), torch.zeros(S_IN, dtype=DT))
    masks = [torch.zeros(S_OUT, dtype=torch.bool) for _ in range(3)]
    masks[0][0] = True
    masks[1][:, :2] = True
    masks[2][1, 1:] = True
    calls = []
    mv = views.base.mv
    views.base.mv = lambda V: (calls.append(V.shape[0]), mv(V))[1]
    ops = [views.view(m) for m in masks]
    got = power_methods(ops, 3, seeds=[0, 1, 2], tol=1e-10, max_iter=2000)
    assert max(calls) == 9  # the three problems' 3 vectors each in one call
    for m, top, seed, op in zip(masks, got, [0, 1, 2], ops):
        M = A.numpy()[m.reshape(-1).numpy()]
        _, s, Vt = np.linalg.svd(M)
        assert np.allclose(top.S.numpy(), s[:3], rtol=1e-8)
        assert subspace_distance(top.V, torch.from_numpy(Vt[:3].T)) < 1e-6
        one = power_method(op, k=3, seed=seed, tol=1e-10, max_iter=2000)
        assert one.n_iter == top.n_iter and torch.allclose(one.V, top.V, atol=1e-10)
    assert len({top.n_iter for top in got}) > 1  # they stopped at different iterations, each on its own
    with pytest.raises(ValueError, match="one entry per operator"):
        power_methods(ops, 3, seeds=[0])
    with pytest.raises(ValueError, match="at least one operator"):
        power_methods([], 3)
