"""Course helpers around LOCO edits (notebooks 06–07): what the figures and verdicts need beyond
:mod:`lococourse.eval` — the factors an edit changed, per-factor R² of a λ sweep, RMS change inside and
outside Ω, and a source image sampled from a model for the full-mode cells (which then run
:func:`lococourse.editing.loco.loco_edit` with ``num_steps``).

Pure compute; the figures are in :mod:`lococourse.course.viz_edit`.
"""
from __future__ import annotations

import torch

from lococourse.data.faces import FACTOR_NAMES
from lococourse.editing.metrics import linearity_r2
from lococourse.eval.factors import factors_of_part
from lococourse.eval.studies import LinearityStudy, SweepStudy
from lococourse.models.ddim import ddim_grid, ddim_sample

__all__ = ["changed_factors", "factor_r2", "rms_inside_outside", "sample_image"]


def changed_factors(changes: torch.Tensor, thresholds) -> dict[str, float]:
    """The factors whose estimated change exceeds its threshold τ, with their changes rounded to 2 decimals."""
    from lococourse.eval.decisions import changed

    flags = changed(torch.as_tensor(changes), thresholds).tolist()
    return {n: round(float(v), 2) for n, v, f in zip(FACTOR_NAMES, torch.as_tensor(changes).tolist(), flags) if f}


def factor_r2(study: LinearityStudy) -> dict[str, float]:
    """R² of a straight line through Δθ̂ against λ for *every* factor of the edited part (not only the main one)."""
    return {name: linearity_r2(study.strengths, study.changes[:, FACTOR_NAMES.index(name)].numpy())
            for name in factors_of_part(study.part)}


def _rms(x: torch.Tensor) -> float:
    return float(x.double().pow(2).mean().sqrt())


def rms_inside_outside(study: SweepStudy, mask: torch.Tensor) -> tuple[list[float], list[float]]:
    """RMS pixel change of each edit of a sweep inside and outside Ω; leakage is their ratio
    (:func:`lococourse.editing.metrics.leakage`), so a weaker edit inside Ω raises it without any more leaking out."""
    mask = torch.as_tensor(mask, dtype=torch.bool)
    inside, outside = [], []
    for rec, ed in zip(study.reconstructions, study.edited):
        d = ed - rec
        inside.append(_rms(d[:, mask]))
        outside.append(_rms(d[:, ~mask]))
    return inside, outside


@torch.no_grad()
def sample_image(model, seed: int = 0, num_steps: int = 100) -> torch.Tensor:
    """One image DDIM(x_T, 0) from seeded noise x_T on a ``num_steps`` grid (η = 0): a source image for full mode."""
    g = torch.Generator().manual_seed(int(seed))
    x_T = torch.randn((1, *model.shape), generator=g)
    p = next(model.unet.parameters())
    grid = ddim_grid(num_steps)
    return ddim_sample(model.eps_model(), x_T.to(p.device, p.dtype), float(grid.t[-1]), 0.0, grid=grid)[0]
