"""Choosing among candidate directions by how local their edits are (our addition to Algorithm 1).

Algorithm 1 returns one direction v_p from steps 4–8 and samples it in step 9.  The options of
:func:`~lococourse.editing.loco.find_direction` (a guard band, the sampler's nullspace, the ridge projection, a refine
step) each give a candidate v_p for the same mask Ω, and on faces32 no one of them is the most local for every face
and part (benchmarks/results/loco_table_*.md).  Step 9 shows which is: sample every candidate's edit at ±λ and keep
the one that changes least outside Ω for what it changes inside — the pixel leakage
‖Δ_out‖_RMS / ‖Δ_in‖_RMS of :func:`~lococourse.editing.metrics.leakage`, a property of the images alone (no factor
estimator, no ground truth).  :func:`most_local` is that rule on edits already sampled;
:func:`~lococourse.editing.loco.select_direction` samples them (step 9 of each candidate) and applies it, and
``loco_edit(..., select=True)`` does it for the three ways of step 7.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch

from lococourse.editing.metrics import leakage

__all__ = ["Selection", "most_local", "plane"]


class Selection(NamedTuple):
    """What :func:`most_local` found."""

    index: int  # the most local candidate
    leakages: list  # each candidate's mean leakage over its edits


def most_local(reference: torch.Tensor, edits: Sequence[torch.Tensor], mask: torch.Tensor) -> Selection:
    """The candidate whose edits leak least: argmin_c mean_λ leakage(reference, edits[c][λ], Ω).

    ``reference``: (*S), the λ = 0 image DDIM(x_t, 0); ``edits``: one tensor (L_c, *S) per candidate c, its edits
    DDIM(x_t + λ v_c, 0) at L_c ≥ 1 strengths (e.g. ±λ); ``mask``: Ω, (H, W) boolean, neither empty nor full.
    An edit that changes nothing inside Ω has infinite leakage, so a candidate that does nothing is never chosen
    over one that does; ties go to the earlier candidate.  Returns a :class:`Selection`.
    """
    edits = list(edits)
    if not edits:
        raise ValueError("edits must hold at least one candidate's edits")
    leaks = []
    for c, e in enumerate(edits):
        e = torch.as_tensor(e)
        if e.dim() != reference.dim() + 1 or tuple(e.shape[1:]) != tuple(reference.shape) or e.shape[0] < 1:
            raise ValueError(f"edits[{c}] must have shape (L, {', '.join(map(str, reference.shape))}) with L ≥ 1, "
                             f"one edit per strength; got {tuple(e.shape)}")
        vals = [leakage(reference, e[j], mask) for j in range(e.shape[0])]
        leaks.append(math.fsum(vals) / len(vals))
    best = min(range(len(leaks)), key=lambda c: (leaks[c], c))
    return Selection(best, leaks)


def plane(mask: torch.Tensor) -> torch.Tensor:
    """Ω as (H, W): a mask of the full output shape (C, H, W) must be the same in every channel."""
    if mask.dim() == 2:
        return mask
    planes = mask.reshape(-1, *mask.shape[-2:])
    if not (planes == planes[:1]).all():
        raise ValueError(f"the candidates' mask of shape {tuple(mask.shape)} differs between channels; the pixel "
                         "leakage needs one (H, W) region")
    return planes[0]
