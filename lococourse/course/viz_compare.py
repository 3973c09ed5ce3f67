"""Matplotlib views of :mod:`lococourse.course.compare`: learned vs exact PMPs (notebook 04) and Figure 2 on the
course models (notebook 05).  Each ``plot_*`` takes computed results and returns an untracked
``matplotlib.figure.Figure``; the ``*_view`` functions (what the notebooks' widgets call) run one
compare function and one plot.  Nothing here computes beyond reshaping and ratios.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib
import numpy as np
import torch
from matplotlib.figure import Figure

from lococourse.core.schedule import check_t
from lococourse.course import compare
from lococourse.course.compare import ComparisonSweep, Figure2Run, LearnedVsExact, PointComparison, SingularAt
from lococourse.course.viz import new_figure

__all__ = [
    "plot_rank_vs_t", "plot_errors_vs_t", "plot_spectra", "plot_spectra_grid", "plot_pmp_images",
    "comparison_dashboard", "compare_view", "plot_rank_curves", "plot_figure2_spectra", "plot_singular_at",
    "figure2_view",
]

COLORS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)


def _sweeps(sweeps) -> list[ComparisonSweep]:
    out = [sweeps] if isinstance(sweeps, ComparisonSweep) else list(sweeps.values() if isinstance(sweeps, Mapping) else sweeps)
    if not out or not all(isinstance(s, ComparisonSweep) for s in out):
        raise ValueError("give one ComparisonSweep, or a list or dict of them")
    return out


def _mark(ax, t_mark) -> None:
    if t_mark is not None:
        ax.axvline(float(t_mark), color="k", lw=0.7)


# ---------------------------------------------------------------------------------------- 04: along t
def _draw_rank(ax, sweeps: list[ComparisonSweep], t_mark=None) -> None:
    for k, s in enumerate(sweeps):
        c, ts = COLORS[k % len(COLORS)], _np(s.ts)
        ax.plot(ts, _np(s.rank_ratio_learned), "o-", color=c, ms=4, label=f"{s.name}: learned J_θ")
        ax.plot(ts, _np(s.rank_ratio_exact), "s--", color=c, ms=3, mfc="none", label=f"{s.name}: exact J")
        ax.axhline(s.r / s.d, color=c, lw=0.7, ls=":", label=f"Σ r_k / d = {s.r}/{s.d}")
    ax.axhline(0.1, color="0.5", lw=0.8, ls="--", label="0.1 (the paper's 'low rank')")
    ax.set(yscale="log", xlabel="t", ylabel="rank ratio (eq. 10, η = 0.99)", title="rank ratio: learned vs exact")
    ax.legend(fontsize=7)
    _mark(ax, t_mark)


def plot_rank_vs_t(sweeps, t_mark=None) -> Figure:
    """Rank ratio of the learned and the exact Jacobian against t (Figure 2a next to Theorem 1), per model."""
    fig, axes = new_figure(1, 1, 5.6, 4.0)
    _draw_rank(axes[0], _sweeps(sweeps), t_mark)
    return fig


def _draw_errors(ax, sweeps: list[ComparisonSweep], t_mark=None) -> None:
    for k, s in enumerate(sweeps):
        c, ts = COLORS[k % len(COLORS)], _np(s.ts)
        ax.plot(ts, _np(s.mean("pmp_error")), "o-", color=c, ms=4, label=f"{s.name}: PMP ‖f_θ − E‖/‖E‖")
        ax.plot(ts, _np(s.mean("jac_error")), "s--", color=c, ms=3, mfc="none", label=f"{s.name}: Jacobian ‖J_θ − J‖_F/‖J‖_F")
    ax.axhline(1.0, color="0.5", lw=0.8, ls=":", label="1 = as far as predicting 0")
    ax.set(yscale="log", xlabel="t", ylabel="relative error", title="learned vs exact (same x_t)")
    ax.legend(fontsize=7)
    _mark(ax, t_mark)


def plot_errors_vs_t(sweeps, t_mark=None) -> Figure:
    """Four panels against t: PMP and Jacobian errors; excess training loss over Bayes; alignment of the
    top-r singular subspaces with span(M) and the share of J_θ outside span(M); asymmetry of J_θ."""
    sweeps = _sweeps(sweeps)
    fig, axes = new_figure(1, 4, 3.9, 3.4)
    _draw_errors(axes[0], sweeps, t_mark)
    for k, s in enumerate(sweeps):
        c, ts = COLORS[k % len(COLORS)], _np(s.ts)
        axes[1].plot(ts, np.maximum(_np(s.mean("loss_ratio")) - 1, 1e-8), "o-", color=c, ms=4, label=s.name)
        axes[2].plot(ts, _np(s.mean("align_learned_U")), "o-", color=c, ms=4, label=f"{s.name}: top-r left (U)")
        axes[2].plot(ts, _np(s.mean("align_learned_V")), "s--", color=c, ms=3, mfc="none", label=f"{s.name}: top-r right (V)")
        axes[2].plot(ts, 1 - _np(s.mean("energy_in_span")), "^:", color=c, ms=3, label=f"{s.name}: 1 − ‖MᵀJ_θ‖²/‖J_θ‖²")
        axes[3].plot(ts, _np(s.mean("symmetry_learned")), "o-", color=c, ms=4, label=s.name)
    axes[1].set(yscale="log", xlabel="t", ylabel="‖f_θ − E‖² / tr Cov[x₀|x_t]",
                title="excess x₀-loss over Bayes at x_t")
    axes[2].set(xlabel="t", ylabel="‖(I − U_r U_rᵀ) M‖_F / ‖M‖_F", ylim=(0, None),
                title="alignment with span(M) (0 = exact)")
    axes[3].set(xlabel="t", ylabel="‖J_θ − J_θᵀ‖_F / ‖J_θ‖_F", ylim=(0, None), title="asymmetry of J_θ (Lemma 3: 0)")
    for ax in axes[1:]:
        ax.legend(fontsize=7)
        _mark(ax, t_mark)
    return fig


# ---------------------------------------------------------------------------------------- 04: spectra, images
def _check_point_index(point, n: int) -> int:
    if isinstance(point, bool) or not isinstance(point, (int, np.integer)) or not 0 <= int(point) < n:
        raise ValueError(f"point must be an integer in 0..{n - 1}; got {point!r}")
    return int(point)


def _draw_spectra(ax, S_l, S_e, r: int, rank_l: int, rank_e: int, title: str) -> None:
    S_l, S_e = _np(S_l), _np(S_e)
    i = np.arange(1, len(S_l) + 1)
    floor = 1e-12 * max(S_l[0], S_e[0])
    ax.semilogy(i, np.maximum(S_l, floor), ".", ms=5, label=f"learned J_θ (numerical rank {rank_l})")
    ax.semilogy(i, np.maximum(S_e, floor), "x", ms=4, label=f"exact J (numerical rank {rank_e})")
    ax.axvline(r + 0.5, color="tab:red", lw=0.8, ls="--", label=f"Σ r_k = {r}")
    ax.set(xlabel="i", ylabel="σ_i", title=title, ylim=(floor, None))
    ax.legend(fontsize=7)


def plot_spectra(pc: PointComparison, point: int = 0) -> Figure:
    """All singular values of the learned and the exact Jacobian at one point (log scale)."""
    p = _check_point_index(point, pc.n)
    fig, axes = new_figure(1, 1, 5.0, 3.6)
    _draw_spectra(axes[0], pc.S_learned[p], pc.S_exact[p], pc.r, int(pc.rank_learned[p]), int(pc.rank_exact[p]),
                  f"{pc.name}, t = {pc.t:g}, point {p}")
    return fig


def plot_spectra_grid(sweep: ComparisonSweep, ts: Sequence[float] = (0.1, 0.5, 0.9), point: int = 0) -> Figure:
    """Spectra of learned and exact J at a few swept times (nearest swept t to each), one point."""
    p = _check_point_index(point, sweep.S_learned.shape[1])
    if len(ts) == 0:
        raise ValueError("ts must hold at least one time")
    fig, axes = new_figure(1, len(ts), 3.8, 3.3)
    for ax, t in zip(axes, ts):
        j = sweep.index(t)
        _draw_spectra(ax, sweep.S_learned[j, p], sweep.S_exact[j, p], sweep.r, int(sweep.rank_learned[j, p]),
                      int(sweep.rank_exact[j, p]), f"{sweep.name}, t = {float(sweep.ts[j]):g}")
    return fig


def _rgb(x: np.ndarray, scale: float) -> tuple[np.ndarray, dict]:
    """(C, H, W) → an imshow argument on the symmetric range [−scale, scale] (clipped in the picture only)."""
    if x.ndim == 3 and x.shape[0] == 3:
        return np.clip(0.5 + 0.5 * np.moveaxis(x, 0, -1) / scale, 0, 1), {}
    img = x[0] if x.ndim == 3 else x
    return img, {"cmap": "gray", "vmin": -scale, "vmax": scale}


def _draw_images(axes, images: Mapping[str, torch.Tensor], scales: Sequence[float]) -> None:
    for ax, (name, im), s in zip(axes, images.items(), scales):
        img, kw = _rgb(_np(im).astype(float), s or 1.0)
        ax.imshow(img, interpolation="nearest", **kw)
        ax.set_title(name, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])


def plot_pmp_images(pc: PointComparison, point: int = 0) -> Figure:
    """x_t, the exact E[x₀|x_t], the learned f_θ(x_t) and their difference (the last three on one scale)."""
    p = _check_point_index(point, pc.n)
    imgs = {"x_t": pc.x_t[p], "exact E[x₀|x_t]": pc.f_exact[p], "learned f_θ(x_t)": pc.f_learned[p],
            "f_θ − E": pc.f_learned[p] - pc.f_exact[p]}
    s = float(max(pc.f_exact[p].abs().max(), pc.f_learned[p].abs().max()))
    fig, axes = new_figure(1, 4, 2.3, 2.5)
    _draw_images(axes, imgs, [float(pc.x_t[p].abs().max()), s, s, s])
    fig.suptitle(f"{pc.name}, t = {pc.t:g}: ‖f_θ − E‖/‖E‖ = {float(pc.pmp_error[p]):.3f} (RGB, one scale right of x_t)",
                 fontsize=9)
    return fig


def comparison_dashboard(pc: PointComparison, sweep: ComparisonSweep | None = None, point: int = 0) -> Figure:
    """At the current t: spectra of J_θ and J at one point; along t (if a sweep is given): rank ratio and
    errors with the current t marked."""
    p = _check_point_index(point, pc.n)
    fig, axes = new_figure(1, 3 if sweep is not None else 1, 4.3, 3.6)
    _draw_spectra(axes[0], pc.S_learned[p], pc.S_exact[p], pc.r, int(pc.rank_learned[p]), int(pc.rank_exact[p]),
                  f"{pc.name}, t = {pc.t:g}, point {p}: PMP err {float(pc.pmp_error[p]):.2f}, "
                  f"J err {float(pc.jac_error[p]):.2f}")
    axes[0].title.set_fontsize(8)
    if sweep is not None:
        _draw_rank(axes[1], [sweep], pc.t)
        _draw_errors(axes[2], [sweep], pc.t)
    return fig


def compare_view(pair: LearnedVsExact, t: float = 0.5, point: int = 0, sweep=None, n: int = 4, seed: int = 0) -> Figure:
    """The widget view of notebook 04: :func:`compare.compare_at` at t, drawn by :func:`comparison_dashboard`.

    ``sweep`` is a :class:`ComparisonSweep` of this pair, or a dict name → sweep (the pair's is picked), or None.
    """
    check_t(t)
    _check_point_index(point, n)
    if isinstance(sweep, Mapping):
        sweep = sweep.get(pair.name)
    if sweep is not None and not isinstance(sweep, ComparisonSweep):
        raise ValueError(f"sweep must be a ComparisonSweep, a dict of them or None; got {type(sweep).__name__}")
    return comparison_dashboard(compare.compare_at(pair, t, n=n, seed=seed, keep_jacobians=False), sweep, point)


# ---------------------------------------------------------------------------------------- 05: Figure 2
def plot_rank_curves(curves: Mapping[str, tuple]) -> Figure:
    """Rank ratio against t for several runs (label → (ts, rank ratios)), log scale, the paper's 0.1 line."""
    if len(curves) == 0:
        raise ValueError("plot_rank_curves needs at least one curve")
    fig, axes = new_figure(1, 1, 5.4, 3.8)
    ax = axes[0]
    for k, (label, (ts, rr)) in enumerate(curves.items()):
        ax.plot(_np(ts), _np(rr), "o-", color=COLORS[k % len(COLORS)], ms=4, label=label)
    ax.axhline(0.1, color="0.5", lw=0.8, ls="--", label="0.1 (low rank)")
    ax.set(yscale="log", xlabel="t", ylabel="rank ratio (eq. 10, η = 0.99)", title="Figure 2(a) on the course models")
    ax.legend(fontsize=7)
    return fig


def plot_figure2_spectra(run: Figure2Run, point: int = 0) -> Figure:
    """σ_i/σ_1 of the PMP Jacobian at every t of the run (one trajectory point), numerical ranks marked."""
    if run.rank is None or not run.rank.spectra:
        raise ValueError("this run has no spectra (it was built with ts = ())")
    p = _check_point_index(point, run.n)
    fig, axes = new_figure(1, 1, 5.4, 3.8)
    ax = axes[0]
    cmap = matplotlib.colormaps["viridis"]
    T = len(run.rank.ts)
    for j, (t, S) in enumerate(zip(run.rank.ts, run.rank.spectra)):
        s = np.asarray(S[p], dtype=float)
        rel = np.maximum(s / s[0], 1e-12)
        c = cmap(j / max(T - 1, 1))
        ax.semilogy(np.arange(1, len(s) + 1), rel, color=c, lw=1, label=f"t = {t:g} (rank {int(run.rank.ranks[j, p])})")
        ax.plot(run.rank.ranks[j, p], rel[int(run.rank.ranks[j, p]) - 1], "o", color=c, ms=4)
    ax.set(xscale="log", xlabel="i", ylabel="σ_i / σ_1", ylim=(1e-6, 1.5),
           title=f"{run.name}: spectra of J_θ,t (dots: numerical rank)")
    ax.legend(fontsize=7)
    return fig


def plot_singular_at(sa: SingularAt, name: str = "") -> Figure:
    """x_t, x̂₀ = f(x_t), the spectrum (numerical rank marked) and the top right singular vectors v_i
    (LOCO Edit's editing directions) at one trajectory point."""
    k = len(sa.V)
    fig = Figure(figsize=(2.1 * (k + 2) + 3.6, 2.9), layout="constrained")
    left, right = fig.subfigures(1, 2, width_ratios=[2.1 * (k + 2), 3.6])
    iaxes = left.subplots(1, k + 2)
    imgs = {"x_t": sa.x_t, "x̂₀ = f(x_t)": sa.x0_hat, **{f"v_{i + 1}, σ = {float(sa.S[i]):.2f}": sa.V[i] for i in range(k)}}
    scales = [float(sa.x_t.abs().max()), 1.0] + [float(v.abs().max()) for v in sa.V]
    _draw_images(iaxes, imgs, scales)
    ax = right.subplots(1, 1)
    S = _np(sa.S)
    ax.semilogy(np.arange(1, len(S) + 1), np.maximum(S / S[0], 1e-12), ".", ms=3)
    ax.axvline(sa.rank + 0.5, color="tab:green", lw=0.8, ls=":", label=f"numerical rank {sa.rank} (η = {sa.eta})")
    ax.set(xscale="log", xlabel="i", ylabel="σ_i / σ_1", ylim=(1e-6, 1.5), title=f"t = {sa.t:g}, d = {len(S)}")
    ax.legend(fontsize=7)
    left.suptitle(f"{name} t = {sa.t:g}: point, prediction and top-{k} right singular vectors", fontsize=9)
    return fig


def figure2_view(run: Figure2Run, t: float = 0.7, point: int = 0, k: int = 4) -> Figure:
    """The widget view of notebook 05: :func:`compare.singular_at` drawn by :func:`plot_singular_at`."""
    return plot_singular_at(compare.singular_at(run, t, point, k), run.name)
