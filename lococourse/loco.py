"""LOCO Edit (Algorithm 1 of Chen et al. 2024) and its editing directions as first-class objects.

A *model* here is anything with ``pmp(t)`` (the PMP x_t ↦ x̂₀ at time t) and ``eps_model()`` (the
ε-model of DDIM): a :class:`~lococourse.registry.LoadedModel`, or a :class:`~lococourse.molrg.MoLRG`.
Directions live in x_t-space; masks live in the PMP's output space.  Nothing here forms a d × d matrix.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from safetensors.torch import load_file, save_file

from ._checks import check_finite
from .jacobian import JacobianOperator, check_mask, masked, power_method
from .schedule import check_t

__all__ = ["Direction", "find_direction", "loco_edit", "invert", "apply_directions", "transfer", "EditResult"]


@dataclass
class Direction:
    """An editing direction v_p in x_t-space (Algorithm 1, step 8), with how it was found."""

    v: torch.Tensor  # (*S_in), unit norm
    t: float  # the time it was found at (a DDIM grid time)
    mask: torch.Tensor  # (H, W) or (*S_out) boolean Ω
    index: int  # k: which singular vector of the masked Jacobian
    r: int  # top-r singular vectors computed of ∇ P_Ω f
    r_null: int  # top-r' of ∇ P_{Ω^c} f projected out (0: no nullspace projection)
    sigma: float  # the k-th singular value of ∇ P_Ω f
    model: str = ""
    seed: int = 0
    jacobian: str = "pmp"  # which map: "pmp" (∂x̂₀/∂x_t, the paper's) or "eps" (∂ε/∂x_t, an ablation)
    seconds: float = 0.0  # learning time
    extra: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple:
        return tuple(self.v.shape)

    def metadata(self) -> dict:
        d = asdict(self)
        for k in ("v", "mask"):
            d.pop(k)
        d["shape"] = list(self.shape)
        d["mask_shape"] = list(self.mask.shape)
        return d

    def save(self, path: str | Path) -> Path:
        """Save as ``path`` (.safetensors: v and the mask) plus ``path`` with .json (the metadata)."""
        path = Path(path).with_suffix(".safetensors")
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = self.metadata()
        save_file({"v": self.v.detach().contiguous().float(), "mask": self.mask.to(torch.uint8).contiguous()}, path,
                  metadata={"lococourse_direction": json.dumps(meta)})
        path.with_suffix(".json").write_text(json.dumps(meta, indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Direction":
        path = Path(path)
        if path.suffix != ".safetensors":
            path = path.with_suffix(".safetensors")
        if not path.exists():
            raise FileNotFoundError(f"no direction file {path}")
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            meta = json.loads((fh.metadata() or {}).get("lococourse_direction", "{}"))
        if not meta:
            raise ValueError(f"{path} is not a lococourse direction (no 'lococourse_direction' metadata)")
        t = load_file(path)
        meta.pop("shape", None)
        meta.pop("mask_shape", None)
        return cls(v=t["v"], mask=t["mask"].bool(), **meta)

    def check_compatible(self, model_name: str, shape: Sequence[int]) -> None:
        """Refuse to use this direction on another model or image size."""
        if tuple(shape) != self.shape:
            raise ValueError(f"direction has shape {self.shape} but the target x_t has shape {tuple(shape)} "
                             "(a direction only applies to the image size it was found at)")
        if self.model and model_name and model_name != self.model:
            raise ValueError(f"direction was found on model {self.model!r}, not {model_name!r}")


def _model_name(model) -> str:
    spec = getattr(model, "spec", None)
    return getattr(spec, "name", None) or getattr(model, "name", "") or type(model).__name__


def _full_mask(mask: torch.Tensor, out_shape: Sequence[int]) -> torch.Tensor:
    return check_mask(torch.as_tensor(mask), out_shape)


def find_direction(
    f, x_t: torch.Tensor, mask: torch.Tensor, *, index: int = 0, r: int = 5, r_null: int = 5, seed: int = 0,
    tol: float = 1e-4, max_iter: int = 50, model: str = "", jacobian: str = "pmp", masked_jacobian: bool = True,
) -> Direction:
    """Steps 4–8 of Algorithm 1 at a given x_t:

      4. top-r SVD (Ũ, Σ̃, Ṽ) of J̃ = ∇_{x_t} P_Ω f(x_t)           (generalized power method, Alg. 2)
      5. top-r' SVD (Ū, Σ̄, V̄) of J̄ = ∇_{x_t} P_{Ω^c} f(x_t)      (r' = ``r_null``; 0 skips 5 and 7)
      6. v ← Ṽ[:, k]                                              (k = ``index``)
      7. v_p ← v − V̄ (V̄ᵀ v)                                       (nullspace projection, never I − V̄V̄ᵀ)
      8. v_p ← v_p / ‖v_p‖

    ``masked_jacobian=False`` uses the unmasked J in step 4 (an ablation).  The singular vectors of a
    power method have a sign ambiguity; :func:`power_method` fixes it (largest entry positive).
    """
    check_finite(x_t, "x_t")
    t0 = time.perf_counter()
    out_shape = tuple(f(x_t.unsqueeze(0)).shape[1:])
    mask_full = _full_mask(mask, out_shape)
    d = x_t.numel()
    if not isinstance(index, int) or index < 0 or index >= r:
        raise ValueError(f"index k must be an integer in 0..r−1 = 0..{r - 1}; got {index!r}")
    if isinstance(r_null, bool) or not isinstance(r_null, int) or not 0 <= r_null < d:
        raise ValueError(f"r' (r_null) must be an integer with 0 ≤ r' < d = {d}; got {r_null!r}")
    # Step 4.
    f_in = masked(f, mask_full) if masked_jacobian else f
    top = power_method(JacobianOperator(f_in, x_t), k=r, seed=seed, tol=tol, max_iter=max_iter)
    v = top.V[:, index]  # Step 6.
    # Steps 5 and 7.
    if r_null > 0:
        Vbar = power_method(JacobianOperator(masked(f, ~mask_full), x_t), k=r_null, seed=seed + 1, tol=tol, max_iter=max_iter).V  # (d, r')
        v = v - Vbar @ (Vbar.T @ v)
    n = torch.linalg.norm(v)
    if not n > 0:
        raise ValueError("the projected direction is zero: v lies in span(V̄); use a smaller r' or another index")
    v = (v / n).reshape(x_t.shape)  # Step 8.
    return Direction(v.detach(), float(getattr(f, "t", float("nan"))), mask.clone() if torch.is_tensor(mask) else torch.as_tensor(mask),
                     index, r, r_null, float(top.S[index]), model, seed, jacobian, time.perf_counter() - t0)


def invert(model, x0: torch.Tensor, t: float) -> tuple[torch.Tensor, float]:
    """Step 3 of Algorithm 1: x_t = DDIM-Inv(x₀, t) on the paper's 100-step grid; returns (x_t, grid t)."""
    from .ddim import ddim_grid, ddim_invert

    check_t(t)
    grid = ddim_grid()
    single = x0.dim() == len(model.shape)  # one image (*S): the ε-model takes batches
    x_t = ddim_invert(model.eps_model(), x0.unsqueeze(0) if single else x0, t, grid=grid)
    return (x_t[0] if single else x_t), grid.snap(t)


def apply_directions(model, x_t: torch.Tensor, t: float, terms: Sequence[tuple[Direction, float]] | None = None,
                     strengths: Sequence[float] | None = None, direction: Direction | None = None) -> torch.Tensor:
    """Step 9: x₀' = DDIM(x_t + Σ λ_i v_i, 0), in one batch.

    Either ``terms`` [(direction, λ), …] (composition: one image) or ``direction`` with a list of
    ``strengths`` (a linearity sweep: one image per λ, all from the same x_t).  x_t: (*S).
    """
    from .ddim import ddim_sample

    if terms is not None:
        for dirn, lam in terms:
            _check_strength(lam)
            dirn.check_compatible("", x_t.shape)
        x = (x_t + sum(lam * dirn.v.to(x_t.dtype) for dirn, lam in terms)).unsqueeze(0)
    elif direction is not None and strengths is not None:
        for lam in strengths:
            _check_strength(lam)
        direction.check_compatible("", x_t.shape)
        lam = torch.as_tensor(list(strengths), dtype=x_t.dtype).reshape(-1, *[1] * x_t.dim())
        x = x_t.unsqueeze(0) + lam * direction.v.to(x_t.dtype)
    else:
        raise ValueError("give either terms=[(direction, strength), …] or direction= with strengths=[…]")
    with torch.no_grad():
        return ddim_sample(model.eps_model(), x, t, 0.0)


def _check_strength(lam) -> None:
    if not isinstance(lam, (int, float)) or isinstance(lam, bool) or not torch.isfinite(torch.tensor(float(lam))):
        raise ValueError(f"strength λ must be a finite number; got {lam!r}")


@dataclass
class EditResult:
    x0: torch.Tensor  # (*S) the original image
    x_t: torch.Tensor  # (*S) its DDIM inversion at t
    t: float  # grid time of the edit
    direction: Direction
    strengths: list
    edited: torch.Tensor  # (L, *S): DDIM(x_t + λ v_p, 0) per λ
    reconstruction: torch.Tensor  # (*S): DDIM(x_t, 0), the λ = 0 image


def loco_edit(model, x0: torch.Tensor, mask: torch.Tensor, t: float, *, index: int = 0,
              strengths: Sequence[float] = (-6.0, 6.0), r: int = 5, r_null: int = 5, seed: int = 0,
              tol: float = 1e-4, max_iter: int = 50, masked_jacobian: bool = True) -> EditResult:
    """Unsupervised LOCO Edit, Algorithm 1 of Chen et al. (2024), end to end.

      3. x_t ← DDIM-Inv(x₀, t)
      4–8. v_p from the masked Jacobian and nullspace projection (:func:`find_direction`)
      9. x₀' ← DDIM(x_t + λ v_p, 0) for each λ in ``strengths`` (one batch, with λ = 0 as reference)
    """
    check_finite(x0, "x0")
    for lam in strengths:
        _check_strength(lam)
    x_t, t_grid = invert(model, x0, t)  # Step 3.
    f = model.pmp(t_grid)
    direction = find_direction(f, x_t, mask, index=index, r=r, r_null=r_null, seed=seed, tol=tol,
                               max_iter=max_iter, model=_model_name(model), masked_jacobian=masked_jacobian)
    direction.t = t_grid
    lams = [0.0, *[float(s) for s in strengths]]
    out = apply_directions(model, x_t, t_grid, direction=direction, strengths=lams)  # Step 9.
    return EditResult(x0, x_t, t_grid, direction, list(lams[1:]), out[1:], out[0])


def transfer(model, direction: Direction, x0: torch.Tensor, strengths: Sequence[float], *, t: float | None = None,
             reproject: bool = False, seed: int = 0) -> EditResult:
    """Apply a direction found on one image to another (homogeneity, §3.2): invert x₀ to t, add λ v, sample.

    As in the paper the direction is added unchanged; ``reproject=True`` first projects it onto the
    target image's own complement nullspace (top-r' of ∇ P_{Ω^c} f at the target x_t) and renormalises.
    """
    t = direction.t if t is None else t
    direction.check_compatible(_model_name(model), x0.shape)
    x_t, t_grid = invert(model, x0, t)
    used = direction
    if reproject and direction.r_null > 0:
        f = model.pmp(t_grid)
        mask_full = _full_mask(direction.mask, tuple(f(x_t.unsqueeze(0)).shape[1:]))
        Vbar = power_method(JacobianOperator(masked(f, ~mask_full), x_t), k=direction.r_null, seed=seed + 1).V
        v = direction.v.reshape(-1).to(Vbar.dtype)
        v = v - Vbar @ (Vbar.T @ v)
        used = Direction(**{**asdict(direction), "v": (v / v.norm()).reshape(direction.shape), "t": t_grid})
    lams = [0.0, *[float(s) for s in strengths]]
    out = apply_directions(model, x_t, t_grid, direction=used, strengths=lams)
    return EditResult(x0, x_t, t_grid, used, list(lams[1:]), out[1:], out[0])
