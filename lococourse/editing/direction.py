"""LOCO Edit (Algorithm 1 of Chen et al. 2024) and its editing directions as first-class objects.

A *model* here is anything with ``pmp(t)`` (the PMP x_t ↦ x̂₀ at time t) and ``eps_model()`` (the
ε-model of DDIM): a :class:`~lococourse.models.registry.LoadedModel`, or a :class:`~lococourse.theory.molrg.MoLRG`.
Directions live in x_t-space; masks live in the PMP's output space.  Nothing here forms a d × d matrix.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from safetensors.torch import load_file, save_file


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


def model_name(model) -> str:
    """A :class:`~lococourse.core.interfaces.DiffusionModel`'s name (its class name if it has none)."""
    return getattr(model, "name", "") or type(model).__name__
