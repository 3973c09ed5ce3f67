"""Exercise checkers (lococourse.exercises): right answers accepted, wrong ones get a hint, None never raises.

The right answers here come from independent oracles: diffusers' DDPMScheduler for ᾱ (the paper's
linear schedule, t = (k + 1)/1000), Lemma 1 worked by hand in numpy, Theorem 1's Σ r_k, eq. 10 by
hand and the Taylor order of eq. 8.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lococourse import exercises as ex


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


def _right_answers() -> dict[str, float]:
    ab05 = _alpha_bar(0.5)
    return {
        "01-1": 2 / 2 * math.log(1 - _alpha_bar(0.3)),
        "01-2": _lemma1_by_hand(0.3, (1.0, 0.0)),
        "02-1": 4 + 8 + 12,
        "02-2": 3,  # energies 100, 25, 9, 1, .25, .01: cumulative .739, .924, .991 > .9801
        "03-1": 2.0,
        "03-2": ab05 / (1 - ab05),
    }


# Wrong answers and a phrase of the hint each must produce.
WRONG = {
    "01-1": [(0.505, "negative"), (math.log(0.3964), "1 − ᾱ"), (-0.2524, "r_k/2"), (-1.198, "log π_k"),
             (-0.219, "natural logarithm"), (-3.0, "SCHEDULE.one_minus_alpha_bar")],
    "01-2": [(0.6296, "weight"), (0.3148, "equal weights"), (0.5814, "shrink factor"), (0.2305, "√ᾱ, not ᾱ"),
             (1.5, "convex combination"), (0.5, "softmax")],
    "02-1": [(256, "span(M)"), (12, "every class"), (23.5, "whole number"), (300, "between 0 and 256"),
             (20, "add up")],
    "02-2": [(5, "squares"), (6, "exact rank"), (2, "not yet exceeded"), (3.5, "whole number"), (4, "cumulative energy")],
    "03-1": [(1, "λ · O(λ)"), (0, "grows"), (3, "second-order"), (1.6, "Taylor")],
    "03-2": [(0.0786, "that is ᾱ"), (11.72, "inverted"), (0.292, "square root"), (0.9214, "1 − ᾱ"),
             (-0.1, "positive"), (0.5, "SCHEDULE.alpha_bar")],
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
    fb = ex.check_jacobian_rank(bad, quiet=True)
    assert fb.ok is False and "should be a whole number" in fb.message


def test_quiet_prints_nothing(capsys):
    ex.check_snr_prefactor(1.0, quiet=True)
    assert capsys.readouterr().out == ""
