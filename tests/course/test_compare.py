"""lococourse.course.compare (learned vs exact PMP; Figure 2 runs) and lococourse.course.viz_compare, against independent oracles:
the raw UNet call with diffusers' own noise table, autograd, finite differences, numpy/scipy SVD and principal
angles, and the class-by-class closed form of the posterior covariance."""
from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.linalg
import torch
from matplotlib.figure import Figure

from lococourse.course import compare, figure2, viz_compare
from lococourse.theory.molrg import MoLRG

ETA = 0.99


@pytest.fixture(scope="module")
def d48():
    return compare.learned_vs_exact("molrg_d48")


@pytest.fixture(scope="module")
def exact_pair():
    """The exact MoLRG posterior mean posing as the 'learned' model: every learned-vs-exact gap must vanish."""
    ex = MoLRG.random((3, 4, 4), [2, 3], seed=1)
    return compare.LearnedVsExact("exact-as-learned", SimpleNamespace(pmp=ex.pmp, shape=ex.shape), ex)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """A seeded, untrained 8×8 diffusers UNet saved with safetensors (ε-prediction by default)."""
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       norm_num_groups=4)
    path = tmp_path_factory.mktemp("tiny_unet")
    unet.save_pretrained(path, safe_serialization=True)
    # a model folder says what its UNet predicts (the registry refuses to guess): a diffusers scheduler config
    (path / "scheduler_config.json").write_text(json.dumps({"_class_name": "DDIMScheduler", "prediction_type": "epsilon"}))
    return path


def _alpha_bar(k: int) -> float:
    """ᾱ_k = Π_{i≤k} (1 − β_i), β linear from 1e-4 to 0.02 over 1000 steps, in numpy float64; checked against
    diffusers' own (float32) table.  Independent of lococourse.core.schedule."""
    from diffusers import DDPMScheduler

    ab = float(np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))[k])
    s = DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear")
    assert float(s.alphas_cumprod[k]) == pytest.approx(ab, rel=1e-5)
    return ab


def _rank_by_hand(S: np.ndarray, eta: float = ETA) -> int:
    """Eq. 10 in numpy: the smallest r with Σ_{i≤r} σ_i² / Σ σ_i² > η²."""
    s2 = np.sort(np.asarray(S, dtype=float) ** 2)[::-1]
    return int(np.argmax(np.cumsum(s2) / s2.sum() > eta ** 2)) + 1


def _posterior_mean_np(bases, weights, x: np.ndarray, ab: float) -> np.ndarray:
    """Lemma 1 with Bayes' weights, in numpy (x flat, shape (d,))."""
    logits = np.array([math.log(w) + 0.5 * ab / (1 - ab) * np.sum((M.T @ x) ** 2) + 0.5 * M.shape[1] * math.log(1 - ab)
                       for M, w in zip(bases, weights)])
    w = np.exp(logits - logits.max())
    w /= w.sum()
    return math.sqrt(ab) * sum(wk * M @ (M.T @ x) for wk, M in zip(w, bases)), w


def _cov_trace_np(bases, w: np.ndarray, x: np.ndarray, ab: float) -> float:
    """tr Cov[x₀|x_t] class by class: x₀|x_t,k ~ N(√ᾱ P_k x_t, (1−ᾱ) P_k), so
    tr Cov = Σ_k w_k ((1−ᾱ) r_k + ᾱ‖P_k x‖²) − ‖Σ_k w_k √ᾱ P_k x‖²."""
    proj = [M @ (M.T @ x) for M in bases]
    mean = sum(wk * math.sqrt(ab) * p for wk, p in zip(w, proj))
    return float(sum(wk * ((1 - ab) * M.shape[1] + ab * p @ p) for wk, M, p in zip(w, bases, proj)) - mean @ mean)


# ---------------------------------------------------------------------------------------- the pair
def test_molrg_course_models_ship_their_exact_model(d48):
    assert {"molrg_d48", "molrg_d192"} <= set(compare.molrg_course_models())
    assert "faces16" not in compare.molrg_course_models()
    ex = d48.exact
    assert d48.shape == tuple(d48.learned.shape) == (3, 4, 4) and d48.d == 48
    assert ex.ranks == d48.card["data"]["ranks"] and d48.r == sum(ex.ranks) == 12
    assert torch.allclose(ex.M.T @ ex.M, torch.eye(d48.r, dtype=torch.float64), atol=1e-12)


@pytest.mark.parametrize("name, match", [("faces16", "ships no MoLRG bases"), ("ddpm-celebahq-256", "ships no MoLRG bases"),
                                         ("no-such-model", "unknown model")])
def test_learned_vs_exact_refuses_models_without_an_exact_counterpart(name, match):
    with pytest.raises(ValueError, match=match) as e:
        compare.learned_vs_exact(name)
    assert "molrg_d48" in str(e.value)


def test_pair_validates_its_parts():
    ex = MoLRG.random((3, 4, 4), [2], seed=0)
    with pytest.raises(TypeError, match="MoLRG"):
        compare.LearnedVsExact("x", SimpleNamespace(pmp=ex.pmp, shape=ex.shape), "not a MoLRG")
    with pytest.raises(TypeError, match="pmp"):
        compare.LearnedVsExact("x", object(), ex)
    with pytest.raises(ValueError, match="shape"):
        compare.LearnedVsExact("x", SimpleNamespace(pmp=ex.pmp, shape=(3, 8, 8)), ex)


# ---------------------------------------------------------------------------------------- one t
def test_exact_against_itself_has_no_gap(exact_pair):
    pc = compare.compare_at(exact_pair, 0.4, n=3, seed=0)
    assert torch.equal(pc.f_learned, pc.f_exact) and float(pc.pmp_error.max()) == 0.0
    assert float(pc.jac_error.max()) < 1e-10  # autograd of Lemma 1 vs Lemma 2 in closed form
    assert torch.equal(pc.rank_learned, pc.rank_exact)
    assert float(pc.align_learned_U.max()) < 1e-8 and float(pc.align_learned_V.max()) < 1e-8
    assert float(pc.align_exact.max()) < 1e-8
    assert torch.allclose(pc.energy_in_span, torch.ones(3, dtype=torch.float64), atol=1e-12)
    assert float(pc.symmetry_learned.max()) < 1e-10
    assert torch.equal(pc.loss_ratio, torch.ones(3, dtype=torch.float64))


def test_compare_at_against_independent_oracles(d48):
    t = 0.5
    k = 499  # round(0.5 · 1000) − 1
    ab = _alpha_bar(k)
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64) * 0.6
    pc = compare.compare_at(d48, t, points=x)
    assert pc.t == pytest.approx(0.5) and pc.n == 2
    unet = d48.learned.unet
    bases = [m.numpy() for m in d48.exact.bases]
    weights = d48.exact.weights.numpy()
    r, d = 12, 48

    def f_raw(z):  # the course model predicts x₀ ("sample"): f_θ,t(x) = UNet(x, k)
        return unet(z.reshape(1, 3, 4, 4), torch.tensor([k])).sample.reshape(-1)

    for i in range(2):
        xi = x[i].reshape(-1).numpy()
        # PMPs
        with torch.no_grad():
            fl = f_raw(x[i].float()).double().numpy()
        fe, w = _posterior_mean_np(bases, weights, xi, ab)
        np.testing.assert_allclose(pc.f_learned[i].reshape(-1).numpy(), fl, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(pc.f_exact[i].reshape(-1).numpy(), fe, rtol=1e-10, atol=1e-12)
        assert float(pc.pmp_error[i]) == pytest.approx(np.linalg.norm(fl - fe) / np.linalg.norm(fe), rel=1e-5)
        # Jacobians: autograd of the raw UNet call; central differences of the numpy posterior mean
        Jl = torch.autograd.functional.jacobian(f_raw, x[i].float().reshape(-1)).double().numpy()
        h = 1e-5
        Je = np.stack([(_posterior_mean_np(bases, weights, xi + h * e, ab)[0] - _posterior_mean_np(bases, weights, xi - h * e, ab)[0])
                       / (2 * h) for e in np.eye(d)], axis=1)
        np.testing.assert_allclose(pc.J_learned[i].numpy(), Jl, atol=1e-5 * np.abs(Jl).max())
        np.testing.assert_allclose(pc.J_exact[i].numpy(), Je, atol=1e-7)
        assert float(pc.jac_error[i]) == pytest.approx(np.linalg.norm(Jl - Je) / np.linalg.norm(Je), rel=1e-4)
        # spectra and eq. 10 by hand
        Ul, Sl, Vlt = np.linalg.svd(Jl)
        Ue, Se, _ = np.linalg.svd(Je)
        np.testing.assert_allclose(pc.S_learned[i].numpy(), Sl, atol=1e-5 * Sl[0])
        np.testing.assert_allclose(pc.S_exact[i].numpy(), Se, atol=1e-7)
        assert int(pc.rank_learned[i]) == _rank_by_hand(Sl) and int(pc.rank_exact[i]) == _rank_by_hand(Se)
        # alignment² = Σ sin² of the principal angles between span(U_r) and span(M), over r
        M = np.concatenate(bases, axis=1)
        for got, U in ((pc.align_learned_U[i], Ul[:, :r]), (pc.align_learned_V[i], Vlt[:r].T), (pc.align_exact[i], Ue[:, :r])):
            angles = scipy.linalg.subspace_angles(U, M)
            assert float(got) == pytest.approx(math.sqrt(np.sum(np.sin(angles) ** 2) / r), abs=1e-6)
        assert float(pc.energy_in_span[i]) == pytest.approx(np.linalg.norm(M @ M.T @ Jl) ** 2 / np.linalg.norm(Jl) ** 2, rel=1e-6)
        assert float(pc.symmetry_learned[i]) == pytest.approx(np.linalg.norm(Jl - Jl.T) / np.linalg.norm(Jl), rel=1e-5)
        # loss ratio with tr Cov[x₀|x_t] from the class-by-class posterior (no Jacobian involved)
        trc = _cov_trace_np(bases, w, xi, ab)
        assert float(compare.posterior_cov_trace(d48.exact, x[i], pc.t)) == pytest.approx(trc, rel=1e-10)
        assert float(pc.loss_ratio[i]) == pytest.approx(1 + np.sum((fl - fe) ** 2) / trc, rel=1e-5)
    assert pc.rank_ratio_learned == pytest.approx(float(pc.rank_learned.double().mean()) / d)


def test_compare_at_default_points_are_the_forward_process(exact_pair):
    from lococourse.course.lab import noisy_samples

    pc = compare.compare_at(exact_pair, 0.3, n=2, seed=5, keep_jacobians=False)
    assert torch.equal(pc.x_t, noisy_samples(exact_pair.exact, 0.3, n=2, seed=5).x_t)
    assert pc.J_learned is None and pc.J_exact is None


def test_compare_at_snaps_t_to_the_networks_timestep(d48):
    pc = compare.compare_at(d48, 0.5004, n=1, seed=0, keep_jacobians=False)
    assert pc.t == pytest.approx(0.5)  # k = 499 → t = (k + 1)/T


@pytest.mark.parametrize("kwargs, match", [
    (dict(t=0.0), "t must lie"), (dict(t=1.2), "t must lie"), (dict(n=0), "n must be"), (dict(eta=1.0), "eta"),
    (dict(points=torch.zeros(2, 3, 8, 8)), "points must have shape"), (dict(points=torch.zeros(0, 3, 4, 4)), "points must"),
    (dict(points=torch.full((1, 3, 4, 4), float("nan"))), "NaN"),
])
def test_compare_at_rejects_bad_input(exact_pair, kwargs, match):
    with pytest.raises(ValueError, match=match):
        compare.compare_at(exact_pair, **{"t": 0.5, **kwargs})


# ---------------------------------------------------------------------------------------- along t
def test_sweep_stacks_compare_at(d48):
    ts = (0.1, 0.5, 0.9)
    sw = compare.compare_vs_t(d48, ts, n=2, seed=3)
    assert sw.pmp_error.shape == (3, 2) and sw.S_learned.shape == (3, 2, 48)
    one = compare.compare_at(d48, 0.9, n=2, seed=3)
    assert torch.equal(sw.rank_learned[2], one.rank_learned) and torch.allclose(sw.jac_error[2], one.jac_error)
    assert torch.allclose(sw.rank_ratio_learned, sw.rank_learned.double().mean(1) / 48)
    assert torch.allclose(sw.mean("loss_ratio"), sw.loss_ratio.mean(1))
    assert sw.index(0.52) == 1
    with pytest.raises(ValueError, match="metric"):
        sw.mean("nope")
    with pytest.raises(ValueError, match="at least one"):
        compare.compare_vs_t(d48, [], n=1)
    with pytest.raises(ValueError, match="t must lie"):
        compare.compare_vs_t(d48, [0.5, 1.5], n=1)
    # the shipped model: exact rank Σ r_k = 12 matched at t = 0.5, more directions at both ends
    ag = compare.rank_agreement(sw)
    assert ag.matching_ts == [0.5] and ag.middle_match_ends_depart


def _agreement(learned, exact, tol=0.5):
    ts = torch.linspace(0.1, 0.9, len(learned), dtype=torch.float64)
    return compare.RankAgreement(ts, torch.tensor(learned, dtype=torch.float64), torch.tensor(exact, dtype=torch.float64), tol, 12)


@pytest.mark.parametrize("learned, exact, holds", [
    ([10, 12, 12.25, 20], [6, 12, 12, 12], True),
    ([6, 12, 12, 20], [6, 12, 12, 12], False),  # matches at an end
    ([10, 12, 18, 12, 20], [6, 12, 12, 12, 12], False),  # two separate matching runs
    ([10, 14, 15, 20], [6, 12, 12, 12], False),  # never matches
    ([4, 12, 12, 20], [6, 12, 12, 12], False),  # below the exact rank at the small-t end
])
def test_rank_agreement_logic(learned, exact, holds):
    assert _agreement(learned, exact).middle_match_ends_depart is holds


def test_rank_agreement_reports_matches_and_excess():
    a = _agreement([10, 12, 12.5, 24], [5, 12, 12, 12])
    assert a.match.tolist() == [False, True, True, False] and a.matching_ts == [0.3667, 0.6333]
    assert a.excess.tolist() == [2.0, 1.0, 12.5 / 12, 2.0]
    with pytest.raises(ValueError, match="tol"):
        compare.rank_agreement(None, tol=-1)


def test_card_rank_ratio_reads_the_card():
    from lococourse.models.registry import get_spec

    rr = compare.card_rank_ratio("faces32")
    card = json.loads((Path(get_spec("faces32").source) / "card.json").read_text())
    assert rr == card["rank_ratio"] and rr["d"] == 3072
    with pytest.raises(ValueError, match="no model card"):
        compare.card_rank_ratio("ddpm-celebahq-256")


# ---------------------------------------------------------------------------------------- Figure 2
def test_figure2_run_gives_the_cli_numbers(tiny_folder):
    from lococourse.cli.rank_curve import compute

    kw = dict(n=2, seed=1, linearity_t=0.7, lambdas=[0, 10, 20])
    run = figure2.figure2_run(str(tiny_folder), [0.3, 0.8], **kw)
    assert run.as_dict() == compute(str(tiny_folder), [0.3, 0.8], progress=False, **kw)
    assert run.d == 64 and run.shape == (1, 8, 8) and len(run.rank.spectra) == 2
    for j, spec in enumerate(run.rank.spectra):  # spectra kept: eq. 10 on them gives the ranks
        assert spec.shape == (2, 64)
        assert [_rank_by_hand(s) for s in spec] == run.rank.ranks[j].tolist()
    only_b = figure2.figure2_run(run.model, (), **kw)  # a LoadedModel goes in too; no ts: panel (b) only
    assert only_b.rank is None and only_b.as_dict()["linearity"] == run.as_dict()["linearity"]
    assert only_b.as_dict()["rank_curve"]["t"] == [] and only_b.as_dict()["min_rank_ratio"] is None
    with pytest.raises(ValueError, match="t must lie"):
        figure2.figure2_run(run.model, [0.5], linearity_t=0.0)


def test_singular_at_against_numpy_svd(tiny_folder):
    from lococourse.jacobian.operator import dense_jacobian

    run = figure2.figure2_run(str(tiny_folder), (), n=2, seed=0)
    sa = compare.singular_at(run, 0.6, point=1, k=3)
    assert sa.t == pytest.approx(0.601)  # snapped to the DDIM grid: the PMP at the trajectory point's own timestep
    x = run.points_at(0.6)[1]
    J = dense_jacobian(run.model.pmp(0.601), x).double().reshape(64, 64).numpy()
    U, S, Vt = np.linalg.svd(J)
    np.testing.assert_allclose(sa.S.numpy(), S, atol=1e-6 * S[0])
    assert sa.rank == _rank_by_hand(S) and torch.equal(sa.x_t, x) and sa.V.shape == (3, 1, 8, 8)
    for i in range(3):  # v_i is a right singular vector: ‖J v_i‖ = σ_i, up to sign the numpy one
        v = sa.V[i].reshape(-1).numpy()
        assert np.linalg.norm(J @ v) == pytest.approx(S[i], rel=1e-5)
        assert abs(v @ Vt[i]) == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(ValueError, match="point must be"):
        compare.singular_at(run, 0.6, point=2)
    with pytest.raises(ValueError, match="holds no model"):
        compare.singular_at(figure2.Figure2Run("x", "", (1, 8, 8), 1, 0, None, None, run.points_at), 0.5)


# ---------------------------------------------------------------------------------------- figures
def test_viz_compare_figures(d48, tiny_folder):
    sw = compare.compare_vs_t(d48, (0.2, 0.6), n=2, seed=0)
    pc = compare.compare_at(d48, 0.6, n=2, seed=0)
    for fig in (viz_compare.plot_rank_vs_t({"molrg_d48": sw}), viz_compare.plot_errors_vs_t(sw, t_mark=0.6),
                viz_compare.plot_spectra(pc, 1), viz_compare.plot_spectra_grid(sw, (0.2, 0.6)),
                viz_compare.plot_pmp_images(pc), viz_compare.comparison_dashboard(pc, sw),
                viz_compare.compare_view(d48, 0.6, 1, {"molrg_d48": sw}, n=2),
                viz_compare.plot_rank_curves({"a": ([0.1, 0.5], [0.2, 0.05])})):
        assert isinstance(fig, Figure) and len(fig.axes) >= 1
    assert len(viz_compare.compare_view(d48, 0.6, 0, None, n=2).axes) == 1
    with pytest.raises(ValueError, match="point must be"):
        viz_compare.plot_spectra(pc, 2)
    with pytest.raises(ValueError, match="ComparisonSweep"):
        viz_compare.plot_rank_vs_t([])
    run = figure2.figure2_run(str(tiny_folder), [0.5], n=1, seed=0, lambdas=[0, 10])
    assert isinstance(viz_compare.plot_figure2_spectra(run), Figure)
    assert isinstance(viz_compare.figure2_view(run, 0.5, 0, k=2), Figure)


def test_hspace_at_against_autograd_and_finite_differences(tiny_folder):
    """App. D.3's three Jacobians: ∂x̂₀/∂x_t by torch.autograd.functional.jacobian; ∂h/∂x_t and ∂x̂₀/∂h by central
    finite differences through a forward hook written here (not compare's)."""
    from lococourse.models.registry import load_model

    model = load_model(str(tiny_folder))
    for p in model.unet.parameters():
        p.data = p.data.double()
    f = model.pmp(0.6)
    x = torch.randn(1, 8, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    hs = compare.hspace_at(model, x, 0.6)
    J_xx = torch.autograd.functional.jacobian(lambda z: f(z.unsqueeze(0))[0], x).reshape(64, 64).numpy()
    store = {}

    def hook(module, inputs, output):
        store["h"] = output
        return store.get("replace", output)

    handle = model.unet.mid_block.register_forward_hook(hook)
    try:
        with torch.no_grad():
            f(x.unsqueeze(0))
            h0 = store["h"][0].clone()
            eps = 1e-6
            cols_hx = []
            for i in range(64):
                e = torch.zeros(64, dtype=torch.float64)
                e[i] = eps
                f((x + e.reshape(x.shape)).unsqueeze(0))
                hp = store["h"][0].clone()
                f((x - e.reshape(x.shape)).unsqueeze(0))
                cols_hx.append(((hp - store["h"][0]) / (2 * eps)).reshape(-1))
            cols_xh = []
            for i in range(h0.numel()):
                e = torch.zeros(h0.numel(), dtype=torch.float64)
                e[i] = eps
                store["replace"] = (h0 + e.reshape(h0.shape)).unsqueeze(0)
                yp = f(x.unsqueeze(0))[0]
                store["replace"] = (h0 - e.reshape(h0.shape)).unsqueeze(0)
                cols_xh.append(((yp - f(x.unsqueeze(0))[0]) / (2 * eps)).reshape(-1))
                store.pop("replace")
    finally:
        handle.remove()
    J_hx, J_xh = torch.stack(cols_hx, 1).numpy(), torch.stack(cols_xh, 1).numpy()
    assert hs.d_x == 64 and hs.d_h == h0.numel()
    for J, fro, rank in ((J_xx, hs.fro_x0_x, hs.rank_x0_x), (J_hx, hs.fro_h_x, hs.rank_h_x), (J_xh, hs.fro_x0_h, hs.rank_x0_h)):
        assert fro == pytest.approx(np.linalg.norm(J), rel=1e-5)
        assert rank == _rank_by_hand(np.linalg.svd(J, compute_uv=False))
    with pytest.raises(ValueError, match="no mid_block"):
        compare.hspace_at(SimpleNamespace(unet=torch.nn.Linear(2, 2), pmp=model.pmp), x, 0.6)
