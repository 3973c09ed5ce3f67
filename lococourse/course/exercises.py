"""Exercises for notebooks 01–08, with self-checks, and the gate that keeps solutions out of Run All.

Each ``check_*(answer)`` compares a student's number with the right one, which it computes itself from
lococourse (the schedule, :mod:`lococourse.course.lab`, :mod:`lococourse.theory.molrg`, :mod:`lococourse.jacobian`,
the power method, DDIM, LOCO Edit, :mod:`lococourse.editing.tloco`, the course-model cards) — never from the
student's code.  It prints and returns a :class:`Feedback`:

* ``answer is None`` (the placeholder in the notebooks): a reminder to write an answer, ``ok = None``;
* a wrong answer: ``ok = False`` and a hint saying what to reconsider (never the answer itself);
* the right answer: ``ok = True`` and a confirmation.

Nothing here raises on a student's answer: a non-number gets a hint too.  Every notebook has at least one
exercise that needs *running* the method (marked ▶): a power method, a Jacobian at a new t, DDIM, an edit.

| notebook | checker | paper |
|---|---|---|
| 01 | ▶ :func:`check_weight_gap_peak`, :func:`check_posterior_mean` | Lemma 1 (corrected weights) |
| 02 | ▶ :func:`check_power_sigma`, :func:`check_numerical_rank` | Algorithm 2, eq. 10 |
| 03 | ▶ :func:`check_linearity_error`, :func:`check_snr_prefactor` | eq. 4, eq. 8 |
| 04 | :func:`check_posterior_cov_trace`, ▶ :func:`check_learned_rank` | second-order Tweedie, eq. 10 |
| 05 | :func:`check_card_rank`, :func:`check_linearity_cosine`, ▶ :func:`check_faces16_rank` | eq. 10, eq. 4 (Figure 2) |
| 06 | ▶ :func:`check_reconstruction_psnr`, :func:`check_projection_norm`, ▶ :func:`check_edit_leakage` | eqs. 1–2, Algorithm 1 |
| 07 | :func:`check_composability`, :func:`check_linearity_r2`, ▶ :func:`check_transfer_change` | §3.2 |
| 08 | :func:`check_guided_x0`, :func:`check_text_direction`, ▶ :func:`check_hat_text_norm` | eqs. 3, 11; Algorithm 4 |

Every exercise's inputs are fixed here, as constants (``SPECTRUM``, ``CFG_T`` …) or as functions that build
seeded tensors (``projection_problem()`` …), so the notebook, the checker and the tests share them.  The ▶
checkers run the method once (a few seconds on a CPU, cached); no network runs.

**Solutions** sit in cells that start with ``if exercises.solution("NN-k", show=False):``.  Run All does not
execute them (it prints a note instead, so nobody gets the answer by running the notebook); a student opens
one on purpose by changing ``show=False`` to ``show=True``.  The test run executes all of them, and each ends
with ``assert exercises.check_…(solution)``, so a solution its checker refuses fails the run:
``notebooks/conftest.py`` sets ``LOCOCOURSE_SOLUTIONS=1`` in the environment of the pytest process,
which the nbval kernels inherit (any other runner can set the variable itself).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import torch

from lococourse.core.schedule import SCHEDULE
from lococourse.course import lab
from lococourse.course.compare import MOLRG_BASES, card_rank_ratio, compare_at, learned_vs_exact, posterior_cov_trace
from lococourse.data.molrg_images import load_molrg
from lococourse.editing.metrics import composability, linearity_r2
from lococourse.editing.tloco import text_direction
from lococourse.jacobian.subspace import numerical_rank, project_out
from lococourse.models.adapters import GuidedEps
from lococourse.models.registry import get_spec
from lococourse.theory.molrg import MoLRG

__all__ = ["Feedback", "EXERCISES", "Exercise", "SOLUTIONS_ENV", "solutions_enabled", "solution",
           "check_weight_gap_peak", "check_posterior_mean", "check_power_sigma", "check_numerical_rank",
           "check_linearity_error", "check_snr_prefactor", "check_posterior_cov_trace", "check_learned_rank",
           "check_card_rank", "check_linearity_cosine", "check_faces16_rank", "check_reconstruction_psnr",
           "check_projection_norm", "check_edit_leakage", "check_composability", "check_linearity_r2",
           "check_transfer_change", "check_guided_x0", "check_text_direction", "check_hat_text_norm",
           "GAP_RANKS", "gap_times", "GAP_POINTS", "POSTERIOR_T", "POSTERIOR_X", "POWER_T", "POWER_SEED", "power_model",
           "power_point", "SPECTRUM", "ETA", "LIN_T", "LIN_LAMBDA", "linearity_model", "PREFACTOR_T",
           "D48", "COV_T", "LEARNED_T", "molrg_d48", "molrg_d48_point", "CARD_MODEL", "LINEARITY_T",
           "LINEARITY_LAMBDA", "linearity_problem", "F16_T", "RECON_SEED", "RECON_T", "projection_problem",
           "EDIT_SEED", "EDIT_PART", "EDIT_T", "EDIT_LAMBDA", "composition_problem", "R2_STRENGTHS", "R2_CHANGES",
           "TRANSFER_SOURCE", "TRANSFER_TARGET", "TRANSFER_LAMBDA", "CFG_T", "CFG_SCALE", "CFG_X", "CFG_EPS_UNCOND",
           "CFG_EPS_COND", "TextProblem", "text_problem", "HAT_SOURCE", "HAT_PROMPT", "hat_mask"]

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


def _no_answer(exercise: str, quiet: bool, what: str = "a number") -> Feedback:
    """The placeholder ``None``: a reminder, before any (possibly slow) computation of the right answer."""
    return _reply(exercise, None, f"write your answer ({what}) in place of `None` and run the cell again.", quiet)


def _check(exercise: str, answer, right: float, close: Callable[[float, float], bool],
           hints: list[tuple[Callable[[float], bool], str]], generic: str, confirm: str, quiet: bool,
           what: str = "a number") -> Feedback:
    """Shared logic: None → reminder; non-number → hint; right → confirm; wrong → first matching hint."""
    if answer is None:
        return _no_answer(exercise, quiet, what)
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


# ---------------------------------------------------------------------------------------- solutions
#: Set to 1 to run every solution cell (the test run does: notebooks/conftest.py).
SOLUTIONS_ENV = "LOCOCOURSE_SOLUTIONS"


def solutions_enabled() -> bool:
    """Whether ``$LOCOCOURSE_SOLUTIONS`` asks for every solution cell to run (1/true/yes/on)."""
    raw = os.environ.get(SOLUTIONS_ENV, "")
    v = raw.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("", "0", "false", "no", "off"):
        return False
    raise ValueError(f"the environment variable {SOLUTIONS_ENV} must be 1 (run the solution cells) or 0 / unset; "
                     f"got {raw!r}")


def solution(exercise: str, show: bool = False) -> bool:
    """The gate at the top of a solution cell: True runs the solution.

    True when ``show`` is True (the student opens the solution on purpose) or ``$LOCOCOURSE_SOLUTIONS`` is set
    (the test run); otherwise it prints how to open it and returns False, so Run All never shows an answer.
    """
    if exercise not in EXERCISES:
        raise ValueError(f"unknown exercise {exercise!r}; exercises: {', '.join(EXERCISES)}")
    if show is True or solutions_enabled():
        return True
    print(f"[{exercise}] Solution not run: try the exercise first. To see the solution, change `show=False` to "
          f"`show=True` in this cell and run it again.")
    return False


# ---------------------------------------------------------------------------------------- 01: Lemma 1
#: Exercise 01-1 (▶): a MoLRG of a plane and a 6-D subspace (ranks 2 and 6, coordinate bases, d = 8, π = 1/2 each),
#: the mean total variation between the printed and Bayes weights over GAP_POINTS points along t = gap_times().
GAP_RANKS = (2, 6)
GAP_POINTS = 2000


def gap_times() -> torch.Tensor:
    """The 50 times of exercise 01-1 (the same as notebook 01's sweep): linspace(0.02, 1, 50), float64."""
    return torch.linspace(0.02, 1.0, 50, dtype=torch.float64)


@lru_cache(maxsize=None)
def _weight_gap_peak() -> dict[str, float]:
    """t and value of the peak of lab.weight_gap_vs_t for GAP_RANKS, and the line + plane's peak t (seed 0)."""
    ts = gap_times()
    out = {}
    for key, ranks in (("new", list(GAP_RANKS)), ("line_plane", [1, 2])):
        sw = lab.weight_gap_vs_t(lab.coordinate_molrg(ranks), ts, n_points=GAP_POINTS, seed=0)
        i = int(sw.tv.argmax())
        out[key], out[f"{key}_tv"] = float(ts[i]), float(sw.tv[i])
    return out


def check_weight_gap_peak(answer, quiet: bool = False) -> Feedback:
    """Exercise 01-1 (▶): the t at which printed and Bayes weights differ most (mean TV) for ranks (2, 6)."""
    if answer is None:
        return _no_answer("01-1 weight gap peak", quiet, "a number")
    v = _weight_gap_peak()
    right = v["new"]
    near = lambda x, w: _near(x, w, atol=0.011)  # noqa: E731  (the grid step is 0.02)
    hints = [
        (lambda x: near(x, v["line_plane"]) and not near(x, right),
         "that is where the line + plane of this notebook peaks; run lab.weight_gap_vs_t on "
         "lab.coordinate_molrg([2, 6]) instead."),
        (lambda x: _near(x, v["new_tv"], atol=2e-3), "that is the peak's height (a total variation); the question asks "
                                                     "for the time t where it occurs."),
        (lambda x: x <= 0 or x > 1, "t lies in (0, 1]."),
    ]
    return _check("01-1 weight gap peak", answer, right, near, hints,
                  "sweep = lab.weight_gap_vs_t(lab.coordinate_molrg([2, 6]), exercises.gap_times(), n_points=2000, "
                  "seed=0); take the t where sweep.tv is largest.",
                  "the two rules differ most at moderate t, where the normaliser (1−ᾱ)^{r_k/2} is large but the "
                  "projection energies do not yet decide the class; how far it sits depends on the ranks.",
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
    if answer is None:
        return _no_answer("01-2 posterior mean", quiet, "a number")

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


# ---------------------------------------------------------------------------------------- 02: the power method
#: Exercise 02-1 (▶): notebook 02's model, a new point (seed 1) at a new time.
POWER_T, POWER_SEED = 0.4, 1


@lru_cache(maxsize=None)
def power_model() -> MoLRG:
    """Notebook 02's model: smooth 16 × 16 images, ranks 4, 8, 12 (``lab.smooth_molrg((1, 16, 16), [4, 8, 12], seed=0)``)."""
    return lab.smooth_molrg((1, 16, 16), [4, 8, 12], seed=0)


def power_point() -> torch.Tensor:
    """x_t of exercise 02-1: ``lab.noisy_samples(power_model(), 0.4, n=1, seed=1).x_t[0]``."""
    return lab.noisy_samples(power_model(), POWER_T, n=1, seed=POWER_SEED).x_t[0]


@lru_cache(maxsize=None)
def _power_values() -> dict[str, float]:
    """σ₁ of the closed-form J (Lemma 2) by a dense SVD at the exercise's point, and what likely slips give."""
    model = power_model()
    S = torch.linalg.svdvals(model.jacobian(power_point(), POWER_T).reshape(model.d, model.d))
    x_other = lab.noisy_samples(model, POWER_T, n=1, seed=0).x_t[0]
    S_other = torch.linalg.svdvals(model.jacobian(x_other, POWER_T).reshape(model.d, model.d))
    x_05 = lab.noisy_samples(model, 0.5, n=1, seed=0).x_t[0]
    S_05 = torch.linalg.svdvals(model.jacobian(x_05, 0.5).reshape(model.d, model.d))
    return {"sigma1": float(S[0]), "sigma2": float(S[1]), "seed0": float(S_other[0]), "t05": float(S_05[0]),
            "sqrt_ab": float(SCHEDULE.sqrt_alpha_bar(POWER_T))}


def check_power_sigma(answer, quiet: bool = False) -> Feedback:
    """Exercise 02-1 (▶): σ₁ of J at t = 0.4 at power_point(), found with the power method (Algorithm 2, k = 1)."""
    if answer is None:
        return _no_answer("02-1 power method", quiet, "a number")
    v = _power_values()
    right = v["sigma1"]
    near = lambda x, w: _near(x, w, rtol=2e-3)  # noqa: E731
    hints = [
        (lambda x: near(x, right ** 2), "that is σ₁², an eigenvalue of JᵀJ; the power method's S holds σ₁ itself."),
        (lambda x: near(x, v["sigma2"]), "that is σ₂; with k = 1 the power method returns σ₁, the largest."),
        (lambda x: near(x, v["seed0"]), "that is σ₁ at the point of seed 0; the exercise's point is seed 1 "
                                        "(exercises.power_point())."),
        (lambda x: near(x, v["t05"]), "that is σ₁ at t = 0.5 from this notebook's cell; run the power method at t = 0.4."),
        (lambda x: near(x, v["sqrt_ab"]), "√ᾱ is the value of the first term of Lemma 2 for a one-hot class; the "
                                          "covariance term adds to it. Run the power method."),
        (lambda x: x <= 0, "a singular value is positive."),
    ]
    return _check("02-1 power method", answer, right, near, hints,
                  "top = power_method(exercises.power_model().pmp(0.4), exercises.power_point(), k=1, seed=0); "
                  "the answer is top.S[0] (3 significant digits).",
                  "Algorithm 2 found σ₁ from JVPs and VJPs alone; a dense SVD of model.jacobian agrees.",
                  quiet)


#: Exercise 02-2: a spectrum and the threshold η of eq. 10.
SPECTRUM = (10.0, 5.0, 3.0, 1.0, 0.5, 0.1)
ETA = 0.99


def check_numerical_rank(answer, quiet: bool = False) -> Feedback:
    """Exercise 02-2: the numerical rank (eq. 10, η = 0.99) of the spectrum σ = SPECTRUM."""
    if answer is None:
        return _no_answer("02-2 numerical rank", quiet, "a whole number")

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


# ---------------------------------------------------------------------------------------- 03: eq. 4 at a new t
#: Exercise 03-1 (▶): notebook 03's model, Δx in span(M), 4 points of seed 0, at a new time and step.
LIN_T, LIN_LAMBDA = 0.4, 10.0


@lru_cache(maxsize=None)
def linearity_model() -> MoLRG:
    """Notebook 03's model: smooth 3 × 32 × 32 images, ranks 10, 20, 30 (``lab.smooth_molrg((3, 32, 32), [10, 20, 30], seed=0)``)."""
    return lab.smooth_molrg((3, 32, 32), [10, 20, 30], seed=0)


@lru_cache(maxsize=None)
def _linearity_error_values() -> dict[str, float]:
    model, lam = linearity_model(), torch.tensor([LIN_LAMBDA], dtype=torch.float64)
    out = {}
    for key, t, direction in (("right", LIN_T, "in_subspace"), ("random", LIN_T, "random"),
                              ("t03", 0.3, "in_subspace"), ("t05", 0.5, "in_subspace")):
        sw = lab.linearity_vs_t(model, [t], lam, n_samples=4, seed=0, direction=direction)
        out[key] = float(sw.rel_error[0, 0])
        if key == "right":
            out["raw"], out["max"] = float(sw.error[0, 0]), float(sw.rel_error_points[0, :, 0].max())
    return out


def check_linearity_error(answer, quiet: bool = False) -> Feedback:
    """Exercise 03-1 (▶): mean relative linearisation error at t = 0.4, λ = 10, Δx in span(M), 4 points (seed 0)."""
    if answer is None:
        return _no_answer("03-1 linearisation error", quiet, "a number")
    v = _linearity_error_values()
    right = v["right"]
    near = lambda x, w: _near(x, w, rtol=1e-2)  # noqa: E731
    hints = [
        (lambda x: near(x, v["random"]), "that is for a random Δx; the exercise takes Δx inside span(M) "
                                         "(direction='in_subspace')."),
        (lambda x: near(x, v["raw"]), "that is the raw error ‖f(x+λΔx) − l‖; divide by ‖f(x)‖ (sweep.rel_error)."),
        (lambda x: near(x, v["max"]), "that is the largest of the 4 points; the question asks for their mean."),
        (lambda x: near(x, v["t03"]) or near(x, v["t05"]), "that is at another t; run lab.linearity_vs_t at t = 0.4."),
        (lambda x: x < 0, "an error norm is not negative."),
    ]
    return _check("03-1 linearisation error", answer, right, near, hints,
                  "sweep = lab.linearity_vs_t(model, [0.4], [10.0], n_samples=4, seed=0, direction='in_subspace'); "
                  "read sweep.rel_error (3 significant digits).",
                  "between the two ends of t the class posterior is uncertain, and a step inside span(M) moves it: "
                  "the error is of the size of f itself.",
                  quiet)


PREFACTOR_T = 0.5


def check_snr_prefactor(answer, quiet: bool = False) -> Feedback:
    """Exercise 03-2: the factor ᾱ/(1−ᾱ) of eq. 8 at t = 0.5."""
    if answer is None:
        return _no_answer("03-2 eq. 8 prefactor", quiet, "a number")

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
#: Exercises 04-1 and 04-2: the course model molrg_d48 and its exact MoLRG (rebuilt from its shipped bases);
#: 04-1 at the point ``molrg_d48_point(COV_T)``, 04-2 on compare_at's 4 points (seed 0) at LEARNED_T.
D48 = "molrg_d48"
COV_T = 0.5
LEARNED_T = 0.35


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
    """tr Cov[x₀|x_t] = (1−ᾱ)/√ᾱ · tr J (second-order Tweedie; compare.posterior_cov_trace) at molrg_d48_point(COV_T)."""

    return float(posterior_cov_trace(molrg_d48(), molrg_d48_point(COV_T), COV_T))


def check_posterior_cov_trace(answer, quiet: bool = False) -> Feedback:
    """Exercise 04-1: tr Cov[x₀|x_t] at t = 0.5 for molrg_d48's exact MoLRG, from its Jacobian (second-order Tweedie)."""
    if answer is None:
        return _no_answer("04-1 posterior covariance", quiet, "a number")

    right = _posterior_cov_trace()
    ab = float(SCHEDULE.alpha_bar(COV_T))
    tr_j = right * math.sqrt(ab) / (1 - ab)
    near = lambda x, v: _near(x, v, atol=2e-3)  # noqa: E731
    ranks = molrg_d48().ranks
    hints = [
        (lambda x: x < 0, "a trace of a covariance is a sum of variances: it cannot be negative."),
        (lambda x: near(x, tr_j), "that is tr J itself; second-order Tweedie says J = √ᾱ/(1−ᾱ)·Cov[x₀|x_t]: solve it for Cov."),
        (lambda x: near(x, tr_j * math.sqrt(ab) / (1 - ab)),
         "you multiplied tr J by √ᾱ/(1−ᾱ); since J = √ᾱ/(1−ᾱ)·Cov, Cov is J divided by that factor."),
        (lambda x: near(x, tr_j * (1 - ab) / ab) or near(x, tr_j / ab),
         "the factor of the identity has √ᾱ, not ᾱ (x_t = √ᾱ x₀ + √(1−ᾱ) ε)."),
        (lambda x: near(x, tr_j / math.sqrt(ab)), "you dropped the factor 1 − ᾱ."),
        (lambda x: near(x, tr_j * (1 - ab)), "you dropped the factor 1/√ᾱ."),
        (lambda x: any(near(x, (1 - ab) * r) for r in (*ranks, sum(ranks))),
         "(1−ᾱ)·r_k is the posterior variance when the class is known; at t = 0.5 both classes carry weight, "
         "and the Tweedie identity gives the whole covariance from J at this x_t."),
    ]
    return _check("04-1 posterior covariance", answer, right, near, hints,
                  "J = model.jacobian(x_t, 0.5) has shape (3, 4, 4, 3, 4, 4): reshape it to 48 × 48, take its "
                  "trace and multiply by (1−ᾱ)/√ᾱ (3 decimals are enough).",
                  "tr Cov[x₀|x_t] is the irreducible part of the x₀-loss at x_t; the loss ratio "
                  "1 + ‖f_θ − E‖²/tr Cov of this notebook compares the network's error with it.",
                  quiet)


@lru_cache(maxsize=None)
def _d48_pair():
    return learned_vs_exact(D48)


@lru_cache(maxsize=None)
def _learned_rank_values() -> dict[str, float]:
    """Mean numerical rank (eq. 10) of the learned and the exact Jacobian over compare_at's 4 points at LEARNED_T."""
    pc = compare_at(_d48_pair(), LEARNED_T, n=4, seed=0, keep_jacobians=False)
    return {"learned": float(pc.rank_learned.double().mean()), "exact": float(pc.rank_exact.double().mean()),
            "first": float(pc.rank_learned[0]), "d": pc.d, "r": pc.r}


def check_learned_rank(answer, quiet: bool = False) -> Feedback:
    """Exercise 04-2 (▶): the mean numerical rank of molrg_d48's learned Jacobian J_θ at t = 0.35 (4 points, seed 0)."""
    if answer is None:
        return _no_answer("04-2 learned rank", quiet, "a number")
    v = _learned_rank_values()
    right = v["learned"]
    near = lambda x, w: _near(x, w, atol=0.01)  # noqa: E731  (a mean of 4 whole numbers)
    hints = [
        (lambda x: near(x, v["exact"]) and not near(x, right), "that is the exact J's rank; the question asks for "
                                                               "the learned network's J_θ (pc.rank_learned)."),
        (lambda x: near(x, right / v["d"]), "that is a rank ratio (rank / d); the question asks for the rank itself."),
        (lambda x: near(x, v["first"]) and not near(x, right), "that is the first point alone; average over the 4 points."),
        (lambda x: near(x, v["r"]) and not near(x, right), "Σ r_k = 12 is the exact rank in the middle of t; "
                                                           "compute the learned one at t = 0.35."),
        (lambda x: x < 1 or x > v["d"], "a numerical rank of a 48 × 48 Jacobian lies between 1 and 48."),
    ]
    return _check("04-2 learned rank", answer, right, near, hints,
                  "pc = compare.compare_at(pairs['molrg_d48'], t=0.35, n=4, seed=0); the answer is "
                  "pc.rank_learned.float().mean() (2 decimals).",
                  "t = 0.35 lies between the sweep's times: the learned rank sits between the one class the exact "
                  "posterior picks at small t and Σ r_k in the middle.",
                  quiet)


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
    if answer is None:
        return _no_answer("05-1 card rank", quiet, "a number")
    right, t_min, rr = _card_minimum()
    ranks = [q * rr["d"] for q in rr["rank_ratio"]]
    near = lambda x, v: _near(x, v, atol=0.02)  # noqa: E731  (a mean over the card's points: 2 decimals)
    hints = [
        (lambda x: x == round(x) and abs(x - right) < 1,
         "the card records a mean over its points, not a whole number: do not round (2 decimals)."),
        (lambda x: _near(x, t_min, atol=1e-9),
         "that is the time of the minimum; the question asks for the rank there."),
        (lambda x: 0 < x < 1, "that is a rank ratio (rank / d): multiply it by d."),
        (lambda x: x == 9 and not near(x, right) and abs(x - right) >= 1,
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
    if answer is None:
        return _no_answer("05-2 eq. 4 cosine", quiet, "a number")
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


#: Exercise 05-3 (▶): faces16, DDIM trajectory 0 of this notebook's run (2 trajectories, seed 0), at a new time.
F16_T = 0.4


@lru_cache(maxsize=None)
def _faces16_ranks() -> dict[float, int]:
    """Eq. 10 on the dense Jacobian of faces16 at trajectory 0 (figure2.ddim_trajectory_points, n = 2, seed 0)."""
    from lococourse.course import figure2
    from lococourse.jacobian.operator import dense_jacobian
    from lococourse.models.registry import load_model

    model = load_model(CARD_MODEL)
    with torch.no_grad():
        points_at = figure2.ddim_trajectory_points(model.eps_model(), model.shape, n=2, seed=0)
    out = {}
    for t in figure2.snap_to_ddim_grid([0.3, F16_T, 0.5]):
        J = dense_jacobian(model.pmp(t), points_at(t)[0], method="batch").double()
        out[round(t, 3)] = numerical_rank(torch.linalg.svdvals(J.reshape(J.shape[0], -1)))
    return out


def check_faces16_rank(answer, quiet: bool = False) -> Feedback:
    """Exercise 05-3 (▶): the numerical rank (eq. 10) of faces16's J at t = 0.4 on DDIM trajectory 0 of the run."""
    if answer is None:
        return _no_answer("05-3 faces16 rank", quiet, "a whole number")
    ranks = _faces16_ranks()
    right = ranks[0.401]
    others = [r for t, r in ranks.items() if t != 0.401 and r != right]
    hints = [
        (lambda x: 0 < x < 1, "that is a rank ratio; the question asks for the rank itself."),
        (lambda x: x != round(x), "a numerical rank counts singular values: it is a whole number."),
        (lambda x: x in others, "that is the rank at a neighbouring time of the run; compute it at t = 0.4 "
                                "(compare.singular_at(run, 0.4, point=0))."),
        (lambda x: x < 1 or x > 768, "the numerical rank of a 768 × 768 Jacobian lies between 1 and 768."),
    ]
    return _check("05-3 faces16 rank", answer, right, lambda x, r: x == r, hints,
                  "sa = compare.singular_at(run, 0.4, point=0) computes the dense Jacobian at that trajectory point "
                  "and sa.rank applies eq. 10.",
                  "a handful of the 768 input directions carry 99 % of the Jacobian's energy at t = 0.4 too.",
                  quiet, what="a whole number")


# ---------------------------------------------------------------------------------------- 06: DDIM and Algorithm 1
#: Exercise 06-1 (▶): face ``sample_faces(1, RECON_SEED)`` through faces32, inverted to RECON_T and sampled back.
RECON_SEED, RECON_T = 5, 0.8


@lru_cache(maxsize=None)
def _faces32():
    from lococourse.models.registry import load_model

    return load_model("faces32")


@lru_cache(maxsize=None)
def _reconstruction_values() -> dict[str, float]:
    """PSNR (dB, data range 2) of DDIM(DDIM-Inv(x₀, 0.8), 0) against x₀ on the 100-step grid, and slips."""
    from lococourse.course.sampling import inversion_error_vs_t
    from lococourse.data.faces import sample_faces
    from lococourse.models.ddim import psnr

    x0 = sample_faces(1, RECON_SEED, size=32).images
    sw = inversion_error_vs_t(_faces32().eps_model(), x0, [RECON_T, 0.6])
    return {"right": float(sw.psnr[0, 0]), "t06": float(sw.psnr[1, 0]),
            "x_t": psnr(sw.x_t[0, 0], x0[0], 2.0), "range1": psnr(sw.reconstructions[0, 0], x0[0], 1.0),
            "mse": float(((sw.reconstructions[0, 0] - x0[0]) ** 2).mean())}


def check_reconstruction_psnr(answer, quiet: bool = False) -> Feedback:
    """Exercise 06-1 (▶): PSNR of DDIM(DDIM-Inv(x₀, 0.8), 0) against x₀ for face 5 through faces32 (dB, range 2)."""
    if answer is None:
        return _no_answer("06-1 DDIM reconstruction", quiet, "a number")
    v = _reconstruction_values()
    right = v["right"]
    near = lambda x, w: _near(x, w, atol=0.05)  # noqa: E731
    hints = [
        (lambda x: near(x, v["range1"]), "the images live in [−1, 1], so the data range is 2 (psnr(..., data_range=2)), "
                                         "not 1: the two differ by 20·log10(2) ≈ 6 dB."),
        (lambda x: near(x, v["x_t"]), "that compares the noisy x_t with x₀; sample back to 0 first: DDIM(x_t, 0)."),
        (lambda x: _near(x, v["mse"], rtol=1e-2), "that is the mean squared error; PSNR = 10·log10(range² / MSE) in dB."),
        (lambda x: near(x, v["t06"]), "that is at t = 0.6; invert to t = 0.8."),
        (lambda x: x <= 0, "a reconstruction this good has a PSNR well above 0 dB."),
    ]
    return _check("06-1 DDIM reconstruction", answer, right, near, hints,
                  "sw = sampling.inversion_error_vs_t(model.eps_model(), x0, [0.8]) with "
                  "x0 = sample_faces(1, 5, size=32).images; read sw.psnr (2 decimals).",
                  "inversion uses ε at the current point for the next step, so it is not exact; the error grows a "
                  "little with t and stays small for faces32.",
                  quiet)


def projection_problem() -> tuple[torch.Tensor, torch.Tensor]:
    """(v, Vbar) of exercise 06-2: a unit v in d = 32 and an orthonormal V̄ (32 × 5, r' = 5), seeded."""
    g = torch.Generator().manual_seed(6)
    Vbar, _ = torch.linalg.qr(torch.randn(32, 5, generator=g, dtype=_DT))
    v = Vbar @ torch.randn(5, generator=g, dtype=_DT) + 0.3 * torch.randn(32, generator=g, dtype=_DT)
    return v / v.norm(), Vbar


def check_projection_norm(answer, quiet: bool = False) -> Feedback:
    """Exercise 06-2: ‖v_p‖, v_p = v − V̄(V̄ᵀv) (Algorithm 1 step 7, before normalising), for projection_problem()."""
    if answer is None:
        return _no_answer("06-2 nullspace projection", quiet, "a number")

    v, Vbar = projection_problem()
    right = float(project_out(v, Vbar).norm())
    removed = float((Vbar.T @ v).norm())
    first = float(project_out(v, Vbar[:, :1]).norm())
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
    return _check("06-2 nullspace projection", answer, right, near, hints,
                  "compute V̄ᵀv (5 numbers), then v_p = v − V̄(V̄ᵀv) and its Euclidean norm (3 decimals are enough).",
                  "the projection removes from v exactly its part in span(V̄), the directions that move Ω^c the most; "
                  "‖v_p‖² = 1 − ‖V̄ᵀv‖².",
                  quiet)


#: Exercise 06-3 (▶): a LOCO edit of this face, part, time and strength through faces32 (max_iter 20).
EDIT_SEED, EDIT_PART, EDIT_T, EDIT_LAMBDA = 3, "mouth", 0.6, 2.0


@lru_cache(maxsize=None)
def _edit_leakage_values() -> dict[str, float]:
    """The edit's leakage (RMS change outside Ω / inside, against the λ = 0 reconstruction) and likely slips."""
    from lococourse.eval.faces import edit_face

    e = edit_face(_faces32(), EDIT_SEED, EDIT_PART, t=EDIT_T, strength=EDIT_LAMBDA, max_iter=20)
    d, m = e.edited - e.reconstruction, e.mask
    d0 = e.edited - e.original
    rms = lambda x: float(x.double().pow(2).mean().sqrt())  # noqa: E731
    return {"right": float(e.metrics["leakage"]), "plain": float(d[:, ~m].norm() / d[:, m].norm()),
            "original": rms(d0[:, ~m]) / rms(d0[:, m])}


def check_edit_leakage(answer, quiet: bool = False) -> Feedback:
    """Exercise 06-3 (▶): leakage of the LOCO edit of face 3's mouth at t = 0.6, λ = 2 (faces32)."""
    if answer is None:
        return _no_answer("06-3 edit leakage", quiet, "a number")
    v = _edit_leakage_values()
    right = v["right"]
    near = lambda x, w: _near(x, w, rtol=1e-2)  # noqa: E731
    hints = [
        (lambda x: near(x, 1 / right), "you divided inside by outside; leakage is outside over inside (0 = local)."),
        (lambda x: near(x, v["plain"]), "that is ‖Δ_out‖/‖Δ_in‖ with plain norms, which grow with the number of "
                                        "pixels; leakage compares per-pixel RMS values."),
        (lambda x: near(x, v["original"]), "measure the change against the model's own reconstruction DDIM(x_t, 0) "
                                           "(edit.reconstruction), not against x₀: the reconstruction error would count."),
        (lambda x: x < 0, "a ratio of RMS values is not negative."),
    ]
    return _check("06-3 edit leakage", answer, right, near, hints,
                  "edit = faces_eval.edit_face(model, seed=3, part='mouth', t=0.6, strength=2.0, max_iter=20); "
                  "leakage is edit.metrics['leakage'] (3 significant digits).",
                  "the mouth is a small part: compare its leakage with the eyes' edit above.",
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
    if answer is None:
        return _no_answer("07-1 composability", quiet, "a number")

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
    if answer is None:
        return _no_answer("07-2 linearity R²", quiet, "a number")
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


#: Exercise 07-3 (▶): the eyes direction of face TRANSFER_SOURCE (t = 0.6, max_iter 20) added to face TRANSFER_TARGET.
TRANSFER_SOURCE, TRANSFER_TARGET, TRANSFER_LAMBDA = 3, 8, -2.0


@lru_cache(maxsize=None)
def _transfer_values() -> dict[str, float]:
    """The estimated eye-size change of the transferred edit at λ = −2 and at +2, and the source's own change."""
    from lococourse.data.faces import FACTOR_NAMES
    from lococourse.eval.faces import apply_face_edit, find_face_direction, prepare_faces

    model = _faces32()
    source, d = find_face_direction(model, TRANSFER_SOURCE, "eyes", t=0.6, max_iter=20)
    target = prepare_faces(model, [TRANSFER_TARGET], 0.6)
    i, j = FACTOR_NAMES.index("eye_size"), FACTOR_NAMES.index("gaze")
    minus = apply_face_edit(model, target, d, TRANSFER_LAMBDA).changes
    plus = apply_face_edit(model, target, d, -TRANSFER_LAMBDA).changes
    own = apply_face_edit(model, source, d, TRANSFER_LAMBDA).changes
    return {"right": float(minus[i]), "plus": float(plus[i]), "own": float(own[i]), "gaze": float(minus[j])}


def check_transfer_change(answer, quiet: bool = False) -> Feedback:
    """Exercise 07-3 (▶): eye_size change of face 8 when face 3's eyes direction is added at λ = −2 (faces32)."""
    if answer is None:
        return _no_answer("07-3 transfer", quiet, "a number")
    v = _transfer_values()
    right = v["right"]
    near = lambda x, w: _near(x, w, atol=0.02)  # noqa: E731  (the factor estimator is good to about 0.005)
    hints = [
        (lambda x: near(x, v["plus"]) and not near(x, right), "that is at λ = +2; the exercise adds the direction at λ = −2."),
        (lambda x: near(x, v["own"]) and not near(x, right), "that is the change on the source face 3; apply the "
                                                             "direction to face 8 (prepare_faces(model, [8], 0.6))."),
        (lambda x: near(x, v["gaze"]) and not near(x, right), "that is the gaze; the question asks for eye_size."),
        (lambda x: abs(x) > 1, "factors live in [0, 1], so a change lies in [−1, 1]."),
    ]
    return _check("07-3 transfer", answer, right, near, hints,
                  "_, d = faces_eval.find_face_direction(model, 3, 'eyes', t=0.6, max_iter=20); "
                  "target = faces_eval.prepare_faces(model, [8], 0.6); edit = faces_eval.apply_face_edit(model, target, "
                  "d, -2.0); read edit.changes at FACTOR_NAMES.index('eye_size') (2 decimals).",
                  "compare it with the source's own change: homogeneity says the same factor moves the same way.",
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
    if answer is None:
        return _no_answer("08-1 guided PMP", quiet, "a number")

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
    if answer is None:
        return _no_answer("08-2 text direction", quiet, "a number")
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


#: Exercise 08-3 (▶): Algorithm 4 on the tiny IF pipeline (seed 0) with new prompts and Ω over the top of the head.
#: (The tiny pipelines read at most 16 characters of a prompt, one token per character: these fit.)
HAT_SOURCE, HAT_PROMPT = "a man", "a man in a hat"


def hat_mask(out_shape) -> torch.Tensor:
    """Ω of exercise 08-3: the top quarter of the decoded (C, H, W) image, where a hat would go."""
    from lococourse.editing.masks import rectangle

    _, h, w = tuple(out_shape)
    return rectangle((h, w), 0, 0, w, h // 4)


@lru_cache(maxsize=None)
def _hat_values() -> dict[str, float]:
    """‖d‖ = ‖P_Ω(f^e − f^o)(x_t)‖ of t_loco_text (r′ = 0) for HAT_PROMPT on the tiny IF pipeline; and slips."""
    from lococourse.course.tloco_lab import eyes_band
    from lococourse.editing.tloco import t_loco_text
    from lococourse.models.tiny import tiny_pipeline

    pipe = tiny_pipeline("if", seed=0)
    out = {}
    for key, prompt, mask_of in (("right", HAT_PROMPT, hat_mask), ("glasses", "a man in glasses", hat_mask),
                                 ("eyes", HAT_PROMPT, eyes_band)):
        m = pipe.with_prompts(HAT_SOURCE, prompt)
        res = t_loco_text(m, mask_of(m.out_shape), None, (0.0,), seed=0, r_null=0, max_iter=3)
        out[key] = float(res.direction.extra["d_norm"])
        if key == "right":
            out["v_norm"] = float(res.direction.sigma)
    return out


def check_hat_text_norm(answer, quiet: bool = False) -> Feedback:
    """Exercise 08-3 (▶): ‖d‖ of Algorithm 4 for "… wearing a hat" on the tiny IF pipeline, Ω = top quarter."""
    if answer is None:
        return _no_answer("08-3 text direction, new prompt", quiet, "a number")
    v = _hat_values()
    right = v["right"]
    near = lambda x, w: _near(x, w, rtol=1e-2)  # noqa: E731
    hints = [
        (lambda x: near(x, v["glasses"]), "that is with a glasses prompt; use exercises.HAT_PROMPT."),
        (lambda x: near(x, v["eyes"]), "that is with the eyes band of the notebook; use exercises.hat_mask(m.out_shape)."),
        (lambda x: near(x, v["v_norm"]), "that is ‖J_eᵀd‖ (direction.sigma); the question asks for ‖d‖ itself."),
        (lambda x: x <= 0, "a norm of a non-zero d is positive."),
    ]
    return _check("08-3 text direction, new prompt", answer, right, near, hints,
                  "m = tiny_pipeline('if', seed=0).with_prompts(exercises.HAT_SOURCE, exercises.HAT_PROMPT); "
                  "res = tloco.t_loco_text(m, exercises.hat_mask(m.out_shape), None, (0.0,), seed=0, r_null=0, "
                  "max_iter=3); read res.direction.extra['d_norm'] (3 significant digits).",
                  "d is what the edit prompt would change inside Ω; Algorithm 4 pulls it back to x_t with one VJP.",
                  quiet)


# ---------------------------------------------------------------------------------------- index
@dataclass(frozen=True)
class Exercise:
    notebook: str
    question: str
    check: Callable[..., Feedback]


EXERCISES: dict[str, Exercise] = {
    "01-1": Exercise("01_molrg_posterior_mean",
                     "▶ Ranks (2, 6), d = 8: the t where printed and Bayes weights differ most (mean TV).",
                     check_weight_gap_peak),
    "01-2": Exercise("01_molrg_posterior_mean",
                     "Two lines in 2-D, π = (1/2, 1/2), t = 0.3, x_t = (1, 0): the first coordinate of E[x₀|x_t].",
                     check_posterior_mean),
    "02-1": Exercise("02_jacobian_low_rank",
                     "▶ power_model() at power_point(), t = 0.4: σ₁ by the power method (Algorithm 2, k = 1).",
                     check_power_sigma),
    "02-2": Exercise("02_jacobian_low_rank",
                     "σ = (10, 5, 3, 1, 0.5, 0.1), η = 0.99: the numerical rank (eq. 10).", check_numerical_rank),
    "03-1": Exercise("03_local_linearity",
                     "▶ t = 0.4, λ = 10, Δx in span(M), 4 points: the mean relative linearisation error (eq. 4).",
                     check_linearity_error),
    "03-2": Exercise("03_local_linearity", "The factor ᾱ/(1−ᾱ) of eq. 8 at t = 0.5.", check_snr_prefactor),
    "04-1": Exercise("04_learned_vs_analytic",
                     "molrg_d48's exact MoLRG, t = 0.5, x_t = molrg_d48_point(0.5): tr Cov[x₀|x_t] from J "
                     "(second-order Tweedie).", check_posterior_cov_trace),
    "04-2": Exercise("04_learned_vs_analytic",
                     "▶ molrg_d48, t = 0.35, 4 points (seed 0): the mean numerical rank of the learned J_θ.",
                     check_learned_rank),
    "05-1": Exercise("05_figure2_course_models",
                     "faces16's card: the numerical rank (rank ratio × d) where its rank ratio is lowest.",
                     check_card_rank),
    "05-2": Exercise("05_figure2_course_models",
                     "linearity_problem(), t = 0.3, λ = 4: the cosine between f(x_t + λΔx) and f(x_t) + λJΔx (eq. 4).",
                     check_linearity_cosine),
    "05-3": Exercise("05_figure2_course_models",
                     "▶ faces16, DDIM trajectory 0, t = 0.4: the numerical rank of J (eq. 10).", check_faces16_rank),
    "06-1": Exercise("06_loco_edit",
                     "▶ faces32, face 5, t = 0.8: the PSNR of DDIM(DDIM-Inv(x₀, t), 0) in dB.", check_reconstruction_psnr),
    "06-2": Exercise("06_loco_edit",
                     "projection_problem(): ‖v − V̄(V̄ᵀv)‖ (Algorithm 1 step 7, before normalising).",
                     check_projection_norm),
    "06-3": Exercise("06_loco_edit",
                     "▶ faces32, face 3, mouth, t = 0.6, λ = 2: the leakage of the LOCO edit.", check_edit_leakage),
    "07-1": Exercise("07_loco_properties",
                     "composition_problem(): the composability ‖Δ₁₂ − Δ₁ − Δ₂‖/‖Δ₁ + Δ₂‖.", check_composability),
    "07-2": Exercise("07_loco_properties",
                     "λ = (−7, −3.5, 3.5, 7), change = (−0.24, −0.17, 0.09, 0.14): R² of a straight-line fit.",
                     check_linearity_r2),
    "07-3": Exercise("07_loco_properties",
                     "▶ face 3's eyes direction added to face 8 at λ = −2: the change of eye_size.", check_transfer_change),
    "08-1": Exercise("08_t_loco",
                     "x_t = 0.8, ε(∅) = 0.3, ε(c_o) = 0.5, s = 7.5, t = 0.5: x̂₀ = f^o(x_t) (eqs. 3 and 11).",
                     check_guided_x0),
    "08-2": Exercise("08_t_loco",
                     "text_problem(): the first entry of v/‖v‖, v = J_eᵀ P_Ω(f^e(x_t) − f^o(x_t)) "
                     "(Algorithm 4, r' = 0).",
                     check_text_direction),
    "08-3": Exercise("08_t_loco",
                     "▶ tiny IF, 'a man' → 'a man in a hat', Ω = top quarter, r′ = 0: ‖d‖ of Algorithm 4.", check_hat_text_norm),
}
