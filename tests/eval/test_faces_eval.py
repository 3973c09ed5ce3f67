"""Factor estimation and edit-quality decisions on procedural faces, against known factors and closed forms."""
import math

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from lococourse import eval as fe
from lococourse.data.faces import FACTOR_NAMES, render_faces, sample_faces
from lococourse.jacobian import JacobianViews, power_method
from lococourse.models.registry import ASSETS
from lococourse.theory.molrg import MoLRG

I = {n: i for i, n in enumerate(FACTOR_NAMES)}


# ---------------------------------------------------------------------------------------- the estimator
@pytest.mark.parametrize("size", [16, 32])
def test_estimator_recovers_generated_factors(size):
    """Analysis by synthesis on clean generated faces: mean abs error per factor < 0.01 (measured ≈ 0.002)."""
    fb = sample_faces(12, 7, size=size)
    fit = fe.estimate_factors(fb.images)
    err = fe.factor_error(fit, fb.factors)
    assert err.shape == (12, 9)
    assert float(err.mean(0).max()) < 0.01, dict(zip(FACTOR_NAMES, err.mean(0).tolist()))
    assert float(err.max()) < 0.05
    assert float(fit.mse.max()) < 1e-4
    assert torch.allclose(fit.render(), fb.images, atol=0.1)


def test_estimator_is_deterministic_and_batch_independent():
    fb = sample_faces(3, 2, size=16)
    a = fe.estimate_factors(fb.images).theta
    b = fe.estimate_factors(fb.images).theta
    c = fe.estimate_factors(fb.images[1]).theta
    assert torch.equal(a, b)
    assert torch.allclose(a[1], c[0], atol=5e-3)


def test_estimator_in_row_chunks_gives_the_one_piece_answer(monkeypatch):
    """Rows are independent (a sum of per-row losses, elementwise Adam): rendering and optimising them in chunks of
    CHUNK_ROWS (for the CPU caches) must give what one piece gives, up to float rounding."""
    from lococourse.eval import factors as ff

    fb = sample_faces(7, 4, size=16)
    x = fb.images + 0.01 * torch.randn(fb.images.shape, generator=torch.Generator().manual_seed(0))
    init = fe.as_theta(fb.factors)
    monkeypatch.setattr(ff, "CHUNK_ROWS", 10_000)
    whole = fe.estimate_factors(x, init=init)
    monkeypatch.setattr(ff, "CHUNK_ROWS", 2)  # every phase now runs in several chunks, with a ragged last one
    chunked = fe.estimate_factors(x, init=init)
    assert torch.allclose(chunked.theta, whole.theta, atol=1e-4)
    assert torch.allclose(chunked.mse, whole.mse, rtol=1e-3, atol=1e-7)
    assert (whole.theta - init).abs().max() < 0.05  # and both found the truth (the oracle: the rendered factors)


def test_factor_delta_is_circular_for_hue_only():
    before = torch.zeros(1, 9)
    after = torch.zeros(1, 9)
    before[0, I["bg_hue"]], after[0, I["bg_hue"]] = 0.95, 0.05
    before[0, I["gaze"]], after[0, I["gaze"]] = 0.95, 0.05
    d = fe.factor_delta(before, after)[0]
    assert d[I["bg_hue"]] == pytest.approx(0.1, abs=1e-6)
    assert d[I["gaze"]] == pytest.approx(-0.9, abs=1e-6)
    # an image whose hue sits at the wrap-around is estimated on the circle
    fb = sample_faces(1, 0, size=16)
    f = {k: v.clone() for k, v in fb.factors.items()}
    f["bg_hue"] = torch.tensor([0.995])
    err = fe.factor_error(fe.estimate_factors(render_faces(f, 16).images), f)
    assert float(err[0, I["bg_hue"]]) < 0.01


def test_factor_changes_of_a_known_edit():
    """A one-factor change made through the renderer is read back as that factor's change, and only it."""
    fb = sample_faces(4, 11, size=32)
    f2 = {k: v.clone() for k, v in fb.factors.items()}
    f2["hair_colour"] = (f2["hair_colour"] + 0.3) % 1.0
    ch = fe.factor_changes(fb.images, render_faces(f2, 32).images)
    true = fe.factor_delta(fb.factors, f2)
    assert torch.allclose(ch, true, atol=0.02)
    th = fe.thresholds_for(32)
    assert bool(fe.local_edit_success(ch, "hair", th).all())


@pytest.mark.skipif(not (ASSETS / "faces16" / "card.json").exists(), reason="course model faces16 not shipped")
def test_estimator_on_model_reconstructions():
    """On the faces16 model's DDIM reconstructions (blurry), known injected changes are recovered and
    barely leak into other factors (the measured numbers that set the thresholds)."""
    from lococourse.models.registry import load_model

    model = load_model("faces16")
    faces = fe.prepare_faces(model, [1000, 1001, 1002], 0.6)
    assert float((faces.recon - faces.x0).pow(2).mean().sqrt()) < 0.2  # a reconstruction, not noise
    th = fe.calibrate_thresholds(faces.recon)
    acc = th.accuracy
    for name in FACTOR_NAMES:  # mean |Δθ̂_i − δ_i| of an injected ±0.2 change
        assert acc[name] < (0.2 if name == "mouth_width" else 0.08), (name, acc[name])
    assert max(th.noise.values()) < 0.1  # cross-talk into the other factors
    assert bool((th.tau >= 0.05).all())


# ---------------------------------------------------------------------------------------- decisions
def _change(**kw):
    c = torch.zeros(9)
    for k, v in kw.items():
        c[I[k]] = v
    return c


def test_local_edit_success_logic():
    th = 0.05
    assert bool(fe.local_edit_success(_change(eye_size=0.2, gaze=-0.1), "eyes", th))
    assert not bool(fe.local_edit_success(_change(eye_size=0.2, skin_tone=0.06), "eyes", th))  # leaks into the face
    assert not bool(fe.local_edit_success(_change(eye_size=0.04), "eyes", th))  # below τ: no visible edit
    assert not bool(fe.local_edit_success(_change(mouth_curve=0.3), "eyes", th))  # the wrong part
    per_factor = {n: 0.05 for n in FACTOR_NAMES} | {"skin_tone": 0.1}
    assert bool(fe.local_edit_success(_change(eye_size=0.2, skin_tone=0.06), "eyes", per_factor))
    batch = torch.stack([_change(hair_colour=0.2), _change(hair_colour=0.2, bg_hue=0.3)])
    assert fe.local_edit_success(batch, "hair", th).tolist() == [True, False]
    assert fe.changed_parts(batch, th).tolist() == [[False, True, False, False, False], [True, True, False, False, False]]
    with pytest.raises(ValueError, match="part must be one of"):
        fe.local_edit_success(batch, "nose", th)
    with pytest.raises(ValueError, match="thresholds"):
        fe.changed(batch, [0.1, 0.2])


def test_transfer_success_logic():
    th = 0.05
    src = _change(hair_colour=0.3, hair_length=-0.1)
    assert bool(fe.transfer_success(src, _change(hair_colour=0.1, hair_length=-0.2), th))
    assert not bool(fe.transfer_success(src, _change(hair_colour=-0.1, hair_length=-0.2), th))  # sign flipped
    assert not bool(fe.transfer_success(src, _change(hair_colour=0.1), th))  # one factor missing
    assert not bool(fe.transfer_success(src, _change(hair_colour=0.3, hair_length=-0.1, gaze=0.2), th))  # extra
    assert not bool(fe.transfer_success(_change(), _change(), th))  # nothing changed: nothing transferred
    # the looser reading: only the source's main factor (largest |Δ|/τ) must change the same way
    assert bool(fe.transfer_main_success(src, _change(hair_colour=0.3, gaze=0.2), th))
    assert not bool(fe.transfer_main_success(src, _change(hair_colour=-0.3), th))
    assert not bool(fe.transfer_main_success(src, _change(hair_length=-0.3), th))
    assert not bool(fe.transfer_main_success(_change(), _change(), th))
    both = fe.transfer_main_success(src, torch.stack([_change(hair_colour=0.1), _change(hair_colour=0.01)]), th)
    assert both.tolist() == [True, False]


def test_linearity_and_composability_in_factor_space():
    lams = [-4.0, -2.0, 2.0, 4.0]
    ch = torch.stack([_change(mouth_curve=0.05 * lam, bg_hue=0.001 * lam ** 2) for lam in lams])
    r2, name = fe.factor_linearity(lams, ch)
    assert name == "mouth_curve" and r2 == pytest.approx(1.0)
    r2q, _ = fe.factor_linearity(lams, ch, "bg_hue")
    assert r2q < 0.1
    a, b = _change(hair_colour=0.2), _change(eye_size=-0.1)
    assert fe.factor_composability(a + b, [a, b]) == pytest.approx(0.0)
    assert fe.factor_composability(a, [a, b]) == pytest.approx(0.1 / math.hypot(0.2, 0.1), rel=1e-5)


def test_calibrated_thresholds_on_clean_faces():
    """On exact renderings the estimator's cross-talk is tiny, so τ sits at its floor."""
    th = fe.calibrate_thresholds(sample_faces(2, 5, size=16).images, sigma=0.0)
    assert torch.allclose(th.tau, torch.full((9,), 0.05))
    assert max(th.accuracy.values()) < 0.03
    assert "quantile" in th.how


# ---------------------------------------------------------------------------------------- Jacobians and directions
class LinearPMP:
    """f(x) = A x on (3, 4, 4) images."""

    def __init__(self, A):
        self.A = A

    def __call__(self, x):
        return (x.reshape(x.shape[0], -1) @ self.A.T).reshape(x.shape)


def test_jacobian_views_match_dense_matrices():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(48, 48, generator=g, dtype=torch.float64)
    x = torch.randn(3, 4, 4, generator=g, dtype=torch.float64)
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[1:3, :2] = True
    m = mask.expand(3, 4, 4).reshape(-1).double()
    ab = 0.3
    views = JacobianViews(LinearPMP(A), x, ab)
    V = torch.randn(5, 3, 4, 4, generator=g, dtype=torch.float64)
    U = torch.randn(5, 3, 4, 4, generator=g, dtype=torch.float64)
    Jeps = (torch.eye(48, dtype=torch.float64) - math.sqrt(ab) * A) / math.sqrt(1 - ab)
    for view, M in ((views.view(), A), (views.view(mask), m[:, None] * A), (views.view(~mask), (1 - m)[:, None] * A),
                    (views.view(eps=True), Jeps), (views.view(mask, eps=True), m[:, None] * Jeps)):
        assert torch.allclose(view.mv(V).reshape(5, -1), V.reshape(5, -1) @ M.T, atol=1e-10)
        assert torch.allclose(view.rmv(U).reshape(5, -1), U.reshape(5, -1) @ M, atol=1e-10)
    top = power_method(views.view(mask), k=3, tol=1e-12, max_iter=3000)
    S = np.linalg.svd((m[:, None] * A).numpy(), compute_uv=False)
    assert np.allclose(top.S.numpy(), S[:3], rtol=1e-8)


@pytest.fixture(scope="module")
def molrg_faces():
    """An exact MoLRG on face-sized images (3, 16, 16): a cheap, exact stand-in for a faces model."""
    model = MoLRG.random((3, 16, 16), [6, 6], seed=0)
    return model, fe.prepare_faces(model, [0, 1], 0.6, estimate=False)


class LinearModel:
    """A "model" whose PMP is f(x) = A x at every t: every direction has a closed form (numpy SVD)."""

    def __init__(self, A):
        self.A = A

    def pmp(self, t):
        return LinearPMP(self.A)


def test_face_directions_match_closed_forms():
    size, r, rn = 8, 3, 4
    g = torch.Generator().manual_seed(3)
    A = torch.randn(3 * size * size, 3 * size * size, generator=g, dtype=torch.float64)
    fb = sample_faces(1, 4, size=size)
    x_t = torch.randn(1, 3, size, size, generator=g, dtype=torch.float64)
    ab = 0.2
    faces = fe.FaceSet([4], fb.images, fb.masks, torch.zeros(1, 9), x_t, 0.5, ab, fb.images, None)
    parts = ["hair", "eyes"]
    closed_form = ("loco", "no_projection", "pmp_unmasked", "eps_unmasked")  # the sampler methods need an ε-model
    fd = fe.face_directions(LinearModel(A), faces, 0, methods=closed_form, parts=parts, r=r, r_null=rn, tol=1e-11,
                            max_iter=3000)
    An = A.numpy()
    Aeps = (np.eye(len(An)) - math.sqrt(ab) * An) / math.sqrt(1 - ab)
    for part in parts:
        m = fb.masks[part][0].expand(3, size, size).reshape(-1).numpy()
        v = np.linalg.svd(An[m])[2][0]  # Algorithm 1 in closed form (as in tests/test_loco.py)
        assert abs(float(v @ fd.directions[("no_projection", part)].v.reshape(-1).numpy())) == pytest.approx(1, abs=1e-7)
        Vbar = np.linalg.svd(An[~m])[2][:rn].T
        vp = v - Vbar @ (Vbar.T @ v)
        vp /= np.linalg.norm(vp)
        assert abs(float(vp @ fd.directions[("loco", part)].v.reshape(-1).numpy())) == pytest.approx(1, abs=1e-7)
        for method, M in (("pmp_unmasked", An), ("eps_unmasked", Aeps)):  # the top-r singular vector most inside Ω
            U, _, Vh = np.linalg.svd(M)
            k = int(np.argmax([(U[m, i] ** 2).sum() for i in range(r)]))
            d = fd.directions[(method, part)]
            assert d.index == k
            assert abs(float(Vh[k] @ d.v.reshape(-1).numpy())) == pytest.approx(1, abs=1e-7)
        assert fd.learning_seconds("loco", part) >= fd.learning_seconds("no_projection", part) > 0
    assert fd.directions[("loco", parts[0])].extra["part"] == parts[0]


def test_sampler_methods_need_an_eps_model():
    """A model with only a PMP cannot run the sampler methods: a clear error before any linearisation."""
    fb = sample_faces(1, 4, size=8)
    faces = fe.FaceSet([4], fb.images, fb.masks, torch.zeros(1, 9), torch.zeros(1, 3, 8, 8), 0.5, 0.2, fb.images, None)
    with pytest.raises(TypeError, match="loco_sampler.*eps_model"):
        fe.face_directions(LinearModel(torch.eye(192)), faces, 0, methods=["loco", "loco_sampler"], parts=["hair"])


def test_eps_view_matches_the_eps_model(molrg_faces):
    """∂ε/∂x_t from the shared linearisation equals autograd through the exact ε-model."""
    model, faces = molrg_faces
    x = faces.x_t[0].double()
    views = JacobianViews(model.pmp(faces.t), x, faces.alpha_bar)
    v = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    _, ref = torch.autograd.functional.jvp(lambda z: model.eps(z, faces.t), (x,), (v[0],))
    assert torch.allclose(views.view(eps=True).mv(v)[0], ref, atol=1e-6)


def test_studies_run_end_to_end(molrg_faces):
    """The notebook studies on the exact MoLRG (mechanics only: its images are not faces)."""
    model, _ = molrg_faces
    e = fe.edit_face(model, 0, "hair", strength=2.0, r=3, r_null=2, max_iter=20)
    assert e.edited.shape == (3, 16, 16) and e.changes.shape == (9,)
    assert set(e.metrics) == {"leakage", "psnr_outside_db", "ssim_outside"}
    assert isinstance(e.summary(), str)
    lin = fe.linearity_study(model, 0, "hair", [-2.0, 1.0, 2.0], r=3, r_null=2, max_iter=20)
    assert lin.edited.shape == (3, 3, 16, 16) and 0 <= lin.pixel_r2 <= 1
    comp = fe.composition_study(model, 0, ["hair", "face"], [2.0, 2.0], r=3, r_null=2, max_iter=20)
    assert comp.pixel_composability >= 0
    tr = fe.transfer_study(model, 0, [1, 2], "hair", strength=2.0, r=3, r_null=2, max_iter=20)
    assert tr.success.shape == tr.main_success.shape == (2, 2) and 0 <= tr.rate <= tr.main_rate <= 1
    rs = fe.r_null_study(model, 0, "hair", [0, 2, 4], strength=2.0, r=3, max_iter=20)
    assert rs.values == [0, 2, 4] and len(rs.leakage) == 3
    from lococourse.course import viz_edit

    for fig in (viz_edit.plot_edit(e), viz_edit.plot_linearity(lin), viz_edit.plot_composition(comp),
                viz_edit.plot_transfer(tr), viz_edit.plot_sweep(rs)):
        assert isinstance(fig, Figure)
    w = viz_edit.edit_widget(model, seed=0, part="hair", strength=2.0, r_null=2)
    assert isinstance(w.result, Figure)
    w = viz_edit.transfer_widget(model, source_seed=0, target_seed=1, part="hair", strength=2.0)
    assert isinstance(w.result, Figure) and "face 0, added to face 1" in w.result._suptitle.get_text()
    with pytest.raises(ValueError, match="part must be one of"):
        viz_edit.transfer_view(model, 0, 1, part="nose")


def test_bad_input():
    with pytest.raises(ValueError, match=r"\(n, 3, S, S\)"):
        fe.estimate_factors(torch.zeros(2, 1, 16, 16))
    with pytest.raises(ValueError, match="finite"):
        fe.estimate_factors(torch.full((1, 3, 16, 16), float("nan")))
    with pytest.raises(ValueError, match="same shape"):
        fe.factor_changes(torch.zeros(2, 3, 16, 16), torch.zeros(3, 3, 16, 16))
    with pytest.raises(ValueError, match="9 columns"):
        fe.factor_delta(torch.zeros(2, 8), torch.zeros(2, 8))
    model = MoLRG.random((1, 8, 8), [2], seed=0)
    with pytest.raises(ValueError, match=r"\(3, S, S\)"):
        fe.prepare_faces(model, [0])
    face_model = MoLRG.random((3, 16, 16), [4], seed=0)
    with pytest.raises(ValueError, match="strength"):
        fe.edit_face(face_model, 0, "hair", strength=float("inf"))
    with pytest.raises(ValueError, match="unknown methods"):
        fe.face_directions(face_model, fe.prepare_faces(face_model, [0], estimate=False), 0, methods=["sega"])


def test_method_study_is_algorithm_1_at_each_strength(molrg_faces):
    """method_study's directions are find_direction's with each method's options, its edits are DDIM(x_t + λv, 0),
    and its upper bound is the face re-rendered with one factor moved, inverted and resampled."""
    from lococourse.editing.loco import find_direction, linearize

    model, _ = molrg_faces
    methods = ("loco", "loco_band")
    st = fe.method_study(model, 0, "hair", methods, strength=2.0, r=3, r_null=2, max_iter=20)
    faces = fe.prepare_faces(model, [0], 0.6, estimate=False)
    views = linearize(model.pmp(faces.t), faces.x_t[0])
    for m in methods:
        d = find_direction(views, None, faces.masks["hair"][0], r=3, r_null=2, tol=1e-3, max_iter=20,
                           **fe.METHOD_OPTIONS[m])
        v = st.edits[m].direction.v
        assert abs(float((d.v.reshape(-1) @ v.reshape(-1)).double())) == pytest.approx(1, abs=1e-6)
        ref = fe.sample_edits(model, (faces.x_t[0] + 2.0 * v).unsqueeze(0), faces.t)[0]
        assert torch.allclose(ref, st.edits[m].edited, atol=1e-6) and st.edits[m].strength == 2.0
    assert st.strength_mode == "fixed" and len(st.true_meta) == len(st.true_local) == len(st.true_edits) > 0
    name, delta = st.true_meta[0]
    theta = faces.factors[:1].clone()
    j = fe.FACTOR_NAMES.index(name)
    theta[0, j] = (theta[0, j] + delta) % 1.0 if name in fe.CIRCULAR else theta[0, j] + delta
    assert torch.allclose(fe.resample_factors(model, faces.t, theta)[0], st.true_edits[0], atol=1e-6)
    # λ by target: each edit at the λ its sweep chose, recorded in its direction
    tg = fe.method_study(model, 0, "hair", ("loco",), r=3, r_null=2, max_iter=20, grid_points=3)
    e = tg.edits["loco"]
    assert tg.strength_mode == "target" and e.strength == e.direction.extra["strength"]["strength"] > 0
    with pytest.raises(ValueError, match="strength"):
        fe.method_study(model, 0, "hair", ("loco",), strength=float("nan"))
    from lococourse.course import viz_edit

    fig = viz_edit.plot_method_study(st)
    titles = [a.get_title() for a in fig.axes]
    assert isinstance(fig, Figure) and sum(t.startswith("true edit:") for t in titles) == min(3, len(st.true_meta))
    assert sum(t.endswith(": λ = 0") for t in titles) == len(methods)


@pytest.mark.parametrize("steps", [2, 5])
def test_sampler_methods_project_off_the_chosen_sampler(molrg_faces, steps):
    """``sampler_steps`` picks the sampler whose complement the *_sampler methods project off: v_p is the
    no-projection v minus its part in the top-r' right singular vectors of that sampler's dense Jacobian on Ω^c
    (autograd jacobian of ``sampler_map(model, t, steps)`` and numpy SVD)."""
    from lococourse.editing.loco import sampler_map

    model, faces = molrg_faces
    rn = 2
    fd = fe.face_directions(model, faces, 0, methods=["no_projection", "loco_sampler"], parts=["hair"], r=2,
                            r_null=rn, tol=1e-12, max_iter=3000, sampler_steps=steps)
    x = faces.x_t[0].double()
    J = torch.autograd.functional.jacobian(sampler_map(model, faces.t, steps), x).reshape(x.numel(), x.numel())
    out = ~faces.masks["hair"][0].expand(3, 16, 16).reshape(-1).numpy()
    Vbar = np.linalg.svd(J.numpy()[out])[2][:rn].T
    v = fd.directions[("no_projection", "hair")].v.reshape(-1).double().numpy()
    vp = v - Vbar @ (Vbar.T @ v)
    got = fd.directions[("loco_sampler", "hair")].v.reshape(-1).double().numpy()
    assert abs(float(got @ vp / np.linalg.norm(vp))) == pytest.approx(1, abs=1e-6)
    assert np.abs(Vbar.T @ got).max() < 1e-6


# ---------------------------------------------------------------------------------------- λ by a target in units of τ
def test_part_response_in_units_of_tau():
    """max over the part's factors of |Δθ_i| (factor units) or |Δθ_i| / τ_i (numpy oracle)."""
    g = np.random.default_rng(0)
    ch = g.normal(size=(4, 9))
    tau = g.uniform(0.02, 0.3, size=9)
    th = fe.Thresholds(torch.tensor(tau))
    for part, names in (("mouth", ["mouth_curve", "mouth_width"]), ("background", ["bg_hue"])):
        idx = [I[n] for n in names]
        assert np.allclose(fe.part_response(torch.tensor(ch), part).numpy(), np.abs(ch[:, idx]).max(1))
        assert np.allclose(fe.part_response(torch.tensor(ch), part, th).numpy(), (np.abs(ch[:, idx]) / tau[idx]).max(1))
    with pytest.raises(TypeError, match="Thresholds"):
        fe.part_response(torch.tensor(ch), "mouth", [0.05] * 9)


def test_target_in_units_of_tau_scales_the_target(molrg_faces, monkeypatch):
    """With every τ = c, a target of T·τ is the factor-unit target c·T: the same λ, to rounding (the sweep's
    responses are the factor-unit ones divided by c).  With unequal τ the recorded responses are
    max_i |Δθ_i|/τ_i of the factor-unit sweep's own changes; bad targets are refused before any sampling."""
    model, faces = molrg_faces
    fd = fe.face_directions(model, faces, 0, methods=["loco"], parts=["hair", "mouth"], r=3, r_null=2, max_iter=20)
    grid = [0.5, 1.0, 2.0, 4.0, 8.0]
    c, T = 0.04, 2.0
    a = fe.target_strengths(model, faces, 0, dict(fd.directions), grid, target=c * T)
    b = fe.target_strengths(model, faces, 0, dict(fd.directions), grid, target=T,
                            thresholds=fe.Thresholds(torch.full((9,), c)))
    for k in fd.directions:
        assert np.allclose(np.array(b[k].response) * c, a[k].response, rtol=1e-5)
        assert b[k].strength == pytest.approx(a[k].strength, rel=1e-5) and b[k].reached == a[k].reached
    assert fd.directions[("loco", "hair")].extra["strength"]["unit"] == "tau"
    tau = torch.linspace(0.02, 0.2, 9, dtype=torch.float64)
    u = fe.target_strengths(model, faces, 0, dict(fd.directions), grid, target=T, thresholds=fe.Thresholds(tau))
    names = {"hair": ["hair_colour", "hair_length"], "mouth": ["mouth_curve", "mouth_width"]}
    x = torch.stack([faces.x_t[0] + lam * fd.directions[("loco", "mouth")].v for lam in grid])
    ch = fe.factor_changes(faces.recon[[0] * len(grid)], fe.sample_edits(model, x, faces.t, steps=faces.sample_steps))
    idx = [I[n] for n in names["mouth"]]
    assert np.allclose(u[("loco", "mouth")].response, (ch[:, idx].abs() / tau[idx]).max(1).values.numpy(), rtol=1e-4)
    monkeypatch.setattr(fe.faces, "sample_edits", lambda *a, **k: pytest.fail("no sampling before the checks"))
    for bad in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="target change must be a positive finite number"):
            fe.target_strengths(model, faces, 0, dict(fd.directions), grid, target=bad,
                                thresholds=fe.Thresholds(tau))
    with pytest.raises(TypeError, match="Thresholds"):
        fe.target_strengths(model, faces, 0, dict(fd.directions), grid, thresholds=tau)
