"""Input validation shared by every module: clear errors that name the value and what is allowed."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

#: The largest |λ| an edit accepts.  Directions are unit vectors in x_t-space and ‖x_t‖ ≈ √d (≈ 443 for a
#: 256 × 256 RGB image), so |λ| = 10⁴ already moves x_t twenty times its own length; beyond it the sampler
#: only produces saturated or non-finite images (λ = 1e30 gave an all-black PNG, 1e40 overflows float32).
MAX_STRENGTH = 1e4

#: Seeds are 64-bit: ``torch.Generator().manual_seed`` accepts 0 … 2⁶⁴ − 1.
MAX_SEED = 2 ** 64 - 1


def check_finite(x: torch.Tensor, name: str = "x_t") -> None:
    """Raise ValueError if ``x`` holds NaN or ±inf (nothing is silently cleaned)."""
    if not torch.is_tensor(x):
        raise TypeError(f"{name} must be a torch.Tensor; got {type(x).__name__}")
    if not x.is_floating_point():
        return
    try:
        finite = bool(torch.isfinite(x).all())
    except RuntimeError:
        # Under a torch.func transform or tracing (vmap, linearize) the value is symbolic; the
        # Jacobian engine checks its input point once before it transforms, so skip here.
        return
    if not finite:
        n_nan = int(torch.isnan(x).sum())
        n_inf = int(torch.isinf(x).sum())
        raise ValueError(f"{name} contains {n_nan} NaN and {n_inf} infinite entries; all entries must be finite")


def as_batch(x: torch.Tensor, shape: Sequence[int], name: str = "x_t") -> tuple[torch.Tensor, bool]:
    """View ``x`` of shape ``shape`` or ``(B, *shape)`` as ``(B, *shape)``; also return whether it was unbatched."""
    check_finite(x, name)
    shape = tuple(shape)
    if tuple(x.shape) == shape:
        return x.unsqueeze(0), True
    if x.dim() == len(shape) + 1 and tuple(x.shape[1:]) == shape:
        return x, False
    raise ValueError(f"{name} must have shape {shape} or (B, *{shape}); got {tuple(x.shape)}")


def check_positive_int(value, name: str, *, upper: int | None = None, upper_name: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}")
    if upper is not None and value > upper:
        raise ValueError(f"{name} = {value} exceeds {upper_name or 'the allowed maximum'} = {upper}")
    return value


def check_strength(lam, name: str = "strength λ", *, limit: float | None = None) -> float:
    """A finite real number (not a bool) with |λ| ≤ ``limit`` (default :data:`MAX_STRENGTH`): an edit strength λ
    of Algorithm 1 step 9."""
    limit = MAX_STRENGTH if limit is None else limit
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not math.isfinite(lam):
        raise ValueError(f"{name} must be a finite number with |λ| ≤ {limit:g}; got {lam!r}")
    if abs(lam) > limit:
        raise ValueError(f"{name} = {lam!r} is too large: |λ| must be ≤ {limit:g} (directions are unit vectors and "
                         f"‖x_t‖ ≈ √d, so larger λ only saturates the image)")
    return float(lam)


def check_index(value, name: str, upper: int, *, low: int = 0, what: str = "") -> int:
    """An integer in low..upper−1 (ranks r, r', singular-vector indices k); names the range when it is not."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value < upper:
        raise ValueError(f"{name} must be an integer with {low} ≤ {name} < {what or upper}"
                         f"{f' = {upper}' if what else ''}; got {value!r}")
    return value


def _is_real_scalar(v) -> bool:
    """An int or float (numpy's included, or a one-element real tensor); never a bool or a string."""
    if isinstance(v, (bool, np.bool_)):
        return False
    if isinstance(v, (int, float, np.integer, np.floating)):
        return True
    return torch.is_tensor(v) and v.numel() == 1 and v.dtype != torch.bool and not v.dtype.is_complex


def check_real(value, name: str, *, low: float | None = None, high: float | None = None, low_open: bool = False,
               high_open: bool = False) -> float:
    """A finite real number (not a bool, not a string) in the given range; returns it as a float.

    The message names the value and the allowed range, e.g. ``tol must be a finite number in (0, 1); got nan``.
    """
    lo = "" if low is None else ("(" if low_open else "[") + f"{low:g}"
    hi = "" if high is None else f"{high:g}" + (")" if high_open else "]")
    allowed = f"a finite number in {lo}, {hi}" if low is not None and high is not None else \
        f"a finite number {'>' if low_open else '≥'} {low:g}" if low is not None else \
        f"a finite number {'<' if high_open else '≤'} {high:g}" if high is not None else "a finite number"
    if not _is_real_scalar(value):
        raise TypeError(f"{name} must be {allowed}; got {value!r} ({type(value).__name__})")
    v = float(value)
    if not math.isfinite(v) or (low is not None and (v <= low if low_open else v < low)) or \
            (high is not None and (v >= high if high_open else v > high)):
        raise ValueError(f"{name} must be {allowed}; got {value!r}")
    return v


def check_seed(seed, name: str = "seed") -> int:
    """An integer seed in 0 … 2⁶⁴ − 1 (what ``torch.Generator().manual_seed`` accepts without wrapping)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"{name} must be an integer in 0 … 2⁶⁴ − 1 = {MAX_SEED}; got {seed!r}")
    return seed


def check_device(device) -> torch.device:
    """A torch device that exists on this machine: ``cuda`` needs a CUDA build of torch and a GPU, ``mps`` Apple's."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device {device!r} is not a device torch knows; use 'cpu' or 'cuda' (or 'cuda:N')") from e
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = ("this torch has no CUDA support" if torch.version.cuda is None else "no CUDA GPU is visible")
            raise ValueError(f"device {device!r} is not available here ({why}: torch {torch.__version__}, "
                             "torch.cuda.is_available() is False); use device 'cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r} does not exist: this machine has {torch.cuda.device_count()} CUDA "
                             f"device(s), cuda:0 … cuda:{torch.cuda.device_count() - 1}")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ValueError(f"device {device!r} is not available here (torch.backends.mps.is_available() is False); "
                             "use device 'cpu'")
    elif dev.type != "cpu":
        raise ValueError(f"device {device!r} is not supported; use 'cpu' or 'cuda'")
    return dev


def file_sha256(path) -> str:
    """The SHA-256 of a file's bytes, as 64 hex digits (read in 1 MiB chunks)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
