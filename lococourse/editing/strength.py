"""The edit strength λ of Algorithm 1 step 9, chosen per direction for a target effect (our addition).

The paper picks λ by hand per edit (Appendix G).  A unit direction v_p moves the image by different amounts for
different parts and methods, so one λ over-drives some directions and under-drives others.
:func:`strength_for_target` finds, by one batched sweep, the λ at which a measured response of the edit
(e.g. the change of the edited part's main factor) reaches a target, interpolating linearly between the two
sweep points that bracket it; the choice and the whole sweep are returned for recording in the Direction.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

__all__ = ["StrengthChoice", "strength_for_target", "default_strength_grid"]


@dataclass
class StrengthChoice:
    """λ for a target response, and the sweep it came from."""

    strength: float  # the chosen λ > 0 (apply ±λ)
    target: float
    reached: bool  # False: no grid λ reached the target; strength is then the largest λ of the grid
    grid: list  # the λ swept (increasing)
    response: list  # the measured response at each grid λ

    def as_dict(self) -> dict:
        return asdict(self)


def default_strength_grid(d: int, n: int = 6) -> list[float]:
    """A geometric λ grid √d·(1/64 … 1/2) for unit directions in d dimensions (the paper's λ = 15 at 256 px ≈ √d/30)."""
    if isinstance(d, bool) or not isinstance(d, int) or d < 1:
        raise ValueError(f"d must be a positive integer; got {d!r}")
    return [round(math.sqrt(d) * 2.0 ** (-6 + 5 * i / (n - 1)), 4) for i in range(n)]


def strength_for_target(response: Callable[[Sequence[float]], Sequence[float]], target: float,
                        grid: Sequence[float]) -> StrengthChoice:
    """The smallest λ at which ``response`` reaches ``target``.

    ``response(lams)`` measures the edit's effect at each λ of a list in one call (one batched sampling).  The
    response at λ = 0 is taken as 0; between the first grid point λ_i whose response reaches the target and the
    one before it, λ is interpolated linearly (exact for a response linear in λ).
    """
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not math.isfinite(target) or target <= 0:
        raise ValueError(f"the target change must be a positive finite number; got {target!r}")
    lams = [float(v) for v in grid]
    if not lams or any(not math.isfinite(v) or v <= 0 for v in lams) or any(b <= a for a, b in zip(lams, lams[1:])):
        raise ValueError(f"the strength grid must be a non-empty increasing list of positive λ; got {list(grid)!r}")
    resp = [float(v) for v in response(lams)]
    if len(resp) != len(lams) or any(not math.isfinite(v) for v in resp):
        raise ValueError(f"response must return one finite number per λ ({len(lams)}); got {resp!r}")
    prev_l, prev_r = 0.0, 0.0
    for lam, r in zip(lams, resp):
        if r >= target:
            lam_star = prev_l + (target - prev_r) * (lam - prev_l) / (r - prev_r) if r > prev_r else lam
            return StrengthChoice(float(min(max(lam_star, prev_l), lam)), float(target), True, lams, resp)
        prev_l, prev_r = lam, max(prev_r, r)
    return StrengthChoice(lams[-1], float(target), False, lams, resp)
