"""ipywidgets front-ends: thin views over :mod:`lococourse.course.lab` (compute) and :mod:`lococourse.course.viz` (figures).

Each widget comes as a pair:

* a *view* ``*_view(...) -> Figure``: validates its parameters, calls one or two lab functions and
  one viz function.  Views raise clear ``ValueError``s and are what the tests call.
* a *builder* ``*_widget(...) -> ipywidgets.interactive``: sliders and menus wired to the view.
  The builder checks its start values (a slider would clip them silently), runs the view once at
  construction; ``widget.result`` holds the last Figure.

Every builder goes through :func:`interactive_view`: an exception raised by a view inside a slider's
callback is *printed* under the widget (its type and message) and ``widget.result`` becomes None —
never re-raised, so a bad combination of slider values cannot fail a notebook run (nbval, Run All).

Notebooks 01–03 (:func:`posterior_widget`, :func:`jacobian_widget`, :func:`linearity_widget`), 04
(:func:`compare_widget`) and 05 (:func:`figure2_widget`); the edit widgets of 06–08 live in
:mod:`lococourse.course.viz_edit` and use the same :func:`interactive_view`.
"""
from __future__ import annotations

import torch
from IPython.display import display
from ipywidgets import Dropdown, FloatSlider, IntSlider, fixed, interactive
from matplotlib.figure import Figure

from lococourse.core.schedule import check_t
from lococourse.course import lab, viz, viz_compare
from lococourse.course.compare import ComparisonSweep, LearnedVsExact
from lococourse.course.figure2 import Figure2Run
from lococourse.theory.molrg import MoLRG

__all__ = [
    "MIXTURES", "interactive_view", "posterior_view", "posterior_widget", "jacobian_view", "jacobian_widget",
    "linearity_view", "linearity_widget", "compare_widget", "figure2_widget",
]

#: Menu of low-dimensional mixtures for :func:`posterior_widget`: label → (ranks, d).
MIXTURES: dict[str, tuple[tuple[int, ...], int]] = {
    "two lines in 2-D (r = 1, 1)": ((1, 1), 2),
    "two lines in 3-D (r = 1, 1)": ((1, 1), 3),
    "line + plane in 3-D (r = 1, 2)": ((1, 2), 3),
}


def interactive_view(view, **controls) -> interactive:
    """``ipywidgets.interactive`` over a view that returns a Figure: display it and keep it as ``widget.result``.

    An exception raised by the view (a bad combination of slider values) is printed under the widget as
    ``"<type>: <message>"`` and ``widget.result`` becomes None; it is never re-raised, so it cannot fail the
    cell that built the widget (nbval, Run All).  Builders validate their start values before calling this.
    """
    def show(**kwargs) -> Figure | None:
        try:
            fig = view(**kwargs)
        except Exception as e:  # noqa: BLE001 — a widget callback reports, it does not raise
            print(f"{type(e).__name__}: {e}")
            return None
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
    return interactive_view(
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
    return interactive_view(jacobian_view, model=fixed(model), t=slider, sweep=fixed(sweep), seed=fixed(seed))


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
    return interactive_view(
        linearity_view, model=fixed(model), t=_t_slider(t),
        lam=FloatSlider(value=lam, min=0.0, max=lam_max, step=1.0, description="λ", continuous_update=False),
        direction=Dropdown(options=["random", "in_subspace"], value=direction, description="Δx"),
        lam_max=fixed(lam_max), n_samples=fixed(1), seed=fixed(seed),
    )


# ---------------------------------------------------------------------------------------- 04
def compare_widget(pairs: dict, sweeps: dict | None = None, name: str | None = None, t: float = 0.5, point: int = 0,
                   n: int = 4, seed: int = 0) -> interactive:
    """Notebook 04: a model menu, a t slider and a point slider over :func:`viz_compare.compare_view`.

    ``pairs`` maps names to :class:`~lococourse.course.compare.LearnedVsExact`; ``sweeps`` (optional) maps the
    same names to their :class:`~lococourse.course.compare.ComparisonSweep` (the curves the view marks t on).
    """
    if not pairs or not all(isinstance(p, LearnedVsExact) for p in pairs.values()):
        raise ValueError("pairs must be a non-empty dict name → LearnedVsExact (compare.learned_vs_exact)")
    name = next(iter(pairs)) if name is None else name
    if name not in pairs:
        raise ValueError(f"name must be one of {list(pairs)}; got {name!r}")
    if sweeps is not None and not all(isinstance(s, ComparisonSweep) for s in sweeps.values()):
        raise ValueError("sweeps must be a dict name → ComparisonSweep (compare.compare_vs_t) or None")
    check_t(t)
    if not 0.05 <= t <= 1:
        raise ValueError(f"the t slider covers [0.05, 1]; got t = {t}")
    if isinstance(point, bool) or not isinstance(point, int) or not 0 <= point < n:
        raise ValueError(f"point must be an integer in 0..{n - 1}; got {point!r}")
    return interactive_view(
        viz_compare.compare_view,
        pair=Dropdown(options=pairs, value=pairs[name], description="model"),
        t=FloatSlider(value=t, min=0.05, max=1.0, step=0.05, description="t", continuous_update=False),
        point=IntSlider(value=point, min=0, max=n - 1, description="point", continuous_update=False),
        sweep=fixed(sweeps), n=fixed(n), seed=fixed(seed),
    )


# ---------------------------------------------------------------------------------------- 05
def figure2_widget(run: Figure2Run, t: float = 0.7, point: int = 0, k: int = 4) -> interactive:
    """Notebook 05: t and trajectory sliders over :func:`viz_compare.figure2_view` (dense Jacobian, x_t, x̂₀, v_1…v_k)."""
    if not isinstance(run, Figure2Run):
        raise TypeError(f"run must be a Figure2Run (figure2.figure2_run); got {type(run).__name__}")
    check_t(t)
    if not 0.05 <= t <= 1:
        raise ValueError(f"the t slider covers [0.05, 1]; got t = {t}")
    if isinstance(point, bool) or not isinstance(point, int) or not 0 <= point < run.n:
        raise ValueError(f"point must be an integer in 0..{run.n - 1} (the run has {run.n} trajectories); got {point!r}")
    return interactive_view(
        viz_compare.figure2_view, run=fixed(run),
        t=FloatSlider(value=t, min=0.05, max=1.0, step=0.05, description="t", continuous_update=False),
        point=IntSlider(value=point, min=0, max=run.n - 1, description="trajectory", continuous_update=False),
        k=fixed(k),
    )
