"""Exercises for notebooks 01–03, with self-checks.

Each ``check_*(answer)`` compares a student's number with the right one, which it computes itself from
lococourse (the schedule, :mod:`lococourse.lab`, :mod:`lococourse.molrg`, :func:`~lococourse.jacobian.numerical_rank`)
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
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import torch

__all__ = ["Feedback", "EXERCISES", "Exercise", "check_correction_term", "check_posterior_mean",
           "check_jacobian_rank", "check_numerical_rank", "check_error_slope", "check_snr_prefactor",
           "SPECTRUM", "ETA"]

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
    from . import lab

    line_plane = lab.coordinate_molrg([1, 2])
    return float(lab.dropped_log_terms(line_plane, CORRECTION_T)[1] - line_plane.weights.log()[1])


def check_correction_term(answer, quiet: bool = False) -> Feedback:
    """Exercise 01-1: the term (r_k/2)·log(1−ᾱ) that Lemma 1's printed weights drop, for the plane at t = 0.3."""
    from .schedule import SCHEDULE

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
    from . import lab

    lines = lab.coordinate_molrg([1, 1])
    return float(lines.posterior_mean(torch.tensor([POSTERIOR_X], dtype=_DT), POSTERIOR_T)[0, 0])


def check_posterior_mean(answer, quiet: bool = False) -> Feedback:
    """Exercise 01-2: the first coordinate of E[x₀|x_t] for two lines in 2-D, x_t = (1, 0), t = 0.3."""
    from .schedule import SCHEDULE

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
    from . import lab

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
    from .jacobian import numerical_rank

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
    from . import lab

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
    from .schedule import SCHEDULE

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
}
