"""Widget builders and their views (lococourse.course.widgets), and the figures of lococourse.course.viz."""
from __future__ import annotations

import ipywidgets
import pytest
import torch
from matplotlib.figure import Figure

from lococourse.course import lab, viz, widgets


@pytest.fixture(scope="module")
def small_img():
    return lab.smooth_molrg((1, 6, 6), [2, 3], seed=0)


@pytest.fixture(scope="module")
def small_sweep(small_img):
    return lab.spectrum_vs_t(small_img, [0.2, 0.6, 1.0], n_samples=1, seed=0)


def _controls(w: ipywidgets.interactive) -> dict:
    return {c.description: c for c in w.kwargs_widgets if hasattr(c, "description")}


# ---------------------------------------------------------------------------------------- 01
@pytest.mark.parametrize("t, ranks, d, pi1", [(0.2, (1, 2), 3, 0.5), (0.05, (1, 1), 2, 0.3), (1.0, (1, 1), 3, 0.9)])
def test_posterior_view_returns_figure(t, ranks, d, pi1):
    fig = widgets.posterior_view(t, ranks, d, pi1, n_points=40, n_mc=500)
    assert isinstance(fig, Figure) and len(fig.axes) >= 3


@pytest.mark.parametrize("kwargs, match", [
    (dict(t=0.0), "t must lie"), (dict(t=1.5), "t must lie"), (dict(pi1=1.0), "pi1"), (dict(pi1=0.0), "pi1"),
    (dict(ranks=(1, 1, 1)), "K = 2"), (dict(d=4), "d must be 2 or 3"), (dict(ranks=(2, 2), d=3), "Σ r_k"),
])
def test_posterior_view_rejects_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        widgets.posterior_view(**{"n_points": 10, "n_mc": 100, **kwargs})


def test_posterior_widget_builds_and_updates():
    w = widgets.posterior_widget(t=0.3, n_points=30, n_mc=300)
    assert isinstance(w, ipywidgets.interactive)
    assert isinstance(w.result, Figure)
    c = _controls(w)
    assert {"t", "mixture", "π₁"} <= set(c)
    first = w.result
    c["mixture"].value = "two lines in 2-D (r = 1, 1)"
    assert isinstance(w.result, Figure) and w.result is not first
    c["t"].value = 0.8
    c["π₁"].value = 0.25
    assert isinstance(w.result, Figure)


def test_posterior_widget_rejects_bad_parameters():
    with pytest.raises(ValueError, match="mixture must be one of"):
        widgets.posterior_widget(mixture="three planes")
    with pytest.raises(ValueError, match="t must lie"):
        widgets.posterior_widget(t=2.0)
    with pytest.raises(ValueError, match="pi1"):
        widgets.posterior_widget(pi1=1.2)
    with pytest.raises(ValueError, match="slider covers"):  # a slider would clip these silently
        widgets.posterior_widget(pi1=0.01)
    with pytest.raises(ValueError, match="slider covers"):
        widgets.posterior_widget(t=0.01)


# ---------------------------------------------------------------------------------------- 02
@pytest.mark.parametrize("t", [0.05, 0.5, 1.0])
def test_jacobian_view_returns_figure(small_img, small_sweep, t):
    assert isinstance(widgets.jacobian_view(small_img, t, sweep=small_sweep), Figure)


def test_jacobian_view_computes_its_own_sweep(small_img):
    assert isinstance(widgets.jacobian_view(small_img, 0.4), Figure)


def test_jacobian_widget(small_img, small_sweep):
    w = widgets.jacobian_widget(small_img, t=0.5, sweep=small_sweep)
    assert isinstance(w, ipywidgets.interactive) and isinstance(w.result, Figure)
    _controls(w)["t"].value = 0.9
    assert isinstance(w.result, Figure)
    with pytest.raises(ValueError, match="t must lie"):
        widgets.jacobian_view(small_img, 0.0, sweep=small_sweep)
    with pytest.raises(TypeError, match="MoLRG"):
        widgets.jacobian_widget("not a model")
    with pytest.raises(ValueError, match="t must lie"):
        widgets.jacobian_widget(small_img, t=-0.1, sweep=small_sweep)


# ---------------------------------------------------------------------------------------- 03
@pytest.mark.parametrize("t, lam, direction", [(0.7, 20.0, "random"), (0.3, 0.0, "in_subspace"), (1.0, 40.0, "random")])
def test_linearity_view_returns_figure(small_img, t, lam, direction):
    assert isinstance(widgets.linearity_view(small_img, t, lam, direction), Figure)


@pytest.mark.parametrize("kwargs, match", [
    (dict(t=0.0), "t must lie"), (dict(lam=50.0), "lam must lie"), (dict(lam=-1.0), "lam must lie"),
    (dict(lam_max=0.0), "lam_max"), (dict(direction="up"), "direction must be"),
])
def test_linearity_view_rejects_bad_parameters(small_img, kwargs, match):
    with pytest.raises(ValueError, match=match):
        widgets.linearity_view(small_img, **kwargs)


def test_linearity_widget(small_img):
    w = widgets.linearity_widget(small_img, t=0.7, lam=10.0)
    assert isinstance(w, ipywidgets.interactive) and isinstance(w.result, Figure)
    c = _controls(w)
    assert {"t", "λ", "Δx"} <= set(c)
    c["λ"].value = 30.0
    c["Δx"].value = "in_subspace"
    c["t"].value = 0.4
    assert isinstance(w.result, Figure)
    with pytest.raises(ValueError, match="direction must be"):
        widgets.linearity_widget(small_img, direction="up")
    with pytest.raises(ValueError, match="lam must lie"):
        widgets.linearity_widget(small_img, lam=41.0)
    with pytest.raises(TypeError, match="MoLRG"):
        widgets.linearity_widget(None)


# ---------------------------------------------------------------------------------------- viz
def test_viz_figures(small_img):
    lp = lab.coordinate_molrg([1, 2])
    lines = lab.coordinate_molrg([1, 1])
    cmp = lab.compare_weight_rules(lp, 0.3, n_points=10, n_mc=300)
    figs = [
        viz.plot_molrg_samples(lp, lab.noisy_samples(lp, 0.3, n=30)),
        viz.plot_molrg_samples(lines, lab.noisy_samples(lines, 0.3, n=30)),
        viz.plot_posterior_means(lp, cmp),
        viz.plot_weight_rules(cmp),
        viz.plot_weight_gap(lab.weight_gap_vs_t(lp, [0.2, 0.5], n_points=20), lp.weights),
        viz.plot_posterior_images(lab.compare_weight_rules(small_img, 0.3, n_points=2, n_mc=300), n=2),
        viz.plot_spectrum_sweep(lab.spectrum_vs_t(small_img, [0.3, 0.9], n_samples=1)),
        viz.plot_power_vs_svd(lab.power_vs_svd(small_img, 0.7)),
        viz.plot_linearity(lab.linearity_vs_t(small_img, [0.5, 0.9], [0.0, 10.0], n_samples=1)),
        viz.plot_linearity_heatmap(lab.linearity_vs_t(small_img, [0.5, 0.9], [0.0, 10.0], n_samples=1)),
        viz.plot_error_scaling([lab.error_scaling(small_img, 0.5)]),
        viz.plot_linearized_images(lab.linearized_images(small_img, 0.5, 5.0)),
        viz.plot_images({"rgb": torch.randn(3, 4, 4), "grey": torch.randn(4, 4)}, scale=2.0),
    ]
    assert all(isinstance(f, Figure) for f in figs)


def test_viz_rejects_bad_input(small_img):
    with pytest.raises(ValueError, match="d = 2 or 3"):
        viz.plot_molrg_samples(small_img, lab.noisy_samples(small_img, 0.3, n=3))
    with pytest.raises(ValueError, match="at least one image"):
        viz.plot_images({})
    with pytest.raises(ValueError, match="images must have shape"):
        viz.plot_images({"bad": torch.zeros(2, 4, 4)})
    with pytest.raises(ValueError, match="scale must be positive"):
        viz.plot_images({"a": torch.zeros(4, 4)}, scale=0.0)
    with pytest.raises(ValueError, match="at least one ErrorScaling"):
        viz.plot_error_scaling([])


# ---------------------------------------------------------------------------------------- errors in callbacks
def test_interactive_view_prints_an_exception_instead_of_raising(capsys):
    from ipywidgets import IntSlider

    def view(k):
        if k > 2:
            raise ValueError(f"k must be at most 2; got {k}")
        return Figure()

    w = widgets.interactive_view(view, k=IntSlider(value=1, min=0, max=5))
    assert isinstance(w.result, Figure)
    w.kwargs_widgets[0].value = 4  # the callback raises: printed, never re-raised
    assert w.result is None
    assert "ValueError: k must be at most 2; got 4" in capsys.readouterr().out
    w.kwargs_widgets[0].value = 0
    assert isinstance(w.result, Figure)


# ---------------------------------------------------------------------------------------- 04, 05
def test_compare_widget_and_figure2_widget():
    from types import SimpleNamespace

    from lococourse.course import compare
    from lococourse.theory.molrg import MoLRG

    ex = MoLRG.random((3, 4, 4), [2, 3], seed=1)
    pair = compare.LearnedVsExact("exact-as-learned", SimpleNamespace(pmp=ex.pmp, shape=ex.shape), ex)
    w = widgets.compare_widget({"a": pair}, None, t=0.5, n=2)
    assert isinstance(w.result, Figure)
    c = _controls(w)
    assert {"model", "t", "point"} <= set(c)
    c["t"].value = 0.8
    c["point"].value = 1
    assert isinstance(w.result, Figure)
    with pytest.raises(ValueError, match="name must be one of"):
        widgets.compare_widget({"a": pair}, name="b")
    with pytest.raises(ValueError, match="slider covers"):
        widgets.compare_widget({"a": pair}, t=0.01)
    with pytest.raises(ValueError, match="point must be"):
        widgets.compare_widget({"a": pair}, point=5, n=2)
    with pytest.raises(ValueError, match="LearnedVsExact"):
        widgets.compare_widget({})
    with pytest.raises(TypeError, match="Figure2Run"):
        widgets.figure2_widget("run")
