"""LOCO Edit's editing directions as first-class objects, and their files.

A *model* here is anything with ``pmp(t)`` (the PMP x_t ↦ x̂₀ at time t) and ``eps_model()`` (the
ε-model of DDIM): a :class:`~lococourse.models.registry.LoadedModel`, or a :class:`~lococourse.theory.molrg.MoLRG`.
Directions live in x_t-space; masks live in the PMP's output space.  Nothing here forms a d × d matrix.

A direction file is ``NAME.safetensors`` (tensors ``v``, float32, and ``mask``, uint8 0/1) whose metadata holds
the direction's fields (the authoritative copy) and a SHA-256 of the content, plus ``NAME.json``, the same
fields for people to read.  :meth:`Direction.load` checks everything a damaged or foreign file can get wrong
(keys, dtypes, shapes, a unit v within :data:`UNIT_NORM_TOL`, finite values, a mask neither empty nor full,
the checksum) and names the file in every message.  Both files are written atomically, mode 0644.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Sequence

import torch

from lococourse.data.images import atomic_write

__all__ = ["Direction", "DirectionError", "model_name", "UNIT_NORM_TOL"]

#: |‖v‖ − 1| allowed in a saved direction (float32 storage of a unit vector is good to ~1e-7; half-precision
#: T-LOCO directions to ~1e-3).
UNIT_NORM_TOL = 2e-3
#: safetensors metadata keys: the direction's fields (JSON) and the SHA-256 of fields + tensor bytes.
META_KEY = "lococourse_direction"
SHA_KEY = "lococourse_sha256"
#: Which map a direction was found from (``jacobian`` field): loco's "pmp"/"eps", T-LOCO's "text-vjp".
JACOBIAN_KINDS = ("pmp", "eps", "text-vjp")


class DirectionError(ValueError):
    """A direction file that cannot be used; the message names the file, the problem and what is allowed."""


@dataclass
class Direction:
    """An editing direction v_p in x_t-space (Algorithm 1, step 8), with how it was found."""

    v: torch.Tensor  # (*S_in), unit norm
    t: float  # the time it was found at (a DDIM grid time; NaN when the PMP had none)
    mask: torch.Tensor  # (H, W) or (*S_out) boolean Ω
    index: int  # k: which singular vector of the masked Jacobian
    r: int  # top-r singular vectors computed of ∇ P_Ω f (0 for text-supervised T-LOCO)
    r_null: int  # top-r' of ∇ P_{Ω^c} f projected out (0: none, or the soft projection: info["projection"] == "ridge")
    sigma: float  # the k-th singular value of ∇ P_Ω f
    model: str = ""  # the model's registered name (or a local folder's name)
    seed: int = 0
    jacobian: str = "pmp"  # which map: "pmp" (∂x̂₀/∂x_t, the paper's) or "eps" (∂ε/∂x_t, an ablation)
    seconds: float = 0.0  # learning time
    extra: dict = field(default_factory=dict)
    found_at: str = ""  # where the model was loaded from when the direction was found (a folder or hub repo)

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

    # ---------------------------------------------------------------- files
    def tensors(self) -> dict[str, torch.Tensor]:
        """What the .safetensors file holds: v as float32 and the mask as uint8 0/1 (checked: see :meth:`load`)."""
        v = self.v.detach().cpu().contiguous().float()
        mask = torch.as_tensor(self.mask).cpu()
        where = "this direction"
        _check_v(v, where)
        if mask.dtype != torch.bool:
            raise DirectionError(f"{where}: mask has dtype {mask.dtype}; it must be a boolean tensor (True inside Ω)")
        _check_mask(mask, where)
        return {"v": v, "mask": mask.to(torch.uint8).contiguous()}

    def write_safetensors(self, path: str | Path) -> Path:
        """Write the .safetensors file itself to ``path`` (no rename, no .json; :meth:`save` is the usual call)."""
        from safetensors.torch import save_file

        tensors = self.tensors()
        meta = json.dumps(self.metadata())
        save_file(tensors, str(path), metadata={META_KEY: meta, SHA_KEY: _content_sha(meta, tensors)})
        return Path(path)

    def write_json(self, path: str | Path) -> Path:
        """Write the human-readable copy of the metadata to ``path``."""
        Path(path).write_text(json.dumps(self.metadata(), indent=2))
        return Path(path)

    def save(self, path: str | Path, *, overwrite: bool = True) -> Path:
        """Save as ``path`` (.safetensors: v and the mask) plus ``path`` with .json (the metadata), each atomically.

        ``overwrite=False`` refuses to replace an existing file (the command line always passes it)."""
        path = Path(path).with_suffix(".safetensors")
        js = path.with_suffix(".json")
        if not overwrite:
            for p in (path, js):
                if p.exists():
                    raise FileExistsError(f"{p} exists; not overwriting it (pass overwrite=True to replace it)")
        self.tensors()  # validate before anything is written
        atomic_write(path, self.write_safetensors)
        atomic_write(js, self.write_json)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Direction":
        """Read and validate a direction file (``.safetensors``; a path without that suffix gets it)."""
        path = Path(path)
        if path.suffix != ".safetensors":
            path = path.with_suffix(".safetensors")
        if not path.exists():
            raise FileNotFoundError(f"no direction file {path} (a direction is the .safetensors file written by "
                                    "`lococourse edit` or Direction.save)")
        if path.is_dir():
            raise DirectionError(f"direction {path} is a folder; give the .safetensors file written by `lococourse edit`")
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as fh:
                raw = dict(fh.metadata() or {})
                keys = sorted(fh.keys())
                tensors = {k: fh.get_tensor(k) for k in keys} if keys == ["mask", "v"] else {}
        except Exception as e:  # noqa: BLE001 — SafetensorError, OSError, …: all mean "not a readable safetensors file"
            raise DirectionError(f"direction {path} is not a readable safetensors file ({type(e).__name__}: {e}); "
                                 "it may be truncated, empty or another format (pickle / torch.save files are never "
                                 "read). Give a file written by `lococourse edit` or Direction.save") from e
        if META_KEY not in raw:
            raise DirectionError(f"direction {path} has no '{META_KEY}' metadata: it is a safetensors file but not a "
                                 "lococourse direction")
        try:
            meta = json.loads(raw[META_KEY])
        except ValueError as e:
            raise DirectionError(f"direction {path}: its '{META_KEY}' metadata is not JSON ({e}); the file is damaged") from e
        if not isinstance(meta, dict):
            raise DirectionError(f"direction {path}: its metadata is a JSON {type(meta).__name__}, not an object")
        if keys != ["mask", "v"]:
            raise DirectionError(f"direction {path} holds tensors {keys}; a direction file holds exactly 'mask' and 'v'")
        if SHA_KEY in raw and raw[SHA_KEY] != _content_sha(raw[META_KEY], tensors):
            raise DirectionError(f"direction {path}: its content does not match its sha256 ({raw[SHA_KEY][:16]}…); "
                                 "the file was changed or damaged after it was written")
        return cls._from_parts(path, meta, tensors["v"], tensors["mask"])

    @classmethod
    def _from_parts(cls, path: Path, meta: dict, v: torch.Tensor, mask: torch.Tensor) -> "Direction":
        where = f"direction {path}"
        meta = dict(meta)
        allowed = {f.name for f in fields(cls)} - {"v", "mask"}
        required = ("t", "index", "r", "r_null", "sigma", "shape", "mask_shape")
        missing = [k for k in required if k not in meta]
        if missing:
            raise DirectionError(f"{where}: metadata lacks {missing}; a direction records {', '.join(required)}")
        unknown = sorted(set(meta) - allowed - {"shape", "mask_shape"})
        if unknown:
            raise DirectionError(f"{where}: unknown metadata keys {unknown}; allowed: {', '.join(sorted(allowed))}, "
                                 "shape, mask_shape")
        shape, mask_shape = meta.pop("shape"), meta.pop("mask_shape")
        if v.dtype not in (torch.float32, torch.float64):
            raise DirectionError(f"{where}: v has dtype {v.dtype}; it must be float32 (or float64)")
        if mask.dtype not in (torch.uint8, torch.bool):
            raise DirectionError(f"{where}: mask has dtype {mask.dtype}; it must be uint8 holding 0 and 1")
        if not isinstance(shape, list) or list(v.shape) != shape:
            raise DirectionError(f"{where}: v has shape {list(v.shape)} but its metadata says {shape!r}")
        if not isinstance(mask_shape, list) or list(mask.shape) != mask_shape:
            raise DirectionError(f"{where}: mask has shape {list(mask.shape)} but its metadata says {mask_shape!r}")
        if mask.dim() not in (2, 3):
            raise DirectionError(f"{where}: mask has shape {list(mask.shape)}; it must be (H, W) or (C, H, W)")
        if mask.dtype == torch.uint8 and not bool(((mask == 0) | (mask == 1)).all()):
            vals = torch.unique(mask)[:6].tolist()
            raise DirectionError(f"{where}: mask holds values {vals}; it must hold only 0 and 1")
        _check_v(v, where)
        mask = mask.bool()
        _check_mask(mask, where)
        t = meta["t"]
        if not _is_number(t) or not (math.isnan(t) or 0 < t <= 1):
            raise DirectionError(f"{where}: t = {t!r}; it must be a time in (0, 1] (or NaN: unknown)")
        for k in ("index", "r", "r_null", "seed"):
            if k in meta and (isinstance(meta[k], bool) or not isinstance(meta[k], int) or meta[k] < 0):
                raise DirectionError(f"{where}: {k} = {meta[k]!r}; it must be an integer ≥ 0")
        if meta["r"] and meta["index"] >= meta["r"]:
            raise DirectionError(f"{where}: index k = {meta['index']} but r = {meta['r']}; it must satisfy 0 ≤ k < r")
        for k in ("sigma", "seconds"):
            if k in meta and (not _is_number(meta[k]) or not math.isfinite(meta[k]) or meta[k] < 0):
                raise DirectionError(f"{where}: {k} = {meta[k]!r}; it must be a finite number ≥ 0")
        for k in ("model", "found_at"):
            if k in meta and not isinstance(meta[k], str):
                raise DirectionError(f"{where}: {k} = {meta[k]!r}; it must be a string")
        if "jacobian" in meta and meta["jacobian"] not in JACOBIAN_KINDS:
            raise DirectionError(f"{where}: jacobian = {meta['jacobian']!r}; it must be one of {', '.join(JACOBIAN_KINDS)}")
        if "extra" in meta and not isinstance(meta["extra"], dict):
            raise DirectionError(f"{where}: extra = {meta['extra']!r}; it must be a JSON object")
        return cls(v=v, mask=mask, **meta)

    def check_compatible(self, model_name: str, shape: Sequence[int]) -> None:
        """Refuse to use this direction on another model or image size."""
        if tuple(shape) != self.shape:
            raise ValueError(f"direction has shape {self.shape} but the target x_t has shape {tuple(shape)} "
                             "(a direction only applies to the image size it was found at)")
        if self.model and model_name and model_name != self.model:
            raise ValueError(f"direction was found on model {self.model!r}, not {model_name!r}")


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _check_v(v: torch.Tensor, where: str) -> None:
    if not v.is_floating_point():
        raise DirectionError(f"{where}: v has dtype {v.dtype}; it must be a floating-point unit vector")
    if v.numel() == 0:
        raise DirectionError(f"{where}: v is empty (shape {list(v.shape)}); it must be a unit vector")
    if not bool(torch.isfinite(v).all()):
        raise DirectionError(f"{where}: v holds {int((~torch.isfinite(v)).sum())} NaN or infinite entries; "
                             "all entries must be finite")
    n = float(torch.linalg.vector_norm(v.double()))
    if abs(n - 1) > UNIT_NORM_TOL:
        raise DirectionError(f"{where}: ‖v‖ = {n:.6g}; a direction must be a unit vector (|‖v‖ − 1| ≤ {UNIT_NORM_TOL:g})")


def _check_mask(mask: torch.Tensor, where: str) -> None:
    n, total = int(mask.sum()), mask.numel()
    if n == 0:
        raise DirectionError(f"{where}: the mask is empty (0 of {total} entries); Ω must select at least one pixel")
    if n == total:
        raise DirectionError(f"{where}: the mask is all True ({n} of {total}); Ω's complement must not be empty")


def _content_sha(meta_json: str, tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256(meta_json.encode())
    for k in ("v", "mask"):
        t = tensors[k].contiguous()
        h.update(k.encode())
        h.update(str(t.dtype).encode())
        h.update(str(list(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def model_name(model) -> str:
    """A :class:`~lococourse.core.interfaces.DiffusionModel`'s name (its class name if it has none)."""
    return getattr(model, "name", "") or type(model).__name__
