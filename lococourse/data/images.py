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
import threading
import warnings
from pathlib import Path

import numpy as np

__all__ = ["MAX_PIXELS", "ImageError", "read_image", "write_png", "atomic_write"]

#: The largest image (width × height) read; anything larger is refused before decoding.
MAX_PIXELS = 4096 * 4096


_pillow_lock = threading.Lock()


class ImageError(ValueError):
    """An image file that cannot be used as it is; the message names the file and what is allowed."""


def read_image(path: str | Path, channels: int = 3, *, max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, list[str]]:
    """(H, W, channels) float64 in [0, 1], and the list of conversions made (empty when none).

    Handled explicitly, by the file's pixel mode: 1-bit, 8-bit and 16-bit grey (``1``, ``L``, ``I;16``; scaled by
    65535), 8-bit RGB, 16-bit RGB(A) (Pillow decodes those to 8 bits: noted),
    palette images (expanded: noted), YCbCr (converted: noted), an alpha channel (dropped when fully opaque:
    noted; refused when any pixel is transparent).  Refused with the reason: floating-point (``F``) and 32-bit (``I``) pixels, CMYK,
    LAB/HSV, multi-frame files, images of more than ``max_pixels`` pixels (before decoding), folders, non-files.
    """
    from PIL import Image

    p = Path(path)
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3; got {channels!r}")
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise ValueError(f"max_pixels must be a positive integer; got {max_pixels!r}")
    if not str(path).strip():
        raise ImageError("image path '' is empty; give an image file (PNG, JPEG, …)")
    if not p.exists():
        raise FileNotFoundError(f"image {p} does not exist")
    if p.is_dir():
        raise ImageError(f"image {p} is a folder; give an image file (PNG, JPEG, …)")
    if not p.is_file():
        raise ImageError(f"image {p} is not a regular file (a device, pipe or socket); give an image file")
    if p.stat().st_size == 0:
        raise ImageError(f"image {p} is empty (0 bytes); give a PNG, JPEG or other image file")
    notes: list[str] = []
    try:
        with _pillow_lock:  # our own pixel limit (below Pillow's) decides, with the image's size in the message
            saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                img = Image.open(p)
            finally:
                Image.MAX_IMAGE_PIXELS = saved
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            w, h = img.size
            if w * h > max_pixels:
                raise ImageError(f"image {p} has {w}×{h} = {w * h:,} pixels, more than the limit of {max_pixels:,}; "
                                 "resize it to the model's size first")
            frames = getattr(img, "n_frames", 1)
            if frames > 1:
                raise ImageError(f"image {p} has {frames} frames (an animation or a multi-page file); give a "
                                 "single image")
            raw = img.tile[0].args if img.tile and isinstance(img.tile[0].args, str) else ""
            img.load()
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"image {p} is too large to decode safely ({e}); the limit is {max_pixels:,} pixels") from e
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageError(f"could not read image {p}: {e} (expected a PNG, JPEG or other image file)") from e
    mode = img.mode
    if mode in ("CMYK", "LAB", "HSV"):
        raise ImageError(f"image {p} is {mode}; save it as RGB (or grey) first — converting it here would guess "
                         "at colour management")
    if mode == "F":
        raise ImageError(f"image {p} holds floating-point pixels (mode F); save it as an 8- or 16-bit PNG")
    if mode in ("P", "PA"):
        img = img.convert("RGBA" if ("transparency" in img.info or mode == "PA") else "RGB")
        notes.append("palette image expanded to RGB")
        mode = img.mode
    elif mode == "YCbCr":
        img = img.convert("RGB")
        notes.append("YCbCr image converted to RGB")
        mode = "RGB"
    elif mode in ("RGBa", "La"):  # premultiplied alpha: un-premultiply first
        img = img.convert("RGBA" if mode == "RGBa" else "LA")
        mode = img.mode
    if ";16" in raw and mode in ("RGB", "RGBA"):
        notes.append(f"16-bit {'grey' if raw.startswith('LA') else mode} image read at 8 bits per channel "
                     "(Pillow decodes 16-bit colour to 8 bits)")
    arr = np.asarray(img)
    if mode.startswith("I;16"):
        arr = arr.astype(np.float64) / 65535.0
        notes.append("16-bit image scaled by its maximum 65535")
    elif mode == "I" and "16" in raw:  # older Pillow versions open 16-bit grey PNGs as mode I
        arr = arr.astype(np.float64) / 65535.0
        notes.append("16-bit image scaled by its maximum 65535")
    elif mode == "I":
        raise ImageError(f"image {p} holds 32-bit integer pixels (mode I); save it as an 8- or 16-bit PNG")
    elif mode == "1":
        arr = arr.astype(np.float64)
    elif arr.dtype == np.uint8 and mode in ("L", "LA", "RGB", "RGBA", "RGBX"):
        arr = arr.astype(np.float64) / 255.0
    else:
        raise ImageError(f"image {p} has pixel mode {mode!r}; use an 8- or 16-bit grey, RGB or RGBA image")
    if arr.ndim == 2:
        arr = arr[..., None]
    if mode in ("LA", "RGBA"):
        alpha = arr[..., -1]
        if float(alpha.min()) < 1.0:
            n = int((alpha < 1.0).sum())
            raise ImageError(f"image {p} has {n} transparent pixels (alpha down to {float(alpha.min()):.3f}); "
                             "save it without transparency (compositing onto a background would change the image)")
        arr = arr[..., :-1]
        notes.append("fully opaque alpha channel dropped")
    elif mode == "RGBX":
        arr = arr[..., :3]
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
