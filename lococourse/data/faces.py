"""Procedural cartoon faces whose parts vary independently and smoothly.

Every image is a deterministic, smooth function of 9 factors in [0, 1] (the data manifold is
9-dimensional).  Shapes are soft: each layer's opacity is σ(−s(u, v)/τ) for a signed distance s
(negative inside) and an edge width τ of ``EDGE_PX`` pixels, so pixels move smoothly with the factors.
Layers, back to front: background → hair → face (skin) → eyes (sclera, then pupil) → mouth.

    factor        part         effect
    bg_hue        background   hue of the background (a periodic cosine palette)
    hair_colour   hair         dark brown → auburn → blond
    hair_length   hair         how far down the sides of the head the hair reaches
    skin_tone     face         light → dark skin
    face_width    face         horizontal radius of the face ellipse
    eye_size      eyes         radius of both eyes
    gaze          eyes         horizontal offset of both pupils (left ↔ right)
    mouth_curve   mouth        frown ↔ smile
    mouth_width   mouth        half-width of the mouth

Part masks are a partition of the pixels: a pixel belongs to the part whose layer contributes most
to its colour (opacity times the transparency of everything in front).  So masks are disjoint,
cover the image, and changing a factor of one part changes pixels only within that part's mask
before or after the change (up to the anti-aliasing margin of a pixel or two).
"""
from __future__ import annotations

import math
from typing import Mapping, NamedTuple

import torch

from lococourse.core.checks import check_positive_int, check_seed

__all__ = ["FACTOR_NAMES", "FACTOR_PARTS", "PARTS", "EDGE_PX", "FaceBatch", "sample_factors", "render_faces",
           "sample_faces", "face_sampler"]

#: The parts, back to front (the order of the masks).
PARTS = ("background", "hair", "face", "eyes", "mouth")
#: Each factor (uniform on [0, 1]) and the part it changes.
FACTOR_PARTS = {
    "bg_hue": "background",
    "hair_colour": "hair",
    "hair_length": "hair",
    "skin_tone": "face",
    "face_width": "face",
    "eye_size": "eyes",
    "gaze": "eyes",
    "mouth_curve": "mouth",
    "mouth_width": "mouth",
}
FACTOR_NAMES = tuple(FACTOR_PARTS)
#: Edge width τ of the soft shapes, in pixels.
EDGE_PX = 0.5

_DT = torch.float32


class FaceBatch(NamedTuple):
    images: torch.Tensor  # (n, 3, H, W) in [-1, 1], float32
    factors: dict  # name -> (n,) float32 in [0, 1]
    masks: dict  # part -> (n, H, W) bool; a partition of the pixels


def sample_factors(n: int, generator: torch.Generator | None = None) -> dict:
    """n independent draws of every factor, uniform on [0, 1] (in the order of FACTOR_NAMES)."""
    if int(n) != n or n < 0:
        raise ValueError(f"n must be a non-negative integer; got {n!r}")
    u = torch.rand(int(n), len(FACTOR_NAMES), generator=generator, dtype=_DT)
    return {name: u[:, i] for i, name in enumerate(FACTOR_NAMES)}


def _check_factors(factors: Mapping[str, torch.Tensor]) -> tuple[dict, int]:
    missing = [k for k in FACTOR_NAMES if k not in factors]
    extra = [k for k in factors if k not in FACTOR_PARTS]
    if missing or extra:
        raise ValueError(f"factors must have exactly the keys {list(FACTOR_NAMES)}; missing {missing}, unknown {extra}")
    out = {k: torch.as_tensor(factors[k], dtype=_DT).reshape(-1) for k in FACTOR_NAMES}
    sizes = {v.numel() for v in out.values()}
    if len(sizes) != 1:
        raise ValueError(f"every factor must hold the same number n of values; got sizes {sorted(sizes)}")
    for k, v in out.items():
        if not torch.isfinite(v).all() or (v < 0).any() or (v > 1).any():
            raise ValueError(f"factor {k!r} must lie in [0, 1]; got values in [{v.min():.3g}, {v.max():.3g}]")
    return out, sizes.pop()


def _lerp3(a, b, c, s: torch.Tensor) -> torch.Tensor:
    """Quadratic Bézier through colours a → b → c at s ∈ [0, 1]; returns (n, 3, 1, 1)."""
    a, b, c = (torch.tensor(x, dtype=_DT) for x in (a, b, c))
    s = s.reshape(-1, 1)
    col = (1 - s) ** 2 * a + 2 * s * (1 - s) * b + s ** 2 * c
    return col.reshape(-1, 3, 1, 1)


def _ellipse_sdf(u, v, cx, cy, rx, ry):
    """Signed distance to an axis-aligned ellipse to first order, (q − 1)/|∇q| with q = ‖((u−cx)/rx, (v−cy)/ry)‖
    (exact on circles and accurate near the boundary, which is all the soft edges need), in image units.
    Written as (q − 1)·q / ‖((u−cx)/rx², (v−cy)/ry²)‖ with the reciprocals of the radii (fewer divisions)."""
    irx, iry = 1 / rx, 1 / ry
    du, dv = (u - cx) * irx, (v - cy) * iry
    q = torch.sqrt(du * du + dv * dv).clamp(min=1e-6)
    gu, gv = du * irx, dv * iry
    return (q - 1) * q * torch.rsqrt((gu * gu + gv * gv).clamp(min=1e-12))


def _circle_sdf(u, v, cx, cy, r):
    """Signed distance to a circle, ‖(u − cx, v − cy)‖ − r (what :func:`_ellipse_sdf` gives for rx = ry = r)."""
    du, dv = u - cx, v - cy
    return torch.sqrt((du * du + dv * dv).clamp(min=1e-12)) - r


def render_faces(factors: Mapping[str, torch.Tensor], size: int = 32, *, masks: bool = True) -> FaceBatch:
    """The deterministic images and part masks of the given factors (each (n,) in [0, 1]).

    Coordinates: u (right) and v (down) run over pixel centres in (−1, 1).  ``masks=False`` skips the part masks
    (an empty dict; the images are the same): the factor estimator renders millions of candidates and needs none.
    """
    if int(size) != size or size < 8:
        raise ValueError(f"size must be an integer ≥ 8; got {size!r}")
    f, n = _check_factors(factors)
    size = int(size)
    g = (torch.arange(size, dtype=_DT) + 0.5) / size * 2 - 1
    v, u = torch.meshgrid(g, g, indexing="ij")
    u, v = u.reshape(1, size, size), v.reshape(1, size, size)
    tau = EDGE_PX * 2 / size

    def p(name):  # factor as (n, 1, 1)
        return f[name].reshape(n, 1, 1)

    def alpha(sdf):
        return torch.sigmoid(sdf * (-1 / tau))

    # colours (n, 3, 1, 1)
    h = f["bg_hue"].reshape(n, 1) + torch.tensor([0.0, 1 / 3, 2 / 3])
    bg_col = (0.55 + 0.3 * torch.cos(2 * math.pi * h)).reshape(n, 3, 1, 1)
    hair_col = _lerp3((0.12, 0.07, 0.04), (0.55, 0.22, 0.08), (0.95, 0.82, 0.40), f["hair_colour"])
    skin_col = _lerp3((0.98, 0.86, 0.74), (0.80, 0.58, 0.42), (0.40, 0.26, 0.17), f["skin_tone"])
    sclera_col = torch.tensor([0.97, 0.97, 0.97]).reshape(1, 3, 1, 1)
    pupil_col = torch.tensor([0.08, 0.10, 0.25]).reshape(1, 3, 1, 1)
    mouth_col = torch.tensor([0.65, 0.08, 0.15]).reshape(1, 3, 1, 1)

    # geometry
    one = torch.ones(n, 1, 1)
    fcx, fcy = 0.0 * one, 0.08 * one
    frx, fry = 0.48 + 0.2 * p("face_width"), 0.68 * one
    a_face = alpha(_ellipse_sdf(u, v, fcx, fcy, frx, fry))
    head = _ellipse_sdf(u, v, fcx, fcy - 0.08, 0.82 * one, fry + 0.14)  # independent of the face width
    cut = v - (-0.25 + 0.8 * p("hair_length"))  # hair only above this line (at most down to the jaw)
    a_hair = alpha(torch.maximum(head, cut))
    er = 0.10 + 0.08 * p("eye_size")
    ex, ey = 0.26, -0.05
    eyes_sdf = torch.minimum(_circle_sdf(u, v, -ex, ey, er), _circle_sdf(u, v, ex, ey, er))
    a_sclera = alpha(eyes_sdf)
    pr = 0.55 * er
    px = (p("gaze") * 2 - 1) * 0.42 * er
    pupil_sdf = torch.minimum(_circle_sdf(u, v, -ex + px, ey, pr), _circle_sdf(u, v, ex + px, ey, pr))
    a_pupil = alpha(torch.maximum(pupil_sdf, eyes_sdf))  # pupils stay inside the eyes
    mw = 0.14 + 0.16 * p("mouth_width")
    curve = (p("mouth_curve") * 2 - 1) * 0.13
    my = 0.38 + curve * (1 - (u / mw).clamp(-1, 1) ** 2) - curve / 2
    mouth_sdf = torch.maximum((v - my).abs() - 0.055, u.abs() - mw)
    a_mouth = alpha(mouth_sdf)

    # composite back to front ("over"): img = Σ_l w_l c_l with the visible weight w_l = α_l Π_{m in front of l} (1 − α_m)
    # of each layer (the expanded form of img ← img (1 − α_l) + α_l c_l, layer after layer), so the 3-channel work is one
    # batched matrix product of the (n, 6, H·W) weights with the (n, 6, 3) colours; the weights also give the masks
    layers = [("background", torch.ones(n, size, size), bg_col), ("hair", a_hair, hair_col),
              ("face", a_face, skin_col), ("eyes", a_sclera, sclera_col), ("eyes", a_pupil, pupil_col),
              ("mouth", a_mouth, mouth_col)]
    vis = [None] * len(layers)
    front = None  # Π (1 − α_m) over the layers in front of the current one
    for i in range(len(layers) - 1, -1, -1):
        a = layers[i][1]
        vis[i] = a if front is None else a * front
        if i:
            front = (1 - a) if front is None else front * (1 - a)
    weights = torch.stack(vis, 1).reshape(n, len(layers), size * size)  # (n, 6, H·W)
    colours = torch.cat([c.reshape(-1, 1, 3).expand(n, 1, 3) for _, _, c in layers], 1)  # (n, 6, 3)
    img = torch.bmm(colours.transpose(1, 2), weights).reshape(n, 3, size, size)
    img = (img * 2 - 1).contiguous()  # convex mix of colours in [0, 1]: no clipping needed
    if not masks:
        return FaceBatch(img, f, {})
    part_vis = torch.stack([sum(w for (name, _, _), w in zip(layers, vis) if name == part) for part in PARTS])
    label = part_vis.argmax(0)  # (n, H, W)
    return FaceBatch(img, f, {part: label == i for i, part in enumerate(PARTS)})


def sample_faces(n: int, generator: torch.Generator | int | None = None, size: int = 32) -> FaceBatch:
    """n random faces: (images (n, 3, size, size) in [-1, 1], factors, part masks).

    ``generator`` may be a torch.Generator or an integer seed (the same seed gives the same faces).
    """
    check_positive_int(n, "n (the number of faces)")
    if isinstance(generator, int):
        generator = torch.Generator().manual_seed(check_seed(generator, "generator (an integer seed)"))
    elif generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, an integer seed or None; got {generator!r}")
    return render_faces(sample_factors(n, generator), size)


def face_sampler(size: int = 32):
    """A training sampler (batch size, generator) → x₀ of shape (B, 3, size, size)."""
    def sampler(batch: int, generator: torch.Generator) -> torch.Tensor:
        return render_faces(sample_factors(batch, generator), size).images
    return sampler
