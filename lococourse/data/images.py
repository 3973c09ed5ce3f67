"""Reading and writing image files, with every conversion explicit (nothing silently clipped or dropped).

:func:`read_image` returns floats in [0, 1] and reports what it converted: 16-bit and other integer depths are
scaled by their own maximum (not clipped to 8 bits); an alpha channel is accepted only when fully opaque
(otherwise refused: compositing onto a background would change the image); palette and grey images are
converted to the requested channels with a notice.  A pixel-count limit refuses decompression bombs before
decoding.  :func:`write_png` writes atomically (a temporary file in the same folder, then a rename).
"""
from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

__all__ = ["MAX_PIXELS", "ImageError", "read_image", "write_png", "atomic_write"]

#: The largest image (width × height) read; anything larger is refused before decoding.
MAX_PIXELS = 4096 * 4096


class ImageError(ValueError):
    """An image file that cannot be used as it is; the message names the file and what is allowed."""


def read_image(path: str | Path, channels: int = 3, *, max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, list[str]]:
    """(H, W, channels) float64 in [0, 1], and the list of conversions made (empty when none)."""
    from PIL import Image

    p = Path(path)
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3; got {channels!r}")
    if not p.exists():
        raise FileNotFoundError(f"image {p} does not exist")
    if p.is_dir():
        raise ImageError(f"image {p} is a folder; give an image file (PNG, JPEG, …)")
    notes: list[str] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(p)
            w, h = img.size
            if w * h > max_pixels:
                raise ImageError(f"image {p} has {w}×{h} = {w * h:,} pixels, more than the limit of {max_pixels:,}")
            img.load()
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"image {p} is too large to decode safely ({e}); the limit is {max_pixels:,} pixels") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"could not read image {p}: {e} (expected a PNG, JPEG or other image file)") from e
    mode = img.mode
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        notes.append("palette image converted to RGB")
        mode = img.mode
    arr = np.asarray(img)
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        depth = 65535.0 if mode.startswith("I;16") or arr.max() <= 65535 else float(np.iinfo(arr.dtype).max)
        arr = arr.astype(np.float64) / depth
        notes.append(f"{'16' if depth == 65535.0 else '32'}-bit image scaled by its maximum {depth:g}")
    elif mode == "F":
        raise ImageError(f"image {p} holds floating-point pixels (mode F); save it as an 8- or 16-bit PNG")
    elif arr.dtype == np.uint8 or mode == "1":
        arr = arr.astype(np.float64) / (1.0 if mode == "1" else 255.0)
    else:
        raise ImageError(f"image {p} has pixel mode {mode!r}; use an 8- or 16-bit grey, RGB or RGBA image")
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.shape[-1] in (2, 4):  # LA or RGBA
        alpha = arr[..., -1]
        if float(alpha.min()) < 1.0:
            raise ImageError(f"image {p} has transparent pixels (alpha down to {float(alpha.min()):.3f}); "
                             "save it without transparency (the model needs every pixel)")
        arr = arr[..., :-1]
        notes.append("fully opaque alpha channel dropped")
    if mode == "CMYK":
        raise ImageError(f"image {p} is CMYK; save it as RGB")
    if arr.shape[-1] == 1 and channels == 3:
        arr = np.repeat(arr, 3, axis=-1)
        notes.append("grey image repeated to 3 channels")
    elif arr.shape[-1] == 3 and channels == 1:
        arr = arr @ np.array([0.299, 0.587, 0.114])[:, None]
        notes.append("colour image converted to grey (ITU-R 601 luma)")
    return arr, notes


def atomic_write(path: str | Path, write) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it onto ``path`` (all or nothing)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix or ".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_png(arr: np.ndarray, path: str | Path) -> Path:
    """An (H, W, C) uint8 array (C = 1 or 3) as a PNG, written atomically."""
    from PIL import Image

    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[-1] not in (1, 3):
        raise ValueError(f"write_png needs an (H, W, 1 or 3) uint8 array; got {arr.dtype} {arr.shape}")
    img = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)
    return atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))
