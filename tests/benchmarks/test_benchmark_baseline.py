"""The benchmark's baseline power method (benchmarks/_baseline.py) is a correct top-k SVD, so the
speed comparison in benchmarks/bench_power_method.py is against a right answer.  Oracle: numpy SVD."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lococourse.jacobian.subspace import subspace_distance

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "_baseline.py"
_spec = importlib.util.spec_from_file_location("bench_baseline", _PATH)
bench_baseline = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = bench_baseline  # dataclasses look their module up there
_spec.loader.exec_module(bench_baseline)
baseline_power_method = bench_baseline.baseline_power_method


def _linear_map(shape, sigmas, seed=0):
    """f(x) = A x on images of ``shape`` with A = Q diag(σ) Rᵀ of known singular values (float64)."""
    d = int(np.prod(shape))
    rng = np.random.default_rng(seed)
    Q = np.linalg.qr(rng.standard_normal((d, d)))[0]
    R = np.linalg.qr(rng.standard_normal((d, d)))[0]
    s = np.zeros(d)
    s[:len(sigmas)] = sigmas
    A = torch.tensor(Q @ np.diag(s) @ R.T)

    def f(x):  # (B, *shape) → (B, *shape)
        return (x.reshape(x.shape[0], -1) @ A.T).reshape(x.shape)

    return f, A


@pytest.mark.parametrize("align_signs", [False, True])
@pytest.mark.parametrize("k", [1, 3, 5])
def test_linear_map_top_k_subspace(k, align_signs):
    shape = (2, 4, 4)  # d = 32
    sig = [10.0, 8.0, 6.5, 5.0, 4.0, 1.0, 0.5, 0.25]
    f, A = _linear_map(shape, sig)
    x = torch.zeros(shape, dtype=torch.float64)
    _, s_np, vt_np = np.linalg.svd(A.numpy())
    V_ref = torch.tensor(vt_np[:k].T)
    # its own stopping rule (elementwise atol 1e-4 on the vectors) gives a subspace to ~1e-4
    res = baseline_power_method(f, x, k=k, align_signs=align_signs)
    assert res.V.shape == (32, k) and res.U.shape == (32, k) and res.S.shape == (k,)
    assert subspace_distance(res.V, V_ref) < 2e-3
    np.testing.assert_allclose(res.S.numpy(), s_np[:k], rtol=1e-4)
    assert 10 <= res.n_iter <= 50
    if align_signs:  # (as published, a sign flip of LAPACK's v_j between iterations can defeat the test)
        assert res.converged and res.n_iter < 50
    # run to machine precision, it is the exact top-k SVD
    res = baseline_power_method(f, x, k=k, align_signs=True, atol=1e-12, rtol=0.0, max_iter=200)
    assert res.converged
    assert subspace_distance(res.V, V_ref) < 1e-9
    np.testing.assert_allclose(res.S.numpy(), s_np[:k], rtol=1e-12)
    V = res.V.double()
    np.testing.assert_allclose((V.T @ V).numpy(), np.eye(k), atol=1e-12)  # orthonormal columns
    assert subspace_distance(res.U, A @ V) < 1e-10  # U spans J V: the top-k left singular subspace


def test_nonlinear_map_matches_dense_svd():
    """A smooth nonlinear map with a spectral gap at 3: the subspace of its autograd Jacobian."""
    torch.manual_seed(0)
    shape = (1, 6, 6)
    d = 36
    B = torch.linalg.qr(torch.randn(d, 3, dtype=torch.float64))[0] * torch.tensor([3.0, 2.0, 1.5], dtype=torch.float64)
    W = 0.05 * torch.randn(d, d, dtype=torch.float64)

    def f(x):
        z = x.reshape(x.shape[0], -1)
        return (torch.tanh(z @ B) @ B.T + torch.sin(z @ W.T) * 0.1).reshape(x.shape)

    x = torch.randn(shape, dtype=torch.float64) * 0.3
    J = torch.autograd.functional.jacobian(lambda z: f(z.unsqueeze(0))[0].reshape(-1), x).reshape(d, d)
    _, s, vt = np.linalg.svd(J.numpy())
    assert s[2] / s[3] > 2  # the gap the power method needs
    res = baseline_power_method(f, x, k=3, align_signs=True, atol=1e-12, rtol=0.0, max_iter=200)
    assert res.converged
    assert subspace_distance(res.V, torch.tensor(vt[:3].T)) < 1e-9
    np.testing.assert_allclose(res.S.numpy(), s[:3], rtol=1e-10)


def test_iteration_limits():
    """It never stops before min_iter, and stops at max_iter when the elementwise test keeps failing."""
    f, _ = _linear_map((1, 4, 4), [5.0, 1.0, 0.1])
    x = torch.zeros((1, 4, 4), dtype=torch.float64)
    res = baseline_power_method(f, x, k=1, align_signs=True)  # converges in ~2 steps, but checked from 10
    assert res.converged and res.n_iter == 10
    f, _ = _linear_map((1, 4, 4), [1.0, 1.0, 1.0, 0.999])  # no gap at k = 2: the vectors keep rotating
    res = baseline_power_method(f, x, k=2, max_iter=30, atol=1e-12)
    assert not res.converged and res.n_iter == 30


def test_record_and_agreement_with_library():
    """``record`` logs every iterate; the baseline and lococourse.power_method (each forward mode) agree."""
    from lococourse.jacobian.operator import JacobianOperator
    from lococourse.jacobian.power import power_method

    shape = (2, 4, 4)
    f, A = _linear_map(shape, [10.0, 8.0, 6.5, 5.0, 4.0, 1.0, 0.5])
    x = torch.zeros(shape, dtype=torch.float64)
    rec = []
    res = baseline_power_method(f, x, k=5, align_signs=True, record=rec)
    assert len(rec) == res.n_iter
    assert all(V.shape == (32, 5) for _, V in rec) and torch.equal(rec[-1][1], res.V)
    assert all(t1 <= t2 for (t1, _), (t2, _) in zip(rec, rec[1:]))
    _, _, vt = np.linalg.svd(A.numpy())
    for mode in ("linearize", "jvp", "transpose"):
        ours = power_method(JacobianOperator(f, x, forward_mode=mode), k=5, tol=1e-10, stop="step")
        assert subspace_distance(ours.V, torch.tensor(vt[:5].T)) < 1e-9
        assert subspace_distance(ours.V, res.V) < 2e-3
