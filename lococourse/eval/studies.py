"""Edit quality on procedural faces, measured: which factors an edit changed, by analysis by synthesis.

The faces of :mod:`lococourse.data.faces` are a known, differentiable function of 9 factors,
each belonging to one of 5 parts.  So "did the edit change only the eyes?" — the question the
paper's human raters answered (Appendix G.2, Table 1) — has a measurable answer here:

1. **Estimate** the factors of any face image by analysis by synthesis (:func:`estimate_factors`):
   find θ ∈ [0, 1]⁹ minimising ‖render(θ) − x‖² with

   a. a seeded quasi-random pool of rendered candidates (the best ``n_starts`` per image by MSE),
   b. projected Adam on every start (batched: all images × all starts in one rendering),
   c. a coordinate grid sweep of each factor of the best fit (escapes the local minima of small,
      edge-only features such as the gaze), and a second Adam polish.

   ``bg_hue`` is periodic (the background palette is a cosine of period 1), so it is optimised
   modulo 1 and compared on the circle (:func:`factor_delta`).
2. **Compare** two images by their estimated factors (:func:`factor_changes`), always against the
   model's own λ = 0 reconstruction so that the model's reconstruction error cancels.
3. **Decide** with per-factor thresholds set from the estimator's measured noise
   (:func:`calibrate_thresholds`, :data:`DEFAULT_THRESHOLDS`): a factor *changed* when
   |Δθ_i| > τ_i.

   * :func:`local_edit_success` — some factor of the masked part changed and no factor of any other
     part did (the paper's "only one major feature is edited").
   * :func:`transfer_success` — the transferred edit changed the same factors as the source edit, in
     the same directions (the paper's "the two edited images have the same features changed").
   * :func:`transfer_main_success` — looser: the source edit's main factor changes the same way.
   * :func:`factor_linearity` — R² of the main factor's change against λ.
   * :func:`factor_composability` — ‖Δθ_composite − Σ Δθ_i‖ / ‖Σ Δθ_i‖.
4. **Edit** generated faces through a model (Algorithm 1, and the ablations of the benchmark):
   :func:`prepare_faces` (DDIM-Inv, reconstructions), :func:`face_directions` (every method × part
   from one linearisation, :class:`JacobianViews`), :func:`edit_face`; and the property studies of
   notebook 07 (:func:`transfer_study`, :func:`composition_study`, :func:`linearity_study`,
   :func:`t_study`, :func:`r_null_study`).

No plotting here (see :mod:`lococourse.course.viz_edit`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from lococourse.core.checks import check_strength
from lococourse.data.faces import FACTOR_NAMES
from lococourse.editing.loco import complement_basis, find_direction, linearize
from lococourse.editing.metrics import composability, leakage, linearity_r2, ssim_outside
from lococourse.editing.strength import default_strength_grid
from lococourse.eval.decisions import (
    factor_composability,
    factor_linearity,
    local_edit_success,
    transfer_main_success,
    transfer_success,
)
from lococourse.eval.faces import (
    TARGET_CHANGE,
    FaceSet,
    apply_face_edit,
    edit_face,
    face_directions,
    find_face_direction,
    fit_row,
    model_size,
    prepare_faces,
    resolve_thresholds,
    sample_edits,
    target_strengths,
    true_factor_edits,
)
from lococourse.eval.factors import EstimatorConfig, check_part, factor_changes, factors_of_part
from lococourse.jacobian.operator import check_mask
from lococourse.jacobian.subspace import project_out


# ---------------------------------------------------------------------------------------- properties (notebook 07)
def _edits(model, faces: FaceSet, rows: Sequence[int], xs: Sequence[torch.Tensor], config=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample edited x_t's of faces ``rows`` and estimate their factor changes against their reconstructions."""
    out = sample_edits(model, torch.stack(list(xs)), faces.t, steps=faces.sample_steps)
    ch = factor_changes(faces.recon[list(rows)], out, config, reference=fit_row(faces, list(rows)))
    return out, ch


@dataclass
class TransferStudy:
    """One direction found on a source face, added unchanged to other faces' x_t (homogeneity, §3.2)."""

    part: str
    strength: float
    seeds: list  # [source, *targets]
    reconstructions: torch.Tensor  # (n, 3, S, S)
    edited: torch.Tensor  # (2, n, 3, S, S): at −λ and +λ
    changes: torch.Tensor  # (2, n, 9)
    success: torch.Tensor  # (2, n − 1) transfer success per sign and target (same factors, same signs)
    main_success: torch.Tensor  # (2, n − 1) the source's main factor changes the same way (transfer_main_success)
    source_local: torch.Tensor  # (2,) local-edit success of the source edits

    @property
    def rate(self) -> float:
        return float(self.success.float().mean())

    @property
    def main_rate(self) -> float:
        return float(self.main_success.float().mean())


def transfer_study(model, source_seed: int, target_seeds: Sequence[int], part: str, *, strength: float = 8.0,
                   t: float = 0.6, index: int = 0, r: int = 5, r_null: int = 5, method: str = "loco",
                   thresholds=None, max_iter: int = 30, config: EstimatorConfig | None = None) -> TransferStudy:
    """Find the direction on ``source_seed``'s face; apply it at ±λ to it and to every target face."""
    lam = check_strength(strength)
    th = resolve_thresholds(thresholds, model)
    seeds = [int(source_seed), *[int(s) for s in target_seeds]]
    faces = prepare_faces(model, seeds, t, config=config)
    d = face_directions(model, faces, 0, methods=[method], parts=[part], index=index, r=r, r_null=r_null,
                        max_iter=max_iter).directions[(method, part)]
    n = len(seeds)
    rows = [j for _ in (-1, 1) for j in range(n)]
    xs = [faces.x_t[j] + s * lam * d.v for s in (-1, 1) for j in range(n)]
    out, ch = _edits(model, faces, rows, xs, config)
    out, ch = out.reshape(2, n, *out.shape[1:]), ch.reshape(2, n, -1)
    success = transfer_success(ch[:, :1], ch[:, 1:], th)
    main = transfer_main_success(ch[:, :1], ch[:, 1:], th)
    return TransferStudy(part, lam, seeds, faces.recon, out, ch, success, main, local_edit_success(ch[:, 0], part, th))


@dataclass
class CompositionStudy:
    """Directions for several parts of one face, applied alone and together: x_t + Σ λ_i v_i."""

    parts: list
    strengths: list
    reconstruction: torch.Tensor  # (3, S, S)
    singles: torch.Tensor  # (k, 3, S, S)
    composite: torch.Tensor  # (3, S, S)
    single_changes: torch.Tensor  # (k, 9)
    composite_changes: torch.Tensor  # (9,)
    pixel_composability: float  # ‖Δ_comp − Σ Δ_i‖ / ‖Σ Δ_i‖ in pixels
    factor_composability: float  # the same in factor space


def composition_study(model, seed: int, parts: Sequence[str] = ("hair", "face"), strengths: Sequence[float] = (8.0, 8.0), *,
                      t: float = 0.6, index: int = 0, r: int = 5, r_null: int = 5, max_iter: int = 30,
                      config: EstimatorConfig | None = None) -> CompositionStudy:
    """LOCO directions for ``parts`` of one face (one linearisation), each alone at its λ and all together."""

    if len(parts) != len(strengths) or len(parts) < 2:
        raise ValueError(f"give ≥ 2 parts and one strength each; got parts {list(parts)} and strengths {list(strengths)}")
    lams = [check_strength(v) for v in strengths]
    faces = prepare_faces(model, [seed], t, config=config)
    fd = face_directions(model, faces, 0, methods=["loco"], parts=list(parts), index=index, r=r, r_null=r_null,
                         max_iter=max_iter)
    missing = [p for p in parts if ("loco", p) not in fd.directions]
    if missing:
        raise ValueError(f"the masks of {missing} are empty or the whole image for face {seed}")
    vs = [fd.directions[("loco", p)].v for p in parts]
    xs = [faces.x_t[0] + lam * v for lam, v in zip(lams, vs)] + [faces.x_t[0] + sum(lam * v for lam, v in zip(lams, vs))]
    out, ch = _edits(model, faces, [0] * len(xs), xs, config)
    k = len(parts)
    return CompositionStudy(list(parts), lams, faces.recon[0], out[:k], out[k], ch[:k], ch[k],
                            composability(faces.recon[0], out[k], list(out[:k])), factor_composability(ch[k], list(ch[:k])))


@dataclass
class LinearityStudy:
    """One direction swept over λ: how linearly the image and the main factor follow λ (Appendix C.1)."""

    part: str
    strengths: list
    reconstruction: torch.Tensor  # (3, S, S)
    edited: torch.Tensor  # (L, 3, S, S)
    changes: torch.Tensor  # (L, 9)
    main_factor: str
    factor_r2: float  # R² of Δθ_main against λ
    pixel_r2: float  # R² of the projection of each image change on the largest-|λ| change, against λ


def linearity_study(model, seed: int, part: str, strengths: Sequence[float] = (-8, -4, -2, 2, 4, 8), *, t: float = 0.6,
                    index: int = 0, r: int = 5, r_null: int = 5, max_iter: int = 30,
                    config: EstimatorConfig | None = None) -> LinearityStudy:
    """x₀'(λ) = DDIM(x_t + λ v_p, 0) over ``strengths``; R² of the pixel change and of the change of the
    part's main factor (the one of the part's factors that moves most over the sweep)."""

    lams = [check_strength(v) for v in strengths]
    faces, d = find_face_direction(model, seed, part, t=t, index=index, r=r, r_null=r_null, max_iter=max_iter, config=config)
    out, ch = _edits(model, faces, [0] * len(lams), [faces.x_t[0] + lam * d.v for lam in lams], config)
    own = [FACTOR_NAMES.index(n) for n in factors_of_part(part)]
    main = own[int(ch[:, own].abs().max(0).values.argmax())]  # the part's factor that moved most
    r2, name = factor_linearity(lams, ch, main)
    delta = (out - faces.recon[0]).flatten(1).double()
    ref = delta[max(range(len(lams)), key=lambda j: abs(lams[j]))]
    proj = (delta @ ref / ref.norm()).numpy()
    return LinearityStudy(part, lams, faces.recon[0], out, ch, name, r2, linearity_r2(lams, proj))


@dataclass
class SweepStudy:
    """One edit (face, part, λ) repeated over the values of one parameter (t or r')."""

    parameter: str
    values: list
    part: str
    strength: float
    reconstructions: torch.Tensor  # (m, 3, S, S) the λ = 0 reference per value (t changes it)
    edited: torch.Tensor  # (m, 3, S, S)
    changes: torch.Tensor  # (m, 9)
    local_success: list
    leakage: list
    ssim_outside: list
    masked_change: list  # the largest |Δθ| among the part's factors


def _sweep(parameter, values, part, lam, recons, out, ch, mask, th) -> SweepStudy:

    own = [FACTOR_NAMES.index(n) for n in factors_of_part(part)]
    return SweepStudy(parameter, list(values), part, lam, recons, out, ch,
                      [bool(local_edit_success(c, part, th)) for c in ch],
                      [leakage(a, b, mask) for a, b in zip(recons, out)],
                      [ssim_outside(a, b, mask) for a, b in zip(recons, out)],
                      [float(c[own].abs().max()) for c in ch])


def t_study(model, seed: int, part: str, ts: Sequence[float] = (0.4, 0.6, 0.8), *, strength: float = 8.0, index: int = 0,
            r: int = 5, r_null: int = 5, thresholds=None, max_iter: int = 30, config: EstimatorConfig | None = None) -> SweepStudy:
    """The same edit at several edit times t (Appendix C.1, "noise levels"): invert, find, edit at each t."""
    lam = check_strength(strength)
    th = resolve_thresholds(thresholds, model)
    edits = [edit_face(model, seed, part, t=t, index=index, strength=lam, r=r, r_null=r_null, thresholds=th,
                       max_iter=max_iter, config=config) for t in ts]
    return _sweep("t", [e.t for e in edits], part, lam, torch.stack([e.reconstruction for e in edits]),
                  torch.stack([e.edited for e in edits]), torch.stack([e.changes for e in edits]), edits[0].mask, th)


def r_null_study(model, seed: int, part: str, r_nulls: Sequence[int] = (0, 1, 5, 10, 20), *, strength: float = 8.0,
                 t: float = 0.6, index: int = 0, r: int = 5, thresholds=None, max_iter: int = 30,
                 config: EstimatorConfig | None = None) -> SweepStudy:
    """The same edit with r' = 0, 1, …: one masked SVD, one top-max(r') complement SVD, projected on prefixes."""
    lam = check_strength(strength)
    th = resolve_thresholds(thresholds, model)
    if any(int(v) != v or v < 0 for v in r_nulls):
        raise ValueError(f"r' values must be non-negative integers; got {list(r_nulls)}")
    faces = prepare_faces(model, [seed], t, config=config)
    mask = faces.masks[part][0]
    if not mask.any() or mask.all():
        raise ValueError(f"the {part} mask of face {seed} is empty or the whole image")
    # Algorithm 1 at r' = 0 gives v (steps 4, 6, 8); step 5 once at the largest r' gives V̄, whose first r'
    # columns are the top-r' basis of every smaller r'; step 7 (project_out) and 8 on each prefix.
    views = linearize(model.pmp(faces.t), faces.x_t[0])
    v = find_direction(views, None, mask, index=index, r=r, r_null=0, tol=1e-3, max_iter=max_iter).v.reshape(-1)
    mask_full = check_mask(mask, views.base.shape_out)
    null, _ = complement_basis(views, mask_full, max(int(x) for x in r_nulls), tol=1e-3, max_iter=max_iter)
    Vb = None if null is None else null.V
    xs = []
    for rn in r_nulls:
        vp = project_out(v, Vb[:, :rn] if rn else None)
        xs.append(faces.x_t[0] + lam * (vp / vp.norm()).reshape(faces.x_t.shape[1:]))
    out, ch = _edits(model, faces, [0] * len(xs), xs, config)
    recons = faces.recon[[0] * len(xs)]
    return _sweep("r'", [int(x) for x in r_nulls], part, lam, recons, out, ch, mask, th)


# ---------------------------------------------------------------------------------------- methods side by side (notebook 06)
@dataclass
class MethodStudy:
    """One face and part edited by several methods of :data:`~lococourse.eval.faces.METHODS`, each at its own λ, and
    the upper bound: the true single-factor edits of the part (rendered, inverted, resampled), scored alike."""

    seed: int
    part: str
    t: float
    edits: dict  # method -> FaceEdit (λ per direction by target, or the one given)
    strength_mode: str  # "target" (λ per direction, recorded in direction.extra["strength"]) or "fixed"
    target: float | None  # the main-factor change λ-by-target aimed at
    true_edits: torch.Tensor  # (m, 3, S, S) the upper bound's images
    true_meta: list  # [(factor name, signed delta)]
    true_changes: torch.Tensor  # (m, 9) their estimated factor changes
    true_local: list  # local-edit success of each true edit

    def summary(self) -> str:
        rows = [f"{m}: λ = {e.strength:.3g}, local {'✓' if e.local_success else '✗'}, leakage "
                f"{e.metrics['leakage']:.2f}, changed {e.changed_factors}" for m, e in self.edits.items()]
        ub = sum(self.true_local) / max(1, len(self.true_local))
        return "\n".join(rows + [f"upper bound (true single-factor edits): local success {ub:.2f} of {len(self.true_local)}"])


def method_study(model, seed: int, part: str, methods: Sequence[str] = ("loco", "loco_band_sampler"), *, t: float = 0.6,
                 strength: float | None = None, target: float | None = None, grid_points: int = 6, r: int = 5,
                 r_null: int = 5, max_iter: int = 30, true_delta: float = 0.2, thresholds=None,
                 config: EstimatorConfig | None = None) -> MethodStudy:
    """The paper's LOCO beside our options (:data:`~lococourse.eval.faces.METHOD_OPTIONS`) on one face and part,
    and the upper bound.  Every direction is Algorithm 1 (one linearisation, :func:`face_directions`); with
    ``strength`` None each gets the λ at which its +λ edit moves the part's main factor by ``target``
    (:func:`~lococourse.eval.faces.target_strengths`, default :data:`~lococourse.eval.faces.TARGET_CHANGE`), as in
    ``benchmarks/bench_loco_table.py``; a number fixes one λ for every method."""
    check_part(part)
    if strength is not None:
        check_strength(strength)
    target = TARGET_CHANGE if target is None else target
    th = resolve_thresholds(thresholds, model)
    faces = prepare_faces(model, [seed], t, config=config)
    fd = face_directions(model, faces, 0, methods=methods, parts=[part], r=r, r_null=r_null, max_iter=max_iter)
    if part in fd.skipped:
        raise ValueError(f"the {part} mask of face {seed} is empty or the whole image; choose another part or seed")
    dirs = {(m, part): fd.directions[(m, part)] for m in methods}
    if strength is None:
        size = model_size(model)
        chosen = target_strengths(model, faces, 0, dirs, default_strength_grid(3 * size * size, grid_points),
                                  target=target, config=config)
        lams = {k: c.strength for k, c in chosen.items()}
    else:
        lams = dict.fromkeys(dirs, float(strength))
    edits = {m: apply_face_edit(model, faces, dirs[(m, part)], lams[(m, part)], thresholds=th, config=config)
             for m in methods}
    imgs, meta = true_factor_edits(model, faces, 0, part, true_delta)
    if len(imgs):
        ch = factor_changes(faces.recon[[0] * len(imgs)], imgs, config, reference=fit_row(faces, [0] * len(imgs)))
    else:
        ch = torch.empty(0, len(FACTOR_NAMES))
    return MethodStudy(seed, part, faces.t, edits, "target" if strength is None else "fixed",
                       target if strength is None else None, imgs, meta, ch,
                       [bool(local_edit_success(c, part, th)) for c in ch])
