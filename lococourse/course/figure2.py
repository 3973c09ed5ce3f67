"""Figure 2 of Chen et al. (2024) for any PMP: rank ratio of J vs t, and local linearity vs λ.

(a) rank ratio = numerical rank (eq. 10, η = 0.99) of J_{θ,t}(x_t) over the ambient dimension d,
    averaged over several x_t, at each t;
(b) norm ratio ‖f(x_t + λΔx)‖/‖l(x_t; λΔx)‖ and cosine between them (eq. 4), against λ, at one t.

The model is given as ``pmp_at(t) -> PMP`` and the points as ``points_at(t) -> x_t`` of shape
(n, *S): noised data, a DDIM trajectory (Appendix D.1), or anything else.  Pure compute: plots live
in :mod:`lococourse.course.viz`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from lococourse.core.checks import check_positive_int
from lococourse.core.schedule import check_t
from lococourse.jacobian.linearity import local_linearity
from lococourse.jacobian.operator import MAX_DENSE_ENTRIES, dense_jacobian
from lococourse.jacobian.subspace import numerical_rank
from lococourse.models.ddim import ddim_grid, ddim_sample
from lococourse.models.registry import LoadedModel, load_model

__all__ = ["RankCurve", "LinearityCurve", "rank_curve", "linearity_curve", "ddim_trajectory_points",
           "snap_to_ddim_grid"]


@dataclass
class RankCurve:
    ts: np.ndarray  # (n_t,)
    ranks: np.ndarray  # (n_t, n_points): numerical rank (eq. 10) of each J
    d: int
    eta: float
    spectra: list = field(default_factory=list)  # per t: (n_points, d) singular values

    @property
    def rank_ratio(self) -> np.ndarray:
        """Mean rank ratio per t, shape (n_t,)."""
        return self.ranks.mean(axis=1) / self.d

    def minimum(self) -> tuple[float, float]:
        """(smallest mean rank ratio, the t where it occurs)."""
        i = int(np.argmin(self.rank_ratio))
        return float(self.rank_ratio[i]), float(self.ts[i])

    def as_dict(self) -> dict:
        return {"t": self.ts.tolist(), "rank_ratio": self.rank_ratio.round(6).tolist(),
                "rank_mean": self.ranks.mean(1).round(3).tolist(), "d": self.d, "eta": self.eta}


@dataclass
class LinearityCurve:
    t: float
    lambdas: np.ndarray  # (L,)
    norm_ratio: np.ndarray  # (n_points, L)
    cosine: np.ndarray  # (n_points, L)
    error: np.ndarray  # (n_points, L)

    def as_dict(self) -> dict:
        return {"t": self.t, "lambda": self.lambdas.tolist(),
                "norm_ratio": self.norm_ratio.mean(0).round(6).tolist(),
                "cosine": self.cosine.mean(0).round(6).tolist(),
                "error": self.error.mean(0).round(6).tolist()}


def rank_curve(pmp_at: Callable[[float], Callable], points_at: Callable[[float], torch.Tensor], ts: Sequence[float],
               eta: float = 0.99, keep_spectra: bool = False, max_entries: int = MAX_DENSE_ENTRIES,
               progress: bool = True) -> RankCurve:
    """Figure 2(a): numerical rank (eq. 10) of the dense PMP Jacobian at each t, for each point x_t."""
    ts = [float(t) for t in ts]
    check_t(ts)
    ranks, spectra, d = [], [], None
    bar = tqdm(total=len(ts), desc="rank curve", disable=not progress)
    for t in ts:
        f, X = pmp_at(t), points_at(t)
        row, spec = [], []
        for x in X:
            J = dense_jacobian(f, x, max_entries=max_entries)
            S = torch.linalg.svdvals(J.double())
            d = J.shape[1]
            row.append(numerical_rank(S, eta))
            if keep_spectra:
                spec.append(S.numpy())
        ranks.append(row)
        spectra.append(np.stack(spec) if keep_spectra else None)
        bar.update(1)
    bar.close()
    return RankCurve(np.array(ts), np.array(ranks, dtype=float), int(d), eta, spectra if keep_spectra else [])


def linearity_curve(f: Callable, X: torch.Tensor, lambdas: Sequence[float], seed: int = 0,
                    directions: torch.Tensor | None = None) -> LinearityCurve:
    """Figure 2(b): eq. 4 diagnostics at each x_t in X (n, *S) along seeded random unit directions Δx."""
    if directions is None:
        g = torch.Generator().manual_seed(seed)
        directions = torch.randn(X.shape, generator=g, dtype=torch.float64).to(X)
    if directions.shape != X.shape:
        raise ValueError(f"directions must have the shape of X {tuple(X.shape)}; got {tuple(directions.shape)}")
    res = [local_linearity(f, x, dx, lambdas) for x, dx in zip(X, directions)]
    return LinearityCurve(float(getattr(f, "t", float("nan"))), res[0].lambdas.numpy(),
                          np.stack([r.norm_ratio.numpy() for r in res]), np.stack([r.cosine.numpy() for r in res]),
                          np.stack([r.error.numpy() for r in res]))


def ddim_trajectory_points(eps_model, shape, n: int = 3, seed: int = 0, grid=None,
                           device=None) -> Callable[[float], torch.Tensor]:
    """x_t along DDIM sampling trajectories from n seeded noises (Appendix D.1): returns t ↦ x_t (n, *S).

    One 100-step DDIM run from t = 1 (or on ``grid``); each requested t gets the trajectory's grid level
    nearest to it.  The noise is drawn on the CPU (so it is the same on every machine) and moved to ``device``.
    """

    grid = ddim_grid() if grid is None else grid
    g = torch.Generator().manual_seed(seed)
    x_T = torch.randn((n, *shape), generator=g).to(device or "cpu")
    j_top = grid.num_steps
    _, traj = ddim_sample(eps_model, x_T, float(grid.t[j_top]), 0.0, grid=grid, return_trajectory=True)
    # traj[i] is at level j_top − i

    def points_at(t: float) -> torch.Tensor:
        return traj[j_top - grid.index(t)]

    return points_at


def snap_to_ddim_grid(ts: Sequence[float], grid=None) -> list[float]:
    """Each t moved to its nearest DDIM grid time, so that the PMP's timestep and the DDIM level a
    trajectory point comes from (:func:`ddim_trajectory_points`) are the same."""

    grid = ddim_grid() if grid is None else grid
    return [grid.snap(t) for t in ts]


# ---------------------------------------------------------------------------------------- the whole Figure 2
@dataclass
class Figure2Run:
    """The paper's Figure 2 for one model, with what the plots and widgets need kept."""

    name: str
    source: str
    shape: tuple
    n: int
    seed: int
    rank: object | None  # lococourse.course.figure2.RankCurve (spectra kept), None if no ts
    linearity: object  # lococourse.course.figure2.LinearityCurve
    points_at: Callable[[float], torch.Tensor]  # t ↦ x_t (n, *S) along the DDIM trajectories
    model: object = None  # the LoadedModel (for :func:`singular_at`)
    grid: object = None  # the DDIMGrid of the trajectories (None: the 100-step grid)

    @property
    def d(self) -> int:
        return math.prod(self.shape)

    def as_dict(self) -> dict:
        """The numbers as a JSON-ready dict (what ``lococourse rank-curve`` writes and ``viz.figure2_panels`` draws)."""
        if self.rank is not None:
            rmin, tmin = self.rank.minimum()
            rc, rmin, tmin = self.rank.as_dict(), round(rmin, 6), tmin
        else:
            rc, rmin, tmin = {"t": [], "rank_ratio": [], "rank_mean": [], "d": self.d, "eta": 0.99}, None, None
        return {"model": self.name, "source": self.source, "d": self.d, "n_points": self.n, "seed": self.seed,
                "rank_curve": rc, "min_rank_ratio": rmin, "t_at_min": tmin, "linearity": self.linearity.as_dict()}


def figure2_run(model, ts, n: int = 2, seed: int = 0, linearity_t: float = 0.7,
                lambdas=(0, 10, 20, 30, 40), progress: bool = False, num_steps: int = 100) -> Figure2Run:
    """Figure 2 (a) and (b) for ``model`` (a name, a folder or a :class:`~lococourse.models.registry.LoadedModel`).

    What ``lococourse rank-curve`` computes (n seeded 100-step DDIM
    trajectories, Appendix D.1; dense Jacobians, eq. 10; eq. 4 along seeded random directions), with
    the singular spectra and the trajectory points kept.  ``ts = ()`` skips panel (a) (for models whose
    dense Jacobian does not fit, such as 256² hub models).  ``num_steps`` < 100 runs the trajectories on a
    coarser DDIM grid (the real-size stand-ins on a CPU); the requested times snap to that grid.
    """

    ts = [float(t) for t in ts]
    if ts:
        check_t(ts)
    check_t(linearity_t)
    check_positive_int(n, "n")
    grid = ddim_grid(num_steps)
    ts, linearity_t = snap_to_ddim_grid(ts, grid), snap_to_ddim_grid([linearity_t], grid)[0]
    m = model if isinstance(model, LoadedModel) else load_model(model)
    with torch.no_grad():
        points_at = ddim_trajectory_points(m.eps_model(), m.shape, n=n, seed=seed, grid=grid,
                                           device=next(m.unet.parameters()).device)
    rc = rank_curve(m.pmp, points_at, ts, keep_spectra=True, progress=progress) if ts else None
    lc = linearity_curve(m.pmp(linearity_t), points_at(linearity_t), lambdas, seed=seed)
    return Figure2Run(m.spec.name, m.spec.source, tuple(m.shape), n, seed, rc, lc, points_at, m, grid)
