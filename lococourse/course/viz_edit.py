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

from lococourse.course.widgets import interactive_view
from lococourse.data.faces import FACTOR_NAMES, PARTS
from lococourse.editing.tloco import resample
from lococourse.eval.faces import FaceEdit, apply_face_edit, find_face_direction, prepare_faces
from lococourse.eval.studies import CompositionStudy, LinearityStudy, MethodStudy, SweepStudy, TransferStudy

__all__ = ["show_image", "method_label", "plot_edit", "plot_transfer", "plot_composition", "plot_linearity", "plot_sweep",
           "plot_changes", "plot_direction", "plot_methods", "plot_method_study", "plot_tloco_grid", "plot_full_edit", "edit_view", "edit_widget",
           "transfer_view", "transfer_widget", "tloco_view", "tloco_widget"]


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
    fig.suptitle(f"{method_label(edit)}: {edit.part} at t = {edit.t:.2f} — {ok}; leakage {edit.metrics['leakage']:.2f}, "
                 f"SSIM outside {edit.metrics['ssim_outside']:.3f}", fontsize=9)
    return fig


def method_label(edit: FaceEdit) -> str:
    """How the edit's direction was found, in words: the method and its nullspace rank r′."""
    r_null = getattr(edit.direction, "r_null", None)
    names = {"loco": "LOCO", "no_projection": "masked J, no projection", "pmp_unmasked": "∂x̂₀/∂x_t unmasked",
             "eps_unmasked": "∂ε/∂x_t unmasked"}
    name = names.get(edit.method, edit.method)
    if r_null is None:
        return name
    if edit.method == "loco" and r_null == 0:
        return "LOCO without nullspace projection (r′ = 0)"
    return f"{name} (r′ = {r_null})"


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


def plot_linearity(study: LinearityStudy, r2: dict | None = None, thresholds=None) -> Figure:
    """The λ sweep as images, and the change of *every* factor of the edited part against λ.

    ``r2`` (optional) maps factor names to the R² of their straight-line fit (computed by
    :func:`lococourse.course.edits.factor_r2`), shown in the legend; ``thresholds`` draws ±τ of the main factor.
    θ̂ are the factors estimated from the images (lococourse.eval), Δθ̂ their change against λ = 0.
    """
    from lococourse.eval.factors import factors_of_part

    L = len(study.strengths)
    fig, axes = _images_then_plot(L, 2.0, 3.8, 2.5)
    for j, lam in enumerate(study.strengths):
        show_image(axes[j], study.edited[j], f"λ = {lam:g}")
    lams = np.array(study.strengths)
    ax = axes[-1]
    for name in factors_of_part(study.part):
        i = FACTOR_NAMES.index(name)
        label = name + (f" (R² {r2[name]:.2f})" if r2 and name in r2 else "")
        ax.plot(lams, study.changes[:, i].numpy(), "o-", label=label, lw=2 if name == study.main_factor else 1)
    if thresholds is not None:
        tau = float(torch.as_tensor(getattr(thresholds, "tau", thresholds)).expand(len(FACTOR_NAMES))[
            FACTOR_NAMES.index(study.main_factor)])
        ax.axhspan(-tau, tau, color="0.88", zorder=0, label="±τ (no change)")
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("λ")
    ax.set_ylabel("Δθ̂ (estimated change)")
    ax.legend(fontsize=7)
    fig.suptitle(f"{study.part} direction swept over λ: every {study.part} factor (pixel R² = {study.pixel_r2:.2f})",
                 fontsize=9)
    return fig


def plot_sweep(study: SweepStudy, rms: tuple | None = None) -> Figure:
    """The edit at each value of the parameter (t or r′); leakage on one axis, the part's change on another.

    ``rms`` (optional, from :func:`lococourse.course.edits.rms_inside_outside`): (inside, outside) lists of the
    RMS pixel change, drawn on a third axis — leakage is their ratio.
    """
    m = len(study.values)
    n_plots = 3 if rms is not None else 2
    fig = Figure(figsize=(2.0 * m + 3.4 * n_plots, 2.7), layout="constrained")
    axes = fig.subplots(1, m + n_plots, gridspec_kw={"width_ratios": [1] * m + [1.6] * n_plots})
    for j, v in enumerate(study.values):
        tag = "✓" if study.local_success[j] else "✗"
        show_image(axes[j], study.edited[j], f"{study.parameter} = {v:g} {tag}")
    xs = np.arange(m)
    labels = [f"{v:g}" for v in study.values]
    ax = axes[m]
    ax.plot(xs, study.leakage, "o-", color="tab:red")
    ax.set(xlabel=study.parameter, ylabel="leakage (RMS out / RMS in)", ylim=(0, None))
    ax.set_xticks(xs, labels)
    ax = axes[m + 1]
    ax.plot(xs, study.masked_change, "s-", color="tab:blue")
    ax.set(xlabel=study.parameter, ylabel=f"max |Δθ̂| of the {study.part} factors", ylim=(0, None))
    ax.set_xticks(xs, labels)
    if rms is not None:
        ax = axes[m + 2]
        ax.plot(xs, rms[0], "o-", label="inside Ω")
        ax.plot(xs, rms[1], "s--", label="outside Ω")
        ax.set(xlabel=study.parameter, ylabel="RMS pixel change", ylim=(0, None))
        ax.set_xticks(xs, labels)
        ax.legend(fontsize=7)
    fig.suptitle(f"{study.part} edit (λ = {study.strength:g}) across {study.parameter} (✓: local-edit success; "
                 "θ̂: factors estimated from the image)", fontsize=9)
    return fig


def plot_direction(direction, reconstruction: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                   unprojected=None, title: str = "") -> Figure:
    """An editing direction v_p as an image (the paper's Figure 8): RGB on a symmetric scale, and its
    channel mean on a diverging scale with Ω outlined; optionally next to the face and the unprojected v."""
    vs = [("v_p" if unprojected is not None else "v", direction)]
    if unprojected is not None:
        vs.append(("v (r′ = 0)", unprojected))
    n = len(vs) * 2 + (reconstruction is not None)
    fig, ax = _new(1, n, 2.3, 2.5)
    ax = ax[0]
    j = 0
    if reconstruction is not None:
        show_image(ax[0], reconstruction, "the face (λ = 0)", mask)
        j = 1
    for name, d in vs:
        v = getattr(d, "v", d).detach().float()
        scale = max(float(v.abs().max()), 1e-12)
        show_image(ax[j], v / scale, f"{name} as RGB (±max)", mask)
        _diff(ax[j + 1], v, f"{name}: channel mean", mask)
        j += 2
    fig.suptitle(title or "the editing direction as an image", fontsize=9)
    return fig


def plot_methods(edits: dict, directions: bool = True) -> Figure:
    """Several ways of finding a direction side by side (App. G.2): per row the edit, its difference image
    (one colour scale for all rows) and, with ``directions``, the direction v itself."""
    rows = list(edits.items())
    if not rows:
        raise ValueError("plot_methods needs at least one edit")
    vmax = max(float(e.difference.mean(0).abs().max()) for _, e in rows) or 1e-6
    fig, ax = _new(len(rows), 3 + directions, 2.3, 2.4)
    for i, (label, e) in enumerate(rows):
        show_image(ax[i, 0], e.reconstruction, f"{label}: λ = 0", e.mask)
        show_image(ax[i, 1], e.edited, f"λ = {e.strength:g}: {'local ✓' if e.local_success else 'not local'}")
        _diff(ax[i, 2], e.difference, f"edit − recon (leakage {e.metrics['leakage']:.2f})", e.mask, vmax=vmax)
        if directions:
            _diff(ax[i, 3], e.direction.v, "the direction v (channel mean)", e.mask)
    fig.suptitle("directions from different Jacobians, same face, part and λ", fontsize=9)
    return fig


def plot_method_study(study: MethodStudy, thresholds=None, labels: dict | None = None) -> Figure:
    """One row per method of a :class:`~lococourse.eval.studies.MethodStudy` (reconstruction with Ω outlined, the
    edit at its λ, edit − reconstruction on one colour scale for all rows, the estimated factor changes with ±τ),
    and a last row with the upper bound: the true single-factor edits of the part, resampled through the model."""
    labels = labels or {}
    rows = list(study.edits.items())
    n_true = len(study.true_meta)
    fig = Figure(figsize=(12, 2.6 * (len(rows) + (n_true > 0))), layout="constrained")
    axes = fig.subplots(len(rows) + (n_true > 0), 4, squeeze=False, gridspec_kw={"width_ratios": [1, 1, 1.2, 2.2]})
    vmax = max(float(e.difference.mean(0).abs().max()) for _, e in rows) or 1e-6
    for i, (method, e) in enumerate(rows):
        name = labels.get(method, method)
        show_image(axes[i, 0], e.reconstruction, f"{name}: λ = 0", e.mask)
        show_image(axes[i, 1], e.edited, f"λ = {e.strength:.3g}: {'local ✓' if e.local_success else 'not local'}")
        _diff(axes[i, 2], e.difference, f"edit − recon (leakage {e.metrics['leakage']:.2f})", e.mask, vmax=vmax)
        plot_changes(axes[i, 3], e.changes, ["Δθ̂"], thresholds)
    if n_true:
        ax = axes[-1]
        for j in range(3):
            if j < min(n_true, 3):
                name, delta = study.true_meta[j]
                ok = "local ✓" if study.true_local[j] else "not local"
                show_image(ax[j], study.true_edits[j], f"true edit: {name} {delta:+.2f}: {ok}", rows[0][1].mask)
            else:
                ax[j].axis("off")
        plot_changes(ax[3], study.true_changes, [f"{n} {d:+.2f}" for n, d in study.true_meta], thresholds)
    how = (f"λ per direction: its +λ edit moves the {study.part}'s main factor by {study.target:g}"
           if study.strength_mode == "target" else "one λ for every method")
    fig.suptitle(f"the {study.part} of face {study.seed} at t = {study.t:.2f}; {how}; last row: the upper bound",
                 fontsize=9)
    return fig


def plot_full_edit(res, mask: torch.Tensor, num_steps: int, leakage: Sequence[float], random_weights: bool = False) -> Figure:
    """A full-mode LOCO edit (:class:`lococourse.editing.loco.EditResult` of ``loco_edit(..., num_steps=…)``): x₀, the
    λ = 0 reconstruction, each edit with its ``leakage`` and difference, and the direction v_p, Ω outlined."""
    L = len(res.strengths)
    fig, ax = _new(1, 3 + 2 * L, 2.2, 2.4)
    ax = ax[0]
    show_image(ax[0], res.x0.float().cpu(), "x₀", mask)
    show_image(ax[1], res.reconstruction.float().cpu(), f"DDIM(x_t, 0), {num_steps} steps")
    for j, lam in enumerate(res.strengths):
        show_image(ax[2 + 2 * j], res.edited[j].float().cpu(), f"λ = {lam:g} (leakage {leakage[j]:.2f})")
        _diff(ax[3 + 2 * j], (res.edited[j] - res.reconstruction).float().cpu(), "edit − recon", mask)
    _diff(ax[-1], res.direction.v.float().cpu(), "v_p (channel mean)", mask)
    what = "RANDOM-WEIGHT stand-in: the pictures mean nothing" if random_weights else "the paper's checkpoint"
    fig.suptitle(f"LOCO Edit at t = {res.t:.2f}, {num_steps} DDIM steps, σ = {res.direction.sigma:.3g} — {what}",
                 fontsize=9)
    return fig


def plot_tloco_grid(results: dict, masks: dict, random_weights: bool = True) -> Figure:
    """T-LOCO edits, one row per "family variant" (``results``: label → (family, TEditResult)), one column per λ,
    with Ω (``masks``: family → (H, W) mask of the decoded image) outlined in every image."""
    rows = list(results.items())
    if not rows:
        raise ValueError("plot_tloco_grid needs at least one result")
    ncols = max(len(res.strengths) for _, (_, res) in rows)
    fig, ax = _new(len(rows), ncols, 2.0, 2.1)
    for i, (label, (family, res)) in enumerate(rows):
        for j in range(ncols):
            if j < len(res.strengths):
                show_image(ax[i, j], res.edited[j].float().cpu(), f"{label} λ={res.strengths[j]:g}", masks[family])
            else:
                ax[i, j].axis("off")
    fig.suptitle("RANDOM-WEIGHT networks: patterns, not photos (Ω outlined)" if random_weights else
                 "the paper's checkpoints (Ω outlined)", fontsize=9)
    return fig


# ---------------------------------------------------------------------------------------- notebook 06 front-end
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

    return interactive_view(
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

    return interactive_view(
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

    return interactive_view(
        tloco_view, models=fixed(models), results=fixed(results), seed=fixed(seed),
        name=Dropdown(options=sorted(results), value=sorted(results)[0], description="edit"),
        strength=FloatSlider(value=strength, min=-30, max=30, step=0.5, description="λ", continuous_update=False),
    )
