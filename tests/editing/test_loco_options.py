"""Issue 13's method options of Algorithm 1 (guard band, the sampler's complement nullspace, λ by target), each
against an independent oracle: numpy SVDs of an exactly linear PMP, finite differences, a linear response."""
import numpy as np
import pytest
import torch
from scipy.ndimage import binary_dilation

from lococourse.editing.loco import find_direction, outside, sampler_map
from lococourse.editing.strength import default_strength_grid, strength_for_target
from lococourse.jacobian import JacobianOperator
from lococourse.models.ddim import DDIMGrid, ddim_grid, ddim_map, ddim_sample
from lococourse.theory.molrg import MoLRG

DT = torch.float64


class LinearMap:
    """x ↦ A x on (1, 8, 8) images."""

    t = 0.5

    def __init__(self, A):
        self.A = A

    def __call__(self, x):
        return (x.reshape(x.shape[0], -1) @ self.A.T).reshape(x.shape)


def _A(seed):
    return torch.randn(64, 64, generator=torch.Generator().manual_seed(seed), dtype=DT)


def _mask():
    m = torch.zeros(8, 8, dtype=torch.bool)
    m[3:5, 2:5] = True
    return m


def _closed_form(A_in: np.ndarray, A_null: np.ndarray, inside: np.ndarray, out: np.ndarray, index: int, r_null: int):
    v = np.linalg.svd(A_in[inside])[2][index]
    Vbar = np.linalg.svd(A_null[out])[2][:r_null].T
    v = v - Vbar @ (Vbar.T @ v)
    return v / np.linalg.norm(v)


@pytest.mark.parametrize("band", [1, 2])
def test_band_gives_the_closed_form_on_a_linear_pmp(band):
    A = _A(0)
    mask = _mask()
    x = torch.zeros(1, 8, 8, dtype=DT)
    d = find_direction(LinearMap(A), x, mask, r=2, r_null=6, band=band, tol=1e-12, max_iter=3000)
    out = ~binary_dilation(mask.numpy(), structure=np.ones((3, 3)), iterations=band)  # oracle: scipy's dilation
    v = _closed_form(A.numpy(), A.numpy(), mask.numpy().reshape(-1), out.reshape(-1), 0, 6)
    assert abs(abs(float(v @ d.v.reshape(-1).numpy())) - 1) < 1e-9
    assert d.extra["band"] == band and d.extra["nullspace"] == "pmp"
    # and it is not the paper's direction (band 0): the guard band changes the complement
    d0 = find_direction(LinearMap(A), x, mask, r=2, r_null=6, tol=1e-12, max_iter=3000)
    assert abs(float(d0.v.reshape(-1) @ d.v.reshape(-1))) < 1 - 1e-6


def test_nullspace_map_gives_the_closed_form_on_linear_maps():
    """Step 5 from another map g = B x (the sampler's role): V̄ from ∇P_{Ω^c} g, step 4 still from f = A x."""
    A, B = _A(0), _A(1)
    mask = _mask()
    x = torch.zeros(1, 8, 8, dtype=DT)
    g = LinearMap(B)
    g.label = "sampler:test"
    d = find_direction(LinearMap(A), x, mask, r=2, r_null=5, band=1, nullspace_map=g, tol=1e-12, max_iter=3000)
    out = ~binary_dilation(mask.numpy(), structure=np.ones((3, 3)), iterations=1)
    v = _closed_form(A.numpy(), B.numpy(), mask.numpy().reshape(-1), out.reshape(-1), 0, 5)
    assert abs(abs(float(v @ d.v.reshape(-1).numpy())) - 1) < 1e-9
    assert d.extra["nullspace"] == "sampler:test"


def test_sampler_map_is_the_ddim_sampler_and_its_jacobian_matches_finite_differences():
    model = MoLRG.random((1, 4, 4), [2, 3], seed=0)  # the exact ε-model: float64, smooth
    x = torch.randn(1, 1, 4, 4, generator=torch.Generator().manual_seed(2), dtype=DT)
    s = sampler_map(model, 0.6, steps=6)
    assert s.t == pytest.approx(0.601) and s.grid.num_steps == 6 and float(s.grid.t[0]) == 0.0
    with torch.no_grad():  # the same map as the package's DDIM on that grid
        torch.testing.assert_close(s(x), ddim_sample(model.eps_model(), x, 0.6, 0.0, grid=s.grid))
    full = ddim_map(model.eps_model(), 0.6)  # on the full 100-step grid it is DDIM(x_t, 0) itself
    with torch.no_grad():
        torch.testing.assert_close(full(x), ddim_sample(model.eps_model(), x, 0.6, 0.0))
    V = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(3), dtype=DT)
    JV = JacobianOperator(s, x[0]).mv(V)
    h = 1e-5
    with torch.no_grad():
        fd = torch.stack([(s(x + h * v) - s(x - h * v))[0] / (2 * h) for v in V])
    torch.testing.assert_close(JV, fd, rtol=1e-6, atol=1e-7)


def test_strength_for_target_hits_the_target_on_a_linear_response():
    c = 0.037
    choice = strength_for_target(lambda lams: [c * lam for lam in lams], 0.12, [1.0, 2.0, 4.0, 8.0])
    assert choice.reached and choice.strength == pytest.approx(0.12 / c)
    # a response that never reaches the target: the largest λ, said so
    low = strength_for_target(lambda lams: [0.001 * lam for lam in lams], 0.12, [1.0, 2.0])
    assert not low.reached and low.strength == 2.0 and low.response == [0.001, 0.002]
    # a response already beyond the target at the first λ: interpolated from λ = 0
    assert strength_for_target(lambda lams: [1.0 for _ in lams], 0.5, [4.0, 8.0]).strength == pytest.approx(2.0)
    grid = default_strength_grid(3 * 32 * 32)
    assert grid == sorted(grid) and grid[0] == pytest.approx(3072 ** 0.5 / 64, rel=1e-3)


def test_bad_options_are_clear_errors():
    A = _A(0)
    x = torch.zeros(1, 8, 8, dtype=DT)
    with pytest.raises(ValueError, match="band must be a non-negative integer.*got -1"):
        find_direction(LinearMap(A), x, _mask(), band=-1)
    with pytest.raises(ValueError, match="band = 7 px .* complement .* would be empty"):
        find_direction(LinearMap(A), x, _mask(), band=7)
    with pytest.raises(ValueError, match="band = 7 px"):
        outside(_mask(), 7)
    with pytest.raises(ValueError, match="target change must be a positive finite number; got 0"):
        strength_for_target(lambda lams: lams, 0, [1.0])
    with pytest.raises(ValueError, match="target change must be a positive finite number; got -0.1"):
        strength_for_target(lambda lams: lams, -0.1, [1.0])
    with pytest.raises(ValueError, match="increasing list of positive"):
        strength_for_target(lambda lams: lams, 0.1, [2.0, 1.0])
    g = ddim_grid()
    shifted = DDIMGrid(g.timesteps[1:], g.alpha_bar[1:], g.t[1:], g.num_train_timesteps)  # ends at t = 0.001
    with pytest.raises(ValueError, match="must end at t = 0"):
        ddim_map(MoLRG.random((1, 4, 4), [2], seed=0).eps_model(), 0.6, grid=shifted)
    with pytest.raises(ValueError, match="steps"):
        ddim_grid().subgrid(0.6, 0)


def test_loco_edit_runs_the_options_end_to_end_and_records_them():
    from lococourse.editing.loco import loco_edit

    model = MoLRG.random((1, 8, 8), [3, 5], seed=0)
    x0 = model.sample(1, torch.Generator().manual_seed(0))[0][0]
    m = torch.zeros(8, 8, dtype=torch.bool)
    m[2:5, 1:6] = True
    res = loco_edit(model, x0, m, 0.5, strengths=[1.0], r=2, r_null=2, band=1, nullspace="sampler", sampler_steps=4,
                    max_iter=200, tol=1e-6)
    d = res.direction
    assert d.extra["band"] == 1 and d.extra["nullspace"] == "sampler:4" and isinstance(d.extra["converged"], bool)
    assert res.edited.shape == (1, 1, 8, 8) and d.v.norm().item() == pytest.approx(1.0, abs=1e-9)
    with pytest.raises(ValueError, match="nullspace must be one of"):
        loco_edit(model, x0, m, 0.5, nullspace="h-space")
    with pytest.raises(ValueError, match="band = 9 px"):
        loco_edit(model, x0, m, 0.5, band=9)


def test_loco_edit_refine_is_find_directions_refine_at_its_x_t():
    """loco_edit(refine=1) returns find_direction's refined direction at the inverted x_t with the same sampler
    (whose refine is checked against the closed form above), and refuses a bad refine before any model work."""
    from lococourse.editing.loco import loco_edit, sampler_map

    model = MoLRG.random((1, 8, 8), [3, 5], seed=0)
    x0 = model.sample(1, torch.Generator().manual_seed(0))[0][0]
    m = torch.zeros(8, 8, dtype=torch.bool)
    m[2:5, 1:6] = True
    kw = dict(r=2, band=1, projection="ridge", max_iter=200, tol=1e-8)
    res = loco_edit(model, x0, m, 0.5, strengths=[1.0], nullspace="sampler", sampler_steps=4, refine=1, **kw)
    plain = loco_edit(model, x0, m, 0.5, strengths=[1.0], nullspace="sampler", sampler_steps=4, **kw)
    ref = find_direction(model.pmp(res.t), res.x_t, m, nullspace_map=sampler_map(model, res.t, 4), refine=1, **kw)
    assert res.direction.extra["refine"] == 1 and "refine" not in plain.direction.extra
    cos = float((res.direction.v.reshape(-1) @ ref.v.reshape(-1)).double())
    assert abs(cos) == pytest.approx(1, abs=1e-6)
    assert abs(float((plain.direction.v.reshape(-1) @ res.direction.v.reshape(-1)).double())) < 1 - 1e-6
    calls = []

    class Counting(MoLRG):
        def pmp(self, t):
            calls.append(t)
            return super().pmp(t)

        def eps_model(self):
            calls.append("eps")
            return super().eps_model()

    counting = Counting.random((1, 8, 8), [3, 5], seed=0)
    for bad, phrase in [(-1, "non-negative integer"), (1.5, "non-negative integer"), (True, "non-negative integer")]:
        with pytest.raises(ValueError, match=phrase):
            loco_edit(counting, x0, m, 0.5, projection="ridge", refine=bad)
    with pytest.raises(ValueError, match="needs projection='ridge'"):
        loco_edit(counting, x0, m, 0.5, refine=1)
    assert not calls


def test_a_power_method_that_stops_early_says_so():
    A = _A(0)
    d = find_direction(LinearMap(A), torch.zeros(1, 8, 8, dtype=DT), _mask(), r=5, r_null=5, tol=1e-14, max_iter=1)
    assert d.extra["converged"] is False and d.extra["n_iter"] == 1 and d.extra["n_iter_null"] == 1


def test_stopping_on_the_direction_is_sooner_and_reaches_the_closed_form():
    """On a linear PMP with clustered singular values, stopping on the direction (v_k, then v_p) stops sooner than
    stopping on the whole top-r / top-r' subspaces, and both give the closed-form v_p (oracle: numpy SVD)."""
    g = torch.Generator().manual_seed(5)
    Q1 = torch.linalg.qr(torch.randn(64, 64, generator=g, dtype=DT))[0]
    Q2 = torch.linalg.qr(torch.randn(64, 64, generator=g, dtype=DT))[0]
    s = torch.tensor([8.0, 4.0, 3.0, 2.5, 2.0, 2.0, 2.0] + [0.5] * 57, dtype=DT)  # σ_5 = σ_6 = σ_7
    A = Q1 @ torch.diag(s) @ Q2.T
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[:4] = True
    x = torch.zeros(1, 8, 8, dtype=DT)
    by_dir = find_direction(LinearMap(A), x, mask, r=5, r_null=3, tol=1e-10, max_iter=3000)
    by_sub = find_direction(LinearMap(A), x, mask, r=5, r_null=3, tol=1e-10, max_iter=300, stop_on="subspace")
    v = _closed_form(A.numpy(), A.numpy(), mask.numpy().reshape(-1), ~mask.numpy().reshape(-1), 0, 3)
    for d in (by_dir, by_sub):
        assert abs(abs(float(v @ d.v.reshape(-1).numpy())) - 1) < 1e-8
    assert by_dir.extra["converged"] and by_dir.extra["n_iter"] < by_sub.extra["n_iter"]
    with pytest.raises(ValueError, match="stop_on must be"):
        find_direction(LinearMap(A), x, mask, stop_on="never")


# ------------------------------------------------------------------------------------- the soft (ridge) projection
def _ridge_closed_form(A_in: np.ndarray, A_null: np.ndarray, inside: np.ndarray, out: np.ndarray, c: float):
    """numpy oracle: v = top right singular vector of A_in[Ω]; v' ∝ μ (μI + BᵀB)⁻¹ v, B = A_null[Ω^c], μ = c‖Bv‖²."""
    v = np.linalg.svd(A_in[inside])[2][0]
    B = A_null[out]
    mu = c * float(np.sum((B @ v) ** 2))
    w = np.linalg.solve(B.T @ B + mu * np.eye(B.shape[1]), mu * v)
    return w / np.linalg.norm(w), v, mu


@pytest.mark.parametrize("c", [0.01, 1.0])
def test_ridge_projection_gives_the_closed_form_on_linear_maps(c):
    """projection='ridge' with band and another nullspace map: (μI + J̄ᵀJ̄)⁻¹μv by numpy, J̄ = P_{Ω^c less band} B."""
    A, B = _A(0), _A(1)
    mask = _mask()
    x = torch.zeros(1, 8, 8, dtype=DT)
    g = LinearMap(B)
    g.label = "sampler:test"
    d = find_direction(LinearMap(A), x, mask, r=2, band=1, nullspace_map=g, projection="ridge", ridge=c,
                       tol=1e-12, max_iter=3000)
    out = ~binary_dilation(mask.numpy(), structure=np.ones((3, 3)), iterations=1)
    want, v, mu = _ridge_closed_form(A.numpy(), B.numpy(), mask.numpy().reshape(-1), out.reshape(-1), c)
    # CG stops at a relative residual of 1e-4 (≤ 20 steps): compare at that accuracy, far tighter than the
    # distance between the oracle and the unprojected v
    assert abs(abs(float(want @ d.v.reshape(-1).numpy())) - 1) < 1e-4 < 1 - abs(float(want @ v)) - 1e-2
    assert d.extra["projection"] == "ridge" and d.extra["ridge"] == c and d.r_null == 0
    assert d.extra["ridge_mu"] == pytest.approx(mu, rel=1e-9)
    # the soft projection moves the complement less than the unprojected v does
    Bo = B.numpy()[out.reshape(-1)]
    assert np.linalg.norm(Bo @ d.v.reshape(-1).numpy()) < np.linalg.norm(Bo @ v)


def test_ridge_project_is_the_svd_filter_and_its_limits():
    """v' = Σ μ/(σ_i²+μ)⟨a_i, v⟩ a_i (numpy SVD of A); c → ∞ returns v; the report says whether CG converged."""
    from lococourse.jacobian import ridge_project

    A = torch.randn(40, 64, generator=torch.Generator().manual_seed(3), dtype=DT)
    op = JacobianOperator(lambda z: (z.reshape(z.shape[0], -1) @ A.T).reshape(z.shape[0], 40), torch.zeros(1, 64, dtype=DT))
    v = torch.randn(64, generator=torch.Generator().manual_seed(4), dtype=DT)
    vp, info = ridge_project(op, v, 0.05, max_iter=200, rtol=1e-12)
    _, S, Vt = np.linalg.svd(A.numpy(), full_matrices=True)  # Vt: 64 × 64, rows 40… span A's nullspace
    vh = v.numpy() / np.linalg.norm(v.numpy())
    mu = 0.05 * float(np.sum((A.numpy() @ vh) ** 2))
    s2 = np.concatenate([S ** 2, np.zeros(64 - len(S))])
    want = Vt.T @ ((mu / (s2 + mu)) * (Vt @ vh))
    want /= np.linalg.norm(want)
    assert abs(float(want @ vp.numpy()) - 1) < 1e-9
    assert info["converged"] and info["residual"] <= 1e-12 and info["mu"] == pytest.approx(mu)
    big, _ = ridge_project(op, v, 1e8, max_iter=200, rtol=1e-12)  # μ ≫ σ²: nothing removed
    assert float(big @ v / v.norm()) > 1 - 1e-6
    _, short = ridge_project(op, v, 0.05, max_iter=1, rtol=1e-12)  # one CG step cannot reach 1e-12: says so
    assert short["n_iter"] == 1 and not short["converged"]


@pytest.mark.parametrize("bad", [0, -0.5, float("nan"), float("inf"), True, "0.01"])
def test_ridge_refuses_a_bad_c_before_any_model_work(bad):
    calls = []

    def f(x):
        calls.append(1)
        return x

    x = torch.zeros(1, 8, 8, dtype=DT)
    with pytest.raises((ValueError, TypeError), match="ridge"):
        find_direction(f, x, _mask(), r=2, projection="ridge", ridge=bad)
    assert not calls


def test_unknown_projection_is_refused():
    with pytest.raises(ValueError, match="projection must be one of"):
        find_direction(LinearMap(_A(0)), torch.zeros(1, 8, 8, dtype=DT), _mask(), r=2, projection="soft")


def _holed_mask():
    """Ω on 8×8: a 3×3 ring (rows and columns 2–4) around a one-pixel hole at (3, 3), which a 1 px band swallows;
    the band leaves 39 of the outer region's 55 pixels, so that region keeps its band."""
    m = torch.zeros(8, 8, dtype=torch.bool)
    m[2:5, 2:5] = True
    m[3, 3] = False
    return m


def test_spare_keeps_the_regions_the_band_would_mostly_remove():
    # a 20×20 Ω with a 2×2 hole (the band of 1 px removes all of it) and an 8×8 hole (the band leaves 6×6 = 36 of 64)
    m = torch.zeros(20, 20, dtype=torch.bool)
    m[2:18, 2:18] = True
    small, large = np.zeros((20, 20), bool), np.zeros((20, 20), bool)
    small[4:6, 4:6] = True
    large[8:16, 8:16] = True
    m[torch.from_numpy(small | large)] = False
    banded = ~binary_dilation(m.numpy(), structure=np.ones((3, 3)))  # oracle: scipy's dilation
    assert not (banded & small).any() and (banded & large).sum() == 36
    got = outside(m, 1, spare=True).numpy()
    assert np.array_equal(got, banded | small)  # the small hole whole, the large one with its band, the outside banded
    assert np.array_equal(outside(m, 1).numpy(), banded)  # spare=False: the plain band
    # per (H, W) plane, on a stacked mask, and spare with band 0 is Ω^c
    stacked = torch.stack([m, m.T])
    assert np.array_equal(outside(stacked, 1, spare=True).numpy(), np.stack([got, got.T]))
    assert torch.equal(outside(m, 0, spare=True), ~m)


def test_band_spare_gives_the_closed_form_on_a_linear_pmp():
    A, B = _A(0), _A(3)
    mask = _holed_mask()
    x = torch.zeros(1, 8, 8, dtype=DT)
    out = ~binary_dilation(mask.numpy(), structure=np.ones((3, 3)))
    assert out.sum() == 39
    out[3, 3] = True  # the spared hole
    g = LinearMap(B)
    d = find_direction(LinearMap(A), x, mask, r=2, r_null=4, band=1, band_spare=True, nullspace_map=g, tol=1e-12,
                       max_iter=3000)
    v = _closed_form(A.numpy(), B.numpy(), mask.numpy().reshape(-1), out.reshape(-1), 0, 4)
    assert abs(abs(float(v @ d.v.reshape(-1).numpy())) - 1) < 1e-9
    assert d.extra["band_spare"] is True
    # the ridge projection uses the same spared complement: its closed form with that region
    dr = find_direction(LinearMap(A), x, mask, r=2, band=1, band_spare=True, nullspace_map=g, projection="ridge",
                        ridge=0.5, tol=1e-12, max_iter=3000)
    vr = _ridge_closed_form(A.numpy(), B.numpy(), mask.numpy().reshape(-1), out.reshape(-1), 0.5)[0]
    assert abs(abs(float(vr @ dr.v.reshape(-1).numpy())) - 1) < 1e-4


def test_bad_spare_is_refused():
    with pytest.raises(ValueError, match="spare must be True or False; got 'yes'"):
        outside(_mask(), 1, spare="yes")
    with pytest.raises(ValueError, match="spare must be True or False"):
        find_direction(LinearMap(_A(0)), torch.zeros(1, 8, 8, dtype=DT), _mask(), r=2, band=1, band_spare=1)


def _ring_mask():
    """Ω on 20×20: a 2 px thick square ring (rows and columns 3–11) around a 5×5 hole (rows and columns 5–9): a 2 px
    band leaves only the hole's centre pixel, so the hole is spared; its 1 px rim is the 16 pixels next to Ω.  The
    band leaves 231 of the outer region's 319 pixels, so that region keeps its band."""
    m = torch.zeros(20, 20, dtype=torch.bool)
    m[3:12, 3:12] = True
    m[5:10, 5:10] = False
    return m


def test_rim_keeps_only_the_core_of_a_spared_hole():
    m = _ring_mask()
    hole = np.zeros((20, 20), bool)
    hole[5:10, 5:10] = True
    banded = ~binary_dilation(m.numpy(), structure=np.ones((5, 5)))  # oracle: scipy's dilation by 2 px
    assert (banded & hole).sum() == 1  # the band would leave 1 of the hole's 25 pixels: it is spared
    core = hole & ~binary_dilation(m.numpy(), structure=np.ones((3, 3)))  # the hole less its pixels within 1 px of Ω
    assert core.sum() == 9
    assert np.array_equal(outside(m, 2, spare=True, rim=1).numpy(), banded | core)
    assert np.array_equal(outside(m, 2, spare=True, rim=0).numpy(), banded | hole)  # rim 0: the whole hole
    assert np.array_equal(outside(m, 2, spare=True, rim=3).numpy(), banded)  # a rim past the core: nothing is kept
    stacked = torch.stack([m, m.T])  # per (H, W) plane
    assert np.array_equal(outside(stacked, 2, spare=True, rim=1).numpy(), np.stack([banded | core, (banded | core).T]))


def test_spare_rim_gives_the_closed_form_on_a_linear_pmp():
    """find_direction(band=2, band_spare=True, spare_rim=1) projects against exactly that complement (numpy oracle)."""
    g = torch.Generator().manual_seed(5)
    A, B = (torch.randn(400, 400, generator=g, dtype=DT) for _ in range(2))
    mask = _ring_mask()
    out = outside(mask, 2, spare=True, rim=1).numpy().reshape(-1)
    assert out.sum() == 231 + 9  # what the band leaves of the outer region, and the hole's core
    x = torch.zeros(1, 20, 20, dtype=DT)
    d = find_direction(LinearMap(A), x, mask, r=2, r_null=4, band=2, band_spare=True, spare_rim=1,
                       nullspace_map=LinearMap(B), tol=1e-12, max_iter=4000)
    v = _closed_form(A.numpy(), B.numpy(), mask.numpy().reshape(-1), out, 0, 4)
    assert abs(abs(float(v @ d.v.reshape(-1).numpy())) - 1) < 1e-8
    assert d.extra["band_spare"] is True and d.extra["spare_rim"] == 1


@pytest.mark.parametrize("kw, match", [({"spare": True, "rim": -1}, "rim must be a non-negative integer number of pixels; got -1"),
                                       ({"spare": True, "rim": 1.5}, "got 1.5"),
                                       ({"rim": 1}, "rim = 1 px applies to the holes that spare=True keeps")])
def test_bad_rim_is_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        outside(_ring_mask(), 2, **kw)
    with pytest.raises(ValueError, match=match):
        find_direction(LinearMap(_A(0)), torch.zeros(1, 8, 8, dtype=DT), _mask(), r=2, band=1,
                       band_spare=kw.get("spare", False), spare_rim=kw["rim"])


def test_refine_gives_the_closed_form_on_linear_maps():
    """refine=1: u ∝ (μ₁I + J̄ᵀJ̄)⁻¹ J̃_gᵀJ̃_g v_ridge by numpy (J̃_g = B[Ω], J̄ = B[Ω^c less band], μ₁ = c‖J̄ŵ‖²)."""
    A, B = _A(0), _A(1)
    mask = _mask()
    x = torch.zeros(1, 8, 8, dtype=DT)
    g = LinearMap(B)
    d = find_direction(LinearMap(A), x, mask, r=2, band=1, nullspace_map=g, projection="ridge", ridge=1.0, refine=1,
                       tol=1e-12, max_iter=3000)
    out = ~binary_dilation(mask.numpy(), structure=np.ones((3, 3)), iterations=1).reshape(-1)
    inside = mask.numpy().reshape(-1)
    v0 = _ridge_closed_form(A.numpy(), B.numpy(), inside, out, 1.0)[0]
    Bi, Bo = B.numpy()[inside], B.numpy()[out]
    w = Bi.T @ (Bi @ v0)
    w /= np.linalg.norm(w)
    mu = float(np.sum((Bo @ w) ** 2))
    want = np.linalg.solve(Bo.T @ Bo + mu * np.eye(64), mu * w)
    want /= np.linalg.norm(want)
    assert abs(abs(float(want @ d.v.reshape(-1).numpy())) - 1) < 1e-3 < 1 - abs(float(want @ v0))
    assert d.extra["refine"] == 1


@pytest.mark.parametrize("bad", [-1, 1.5, True, "1"])
def test_bad_refine_is_refused(bad):
    with pytest.raises(ValueError, match="refine"):
        find_direction(LinearMap(_A(0)), torch.zeros(1, 8, 8, dtype=DT), _mask(), r=2, projection="ridge", refine=bad)
    with pytest.raises(ValueError, match="needs projection='ridge'"):
        find_direction(LinearMap(_A(0)), torch.zeros(1, 8, 8, dtype=DT), _mask(), r=2, refine=1)


# ------------------------------------------------------------------------------------- several masks in one batch
def _masks():
    """Three masks of 8×8: a block, a column, the block's mirror image."""
    a = _mask()
    b = torch.zeros(8, 8, dtype=torch.bool)
    b[:, 6] = True
    return [a, b, a.flip(1)]


@pytest.mark.parametrize("refine", [0, 1])
def test_find_directions_batches_the_ridge_and_gives_each_masks_closed_form(refine):
    """find_directions over 3 masks: each direction is the numpy closed form of its own mask (ridge, and refine=1),
    the ridge solves of all masks run as one batch (one J̄·U call of 3 vectors per CG step), and the refine step
    reuses the memoised ridge solves of an earlier call on the same linearisation."""
    from lococourse.editing.loco import find_directions, linearize

    A, B = _A(0), _A(1)
    calls = []

    g = LinearMap(B)
    x = torch.zeros(1, 8, 8, dtype=DT)
    views = linearize(LinearMap(A), x)
    null = linearize(g, x)
    mv = null.base.mv
    null.base.mv = lambda V: (calls.append(V.shape[0]), mv(V))[1]
    masks = _masks()
    kw = dict(r=2, band=1, nullspace_map=null, projection="ridge", ridge=1.0, tol=1e-12, max_iter=3000)
    plain = find_directions(views, None, masks, **kw)
    assert set(calls) == {3}  # every J̄·U of the ridge's CG carries the three masks' vectors at once
    calls.clear()
    got = find_directions(views, None, masks, refine=refine, extras=[{"part": i} for i in range(3)], **kw)
    for i, (mask, d) in enumerate(zip(masks, got)):
        out = ~binary_dilation(mask.numpy(), structure=np.ones((3, 3)), iterations=1).reshape(-1)
        inside = mask.numpy().reshape(-1)
        want = _ridge_closed_form(A.numpy(), B.numpy(), inside, out, 1.0)[0]
        if refine:
            Bi, Bo = B.numpy()[inside], B.numpy()[out]
            w = Bi.T @ (Bi @ want)
            w /= np.linalg.norm(w)
            want = np.linalg.solve(Bo.T @ Bo + float(np.sum((Bo @ w) ** 2)) * np.eye(64), w)
            want /= np.linalg.norm(want)
        assert abs(abs(float(want @ d.v.reshape(-1).numpy())) - 1) < 1e-3
        assert d.extra["part"] == i and d.extra.get("refine", 0) == refine
        # the same as find_direction on that mask alone
        one = find_direction(LinearMap(A), x, mask, refine=refine, **{**kw, "nullspace_map": g})
        assert abs(float(one.v.reshape(-1) @ d.v.reshape(-1))) > 1 - 1e-9
    # the second call solved no ridge again: without refine it made no J̄·U call, with refine only the refine step's
    if refine:
        assert calls and set(calls) == {3}
    else:
        assert calls == []
        assert all(abs(float(p.v.reshape(-1) @ q.v.reshape(-1))) > 1 - 1e-12 for p, q in zip(plain, got))


def test_find_directions_refuses_bad_masks_and_extras_before_any_model_work():
    from lococourse.editing.loco import find_directions

    calls = []

    def f(x):
        calls.append(1)
        return x

    x = torch.zeros(1, 8, 8, dtype=DT)
    with pytest.raises(ValueError, match="at least one mask"):
        find_directions(f, x, [], r=2)
    with pytest.raises(ValueError, match="one dict per mask: 3 masks, 1 extras"):
        find_directions(f, x, _masks(), r=2, extras=[{}])
    assert not calls


def test_ridge_project_rows_is_ridge_project_row_by_row():
    """Rows with their own masks (RowMaskedView) in one batch = ridge_project of each row alone, to CG accuracy;
    a wrong number of rows is refused."""
    from lococourse.jacobian import JacobianViews, ridge_project, ridge_project_rows

    views = JacobianViews(LinearMap(_A(2)), torch.zeros(1, 8, 8, dtype=DT))
    outs = [~m for m in _masks()]
    V = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(5), dtype=DT)
    got, infos = ridge_project_rows(views.rows(outs), V, 0.05, max_iter=200, rtol=1e-12)
    for i in range(3):
        one, info = ridge_project(views.view(outs[i]), V[i], 0.05, max_iter=200, rtol=1e-12)
        assert float((one.reshape(-1) @ got[i].reshape(-1))) > 1 - 1e-12
        assert infos[i]["mu"] == pytest.approx(info["mu"], rel=1e-12) and infos[i]["converged"]
    with pytest.raises(ValueError, match="3 masks, one per row; got 2 rows"):
        views.rows(outs).mv(V[:2])


def test_find_directions_with_the_papers_projection_gives_each_masks_closed_form():
    """Steps 4–8 (subspace projection, band 1) for three masks in one batch: each the numpy closed form of its mask."""
    from lococourse.editing.loco import find_directions

    A = _A(0)
    x = torch.zeros(1, 8, 8, dtype=DT)
    got = find_directions(LinearMap(A), x, _masks(), r=2, r_null=4, band=1, tol=1e-12, max_iter=3000)
    for mask, d in zip(_masks(), got):
        out = ~binary_dilation(mask.numpy(), structure=np.ones((3, 3)), iterations=1).reshape(-1)
        v = _closed_form(A.numpy(), A.numpy(), mask.numpy().reshape(-1), out, 0, 4)
        assert abs(abs(float(v @ d.v.reshape(-1).numpy())) - 1) < 1e-9
