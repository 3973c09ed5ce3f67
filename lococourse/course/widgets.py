"""ipywidgets front-ends: thin views over :mod:`lococourse.course.lab` (compute) and :mod:`lococourse.course.viz` (figures).

Each widget comes as a pair:

* a *view* ``*_view(...) -> Figure``: validates its parameters, calls one or two lab functions and
  one viz function.  Views raise clear ``ValueError``s and are what the tests call.
* a *builder* ``*_widget(...) -> ipywidgets.interactive``: sliders and menus wired to the view.
  The builder runs the view once at construction; ``widget.result`` holds the last Figure.

ipywidgets only prints an exception raised inside a callback, so nothing but wiring lives here.
"""
from __future__ import annotations

import torch
from IPython.display import display
from ipywidgets import Dropdown, FloatSlider, fixed, interactive
from matplotlib.figure import Figure

from lococourse.core.schedule import check_t
from lococourse.course import lab, viz
from lococourse.theory.molrg import MoLRG

__all__ = [
    "MIXTURES", "posterior_view", "posterior_widget", "jacobian_view", "jacobian_widget",
    "linearity_view", "linearity_widget",
]

#: Menu of low-dimensional mixtures for :func:`posterior_widget`: label → (ranks, d).
MIXTURES: dict[str, tuple[tuple[int, ...], int]] = {
    "two lines in 2-D (r = 1, 1)": ((1, 1), 2),
    "two lines in 3-D (r = 1, 1)": ((1, 1), 3),
    "line + plane in 3-D (r = 1, 2)": ((1, 2), 3),
}


def _interactive(view, **controls) -> interactive:
    """``interactive`` over a view that returns a Figure: display it, and keep it as ``widget.result``."""
    def show(**kwargs) -> Figure:
        fig = view(**kwargs)
        display(fig)
        return fig

    return interactive(show, **controls)


def _check_prob(p, name: str) -> float:
    p = float(p)
    if not 0 < p < 1:
        raise ValueError(f"{name} must lie strictly between 0 and 1; got {p}")
    return p


def _t_slider(t: float, lo: float = 0.02) -> FloatSlider:
    """A t slider on [lo, 1]; a start value outside it is refused (a slider would clip it silently)."""
    check_t(t)
    if not lo <= t <= 1:
        raise ValueError(f"the t slider covers [{lo}, 1]; got t = {t}")
    return FloatSlider(value=t, min=lo, max=1.0, step=0.01, description="t", continuous_update=False)


# ---------------------------------------------------------------------------------------- 01
def posterior_view(t: float = 0.2, ranks=(1, 2), d: int = 3, pi1: float = 0.5, n_points: int = 300,
                   n_mc: int = 20_000, seed: int = 0) -> Figure:
    """Class weights of Lemma 1 with Bayes' rule vs the paper's printed weights, on a 2-mixture in d = 2 or 3."""
    check_t(t)
    ranks = tuple(int(r) for r in ranks)
    if len(ranks) != 2:
        raise ValueError(f"posterior_view shows a mixture of K = 2 subspaces; got ranks = {ranks}")
    if d not in (2, 3):
        raise ValueError(f"posterior_view draws points, so d must be 2 or 3; got d = {d}")
    pi1 = _check_prob(pi1, "pi1 (the weight π_1 of class 1)")
    model = lab.coordinate_molrg(ranks, d, weights=[pi1, 1 - pi1])
    comparison = lab.compare_weight_rules(model, t, n_points=n_points, n_mc=n_mc, seed=seed)
    return viz.posterior_dashboard(model, comparison)


def _posterior_from_menu(t: float, mixture: str, pi1: float, n_points: int, n_mc: int, seed: int) -> Figure:
    if mixture not in MIXTURES:
        raise ValueError(f"mixture must be one of {list(MIXTURES)}; got {mixture!r}")
    ranks, d = MIXTURES[mixture]
    return posterior_view(t, ranks, d, pi1, n_points, n_mc, seed)


def posterior_widget(t: float = 0.2, mixture: str = "line + plane in 3-D (r = 1, 2)", pi1: float = 0.5,
                     n_points: int = 300, n_mc: int = 20_000, seed: int = 0) -> interactive:
    """Sliders for t and π_1, a menu of mixtures (see :data:`MIXTURES`); shows :func:`posterior_view`."""
    if mixture not in MIXTURES:
        raise ValueError(f"mixture must be one of {list(MIXTURES)}; got {mixture!r}")
    if not 0.05 <= pi1 <= 0.95:
        raise ValueError(f"the π₁ slider covers [0.05, 0.95]; got pi1 = {pi1}")
    return _interactive(
        _posterior_from_menu,
        t=_t_slider(t),
        mixture=Dropdown(options=list(MIXTURES), value=mixture, description="mixture"),
        pi1=FloatSlider(value=pi1, min=0.05, max=0.95, step=0.05, description="π₁", continuous_update=False),
        n_points=fixed(n_points), n_mc=fixed(n_mc), seed=fixed(seed),
    )


# ---------------------------------------------------------------------------------------- 02
def jacobian_view(model: MoLRG, t: float = 0.5, sweep: lab.SpectrumSweep | None = None, seed: int = 0) -> Figure:
    """Spectrum of the exact Jacobian at t, next to rank ratio and alignment along t (``sweep``, computed if None)."""
    check_t(t)
    current = lab.spectrum_vs_t(model, [t], n_samples=1, seed=seed)
    if sweep is None:
        sweep = lab.spectrum_vs_t(model, torch.linspace(0.05, 1.0, 20, dtype=torch.float64), n_samples=1, seed=seed)
    return viz.jacobian_dashboard(current, sweep)


def jacobian_widget(model: MoLRG, t: float = 0.5, sweep: lab.SpectrumSweep | None = None, seed: int = 0) -> interactive:
    """A t slider over :func:`jacobian_view`; the sweep along t is computed once, here."""
    if not isinstance(model, MoLRG):
        raise TypeError(f"model must be a MoLRG; got {type(model).__name__}")
    slider = _t_slider(t)
    if sweep is None:
        sweep = lab.spectrum_vs_t(model, torch.linspace(0.05, 1.0, 20, dtype=torch.float64), n_samples=1, seed=seed)
    return _interactive(jacobian_view, model=fixed(model), t=slider, sweep=fixed(sweep), seed=fixed(seed))


# ---------------------------------------------------------------------------------------- 03
def linearity_view(model: MoLRG, t: float = 0.7, lam: float = 20.0, direction: str = "random",
                   lam_max: float = 40.0, n_samples: int = 1, seed: int = 0) -> Figure:
    """Eq. 4 at one t: norm ratio, cosine and error for λ ∈ [0, lam_max], and the images at λ = ``lam``."""
    check_t(t)
    if not lam_max > 0:
        raise ValueError(f"lam_max must be positive; got {lam_max}")
    if not 0 <= lam <= lam_max:
        raise ValueError(f"lam must lie in [0, lam_max] = [0, {lam_max}]; got {lam}")
    lambdas = torch.linspace(0, lam_max, 41, dtype=torch.float64)
    sweep = lab.linearity_vs_t(model, [t], lambdas, n_samples=n_samples, seed=seed, direction=direction)
    li = lab.linearized_images(model, t, lam, seed=seed, direction=direction)
    return viz.linearity_dashboard(sweep, li)


def linearity_widget(model: MoLRG, t: float = 0.7, lam: float = 20.0, direction: str = "random",
                     lam_max: float = 40.0, seed: int = 0) -> interactive:
    """Sliders for t and λ and a menu for the direction Δx over :func:`linearity_view`."""
    if not isinstance(model, MoLRG):
        raise TypeError(f"model must be a MoLRG; got {type(model).__name__}")
    if direction not in ("random", "in_subspace"):
        raise ValueError(f"direction must be 'random' or 'in_subspace'; got {direction!r}")
    if not 0 <= lam <= lam_max:
        raise ValueError(f"lam must lie in [0, lam_max] = [0, {lam_max}]; got {lam}")
    return _interactive(
        linearity_view, model=fixed(model), t=_t_slider(t),
        lam=FloatSlider(value=lam, min=0.0, max=lam_max, step=1.0, description="λ", continuous_update=False),
        direction=Dropdown(options=["random", "in_subspace"], value=direction, description="Δx"),
        lam_max=fixed(lam_max), n_samples=fixed(1), seed=fixed(seed),
    )
