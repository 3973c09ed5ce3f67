"""Exercise checkers (lococourse.course.exercises): right answers accepted, wrong ones get a hint, None never raises.

The right answers here come from independent oracles: diffusers' DDPMScheduler for ᾱ (the paper's
linear schedule, t = (k + 1)/1000), Lemma 1 worked by hand in numpy, Theorem 1's Σ r_k, eq. 10 by
hand and the Taylor order of eq. 8; for notebooks 04–08 the MoLRG posterior by Gaussian conditioning in
numpy (no Lemma 1, 2 or 3), Jacobians by finite differences, the model cards read as JSON, and the
metrics, the projection, CFG and Algorithm 4 written out in numpy.
"""
from __future__ import annotations

import json
import math
from functools import lru_cache

import numpy as np
import pytest
import torch

from lococourse.course import exercises as ex


def _alpha_bar(t: float) -> float:
    """ᾱ(t) from diffusers' scheduler (linear β from 1e-4 to 0.02, 1000 steps)."""
    from diffusers import DDPMScheduler

    s = DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear")
    return float(s.alphas_cumprod[round(t * 1000) - 1])


def _lemma1_by_hand(t: float, x: tuple[float, float]) -> float:
    """Two lines (x- and y-axis), π = (1/2, 1/2): √ᾱ Σ_k w_k P_k x, first coordinate, in numpy."""
    ab = _alpha_bar(t)
    c = ab / (1 - ab)
    logits = np.array([c / 2 * x[0] ** 2, c / 2 * x[1] ** 2])  # equal ranks and π: no correction term
    w = np.exp(logits - logits.max())
    w /= w.sum()
    return math.sqrt(ab) * w[0] * x[0]


from lococourse.models.registry import ASSETS  # noqa: E402

_FACTORS: dict = {}


def _class_factors(bases: list[np.ndarray], ab: float) -> list:
    """Per class k: P_k = M_kM_kᵀ, the Cholesky factor L_k of Cov[x_t | k] = ᾱP_k + (1−ᾱ)I and log det — they do
    not depend on x_t, so one O(d³) factorisation per class serves every call (cached on the bases' bytes)."""
    key = (tuple(hash(M.tobytes()) for M in bases), float(ab))
    if key not in _FACTORS:
        out = []
        for M in bases:
            P = M @ M.T
            L = np.linalg.cholesky(ab * P + (1 - ab) * np.eye(len(P)))
            out.append((P, L, 2 * np.log(np.diag(L)).sum()))
        _FACTORS[key] = out
    return _FACTORS[key]


def _solve(L: np.ndarray, b: np.ndarray) -> np.ndarray:
    """S⁻¹b from S = LLᵀ (two triangular solves)."""
    from scipy.linalg import solve_triangular

    return solve_triangular(L.T, solve_triangular(L, b, lower=True), lower=False)


def _gaussian_posterior(x: np.ndarray, bases: list[np.ndarray], ab: float, cov: bool = True):
    """MoLRG with π_k = 1/K, by Gaussian conditioning: x₀|k ~ N(0, M_kM_kᵀ), x_t = √ᾱ x₀ + √(1−ᾱ) ε.
    Returns the class weights p(k|x_t) and each class's E[x₀|x_t, k] and Cov[x₀|x_t, k] (None unless ``cov``)."""
    logp, means, covs = [], [], []
    for P, L, logdet in _class_factors(bases, ab):
        Sx = _solve(L, x)  # Cov[x_t | k]⁻¹ x_t
        logp.append(-0.5 * x @ Sx - 0.5 * logdet)
        C = math.sqrt(ab) * P  # Cov[x₀, x_t | k]
        means.append(C @ Sx)
        covs.append(P - C @ _solve(L, C.T) if cov else None)
    logp = np.array(logp)
    w = np.exp(logp - logp.max())
    return w / w.sum(), means, covs


def _posterior_mean_np(x, bases, ab) -> np.ndarray:
    w, means, _ = _gaussian_posterior(x, bases, ab, cov=False)
    return sum(wk * m for wk, m in zip(w, means))


def _posterior_cov_np(x, bases, ab) -> np.ndarray:
    """Law of total covariance over the classes."""
    w, means, covs = _gaussian_posterior(x, bases, ab)
    mean = sum(wk * m for wk, m in zip(w, means))
    return sum(wk * (c + np.outer(m, m)) for wk, m, c in zip(w, means, covs)) - np.outer(mean, mean)


def _fd_jacobian(f, x: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """Central finite differences, column by column."""
    cols = []
    for i in range(len(x)):
        e = np.zeros_like(x)
        e[i] = h
        cols.append((f(x + e) - f(x - e)) / (2 * h))
    return np.stack(cols, 1)


def _eq10_by_hand(S: np.ndarray, eta: float = 0.99) -> int:
    energy = np.cumsum(np.sort(S)[::-1] ** 2) / np.sum(S ** 2)
    return int(np.argmax(energy > eta ** 2)) + 1


def _d48_bases() -> list[np.ndarray]:
    from safetensors.numpy import load_file

    t = load_file(str(ASSETS / "molrg_d48" / "molrg_bases.safetensors"))
    return [t["M_0"], t["M_1"]]


def _cov_trace_oracle() -> float:
    x = ex.molrg_d48_point(0.5).numpy().reshape(-1)
    return float(np.trace(_posterior_cov_np(x, _d48_bases(), _alpha_bar(0.5))))


def _card_rank_oracle() -> float:
    card = json.loads((ASSETS / "faces16" / "card.json").read_text())["rank_ratio"]
    i = int(np.argmin(card["rank_ratio"]))
    assert math.isclose(card["rank_ratio"][i] * card["d"], card["numerical_rank"][i])
    return card["rank_ratio"][i] * card["d"]


def _linearity_cosine_oracle() -> float:
    model, x, dx = ex.linearity_problem()
    bases, ab = [m.numpy() for m in model.bases], _alpha_bar(ex.LINEARITY_T)
    f = lambda y: _posterior_mean_np(y, bases, ab)  # noqa: E731
    x, u = x.numpy(), (dx / dx.norm()).numpy()
    h = 1e-6
    Ju = (f(x + h * u) - f(x - h * u)) / (2 * h)
    out, lin = f(x + ex.LINEARITY_LAMBDA * u), f(x) + ex.LINEARITY_LAMBDA * Ju
    return float(out @ lin / (np.linalg.norm(out) * np.linalg.norm(lin)))


def _projection_oracle() -> float:
    v, V = (a.numpy() for a in ex.projection_problem())
    return float(np.linalg.norm(v - V @ (V.T @ v)))


def _composability_oracle() -> float:
    ref, e1, e2, comp = (z.numpy() for z in ex.composition_problem())
    d1, d2, d12 = e1 - ref, e2 - ref, comp - ref
    return float(np.linalg.norm(d12 - d1 - d2) / np.linalg.norm(d1 + d2))


def _guided_x0_oracle() -> float:
    ab = _alpha_bar(ex.CFG_T)
    eps = ex.CFG_EPS_UNCOND + ex.CFG_SCALE * (ex.CFG_EPS_COND - ex.CFG_EPS_UNCOND)
    return (ex.CFG_X - math.sqrt(1 - ab) * eps) / math.sqrt(ab)


def _text_direction_oracle() -> float:
    p = ex.text_problem()
    with torch.no_grad():
        y_o = p.f_o(p.x_t[None]).numpy().reshape(-1)
        y_e = p.f_e(p.x_t[None]).numpy().reshape(-1)
    d = (y_e - y_o) * p.mask.numpy().reshape(-1)
    v = p.J_e.numpy().T @ d
    return float(v[0] / np.linalg.norm(v))


# ---------------------------------------------------------------------------------------- oracles of the ▶ exercises
def _weight_gap_peak_oracle() -> float:
    """01-1: the same points as lab.weight_gap_vs_t (lab.noisy_samples, seed 0), both weight rules in numpy:
    Bayes by Gaussian conditioning, the printed rule by its formula; the t of the largest mean total variation."""
    from lococourse.course import lab

    ranks, d = ex.GAP_RANKS, sum(ex.GAP_RANKS)
    eye = np.eye(d)
    bases = [eye[:, :ranks[0]], eye[:, ranks[0]:]]
    tvs = []
    for t in ex.gap_times().tolist():
        ab = _alpha_bar(t)
        xs = lab.noisy_samples(lab.coordinate_molrg(list(ranks)), t, n=ex.GAP_POINTS, seed=0).x_t.numpy()  # (n, d)
        # Bayes: log p(x_t | k) = −½ x_tᵀ Cov[x_t | k]⁻¹ x_t − ½ log det, all n points in one solve per class
        logp = np.stack([-0.5 * np.sum(xs * _solve(L, xs.T).T, 1) - 0.5 * logdet
                         for _, L, logdet in _class_factors(bases, ab)], 1)  # (n, K)
        wb = np.exp(logp - logp.max(1, keepdims=True))
        wb /= wb.sum(1, keepdims=True)
        logits = np.stack([ab / (2 * (1 - ab)) * np.sum((xs @ M) ** 2, 1) for M in bases], 1)  # the printed rule
        wp = np.exp(logits - logits.max(1, keepdims=True))
        wp /= wp.sum(1, keepdims=True)
        tvs.append(float((0.5 * np.abs(wb - wp).sum(1)).mean()))
    return float(ex.gap_times()[int(np.argmax(tvs))])


def _power_sigma_oracle() -> float:
    """02-1: σ₁ of the Jacobian of Lemma 1 (numpy, Gaussian conditioning) by central finite differences, numpy SVD."""
    model, x = ex.power_model(), ex.power_point().numpy().reshape(-1)
    bases, ab = [m.numpy() for m in model.bases], _alpha_bar(ex.POWER_T)
    J = _fd_jacobian(lambda y: _posterior_mean_np(y, bases, ab), x)
    return float(np.linalg.svd(J, compute_uv=False)[0])


def _linearity_error_oracle() -> float:
    """03-1: the same 4 points and direction as lab.linearity_vs_t; f by numpy Gaussian conditioning, JΔx by a
    central finite difference, error / ‖f(x)‖ averaged over the points."""
    from lococourse.course import lab

    model = ex.linearity_model()
    bases, ab, lam = [m.numpy() for m in model.bases], _alpha_bar(ex.LIN_T), ex.LIN_LAMBDA
    f = lambda y: _posterior_mean_np(y, bases, ab)  # noqa: E731
    xs = lab.noisy_samples(model, ex.LIN_T, n=4, seed=0).x_t.numpy().reshape(4, -1)
    dx = lab.unit_direction(model, "in_subspace", 1).numpy().reshape(-1)
    h, errs = 1e-5, []
    for x in xs:
        Jdx = (f(x + h * dx) - f(x - h * dx)) / (2 * h)
        errs.append(np.linalg.norm(f(x + lam * dx) - f(x) - lam * Jdx) / np.linalg.norm(f(x)))
    return float(np.mean(errs))


def _learned_rank_oracle() -> float:
    """04-2: the learned UNet's Jacobian by torch.autograd.functional.jacobian (not lococourse.jacobian) at the
    same 4 points, singular values by numpy, eq. 10 by hand."""
    from lococourse.course import compare, lab

    pair = compare.learned_vs_exact(ex.D48)
    f = pair.learned.pmp(ex.LEARNED_T)
    xs = lab.noisy_samples(pair.exact, float(f.t), n=4, seed=0).x_t.to(torch.float32)
    ranks = []
    for x in xs:
        J = torch.autograd.functional.jacobian(lambda z: f(z.unsqueeze(0))[0], x).reshape(pair.d, pair.d)
        ranks.append(_eq10_by_hand(np.linalg.svd(J.double().numpy(), compute_uv=False)))
    return float(np.mean(ranks))


def _faces16_rank_oracle() -> int:
    """05-3: the trajectory of diffusers' DDIMScheduler (100 leading steps) from the same seeded noise, the Jacobian by
    torch.autograd.functional.jacobian, numpy SVD, eq. 10 by hand."""
    from diffusers import DDIMScheduler

    from lococourse.models.registry import load_model

    model = load_model("faces16")
    eps = model.eps_model()
    sched = DDIMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                          clip_sample=False, set_alpha_to_one=True, steps_offset=0)
    sched.set_timesteps(100)
    x = torch.randn((2, *model.shape), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for k in sched.timesteps.tolist():
            if k == 400:  # the grid level of t = 0.401 (timestep 400)
                break
            x = sched.step(eps(x, k), k, x).prev_sample
    f = model.pmp(0.401)
    J = torch.autograd.functional.jacobian(lambda z: f(z.unsqueeze(0))[0], x[0]).reshape(768, 768)
    return _eq10_by_hand(np.linalg.svd(J.double().numpy(), compute_uv=False))


def _reconstruction_psnr_oracle() -> float:
    """06-1: diffusers' DDIMInverseScheduler up to t = 0.8 and DDIMScheduler back, PSNR in numpy."""
    from diffusers import DDIMInverseScheduler, DDIMScheduler

    from lococourse.data.faces import sample_faces
    from lococourse.models.registry import load_model

    model = load_model("faces32")
    eps = model.eps_model()
    cfg = dict(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear", clip_sample=False,
               set_alpha_to_one=True, steps_offset=0)
    x0 = sample_faces(1, ex.RECON_SEED, size=32).images
    inv = DDIMInverseScheduler(**cfg)
    inv.set_timesteps(100)
    x = x0.clone()
    with torch.no_grad():
        for k in inv.timesteps.tolist():
            if k > 800:
                break
            x = inv.step(eps(x, k), k, x).prev_sample
        fwd = DDIMScheduler(**cfg)
        fwd.set_timesteps(100)
        for k in fwd.timesteps.tolist():
            if k <= 800:
                x = fwd.step(eps(x, k), k, x).prev_sample
    mse = float(((x - x0).double() ** 2).mean())
    return 10 * math.log10(4.0 / mse)


def _edit_leakage_oracle() -> float:
    """06-3: the edit (lococourse.eval's LOCO edit of the mouth), its leakage recomputed from its images in numpy."""
    from lococourse.eval.faces import edit_face
    from lococourse.models.registry import load_model

    e = edit_face(load_model("faces32"), ex.EDIT_SEED, ex.EDIT_PART, t=ex.EDIT_T, strength=ex.EDIT_LAMBDA, max_iter=20)
    d, m = (e.edited - e.reconstruction).double().numpy(), e.mask.numpy()
    return float(np.sqrt(np.mean(d[:, ~m] ** 2)) / np.sqrt(np.mean(d[:, m] ** 2)))


def _transfer_oracle() -> float:
    """07-3: the source's direction added to face 8's x_t and sampled here (DDIM from x_t − 2v, not apply_face_edit);
    the change is estimate(edited) − estimate(reconstruction) for eye_size."""
    from lococourse.data.faces import FACTOR_NAMES
    from lococourse.eval.faces import find_face_direction, prepare_faces, sample_edits
    from lococourse.eval.factors import estimate_factors, factor_delta
    from lococourse.models.registry import load_model

    model = load_model("faces32")
    _, d = find_face_direction(model, ex.TRANSFER_SOURCE, "eyes", t=0.6, max_iter=20)
    target = prepare_faces(model, [ex.TRANSFER_TARGET], 0.6)
    edited = sample_edits(model, (target.x_t[0] + ex.TRANSFER_LAMBDA * d.v).unsqueeze(0), target.t)
    return float(factor_delta(target.recon_fit.theta, estimate_factors(edited).theta)[0, FACTOR_NAMES.index("eye_size")])


def _hat_oracle() -> float:
    """08-3: d = (f^e − f^o)(x_t) masked, with x_t sampled by t_loco_text's own sampler, the PMPs called directly."""
    from lococourse.editing import tloco
    from lococourse.models.tiny import tiny_pipeline

    m = tiny_pipeline("if", seed=0).with_prompts(ex.HAT_SOURCE, ex.HAT_PROMPT)
    res = tloco.t_loco_text(m, ex.hat_mask(m.out_shape), None, (0.0,), seed=0, r_null=0, max_iter=3)
    with torch.no_grad():
        x = res.x_t.unsqueeze(0)
        d = (m.pmp_edit(res.t)(x) - m.pmp_source(res.t)(x))[0]
    mask = ex.hat_mask(m.out_shape)
    return float(d[:, mask].double().norm())


@lru_cache(maxsize=None)
def _right_answers() -> dict[str, float]:
    ab05 = _alpha_bar(0.5)
    return {
        "01-1": _weight_gap_peak_oracle(),
        "01-2": _lemma1_by_hand(0.3, (1.0, 0.0)),
        "02-1": _power_sigma_oracle(),
        "02-2": 3,  # energies 100, 25, 9, 1, .25, .01: cumulative .739, .924, .991 > .9801
        "03-1": _linearity_error_oracle(),
        "03-2": ab05 / (1 - ab05),
        "04-1": _cov_trace_oracle(),
        "04-2": _learned_rank_oracle(),
        "05-1": _card_rank_oracle(),
        "05-2": _linearity_cosine_oracle(),
        "05-3": _faces16_rank_oracle(),
        "06-1": _reconstruction_psnr_oracle(),
        "06-2": _projection_oracle(),
        "06-3": _edit_leakage_oracle(),
        "07-1": _composability_oracle(),
        "07-2": float(np.corrcoef(ex.R2_STRENGTHS, ex.R2_CHANGES)[0, 1] ** 2),  # R² of a line with intercept = r²
        "07-3": _transfer_oracle(),
        "08-1": _guided_x0_oracle(),
        "08-2": _text_direction_oracle(),
        "08-3": _hat_oracle(),
    }


# Wrong answers and a phrase of the hint each must produce.
WRONG = {
    # line + plane's peak; the peak height
    "01-1": [(0.14, "line + plane"), (0.2336, "height"), (1.5, "(0, 1]"), (0.6, "weight_gap_vs_t")],
    "01-2": [(0.6296, "weight"), (0.3148, "equal weights"), (0.5814, "shrink factor"), (0.2305, "√ᾱ, not ᾱ"),
             (1.5, "convex combination"), (0.5, "softmax")],
    # σ₁²; σ₂; seed 0's σ₁; t = 0.5's σ₁; √ᾱ
    "02-1": [(0.4083, "σ₁²"), (0.2985, "σ₂"), (0.4899, "seed 0"), (0.1774, "t = 0.5"), (0.4418, "√ᾱ"),
             (-1.0, "positive"), (1.0, "power_method")],
    "02-2": [(5, "squares"), (6, "exact rank"), (2, "not yet exceeded"), (3.5, "whole number"), (4, "cumulative energy")],
    # random Δx; raw error; worst point; t = 0.3 and 0.5
    "03-1": [(0.0210, "random Δx"), (1.4133, "raw error"), (1.9046, "largest of the 4"), (0.4971, "another t"),
             (0.6795, "another t"), (-1.0, "not negative"), (0.3, "linearity_vs_t")],
    "03-2": [(0.0786, "that is ᾱ"), (11.72, "inverted"), (0.292, "square root"), (0.9214, "1 − ᾱ"),
             (-0.1, "positive"), (0.5, "SCHEDULE.alpha_bar")],
    # tr J; tr J·√ᾱ/(1−ᾱ); tr J·(1−ᾱ)/ᾱ; tr J/√ᾱ; tr J·(1−ᾱ); (1−ᾱ)·Σr_k
    "04-1": [(-1.0, "negative"), (1.7659, "tr J itself"), (0.5373, "divided by that factor"), (20.7046, "not ᾱ"),
             (6.2992, "1 − ᾱ"), (1.6271, "1/√ᾱ"), (11.057, "class is known"), (3.0, "reshape it to 48 × 48")],
    # the exact rank; a ratio; the first point; r; out of range
    "04-2": [(11.25, "exact J"), (11.75 / 48, "rank ratio"), (12.0, "first point"), (60, "between 1 and 48"),
             (9.0, "rank_learned")],
    # t of the minimum; the ratio; the 9 factors; ranks at t = 0.7 and 0.9; ×3072 instead of ×768; rounded
    "05-1": [(0.5, "time of the minimum"), (0.0069, "multiply it by d"), (9, "factors of variation"),
             (7.67, "another time"), (82, "another time"), (21.33, "768"), (-1, "positive"), (5, "do not round"),
             (3, "card_rank_ratio")],
    # norm ratio; dx not normalised; cosine of the increments; the angle in radians and degrees
    "05-2": [(1.2999, "norm ratio"), (0.4849, "normalise the direction"), (0.8743, "increments"),
             (0.6239, "angle"), (35.745, "angle"), (1.5, "between −1 and 1"), (0.5, "model.pmp(0.3)")],
    # neighbouring times; a ratio; not whole
    "05-3": [(30, "neighbouring time"), (5, "neighbouring time"), (0.0182, "rank ratio"), (13.5, "whole number"),
             (1000, "between 1 and 768"), (20, "singular_at")],
    # data range 1; x_t; the MSE; t = 0.6
    "06-1": [(32.8344, "data range is 2"), (6.1222, "x_t"), (0.00052067, "mean squared error"), (38.9577, "t = 0.6"),
             (-3.0, "above 0 dB"), (30.0, "inversion_error_vs_t")],
    # ‖V̄ᵀv‖; normalised; ‖v_p‖²; 1 − ‖V̄ᵀv‖; first column only
    "06-2": [(0.5667, "part you remove"), (1.0, "before step 8"), (0.6789, "‖v_p‖²"), (0.4333, "Pythagoras"),
             (0.9444, "all r' = 5 columns"), (1.2, "cannot lengthen"), (-0.1, "not negative"), (0.7, "V̄ᵀv")],
    # inverted; plain norms; against x₀
    "06-3": [(1 / 0.09395, "inside by outside"), (0.8628, "plain norms"), (0.10075, "reconstruction"),
             (-0.1, "not negative"), (0.5, "edit_face")],
    # /‖Δ₁₂‖; /(‖Δ₁‖ + ‖Δ₂‖); images instead of changes; squared; no denominator
    "07-1": [(0.24892, "not by ‖Δ₁₂‖"), (0.19969, "sum of the norms"), (0.44899, "changes from the reference"),
             (0.068434, "squared norms"), (2.0044, "raw gap"), (-0.1, "not negative"), (0.5, "Frobenius")],
    # r; 1 − R²; a line through the origin
    "07-2": [(0.9902, "correlation coefficient"), (0.0194, "unexplained"), (0.9042, "intercept"),
             (1.2, "between 0 and 1"), (0.95, "least squares")],
    # +λ; the source's own change; the gaze
    "07-3": [(-0.5241, "λ = +2"), (0.5784, "source face 3"), (0.0412, "gaze"), (1.5, "[−1, 1]"), (0.0, "apply_face_edit")],
    # ε̃; no guidance; ∅ and c_o swapped; + instead of −; ᾱ for √ᾱ (three ways); no division
    "08-1": [(1.8, "guided ε̃"), (1.1417, "ε(c_o) alone"), (6.2779, "null prompt"), (9.0172, "sign"),
             (-10.9247, "square roots"), (-11.8063, "square roots"), (-3.0626, "square roots"),
             (-0.9278, "divide by √ᾱ"), (0.0, "SCHEDULE.alpha_bar(0.5)")],
    # −v; no mask; J_e d; J_oᵀd; not normalised
    "08-2": [(0.34, "sign"), (-0.0855, "apply the mask"), (0.1283, "transpose"), (-0.4635, "edit PMP f^e"),
             (-0.6018, "normalise v"), (1.5, "between −1 and 1"), (0.0, "first entry")],
    # a glasses prompt; the eyes band; ‖J_eᵀd‖
    "08-3": [(2.0848, "glasses prompt"), (1.6881, "eyes band"), (4.8038, "‖J_eᵀd‖"), (-1.0, "positive"),
             (1.0, "t_loco_text")],
}


def _no_answer_in(message: str, right: float) -> bool:
    """The hint must not give the answer away, in any of the usual roundings."""
    forms = {f"{right:.{k}f}" for k in (2, 3, 4)} | {f"{right:.3g}", repr(right)}
    if float(right).is_integer():
        forms = {f" {int(right)} ", f" {int(right)}.", f"= {int(right)}", f"is {int(right)}"}
    return not any(f in message for f in forms)


def test_every_checker_is_listed_and_documented():
    assert set(ex.EXERCISES) == set(WRONG)
    for key, e in ex.EXERCISES.items():
        assert e.notebook[:2] == key[:2] and e.question and e.check.__doc__


@pytest.mark.parametrize("key", sorted(WRONG))
def test_accepts_the_right_answer(key, capsys):
    right = _right_answers()[key]
    fb = ex.EXERCISES[key].check(right)
    assert fb.ok is True and bool(fb)
    assert "Correct" in capsys.readouterr().out
    # also as a tensor and rounded to the precision the question asks for
    assert ex.EXERCISES[key].check(torch.tensor(right), quiet=True).ok is True
    assert ex.EXERCISES[key].check(round(right, 3), quiet=True).ok is True


@pytest.mark.parametrize("key, wrong, phrase", [(k, w, p) for k, cases in WRONG.items() for w, p in cases])
def test_rejects_a_wrong_answer_with_a_hint(key, wrong, phrase, capsys):
    right = _right_answers()[key]
    fb = ex.EXERCISES[key].check(wrong)
    out = capsys.readouterr().out
    assert fb.ok is False and not bool(fb)
    assert phrase in fb.message, fb.message
    assert fb.message in out
    assert _no_answer_in(fb.message, right), fb.message


@pytest.mark.parametrize("key", sorted(WRONG))
def test_placeholder_none_asks_for_an_answer(key, capsys):
    fb = ex.EXERCISES[key].check(None)
    assert fb.ok is None and not bool(fb)
    assert "write your answer" in capsys.readouterr().out


@pytest.mark.parametrize("bad", ["two", [1, 2], float("nan"), True, torch.ones(3)])
def test_non_numbers_get_a_hint_not_an_exception(bad):
    fb = ex.check_numerical_rank(bad, quiet=True)
    assert fb.ok is False and "should be a whole number" in fb.message


def test_quiet_prints_nothing(capsys):
    ex.check_snr_prefactor(1.0, quiet=True)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("key", sorted(WRONG))
def test_a_string_gets_a_hint_not_an_exception(key):
    fb = ex.EXERCISES[key].check("abc", quiet=True)
    assert fb.ok is False and "should be" in fb.message


def test_problems_are_seeded():
    """The notebook, the checker and these tests must see the same inputs."""
    for make in (ex.linearity_problem, ex.projection_problem, ex.composition_problem):
        a, b = make(), make()
        for u, v in zip(a, b):
            if isinstance(u, torch.Tensor):
                assert torch.equal(u, v)
    p, q = ex.text_problem(), ex.text_problem()
    assert torch.equal(p.x_t, q.x_t) and torch.equal(p.J_e, q.J_e) and torch.equal(p.mask, q.mask)
    assert torch.equal(ex.molrg_d48_point(0.5), ex.molrg_d48_point(0.5))
    assert torch.equal(ex.power_point(), ex.power_point()) and torch.equal(ex.hat_mask((3, 8, 8)), ex.hat_mask((3, 8, 8)))


def test_exercise_inputs_are_what_they_claim():
    # molrg_d48(): the bases shipped with the course model
    for M, N in zip(ex.molrg_d48().bases, _d48_bases()):
        assert np.allclose(M.numpy(), N)
    # projection_problem(): a unit v and an orthonormal V̄
    v, V = ex.projection_problem()
    assert math.isclose(float(v.norm()), 1.0) and torch.allclose(V.T @ V, torch.eye(V.shape[1], dtype=V.dtype))
    # text_problem(): J_o and J_e are the Jacobians of f_o and f_e
    p = ex.text_problem()
    x = p.x_t.numpy().reshape(-1)
    for f, J in ((p.f_o, p.J_o), (p.f_e, p.J_e)):
        g = lambda y: f(torch.from_numpy(y).reshape(1, 1, 4, 4)).numpy().reshape(-1)  # noqa: E731
        assert np.allclose(_fd_jacobian(g, x), J.numpy(), atol=1e-6)


def test_linearity_cosine_follows_local_linearity():
    """05-2's convention (unit Δx; cosine between f(x_t + λΔx) and f(x_t) + λJΔx) is the package's eq. 4."""
    from lococourse.jacobian.linearity import local_linearity

    model, x, dx = ex.linearity_problem()
    lin = local_linearity(model.pmp(ex.LINEARITY_T), x, dx, [ex.LINEARITY_LAMBDA])
    assert math.isclose(float(lin.cosine[0]), _right_answers()["05-2"], abs_tol=1e-6)


def test_solution_gate(monkeypatch, capsys):
    """Run All prints a note and skips a solution; show=True or LOCOCOURSE_SOLUTIONS=1 runs it; bad values are named."""
    monkeypatch.delenv(ex.SOLUTIONS_ENV, raising=False)
    assert ex.solution("02-1") is False
    out = capsys.readouterr().out
    assert "show=True" in out and "02-1" in out
    assert ex.solution("02-1", show=True) is True
    monkeypatch.setenv(ex.SOLUTIONS_ENV, "1")
    assert ex.solution("02-1") is True and capsys.readouterr().out == ""
    monkeypatch.setenv(ex.SOLUTIONS_ENV, "0")
    assert ex.solution("02-1") is False
    monkeypatch.setenv(ex.SOLUTIONS_ENV, "maybe")
    with pytest.raises(ValueError, match="LOCOCOURSE_SOLUTIONS.*'maybe'"):
        ex.solution("02-1")
    with pytest.raises(ValueError, match="unknown exercise '09-9'"):
        ex.solution("09-9", show=True)


def test_every_notebook_has_an_exercise_that_runs_the_method():
    for nb in {e.notebook for e in ex.EXERCISES.values()}:
        assert any(e.question.startswith("▶") for e in ex.EXERCISES.values() if e.notebook == nb), nb
