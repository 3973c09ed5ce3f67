"""Matplotlib views of the results in :mod:`lococourse.course.lab`: each function takes computed results and returns a Figure.

The figures are ``matplotlib.figure.Figure`` objects that pyplot does not track: nothing is left
open, no ``plt.close`` is needed, and a notebook shows one by ending a cell with it (or by
``IPython.display.display(fig)``).  No function here computes anything beyond reshaping.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from lococourse.course.lab import (
    ErrorScaling,
    GaussianRankSweep,
    LinearitySweep,
    LinearizedImages,
    NoisySamples,
    PowerVsSVD,
    RuleComparison,
    SpectrumSweep,
    TweedieCheck,
    WeightGapSweep,
)
from lococourse.course.sampling import InversionSweep
from lococourse.theory.molrg import MoLRG

__all__ = [
    "new_figure", "draw_point_cloud", "plot_molrg_samples", "plot_posterior_means", "plot_weight_rules",
    "plot_weight_gap", "plot_images", "plot_posterior_images", "plot_spectrum", "plot_spectrum_sweep", "plot_power_vs_svd",
    "plot_linearity", "plot_linearity_heatmap", "plot_error_scaling", "plot_linearized_images",
    "posterior_dashboard", "jacobian_dashboard", "linearity_dashboard", "plot_tweedie", "plot_gaussian_rank",
    "plot_point_spread", "plot_inversion_sweep",
]

CLASS_COLORS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)


def new_figure(nrows: int = 1, ncols: int = 1, width: float = 4.0, height: float = 3.3, **subplot_kw) -> tuple[Figure, np.ndarray]:
    """A Figure with an (nrows, ncols) grid of axes (returned flat), sized ``width`` × ``height`` per panel."""
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, subplot_kw=subplot_kw or None)
    return fig, axes.ravel()


def _class_color(k: int) -> str:
    return CLASS_COLORS[k % len(CLASS_COLORS)]


# ---------------------------------------------------------------------------------------- point clouds (d = 2, 3)
def _check_low_dim(model: MoLRG) -> int:
    if model.d not in (2, 3):
        raise ValueError(f"point-cloud plots need d = 2 or 3; got d = {model.d} (use plot_images for image-shaped models)")
    return model.d


def _draw_subspaces(ax, model: MoLRG, extent: float) -> None:
    """Each M_k as a segment (r_k = 1) or, in 3-D, a translucent square patch (r_k = 2)."""
    s = np.linspace(-extent, extent, 2)
    for k, m in enumerate(model.bases):
        m = _np(m)
        if m.shape[1] == 1:
            seg = np.outer(s, m[:, 0])
            ax.plot(*seg.T, color=_class_color(k), lw=2, label=f"span(M_{k + 1}), r={m.shape[1]}")
        elif m.shape[1] == 2 and model.d == 3:
            a, b = np.meshgrid(s, s)
            pts = a[..., None] * m[:, 0] + b[..., None] * m[:, 1]
            ax.plot_surface(pts[..., 0], pts[..., 1], pts[..., 2], color=_class_color(k), alpha=0.15)
            ax.plot([], [], color=_class_color(k), lw=6, alpha=0.3, label=f"span(M_{k + 1}), r=2")


def draw_point_cloud(ax, model: MoLRG, points, labels=None, values=None, title: str = "", vmin=0.0, vmax=1.0):
    """Scatter points (n, d) with d ∈ {2, 3} on ``ax``, coloured by class ``labels`` or by ``values``; draw the subspaces."""
    d = _check_low_dim(model)
    p = _np(points).reshape(-1, d)
    extent = float(np.abs(p).max()) if p.size else 1.0
    _draw_subspaces(ax, model, extent)
    if values is not None:
        sc = ax.scatter(*p.T, c=_np(values), cmap="coolwarm", vmin=vmin, vmax=vmax, s=8)
    else:
        lab = np.zeros(len(p), int) if labels is None else _np(labels)
        sc = ax.scatter(*p.T, c=[_class_color(int(k)) for k in lab], s=8)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("x₁")
    ax.set_ylabel("x₂")
    if d == 2:
        ax.set_aspect("equal")
    else:
        ax.set_zlabel("x₃")
    return sc


def plot_molrg_samples(model: MoLRG, samples: NoisySamples) -> Figure:
    """Clean samples x₀ (on the union of subspaces) and noisy x_t, coloured by class (Assumption 1)."""
    kw = {"projection": "3d"} if _check_low_dim(model) == 3 else {}
    fig, axes = new_figure(1, 2, 4.2, 3.8, **kw)
    draw_point_cloud(axes[0], model, samples.x0, samples.labels, title="x₀ ~ MoLRG (Assumption 1)")
    draw_point_cloud(axes[1], model, samples.x_t, samples.labels, title=f"x_t at t = {samples.t:g}")
    axes[0].legend(fontsize=7, loc="upper left")
    return fig


def plot_posterior_means(model: MoLRG, comparison: RuleComparison, max_points: int = 12) -> Figure:
    """Points x_t, and where Lemma 1 (Bayes / paper weights) and Monte Carlo send them."""
    d = _check_low_dim(model)
    kw = {"projection": "3d"} if d == 3 else {}
    fig, axes = new_figure(1, 1, 5.0, 4.4, **kw)
    ax = axes[0]
    n = min(max_points, len(comparison.x_t))
    x, mb, mp, mc = (_np(a)[:n].reshape(n, d) for a in (comparison.x_t, comparison.mean_bayes, comparison.mean_paper, comparison.mean_mc))
    _draw_subspaces(ax, model, float(np.abs(x).max()))
    for i in range(n):
        ax.plot(*np.stack([x[i], mb[i]]).T, color="0.7", lw=0.8)
    ax.scatter(*x.T, color="k", s=10, label="x_t")
    ax.scatter(*mc.T, color="tab:green", s=60, marker="o", facecolors="none", label="Monte Carlo")
    ax.scatter(*mb.T, color="tab:blue", s=18, marker="x", label="Lemma 1, Bayes weights")
    ax.scatter(*mp.T, color="tab:red", s=18, marker="+", label="Lemma 1, paper weights")
    ax.set_title(f"E[x₀|x_t] at t = {comparison.t:g}", fontsize=10)
    ax.set_xlabel("x₁")
    ax.set_ylabel("x₂")
    if d == 3:
        ax.set_zlabel("x₃")
    ax.legend(fontsize=7, loc="upper left")
    if d == 2:
        ax.set_aspect("equal")
    return fig


def _draw_weight_scatter(ax, comparison: RuleComparison) -> None:
    wb, wp = _np(comparison.weights_bayes), _np(comparison.weights_paper)
    for k in range(wb.shape[1]):
        ax.scatter(wb[:, k], wp[:, k], s=10, color=_class_color(k), label=f"class {k + 1}")
    ax.plot([0, 1], [0, 1], color="0.5", lw=0.8, ls="--")
    ax.set_xlabel("w_k, Bayes' rule")
    ax.set_ylabel("w_k, paper (Lemma 1 as printed)")
    ax.set_title(f"t = {comparison.t:g}: rel. error vs MC: Bayes {comparison.err_bayes:.1e}, "
                 f"paper {comparison.err_paper:.1e}", fontsize=9)
    ax.legend(fontsize=7)


def plot_weight_rules(comparison: RuleComparison) -> Figure:
    """Per-point class weights w_k(x_t): Bayes' rule against Lemma 1's printed weights."""
    fig, axes = new_figure(1, 1, 5.0, 4.2)
    _draw_weight_scatter(axes[0], comparison)
    return fig


def plot_weight_gap(sweep: WeightGapSweep, weights=None) -> Figure:
    """Left: mean total variation between the two weight rules and the relative posterior-mean gap, vs t.
    Right: the average class weight vs t for both rules (Bayes' averages to π_k at every t)."""
    fig, axes = new_figure(1, 2, 4.4, 3.4)
    ts = _np(sweep.ts)
    axes[0].plot(ts, _np(sweep.tv), label="mean TV(w_bayes, w_paper)")
    axes[0].plot(ts, _np(sweep.mean_gap), label="‖E_paper − E_bayes‖ / ‖E_bayes‖")
    axes[0].set_xlabel("t")
    axes[0].legend(fontsize=8)
    axes[0].set_title("how wrong the printed weights are", fontsize=10)
    cb, cp = _np(sweep.class_bayes), _np(sweep.class_paper)
    for k in range(cb.shape[1]):
        axes[1].plot(ts, cb[:, k], color=_class_color(k), label=f"class {k + 1}, Bayes")
        axes[1].plot(ts, cp[:, k], color=_class_color(k), ls="--", label=f"class {k + 1}, paper")
        if weights is not None:
            axes[1].axhline(float(_np(weights)[k]), color=_class_color(k), lw=0.6, ls=":")
    axes[1].set_xlabel("t")
    axes[1].set_ylabel("mean w_k over x_t ~ p_t")
    axes[1].legend(fontsize=7)
    axes[1].set_title("average class weight (dotted: π_k)", fontsize=10)
    return fig


# ---------------------------------------------------------------------------------------- images
def _to_image(x: np.ndarray, scale: float) -> tuple[np.ndarray, dict]:
    """(C, H, W) or (H, W) → something imshow takes, on a shared symmetric scale [−scale, scale]."""
    if x.ndim == 3 and x.shape[0] == 1:
        x = x[0]
    if x.ndim == 2:
        return x, {"cmap": "gray", "vmin": -scale, "vmax": scale}
    if x.ndim == 3 and x.shape[0] == 3:
        return np.clip(0.5 + 0.5 * np.moveaxis(x, 0, -1) / scale, 0, 1), {}
    raise ValueError(f"images must have shape (H, W), (1, H, W) or (3, H, W); got {x.shape}")


def plot_images(images: Mapping[str, torch.Tensor], ncols: int | None = None, title: str = "", shared_scale: bool = True,
                scale: float | None = None) -> Figure:
    """A grid of images (titles → tensors of shape (H, W), (1, H, W) or (3, H, W)).

    Grey levels (or RGB) map the symmetric range [−scale, scale]; values outside it are clipped in
    the picture.  ``scale`` defaults to the largest |value| over all images (``shared_scale``) or
    per image (``shared_scale=False``).
    """
    if len(images) == 0:
        raise ValueError("plot_images needs at least one image; got none")
    if scale is not None and not scale > 0:
        raise ValueError(f"scale must be positive; got {scale}")
    arrays = {k: _np(v).astype(float) for k, v in images.items()}
    ncols = min(len(arrays), 6) if ncols is None else ncols
    nrows = -(-len(arrays) // ncols)
    fig, axes = new_figure(nrows, ncols, 2.1, 2.2)
    global_scale = scale or max(float(np.abs(a).max()) for a in arrays.values()) or 1.0
    for ax, (name, a) in zip(axes, arrays.items()):
        scale_i = global_scale if (shared_scale or scale) else (float(np.abs(a).max()) or 1.0)
        img, kw = _to_image(a, scale_i)
        ax.imshow(img, **kw)
        ax.set_title(name, fontsize=8)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
        if not ax.images:
            ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_posterior_images(comparison: RuleComparison, n: int = 3) -> Figure:
    """For n image-shaped points: x₀, x_t, and E[x₀|x_t] by Bayes' rule, by the printed weights and by Monte Carlo.

    All on the scale of the clean images (x_t, larger, is clipped in the picture).
    """
    n = min(n, len(comparison.x_t))
    if n < 1:
        raise ValueError(f"n must be ≥ 1; got {n}")
    images = {}
    for i in range(n):
        images.update({
            f"x₀ #{i + 1} (class {int(comparison.labels[i]) + 1})": comparison.x0[i], f"x_t #{i + 1}": comparison.x_t[i],
            f"Bayes #{i + 1}": comparison.mean_bayes[i], f"printed #{i + 1}": comparison.mean_paper[i],
            f"Monte Carlo #{i + 1}": comparison.mean_mc[i],
        })
    scale = float(comparison.x0[:n].abs().max()) or 1.0
    return plot_images(images, ncols=5, scale=scale, title=f"E[x₀|x_t] at t = {comparison.t:g}")


# ---------------------------------------------------------------------------------------- spectra
def _draw_spectrum(ax, S, r: int, n_rank: int | None = None, title: str = "") -> None:
    S = _np(S)
    rel = S / S[0]
    floor = np.finfo(float).eps * 1e-2
    ax.semilogy(np.arange(1, len(S) + 1), np.maximum(rel, floor), ".", ms=4)
    ax.axvline(r + 0.5, color="tab:red", lw=0.8, ls="--", label=f"r = Σ r_k = {r}")
    if n_rank is not None:
        ax.axvline(n_rank + 0.5, color="tab:green", lw=0.8, ls=":", label=f"numerical rank (eq. 10) = {n_rank}")
    ax.axhline(np.finfo(float).eps, color="0.6", lw=0.6, label="float64 ε")
    ax.set_xlabel("i")
    ax.set_ylabel("σ_i / σ_1")
    ax.set_xlim(0, min(len(S), 4 * r + 8))
    ax.set_ylim(floor / 10, 3)
    ax.legend(fontsize=7, loc="lower left")
    ax.set_title(title, fontsize=10)


def plot_spectrum(S, r: int, n_rank: int | None = None, title: str = "") -> Figure:
    """Singular values σ_i/σ_1 of one Jacobian (log scale), with r = Σ r_k and the numerical rank marked."""
    fig, axes = new_figure(1, 1, 5.0, 3.4)
    _draw_spectrum(axes[0], S, r, n_rank, title)
    return fig


def _draw_rank_ratio(ax, sweep: SpectrumSweep, t_mark=None) -> None:
    ts = _np(sweep.ts)
    ax.plot(ts, _np(sweep.rank_ratio), marker=".", label=f"numerical rank / d (η = {sweep.eta})")
    ax.axhline(sweep.r / sweep.d, color="tab:red", ls="--", lw=0.8, label="Σ r_k / d (Theorem 1 bound)")
    ax.set_xlabel("t")
    ax.set_ylabel("rank ratio")
    ax.set_ylim(0, 1.3 * sweep.r / sweep.d)
    if t_mark is not None:
        ax.axvline(t_mark, color="k", lw=0.6)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("rank ratio vs t (paper Fig. 2a)", fontsize=10)


def _draw_alignment(ax, sweep: SpectrumSweep, t_mark=None) -> None:
    ts = _np(sweep.ts)
    a = _np(sweep.alignment)
    ax.semilogy(ts, np.maximum(a.mean(1), 1e-17), marker=".", label="mean over points")
    ax.fill_between(ts, np.maximum(a.min(1), 1e-17), np.maximum(a.max(1), 1e-17), alpha=0.2)
    ax.set_xlabel("t")
    ax.set_ylabel("‖(I − U_r U_rᵀ) M‖_F / ‖M‖_F")
    if t_mark is not None:
        ax.axvline(t_mark, color="k", lw=0.6)
    ax.set_title("alignment of top-r left singular subspace with span(M)", fontsize=9)


def plot_spectrum_sweep(sweep: SpectrumSweep, t_mark=None, n_top: int | None = None) -> Figure:
    """σ_i/σ_1 vs t (first point), rank ratio vs t and alignment vs t (Theorem 1)."""
    fig, axes = new_figure(1, 3, 4.2, 3.4)
    n_top = min(sweep.r + 4, sweep.d) if n_top is None else n_top
    rel = _np(sweep.relative_singular_values[:, 0, :n_top])
    ts = _np(sweep.ts)
    floor = 1e-18
    for i in range(n_top):
        axes[0].semilogy(ts, np.maximum(rel[:, i], floor), color="tab:blue" if i < sweep.r else "tab:red", lw=0.8)
    axes[0].set_xlabel("t")
    axes[0].set_ylabel("σ_i / σ_1 (first point)")
    axes[0].set_ylim(floor, 3)
    axes[0].set_title(f"top {n_top} singular values (red: i > r = {sweep.r})", fontsize=9)
    if t_mark is not None:
        axes[0].axvline(t_mark, color="k", lw=0.6)
    _draw_rank_ratio(axes[1], sweep, t_mark)
    _draw_alignment(axes[2], sweep, t_mark)
    return fig


def plot_power_vs_svd(result: PowerVsSVD) -> Figure:
    """Algorithm 2 against dense SVD: convergence history and the top-k singular values."""
    fig, axes = new_figure(1, 2, 4.4, 3.4)
    h = np.maximum(np.asarray(result.history, float), 1e-17)
    axes[0].semilogy(np.arange(1, len(h) + 1), h, marker=".")
    axes[0].set_xlabel("iteration")
    axes[0].set_ylabel("sin∠(V_i, V_{i−1})")
    axes[0].set_title(f"power method, k = {result.k}: {result.n_iter} iterations", fontsize=10)
    k = result.k
    err = np.abs(_np(result.S_power) - _np(result.S_dense)[:k]) / float(_np(result.S_dense)[0])
    axes[1].semilogy(np.arange(1, k + 1), np.maximum(err, 1e-18), "o", label="|σ_i(power) − σ_i(SVD)| / σ_1")
    axes[1].set_xlabel("i")
    axes[1].set_ylim(1e-18, 1)
    axes[1].axhline(np.finfo(float).eps, color="0.6", lw=0.6, label="float64 ε")
    axes[1].legend(fontsize=8)
    axes[1].set_title(f"σ_{k + 1}/σ_{k} = {result.gap_ratio:.2f}; subspace sin∠ to SVD {result.dist_V:.1e}", fontsize=9)
    return fig


# ---------------------------------------------------------------------------------------- linearity
def _draw_linearity_curves(axes: Sequence, sweep: LinearitySweep, lam_mark=None) -> None:
    """Four panels: norm ratio, cosine, raw error and relative error against λ, one line per t."""
    lam = _np(sweep.lambdas)
    for i, t in enumerate(_np(sweep.ts)):
        kw = {"label": f"t = {t:g}"}
        axes[0].plot(lam, _np(sweep.norm_ratio[i]), **kw)
        axes[1].plot(lam, _np(sweep.cosine[i]), **kw)
        axes[2].plot(lam, _np(sweep.error[i]), **kw)
        axes[3].plot(lam, _np(sweep.rel_error[i]), **kw)
    axes[0].set_ylabel("‖f(x+λΔx)‖ / ‖l(x;λΔx)‖")
    axes[1].set_ylabel("cos ∠(f(x+λΔx), l(x;λΔx))")
    axes[2].set_ylabel("‖f(x+λΔx) − l(x;λΔx)‖")
    axes[3].set_ylabel("‖f(x+λΔx) − l(x;λΔx)‖ / ‖f(x)‖")
    for ax, name in zip(axes, ("norm ratio", "cosine similarity", "linearisation error (raw)", "linearisation error (relative)")):
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("λ")
        ax.ticklabel_format(axis="y", useOffset=False)  # values near 1 as they are, no "1e-5 + 1" offset text
        if lam_mark is not None:
            ax.axvline(lam_mark, color="k", lw=0.6)
    axes[1].legend(fontsize=7)


def plot_linearity(sweep: LinearitySweep, lam_mark=None) -> Figure:
    """Eq. 4 diagnostics vs λ, one line per t (the paper's Figure 2b / Figure 10 for the exact PMP), in a 2 × 2 grid."""
    fig, axes = new_figure(2, 2, 4.4, 3.0)
    _draw_linearity_curves(axes, sweep, lam_mark)
    fig.suptitle(f"local linearity of the exact PMP (eq. 4), unit direction Δx: {sweep.direction}", fontsize=10)
    return fig


def plot_linearity_heatmap(sweep: LinearitySweep) -> Figure:
    """1 − cosine and the relative error over the (t, λ) grid (log colour scale)."""
    from matplotlib.colors import LogNorm

    fig, axes = new_figure(1, 2, 4.6, 3.6)
    ts, lam = _np(sweep.ts), _np(sweep.lambdas)
    for ax, z, name in ((axes[0], 1 - _np(sweep.cosine), "1 − cosine"), (axes[1], _np(sweep.rel_error), "relative error")):
        z = np.clip(z, 1e-16, None)
        im = ax.pcolormesh(lam, ts, z, norm=LogNorm(vmin=max(z.min(), 1e-16), vmax=max(z.max(), 1e-15)), shading="nearest")
        fig.colorbar(im, ax=ax)
        ax.set_xlabel("λ")
        ax.set_ylabel("t")
        ax.set_title(name, fontsize=10)
    return fig


def plot_error_scaling(scalings: Sequence[ErrorScaling]) -> Figure:
    """Theorem 1 eq. 8, one line per t: error vs λ (log-log, λ² guide), error/λ vs λ (∝ λ) and
    κ = error / (λ² √ᾱ ᾱ/(1−ᾱ)), the constant left once the t-dependence is divided out."""
    if len(scalings) == 0:
        raise ValueError("plot_error_scaling needs at least one ErrorScaling; got none")
    fig, axes = new_figure(1, 3, 4.0, 3.4)
    for s in scalings:
        lam, e = _np(s.lambdas), _np(s.error)
        axes[0].loglog(lam, e, marker=".", label=f"t = {s.t:g} (slope {s.slope:.2f})")
        axes[1].loglog(lam, _np(s.error_over_lambda), marker=".", label=f"t = {s.t:g}")
        axes[2].semilogx(lam, _np(s.kappa), marker=".", label=f"t = {s.t:g}")
    s0 = scalings[0]
    lam0 = _np(s0.lambdas)
    axes[0].loglog(lam0, float(_np(s0.error)[0]) * (lam0 / lam0[0]) ** 2, color="0.5", ls="--", label="∝ λ²")
    axes[0].set_ylabel("‖f(x+λΔx) − f(x) − λJΔx‖")
    axes[0].set_title("error ∝ λ²", fontsize=10)
    axes[1].loglog(lam0, float(_np(s0.error_over_lambda)[0]) * lam0 / lam0[0], color="0.5", ls="--", label="∝ λ")
    axes[1].set_ylabel("error / λ")
    axes[1].set_title("error / λ = (ᾱ/(1−ᾱ)) O(λ)  (eq. 8)", fontsize=10)
    axes[2].set_ylabel("κ = error / (λ² √ᾱ ᾱ/(1−ᾱ))")
    axes[2].set_ylim(bottom=0)
    axes[2].set_title("the constant, t-dependence divided out", fontsize=10)
    for ax in axes:
        ax.set_xlabel("λ")
        ax.legend(fontsize=7)
    return fig


def plot_linearized_images(li: LinearizedImages) -> Figure:
    """f(x_t), f(x_t + λΔx), its linearisation l(x_t; λΔx) and the difference f − l, as images on one scale."""
    images = {"f(x_t)": li.f0, "f(x_t + λΔx)": li.f_perturbed, "l(x_t; λΔx)": li.linearized,
              "f − l": li.f_perturbed - li.linearized}
    return plot_images(images, title=f"t = {li.t:g}, λ = {li.lam:g}: ‖f − l‖/‖f(x_t + λΔx)‖ = {li.rel_error:.2e} "
                                     "(one colour scale)")


# ---------------------------------------------------------------------------------------- widget dashboards
def posterior_dashboard(model: MoLRG, comparison: RuleComparison) -> Figure:
    """x_t coloured by the class-1 weight under Bayes' rule and under the paper's weights, and their scatter."""
    d = _check_low_dim(model)
    fig = Figure(figsize=(13.5, 4.2), layout="constrained")
    kw = {"projection": "3d"} if d == 3 else {}
    ax0 = fig.add_subplot(1, 3, 1, **kw)
    ax1 = fig.add_subplot(1, 3, 2, **kw)
    ax2 = fig.add_subplot(1, 3, 3)
    sc = draw_point_cloud(ax0, model, comparison.x_t, values=comparison.weights_bayes[:, 0], title="w_1(x_t), Bayes' rule")
    draw_point_cloud(ax1, model, comparison.x_t, values=comparison.weights_paper[:, 0], title="w_1(x_t), paper's weights")
    fig.colorbar(sc, ax=[ax0, ax1], shrink=0.7, label="posterior weight of class 1")
    _draw_weight_scatter(ax2, comparison)
    pis = ", ".join(f"{float(p):.2f}" for p in model.weights)
    fig.suptitle(f"ranks {model.ranks}, π = ({pis}), d = {model.d}, t = {comparison.t:g}", fontsize=10)
    return fig


def jacobian_dashboard(current: SpectrumSweep, sweep: SpectrumSweep) -> Figure:
    """At the current t: the spectrum of J (first point); along t: rank ratio and alignment, current t marked."""
    t = float(current.ts[0])
    fig, axes = new_figure(1, 3, 4.2, 3.4)
    _draw_spectrum(axes[0], current.singular_values[0, 0], current.r, int(current.numerical_rank[0, 0]),
                   f"spectrum of J at t = {t:g}")
    _draw_rank_ratio(axes[1], sweep, t)
    _draw_alignment(axes[2], sweep, t)
    return fig


def linearity_dashboard(sweep: LinearitySweep, li: LinearizedImages) -> Figure:
    """Top: eq. 4 diagnostics (norm ratio, cosine, raw and relative error) vs λ at one t, the current λ marked;
    bottom: the images at the current λ."""
    fig = Figure(figsize=(14.0, 6.6), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.15, 1])
    axes = top.subplots(1, 4)
    _draw_linearity_curves(axes, sweep, li.lam)
    imgs = {"f(x_t)": li.f0, "f(x_t + λΔx)": li.f_perturbed, "l(x_t; λΔx)": li.linearized,
            "f − l": li.f_perturbed - li.linearized}
    arrays = {k: _np(v) for k, v in imgs.items()}
    scale = max(float(np.abs(a).max()) for a in arrays.values()) or 1.0
    iaxes = bottom.subplots(1, len(arrays))
    for ax, (name, a) in zip(iaxes, arrays.items()):
        img, kw = _to_image(a, scale)
        ax.imshow(img, **kw)
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    bottom.suptitle(f"t = {li.t:g}, λ = {li.lam:g}, Δx {sweep.direction}: ‖f − l‖/‖f(x_t + λΔx)‖ = {li.rel_error:.2e}", fontsize=10)
    return fig


# ---------------------------------------------------------------------------------------- Figure 2 for any model
def figure2_panels(results: Sequence[Mapping] | Mapping) -> Figure:
    """The paper's Figure 2 from ``lococourse.cli.rank_curve.compute`` results (one or several models):
    (a) rank ratio vs t (log scale, the 0.1 line), (b) norm ratio and cosine vs λ at the linearity t."""
    results = [results] if isinstance(results, Mapping) else list(results)
    fig, (ax_a, ax_n, ax_c) = new_figure(1, 3, width=3.8)
    for k, res in enumerate(results):
        rc, lin, c = res["rank_curve"], res["linearity"], _class_color(k)
        ax_a.plot(rc["t"], rc["rank_ratio"], "o-", color=c, label=f"{res['model']} (d = {res['d']})")
        ax_n.plot(lin["lambda"], lin["norm_ratio"], "o-", color=c, label=res["model"])
        ax_c.plot(lin["lambda"], lin["cosine"], "o-", color=c, label=res["model"])
    if any(res["rank_curve"]["t"] for res in results):
        ax_a.axhline(0.1, color="grey", ls="--", lw=1)
        ax_a.set(yscale="log", xlabel="t", ylabel="rank ratio (eq. 10, η = 0.99)", title="(a) low rank of J")
    else:  # e.g. a 256² model, whose dense Jacobian does not fit
        ax_a.text(0.5, 0.5, "(a) not computed:\nno dense Jacobian at this size", ha="center", va="center",
                  transform=ax_a.transAxes)
        ax_a.set_axis_off()
    t_lin = results[0]["linearity"]["t"]
    ax_n.set(xlabel="λ", ylabel="‖f(x+λΔx)‖ / ‖l(x;λΔx)‖", title=f"(b) norm ratio, t = {t_lin:.2f}")
    ax_c.set(xlabel="λ", ylabel="cos(f(x+λΔx), l(x;λΔx))", title=f"(b) cosine, t = {t_lin:.2f}")
    if any(res["rank_curve"]["t"] for res in results):
        ax_a.legend(fontsize=8)
    return fig


# ---------------------------------------------------------------------------------------- 02: Tweedie, Gaussian data
def plot_tweedie(checks: Sequence[TweedieCheck]) -> Figure:
    """Entries of J (Lemma 2) against √ᾱ/(1−ᾱ)·Cov_MC[x₀|x_t] (Monte Carlo), one panel per check: the diagonal is equality."""
    if len(checks) == 0:
        raise ValueError("plot_tweedie needs at least one TweedieCheck")
    fig, axes = new_figure(1, len(checks), 3.4, 3.3)
    for ax, c in zip(axes, checks):
        a, b = _np(c.J).ravel(), _np(c.scaled_cov).ravel()
        lim = float(max(np.abs(a).max(), np.abs(b).max())) * 1.05
        ax.plot([-lim, lim], [-lim, lim], color="0.6", lw=0.8)
        ax.plot(a, b, ".", ms=3)
        ax.set(xlabel="J_ij (Lemma 2, closed form)", ylabel="√ᾱ/(1−ᾱ) · Cov_MC[x₀|x_t]_ij", xlim=(-lim, lim),
               ylim=(-lim, lim))
        ax.set_title(f"t = {c.t:g}: rel. error {c.rel_error:.3f} (MC noise {c.mc_noise:.3f})", fontsize=9)
    return fig


def plot_gaussian_rank(sweeps: Mapping[str, GaussianRankSweep]) -> Figure:
    """Rank ratio of the exact J against t (log t axis) for Gaussian data of several spectra (label → sweep)."""
    if len(sweeps) == 0:
        raise ValueError("plot_gaussian_rank needs at least one sweep")
    fig, axes = new_figure(1, 1, 5.2, 3.6)
    ax = axes[0]
    for k, (label, sw) in enumerate(sweeps.items()):
        ax.plot(_np(sw.ts), _np(sw.rank_ratio), "o-", ms=3, color=_class_color(k), label=label)
    ax.set(xscale="log", xlabel="t", ylabel="rank ratio (eq. 10, η = 0.99)", ylim=(0, 1.05),
           title="exact J of Gaussian data: the left arm needs full-rank data")
    ax.legend(fontsize=7)
    return fig


# ---------------------------------------------------------------------------------------- 03: spread over points
def plot_point_spread(sweep: LinearitySweep) -> Figure:
    """Relative linearisation error against λ for *each* point (one panel per t): the mean hides the spread."""
    if sweep.rel_error_points is None:
        raise ValueError("this LinearitySweep holds no per-point errors")
    T = len(sweep.ts)
    fig, axes = new_figure(1, T, 3.6, 3.2)
    lam = _np(sweep.lambdas)
    for ax, t, pts in zip(axes, _np(sweep.ts), _np(sweep.rel_error_points)):
        for e in pts:
            ax.semilogy(lam, np.maximum(e, 1e-17), lw=0.9)
        ax.set(xlabel="λ", ylabel="‖f(x+λΔx) − l‖ / ‖f(x)‖", ylim=(1e-17, 1e2),
               title=f"t = {t:g}: {len(pts)} points, Δx {sweep.direction}")
        ax.title.set_fontsize(9)
    return fig


# ---------------------------------------------------------------------------------------- 06: DDIM inversion
def plot_inversion_sweep(sweeps: Mapping[str, InversionSweep], show: int = 3) -> Figure:
    """Reconstruction error of DDIM(DDIM-Inv(x₀, t), 0) against t (label → sweep; PSNR for image models,
    relative error for all), and, for the first sweep, x₀, x_t and the reconstruction at the largest t."""
    if len(sweeps) == 0:
        raise ValueError("plot_inversion_sweep needs at least one sweep")
    first = next(iter(sweeps.values()))
    n = min(show, len(first.x0))
    fig = Figure(figsize=(4.6 + 2.0 * 3, max(2.2 * n, 3.4)), layout="constrained")
    left, right = fig.subfigures(1, 2, width_ratios=[4.6, 6.0])
    ax = left.subplots(1, 1)
    for k, (label, sw) in enumerate(sweeps.items()):
        rel = _np(sw.rel_error)
        ax.semilogy(sw.ts, rel.mean(1), "o-", ms=3, color=_class_color(k), label=label)
        ax.fill_between(sw.ts, rel.min(1), rel.max(1), color=_class_color(k), alpha=0.2)
    ax.set(xlabel="t (inverted to, then sampled back)", ylabel="‖DDIM(DDIM-Inv(x₀, t), 0) − x₀‖ / ‖x₀‖",
           title="DDIM inversion + sampling: reconstruction error")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7)
    iax = right.subplots(n, 3, squeeze=False)
    j = len(first.ts) - 1
    for i in range(n):
        for c, (name, im) in enumerate((("x₀", first.x0[i]), (f"x_t, t = {first.ts[j]:g}", first.x_t[j, i]),
                                        (f"reconstruction, {float(first.psnr[j, i]):.1f} dB", first.reconstructions[j, i]))):
            a = _np(im).astype(float)
            scale = 1.0 if c != 1 else max(float(np.abs(a).max()), 1e-12)
            img, kw = _to_image(a, scale)
            iax[i, c].imshow(img, interpolation="nearest", **kw)
            iax[i, c].set_title(name, fontsize=8)
            iax[i, c].set_xticks([])
            iax[i, c].set_yticks([])
    return fig
