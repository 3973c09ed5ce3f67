"""Exercises for notebooks 01–08, with self-checks.

Each ``check_*(answer)`` compares a student's number with the right one, which it computes itself from
lococourse (the schedule, :mod:`lococourse.course.lab`, :mod:`lococourse.theory.molrg`, :mod:`lococourse.jacobian`,
:mod:`lococourse.editing.metrics`, :mod:`lococourse.course.compare`, :mod:`lococourse.editing.tloco`, the course-model cards)
— never from the student's code.  It prints and returns a :class:`Feedback`:

* ``answer is None`` (the placeholder in the notebooks): a reminder to write an answer, ``ok = None``;
* a wrong answer: ``ok = False`` and a hint saying what to reconsider (never the answer itself);
* the right answer: ``ok = True`` and a confirmation.

Nothing here raises on a student's answer: a non-number gets a hint too.

| notebook | checker | paper |
|---|---|---|
| 01 | :func:`check_correction_term`, :func:`check_posterior_mean` | Lemma 1 (corrected weights) |
| 02 | :func:`check_jacobian_rank`, :func:`check_numerical_rank` | Theorem 1, eq. 10 |
| 03 | :func:`check_error_slope`, :func:`check_snr_prefactor` | Theorem 1, eq. 8 |
| 04 | :func:`check_posterior_cov_trace`, :func:`check_one_class_rank` | Lemma 3, Theorem 1 |
| 05 | :func:`check_card_rank`, :func:`check_linearity_cosine` | eq. 10, eq. 4 (Figure 2) |
| 06 | :func:`check_projection_norm`, :func:`check_leakage` | Algorithm 1 step 7; leakage |
| 07 | :func:`check_composability`, :func:`check_linearity_r2` | §3.2 composability, linearity |
| 08 | :func:`check_guided_x0`, :func:`check_text_direction` | eqs. 3 and 11; Algorithm 4 |

Every exercise's inputs are fixed here, as constants (``SPECTRUM``, ``CFG_T`` …) or as functions that build
seeded tensors (``projection_problem()`` …), so the notebook, the checker and the tests share them.  The
checkers are cheap: closed forms, small tensors, the shipped model cards; no network runs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import torch

from lococourse.core.schedule import SCHEDULE
from lococourse.course import lab
from lococourse.course.compare import MOLRG_BASES, card_rank_ratio, posterior_cov_trace
from lococourse.data.molrg_images import load_molrg
from lococourse.editing.masks import rectangle
from lococourse.editing.metrics import composability, leakage, linearity_r2
from lococourse.editing.tloco import text_direction
from lococourse.jacobian.subspace import numerical_rank, project_out
from lococourse.models.adapters import GuidedEps
from lococourse.models.registry import get_spec
from lococourse.theory.molrg import MoLRG

__all__ = ["Feedback", "EXERCISES", "Exercise", "check_correction_term", "check_posterior_mean",
           "check_jacobian_rank", "check_numerical_rank", "check_error_slope", "check_snr_prefactor",
           "SPECTRUM", "ETA",
           "check_posterior_cov_trace", "check_one_class_rank", "check_card_rank", "check_linearity_cosine",
           "check_projection_norm", "check_leakage", "check_composability", "check_linearity_r2",
           "check_guided_x0", "check_text_direction",
           "D48", "COV_T", "ONE_CLASS_T", "molrg_d48", "molrg_d48_point", "CARD_MODEL", "LINEARITY_T",
           "LINEARITY_LAMBDA", "linearity_problem", "projection_problem", "leakage_problem", "composition_problem",
           "R2_STRENGTHS", "R2_CHANGES", "CFG_T", "CFG_SCALE", "CFG_X", "CFG_EPS_UNCOND", "CFG_EPS_COND",
           "TextProblem", "text_problem"]

_DT = torch.float64


@dataclass(frozen=True)
class Feedback:
    """The outcome of one check: ``ok`` is True (right), False (wrong) or None (no answer yet)."""

    exercise: str
    ok: bool | None
    message: str

    def __bool__(self) -> bool:
        return self.ok is True

    def __str__(self) -> str:
        return self.message


def _reply(exercise: str, ok: bool | None, message: str, quiet: bool) -> Feedback:
    mark = {True: "✓ Correct", False: "✗ Not yet", None: "… No answer yet"}[ok]
    fb = Feedback(exercise, ok, f"[{exercise}] {mark}: {message}")
    if not quiet:
        print(fb.message)
    return fb


def _as_number(answer) -> float | None:
    """float(answer) for numbers, 0-d tensors/arrays and numeric strings; None when it is not a number."""
    if isinstance(answer, bool):
        return None
    try:
        if isinstance(answer, torch.Tensor):
            if answer.numel() != 1:
                return None
            answer = answer.item()
        x = float(answer)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _check(exercise: str, answer, right: float, close: Callable[[float, float], bool],
           hints: list[tuple[Callable[[float], bool], str]], generic: str, confirm: str, quiet: bool,
           what: str = "a number") -> Feedback:
    """Shared logic: None → reminder; non-number → hint; right → confirm; wrong → first matching hint."""
    if answer is None:
        return _reply(exercise, None, f"write your answer ({what}) in place of `None` and run the cell again.", quiet)
    x = _as_number(answer)
    if x is None:
        return _reply(exercise, False, f"the answer should be {what}; got {answer!r}.", quiet)
    if close(x, right):
        return _reply(exercise, True, confirm, quiet)
    for matches, hint in hints:
        if matches(x):
            return _reply(exercise, False, hint, quiet)
    return _reply(exercise, False, generic, quiet)


def _near(a: float, b: float, atol: float = 0.0, rtol: float = 0.0) -> bool:
    return abs(a - b) <= atol + rtol * abs(b)


# ---------------------------------------------------------------------------------------- 01: Lemma 1
#: Exercise 01-1: the plane (r = 2) of the line + plane, at this t.
CORRECTION_T = 0.3


@lru_cache(maxsize=None)
def _correction_term() -> float:
    """(r_2/2) log(1−ᾱ) for the plane: lab.dropped_log_terms minus its log π_2 part."""

    line_plane = lab.coordinate_molrg([1, 2])
    return float(lab.dropped_log_terms(line_plane, CORRECTION_T)[1] - line_plane.weights.log()[1])


def check_correction_term(answer, quiet: bool = False) -> Feedback:
    """Exercise 01-1: the term (r_k/2)·log(1−ᾱ) that Lemma 1's printed weights drop, for the plane at t = 0.3."""

    right = _correction_term()
    ab = float(SCHEDULE.alpha_bar(CORRECTION_T))
    oma = float(SCHEDULE.one_minus_alpha_bar(CORRECTION_T))
    hints = [
        (lambda x: x > 0, "1 − ᾱ is smaller than 1, so its logarithm — and the term — is negative."),
        (lambda x: _near(x, math.log(ab), atol=2e-3) or _near(x, 0.5 * math.log(ab), atol=2e-3),
         "you took the log of ᾱ; the normaliser of N(0, ᾱM_kM_kᵀ + (1−ᾱ)I) involves 1 − ᾱ."),
        (lambda x: _near(x, right / 2, atol=2e-3) or _near(x, 2 * right, atol=2e-3),
         "check the factor r_k/2: the plane has rank r_k = 2."),
        (lambda x: _near(x, right + math.log(0.5), atol=2e-3),
         "that includes log π_k; the question asks only for the normaliser term (r_k/2)·log(1−ᾱ)."),
        (lambda x: _near(x, right / math.log(10), atol=2e-3) or _near(x, right / math.log(10) / 2, atol=2e-3),
         "use the natural logarithm (the Gaussian density is exp(·)), not log10."),
        (lambda x: _near(x, oma, atol=2e-3) or _near(x, -oma, atol=2e-3),
         "that is 1 − ᾱ itself; take its logarithm and multiply by r_k/2."),
    ]
    return _check("01-1 correction term", answer, right, lambda x, r: _near(x, r, atol=2e-3), hints,
                  "evaluate 1 − ᾱ(0.3) with SCHEDULE.one_minus_alpha_bar, take the natural log and multiply by "
                  "r_k/2 for the plane (3 decimals are enough).",
                  "(r_k/2)·log(1−ᾱ) is the log of the Gaussian normaliser Lemma 1 drops; it favours low-rank classes.",
                  quiet)


#: Exercise 01-2: two lines in 2-D (the x- and y-axes), π = (1/2, 1/2), at this t and this point x_t.
POSTERIOR_T = 0.3
POSTERIOR_X = (1.0, 0.0)


@lru_cache(maxsize=None)
def _posterior_mean_x() -> float:
    """First coordinate of E[x₀ | x_t] from MoLRG.posterior_mean (Bayes' rule)."""

    lines = lab.coordinate_molrg([1, 1])
    return float(lines.posterior_mean(torch.tensor([POSTERIOR_X], dtype=_DT), POSTERIOR_T)[0, 0])


def check_posterior_mean(answer, quiet: bool = False) -> Feedback:
    """Exercise 01-2: the first coordinate of E[x₀|x_t] for two lines in 2-D, x_t = (1, 0), t = 0.3."""

    right = _posterior_mean_x()
    ab = float(SCHEDULE.alpha_bar(POSTERIOR_T))
    w1 = right / math.sqrt(ab)
    hints = [
        (lambda x: _near(x, math.sqrt(ab), atol=2e-3),
         "that puts all the weight on the x-axis; the y-axis class still has weight: its logit is 0, not −∞."),
        (lambda x: _near(x, 0.5 * math.sqrt(ab), atol=2e-3),
         "the two classes do not get equal weights here: the logit of class k contains ᾱ/(2(1−ᾱ))·‖M_kᵀx_t‖²."),
        (lambda x: _near(x, w1, atol=2e-3),
         "the weights look right, but E[x₀ | x_t, k] = √ᾱ M_kM_kᵀx_t: don't forget the shrink factor."),
        (lambda x: _near(x, ab * w1, atol=2e-3),
         "the shrink factor is √ᾱ, not ᾱ."),
        (lambda x: x <= 0 or x >= 1,
         "E[x₀|x_t] is a convex combination of the projections of x_t (here 0 and √ᾱ·1): it lies strictly between them."),
    ]
    return _check("01-2 posterior mean", answer, right, lambda x, r: _near(x, r, atol=2e-3), hints,
                  "compute c = ᾱ/(1−ᾱ), the logits c/2·‖M_kᵀx_t‖² for both lines, their softmax, then "
                  "√ᾱ Σ_k w_k M_kM_kᵀx_t (3 decimals are enough).",
                  "Lemma 1 by hand: a softmax of the projection energies, then a shrunk convex combination.",
                  quiet)


# ---------------------------------------------------------------------------------------- 02: rank
#: Exercise 02-1: notebook 02's model and time.
RANK_SHAPE, RANK_RANKS, RANK_T = (1, 16, 16), (4, 8, 12), 0.9


@lru_cache(maxsize=None)
def _jacobian_rank() -> int:
    """Rank of the closed-form J (Lemma 2) at a seeded x_t: #{σ_i > 1e-10 σ_1} by a dense SVD."""

    model = lab.smooth_molrg(RANK_SHAPE, list(RANK_RANKS), seed=0)
    x = lab.noisy_samples(model, RANK_T, n=1, seed=0).x_t
    S = torch.linalg.svdvals(model.jacobian(x, RANK_T).reshape(model.d, model.d))
    return int((S > 1e-10 * S[0]).sum())


def check_jacobian_rank(answer, quiet: bool = False) -> Feedback:
    """Exercise 02-1: the rank of J at t = 0.9 for notebook 02's model (ranks 4, 8, 12 in d = 256)."""
    right = _jacobian_rank()
    d = math.prod(RANK_SHAPE)
    hints = [
        (lambda x: x != round(x), "a rank is a whole number."),
        (lambda x: x == d, "J is d × d, but every term of Lemma 2 maps into span(M): what is the dimension of span(M)?"),
        (lambda x: x in RANK_RANKS,
         "at t = 0.9 no class has negligible weight, so every class contributes its own subspace, not just one."),
        (lambda x: x > d or x < 0, f"the rank of a {d} × {d} matrix lies between 0 and {d}."),
    ]
    return _check("02-1 Jacobian rank", answer, right, lambda x, r: x == r, hints,
                  "Theorem 1 bounds the rank by the dimension of span(M_1, …, M_K); the bases are mutually "
                  "orthogonal, so add up what each class contributes.",
                  "rank J = Σ_k r_k when all classes carry weight (Theorem 1); r/d ≈ 0.094 is 'low rank'.",
                  quiet, what="a whole number")


#: Exercise 02-2: a spectrum and the threshold η of eq. 10.
SPECTRUM = (10.0, 5.0, 3.0, 1.0, 0.5, 0.1)
ETA = 0.99


def check_numerical_rank(answer, quiet: bool = False) -> Feedback:
    """Exercise 02-2: the numerical rank (eq. 10, η = 0.99) of the spectrum σ = SPECTRUM."""

    S = torch.tensor(SPECTRUM, dtype=_DT)
    right = numerical_rank(S, ETA)
    energy_of_sigma = int((torch.cumsum(S, 0) / S.sum() > ETA ** 2).nonzero()[0]) + 1  # σ instead of σ²
    hints = [
        (lambda x: x != round(x), "a numerical rank is a whole number."),
        (lambda x: x == len(SPECTRUM),
         "that counts every non-zero σ_i (the exact rank); eq. 10 stops as soon as the energy fraction exceeds η²."),
        (lambda x: x == energy_of_sigma and x != right,
         "eq. 10 measures energy: sum the squares σ_i², not the σ_i."),
        (lambda x: x == right - 1,
         "at that r the energy fraction Σ_{i≤r}σ_i² / Σσ_i² has not yet exceeded η² = 0.9801: recompute it."),
        (lambda x: x < 1 or x > len(SPECTRUM), f"the numerical rank lies between 1 and {len(SPECTRUM)} here."),
    ]
    return _check("02-2 numerical rank", answer, right, lambda x, r: x == r, hints,
                  "list the cumulative energy Σ_{i≤r}σ_i² / Σ_i σ_i² for r = 1, 2, … and take the first r where it "
                  "exceeds η² = 0.99².",
                  "eq. 10 keeps the directions that carry 99 % of the norm (98 % of the energy).",
                  quiet, what="a whole number")


# ---------------------------------------------------------------------------------------- 03: eq. 8
SLOPE_T = 0.7


@lru_cache(maxsize=None)
def _error_slope() -> float:
    """Measured log–log slope of the linearisation error vs λ (lab.error_scaling on a small MoLRG)."""

    model = lab.smooth_molrg((1, 8, 8), [2, 6], seed=0)
    return lab.error_scaling(model, SLOPE_T, seed=0, direction="in_subspace").slope


def check_error_slope(answer, quiet: bool = False) -> Feedback:
    """Exercise 03-1: the log–log slope of ‖f(x+λΔx) − f(x) − λJΔx‖ against small λ (eq. 8)."""
    right = _error_slope()
    hints = [
        (lambda x: _near(x, 1, atol=0.15),
         "the first-order term λJΔx has been subtracted; eq. 8 writes the rest as λ · O(λ)."),
        (lambda x: _near(x, 0, atol=0.15) or x < 0, "the error vanishes at λ = 0 and grows with λ."),
        (lambda x: x > right + 0.15,
         "the leading term of what is left after a first-order Taylor expansion is the second-order term."),
    ]
    return _check("03-1 error slope", answer, right, lambda x, r: _near(x, r, atol=0.15), hints,
                  "expand f(x+λΔx) in a Taylor series in λ and remove f(x) + λJΔx: which power of λ leads?",
                  "the error is second order, λ²/2·‖D²f[Δx, Δx]‖: slope 2 on a log–log plot (eq. 8).",
                  quiet)


PREFACTOR_T = 0.5


def check_snr_prefactor(answer, quiet: bool = False) -> Feedback:
    """Exercise 03-2: the factor ᾱ/(1−ᾱ) of eq. 8 at t = 0.5."""

    right = float(SCHEDULE.snr(PREFACTOR_T))
    ab = float(SCHEDULE.alpha_bar(PREFACTOR_T))
    close = lambda x, r: _near(x, r, rtol=1e-2)  # noqa: E731
    hints = [
        (lambda x: close(x, ab), "that is ᾱ; eq. 8's factor divides it by 1 − ᾱ."),
        (lambda x: close(x, 1 / right), "you inverted the ratio: the signal fraction ᾱ goes on top."),
        (lambda x: close(x, math.sqrt(right)), "there is no square root in eq. 8's factor."),
        (lambda x: close(x, 1 - ab), "that is 1 − ᾱ; the factor is the ratio ᾱ/(1 − ᾱ)."),
        (lambda x: x <= 0, "ᾱ and 1 − ᾱ are both positive, so their ratio is too."),
    ]
    return _check("03-2 eq. 8 prefactor", answer, right, close, hints,
                  "evaluate ᾱ(0.5) with SCHEDULE.alpha_bar and form ᾱ/(1−ᾱ) (3 significant digits).",
                  "ᾱ/(1−ᾱ) is the signal-to-noise ratio; it falls fast with t, so late steps are nearly linear.",
                  quiet)


# ---------------------------------------------------------------------------------------- 04: learned vs exact
#: Exercises 04-1 and 04-2: the exact MoLRG of this course model (rebuilt from its shipped bases), at the point
#: ``molrg_d48_point(t)``; 04-1 at t = COV_T, 04-2 at t = ONE_CLASS_T.
D48 = "molrg_d48"
COV_T = 0.5
ONE_CLASS_T = 0.05


@lru_cache(maxsize=None)
def molrg_d48():
    """The exact MoLRG of the course model ``molrg_d48``, from its ``molrg_bases.safetensors`` (no network)."""
    from pathlib import Path


    return load_molrg(Path(get_spec(D48).source) / MOLRG_BASES)


def molrg_d48_point(t: float) -> torch.Tensor:
    """x_t (3, 4, 4) of exercises 04-1/04-2: ``lab.noisy_samples(molrg_d48(), t, n=1, seed=0).x_t[0]``."""

    return lab.noisy_samples(molrg_d48(), t, n=1, seed=0).x_t[0]


@lru_cache(maxsize=None)
def _posterior_cov_trace() -> float:
    """tr Cov[x₀|x_t] = (1−ᾱ)/√ᾱ · tr J (compare.posterior_cov_trace) at molrg_d48_point(COV_T)."""

    return float(posterior_cov_trace(molrg_d48(), molrg_d48_point(COV_T), COV_T))


def check_posterior_cov_trace(answer, quiet: bool = False) -> Feedback:
    """Exercise 04-1: tr Cov[x₀|x_t] at t = 0.5 for molrg_d48's exact MoLRG, from its Jacobian (Lemma 3)."""

    right = _posterior_cov_trace()
    ab = float(SCHEDULE.alpha_bar(COV_T))
    tr_j = right * math.sqrt(ab) / (1 - ab)
    near = lambda x, v: _near(x, v, atol=2e-3)  # noqa: E731
    ranks = molrg_d48().ranks
    hints = [
        (lambda x: x < 0, "a trace of a covariance is a sum of variances: it cannot be negative."),
        (lambda x: near(x, tr_j), "that is tr J itself; Lemma 3 says J = √ᾱ/(1−ᾱ)·Cov[x₀|x_t]: solve it for Cov."),
        (lambda x: near(x, tr_j * math.sqrt(ab) / (1 - ab)),
         "you multiplied tr J by √ᾱ/(1−ᾱ); since J = √ᾱ/(1−ᾱ)·Cov, Cov is J divided by that factor."),
        (lambda x: near(x, tr_j * (1 - ab) / ab) or near(x, tr_j / ab),
         "the factor of Lemma 3 has √ᾱ, not ᾱ (x_t = √ᾱ x₀ + √(1−ᾱ) ε)."),
        (lambda x: near(x, tr_j / math.sqrt(ab)), "you dropped the factor 1 − ᾱ."),
        (lambda x: near(x, tr_j * (1 - ab)), "you dropped the factor 1/√ᾱ."),
        (lambda x: any(near(x, (1 - ab) * r) for r in (*ranks, sum(ranks))),
         "(1−ᾱ)·r_k is the posterior variance when the class is known; at t = 0.5 both classes carry weight, "
         "and Lemma 3 gives the whole covariance from J at this x_t."),
    ]
    return _check("04-1 posterior covariance", answer, right, near, hints,
                  "J = model.jacobian(x_t, 0.5) has shape (3, 4, 4, 3, 4, 4): reshape it to 48 × 48, take its "
                  "trace and multiply by (1−ᾱ)/√ᾱ (3 decimals are enough).",
                  "tr Cov[x₀|x_t] is the irreducible part of the x₀-loss at x_t; the loss ratio "
                  "1 + ‖f_θ − E‖²/tr Cov of this notebook compares the network's error with it.",
                  quiet)


@lru_cache(maxsize=None)
def _one_class_rank() -> int:
    """Eq. 10 (η = 0.99) on the singular values of the closed-form J (Lemma 2) at molrg_d48_point(ONE_CLASS_T)."""

    model = molrg_d48()
    J = model.jacobian(molrg_d48_point(ONE_CLASS_T), ONE_CLASS_T).reshape(model.d, model.d)
    return numerical_rank(torch.linalg.svdvals(J))


def check_one_class_rank(answer, quiet: bool = False) -> Feedback:
    """Exercise 04-2: the numerical rank (eq. 10) of molrg_d48's exact Jacobian at t = 0.05 at the seeded point."""
    right = _one_class_rank()
    model = molrg_d48()
    r, d = sum(model.ranks), model.d
    hints = [
        (lambda x: 0 < x < 1, "that looks like a rank ratio (rank / d); the question asks for the rank itself."),
        (lambda x: x != round(x), "a numerical rank counts singular values: it is a whole number."),
        (lambda x: x == r and x != right,
         "Σ r_k is Theorem 1's bound, reached when every class carries weight. Look at the class weights at "
         "t = 0.05 (model.log_weights(x_t, 0.05).exp()): a class with weight w_k ≈ 0 adds singular values √ᾱ·w_k ≈ 0."),
        (lambda x: x == d, "J is d × d, but every term of Lemma 2 maps into span(M)."),
        (lambda x: x < 1 or x > d, f"the numerical rank of a non-zero {d} × {d} matrix lies between 1 and {d}."),
    ]
    return _check("04-2 one-class rank", answer, right, lambda x, rr: x == rr, hints,
                  "take the singular values of J = model.jacobian(x_t, 0.05) reshaped to 48 × 48 and apply eq. 10 "
                  "(lococourse.jacobian.numerical_rank); look at the class weights first.",
                  "when one class has all the posterior weight, J ≈ √ᾱ·M_kM_kᵀ: the rank of one class, below "
                  "Theorem 1's Σ r_k — the left end where the learned network keeps more directions.",
                  quiet, what="a whole number")


# ---------------------------------------------------------------------------------------- 05: Figure 2
#: Exercise 05-1: the course model whose card is read.
CARD_MODEL = "faces16"


def _card_minimum() -> tuple[float, float, dict]:
    """(rank ratio × d, t) at the card's lowest rank ratio, and the card's record."""

    rr = card_rank_ratio(CARD_MODEL)
    i = min(range(len(rr["rank_ratio"])), key=rr["rank_ratio"].__getitem__)
    return rr["rank_ratio"][i] * rr["d"], rr["t"][i], rr


def check_card_rank(answer, quiet: bool = False) -> Feedback:
    """Exercise 05-1: faces16's card: the numerical rank (eq. 10, mean over its points) at its lowest rank ratio."""
    right, t_min, rr = _card_minimum()
    ranks = [q * rr["d"] for q in rr["rank_ratio"]]
    near = lambda x, v: _near(x, v, atol=0.34)  # noqa: E731  (a mean over the card's points; rounding is fine)
    hints = [
        (lambda x: _near(x, t_min, atol=1e-9),
         "that is the time of the minimum; the question asks for the rank there."),
        (lambda x: 0 < x < 1, "that is a rank ratio (rank / d): multiply it by d."),
        (lambda x: x == 9 and not near(x, right),
         "9 is the number of factors of variation of the faces, not what the card measured: read its rank ratio."),
        (lambda x: any(near(x, q) for q in ranks if not near(q, right)) and not near(x, right),
         "that is the rank at another time: find the smallest entry of the card's rank ratio, not the largest or "
         "the one at t = 0.7 where this notebook's DDIM run is lowest."),
        (lambda x: near(x, right * 4), "faces16 has d = 3 × 16 × 16 = 768, not the 3072 of faces32."),
        (lambda x: x <= 0, "a numerical rank is positive."),
    ]
    return _check("05-1 card rank", answer, right, near, hints,
                  "read compare.card_rank_ratio('faces16'): take the smallest entry of 'rank_ratio' and multiply it "
                  "by 'd' (eq. 10's rank, averaged over the card's points).",
                  "a handful of directions out of 768 carry 99 % of the Jacobian's norm in the middle of t — "
                  "fewer than the 9 factors of variation of the faces.",
                  quiet)


#: Exercise 05-2: eq. 4 on a small exact MoLRG (``linearity_problem()``) at this t and step λ.
LINEARITY_T = 0.3
LINEARITY_LAMBDA = 4.0


def linearity_problem():
    """(model, x_t, dx) of exercise 05-2: a MoLRG in d = 16 (ranks 2, 3), a seeded x_t at t = LINEARITY_T and a
    seeded direction dx of length ≠ 1 (eq. 4 uses Δx = dx/‖dx‖)."""

    model = MoLRG.random(16, [2, 3], seed=0)
    x_t = lab.noisy_samples(model, LINEARITY_T, n=1, seed=0).x_t[0]
    dx = torch.randn(16, generator=torch.Generator().manual_seed(1), dtype=_DT)
    return model, x_t, dx


@lru_cache(maxsize=None)
def _linearity_values() -> dict[str, float]:
    """The cosine and norm ratio of eq. 4 from the MoLRG in closed form (E[x₀|x_t] and its Jacobian, Lemmas 1–2;
    the same numbers as jacobian.local_linearity), and what the likely mistakes give."""
    model, x, dx = linearity_problem()
    t, lam = LINEARITY_T, LINEARITY_LAMBDA
    f0, J = model.posterior_mean(x, t), model.jacobian(x, t)

    def cos_and_ratio(step: torch.Tensor) -> tuple[float, float, torch.Tensor, torch.Tensor]:
        f, lin = model.posterior_mean(x + step, t), f0 + J @ step
        return float(f @ lin / (f.norm() * lin.norm())), float(f.norm() / lin.norm()), f, lin

    cosine, ratio, f, lin = cos_and_ratio(lam * dx / dx.norm())
    inc, jdx = f - f0, lin - f0
    return {"cosine": cosine, "norm_ratio": ratio, "raw": cos_and_ratio(lam * dx)[0],
            "increments": float(inc @ jdx / (inc.norm() * jdx.norm()))}


def check_linearity_cosine(answer, quiet: bool = False) -> Feedback:
    """Exercise 05-2: cos ∠(f(x_t + λΔx), f(x_t) + λJΔx) (eq. 4) for linearity_problem() at t = 0.3, λ = 4."""
    v = _linearity_values()
    right = v["cosine"]
    near = lambda x, w: _near(x, w, atol=2e-3)  # noqa: E731
    hints = [
        (lambda x: near(x, math.acos(right)) or near(x, math.degrees(math.acos(right))),
         "that is the angle; the question asks for its cosine."),
        (lambda x: near(x, v["norm_ratio"]), "that is the norm ratio ‖f‖/‖l‖ (Figure 2b, top); the question asks for "
                                            "the cosine between the two vectors (bottom)."),
        (lambda x: x > 1 or x < -1, "a cosine lies between −1 and 1."),
        (lambda x: near(x, v["raw"]), "normalise the direction first: Δx = dx/‖dx‖ is a unit vector in eq. 4."),
        (lambda x: near(x, v["increments"]),
         "eq. 4 compares the outputs themselves, f(x_t + λΔx) with l = f(x_t) + λJΔx, not the increments "
         "f(x_t + λΔx) − f(x_t) and λJΔx."),
    ]
    return _check("05-2 eq. 4 cosine", answer, right, near, hints,
                  "with f = model.pmp(0.3) and Δx = dx/‖dx‖, form f(x_t + λΔx) and l = f(x_t) + λ·JΔx "
                  "(J = model.jacobian(x_t, 0.3)) and take ⟨f, l⟩/(‖f‖‖l‖) (3 decimals are enough).",
                  "at t = 0.3 a step of λ = 4 already bends the PMP away from its linearisation: local linearity "
                  "needs small steps, and improves with t (Figure 2b is measured at t = 0.7).",
                  quiet)


# ---------------------------------------------------------------------------------------- 06: Algorithm 1
def projection_problem() -> tuple[torch.Tensor, torch.Tensor]:
    """(v, Vbar) of exercise 06-1: a unit v in d = 32 and an orthonormal V̄ (32 × 5, r' = 5), seeded."""
    g = torch.Generator().manual_seed(6)
    Vbar, _ = torch.linalg.qr(torch.randn(32, 5, generator=g, dtype=_DT))
    v = Vbar @ torch.randn(5, generator=g, dtype=_DT) + 0.3 * torch.randn(32, generator=g, dtype=_DT)
    return v / v.norm(), Vbar


def check_projection_norm(answer, quiet: bool = False) -> Feedback:
    """Exercise 06-1: ‖v_p‖, v_p = v − V̄(V̄ᵀv) (Algorithm 1 step 7, before normalising), for projection_problem()."""

    v, Vbar = projection_problem()
    right = float(project_out(v, Vbar).norm())
    removed = float((Vbar.T @ v).norm())
    first = float((v - Vbar[:, :1] @ (Vbar[:, :1].T @ v)).norm())
    near = lambda x, w: _near(x, w, atol=2e-3)  # noqa: E731
    hints = [
        (lambda x: near(x, removed), "that is the norm of the part you remove, V̄V̄ᵀv; v_p is what is left of v."),
        (lambda x: near(x, 1.0), "the question asks for ‖v_p‖ before step 8 divides v_p by it."),
        (lambda x: near(x, right ** 2), "that is ‖v_p‖²; take the square root."),
        (lambda x: near(x, 1 - removed), "norms of orthogonal parts do not subtract; their squares do (Pythagoras)."),
        (lambda x: near(x, first), "project off all r' = 5 columns of V̄, not just the first one."),
        (lambda x: x > 1, "projecting cannot lengthen a vector: ‖v_p‖ ≤ ‖v‖ = 1."),
        (lambda x: x < 0, "a norm is not negative."),
    ]
    return _check("06-1 nullspace projection", answer, right, near, hints,
                  "compute V̄ᵀv (5 numbers), then v_p = v − V̄(V̄ᵀv) and its Euclidean norm (3 decimals are enough).",
                  "the projection removes from v exactly its part in span(V̄), the directions that move Ω^c the most; "
                  "‖v_p‖² = 1 − ‖V̄ᵀv‖².",
                  quiet)


def leakage_problem() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(original, edited, mask) of exercise 06-2: two seeded 3 × 8 × 8 images and an 8 × 8 mask Ω (15 pixels)."""

    g = torch.Generator().manual_seed(7)
    original = (torch.rand(3, 8, 8, generator=g, dtype=_DT) * 2 - 1) * 0.8
    mask = rectangle((8, 8), 2, 1, 7, 4)
    change = torch.where(mask, 0.5, 0.06) * torch.randn(3, 8, 8, generator=g, dtype=_DT)
    return original, original + change, mask


def _rms(x: torch.Tensor) -> float:
    return float(x.pow(2).mean().sqrt())


def check_leakage(answer, quiet: bool = False) -> Feedback:
    """Exercise 06-2: the leakage of leakage_problem()'s edit, as lococourse.editing.metrics.leakage defines it."""

    original, edited, mask = leakage_problem()
    right = leakage(original, edited, mask)
    delta = edited - original
    d_in, d_out = delta[:, mask], delta[:, ~mask]
    near = lambda x, w: _near(x, w, rtol=5e-3)  # noqa: E731
    hints = [
        (lambda x: near(x, float(d_out.norm() / d_in.norm())),
         "that is ‖Δ_out‖/‖Δ_in‖ with plain norms, which grow with the number of pixels (Ω^c is much larger than "
         "Ω); leakage compares per-pixel RMS values."),
        (lambda x: near(x, 1 / right), "you divided inside by outside; leakage is outside over inside (0 = local)."),
        (lambda x: near(x, right ** 2), "that is a ratio of mean squares; take square roots (RMS)."),
        (lambda x: near(x, float(d_out.abs().mean() / d_in.abs().mean())),
         "that is a ratio of mean absolute changes; RMS is the square root of the mean of squares."),
        (lambda x: near(x, _rms(edited[:, ~mask]) / _rms(edited[:, mask])),
         "leakage measures the change Δ = edited − original, not the edited image itself."),
        (lambda x: x < 0, "a ratio of RMS values is not negative."),
    ]
    return _check("06-2 leakage", answer, right, near, hints,
                  "Δ = edited − original; take the RMS of Δ over the pixels outside Ω (all channels) and inside Ω, "
                  "and divide outside by inside (3 significant digits are enough).",
                  "per-pixel RMS makes leakage independent of the mask's size; 0 is a perfectly local edit.",
                  quiet)


# ---------------------------------------------------------------------------------------- 07: properties
def composition_problem() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(reference, edit_1, edit_2, composite) of exercise 07-1: seeded 3 × 8 × 8 images; the composite is not
    exactly the sum of the two single edits."""
    g = torch.Generator().manual_seed(8)
    reference = (torch.rand(3, 8, 8, generator=g, dtype=_DT) * 2 - 1) * 0.8
    d1 = torch.zeros(3, 8, 8, dtype=_DT)
    d2 = torch.zeros(3, 8, 8, dtype=_DT)
    d1[:, :5] = 0.4 * torch.randn(3, 5, 8, generator=g, dtype=_DT) + 0.3
    d2[:, 3:] = 0.4 * torch.randn(3, 5, 8, generator=g, dtype=_DT) + 0.3
    extra = 0.15 * torch.randn(3, 8, 8, generator=g, dtype=_DT)
    return reference, reference + d1, reference + d2, reference + d1 + d2 + extra


def check_composability(answer, quiet: bool = False) -> Feedback:
    """Exercise 07-1: ‖Δ₁₂ − Δ₁ − Δ₂‖/‖Δ₁ + Δ₂‖ for composition_problem(), as lococourse.editing.metrics.composability."""

    ref, e1, e2, comp = composition_problem()
    right = composability(ref, comp, [e1, e2])
    d1, d2, d12 = e1 - ref, e2 - ref, comp - ref
    gap = float((d12 - d1 - d2).norm())
    near = lambda x, w: _near(x, w, rtol=5e-3)  # noqa: E731
    hints = [
        (lambda x: near(x, gap / float(d12.norm())),
         "divide by ‖Δ₁ + Δ₂‖, the size of the additive prediction, not by ‖Δ₁₂‖."),
        (lambda x: near(x, gap / (float(d1.norm()) + float(d2.norm()))),
         "the denominator is the norm of the sum, ‖Δ₁ + Δ₂‖, not the sum of the norms (the two edits overlap)."),
        (lambda x: near(x, float((comp - e1 - e2).norm() / (e1 + e2).norm())),
         "the Δ's are changes from the reference: Δ_i = edit_i − reference, Δ₁₂ = composite − reference."),
        (lambda x: near(x, right ** 2), "that is a ratio of squared norms; composability uses the norms."),
        (lambda x: near(x, gap), "that is the raw gap ‖Δ₁₂ − Δ₁ − Δ₂‖; divide it by ‖Δ₁ + Δ₂‖."),
        (lambda x: x < 0, "a ratio of norms is not negative."),
    ]
    return _check("07-1 composability", answer, right, near, hints,
                  "form Δ₁, Δ₂ and Δ₁₂ (each minus the reference), then ‖Δ₁₂ − Δ₁ − Δ₂‖/‖Δ₁ + Δ₂‖ with Frobenius "
                  "norms over all pixels (3 significant digits are enough).",
                  "0 means the joint edit is exactly the sum of the single edits; LOCO's directions compose "
                  "because the PMP is locally linear.",
                  quiet)


#: Exercise 07-2: strengths λ and a measured change of the edited factor at each.
R2_STRENGTHS = (-7.0, -3.5, 3.5, 7.0)
R2_CHANGES = (-0.24, -0.17, 0.09, 0.14)


def check_linearity_r2(answer, quiet: bool = False) -> Feedback:
    """Exercise 07-2: R² of a straight line with intercept through (R2_STRENGTHS, R2_CHANGES) (metrics.linearity_r2)."""
    import numpy as np


    right = linearity_r2(R2_STRENGTHS, np.array(R2_CHANGES))
    x, y = np.array(R2_STRENGTHS), np.array(R2_CHANGES)
    origin = 1 - float(((y - x * (x @ y) / (x @ x)) ** 2).sum() / ((y - y.mean()) ** 2).sum())
    near = lambda a, w: _near(a, w, atol=2e-3)  # noqa: E731
    hints = [
        (lambda a: near(a, math.sqrt(right)), "that is the correlation coefficient r; R² is its square."),
        (lambda a: near(a, 1 - right), "that is SS_res/SS_tot, the unexplained share; R² = 1 − SS_res/SS_tot."),
        (lambda a: near(a, origin), "fit the line with an intercept, y = aλ + b, not through the origin."),
        (lambda a: a > 1 or a < 0, "R² of a least-squares line with an intercept lies between 0 and 1."),
    ]
    return _check("07-2 linearity R²", answer, right, near, hints,
                  "fit change ≈ aλ + b by least squares, then R² = 1 − Σ(residual²)/Σ(change − mean)² "
                  "(3 decimals are enough).",
                  "R² near 1 means the change grows in proportion to λ; here it flattens a little at the larger |λ| "
                  "and is offset (the intercept), and a straight line still explains almost all of its variance.",
                  quiet)


# ---------------------------------------------------------------------------------------- 08: T-LOCO
#: Exercise 08-1: one pixel x_t, the network's ε for the null prompt ∅ and for c_o, the CFG scale s (SD's
#: default), at time t of the course schedule SCHEDULE.
CFG_T = 0.5
CFG_SCALE = 7.5
CFG_X = 0.8
CFG_EPS_UNCOND = 0.3
CFG_EPS_COND = 0.5


class _EmbeddingEpsUNet(torch.nn.Module):
    """A stand-in UNet whose output ε is its prompt embedding, so :class:`~lococourse.models.adapters.GuidedEps` runs
    eqs. 3 and 11 on given numbers."""

    def __init__(self):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros((), dtype=_DT), requires_grad=False)  # sets the dtype

    def forward(self, x, timestep, encoder_hidden_states):
        from types import SimpleNamespace

        return SimpleNamespace(sample=encoder_hidden_states[:, 0, :].reshape(x.shape))


def _guided_x0(eps_u: float, eps_c: float, scale: float) -> float:
    """x̂₀ = (x_t − √(1−ᾱ) ε̃)/√ᾱ with ε̃ = ε(∅) + s(ε(c) − ε(∅)), by lococourse.models.adapters.GuidedEps."""

    emb = lambda e: torch.tensor([[[e]]], dtype=_DT)  # noqa: E731  (1, L = 1, D = 1)
    model = GuidedEps(_EmbeddingEpsUNet(), emb(eps_c), emb(eps_u), scale, schedule=SCHEDULE, jvp_safe=False)
    k = int(SCHEDULE.timestep_of_t(CFG_T))
    return float(model.x0(torch.tensor([[[[CFG_X]]]], dtype=_DT), k))


def check_guided_x0(answer, quiet: bool = False) -> Feedback:
    """Exercise 08-1: f^o(x_t) of eq. 11 for one pixel: CFG ε̃ (eq. 3) then x̂₀ = (x_t − √(1−ᾱ) ε̃)/√ᾱ at t = 0.5."""

    right = _guided_x0(CFG_EPS_UNCOND, CFG_EPS_COND, CFG_SCALE)
    ab = float(SCHEDULE.alpha_bar(CFG_T))
    eps = CFG_EPS_UNCOND + CFG_SCALE * (CFG_EPS_COND - CFG_EPS_UNCOND)
    x = CFG_X
    near = lambda a, w: _near(a, w, atol=2e-3)  # noqa: E731
    hints = [
        (lambda a: near(a, eps), "that is the guided ε̃; eq. 11 turns it into x̂₀ = (x_t − √(1−ᾱ) ε̃)/√ᾱ."),
        (lambda a: near(a, _guided_x0(CFG_EPS_UNCOND, CFG_EPS_COND, 1.0)),
         "that is x̂₀ with ε(c_o) alone; classifier-free guidance uses ε̃ = ε(∅) + s(ε(c_o) − ε(∅)) with s = 7.5."),
        (lambda a: near(a, _guided_x0(CFG_EPS_COND, CFG_EPS_UNCOND, CFG_SCALE)),
         "guidance starts from the null prompt's ε(∅) and moves towards ε(c_o): ε(∅) + s(ε(c_o) − ε(∅))."),
        (lambda a: near(a, (x + math.sqrt(1 - ab) * eps) / math.sqrt(ab)),
         "check the sign: x_t = √ᾱ x₀ + √(1−ᾱ) ε, so the noise is subtracted."),
        (lambda a: any(near(a, v) for v in ((x - (1 - ab) * eps) / ab, (x - math.sqrt(1 - ab) * eps) / ab,
                                            (x - (1 - ab) * eps) / math.sqrt(ab))),
         "use square roots: x_t = √ᾱ x₀ + √(1−ᾱ) ε (the α_t, σ_t of Appendix E are √ᾱ and √(1−ᾱ))."),
        (lambda a: near(a, x - math.sqrt(1 - ab) * eps), "after subtracting the noise, divide by √ᾱ."),
    ]
    return _check("08-1 guided PMP", answer, right, near, hints,
                  "compute ε̃ = ε(∅) + s(ε(c_o) − ε(∅)), then x̂₀ = (x_t − √(1−ᾱ) ε̃)/√ᾱ with "
                  "ᾱ = SCHEDULE.alpha_bar(0.5) (3 decimals are enough).",
                  "with s = 7.5 the guided ε̃ lies far outside the two network outputs: CFG extrapolates, and f^o "
                  "(eq. 11) is the PMP of that extrapolated ε — the map T-LOCO linearises.",
                  quiet)


@dataclass(frozen=True)
class TextProblem:
    """Exercise 08-2's inputs: affine PMPs f^o, f^e on 1 × 4 × 4 images (callables on batches (B, 1, 4, 4)) with
    Jacobians J_o, J_e (16 × 16), the point x_t (1, 4, 4) and the mask Ω (4 × 4)."""

    x_t: torch.Tensor
    mask: torch.Tensor
    f_o: Callable[[torch.Tensor], torch.Tensor]
    f_e: Callable[[torch.Tensor], torch.Tensor]
    J_o: torch.Tensor
    J_e: torch.Tensor


def _affine(J: torch.Tensor, b: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda x: (x.reshape(-1, 16) @ J.T + b).reshape(-1, 1, 4, 4)


def text_problem() -> TextProblem:
    """The seeded inputs of exercise 08-2 (see :class:`TextProblem`)."""
    g = torch.Generator().manual_seed(119)
    J_o = torch.randn(16, 16, generator=g, dtype=_DT) / 4
    J_e = J_o + torch.randn(16, 16, generator=g, dtype=_DT) / 8
    b_o = torch.randn(16, generator=g, dtype=_DT)
    b_e = b_o + torch.randn(16, generator=g, dtype=_DT) / 2
    x_t = torch.randn(1, 4, 4, generator=g, dtype=_DT)
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[1:3, 1:4] = True
    return TextProblem(x_t, mask, _affine(J_o, b_o), _affine(J_e, b_e), J_o, J_e)


@lru_cache(maxsize=None)
def _text_direction_first() -> float:
    """v_p[0] from lococourse.editing.tloco.text_direction (Algorithm 4, r' = 0) on text_problem()."""

    p = text_problem()
    return float(text_direction(p.f_o, p.f_e, p.x_t, p.mask, r_null=0).direction.v.reshape(-1)[0])


def check_text_direction(answer, quiet: bool = False) -> Feedback:
    """Exercise 08-2: the first entry of v/‖v‖, v = J_eᵀ P_Ω(f^e(x_t) − f^o(x_t)) (Algorithm 4, r' = 0)."""
    p = text_problem()
    right = _text_direction_first()
    with torch.no_grad():
        y_o, y_e = p.f_o(p.x_t[None])[0].reshape(-1), p.f_e(p.x_t[None])[0].reshape(-1)
    m = p.mask.reshape(-1).to(_DT)
    d = (y_e - y_o) * m
    unit = lambda v: float(v[0] / v.norm())  # noqa: E731
    near = lambda a, w: _near(a, w, atol=2e-3)  # noqa: E731
    hints = [
        (lambda a: near(a, -right), "check the sign: d = f^e − f^o points from the source towards the edit prompt."),
        (lambda a: near(a, unit(p.J_e.T @ (y_e - y_o))), "apply the mask: d = P_Ω(f^e − f^o) is zero outside Ω."),
        (lambda a: near(a, unit(p.J_e @ d)), "v = J_eᵀd uses the transpose: it pulls d back from the output to x_t."),
        (lambda a: near(a, unit(p.J_o.T @ d)), "Algorithm 4 takes v = J_eᵀd with the Jacobian of the edit PMP f^e."),
        (lambda a: near(a, float((p.J_e.T @ d)[0])), "normalise v: the question asks for an entry of the unit v/‖v‖."),
        (lambda a: a > 1 or a < -1, "an entry of a unit vector lies between −1 and 1."),
    ]
    return _check("08-2 text direction", answer, right, near, hints,
                  "evaluate y_o = f_o(x_t), y_e = f_e(x_t) (on a batch of one), d = (y_e − y_o)·Ω, v = J_eᵀ d "
                  "(16 numbers), then v/‖v‖ and its first entry (3 decimals are enough).",
                  "one VJP pulls the masked change that the edit prompt asks for back to x_t; "
                  "tloco.text_direction does the same and then projects off V̄.",
                  quiet)


# ---------------------------------------------------------------------------------------- index
@dataclass(frozen=True)
class Exercise:
    notebook: str
    question: str
    check: Callable[..., Feedback]


EXERCISES: dict[str, Exercise] = {
    "01-1": Exercise("01_molrg_posterior_mean",
                     "Line + plane, t = 0.3: the value of (r_k/2)·log(1−ᾱ) for the plane (r_k = 2).", check_correction_term),
    "01-2": Exercise("01_molrg_posterior_mean",
                     "Two lines in 2-D, π = (1/2, 1/2), t = 0.3, x_t = (1, 0): the first coordinate of E[x₀|x_t].",
                     check_posterior_mean),
    "02-1": Exercise("02_jacobian_low_rank",
                     "Ranks (4, 8, 12) in d = 256, t = 0.9: the rank of the Jacobian J.", check_jacobian_rank),
    "02-2": Exercise("02_jacobian_low_rank",
                     "σ = (10, 5, 3, 1, 0.5, 0.1), η = 0.99: the numerical rank (eq. 10).", check_numerical_rank),
    "03-1": Exercise("03_local_linearity",
                     "The log–log slope of the linearisation error against small λ (eq. 8).", check_error_slope),
    "03-2": Exercise("03_local_linearity", "The factor ᾱ/(1−ᾱ) of eq. 8 at t = 0.5.", check_snr_prefactor),
    "04-1": Exercise("04_learned_vs_analytic",
                     "molrg_d48's exact MoLRG, t = 0.5, x_t = molrg_d48_point(0.5): tr Cov[x₀|x_t] from J (Lemma 3).",
                     check_posterior_cov_trace),
    "04-2": Exercise("04_learned_vs_analytic",
                     "molrg_d48's exact MoLRG, t = 0.05, x_t = molrg_d48_point(0.05): the numerical rank of J "
                     "(eq. 10).",
                     check_one_class_rank),
    "05-1": Exercise("05_figure2_course_models",
                     "faces16's card: the numerical rank (rank ratio × d) where its rank ratio is lowest.",
                     check_card_rank),
    "05-2": Exercise("05_figure2_course_models",
                     "linearity_problem(), t = 0.3, λ = 4: the cosine between f(x_t + λΔx) and f(x_t) + λJΔx (eq. 4).",
                     check_linearity_cosine),
    "06-1": Exercise("06_loco_edit",
                     "projection_problem(): ‖v − V̄(V̄ᵀv)‖ (Algorithm 1 step 7, before normalising).",
                     check_projection_norm),
    "06-2": Exercise("06_loco_edit",
                     "leakage_problem(): the leakage RMS(Δ outside Ω)/RMS(Δ inside Ω).", check_leakage),
    "07-1": Exercise("07_loco_properties",
                     "composition_problem(): the composability ‖Δ₁₂ − Δ₁ − Δ₂‖/‖Δ₁ + Δ₂‖.", check_composability),
    "07-2": Exercise("07_loco_properties",
                     "λ = (−7, −3.5, 3.5, 7), change = (−0.24, −0.17, 0.09, 0.14): R² of a straight-line fit.",
                     check_linearity_r2),
    "08-1": Exercise("08_t_loco",
                     "x_t = 0.8, ε(∅) = 0.3, ε(c_o) = 0.5, s = 7.5, t = 0.5: x̂₀ = f^o(x_t) (eqs. 3 and 11).",
                     check_guided_x0),
    "08-2": Exercise("08_t_loco",
                     "text_problem(): the first entry of v/‖v‖, v = J_eᵀ P_Ω(f^e(x_t) − f^o(x_t)) "
                     "(Algorithm 4, r' = 0).",
                     check_text_direction),
}
