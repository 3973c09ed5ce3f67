"""Matplotlib views of LOCO edits on procedural faces (lococourse.eval results), and the edit widget.

Each ``plot_*`` takes computed results and returns a ``matplotlib.figure.Figure`` that pyplot does
not track; nothing here computes beyond reshaping.  The ``*_view`` / ``*_widget`` pairs are notebook
front-ends — a view that runs the computation and draws, and its ipywidgets wiring: :func:`edit_widget`
(notebook 06), :func:`transfer_widget` (07), :func:`tloco_widget` (08).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from lococourse.data.faces import FACTOR_NAMES, PARTS
from lococourse.editing.tloco import resample
from lococourse.eval.faces import FaceEdit, apply_face_edit, find_face_direction, prepare_faces
from lococourse.eval.studies import CompositionStudy, LinearityStudy, SweepStudy, TransferStudy

__all__ = ["show_image", "plot_edit", "plot_transfer", "plot_composition", "plot_linearity", "plot_sweep",
           "plot_changes", "edit_view", "edit_widget", "transfer_view", "transfer_widget", "tloco_view", "tloco_widget"]


def _new(nrows: int, ncols: int, w: float = 2.2, h: float = 2.3) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(w * ncols, h * nrows), layout="constrained")
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def _rgb(x: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [-1, 1] → (H, W, 3) in [0, 1] (clamped for display only)."""
    return ((x.detach().float().clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()


def show_image(ax, x: torch.Tensor, title: str = "", mask: torch.Tensor | None = None) -> None:
    """One image on an axis, optionally with the mask's outline."""
    ax.imshow(_rgb(x), interpolation="nearest")
    if mask is not None:
        ax.contour(mask.float().numpy(), levels=[0.5], colors="white", linewidths=0.8)
    ax.set_title(title, fontsize=8)
    ax.axis("off")


def _diff(ax, d: torch.Tensor, title: str, mask: torch.Tensor | None = None, vmax: float | None = None) -> None:
    """A signed difference image (mean over channels) on a diverging scale centred at 0."""
    m = d.detach().float().mean(0).numpy()
    v = vmax or max(float(np.abs(m).max()), 1e-6)
    im = ax.imshow(m, cmap="RdBu_r", vmin=-v, vmax=v, interpolation="nearest")
    if mask is not None:
        ax.contour(mask.float().numpy(), levels=[0.5], colors="k", linewidths=0.8)
    ax.set_title(title, fontsize=8)
    ax.axis("off")
    ax.figure.colorbar(im, ax=ax, shrink=0.7)


def plot_changes(ax, changes: torch.Tensor, labels: Sequence[str], thresholds=None) -> None:
    """Grouped bars of estimated factor changes (rows of ``changes``), with ±τ as grey bands."""
    c = torch.as_tensor(changes).reshape(-1, len(FACTOR_NAMES)).numpy()
    x = np.arange(len(FACTOR_NAMES))
    w = 0.8 / len(c)
    for i, (row, lab) in enumerate(zip(c, labels)):
        ax.bar(x + (i - (len(c) - 1) / 2) * w, row, w, label=lab)
    if thresholds is not None:
        tau = getattr(thresholds, "tau", thresholds)
        tau = torch.as_tensor(tau).expand(len(FACTOR_NAMES)).numpy()
        for j, tj in enumerate(tau):
            ax.fill_between([j - 0.45, j + 0.45], -tj, tj, color="0.85", zorder=0)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xticks(x, FACTOR_NAMES, rotation=60, fontsize=7)
    ax.set_ylabel("estimated Δ factor", fontsize=8)
    if len(c) > 1:
        ax.legend(fontsize=7)


def plot_edit(edit: FaceEdit, thresholds=None) -> Figure:
    """Original, reconstruction (λ = 0), edit, difference (edit − reconstruction) and the factor changes."""
    fig = Figure(figsize=(12, 2.9), layout="constrained")
    axes = fig.subplots(1, 5, gridspec_kw={"width_ratios": [1, 1, 1, 1.2, 2.2]})
    show_image(axes[0], edit.original, f"x₀ (seed {edit.seed})", edit.mask)
    show_image(axes[1], edit.reconstruction, "DDIM(x_t, 0)")
    show_image(axes[2], edit.edited, f"λ = {edit.strength:g}")
    _diff(axes[3], edit.difference, "edit − reconstruction", edit.mask)
    plot_changes(axes[4], edit.changes, ["Δθ̂"], thresholds)
    ok = "success" if edit.local_success else "not local"
    fig.suptitle(f"{edit.method}: {edit.part} at t = {edit.t:.2f} — {ok}; leakage {edit.metrics['leakage']:.2f}, "
                 f"SSIM outside {edit.metrics['ssim_outside']:.3f}", fontsize=9)
    return fig


def plot_transfer(study: TransferStudy) -> Figure:
    """Rows −λ / +λ: the source edit and each transfer; titles say whether the transfer succeeded."""
    n = len(study.seeds)
    fig, ax = _new(3, n)
    for j, seed in enumerate(study.seeds):
        show_image(ax[0, j], study.reconstructions[j], f"{'source' if j == 0 else 'target'} {seed}: λ = 0")
        for row, s in ((1, 0), (2, 1)):
            sign = "−" if s == 0 else "+"
            if j == 0:
                tag = "local ✓" if bool(study.source_local[s]) else "local ✗"
            else:
                tag = ("transfer ✓" if bool(study.success[s, j - 1]) else
                       "main factor ✓" if bool(study.main_success[s, j - 1]) else "transfer ✗")
            show_image(ax[row, j], study.edited[s, j], f"{sign}λ: {tag}")
    fig.suptitle(f"{study.part} direction of face {study.seeds[0]}, added to other faces (λ = ±{study.strength:g}): "
                 f"transfer success {study.rate:.2f} (main factor {study.main_rate:.2f})", fontsize=9)
    return fig


def plot_composition(study: CompositionStudy) -> Figure:
    """Reconstruction, each single edit, their composite, and composite − (sum of single changes)."""
    k = len(study.parts)
    fig, ax = _new(1, k + 3)
    ax = ax[0]
    show_image(ax[0], study.reconstruction, "λ = 0")
    for i, p in enumerate(study.parts):
        show_image(ax[1 + i], study.singles[i], f"{p} (λ = {study.strengths[i]:g})")
    show_image(ax[k + 1], study.composite, "together")
    resid = study.composite - study.reconstruction - (study.singles - study.reconstruction).sum(0)
    _diff(ax[k + 2], resid, "together − sum of parts")
    fig.suptitle(f"composition: pixel composability {study.pixel_composability:.3f}, factor composability "
                 f"{study.factor_composability:.3f} (0 = additive)", fontsize=9)
    return fig


def _images_then_plot(n: int, w_image: float, w_plot: float, h: float) -> tuple[Figure, np.ndarray]:
    """A figure with a row of n images and one wider plot axis at the end."""
    fig = Figure(figsize=(w_image * n + w_plot, h), layout="constrained")
    return fig, fig.subplots(1, n + 1, gridspec_kw={"width_ratios": [1] * n + [w_plot / w_image * 1.3]})


def plot_linearity(study: LinearityStudy) -> Figure:
    """The λ sweep as images, and the main factor's change against λ."""
    L = len(study.strengths)
    fig, axes = _images_then_plot(L, 2.0, 3.5, 2.4)
    for j, lam in enumerate(study.strengths):
        show_image(axes[j], study.edited[j], f"λ = {lam:g}")
    i = FACTOR_NAMES.index(study.main_factor)
    lams = np.array(study.strengths)
    axes[-1].plot(lams, study.changes[:, i].numpy(), "o-", label=study.main_factor)
    axes[-1].axhline(0, color="k", lw=0.5)
    axes[-1].set_xlabel("λ")
    axes[-1].set_ylabel("estimated Δ factor")
    axes[-1].legend(fontsize=7)
    fig.suptitle(f"{study.part}: R² of {study.main_factor} vs λ = {study.factor_r2:.3f}; pixel R² = {study.pixel_r2:.3f}",
                 fontsize=9)
    return fig


def plot_sweep(study: SweepStudy) -> Figure:
    """The edit at each value of the parameter (t or r'), with leakage and the masked part's change."""
    m = len(study.values)
    fig, axes = _images_then_plot(m, 2.1, 4.5, 2.5)
    for j, v in enumerate(study.values):
        tag = "✓" if study.local_success[j] else "✗"
        show_image(axes[j], study.edited[j], f"{study.parameter} = {v:g} {tag}")
    ax = axes[-1]
    xs = np.arange(m)
    ax.plot(xs, study.leakage, "o-", label="leakage")
    ax.plot(xs, study.masked_change, "s-", label=f"max |Δθ| of the {study.part}")
    ax.set_xticks(xs, [f"{v:g}" for v in study.values])
    ax.set_xlabel(study.parameter)
    ax.legend(fontsize=7)
    fig.suptitle(f"{study.part} edit (λ = {study.strength:g}) across {study.parameter}", fontsize=9)
    return fig


# ---------------------------------------------------------------------------------------- notebook 06 front-end
def _interactive(view, **controls):
    """``ipywidgets.interactive`` over a view that returns a Figure: display it, keep it as ``widget.result``."""
    from IPython.display import display
    from ipywidgets import interactive

    def show(**kwargs) -> Figure:
        fig = view(**kwargs)
        display(fig)
        return fig

    return interactive(show, **controls)



_DIRECTIONS: dict = {}


def _cached_direction(model, seed: int, part: str, index: int, t: float, r_null: int, max_iter: int):
    """(FaceSet, LOCO direction) of one face's part, cached per (model, seed, part, k, t, r')."""
    if part not in PARTS:
        raise ValueError(f"part must be one of {list(PARTS)}; got {part!r}")
    key = (id(model), int(seed), part, int(index), round(float(t), 4), int(r_null))
    if key not in _DIRECTIONS:
        if len(_DIRECTIONS) > 16:
            _DIRECTIONS.clear()
        _DIRECTIONS[key] = find_face_direction(model, int(seed), part, t=float(t), index=int(index), r_null=int(r_null),
                                               max_iter=max_iter)
    return _DIRECTIONS[key]


def edit_view(model, seed: int = 0, part: str = "hair", index: int = 0, strength: float = 7.0, t: float = 0.6,
              r_null: int = 5, thresholds=None, max_iter: int = 20) -> Figure:
    """Find (cached per seed, part, k, t, r') and apply one LOCO edit; draw it with its metrics."""
    faces, direction = _cached_direction(model, seed, part, index, t, r_null, max_iter)
    edit = apply_face_edit(model, faces, direction, float(strength), thresholds=thresholds)
    return plot_edit(edit, thresholds)


def edit_widget(model, seed: int = 0, part: str = "hair", index: int = 0, strength: float = 7.0, t: float = 0.6,
                r_null: int = 5):
    """ipywidgets.interactive over :func:`edit_view`: image seed, mask part, direction index k, λ, t, r'."""
    from ipywidgets import Dropdown, FloatSlider, IntSlider, fixed

    return _interactive(
        edit_view, model=fixed(model),
        seed=IntSlider(value=seed, min=0, max=99, description="image seed", continuous_update=False),
        part=Dropdown(options=list(PARTS), value=part, description="mask"),
        index=IntSlider(value=index, min=0, max=4, description="k", continuous_update=False),
        strength=FloatSlider(value=strength, min=-20, max=20, step=0.5, description="λ", continuous_update=False),
        t=FloatSlider(value=t, min=0.2, max=0.9, step=0.05, description="t", continuous_update=False),
        r_null=IntSlider(value=r_null, min=0, max=20, description="r'", continuous_update=False),
    )


# ---------------------------------------------------------------------------------------- notebook 07 front-end
_FACES: dict = {}


def transfer_view(model, source_seed: int = 3, target_seed: int = 4, part: str = "eyes", strength: float = 2.0,
                  t: float = 0.6, thresholds=None, max_iter: int = 20) -> Figure:
    """Homogeneity (§3.2) for one pair of faces: the LOCO direction of the source face's part (cached), added
    unchanged to the target face's x_t at λ, drawn and measured against the target's own mask."""
    _, direction = _cached_direction(model, source_seed, part, 0, t, 5, max_iter)
    key = (id(model), int(target_seed), round(float(t), 4))
    if key not in _FACES:
        if len(_FACES) > 16:
            _FACES.clear()
        _FACES[key] = prepare_faces(model, [int(target_seed)], float(t))
    edit = apply_face_edit(model, _FACES[key], direction, float(strength), thresholds=thresholds)
    fig = plot_edit(edit, thresholds)
    fig.suptitle(f"the {part} direction of face {source_seed}, added to face {target_seed} at λ = {strength:g}: "
                 f"changed {', '.join(edit.changed_factors) or 'nothing'}; local {'✓' if edit.local_success else '✗'}",
                 fontsize=9)
    return fig


def transfer_widget(model, source_seed: int = 3, target_seed: int = 4, part: str = "eyes", strength: float = 2.0,
                    t: float = 0.6):
    """ipywidgets.interactive over :func:`transfer_view`: source face, target face, part, λ, t."""
    from ipywidgets import Dropdown, FloatSlider, IntSlider, fixed

    return _interactive(
        transfer_view, model=fixed(model),
        source_seed=IntSlider(value=source_seed, min=0, max=99, description="source", continuous_update=False),
        target_seed=IntSlider(value=target_seed, min=0, max=99, description="target", continuous_update=False),
        part=Dropdown(options=list(PARTS), value=part, description="mask"),
        strength=FloatSlider(value=strength, min=-10, max=10, step=0.25, description="λ", continuous_update=False),
        t=FloatSlider(value=t, min=0.2, max=0.9, step=0.05, description="t", continuous_update=False),
    )


# ---------------------------------------------------------------------------------------- notebook 08 front-end
def tloco_view(models: dict, results: dict, name: str, strength: float, seed: int = 0) -> Figure:
    """One T-LOCO result re-sampled at λ (lococourse.editing.tloco.resample; no new direction): the λ = 0 image, the
    edit and their difference.  ``results`` maps "family variant" names to (family, TEditResult)."""

    if name not in results:
        raise ValueError(f"name must be one of {sorted(results)}; got {name!r}")
    family, res = results[name]
    edited = resample(models[family], res, [float(strength)], seed=seed)[0].float().cpu()
    original = res.original.float().cpu()
    fig, ax = _new(1, 3)
    show_image(ax[0, 0], original, "λ = 0 (source prompt)")
    show_image(ax[0, 1], edited, f"λ = {strength:g}")
    _diff(ax[0, 2], edited - original, "edit − original")
    fig.suptitle(f"{name}: t = {res.t:.3f}", fontsize=9)
    return fig


def tloco_widget(models: dict, results: dict, strength: float = 5.0, seed: int = 0):
    """ipywidgets.interactive over :func:`tloco_view`: which result, and λ."""
    from ipywidgets import Dropdown, FloatSlider, fixed

    return _interactive(
        tloco_view, models=fixed(models), results=fixed(results), seed=fixed(seed),
        name=Dropdown(options=sorted(results), value=sorted(results)[0], description="edit"),
        strength=FloatSlider(value=strength, min=-30, max=30, step=0.5, description="λ", continuous_update=False),
    )
